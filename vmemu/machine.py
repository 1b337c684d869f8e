"""The emulated machine: nodes, zones, CPUs, memory and the page allocator,
built from a profile.  Pure model: no threads, no FUSE, no host clock.
"""

from __future__ import annotations

import math
import random

from .kernel.loadavg import LoadAvg
from .kernel.sched import CPU, NEVER, EventQueue, MemoryBus, Timeline
from .mm.memory import NoMemory, RealMemory
from .mm.mmzone import NOT_ZEROED, PS_FREE, PS_PCP, PS_TAIL, ZEROED, Node, Zone
from .arch.memsys import MemorySystem
from .arch.sn.bte import BteZeroDriver
from .mm.page_alloc import PageAllocator, free_one_page
from .mm.scrubd import POLICIES, POLICY_ORDER, Scrub
from .mm.vmstat import sum_stats
from .profiles import Profile, load_profile, zone_layout

CHARGE_POLICIES = ("kthread", "task")


def node_distances(nodes: int, per_brick: int) -> list[list[int]]:
    """SLIT-style distances: 10 within a node, 20 to a node of the same brick
    (one link), 40 across the router."""
    return [[10 if a == b else 20 if a // per_brick == b // per_brick else 40
             for b in range(nodes)] for a in range(nodes)]


