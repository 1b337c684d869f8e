#!/bin/sh
# The seed's 8-row pft table (4 GB x 3 repetitions, 1/2/4/8 threads, stock vs
# prezero kernel) on the altix-8 profile, with echo and cat (and the shell's read).
# PFT_BYTES=256M scripts/pft.sh for a quick run.
#   vmemu mount ./mountpoint --profile altix-8 && scripts/pft.sh [MOUNTPOINT]
# "stock" and "prezero" are one kernel here: scrubd off (scrub_start = MAX_ORDER
# = 18) vs scrubd on with the V6 defaults (scrub_start 6, scrub_stop 4).
# The switch goes through proc/sys/vm/scrub_start (writing it wakes scrubd).
set -e
M=${1:-./mountpoint}
V=$M/proc/sys/vm
for kernel in stock prezero; do
  if [ $kernel = stock ]; then
    echo 18 > "$V/scrub_start"
  else
    echo 4 > "$V/scrub_stop"
    echo 6 > "$V/scrub_start"
  fi
  echo "$kernel: scrub_start $(cat "$V/scrub_start") scrub_stop $(cat "$V/scrub_stop")"
  for threads in 1 2 4 8; do
    echo "bytes=${PFT_BYTES:-4G} rep=3 threads=$threads" > "$M/proc/vmemu/fault"
    { IFS= read -r title; IFS= read -r row; } < "$M/proc/vmemu/fault"
    [ $threads = 1 ] && echo "$title"
    echo "$row"
  done
done
echo 18 > "$V/scrub_start"
