"""kscrubd: background zeroing of free blocks (the prezeroing series, V2 to V8).

One daemon per node, running in virtual time on an idle CPU of its node.
It wakes when a free coalesces into a block of order >= ``scrub_start``
(``scrub_start >= MAX_ORDER`` is off, the default; 0 wakes on every free),
or when ``scrub_start`` is written with a value below MAX_ORDER; never while
the 1-minute load average is >= ``scrub_load``.  Each pass takes one
NOT_ZEROED block per zone, of the highest order present down to
``scrub_stop``; the block stays counted in ``free_pages`` but is off the
lists while it is cleared; it is offered to the zero drivers (newest
registered first) and cleared by the CPU if none accepts; then it is freed
as ZEROED and may merge with ZEROED buddies.  The daemon sleeps when no
NOT_ZEROED block of order >= ``scrub_stop`` is left on its node.

The V8 "percentage" policy is selectable at run time (``POLICY_PERCENT``):
wake when ``zero_pages < free_pages * scrub_start >> 10`` after a free, zero
orders from 0 upward while ``ZEROED[o] < NOT_ZEROED[o] * scrub_stop >> 10``,
and wait in 30 s steps inside the daemon while the load is too high.
"""

from __future__ import annotations

from collections import deque

from ..kernel.loadavg import FSHIFT
from ..kernel.sched import CPU, NSEC_PER_SEC
from .mmzone import NOT_ZEROED, ZEROED, Zone
from .page_alloc import free_one_page

POLICY_ORDER = "order"          # V2-V6, the seed's: triggered by coalescing order
POLICY_PERCENT = "percentage"   # V8
POLICIES = (POLICY_ORDER, POLICY_PERCENT)
V8_LOAD_WAIT_NS = 30 * NSEC_PER_SEC

SLEEPING, RUNNING, WAIT_CPU, WAIT_LOAD = "sleeping", "running", "waiting for a CPU", "waiting for load"

SCRUBD_COUNTERS = ("wakeups", "runs", "passes", "load_gate_refusals", "load_waits",
                   "cpu_ns", "redone_blocks")


def v8_wake_needed(zero_pages: int, free_pages: int, scrub_start: int) -> bool:
    """V8: a free wakes scrubd while zeroed pages are under scrub_start/1024 of free pages."""
    return zero_pages < (free_pages * scrub_start) >> 10


def v8_order_wanted(zeroed: int, unzeroed: int, scrub_stop: int) -> bool:
    """V8: zero at this order while ZEROED blocks are under scrub_stop/1024 of NOT_ZEROED ones."""
    return unzeroed > 0 and zeroed < (unzeroed * scrub_stop) >> 10


