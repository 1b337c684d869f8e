"""Rows in parallel.

Each row of a table runs on a fresh machine of its own, so rows are
independent: running them in several host processes gives the same rows,
byte for byte, as running them one after the other, in less host time.
"""

from __future__ import annotations

import os
import signal
import sys

from .job import JobError, JobResult, run_row


def default_jobs(specs: list[dict], requested: int | None = None, note=None) -> int:
    """How many processes to run rows in: ``requested`` (-j), else one per
    host CPU; no more than there are rows, and no more than the host's
    available memory holds at each row's worst case (row_bytes).  The one
    worker count of every fan-out of rows (pft, the seed's table, sweeps).

    HostMemoryError when one row alone cannot fit.  A request above what
    memory allows is capped, and ``note(line)`` says so (default: a line on
    stderr); it is not an error."""
    from ..mm.memory import check_host_memory, host_bytes_available, human_bytes
    if not specs:
        return 1
    needs = [row_bytes(s) for s in specs]
    biggest = specs[needs.index(max(needs))]
    check_host_memory(*_machine_and_job(biggest))
    have = host_bytes_available()
    fit = max(1, have // max(needs))
    jobs = min(len(specs), requested or len(os.sched_getaffinity(0)))
    if jobs > fit:
        if requested:
            (note or _note)(f"-j {requested} capped to {fit}: each row may hold {human_bytes(max(needs))} "
                            f"of host memory; this host has {human_bytes(have)} available")
        jobs = fit
    return max(1, jobs)


def row_bytes(spec: dict) -> int:
    """The most host memory one row may hold: its machine and its job (host_bytes)."""
    from ..mm.memory import host_bytes
    return host_bytes(*_machine_and_job(spec))


def _machine_and_job(spec: dict) -> tuple:
    """(profile, backing, pages per repetition) of a row spec."""
    profile = _profile_of(spec)
    return profile, spec["machine"].get("backing"), spec["job"]["nbytes"] // profile.machine["page_size"]


def _note(line: str) -> None:
    print(f"vmemu pft: {line}", file=sys.stderr)


def _profile_of(spec: dict):
    from ..profiles import load_profile
    profile = spec["machine"]["profile"]
    return load_profile(profile, spec["machine"].get("overrides")) if isinstance(profile, str) else profile


def run_rows(specs: list[dict], jobs: int | None = None, progress=None, note=None) -> list[JobResult]:
    """run_row for every spec, in up to ``jobs`` processes (as default_jobs
    allows; HostMemoryError before any row when one cannot fit); results in
    the order given.  A row's JobError is raised."""
    results: list = [None] * len(specs)
    with completed_rows(specs, default_jobs(specs, jobs, note), progress) as rows:
        for i, outcome in rows:
            if isinstance(outcome, JobError):
                raise outcome
            results[i] = outcome
    if progress is not None:
        progress.done()
    return results


def completed_rows(specs: list[dict], jobs: int, progress=None) -> "Rows":
    """The rows of ``specs`` as they complete, in up to ``jobs`` worker
    processes (here, one after the other, when jobs is 1): a context
    manager that gives (index, JobResult, or the row's JobError).  The
    workers are forked now; leaving the context early (a failed row, a
    Ctrl-C) stops them, the rows they were running with them."""
    if jobs <= 1 or len(specs) <= 1:
        return Rows(specs, progress)
    return PooledRows(specs, jobs, progress)


class Rows:
    """Rows one after the other, in this process."""

    def __init__(self, specs: list[dict], progress=None):
        self.specs, self.progress = specs, progress

    def __enter__(self):
        return iter(self)

    def __exit__(self, *exc) -> None:
        pass

    def __iter__(self):
        for i, spec in enumerate(self.specs):
            yield i, row_outcome(spec, self.progress)


def row_outcome(spec: dict, progress=None) -> JobResult | JobError:
    """run_row, its JobError returned, not raised: a row that could not run
    is one outcome among the others (what a worker sends back)."""
    try:
        return run_row(spec, progress)
    except JobError as e:
        return e


_shared_faults = None      # in a worker: the parent's fault counter


class _SharedTicks:
    """A worker's Progress: adds its ticks to the parent's counter."""

    def tick(self, n: int) -> None:
        with _shared_faults.get_lock():
            _shared_faults.value += n


def _init_worker(counter) -> None:
    global _shared_faults
    _shared_faults = counter
    # Ctrl-C reaches the whole process group: the parent stops the workers
    # (they are forked with SIGINT ignored already; this keeps it so).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _row_in_worker(spec: dict) -> JobResult | JobError:
    return row_outcome(spec, _SharedTicks() if _shared_faults is not None else None)


class PooledRows(Rows):
    """Rows in a pool of forked worker processes, as they complete."""

    def __init__(self, specs: list[dict], jobs: int, progress=None):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        super().__init__(specs, progress)
        ctx = multiprocessing.get_context("fork")     # a CLI process, no threads: fork is safe and quick
        self.counter = ctx.Value("q", 0)
        # the workers are forked while Ctrl-C is ignored, so that they inherit
        # that (a SIGINT amid a fork would hit the child before it is set up)
        sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                                            initargs=(self.counter,))
            self.futures = [self.pool.submit(_row_in_worker, spec) for spec in specs]
        finally:
            signal.signal(signal.SIGINT, sigint)
        self.finished = False

    def __iter__(self):
        from concurrent.futures import FIRST_COMPLETED, wait
        index = {f: i for i, f in enumerate(self.futures)}
        pending = set(self.futures)
        while pending:
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            if self.progress is not None:
                self.progress.tick(self.counter.value - self.progress.faults)
            for f in sorted(done, key=index.get):
                yield index[f], f.result()
        self.finished = True

    def __exit__(self, *exc) -> None:
        import multiprocessing
        if self.finished:
            self.pool.shutdown()
            return
        # a failed row or Ctrl-C: the other rows are not waited for
        self.pool.shutdown(wait=False, cancel_futures=True)
        for child in multiprocessing.active_children():
            child.terminate()
