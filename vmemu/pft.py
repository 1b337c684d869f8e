"""pft, the page fault test of the seed, run on the emulated machine.

A job is ``rep`` repetitions of: a fresh task whose ``threads`` threads, each
on its own CPU, fault their share of ``bytes`` of anonymous memory, touching
``cachelines`` lines of every page; then the task exits and frees it all.
CPU times are the task's (user and system of its threads and its exit);
wall time is virtual time from the job's start to its end.
"""

from __future__ import annotations

import errno
import os
from dataclasses import asdict, dataclass

from .kernel import sched
from .kernel.sched import NSEC_PER_SEC
from .mm.fault import FaultPath, MMStruct

TITLE_2004 = " Gb Rep Threads   User      System     Wall flt/cpu/s fault/wsec"
TITLE_2006 = " Gb Rep Thr CLine  User      System   Wall  flt/cpu/s fault/wsec"
CSV_HEADER = "gb,rep,threads,cachelines,user_s,system_s,wall_s,flt_cpu_s,fault_wsec"


class JobError(OSError):
    """A job that could not run; errno is EINVAL (bad parameters) or ENOMEM."""


@dataclass
class JobResult:
    bytes: int
    rep: int
    threads: int
    cachelines: int
    pages: int
    user_ns: int
    system_ns: int
    wall_ns: int

    @property
    def gb(self) -> int:
        return self.bytes >> 30

    @property
    def flt_cpu_s(self) -> float:
        cpu = self.user_ns + self.system_ns
        return self.pages * NSEC_PER_SEC / cpu if cpu else 0.0

    @property
    def fault_wsec(self) -> float:
        return self.pages * NSEC_PER_SEC / self.wall_ns if self.wall_ns else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(gb=self.gb, user_s=self.user_ns / 1e9, system_s=self.system_ns / 1e9,
                 wall_s=self.wall_ns / 1e9, flt_cpu_s=self.flt_cpu_s, fault_wsec=self.fault_wsec)
        return d


def _secs(ns: int) -> tuple[int, int]:
    ms = (ns + 500_000) // 1_000_000
    return ms // 1000, ms % 1000


def format_2004(r: JobResult) -> str:
    """The seed's row layout, with correct values (the original printed the
    wall time's centiseconds in a 3-digit field; this prints milliseconds)."""
    us, ums = _secs(r.user_ns)
    ss, sms = _secs(r.system_ns)
    ws, wms = _secs(r.wall_ns)
    return (f"{r.gb:3d}{r.rep:3d}{r.threads:4d}{us:4d}.{ums:03d}s{ss:7d}.{sms:03d}s"
            f"{ws:4d}.{wms:03d}s{r.flt_cpu_s:10.3f} {r.fault_wsec:10.3f}")


def format_2006(r: JobResult) -> str:
    def hs(ns):
        cs = (ns + 5_000_000) // 10_000_000
        return cs // 100, cs % 100
    (u, uc), (s, sc), (w, wc) = hs(r.user_ns), hs(r.system_ns), hs(r.wall_ns)
    return (f"{r.gb:3d}{r.rep:4d}{r.threads:4d}{r.cachelines:6d}{u:4d}.{uc:02d}s{s:7d}.{sc:02d}s"
            f"{w:4d}.{wc:02d}s{r.flt_cpu_s:11.3f} {r.fault_wsec:10.3f}")


def format_csv(r: JobResult) -> str:
    return (f"{r.gb},{r.rep},{r.threads},{r.cachelines},{r.user_ns / 1e9:.3f},{r.system_ns / 1e9:.3f},"
            f"{r.wall_ns / 1e9:.3f},{r.flt_cpu_s:.3f},{r.fault_wsec:.3f}")


