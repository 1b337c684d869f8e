#!/bin/sh
# Watch zeroed vs unzeroed free memory, like watch(1) but a bounded loop:
#   scripts/watch_zero.sh [MOUNTPOINT] [COUNT] [INTERVAL_S]
# One block per sample: MemFree/MemZero from proc/meminfo, then the pages on
# the zeroed and not-zeroed free lists of each zone from proc/vmemu/zeroinfo
# (rows "Node N, zone Z, type Zeroed|NotZeroed" + one count per order).
set -e
M=${1:-./mountpoint}
COUNT=${2:-10}
INTERVAL=${3:-1}
i=0
while [ "$i" -lt "$COUNT" ]; do
  awk -v up="$(cut -d' ' -f1 "$M/proc/uptime")" '
    /^MemFree:/ { free = $2 } /^MemZero:/ { zero = $2 }
    END { printf "uptime %s s  MemFree %d kB  MemZero %d kB  zeroed %.1f%%\n",
                 up, free, zero, free ? 100 * zero / free : 0 }' "$M/proc/meminfo"
  awk 'NR > 1 {
         gsub(",", ""); pages = 0
         for (o = 0; 7 + o <= NF; o++) pages += $(7 + o) * 2 ^ o
         printf "  node %s zone %-8s %-9s %12d pages\n", $2, $4, $6, pages
       }' "$M/proc/vmemu/zeroinfo"
  i=$((i + 1))
  if [ "$i" -lt "$COUNT" ]; then sleep "$INTERVAL"; fi
done