class Kscrubd:
    """The scrub daemon of one node."""

    def __init__(self, machine, node):
        self.m = machine
        self.node = node
        self.state = SLEEPING
        self.cpu: CPU | None = None
        self.redo: deque = deque()        # blocks a driver handed back dirty: the CPU clears them
        self.inflight = 0                 # blocks off the lists being zeroed (CPU or device)
        self.stat = dict.fromkeys(SCRUBD_COUNTERS, 0)
        # blocks and pages zeroed, by driver name and order
        self.blocks: dict[str, list[int]] = {}
        self.name = f"kscrubd{node.id}"
        # --charge task: kscrubd's CPU time and the pages it zeroed that no
        # task has taken yet; a task taking zeroed pages is charged their share
        self.unclaimed_ns = self.unclaimed_pages = 0

    # -- waking --------------------------------------------------------------

    def load_too_high(self) -> bool:
        """The load gate: 1-minute load average >= scrub_load (fixed point, as V3 compares)."""
        return self.m.loadavg.avenrun[0] >= self.m.sysctl["scrub_load"] << FSHIFT

    def wakeup(self, t: int, gate: bool = True) -> bool:
        """wakeup_kscrubd. Returns True when it made the daemon runnable."""
        if gate and self.m.scrub_policy == POLICY_ORDER and self.load_too_high():
            self.stat["load_gate_refusals"] += 1
            return False
        if self.state != SLEEPING:
            return False
        self.stat["wakeups"] += 1
        self.stat["runs"] += 1
        self.state = RUNNING
        self.m.events.schedule(t, self.step)
        return True

    def cpu_available(self, t: int) -> None:
        """A CPU of this node became idle while we were waiting for one."""
        if self.state == WAIT_CPU:
            self.state = RUNNING
            self.m.events.schedule(t, self.step)

    # -- running -------------------------------------------------------------

    def pick_cpu(self) -> CPU | None:
        """Keep our CPU if nobody took it; else the first idle CPU of the node."""
        if self.cpu is not None and self.cpu.owner is self:
            return self.cpu
        self.cpu = None
        for cpu_id in self.node.cpus:
            cpu = self.m.cpus[cpu_id]
            if cpu.owner is None:
                cpu.owner = self
                self.cpu = cpu
                return cpu
        return None

    def release_cpu(self) -> None:
        if self.cpu is not None and self.cpu.owner is self:
            self.cpu.owner = None
        self.cpu = None

    def step(self, t: int) -> None:
        """One pass of the work loop at virtual time t."""
        if self.state not in (RUNNING, WAIT_LOAD):
            return
        if self.m.scrub_policy == POLICY_PERCENT and self.load_too_high() and not self.redo:
            self.stat["load_waits"] += 1
            self.state = WAIT_LOAD
            self.release_cpu()
            self.m.events.schedule(t + V8_LOAD_WAIT_NS, self.step)
            return
        self.state = RUNNING
        cpu = self.pick_cpu()
        if cpu is None:
            self.state = WAIT_CPU
            return
        cpu.catch_up(t)
        start = cpu.time
        did = self.one_pass(cpu)
        self.stat["cpu_ns"] += cpu.time - start
        cpu.kthread_ns += cpu.time - start
        self.unclaimed_ns += cpu.time - start
        if did:
            self.stat["passes"] += 1
            self.m.events.schedule(cpu.time, self.step)
        else:
            self.state = SLEEPING
            self.release_cpu()

    def one_pass(self, cpu: CPU) -> bool:
        did = False
        while self.redo:
            zone, pfn, order = self.redo.popleft()
            self.stat["redone_blocks"] += 1
            self.clear_on_cpu(cpu, zone, pfn, order)
            did = True
        pick = self.pick_order if self.m.scrub_policy == POLICY_ORDER else self.pick_order_v8
        for zone in self.node.zones:
            order = pick(zone)
            if order is not None:
                self.scrub_block(cpu, zone, order)
                did = True
        return did

    def pick_order(self, zone: Zone) -> int | None:
        """Highest order holding a NOT_ZEROED block, down to scrub_stop."""
        stop = max(self.m.sysctl["scrub_stop"], 0)
        areas = zone.free_area[NOT_ZEROED]
        for order in range(zone.max_order - 1, stop - 1, -1):
            if areas[order].nr_free:
                return order
        return None

    def pick_order_v8(self, zone: Zone) -> int | None:
        """Lowest order where ZEROED blocks are fewer than NOT_ZEROED * scrub_stop / 1024."""
        ratio = self.m.sysctl["scrub_stop"]
        for order in range(zone.max_order):
            if v8_order_wanted(zone.free_area[ZEROED][order].nr_free,
                               zone.free_area[NOT_ZEROED][order].nr_free, ratio):
                return order
        return None

    def scrub_block(self, cpu: CPU, zone: Zone, order: int) -> None:
        """Take the head NOT_ZEROED block of ``order`` off the lists (it stays
        counted as free), and have it zeroed by a driver or the CPU."""
        pfn = zone.free_area[NOT_ZEROED][order].pop_head()
        cost = self.m.cost
        zone.lock.hold(cpu, cost["zone_lock_ns"] + cost["rmqueue_block_ns"])
        n = 1 << order
        zone.scrub_inflight += n
        self.inflight += 1
        for driver in self.m.zero_drivers:
            if driver.enabled and driver.start(self, cpu, zone, pfn, order) == 0:
                return
        self.clear_on_cpu(cpu, zone, pfn, order)

    def clear_on_cpu(self, cpu: CPU, zone: Zone, pfn: int, order: int) -> None:
        """The CPU zero driver: clear_page over the block, over the node's bus
        (its host memory released: it stays free).  The block's lines go
        through this CPU's cache and push out what it held (the pollution a
        zeroing engine avoids)."""
        self.m.memory.clear(pfn, 1 << order)
        self.m.alloc.clear_time(cpu, zone, 1 << order, "kscrubd")      # at the CPU's rate, over the node's bus
        self.m.memsys.wrote(cpu.id, ((pfn, 1 << order),), self.m.memsys.lines_per_page, kscrubd=True)
        self.m.events.schedule(cpu.time, self.finish_block, zone, pfn, order, "cpu")

    def finish_block(self, t: int, zone: Zone, pfn: int, order: int, driver: str) -> None:
        """The block is zero: free it as ZEROED (it may merge with ZEROED buddies)."""
        n = 1 << order
        zone.scrub_inflight -= n
        self.inflight -= 1
        free_one_page(zone, pfn, order, ZEROED, account=False)
        self.unclaimed_pages += n
        counts = self.blocks.get(driver)
        if counts is None:
            counts = self.blocks[driver] = [0] * zone.max_order
        counts[order] += 1

    def claim(self, pages: int) -> int:
        """--charge task: the ns of zeroing a task taking ``pages`` zeroed
        pages of this node is charged (their share of what kscrubd spent on
        the pages not claimed yet; 0 for pages zeroed otherwise)."""
        have = self.unclaimed_pages
        if not have:
            return 0
        take = min(pages, have)
        ns = self.unclaimed_ns * take // have
        self.unclaimed_ns -= ns
        self.unclaimed_pages -= take
        return ns

    def give_back_dirty(self, t: int, zone: Zone, pfn: int, order: int) -> None:
        """A driver failed: the block is still dirty and off the lists.  The
        daemon clears it on the CPU at its next pass, whatever the load."""
        self.redo.append((zone, pfn, order))
        if self.state == SLEEPING:
            self.wakeup(t, gate=False)

    # -- statistics ------------------------------------------------------------

    def pages_zeroed(self, driver: str | None = None) -> int:
        drivers = [driver] if driver else list(self.blocks)
        return sum(c << o for d in drivers for o, c in enumerate(self.blocks.get(d, ())))


