#!/usr/bin/env python3
"""Allocator throughput on x86-64 with real memory, next to the host kernel's
own anonymous fault rate measured in the same run; and the altix-512 boot.

    python benchmarks/alloc.py [--smoke]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

sys.path.insert(0, __import__("os").path.dirname(__file__))
from common import fmt, host_fault_rate, table  # noqa: E402

from vmemu.machine import Machine  # noqa: E402
from vmemu.mm.gfp import GFP_HIGHUSER, GFP_ZERO  # noqa: E402

BOOT_PROBE = """
import json, time
t = time.perf_counter()
from vmemu.machine import Machine
m = Machine("altix-512")
print(json.dumps({"boot_s": time.perf_counter() - t,
                  "rss_mib": int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024}))
"""


def pairs_per_second(n: int) -> float:
    m = Machine("x86-64", backing="real")
    cpu, alloc, free = m.cpus[0], m.alloc.alloc_pages, m.alloc.free_pages
    t = time.perf_counter()
    for _ in range(n):
        free(cpu, alloc(cpu, 0, GFP_HIGHUSER), 0)
    return n / (time.perf_counter() - t)


def zero_allocs_per_second(n: int) -> float:
    m = Machine("x86-64", backing="real")
    cpu, alloc = m.cpus[0], m.alloc.alloc_pages
    t = time.perf_counter()
    for _ in range(n):
        alloc(cpu, 0, GFP_HIGHUSER | GFP_ZERO)
    rate = n / (time.perf_counter() - t)
    assert m.counters()["prezero_verify_fail"] == 0
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script runs")
    args = ap.parse_args()
    n = 20_000 if args.smoke else 300_000
    pairs = pairs_per_second(n)
    zeros = zero_allocs_per_second(n)
    host = host_fault_rate(64 << 20 if args.smoke else 1 << 30)
    boot = json.loads(subprocess.run([sys.executable, "-c", BOOT_PROBE], capture_output=True,
                                     text=True, check=True).stdout)
    rows = [
        ("order-0 alloc+free pairs / host s", fmt(pairs), "300,000 (floor)"),
        ("__GFP_ZERO order-0 allocs / host s", fmt(zeros), "-"),
        ("host kernel anon faults / s", fmt(host) if host else "no cc", "-"),
        ("altix-512 boot, s", f"{boot['boot_s']:.3f}", "2 (limit)"),
        ("altix-512 boot RSS, MiB", f"{boot['rss_mib']:.0f}", "256 (limit)"),
    ]
    print(table(rows, ("measure", "vmemu", "target")))


if __name__ == "__main__":
    main()
