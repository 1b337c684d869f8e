#!/usr/bin/env python3
"""psutil on the emulated machine: point PROCFS_PATH at the mount's proc.

    vmemu mount ./mountpoint --profile altix-8
    python3 scripts/psutil_example.py ./mountpoint
"""

import os
import sys

import psutil

mountpoint = sys.argv[1] if len(sys.argv) > 1 else "./mountpoint"
# psutil reads <PROCFS_PATH>/meminfo, vmstat and stat for these calls.
psutil.PROCFS_PATH = os.path.join(os.path.abspath(mountpoint), "proc")

vm = psutil.virtual_memory()
print(f"memory: total {vm.total} free {vm.free} available {vm.available} used {vm.used}")
sw = psutil.swap_memory()
print(f"swap:   total {sw.total} sin {sw.sin} sout {sw.sout}")
cpus = psutil.cpu_times(percpu=True)
print(f"cpus:   {len(cpus)}")
for i, t in enumerate(cpus):
    print(f"  cpu{i}: user {t.user:.2f} s system {t.system:.2f} s idle {t.idle:.2f} s")
st = psutil.cpu_stats()
print(f"stats:  ctx_switches {st.ctx_switches} interrupts {st.interrupts}")
print(f"boot:   {psutil.boot_time():.0f}")
