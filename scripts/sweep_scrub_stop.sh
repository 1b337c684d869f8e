#!/bin/sh
# Sweep vm.scrub_stop from 0 to N with scrubd on, one small pft job each:
#   scripts/sweep_scrub_stop.sh [MOUNTPOINT] [N]
#   BYTES=64M THREADS=2 START=6 scripts/sweep_scrub_stop.sh ./mountpoint 6
# Everything goes through the mount: echo to proc/sys/vm/scrub_* (writing
# scrub_start wakes scrubd) and to proc/vmemu/fault; the pft row is read back
# from proc/vmemu/fault.  The old scrub_* values are restored at the end.
set -e
M=${1:-./mountpoint}
N=${2:-4}
V=$M/proc/sys/vm
old_start=$(cat "$V/scrub_start")
old_stop=$(cat "$V/scrub_stop")
trap 'echo "$old_stop" > "$V/scrub_stop"; echo "$old_start" > "$V/scrub_start"' EXIT
stop=0
while [ "$stop" -le "$N" ]; do
  echo "$stop" > "$V/scrub_stop"
  echo "${START:-6}" > "$V/scrub_start"
  echo "bytes=${BYTES:-64M} threads=${THREADS:-1}" > "$M/proc/vmemu/fault"
  { IFS= read -r title; IFS= read -r row; } < "$M/proc/vmemu/fault"
  [ "$stop" = 0 ] && echo "scrub_stop $title"
  printf '%10d %s\n' "$stop" "$row"
  stop=$((stop + 1))
done
