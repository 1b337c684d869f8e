#!/usr/bin/env python3
"""Every performance target of vmemu in one run, as one table (ours,
baseline, ratio, target), each ratio measured in this run on this machine.

    python benchmarks/run_all.py            # the full run (a few minutes)
    python benchmarks/run_all.py --smoke    # tiny sizes: checks that it all runs (CI)
    python benchmarks/run_all.py --json out.json

Rows:
- fault path: pft -g 1 -r 1 -f 1 --kernel stock on x86-64 with real memory
  (run_job host time: faults, clearing, verification and exit), against the
  host kernel's own anonymous faults (hostfault.c), rounds interleaved;
- zeroing: scrubd and the --prezeroed set-up against one plain memset;
- control plane: open+read+close of proc/buddyinfo through the mount,
  against LXCFS's /proc/meminfo (when lxcfs is installed) and the real
  /proc/buddyinfo (the ceiling);
- scale: altix-512 mount time and daemon RSS, a 64 GiB 64-thread pft job;
- cost growth: host time per fault from 2^16 to 2^22 faults, mount time and
  RSS from 1 GiB to 4 TiB;
- host memory: the RSS of an idle altix-8 daemon with every free page
  zeroed, before and after a job, the peak RSS of pft's 4 GiB run, and how
  fast zeroing by giving memory back runs next to memset;
- whole runs: `vmemu pft --profile x86-64 --kernel stock -g 1 -r 1 -f 1` as a
  whole process (Python start-up and machine boot included) against the
  host kernel's whole C process that maps 1 GiB, writes every page and
  unmaps it (hostfault.c), rounds interleaved; and the seed's table
  (`vmemu pft --compare-seed`: its nine rows, metadata-only, rows in
  parallel as pft runs them), wall and CPU time of the whole process.

Timings on a shared machine are noisy: every rate is the best of several
interleaved rounds, and the median is printed next to it.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import mmap
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from common import build_hostfault, fmt, host_fault_rate, table  # noqa: E402
from control_plane import rate, read_file  # noqa: E402

VMEMU = [sys.executable, "-m", "vmemu.cli"]
GiB = 1 << 30


def best_and_median(values: list[float]) -> tuple[float, float]:
    return max(values), statistics.median(values)


# -- fault path ---------------------------------------------------------------

def pft_rates(nbytes: int) -> tuple[float, float]:
    """Emulated faults per host second of pft.run_job (machine set-up excluded):
    the first job on a fresh machine (its host memory is faulted in by the
    job's clears), and a second job on the same machine (a daemon's steady
    state: the host pages are there already)."""
    from vmemu import pft
    m = pft.prepare_machine("x86-64", 0, "stock", backing="real")
    rates = []
    try:
        for _ in range(2):
            before = m.counters()["prezero_clear_pages"]
            t = time.perf_counter()
            r = pft.run_job(m, nbytes, 1, 1, 1)
            dt = time.perf_counter() - t
            assert m.counters()["prezero_verify_fail"] == 0
            assert m.counters()["prezero_clear_pages"] - before == r.pages   # every page really cleared
            rates.append(r.pages / dt)
    finally:
        m.close()
    return rates[0], rates[1]


def fault_path(smoke: bool) -> list[tuple]:
    nbytes = 16 << 20 if smoke else GiB
    rounds = 1 if smoke else 5
    fresh, warm, host = [], [], []
    for _ in range(rounds):                    # interleaved: the same load for both
        f, w = pft_rates(nbytes)
        fresh.append(f)
        warm.append(w)
        h = host_fault_rate(nbytes)
        if h is not None:
            host.append(h)
    size = "1 GiB" if not smoke else "16 MiB (smoke)"
    rows = []
    for label, ours in (("fresh machine", fresh), ("second job, host memory in", warm)):
        o_best, o_med = best_and_median(ours)
        row = (f"fault path: pft {size} -f 1 stock x86-64, {label}, faults / host s",
               f"{fmt(o_best)} (median {fmt(o_med)})")
        if host:
            h_best, h_med = best_and_median(host)
            row += (f"{fmt(h_best)} (median {fmt(h_med)}) host kernel", f"{o_best / h_best:.2f}",
                    ">= 1.0 (floor 0.5)")
        else:
            row += ("no C compiler", "-", ">= 1.0 (floor 0.5)")
        rows.append(row)
    return rows


# -- zeroing ------------------------------------------------------------------

def memset_seconds(nbytes: int) -> float:
    buf = mmap.mmap(-1, nbytes)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    ctypes.memset(addr, 0xAA, nbytes)                          # pre-fault, as the arenas are
    t = time.perf_counter()
    ctypes.memset(addr, 0, nbytes)
    dt = time.perf_counter() - t
    del addr
    return dt


def zeroing(smoke: bool) -> list[tuple]:
    from vmemu.machine import Machine
    from vmemu.profiles import load_profile
    prof = load_profile("x86-64", overrides={"machine.node_memory": "64M" if smoke else "2G"})
    rows = []
    for name in ("scrubd, order >= 4", "--prezeroed set-up (prezero_all)"):
        best = 0.0
        plain = 0.0
        for _ in range(1 if smoke else 3):
            m = Machine(prof, backing="real", poison_boot=True)    # every page poisoned (marks)
            t = time.perf_counter()
            if name.startswith("scrubd"):
                m.sysctl["scrub_stop"] = 4
                m.set_sysctl("scrub_start", 4)
                m.run_until_idle()
                nbytes = sum(d.pages_zeroed() for d in m.scrub.daemons) * m.page_size
            else:
                nbytes = m.prezero_all() * m.page_size
            dt = time.perf_counter() - t
            assert m.counters()["prezero_verify_fail"] == 0
            m.close()
            best = max(best, nbytes / dt)
            plain = max(plain, nbytes / memset_seconds(nbytes))
        rows.append((f"zeroing: {name}, bytes / host s", f"{best / 1e9:.2f} GB/s",
                     f"{plain / 1e9:.2f} GB/s memset", f"{best / plain:.2f}", ">= 0.70"))
    return rows


# -- mounts ---------------------------------------------------------------------

class Mount:
    """A vmemu mount made through the CLI, with its daemon's pid."""

    def __init__(self, profile: str, threads: str = "multi", env: dict | None = None):
        self.mp = tempfile.mkdtemp(prefix="vmemu-bench-")
        t = time.perf_counter()
        subprocess.run([*VMEMU, "mount", self.mp, "--profile", profile, "--fuse-threads", threads],
                       check=True, stdout=subprocess.DEVNULL, env=env)
        self.mount_s = time.perf_counter() - t
        from vmemu.mounts import run_files
        with open(run_files(self.mp)["pid"]) as f:
            self.pid = int(f.read())

    def rss_mib(self) -> float:
        with open(f"/proc/{self.pid}/status") as f:
            return int(f.read().split("VmHWM:")[1].split()[0]) / 1024

    def close(self) -> None:
        subprocess.run([*VMEMU, "umount", self.mp], check=False, stdout=subprocess.DEVNULL)
        os.rmdir(self.mp)


