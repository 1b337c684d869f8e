"""Rows of the host pft (pft.c): the job check, the run, and its output
read back as pft's JobResult, so vmemu.pft.report formats host rows and
emulated rows alike."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field, replace

from ..pft.job import JobResult
from .build import binary

PACKAGE = "vmemu.hostpft"
FIELDS = ("bytes", "rep", "threads", "cachelines", "page_size", "pages", "user_ns", "system_ns", "wall_ns",
          "exit_ns", "minflt")
TIMEOUT_S = 600


class HostError(Exception):
    """A host row that could not run; the message is one line."""


@dataclass
class HostResult(JobResult):
    """A host row: pft's row plus what only the host knows (pft -v)."""
    page_size: int = field(default=4096, compare=False)
    exit_ns: int = field(default=0, compare=False)      # the munmaps' wall time (the task's exit)
    minflt: int = field(default=0, compare=False)       # minor faults counted by the kernel


def host_cpus() -> list[int]:
    """The CPUs this process may run on, in order: thread i runs on the i-th."""
    return sorted(os.sched_getaffinity(0))


def line_size() -> int:
    """The cache line, the unit pft's -c counts (64 where sysfs does not say)."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index0/coherency_line_size") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 64


def check_host_job(nbytes: int, threads: int, rep: int, cachelines: int) -> None:
    """HostError for a job this host cannot run (pft.c would refuse it)."""
    from ..mm.memory import host_bytes_available, human_bytes
    page, cpus, lines = os.sysconf("SC_PAGESIZE"), len(host_cpus()), os.sysconf("SC_PAGESIZE") // line_size()
    if threads < 1 or threads > cpus:
        raise HostError(f"threads={threads}: this host lets pft run on {cpus} CPUs (one thread each)")
    if rep < 1:
        raise HostError("rep must be a positive integer")
    if not 1 <= cachelines <= lines:
        raise HostError(f"cachelines={cachelines}: a {page}-byte page has {lines} lines of {line_size()} bytes, "
                        "and the host pft touches at least one (an untouched page never faults)")
    if nbytes // page < threads:
        raise HostError(f"{nbytes} bytes is less than one {page}-byte page per thread")
    if nbytes > host_bytes_available():
        raise HostError(f"{human_bytes(nbytes)} per repetition, but this host has "
                        f"{human_bytes(host_bytes_available())} of memory available")


def run_host_row(nbytes: int, threads: int = 1, rep: int = 1, cachelines: int = 1,
                 bzero: bool = False) -> HostResult:
    """One row of pft on this host's kernel."""
    check_host_job(nbytes, threads, rep, cachelines)
    cmd = [binary(PACKAGE, "pft.c"), "-b", str(nbytes), "-f", str(threads), "-r", str(rep), "-c",
           str(cachelines), "-l", str(line_size()), "-p", ",".join(map(str, host_cpus()))]
    try:
        p = subprocess.run(cmd + (["-z"] if bzero else []), capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise HostError(f"the host pft took more than {TIMEOUT_S} s") from None
    if p.returncode:
        lines = p.stderr.strip().splitlines()
        raise HostError(lines[-1] if lines else f"the host pft failed (exit code {p.returncode})")
    return parse_row(p.stdout)


def parse_row(text: str) -> HostResult:
    """pft.c's line of key=value pairs as a HostResult."""
    try:
        values = dict(item.split("=", 1) for item in text.split())
        row = {name: int(values[name]) for name in FIELDS}
    except (KeyError, ValueError):
        raise HostError(f"unexpected output from the host pft: {text.strip()[:120]!r}") from None
    return HostResult(row["bytes"], row["rep"], row["threads"], row["cachelines"], row["pages"], row["user_ns"],
                      row["system_ns"], row["wall_ns"], cleared=row["pages"], page_size=row["page_size"],
                      exit_ns=row["exit_ns"], minflt=row["minflt"])


def best_of(n: int, *args, **kw) -> HostResult:
    """The least disturbed of ``n`` runs of one row, figure by figure: a
    run that other work on the host disturbed is slower, never faster, but
    sharing the CPUs stretches its wall time and polluting its caches its
    CPU time, not always in the same run.  So the CPU times (user, system,
    the exit within them) are those of the run with the least CPU time,
    the wall time that of the shortest run."""
    runs = [run_host_row(*args, **kw) for _ in range(n)]
    cpu = min(runs, key=lambda r: r.user_ns + r.system_ns)
    return replace(cpu, wall_ns=min(r.wall_ns for r in runs))


def verbose_line(r: HostResult) -> str:
    """hostpft -v: how the row's faults were served, in one line."""
    n = lambda k, word: f"{k} {word}" + ("" if k == 1 else "s")
    per_thread = r.pages // r.rep // r.threads
    return (f"hostpft: this host's kernel, {n(r.threads, 'thread')} x {per_thread} pages of {r.page_size} bytes, "
            f"{n(r.rep, 'repetition')}, {n(r.cachelines, 'cache line')} a page: {r.pages} faults expected, "
            f"{r.minflt} counted by the kernel (MADV_NOHUGEPAGE: one a page); the exits (munmap) took "
            f"{r.exit_ns / 1e9:.3f} s")
