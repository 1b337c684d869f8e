"""pft's jobs on the emulated machine: the job check, the pft task's
threads and exit, run_job, and a machine prepared as for one row.

A job is ``rep`` repetitions of: a fresh task whose ``threads`` threads, each
on its own CPU, fault their share of ``bytes`` of anonymous memory, touching
``cachelines`` lines of every page; then the task exits and frees it all.
CPU times are the task's (user and system of its threads and its exit);
wall time is virtual time from the job's start to its end.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field, fields

from ..kernel import sched
from ..kernel.sched import NSEC_PER_SEC
from ..kernel import ledger
from ..kernel.sched import NEVER
from ..mm.fault import FaultPath, MMStruct
from .task import pft_exit, pft_thread


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
    # how the faults were served, and kscrubd's work meanwhile (pft -v)
    served_zeroed: int = 0
    cleared: int = 0
    kscrubd_ns: int = 0
    scrubbed_pages: int = 0
    charged_ns: int = 0             # --charge task: background zeroing charged to the task (in system_ns)
    exit_ns: int = field(default=0, compare=False)   # the task's exits: their system time (in system_ns)
    # the job's window of the ledger (vmemu.kernel.ledger.Ledger)
    ledger: object = field(default=None, repr=False, compare=False)
    samples: list = field(default_factory=list, repr=False, compare=False)   # --timeline

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
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.compare}
        d.update(gb=self.gb, user_s=self.user_ns / 1e9, system_s=self.system_ns / 1e9,
                 wall_s=self.wall_ns / 1e9, flt_cpu_s=self.flt_cpu_s, fault_wsec=self.fault_wsec)
        return d


def check_job(profile, nbytes: int, threads: int, rep: int, cachelines: int) -> None:
    """The one check of a job's parameters (vmemu pft, proc/vmemu/fault,
    run_job): JobError EINVAL for parameters no machine of this profile can
    run, ENOMEM for a repetition larger than its memory (all of a
    repetition's pages are in use at once, so it cannot fit whatever the
    state)."""
    def bad(msg):
        raise JobError(errno.EINVAL, msg)
    for name, value in (("size", nbytes), ("threads", threads), ("rep", rep), ("cachelines", cachelines)):
        if type(value) is not int or value < (name != "cachelines"):
            bad(f"{name} must be a {'positive' if name != 'cachelines' else 'non-negative'} integer, got {value!r}")
    m = profile.machine
    if threads > profile.nr_cpus:
        bad(f"threads={threads}: {profile.name} has {profile.nr_cpus} CPUs (pft runs each thread on its own CPU)")
    lines = m["page_size"] // m["cache_line"]
    if cachelines > lines:
        bad(f"cachelines={cachelines}: a {m['page_size']}-byte page has {lines} cache lines of {m['cache_line']} bytes")
    pages = nbytes // m["page_size"]
    if pages < threads:
        bad(f"{nbytes} bytes is less than one {m['page_size']}-byte page per thread")
    if pages > profile.total_pages:
        raise JobError(errno.ENOMEM, f"{pages} pages per repetition, but {profile.name} has {profile.total_pages}")


def run_job(machine, nbytes: int, threads: int = 1, rep: int = 1, cachelines: int = 1,
            bzero: bool = False, progress=None, sampler=None) -> JobResult:
    """Run a pft job on ``machine`` in virtual time and return its row,
    with the job's window of the ledger.  ``sampler(t)`` (pft --timeline)
    is the timeline's pacer while the job runs."""
    check_job(machine.profile, nbytes, threads, rep, cachelines)
    fault = FaultPath(machine.alloc, machine.cost, machine.cache_line, cachelines)
    pages_per_rep = nbytes // machine.page_size
    per_thread = [pages_per_rep // threads + (1 if t < pages_per_rep % threads else 0)
                  for t in range(threads)]
    # one thread per CPU, filling a node before the next: the 2.6 scheduler
    # places a new thread on its parent's node and balances within it first
    cpus = machine.cpus[:threads]
    # the task's own times (getrusage): kscrubd's time on these CPUs is not pft's
    before = [(c.user_ns, c.system_ns - c.kthread_ns, c.charged_ns) for c in machine.cpus]
    counters, scrub, scrubbed = machine.counters(), machine.scrub.totals(), machine.scrub.pages_zeroed()
    start, window = machine.clock(), ledger.open_window(machine)
    exit_ns = 0
    if sampler is not None:
        machine.timeline.pacer, machine.timeline.pace_at = sampler, start
    try:
        for _ in range(rep):
            exit_ns += _repetition(machine, fault, cpus, per_thread, bzero, progress)
    finally:
        if sampler is not None:
            machine.timeline.pacer, machine.timeline.pace_at = None, NEVER
    user = sum(c.user_ns - b[0] for c, b in zip(cpus, before))
    system = sum(c.system_ns - c.kthread_ns - b[1] for c, b in zip(cpus, before))
    charged = sum(c.charged_ns - b[2] for c, b in zip(machine.cpus, before))
    after = machine.counters()
    return JobResult(nbytes, rep, threads, cachelines, pages_per_rep * rep, user, system + charged,
                     machine.now - start,
                     served_zeroed=after["prezero_alloc_zeroed"] - counters["prezero_alloc_zeroed"],
                     cleared=after["prezero_alloc_cleared"] - counters["prezero_alloc_cleared"],
                     kscrubd_ns=machine.scrub.totals()["cpu_ns"] - scrub["cpu_ns"],
                     scrubbed_pages=machine.scrub.pages_zeroed() - scrubbed, charged_ns=charged,
                     exit_ns=exit_ns, ledger=ledger.close_window(machine, window))


