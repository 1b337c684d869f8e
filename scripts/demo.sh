#!/bin/sh
# A narrated session through the mount with nothing but echo and cat.
#   scripts/demo.sh [MOUNTPOINT]      (mount first: scripts/start.sh)
set -e
M=${1:-./mountpoint}
say() { echo; echo "### $*"; }

say "A freshly booted machine: every free block is NOT_ZEROED, in the highest orders"
cat "$M/proc/buddyinfo"
cat "$M/proc/vmemu/zeroinfo"

say "meminfo: MemZero right after MemFree (the prezeroing patch's line)"
cat "$M/proc/meminfo"

say "Fault 100000 pages (pft, 1 thread): every page is cleared in the fault path"
echo 100000 > "$M/proc/vmemu/fault"
cat "$M/proc/vmemu/fault"

say "The pages came back at exit, freed to the per-CPU lists first, then as NOT_ZEROED"
cat "$M/proc/vmemu/zeroinfo"
cat "$M/proc/vmstat"

say "Turn scrubd on: scrub_start is an order; a free that coalesces to it wakes scrubd"
# scrubd then zeroes NOT_ZEROED blocks of order >= scrub_stop, highest first, on idle CPUs.
echo 6 > "$M/proc/sys/vm/scrub_start"
cat "$M/proc/sys/vm/scrub_start" "$M/proc/sys/vm/scrub_stop" "$M/proc/sys/vm/scrub_load"
cat "$M/proc/vmemu/zeroinfo"

say "Fault again: with zeroed blocks available the fault path skips the clear"
echo 100000 > "$M/proc/vmemu/fault"
cat "$M/proc/vmemu/fault"
cat "$M/proc/vmemu/zeroinfo"

say "Turn scrubd off again (any scrub_start >= MAX_ORDER)"
echo 99 > "$M/proc/sys/vm/scrub_start"
cat "$M/proc/sys/vm/scrub_start"

say "Bad input is refused like the kernel refuses it"
echo abc > "$M/proc/sys/vm/scrub_start" 2>/dev/null || echo "scrub_start: refused (EINVAL)"
echo 'pages=10 threads=99' > "$M/proc/vmemu/fault" 2>/dev/null || echo "fault: refused (EINVAL)"