def build_memsys(profile: Profile, cpus: list, distance: list[list[int]]) -> MemorySystem:
    """The machine's MemorySystem: the profile's [memory] facts, its
    last-level cache (whose capacity holds a CPU's recent writes), and which
    CPUs share one."""
    llc = max(profile.caches, key=lambda c: (c.level, c.type != "Instruction"), default=None)
    line = profile.machine["cache_line"]
    lines = llc.size // line if llc is not None else 0
    shared = llc.shared_cpus if llc is not None else 1
    return MemorySystem(profile.memory, line, profile.machine["page_size"], lines,
                        [c.id // shared for c in cpus], [c.node for c in cpus], distance)


class Machine:
    """One emulated machine.  ``Machine(load_profile("x86-64"), seed=1)``."""

    def __init__(self, profile: Profile | str = "altix-8", seed: int = 0,
                 backing: str | None = None, poison_boot: bool = False):
        if isinstance(profile, str):
            profile = load_profile(profile)
        self.profile = profile
        self.seed = seed
        m = profile.machine
        self.page_size = m["page_size"]
        self.cache_line = m["cache_line"]
        self.max_order = m["max_order"]
        self.backing = backing or m["backing"]
        if self.backing not in ("real", "none"):
            raise ValueError(f"backing must be 'real' or 'none', not {self.backing!r}")
        self.cost = dict(profile.cost)
        self.now = 0                      # virtual ns: the machine's present
        self.rng = random.Random(seed)
        self.timeline = Timeline()
        self.cpus: list[CPU] = []
        self.nodes: list[Node] = []
        self._build_nodes(zone_layout(profile), m["nodes"], m["cpus_per_node"])
        self.zones: list[Zone] = [z for n in self.nodes for z in n.zones]
        spans = [(n.node_start_pfn, n.node_spanned_pages) for n in self.nodes]
        self.memory = RealMemory(self.page_size, spans) if self.backing == "real" else NoMemory()
        if poison_boot:
            for start, pages in spans:
                self.memory.poison(start, pages)
        self.distance = node_distances(len(self.nodes), m.get("nodes_per_brick", len(self.nodes)))
        self.memsys = build_memsys(profile, self.cpus, self.distance)
        mem = profile.memory
        self.buses = [MemoryBus(mem["bus_bytes_per_ns"] * mem["efficiency"], self.timeline) for _ in self.nodes]
        for zone in self.zones:
            zone.lock.timeline = self.timeline
            zone.lock.bounce_ns = self.memsys.transfer
            zone.boot_free_all()
        self.setup_per_zone_pages_min()
        self.alloc = PageAllocator(self.nodes, self.cpus, self.memory, self.buses, self.cost,
                                   self.page_size, self.distance, self.memsys)
        self.loadavg = LoadAvg()
        self.timeline.on_tick = self._timer_tick
        self.timeline.next_tick = self.loadavg.next_sample
        # /proc/sys/vm: the prezeroing sysctls with the seed's defaults (scrubd off).
        self.sysctl = {"scrub_start": self.max_order, "scrub_stop": 2, "scrub_load": 999}
        self.boot_wall_time = 0      # host epoch seconds of boot, set by the daemon (btime)
        # scrubd and the zero drivers
        self.events = EventQueue(self.timeline)
        self.scrub_policy = POLICY_ORDER
        self.charge_policy = "kthread"
        self.zero_drivers: list = []          # newest registered first
        self.scrub = Scrub(self)
        self.alloc.on_coalesce = self.scrub.on_coalesce
        self.bte = None
        if profile.bte["engines_per_node"] > 0:
            self.bte = BteZeroDriver(self, seed)
            self.register_zero_driver(self.bte)

    def register_zero_driver(self, driver) -> None:
        """register_zero_driver: at the head of the list, so it is tried first."""
        self.zero_drivers.insert(0, driver)

    def set_charge_policy(self, policy: str) -> None:
        """Who pays for background zeroing: kthread (the patch: kscrubd's
        time is its own) or task (the task taking a zeroed page is charged
        kscrubd's time for it, as a CPU controller would want)."""
        if policy not in CHARGE_POLICIES:
            raise ValueError(f"unknown charge policy {policy!r}: one of {', '.join(CHARGE_POLICIES)}")
        self.charge_policy = policy
        self.alloc.zeroing_charge = (lambda zone, pages: self.scrub.daemons[zone.node].claim(pages)) \
            if policy == "task" else None

    def set_scrub_policy(self, policy: str) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown scrub policy {policy!r}: one of {', '.join(POLICIES)}")
        self.scrub_policy = policy

    def _build_nodes(self, layout: list[tuple[str, int]], nr_nodes: int, cpus_per_node: int) -> None:
        node_pages = sum(pages for _, pages in layout)
        pfn = 0
        for nid in range(nr_nodes):
            cpu_ids = list(range(nid * cpus_per_node, (nid + 1) * cpus_per_node))
            node = Node(nid, pfn, node_pages, cpu_ids)
            for name, pages in layout:
                node.zones.append(Zone(nid, name, pfn, pages, self.max_order, self.page_size))
                pfn += pages
            self.nodes.append(node)
            self.cpus.extend(CPU(c, nid) for c in cpu_ids)

    def setup_per_zone_pages_min(self) -> None:
        """min_free_kbytes = sqrt(lowmem_kbytes * 16), clamped to 128..65536,
        shared among zones by size; low = min * 5/4, high = min * 3/2 (2.6.10)."""
        total = sum(z.present_pages for z in self.zones)
        lowmem_kbytes = total * (self.page_size // 1024)
        min_free_kbytes = max(128, min(65536, int(math.sqrt(lowmem_kbytes * 16))))
        min_pages = min_free_kbytes // (self.page_size // 1024)
        for zone in self.zones:
            tmp = min_pages * zone.present_pages // total
            zone.pages_min = tmp
            zone.pages_low = tmp + tmp // 4
            zone.pages_high = tmp + tmp // 2

    # -- time ------------------------------------------------------------------

    def nr_running(self) -> int:
        """Runnable tasks: one per busy CPU (emulated threads and kernel daemons)."""
        return sum(1 for c in self.cpus if c.busy)

    def _timer_tick(self, t: int) -> None:
        self.loadavg.sample_until(t, self.nr_running())
        self.timeline.next_tick = self.loadavg.next_sample

    def advance(self, ns: int) -> None:
        """Let ``ns`` of virtual time pass with no user task running: kernel
        daemons and devices run their events due by then, on idle CPUs."""
        if ns < 0:
            raise ValueError("time does not run backwards")
        target = self.now + ns
        self.events.run_until(target)
        self.loadavg.sample_until(target, self.nr_running())
        self.timeline.next_tick = self.loadavg.next_sample
        self.timeline.horizon = max(self.timeline.horizon, target)
        self.now = target

    def run_until_idle(self, limit_ns: int = 3600 * 10**9) -> int:
        """Advance until no daemon has work left (or limit_ns passes); returns ns advanced."""
        start = self.now
        while self.scrub.busy() and self.now - start < limit_ns:
            nxt = self.events.next_time()
            step = max(1, min(nxt - self.now, limit_ns - (self.now - start))) if nxt < NEVER else 10**9
            self.advance(step)
        return self.now - start

    def claim_cpus(self, cpus: list[CPU], owner) -> None:
        """A user task (``owner``: its name is its ledger's) takes these CPUs
        (a daemon running on one finishes its current block first: 2.6
        kernels do not preempt kernel code)."""
        for cpu in cpus:
            cpu.owner = owner
            cpu.catch_up(self.now)

    def release_cpus(self, cpus: list[CPU], t: int) -> None:
        for cpu in cpus:
            cpu.owner = None
        self.scrub.cpus_released(t)

    def set_sysctl(self, name: str, value: int) -> None:
        """A successful write to /proc/sys/vm/<name> (already parsed)."""
        if name not in self.sysctl:
            raise KeyError(name)
        self.sysctl[name] = value
        if name == "scrub_start":
            self.scrub.scrub_start_written(max(self.now, self.timeline.horizon))

    def clock(self) -> int:
        """The present in virtual time: ``now`` while idle; during a job the
        scheduler's horizon (the step about to run), which is ahead of now."""
        return max(self.now, self.timeline.horizon)

    def idle_ns(self, cpu: CPU) -> int:
        """cpustat idle: time the CPU was neither in user nor system mode."""
        return max(0, max(self.clock(), cpu.time) - cpu.user_ns - cpu.system_ns)

    # -- convenience -----------------------------------------------------------

    @property
    def total_pages(self) -> int:
        return sum(z.present_pages for z in self.zones)

    def free_pages(self) -> int:
        return sum(z.free_pages for z in self.zones)

    def zero_pages(self) -> int:
        return sum(z.zero_pages for z in self.zones)

    def prezero_all(self) -> int:
        """Move every free NOT_ZEROED block to the ZEROED lists, clearing it
        (the seed's "every page already zeroed" starting point).  Returns pages."""
        done = 0
        for zone in self.zones:
            for order in range(self.max_order - 1, -1, -1):
                area = zone.free_area[NOT_ZEROED][order]
                while area.nr_free:
                    pfn = area.pop_head()
                    self.memory.clear(pfn, 1 << order)        # zero, and free: no host memory
                    free_one_page(zone, pfn, order, ZEROED, account=False)   # it stayed counted
                    done += 1 << order
        return done

    def counters(self) -> dict[str, int]:
        """Machine-wide event counters (the vm events summed over CPUs)."""
        return sum_stats(self.alloc.cpu_stat)

    def snapshot(self) -> dict:
        """Everything observable, for determinism checks."""
        return {
            "counters": self.counters(),
            "cpus": [(c.time, c.user_ns, c.system_ns) for c in self.cpus],
            "zones": [(z.node, z.name, z.free_pages, z.zero_pages, z.nr_free(0), z.nr_free(1),
                       sorted(z.stat.items()), z.lock.acquired, z.lock.contended, z.lock.wait_ns)
                      for z in self.zones],
            "numa": [sorted(n.stat.items()) for n in self.nodes],
        }

    def close(self) -> None:
        self.memory.close()


def check_invariants(machine: Machine, deep: bool = True) -> None:
    """Assert the allocator's invariants; raises AssertionError naming the first
    broken one.  ``deep`` also walks every page's state byte (small machines)."""
    for zone in machine.zones:
        where = f"node {zone.node} zone {zone.name}"
        seen: dict[int, int] = {}
        free = zero = 0
        for kind in (NOT_ZEROED, ZEROED):
            for order, area in enumerate(zone.free_area[kind]):
                for pfn in area.free_list:
                    idx = pfn - zone.zone_start_pfn
                    assert 0 <= idx and idx + (1 << order) <= zone.spanned_pages, f"{where}: block {pfn} outside zone"
                    assert not idx & ((1 << order) - 1), f"{where}: block {pfn} not aligned to order {order}"
                    assert pfn not in seen, f"{where}: block {pfn} on two lists"
                    seen[pfn] = order
                    free += 1 << order
                    if kind == ZEROED:
                        zero += 1 << order
        assert zone.free_pages == free + zone.scrub_inflight, \
            f"{where}: free_pages {zone.free_pages} != {free} on lists + {zone.scrub_inflight} in flight"
        assert zone.zero_pages == zero, f"{where}: zero_pages {zone.zero_pages} != {zero} on ZEROED lists"
        # No overlapping free blocks.
        end = -1
        for pfn in sorted(seen):
            assert pfn >= end, f"{where}: free blocks overlap at {pfn}"
            end = pfn + (1 << seen[pfn])
        pcp = [pfn for lists in zone.pageset.values() for p in lists for pfn in p.list]
        assert len(pcp) == len(set(pcp)), f"{where}: a page is on two per-CPU lists"
        if not deep:
            continue
        state = zone.page_state
        allocated = 0
        for pfn in pcp:
            assert state[pfn - zone.zone_start_pfn] == PS_PCP, f"{where}: pcp page {pfn} has wrong state"
        for pfn, order in seen.items():
            idx = pfn - zone.zone_start_pfn
            assert state[idx: idx + (1 << order)].count(PS_FREE) == 1 << order, \
                f"{where}: free block {pfn} has pages marked in use"
        raw = state[:zone.spanned_pages]
        for idx, value in enumerate(raw):
            if value not in (PS_FREE, PS_PCP, PS_TAIL):
                allocated += 1 << (value - 1)
        in_use = sum(1 for v in raw if v not in (PS_FREE, PS_PCP))
        assert in_use == allocated, f"{where}: allocated head/tail bytes disagree"
        assert free + zone.scrub_inflight + len(pcp) + allocated == zone.spanned_pages, \
            f"{where}: pages not conserved: {free} free + {zone.scrub_inflight} in flight + " \
            f"{len(pcp)} per-CPU + {allocated} allocated != {zone.spanned_pages}"
