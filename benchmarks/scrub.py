#!/usr/bin/env python3
"""scrubd clearing real memory in blocks of order >= 4 on x86-64, in bytes per
host second, next to one plain memset of the same number of bytes in the
same run (both on memory the host has already faulted in).

    python benchmarks/scrub.py [--smoke]
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import table  # noqa: E402

from vmemu.machine import Machine  # noqa: E402
from vmemu.profiles import load_profile  # noqa: E402


def scrub_rate(memory: str) -> tuple[int, float]:
    prof = load_profile("x86-64", overrides={"machine.node_memory": memory})
    m = Machine(prof, backing="real", poison_boot=True)     # pre-fault the arena
    m.sysctl["scrub_stop"] = 4
    t = time.perf_counter()
    m.set_sysctl("scrub_start", 4)
    m.run_until_idle()
    dt = time.perf_counter() - t
    zeroed = sum(d.pages_zeroed() for d in m.scrub.daemons) * m.page_size
    assert m.counters()["prezero_verify_fail"] == 0
    return zeroed, dt


def memset_rate(nbytes: int) -> float:
    buf = mmap.mmap(-1, nbytes)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    ctypes.memset(addr, 0xAA, nbytes)                          # pre-fault
    t = time.perf_counter()
    ctypes.memset(addr, 0, nbytes)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    zeroed, dt = scrub_rate("64M" if args.smoke else "2G")
    base = memset_rate(zeroed)
    ours, plain = zeroed / dt, zeroed / base
    print(table([("scrubd, order >= 4, bytes / host s", f"{ours / 1e9:.2f} GB/s",
                  f"{plain / 1e9:.2f} GB/s", f"{ours / plain:.0%}")],
                ("measure", "vmemu", "plain memset", "ratio")))
    print(f"({zeroed / 2**20:.0f} MiB zeroed; floor 50%, target 70%)")


if __name__ == "__main__":
    main()
