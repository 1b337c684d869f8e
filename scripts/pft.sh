#!/bin/sh
# The seed's 8-row pft table (4 GB x 3 repetitions, 1/2/4/8 threads, stock vs
# prezero kernel) through the fault trigger, with echo, cat and the shell's read.
#   vmemu mount ./mountpoint --profile altix-8 && scripts/pft.sh [MOUNTPOINT]
#   PFT_BYTES=256M scripts/pft.sh      # a quick run
# "stock" and "prezero" are one kernel here: scrubd off (scrub_start >= MAX_ORDER)
# vs scrubd on with the settings `vmemu pft` uses (scrub_start 6, scrub_stop 2).
# The seed's machine had no hardware zeroing, so the BTE driver is switched off.
set -e
M=${1:-./mountpoint}
V=$M/proc/sys/vm
P=$M/sys/kernel/mm/prezero
[ -e "$P/drivers/bte/enabled" ] && echo 0 > "$P/drivers/bte/enabled"

scrubd_idle() {   # every kscrubd asleep with nothing in flight
  for n in "$P"/scrubd/node*; do
    [ "$(cat "$n/state")" = sleeping ] && [ "$(cat "$n/blocks_inflight")" = 0 ] || return 1
  done
}

for kernel in stock prezero; do
  if [ $kernel = stock ]; then
    echo 99 > "$V/scrub_start"
  else
    echo 2 > "$V/scrub_stop"
    echo 6 > "$V/scrub_start"
  fi
  echo "$kernel: scrub_start $(cat "$V/scrub_start") scrub_stop $(cat "$V/scrub_stop")"
  for threads in 1 2 4 8; do
    # as on a machine that has been up a while: scrubd done before the run
    while ! scrubd_idle; do cat "$M/proc/uptime" > /dev/null; done
    echo "bytes=${PFT_BYTES:-4G} rep=3 threads=$threads" > "$M/proc/vmemu/fault"
    { IFS= read -r title; IFS= read -r row; } < "$M/proc/vmemu/fault"
    [ $threads = 1 ] && echo "$title"
    echo "$row"
  done
done
echo 99 > "$V/scrub_start"
