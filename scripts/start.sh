#!/usr/bin/env bash
# From a fresh Debian/Ubuntu machine to a mounted emulator:
# installs fuse3 + libfuse3, makes .venv with vmemu, mounts the default profile
# at ./mountpoint and shows a few commands to try.
#   scripts/start.sh [--profile NAME] [other `vmemu mount` options]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VMEMU_VENV:-.venv}

. scripts/lib/packages.sh
need_packages start.sh "fusermount3 fuse3" "lib:libfuse3 libfuse3-3" "py:venv python3-venv" \
  "gcc gcc libc6-dev" "py:headers python3-dev"     # the model compiled by mypyc at the install
[ -e /dev/fuse ] || { echo "start.sh: /dev/fuse is missing (container? run with --device /dev/fuse)" >&2; exit 1; }

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -e '.[top]' >/dev/null      # top: rich, for vmemu top
"$VENV/bin/vmemu" --version | tail -n 1                 # model: compiled (mypyc), or Python and why

M=./mountpoint
if "$VENV/bin/vmemu" status "$M" >/dev/null 2>&1; then
  echo "already mounted:"; "$VENV/bin/vmemu" status "$M"
else
  "$VENV/bin/vmemu" mount "$M" "$@"
fi
cat <<TRY

Try:
  cat $M/proc/buddyinfo $M/proc/vmemu/zeroinfo
  grep -E 'Mem(Total|Free|Zero)' $M/proc/meminfo
  echo 100000 > $M/proc/vmemu/fault && cat $M/proc/vmemu/fault
  echo 'bytes=1G threads=2' > $M/proc/vmemu/fault && cat $M/proc/vmemu/fault
  echo 6 > $M/proc/sys/vm/scrub_start          # scrubd on (order 6 wakes it)
  cat $M/proc/vmstat $M/proc/loadavg $M/proc/uptime
  $VENV/bin/vmemu top $M                       # live: zeroed memory, kscrubd, CPUs (Ctrl-C leaves)
  $VENV/bin/vmemu status $M
  $VENV/bin/vmemu umount $M
TRY