def check_job(machine, nbytes: int, threads: int, rep: int, cachelines: int) -> None:
    """EINVAL for parameters the job cannot run with."""
    def bad(msg):
        raise JobError(errno.EINVAL, msg)
    for name, value in (("bytes", nbytes), ("threads", threads), ("rep", rep)):
        if not isinstance(value, int) or value <= 0:
            bad(f"{name} must be a positive integer, got {value!r}")
    if threads > len(machine.cpus):
        bad(f"threads={threads} but the machine has {len(machine.cpus)} CPUs")
    lines = machine.page_size // machine.cache_line
    if not 0 <= cachelines <= lines:
        bad(f"cachelines must be in 0..{lines} (a {machine.page_size}-byte page has {lines} lines)")
    if nbytes // machine.page_size < threads:
        bad(f"bytes={nbytes} is less than one page per thread")


def _thread(fault: FaultPath, cpu, mm: MMStruct, npages: int, cachelines: int, failed: list,
            bzero: bool = False, progress=None):
    """One pft thread: every fault is a scheduler step.  While this thread
    is the one the scheduler would resume next anyway (Timeline.solo_bound),
    it goes on without the round-trip: fault_run batches the faults that
    take the fast path, and the next step's fault follows directly, with
    the horizon the scheduler would have set."""
    do_fault, fault_run = fault.do_anonymous_page, fault.fault_run
    timeline = mm.page_table_lock.timeline
    solo_bound = timeline.solo_bound
    # -z: the thread bzero()s the page it just faulted, in user space
    bzero_ns = int(fault.alloc.page_size / fault.alloc.clear_bytes_per_ns) if bzero else 0
    i = 0
    while i < npages:
        if do_fault(cpu, mm, cachelines) is None:
            failed.append(cpu.id)
            break
        if bzero:
            cpu.user(bzero_ns)
        begun = i
        i += 1
        bound = solo_bound()
        # fault_run does nothing once this CPU is at the bound: threads
        # that interleave at every fault skip the call
        if i < npages and cpu.time < bound:
            i += fault_run(cpu, mm, cachelines, npages - i, bzero_ns)
            bound = solo_bound()
        if progress is not None:
            # one tick of 0x1000 per fault index that is a multiple of 0x1000
            for _ in range(((i - 1) >> 12) - ((begun - 1) >> 12)):
                progress.tick(0x1000)
        if cpu.time < bound:
            timeline.horizon = cpu.time       # the next step starts now, as run() would start it
        else:
            yield
    fault.finish_deferred(mm)                 # the real memory of the faults, in order before the thread ends


def _exit(fault: FaultPath, cpu, mm: MMStruct, chunk: int = 256):
    """Task exit in steps of ``chunk`` pages, so daemons woken by the frees
    run concurrently in virtual time."""
    while mm.pages:
        fault.exit_mmap(cpu, mm, chunk)
        yield


def run_job(machine, nbytes: int, threads: int = 1, rep: int = 1, cachelines: int = 1,
            bzero: bool = False, progress=None) -> JobResult:
    """Run a pft job on ``machine`` in virtual time and return its row."""
    check_job(machine, nbytes, threads, rep, cachelines)
    fault = FaultPath(machine.alloc, machine.cost, machine.cache_line)
    pages_per_rep = nbytes // machine.page_size
    per_thread = [pages_per_rep // threads + (1 if t < pages_per_rep % threads else 0)
                  for t in range(threads)]
    # one thread per CPU, filling a node before the next: the 2.6 scheduler
    # places a new thread on its parent's node and balances within it first
    cpus = machine.cpus[:threads]
    # the task's own times (getrusage): kscrubd's time on these CPUs is not pft's
    before = [(c.user_ns, c.system_ns - c.kthread_ns) for c in cpus]
    start = machine.now
    for _ in range(rep):
        mm = MMStruct("pft", machine.timeline, machine.cost, machine.distance)
        machine.claim_cpus(cpus, mm)
        mm.nodes_run.update(cpu.node for cpu in cpus)
        failed: list[int] = []
        threads_of_task = [(cpu, _thread(fault, cpu, mm, n, cachelines, failed, bzero, progress))
                           for cpu, n in zip(cpus, per_thread)]
        leader = cpus[0]
        try:
            end = sched.run(threads_of_task, machine.timeline, machine.events)
            # the other threads are gone; the leader exits and frees everything
            machine.release_cpus(cpus[1:], end)
            leader.time = max(leader.time, end)
            sched.run([(leader, _exit(fault, leader, mm))], machine.timeline, machine.events)
        finally:
            machine.release_cpus(cpus, leader.time)
        machine.now = max(machine.now, leader.time)
        machine.memory.sync()                 # the memory thread's work is part of the job
        if failed:
            raise JobError(errno.ENOMEM, f"out of memory after {sum(per_thread)} pages were asked for "
                                         f"on {machine.profile.name}; every page of the job was freed")
    user = sum(c.user_ns - b[0] for c, b in zip(cpus, before))
    system = sum(c.system_ns - c.kthread_ns - b[1] for c, b in zip(cpus, before))
    return JobResult(nbytes, rep, threads, cachelines, pages_per_rep * rep, user, system,
                     machine.now - start)


