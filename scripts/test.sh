#!/usr/bin/env bash
# Install what the tests need on a fresh Debian/Ubuntu machine and run the whole suite.
#   scripts/test.sh                 # everything
#   scripts/test.sh tests/test_x.py # pytest arguments pass through (-n 0: one process)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VMEMU_VENV:-.venv}

. scripts/lib/packages.sh
need_packages test.sh "fusermount3 fuse3" "lib:libfuse3 libfuse3-3" "sysctl procps" \
  "unshare util-linux" "gcc gcc libc6-dev" "py:venv python3-venv" "py:headers python3-dev" \
  "numactl numactl" "mpstat sysstat"     # tests/test_tools.py: the tools inside vmemu shell
# Optional: tests/test_exporter_formats.py runs the real node_exporter when it is
# installed (a few seconds with apt) and skips that one test otherwise.
if ! command -v prometheus-node-exporter >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  ne=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-node-exporter)
  "${ne[@]}" >/dev/null 2>&1 || { apt-get update -qq && "${ne[@]}" >/dev/null; } ||
    echo "test.sh: warning: could not install prometheus-node-exporter" >&2
fi
[ -e /dev/fuse ] || echo "test.sh: warning: /dev/fuse is missing; FUSE tests will fail" >&2

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip >/dev/null
# cluster: tests/test_sweep.py starts a real dask scheduler and workers; plot: the plots are drawn
"$VENV/bin/pip" install -q -e '.[test,cluster,plot]'

set +e
# one worker per host CPU (pytest-xdist); a file's tests run in one worker, in order
"$VENV/bin/python" -m pytest -n auto --dist loadfile "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
  echo "test.sh: pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit $rc
