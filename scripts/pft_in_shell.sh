#!/bin/sh
# A pft run with scrubd switched on by sysctl(8), inside `vmemu shell`, where
# /proc/sys/vm and /proc/meminfo are the emulator's:
#   vmemu shell ./mountpoint -- scripts/pft_in_shell.sh
#   scripts/pft_in_shell.sh ./mountpoint      # enters the shell itself
# PFT_BYTES (default 256M) and PFT_THREADS (default "1 2") size the jobs;
# VMEMU is the vmemu command (default: vmemu).
set -e
if [ -z "$VMEMU_MOUNTPOINT" ]; then
  # Not in the shell yet: re-run this script inside it.
  exec ${VMEMU:-vmemu} shell "${1:-./mountpoint}" -- "$0" "$@"
fi
M=$VMEMU_MOUNTPOINT            # set by vmemu shell; the mount stays reachable inside
old_start=$(sysctl -n vm.scrub_start)
old_stop=$(sysctl -n vm.scrub_stop)
trap 'sysctl -q -w vm.scrub_stop="$old_stop" vm.scrub_start="$old_start"' EXIT
sysctl -w vm.scrub_stop=4 vm.scrub_start=6
echo "before: $(grep -E '^Mem(Free|Zero):' /proc/meminfo | tr -s ' ' | paste -sd ' ')"
first=1
for t in ${PFT_THREADS:-1 2}; do
  echo "bytes=${PFT_BYTES:-256M} threads=$t" > "$M/proc/vmemu/fault"
  { IFS= read -r title; IFS= read -r row; } < "$M/proc/vmemu/fault"
  if [ $first = 1 ]; then echo "$title"; first=0; fi
  echo "$row"
done
echo "after:  $(grep -E '^Mem(Free|Zero):' /proc/meminfo | tr -s ' ' | paste -sd ' ')"