# ---------------------------------------------------------------------------
# The seed's experiment

SEED_CSV = "seed-pft-8way.csv"
SCRUB_DEFAULTS = {"scrub_start": 6, "scrub_stop": 2, "scrub_load": 999}


def seed_rows() -> list[dict]:
    """The seed's table (data/seed-pft-8way.csv), one dict per row."""
    import csv
    from importlib.resources import files
    text = files("vmemu.data").joinpath(SEED_CSV).read_text()
    return list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))


def prepare_machine(profile="altix-8", seed: int = 0, kernel: str = "prezero", prezeroed: bool = False,
                    backing: str | None = None, scrub: dict | None = None, bte: bool = False,
                    overrides: dict | None = None):
    """A machine set up as for one pft run.

    ``stock`` is the kernel without the patch: scrubd never runs, so every
    anonymous fault clears its page on the CPU.  ``prezero`` is the patched
    kernel with scrubd set by ``scrub`` (and left to finish on the idle
    machine before the run, as on a machine that had been up a while);
    ``prezeroed`` starts with every free block zeroed.  The seed's runs had
    no hardware zeroing, so the BTE driver is off unless ``bte``."""
    from .machine import Machine
    from .profiles import load_profile
    if isinstance(profile, str):
        profile = load_profile(profile, overrides=overrides)
    m = Machine(profile, seed=seed, backing=backing)
    if m.bte is not None:
        m.bte.enabled = bte
    if kernel == "prezero":
        settings = dict(SCRUB_DEFAULTS, **(scrub or {}))
        m.sysctl["scrub_stop"] = settings["scrub_stop"]
        m.sysctl["scrub_load"] = settings["scrub_load"]
        m.set_sysctl("scrub_start", settings["scrub_start"])
        m.run_until_idle()
    elif kernel != "stock":
        raise ValueError(f"kernel must be 'stock' or 'prezero', not {kernel!r}")
    if prezeroed:
        m.prezero_all()
    return m


def run_row(spec: dict, progress=None) -> JobResult:
    """One row on a fresh machine: ``spec`` holds prepare_machine's keywords
    under "machine" and run_job's under "job"."""
    m = prepare_machine(**spec["machine"])
    try:
        return run_job(m, progress=progress, **spec["job"])
    finally:
        m.close()


def seed_row_spec(row: dict, profile="altix-8", seed: int = 0, backing: str | None = "none",
                  overrides: dict | None = None) -> dict:
    kernel = "stock" if row["kernel"] == "stock" else "prezero"
    return {"machine": dict(profile=profile, seed=seed, kernel=kernel,
                            prezeroed=row["kernel"] == "prezero-allzeroed", backing=backing,
                            overrides=overrides),
            "job": dict(nbytes=int(row["gb"]) << 30, threads=int(row["threads"]), rep=int(row["rep"]),
                        cachelines=1)}