def fuse_usable() -> bool:
    if not os.path.exists("/dev/fuse"):
        return False
    try:
        from vmemu.daemon import load_fuse
        load_fuse()
        return True
    except Exception:
        return False


class Lxcfs:
    """LXCFS on a temporary mountpoint, when the lxcfs binary is installed."""

    def __init__(self, install: bool = False):
        self.proc = None
        exe = shutil.which("lxcfs")
        if exe is None and install and os.geteuid() == 0 and shutil.which("apt-get"):
            # Debian's lxcfs, installed for the comparison (its service is not started)
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            subprocess.run(["apt-get", "install", "-y", "-qq", "lxcfs"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            exe = shutil.which("lxcfs")
        if exe is None:
            return
        self.mp = tempfile.mkdtemp(prefix="lxcfs-bench-")
        self.pidfile = os.path.join(tempfile.mkdtemp(prefix="lxcfs-run-"), "lxcfs.pid")
        self.proc = subprocess.Popen([exe, "-f", "-p", self.pidfile, self.mp],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while not os.path.exists(os.path.join(self.mp, "proc/meminfo")):
            if time.monotonic() > end or self.proc.poll() is not None:
                self.close()
                return
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            subprocess.run(["fusermount3", "-u", self.mp], check=False, stderr=subprocess.DEVNULL)
            self.proc = None
        if getattr(self, "mp", None):
            shutil.rmtree(os.path.dirname(self.pidfile), ignore_errors=True)
            try:
                os.rmdir(self.mp)
            except OSError:
                pass


def control_plane(smoke: bool) -> list[tuple]:
    if not fuse_usable():
        return [("control plane", "skipped: no /dev/fuse or libfuse3", "-", "-", ">= 2.0")]
    seconds, rounds = (0.2, 1) if smoke else (0.6, 7)
    real = read_file("/proc/buddyinfo")
    mounts = {"multi": Mount("x86-64", "multi"), "single": Mount("x86-64", "single")}
    lx = Lxcfs(install=not smoke)
    try:
        fns = {f"vmemu ({t}-threaded FUSE)": read_file(os.path.join(m.mp, "proc/buddyinfo"))
               for t, m in mounts.items()}
        if lx.proc is not None:
            fns["lxcfs /proc/meminfo"] = read_file(os.path.join(lx.mp, "proc/meminfo"))
        fns["real /proc/buddyinfo"] = real
        got: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(rounds):                        # interleaved: the same load for all
            for k, fn in fns.items():
                got[k].append(rate(fn, seconds))
    finally:
        for m in mounts.values():
            m.close()
        lx.close()
    med = {k: statistics.median(v) for k, v in got.items()}
    base = med.get("lxcfs /proc/meminfo")
    rows = []
    for k in fns:
        if k.startswith("vmemu"):
            rows.append((f"control plane: open+read+close proc/buddyinfo, {k}, / s", fmt(med[k]),
                         f"{fmt(base)} lxcfs" if base else "lxcfs not installed",
                         f"{med[k] / base:.2f}" if base else "-", ">= 2.0 x lxcfs"))
    rows.append(("control plane: real /proc/buddyinfo (ceiling), / s", fmt(med["real /proc/buddyinfo"]),
                 "-", f"{med['vmemu (multi-threaded FUSE)'] / med['real /proc/buddyinfo']:.3f}", "-"))
    return rows


# -- scale and cost growth ------------------------------------------------------

def profile_file(tmp: str, nodes: int, node_memory: str) -> str:
    path = os.path.join(tmp, f"altix-{nodes}x{node_memory}.toml")
    with open(path, "w") as f:
        f.write(f'name = "altix-{nodes}x{node_memory}"\ndescription = "benchmark machine"\n'
                f'inherit = "altix-512"\n\n[machine]\n'
                f'nodes = {{ value = {nodes}, source = "benchmark" }}\n'
                f'node_memory = {{ value = "{node_memory}", source = "benchmark" }}\n')
    return path


def scale(smoke: bool) -> list[tuple]:
    from vmemu import pft
    rows = []
    if fuse_usable():
        m = Mount("altix-512")
        try:
            rows.append(("scale: mount altix-512 (4 TiB, 512 CPUs), s", f"{m.mount_s:.2f}", "-", "-", "< 2"))
            rows.append(("scale: altix-512 daemon RSS, MiB", f"{m.rss_mib():.0f}", "-", "-", "< 256"))
        finally:
            m.close()
    nbytes = (1 if smoke else 64) * GiB
    machine = pft.prepare_machine("altix-512", 0, "stock", backing="none")
    t = time.perf_counter()
    r = pft.run_job(machine, nbytes, 64, 1, 1)
    dt = time.perf_counter() - t
    rows.append((f"scale: altix-512 pft {nbytes // GiB} GiB, 64 threads: faults / host s",
                 f"{fmt(r.pages / dt)} ({dt:.0f} s)", "-", "-", "completes"))
    return rows


def growth(smoke: bool) -> list[tuple]:
    from vmemu import pft
    from vmemu.profiles import load_profile
    exps = (12, 13, 14) if smoke else (16, 18, 20, 22)
    # twice the memory of the largest job: 4 KiB pages, metadata-only
    memory = f"{(8 << max(exps)) >> 20}G" if not smoke else "256M"
    prof = load_profile("x86-64", overrides={"machine.node_memory": memory, "machine.backing": "none"})
    per = {e: float("inf") for e in exps}
    for _round in range(1 if smoke else 5):     # best of 5 interleaved rounds: the host moves 15% between runs
        for e in exps:
            m = pft.prepare_machine(prof, 0, "stock", backing="none")
            t = time.perf_counter()
            pft.run_job(m, (1 << e) * 4096, 1, 1, 1)
            per[e] = min(per[e], (time.perf_counter() - t) / (1 << e))
            m.close()
    lo = min(per.values())
    rows = [(f"growth: host us per fault at 2^{e} faults (x86-64, metadata-only)", f"{per[e] * 1e6:.2f}",
             f"{lo * 1e6:.2f} (best size)", f"{per[e] / lo:.2f}", "<= 1.20") for e in exps]
    if fuse_usable():
        sizes = (("1G", 1, "1G"), ("16G", 1, "16G")) if smoke else \
            (("1G", 1, "1G"), ("64G", 4, "16G"), ("256G", 16, "16G"), ("1T", 64, "16G"), ("4T", 256, "16G"))
        with tempfile.TemporaryDirectory() as tmp:
            for label, nodes, mem in sizes:
                m = Mount(profile_file(tmp, nodes, mem))
                try:
                    rows.append((f"growth: mount {label} ({nodes} nodes), s / daemon RSS MiB",
                                 f"{m.mount_s:.2f} / {m.rss_mib():.0f}", "-", "-", "< 2 / < 256"))
                finally:
                    m.close()
    return rows


# -- host memory (RSS) -------------------------------------------------------------

def status_mib(pid: int, field: str) -> float:
    """A field of /proc/PID/status (VmRSS, VmHWM) in MiB."""
    with open(f"/proc/{pid}/status") as f:
        return int(f.read().split(f"{field}:")[1].split()[0]) / 1024


def scrub_everything(mp: str) -> float:
    """`echo 6 > scrub_start` as in README's session, then wait until every
    node's kscrubd sleeps again; returns the wait in seconds."""
    t = time.perf_counter()
    subprocess.run(["sh", "-c", f"echo 6 > {mp}/proc/sys/vm/scrub_start"], check=True)
    nodes = glob.glob(os.path.join(mp, "sys/kernel/mm/prezero/scrubd/node*/state"))
    while any(read_text(n).strip() != "sleeping" for n in nodes):
        time.sleep(0.05)                                          # a poll of the daemon's own state
    return time.perf_counter() - t


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def idle_rss(smoke: bool) -> list[tuple]:
    """A daemon's RSS once scrubd has zeroed every free page, on a fresh
    machine and again after a fault job (and its peak during the job)."""
    profile, job = ("x86-64", "bytes=64M threads=2 rep=1") if smoke else ("altix-8", "bytes=1G threads=2 rep=3")
    m = Mount(profile)
    try:
        from vmemu.profiles import load_profile
        machine_mib = load_profile(profile).total_pages * load_profile(profile).machine["page_size"] / 2**20
        scrub_s = scrub_everything(m.mp)
        fresh = status_mib(m.pid, "VmRSS")
        subprocess.run(["sh", "-c", f"echo '{job}' > {m.mp}/proc/vmemu/fault"], check=True)
        peak = status_mib(m.pid, "VmHWM")
        scrub_everything(m.mp)
        after = status_mib(m.pid, "VmRSS")
    finally:
        m.close()
    every = f"{machine_mib:,.0f} every page frame"
    return [(f"rss: idle {profile} daemon, every free page zeroed (scrub_start 6, {scrub_s:.1f} s), MiB",
             f"{fresh:.0f}", every, f"{fresh / machine_mib:.3f}", "< 256"),
            (f"rss: the same after `echo '{job}' > fault` and scrubd again, MiB",
             f"{after:.0f} (peak {peak:.0f} in the job)", every, f"{after / machine_mib:.3f}", "< 256")]


def pft_peak_rss(smoke: bool) -> list[tuple]:
    """The peak RSS (VmHWM) of a vmemu pft run as a user types it; the
    process reports it at its own exit (ru_maxrss would start from this
    process's size at the fork)."""
    args = ["pft", "-b", "64M", "-r", "1", "-f", "1", "--profile", "x86-64"] if smoke else \
        ["pft", "-g", "4", "-r", "3", "-f", "1", "--profile", "altix-8"]
    code = ("import atexit, sys\n"
            "from vmemu.cli import main\n"
            "atexit.register(lambda: sys.stderr.write('VmHWM ' + open('/proc/self/status').read()"
            ".split('VmHWM:')[1].split()[0] + '\\n'))\n"
            f"sys.exit(main({args!r}))\n")
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    dt = time.perf_counter() - t
    peak_gib = int(p.stderr.split("VmHWM ")[1].split()[0]) / 2**20
    job_gib = (64 << 20 if smoke else 4 * GiB) / GiB
    return [(f"rss: peak of vmemu {' '.join(args)} ({dt:.1f} s), GiB", f"{peak_gib:.2f}",
             f"{job_gib:g} the job's memory", f"{peak_gib / job_gib:.2f}", "<= 1.5" if not smoke else "-")]


def release_rates(smoke: bool) -> list[tuple]:
    """Zeroing by giving host memory back: scrubd on a fresh machine (no
    host page backed yet), and one madvise(MADV_DONTNEED) of memory the host
    backs, each next to a memset of as many bytes."""
    from vmemu.machine import Machine
    from vmemu.mm.memory import _MADV_DONTNEED, _madvise
    from vmemu.profiles import load_profile
    prof = load_profile("x86-64", overrides={"machine.node_memory": "64M" if smoke else "2G"})
    scrub, drop, plain = 0.0, 0.0, 0.0
    for _ in range(1 if smoke else 3):                 # interleaved: the same load for all three
        m = Machine(prof, backing="real")
        t = time.perf_counter()
        m.sysctl["scrub_stop"] = 4
        m.set_sysctl("scrub_start", 4)
        m.run_until_idle()
        nbytes = sum(d.pages_zeroed() for d in m.scrub.daemons) * m.page_size
        scrub = max(scrub, nbytes / (time.perf_counter() - t))
        m.close()
        buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)     # as an arena: shared
        addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))                   # memory would stay in shmem
        ctypes.memset(addr, 0xAA, nbytes)                     # backed, as memset_seconds' memory is
        t = time.perf_counter()
        assert _madvise(addr, nbytes, _MADV_DONTNEED) == 0
        drop = max(drop, nbytes / (time.perf_counter() - t))
        del addr
        buf.close()
        plain = max(plain, nbytes / memset_seconds(nbytes))
    return [("zeroing: scrubd, order >= 4, on a fresh machine (no host page backed), bytes / host s",
             f"{scrub / 1e9:.2f} GB/s", f"{plain / 1e9:.2f} GB/s memset", f"{scrub / plain:.2f}", ">= 1.0"),
            ("zeroing: madvise(MADV_DONTNEED) of memory the host backs, bytes / host s",
             f"{drop / 1e9:.2f} GB/s", f"{plain / 1e9:.2f} GB/s memset", f"{drop / plain:.2f}", "-")]


