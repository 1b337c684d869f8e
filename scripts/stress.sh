#!/usr/bin/env bash
# Load on a mounted vmemu: CLIENTS concurrent shell clients, each stopping
# after SECONDS, read files with cat, write valid sysctl values with echo and
# now and then start a small fault job.  At the end: operations done, errors
# seen, and the daemon's RSS before and after (VmRSS of its /proc/PID/status).
#   scripts/stress.sh CLIENTS SECONDS MOUNTPOINT
#   VMEMU="python -m vmemu.cli" scripts/stress.sh 16 10 ./mountpoint
set -u
if [ $# -ne 3 ]; then
  echo "usage: $0 CLIENTS SECONDS MOUNTPOINT" >&2
  exit 2
fi
CLIENTS=$1 SECS=$2 M=$3
VMEMU=${VMEMU:-vmemu}
pid=$($VMEMU status "$M" | awk '$1 == "pid:" {print $2}')
if [ -z "$pid" ] || [ "$pid" = "-" ]; then
  echo "stress.sh: $M is not mounted (vmemu status)" >&2
  exit 1
fi
rss() { awk '$1 == "VmRSS:" {print $2}' "/proc/$pid/status"; }

READS=(proc/meminfo proc/vmstat proc/buddyinfo proc/zoneinfo proc/stat proc/loadavg proc/uptime
       proc/vmemu/zeroinfo proc/vmemu/fault proc/sys/vm/scrub_start proc/sys/vm/scrub_stop
       proc/sys/vm/scrub_load sys/devices/system/node/node0/meminfo sys/devices/system/cpu/online
       sys/kernel/mm/prezero/policy sys/kernel/mm/prezero/scrubd/node0/state
       sys/kernel/debug/fail_page_alloc/probability)
WRITES=("11 proc/sys/vm/scrub_start" "6 proc/sys/vm/scrub_start" "2 proc/sys/vm/scrub_stop"
        "3 proc/sys/vm/scrub_stop" "999 proc/sys/vm/scrub_load" "50 proc/sys/vm/scrub_load")

client() {
  local id=$1 ops=0 errs=0 jobs=0 i=0 end=$((SECONDS + SECS)) f w
  while [ $SECONDS -lt $end ]; do
    i=$((i + 1))
    for f in "${READS[@]}"; do
      cat "$M/$f" > /dev/null 2>&1 || { errs=$((errs + 1)); echo "client $id: cat $f failed" >&2; }
      ops=$((ops + 1))
    done
    w=${WRITES[$(( (id + i) % ${#WRITES[@]} ))]}
    echo "${w%% *}" 2>/dev/null > "$M/${w#* }" || { errs=$((errs + 1)); echo "client $id: echo $w failed" >&2; }
    ops=$((ops + 1))
    if [ $(( (id + i) % 10 )) -eq 0 ]; then
      echo "pages=64 threads=1" 2>/dev/null > "$M/proc/vmemu/fault" || { errs=$((errs + 1)); echo "client $id: fault job failed" >&2; }
      ops=$((ops + 1)) jobs=$((jobs + 1))
    fi
  done
  echo "$ops $errs $jobs"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
before=$(rss)
start=$SECONDS
for c in $(seq 1 "$CLIENTS"); do
  client "$c" > "$tmp/$c" &
done
wait
after=$(rss)
cat "$tmp"/* | awk -v c="$CLIENTS" -v s="$((SECONDS - start))" -v b="$before" -v a="$after" -v p="$pid" '
  { ops += $1; errs += $2; jobs += $3 }
  END {
    printf "clients=%d seconds=%d operations=%d fault_jobs=%d errors=%d\n", c, s, ops, jobs, errs
    printf "daemon pid=%d rss_before_kb=%d rss_after_kb=%d growth_kb=%d\n", p, b, a, a - b
    exit errs > 0
  }'
