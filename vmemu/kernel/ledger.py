"""The ledger: every nanosecond of every emulated CPU, by task and activity;
the memory buses' and BTE engines' busy time, by who used them.

Each CPU keeps ``ledgers[task][activity]`` (vmemu.kernel.sched.CPU): the ns
charged to it while ``task`` ran there (a pft task, kscrubdN, "kernel"
when no task owned the CPU), doing ``activity``, named after the kernel
function doing the work:

    do_page_fault            the trap, handle_mm_fault, installing the pte
    buffered_rmqueue         taking a page off a per-CPU list
    free_hot_cold_page       putting a page on a per-CPU list
    clear_page               the CPU clearing memory (the fault path, kscrubd)
    zap_pte_range            exit_mmap: zapping a pte, freeing its page
    page_table_lock, zone->lock, mmap_sem     holding the lock
    spin:<lock>              spinning for it
    cacheline:<lock>         fetching its line from another CPU
    bte_copy                 programming a BTE engine
    user:touch, user:bzero   pft's own loops, in user space (their cache misses included)

What no task was charged for is ``idle``.  Each node's memory bus counts
its busy time by user (MemoryBus.busy_by: "task" for clears in the fault
path, "kscrubd" for kscrubd's clears on a CPU, "bte"), each BTE engine its
own.  A ledger is read as a window (open_window, close_window): the
difference of two snapshots, with each CPU's idle time, so that every
CPU's entries add up to the window's length exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Key = tuple[int, str, str]          # (cpu, task, activity)
IDLE = "idle"
CARRIED = "carried"                 # work begun before the window opened, done inside it


@dataclass
class Ledger:
    """A window [start, end] of the ledger."""
    start: int
    end: int
    cpu: dict[Key, int] = field(default_factory=dict)              # idle included
    bus: dict[tuple[int, str], int] = field(default_factory=dict)  # (node, user) -> busy ns
    bte: dict[tuple[int, int], int] = field(default_factory=dict)  # (node, engine) -> busy ns

    @property
    def elapsed(self) -> int:
        return self.end - self.start

    def by_task(self) -> dict[str, int]:
        """ns per task over every CPU (idle as the task "idle")."""
        return _sum_by(self.cpu, 1)

    def by_cpu(self) -> dict[int, int]:
        return _sum_by(self.cpu, 0)

    def bus_by_user(self) -> dict[str, int]:
        return _sum_by(self.bus, 1)


def _sum_by(entries: dict[tuple, int], field: int) -> dict:
    """ns summed by one field of the entries' keys."""
    out: dict = {}
    for key, ns in entries.items():
        out[key[field]] = out.get(key[field], 0) + ns
    return out


@dataclass
class Mark:
    """What a window is measured from: the charges so far and each CPU's time."""
    start: int
    cpu: dict[Key, int]
    bus: dict[tuple[int, str], int]
    bte: dict[tuple[int, int], int]
    cpu_times: dict[int, int]


def open_window(machine) -> Mark:
    cpu, bus, bte = _snapshot(machine)
    return Mark(machine.clock(), cpu, bus, bte, {c.id: c.time for c in machine.cpus})


def close_window(machine, mark: Mark) -> Ledger:
    """What was charged since ``mark``, up to the end of every charge made
    so far.  A CPU that was already busy past the mark's start when the
    window opened carries that work in: shown as "kernel" "carried", so
    that every CPU still adds up to the window's length."""
    end = max([machine.clock()] + [c.time for c in machine.cpus])
    cpu, bus, bte = _snapshot(machine)
    out = Ledger(mark.start, end, _minus(cpu, mark.cpu), _minus(bus, mark.bus), _minus(bte, mark.bte))
    charged = out.by_cpu()
    for c in machine.cpus:
        carried = max(0, min(mark.cpu_times.get(c.id, mark.start), end) - mark.start)
        if carried:
            out.cpu[(c.id, "kernel", CARRIED)] = carried
        out.cpu[(c.id, IDLE, IDLE)] = out.elapsed - charged.get(c.id, 0) - carried
    return out


def since_boot(machine) -> Ledger:
    """Everything charged since the machine booted (proc/vmemu/ledger)."""
    return close_window(machine, Mark(0, {}, {}, {}, {}))


def _snapshot(machine):
    cpu = {(c.id, task, act): ns for c in machine.cpus for task, acts in c.ledgers.items()
           for act, ns in acts.items() if ns}
    bus = {(node, user): ns for node, b in enumerate(machine.buses) for user, ns in b.busy_by.items() if ns}
    bte = {} if machine.bte is None else \
        {(e.node, e.index): e.busy_ns for engines in machine.bte.engines for e in engines if e.busy_ns}
    return cpu, bus, bte


def _minus(now: dict, before: dict) -> dict:
    return {k: ns - before.get(k, 0) for k, ns in now.items() if ns != before.get(k, 0)}


def table(ledger: Ledger) -> str:
    """The ledger as proc/vmemu/ledger shows it: a header, then one row per
    (resource, user, activity): every CPU's ns by task and activity (idle
    included), then each node's memory bus busy by user, then each BTE
    engine's busy time."""
    rows = [f"{'resource':<10} {'user':<12} {'activity':<28} {'ns':>16}"]
    for (cpu, task, act), ns in sorted(ledger.cpu.items()):
        rows.append(f"{'cpu%d' % cpu:<10} {task:<12} {act:<28} {ns:>16}")
    for (node, user), ns in sorted(ledger.bus.items()):
        rows.append(f"{'bus%d' % node:<10} {user:<12} {'busy':<28} {ns:>16}")
    for (node, engine), ns in sorted(ledger.bte.items()):
        rows.append(f"{'bte%d.%d' % (node, engine):<10} {'kscrubd%d' % node:<12} {'busy':<28} {ns:>16}")
    return "\n".join(rows) + "\n"


def folded(ledger: Ledger) -> str:
    """Folded stacks (flamegraph.pl, inferno, speedscope read them): one
    line per CPU, task and activity, ``cpuN;task;activity ns``; idle as
    ``cpuN;idle``.  Every CPU's lines add up to the window's length."""
    lines = []
    for (cpu, task, act), ns in sorted(ledger.cpu.items()):
        if ns > 0:
            lines.append(f"cpu{cpu};{task};{act} {ns}" if task != IDLE else f"cpu{cpu};{IDLE} {ns}")
    return "\n".join(lines) + "\n"