def run_seed_row(row: dict, profile="altix-8", seed: int = 0, backing: str | None = "none",
                 overrides: dict | None = None, progress=None) -> JobResult:
    return run_row(seed_row_spec(row, profile, seed, backing, overrides), progress)


def compare_seed(profile="altix-8", seed: int = 0, backing: str | None = "none",
                 overrides: dict | None = None, progress=None, jobs: int | None = None
                 ) -> list[tuple[dict, JobResult]]:
    """Every seed row next to ours."""
    rows = seed_rows()
    specs = [seed_row_spec(row, profile, seed, backing, overrides) for row in rows]
    return list(zip(rows, run_rows(specs, jobs, progress)))


# ---------------------------------------------------------------------------
# Rows in parallel
#
# Each row of a table runs on a fresh machine of its own, so rows are
# independent: running them in several host processes gives the same rows,
# byte for byte, as running them one after the other, in less host time.

def default_jobs(specs: list[dict]) -> int:
    """One process per host CPU, no more than there are rows, and no more
    machines with real memory than the host has memory available for."""
    import os
    jobs = min(len(specs), len(os.sched_getaffinity(0)))
    real = [_profile_of(s) for s in specs]
    real = [p for p, s in zip(real, specs) if (s["machine"].get("backing") or p.machine["backing"]) == "real"]
    if real and jobs > 1:
        import psutil
        from .profiles import parse_size
        biggest = max(p.machine["nodes"] * parse_size(p.machine["node_memory"]) for p in real)
        jobs = min(jobs, psutil.virtual_memory().available // biggest)
    return max(1, jobs)


def _profile_of(spec: dict):
    from .profiles import load_profile
    profile = spec["machine"]["profile"]
    return load_profile(profile, spec["machine"].get("overrides")) if isinstance(profile, str) else profile


def run_rows(specs: list[dict], jobs: int | None = None, progress=None) -> list[JobResult]:
    """run_row for every spec, in up to ``jobs`` processes (default_jobs when
    None); results in the order given.  A row's JobError is raised."""
    jobs = default_jobs(specs) if jobs is None else jobs
    if jobs <= 1 or len(specs) <= 1:
        results = [run_row(spec, progress) for spec in specs]
    else:
        results = _run_rows_parallel(specs, jobs, progress)
    if progress is not None:
        progress.done()
    return results


_shared_faults = None      # in a worker: the parent's fault counter


class _SharedTicks:
    """A worker's Progress: adds its ticks to the parent's counter."""

    def tick(self, n: int) -> None:
        with _shared_faults.get_lock():
            _shared_faults.value += n


def _init_worker(counter, memory_thread: bool) -> None:
    global _shared_faults
    _shared_faults = counter
    # A memory thread (vmemu.mm.memory) pays only with a host CPU to spare:
    # rows in parallel already keep the CPUs busy (measured: the seed's
    # prezero table in 2 processes took 39 s with one in each, 29 s without).
    os.environ.setdefault("VMEMU_MEMORY_THREAD", "1" if memory_thread else "0")


def _row_in_worker(spec: dict) -> JobResult:
    return run_row(spec, _SharedTicks() if _shared_faults is not None else None)


def _run_rows_parallel(specs: list[dict], jobs: int, progress) -> list[JobResult]:
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    ctx = multiprocessing.get_context("fork")     # a CLI process, no threads: fork is safe and quick
    counter = ctx.Value("q", 0)
    spare = len(os.sched_getaffinity(0)) >= 2 * jobs
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(counter, spare)) as pool:
        futures = [pool.submit(_row_in_worker, spec) for spec in specs]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_EXCEPTION)
            if progress is not None:
                progress.tick(counter.value - progress.faults)
            if any(f.exception() is not None for f in done):
                for f in pending:
                    f.cancel()
                break
        return [f.result() for f in futures]