def _repetition(machine, fault: FaultPath, cpus: list, per_thread: list[int], bzero: bool, progress) -> int:
    """One repetition: a fresh task faults its pages from its threads, then
    its leader exits and frees them all.  Returns the exit's system time."""
    # the lock line's transfers: every thread takes it on every fault
    mm = MMStruct("pft", machine.timeline, machine.memsys.shared_transfer([cpu.id for cpu in cpus]))
    machine.claim_cpus(cpus, mm)
    mm.nodes_run.update(cpu.node for cpu in cpus)
    failed: list[int] = []
    threads_of_task = [(cpu, pft_thread(fault, cpu, mm, n, failed, bzero, progress))
                       for cpu, n in zip(cpus, per_thread)]
    leader = cpus[0]
    try:
        end = sched.run(threads_of_task, machine.timeline, machine.events)
        # the other threads are gone; the leader exits and frees everything
        machine.release_cpus(cpus[1:], end)
        leader.time = max(leader.time, end)
        exiting = leader.system_ns - leader.kthread_ns
        sched.run([(leader, pft_exit(fault, leader, mm))], machine.timeline, machine.events)
        exit_ns = leader.system_ns - leader.kthread_ns - exiting
    finally:
        machine.release_cpus(cpus, leader.time)
    machine.now = max(machine.now, leader.time)
    if failed:
        raise JobError(errno.ENOMEM, f"out of memory after {sum(per_thread)} pages were asked for "
                                     f"on {machine.profile.name}; every page of the job was freed")
    return exit_ns


SCRUB_DEFAULTS = {"scrub_start": 6, "scrub_stop": 2, "scrub_load": 999}


def prepare_machine(profile="altix-8", seed: int = 0, kernel: str = "prezero", prezeroed: bool = False,
                    backing: str | None = None, scrub: dict | None = None, bte: bool = False,
                    overrides: dict | None = None, charge: str = "kthread"):
    """A machine set up as for one pft run.

    ``stock`` is the kernel without the patch: scrubd never runs, so every
    anonymous fault clears its page on the CPU.  ``prezero`` is the patched
    kernel with scrubd set by ``scrub`` (and left to finish on the idle
    machine before the run, as on a machine that had been up a while);
    ``prezeroed`` starts with every free block zeroed.  The seed's runs had
    no hardware zeroing, so the BTE driver is off unless ``bte``.  ``charge``:
    who pays for background zeroing (Machine.set_charge_policy)."""
    from ..machine import Machine
    from ..profiles import load_profile
    if isinstance(profile, str):
        profile = load_profile(profile, overrides=overrides)
    m = Machine(profile, seed=seed, backing=backing)
    m.set_charge_policy(charge)
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
    under "machine" and run_job's under "job"; with "timeline_ns", the row
    carries samples of the machine that often (pft --timeline)."""
    from .timeline import Sampler
    m = prepare_machine(**spec["machine"])
    try:
        sampler = Sampler(m, spec["timeline_ns"]) if spec.get("timeline_ns") else None
        result = run_job(m, progress=progress, sampler=sampler, **spec["job"])
        if sampler is not None:
            result.samples = sampler.rows
        return result
    finally:
        m.close()