def host_memory(smoke: bool) -> list[tuple]:
    rows = idle_rss(smoke) if fuse_usable() else [("rss: idle daemon", "skipped: no /dev/fuse or libfuse3",
                                                   "-", "-", "< 256")]
    return rows + pft_peak_rss(smoke) + release_rates(smoke)


# -- whole runs -----------------------------------------------------------------

def process_seconds(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (its own and its children's) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def whole_run(smoke: bool) -> list[tuple]:
    from vmemu.lib.cmdline import memparse
    size, rounds = ("16M", 1) if smoke else ("1G", 7)
    pft_cmd = [*VMEMU, "pft", "--profile", "x86-64", "--kernel", "stock", "-b", size, "-r", "1", "-f", "1"]
    ours, host = [], []
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_hostfault(tmp)
        for _ in range(rounds):                # interleaved: the same load for both
            if exe is not None:
                host.append(process_seconds([exe, str(memparse(size))])[0])
            ours.append(process_seconds(pft_cmd)[0])
    o_best, o_med = min(ours), statistics.median(ours)
    label = "-g 1" if not smoke else "-b 16M (smoke)"
    row = (f"whole run: vmemu pft --profile x86-64 --kernel stock {label} -r 1 -f 1, process s",
           f"{o_best:.3f} (median {o_med:.3f})")
    if host:
        h_best, h_med = min(host), statistics.median(host)
        row += (f"{h_best:.3f} (median {h_med:.3f}) C mmap+write+munmap", f"{h_best / o_best:.2f}", ">= 1.0")
    else:
        row += ("no C compiler", "-", ">= 1.0")
    seed = [*VMEMU, "pft", "--compare-seed"] if not smoke else \
        [*VMEMU, "pft", "--profile", "altix-8", "-b", "32M", "-f", "1,2", "--backing", "none"]
    wall, cpu = process_seconds(seed)
    name = "the seed's table (pft --compare-seed: 9 rows, metadata-only)" if not smoke else \
        "pft -b 32M -f 1,2 on altix-8 (smoke)"
    return [row, (f"whole run: {name}, host s (wall / CPU)", f"{wall:.1f} / {cpu:.1f}", "-", "-", "< 20 wall")]


def machine_info() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from vmemu import native
    return (f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, Python {platform.python_version()}, "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; model {native.status()}")


SECTIONS = {"fault": fault_path, "zero": zeroing, "control": control_plane, "scale": scale, "growth": growth,
            "rss": host_memory, "whole": whole_run}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, to check that every benchmark runs")
    ap.add_argument("--only", action="append", choices=list(SECTIONS), help="run only these sections")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = ap.parse_args()
    print(f"machine: {machine_info()}", flush=True)
    rows = []
    for name, fn in SECTIONS.items():
        if args.only and name not in args.only:
            continue
        t = time.perf_counter()
        rows += fn(args.smoke)
        print(f"  [{name}: {time.perf_counter() - t:.0f} s]", file=sys.stderr, flush=True)
    print(table(rows, ("measure", "ours", "baseline", "ratio", "target")))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine_info(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