def format_comparison(pairs) -> str:
    lines = [f"{'kernel':<18} {'thr':>3} {'seed f/wsec':>12} {'ours':>12} {'ratio':>6}"
             f" {'seed flt/cpu/s':>15} {'ours':>12} {'ratio':>6}"]
    for row, r in pairs:
        fw, fc = float(row["fault_wsec"]), float(row["flt_cpu_s"])
        lines.append(f"{row['kernel']:<18} {row['threads']:>3} {fw:12.0f} {r.fault_wsec:12.0f}"
                     f" {r.fault_wsec / fw:6.2f} {fc:15.0f} {r.flt_cpu_s:12.0f} {r.flt_cpu_s / fc:6.2f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Command-line helpers (the argument parsing itself is in vmemu.cli)

def check_options(profile, nbytes: int, threads: list[int], rep: int, cachelines: int) -> str | None:
    """A usage error for options pft cannot run with, or None."""
    m = profile.machine
    cpus = m["nodes"] * m["cpus_per_node"]
    lines = m["page_size"] // m["cache_line"]
    if nbytes <= 0:
        return f"the size must be positive, got {nbytes} bytes"
    if rep <= 0:
        return f"-r must be positive, got {rep}"
    for n in threads:
        if n <= 0:
            return f"-f must be positive, got {n}"
        if n > cpus:
            return f"-f {n}: {profile.name} has only {cpus} CPUs (pft runs each thread on its own CPU)"
        if nbytes // m["page_size"] < n:
            return f"{nbytes} bytes is less than one page per thread"
    if not 0 <= cachelines <= lines:
        return f"-c {cachelines}: a {m['page_size']}-byte page has {lines} cache lines of {m['cache_line']} bytes"
    return None


def format_results(results: list[JobResult], fmt: str, title: bool = True) -> str:
    if fmt == "json":
        import json
        return json.dumps([r.as_dict() for r in results], indent=1)
    if fmt == "csv":
        return "\n".join([CSV_HEADER] + [format_csv(r) for r in results])
    row, head = (format_2006, TITLE_2006) if fmt == "2006" else (format_2004, TITLE_2004)
    return "\n".join(([head] if title else []) + [row(r) for r in results])


class Progress:
    """A one-line progress count on stderr, only when it is a terminal and
    only once a run has taken more than 2 s of host time."""

    def __init__(self, stream):
        import time
        self.stream = stream
        self.enabled = hasattr(stream, "isatty") and stream.isatty()
        self.start = time.monotonic()
        self.faults = 0
        self.shown = False
        self._clock = time.monotonic

    def tick(self, n: int) -> None:
        self.faults += n
        if self.enabled and self._clock() - self.start > 2:
            self.stream.write(f"\rpft: {self.faults:,} faults emulated, {self._clock() - self.start:.0f} s")
            self.stream.flush()
            self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False


def plot(pairs, path: str, kernel: str | None = None) -> int:
    """fault/wsec and flt/cpu/s against threads; ours, and the seed's where given."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        import sys
        print("vmemu: --plot needs matplotlib: pip install 'vmemu[plot]' (or pip install matplotlib)",
              file=sys.stderr)
        return 1
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    series: dict[str, list] = {}
    for row, r in pairs:
        label = row["kernel"] if row else (kernel or "vmemu")
        if label == "prezero-allzeroed":
            continue
        series.setdefault(label, []).append((row, r))
    for ax, metric, title in ((axes[0], "fault_wsec", "faults per wall second"),
                              (axes[1], "flt_cpu_s", "faults per CPU second")):
        for label, items in series.items():
            xs = [r.threads for _, r in items]
            ax.plot(xs, [getattr(r, metric) for _, r in items], "o-", label=f"{label} (vmemu)")
            if items[0][0] is not None:
                ax.plot(xs, [float(row[metric]) for row, _ in items], "s--", label=f"{label} (seed)")
        ax.set_xlabel("threads")
        ax.set_title(title)
        ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return 0