class Scrub:
    """The machine's scrubd instances and the hooks that wake them."""

    def __init__(self, machine):
        self.m = machine
        self.daemons = [Kscrubd(machine, node) for node in machine.nodes]

    def on_coalesce(self, zone: Zone, order: int, kind: int, t: int) -> None:
        """Called at virtual time t after a free reached the buddy lists, with
        the order it coalesced to."""
        m = self.m
        if m.scrub_policy == POLICY_ORDER:
            if order >= m.sysctl["scrub_start"]:
                self.daemons[zone.node].wakeup(t)
        elif v8_wake_needed(zone.zero_pages, zone.free_pages, m.sysctl["scrub_start"]):
            self.daemons[zone.node].wakeup(t)

    def scrub_start_written(self, t: int) -> None:
        """A write of scrub_start below MAX_ORDER wakes every node."""
        if self.m.scrub_policy == POLICY_PERCENT or self.m.sysctl["scrub_start"] < self.m.max_order:
            for d in self.daemons:
                d.wakeup(t)

    def cpus_released(self, t: int) -> None:
        for d in self.daemons:
            d.cpu_available(t)

    def busy(self) -> bool:
        return any(d.state != SLEEPING or d.inflight for d in self.daemons)

    def totals(self) -> dict[str, int]:
        out = dict.fromkeys(SCRUBD_COUNTERS, 0)
        for d in self.daemons:
            for k, v in d.stat.items():
                out[k] += v
        return out

    def pages_zeroed(self) -> int:
        """Pages every kscrubd has zeroed, by any driver."""
        return sum(d.pages_zeroed() for d in self.daemons)

    def blocks_by_driver(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for d in self.daemons:
            for name, counts in d.blocks.items():
                acc = out.setdefault(name, [0] * len(counts))
                for o, c in enumerate(counts):
                    acc[o] += c
        return out
