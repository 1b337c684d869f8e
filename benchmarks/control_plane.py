#!/usr/bin/env python3
"""Control-plane speed through the mount, next to the real /proc, in one run.

    python benchmarks/control_plane.py [MOUNTPOINT] [--seconds S] [--during-job]

Without MOUNTPOINT a temporary x86-64 mount is made (and removed) through the
CLI; --fuse-threads single|multi picks the daemon's FUSE loop for it.
Rates swing 2x with CPU placement: compare rows of one run only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time


def rate(fn, seconds: float) -> float:
    """Calls of fn per second over about `seconds` of wall time."""
    n, end = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while True:
        for _ in range(20):
            fn()
        n += 20
        now = time.perf_counter()
        if now >= end:
            return n / (now - start)


def read_file(path: str):
    def once():
        fd = os.open(path, os.O_RDONLY)
        try:
            while os.read(fd, 65536):
                pass
        finally:
            os.close(fd)
    return once


def write_file(path: str, data: bytes):
    def once():
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    return once


def latency_during_job(mp: str, seconds: float) -> tuple[int, float, float]:
    """Reads of proc/buddyinfo while a long fault job runs: (reads, max s, job s)."""
    job = threading.Thread(target=write_file(os.path.join(mp, "proc/vmemu/fault"), b"bytes=1G\n"))
    read = read_file(os.path.join(mp, "proc/buddyinfo"))
    t0 = time.perf_counter()
    job.start()
    n, worst = 0, 0.0
    while job.is_alive():
        t = time.perf_counter()
        read()
        worst = max(worst, time.perf_counter() - t)
        n += 1
    job.join()
    return n, worst, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mountpoint", nargs="?")
    ap.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    ap.add_argument("--fuse-threads", choices=("multi", "single"), default="multi")
    ap.add_argument("--during-job", action="store_true", help="also time reads during a 1 GiB fault job")
    args = ap.parse_args()
    vmemu = [sys.executable, "-m", "vmemu.cli"]
    mp, own = args.mountpoint, False
    if mp is None:
        mp, own = tempfile.mkdtemp(prefix="vmemu-bench-"), True
        subprocess.run([*vmemu, "mount", mp, "--profile", "x86-64", "--fuse-threads", args.fuse_threads],
                       check=True, stdout=subprocess.DEVNULL)
    try:
        start = os.path.join(mp, "proc/sys/vm/scrub_start")
        with open(start) as f:
            old = f.read().encode()
        rows = [
            ("open+read+close /proc/buddyinfo (real)", rate(read_file("/proc/buddyinfo"), args.seconds)),
            ("open+read+close proc/buddyinfo (mount)", rate(read_file(os.path.join(mp, "proc/buddyinfo")), args.seconds)),
            ("open+read+close proc/meminfo (mount)", rate(read_file(os.path.join(mp, "proc/meminfo")), args.seconds)),
            ("echo N > proc/sys/vm/scrub_start (mount)", rate(write_file(start, old), args.seconds)),
        ]
        # A real sysctl written with its own value, where /proc/sys is writable.
        real = "/proc/sys/vm/overcommit_ratio"
        try:
            with open(real) as f:
                cur = f.read().encode()
            rows.append((f"echo N > {real} (real, same value)", rate(write_file(real, cur), args.seconds)))
        except OSError as e:
            rows.append((f"echo N > {real} (real): {e.strerror}", float("nan")))
        print(f"{'operation':<52} {'per second':>12}")
        for name, r in rows:
            print(f"{name:<52} {r:12.0f}")
        if args.during_job:
            n, worst, job_s = latency_during_job(mp, args.seconds)
            print(f"{'reads of proc/buddyinfo during a 1 GiB fault job':<52} {n / job_s:12.0f}"
                  f"   (job {job_s:.2f} s, {n} reads, slowest {worst * 1000:.1f} ms)")
    finally:
        if own:
            subprocess.run([*vmemu, "umount", mp], check=False)
            os.rmdir(mp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
