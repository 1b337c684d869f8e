"""The buddy allocator with zeroed and unzeroed free lists (mm/page_alloc.c).

The rules are those of the prezeroing series:

- every zone has ``free_area[NOT_ZEROED][order]`` and ``free_area[ZEROED][order]``;
  coalescing joins only buddies of the same order *and the same kind*;
  ``expand`` returns split halves to the kind they came from;
- ``__GFP_ZERO`` asks for a ZEROED block when ``zone.zero_pages`` covers the
  request (a count check only: when that memory is too fragmented the
  allocation falls back to NOT_ZEROED and the CPU clears the page);
- other allocations use NOT_ZEROED first and consume ZEROED once it runs out;
- order 0 goes through the per-CPU hot, cold and zeroed lists with the
  2.6.10 low/high/batch rules; everything a per-CPU list gives back to the
  buddy lists goes back as NOT_ZEROED.

Every operation is charged in virtual time to the CPU that performs it
(``kernel.sched``): per-CPU list work, the zone lock held for buddy work,
and clearing, which moves bytes over the node's memory bus.

Each operation has one implementation, and the bulk ones are the
implementation: ``rmqueue`` takes ``count`` blocks (one for __rmqueue,
``batch`` for rmqueue_bulk), ``free_pages_bulk`` frees a list of pages
through ``free_one_page``, ``free_hot_cold_pages`` frees pages to a per-CPU
list one after another (one page for free_hot_cold_page, a task's pages at
exit), ``account_alloc`` and ``prep_zero_page`` count and clear ``n``
allocations at once (one for a fault, a series for vmemu.mm.fault_batch).
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from functools import lru_cache
from itertools import accumulate, groupby
from operator import itemgetter
from typing import TYPE_CHECKING, Callable, Final

from ..kernel.sched import CPU, MemoryBus
from .fail_page_alloc import FailPageAlloc
from .gfp import GFP_COLD, GFP_DMA, GFP_ZERO
from .mmzone import (NOT_ZEROED, PCP_COLD, PCP_HOT, PCP_ZEROED, PS_FREE, PS_PCP, PS_TAIL,
                     ZEROED, Node, PerCpuPages, Zone)
from .vmstat import new_cpu_stat

if TYPE_CHECKING:
    from ..arch.memsys import MemorySystem
    from .deferred import DeferredMemory

log = logging.getLogger("vmemu.page_alloc")


class PageAllocError(ValueError):
    """A caller asked the allocator for something impossible (bad order, bad
    pfn, double free).  Raised before any state changes."""


# How an allocation was satisfied, for the fault path's cache model.
ALLOC_PLAIN: Final = 0        # no __GFP_ZERO
ALLOC_ZEROED: Final = 1       # __GFP_ZERO served from zeroed memory: the page is not in this CPU's cache
ALLOC_CLEARED: Final = 2      # __GFP_ZERO cleared by this CPU just now: the page is in its cache


# ---------------------------------------------------------------------------
# Zone-local buddy operations (called with zone->lock held)

def rmqueue(zone: Zone, order: int, kind: int, count: int = 1,
            batch: int = 0) -> tuple[int, list[int], list[tuple[int, int]]]:
    """__rmqueue ``count`` times: each takes the head block of ``kind`` from
    the smallest order >= ``order`` that has one and splits it down
    (expand: the unused halves go back to the same kind's lists).  Returns
    (blocks taken, splits, [(first pfn, blocks)]): each run ascending, in
    the order taken.  splits is a list: those of each ``batch`` takes in
    turn (rmqueue_bulk's refills, one after another); one entry, for every
    take, without ``batch``.

    A block split down leaves its halves as the only blocks below its
    order, so the next takes are that block's, in ascending order, before
    any other block is touched; the i-th (i > 0) of them takes the half of
    order ctz(i).  So whole blocks are taken at a time, and one taken in
    part leaves the rest as expand would have left it: the aligned pieces
    that halving it again and again leaves."""
    areas = zone.free_area[kind]
    runs = []
    froms = []                                # the order each run's block was split from
    taken = splits = 0
    lowest = order                            # no block below this order (none were, none added)
    while count:
        for current in range(lowest, len(areas)):
            if areas[current].free_list:
                break
        else:
            break
        lowest = current
        pfn = areas[current].free_list.popitem()[0]     # the head block of the smallest order
        units = 1 << (current - order)
        take = count if count < units else units
        runs.append((pfn, take))
        froms.append(current)
        # the first take splits current - order times, the i-th ctz(i):
        # sum(ctz(i) for i in 1..n) == n - popcount(n)
        splits += current - order + (take - 1) - (take - 1).bit_count()
        pos = take
        while pos < units:                    # expand: the rest, in aligned pieces
            piece = pos & -pos
            areas[order + piece.bit_length() - 1].free_list[pfn + (pos << order)] = None
            pos += piece
        taken += take
        count -= take
    zone.free_pages -= taken << order
    if kind == ZEROED:
        zone.zero_pages -= taken << order
    return taken, splits_by_batch(runs, froms, order, batch) if batch else [splits], runs


def splits_by_batch(runs, froms, order: int, batch: int) -> list[int]:
    """The splits of each ``batch`` takes in turn of rmqueue's runs: a
    block's first take splits (the order it was split from - order) times,
    its i-th take (i > 0) ctz(i) times."""
    out = []
    acc, room = 0, batch                      # the batch being filled: its splits, its takes left
    for (_pfn, take), current in zip(runs, froms):
        i = 0                                 # the block's next take
        while i < take:
            n = room if room < take - i else take - i
            lo, hi = (i - 1 if i else 0), i + n - 1     # ctz(i) for i in lo + 1 .. hi
            acc += (hi - hi.bit_count()) - (lo - lo.bit_count()) + (0 if i else current - order)
            i += n
            room -= n
            if not room:
                out.append(acc)
                acc, room = 0, batch
    if room < batch:
        out.append(acc)
    return out


def free_one_page(zone: Zone, pfn: int, order: int, kind: int, account: bool = True) -> tuple[int, int]:
    """__free_one_page: put a block on the ``kind`` lists, merging with free
    buddies of the same kind.  Returns (final order, merges).

    ``account=False`` is for a block that stayed counted in free_pages while
    it was off the lists (scrubd's block, prezero_all's)."""
    return free_blocks_bulk(zone, [(pfn - zone.zone_start_pfn, order)], kind, account)


def free_blocks_bulk(zone: Zone, blocks, kind: int, account: bool = True) -> tuple[int, int]:
    """__free_one_page for each (index in the zone, order) block, in order.
    Returns (the highest final order, merges)."""
    areas = zone.free_area[kind]
    start = zone.zone_start_pfn
    top = zone.max_order - 1
    highest = -1
    merges = pages = 0
    # A buddy block past the zone's end is never on a list: the membership
    # test alone decides, as the kernel's two tests do together.
    for idx, order in blocks:
        pages += 1 << order
        while order < top:
            bit = 1 << order
            listed = areas[order].free_list
            buddy = start + (idx ^ bit)
            if buddy not in listed:
                break
            del listed[buddy]
            idx &= ~bit
            order += 1
            merges += 1
        areas[order].free_list[start + idx] = None
        if order > highest:
            highest = order
    if account:
        zone.free_pages += pages
    if kind == ZEROED:
        zone.zero_pages += pages
    return highest, merges


# ---------------------------------------------------------------------------

class PageAllocator:
    """alloc_pages / free_pages over a machine's nodes and zones."""

    def __init__(self, nodes: list[Node], cpus: list[CPU], memory, buses: list[MemoryBus],
                 cost: dict, page_size: int, distance: list[list[int]], memsys: MemorySystem):
        self.nodes = nodes
        self.zones = [z for n in nodes for z in n.zones]
        self.cpus = cpus
        self.memory = memory
        self.buses = buses
        self.page_size = page_size
        self.max_order = self.zones[0].max_order
        self.distance = distance
        self.cpu_stat = [new_cpu_stat() for _ in cpus]
        # costs, read once (attribute lookups on the hot path)
        self.pcp_op_ns = cost["pcp_op_ns"]
        self.zone_lock_ns = cost["zone_lock_ns"]
        self.rmqueue_block_ns = cost["rmqueue_block_ns"]
        self.free_block_ns = cost["free_block_ns"]
        self.coalesce_step_ns = cost["coalesce_step_ns"]
        self.memsys = memsys              # vmemu.arch.memsys.MemorySystem: what a clear costs
        self.fail_page_alloc: FailPageAlloc | None = None     # should_fail(order, gfp, size), when attached
        # --charge task: (zone, pages) -> ns of background zeroing charged to
        # the task taking those zeroed pages (Kscrubd.claim); None: kthread
        self.zeroing_charge: Callable[[Zone, int], int] | None = None
        # Called after a free reaches the buddy lists: (zone, final order, kind, time).
        self.on_coalesce: Callable[[Zone, int, int, int], None] | None = None
        self._zonelists: dict[tuple[int, bool], list[Zone]] = {}
        self._zone_starts = [z.zone_start_pfn for z in self.zones]
        self._last_zone = self.zones[0]

    # -- lookups ---------------------------------------------------------

    def page_zone(self, pfn: int) -> Zone:
        """The zone holding pfn, or PageAllocError."""
        zone = self._last_zone
        if zone.zone_start_pfn <= pfn < zone.zone_start_pfn + zone.spanned_pages:
            return zone
        i = bisect_right(self._zone_starts, pfn) - 1
        if i < 0 or not self.zones[i].contains(pfn):
            raise PageAllocError(f"pfn {pfn} is outside every zone")
        self._last_zone = zone = self.zones[i]
        return zone

    def zonelist(self, node: int, dma: bool = False) -> list[Zone]:
        """build_zonelists: the local node's zones highest first, then the other
        nodes by distance; __GFP_DMA restricts it to DMA zones."""
        key = (node, dma)
        zl = self._zonelists.get(key)
        if zl is None:
            n = len(self.nodes)
            order = sorted(range(n), key=lambda o: (self.distance[node][o], (o - node) % n))
            zl = [z for o in order for z in reversed(self.nodes[o].zones)
                  if z.present_pages and (not dma or z.name == "DMA")]
            self._zonelists[key] = zl
        return zl

    def check_order(self, order: object) -> int:
        """``order`` when it is one (an int, not a bool, below max_order)."""
        if type(order) is not int or not 0 <= order < self.max_order:
            raise PageAllocError(f"invalid order {order!r}: must be an integer in 0..{self.max_order - 1}")
        return order

    # -- allocation --------------------------------------------------------

    def alloc_pages(self, cpu: CPU, order: object, gfp: int) -> int | None:
        """Allocate 2^order pages; the pfn of the first, or None (out of memory
        or an injected failure)."""
        got = self.alloc_pages_how(cpu, order, gfp)
        return None if got is None else got[0]

    def alloc_pages_how(self, cpu: CPU, order: object, gfp: int,
                        later: DeferredMemory | None = None) -> tuple[int, int] | None:
        """__alloc_pages: returns (pfn, ALLOC_*) or None.

        Two passes over the zonelist, as 2.6.10 does before it would reclaim:
        first above each zone's pages_low, then above pages_min.  There is no
        reclaim to fall back on, so what fails both passes is out of memory.
        ``later``: see prep_zero_page."""
        order = self.check_order(order)
        if self.fail_page_alloc is not None and self.fail_page_alloc.should_fail(order, gfp):
            self.cpu_stat[cpu.id]["prezero_alloc_injected_fail"] += 1
            return None
        dma = bool(gfp & GFP_DMA)
        zonelist = self._zonelists.get((cpu.node, dma)) or self.zonelist(cpu.node, dma)
        for low_pass in (True, False):
            for zone in zonelist:
                mark = zone.pages_low if low_pass else zone.pages_min
                if zone.free_pages - (1 << order) + 1 <= mark or \
                        (order and not self.zone_watermark_ok(zone, order, mark)):
                    continue
                got = self.buffered_rmqueue(zone, cpu, order, gfp, later)
                if got is not None:
                    self.account_alloc(zone, cpu, zonelist[0], order)
                    return got
        self.cpu_stat[cpu.id]["prezero_alloc_fail"] += 1
        return None

    def zone_watermark_ok(self, zone: Zone, order: int, mark: int) -> bool:
        """2.6.10 zone_watermark_ok: enough free pages above mark, and enough of
        them in blocks of at least this order."""
        free = zone.free_pages - (1 << order) + 1
        if free <= mark:
            return False
        for o in range(order):
            free -= (zone.free_area[NOT_ZEROED][o].nr_free + zone.free_area[ZEROED][o].nr_free) << o
            mark >>= 1
            if free <= mark:
                return False
        return True

    def account_alloc(self, zone: Zone, cpu: CPU, preferred: Zone, order: int, n: int = 1) -> None:
        """The counters of n allocations of 2^order pages by cpu from zone."""
        pages = n << order
        self.cpu_stat[cpu.id]["pgalloc"] += pages
        zone.stat["pgalloc"] += pages
        nstat = self.nodes[zone.node].stat
        if zone.node == preferred.node:
            nstat["numa_hit"] += n
        else:
            nstat["numa_miss"] += n
            self.nodes[preferred.node].stat["numa_foreign"] += n
        nstat["local_node" if zone.node == cpu.node else "other_node"] += n

    def pcp_list(self, zone: Zone, cpu: CPU, zeroed: bool, cold: bool = False) -> PerCpuPages:
        """The per-CPU list an order-0 allocation takes from: the zeroed
        list when it is to be served zeroed, else the hot (or cold) list."""
        lists = zone.pageset.get(cpu.id) or zone.pcp(cpu.id)
        return lists[PCP_ZEROED if zeroed else PCP_COLD if cold else PCP_HOT]

    def buffered_rmqueue(self, zone: Zone, cpu: CPU, order: int, gfp: int, later: DeferredMemory | None = None) -> tuple[int, int] | None:
        """Take 2^order pages from zone; order 0 through the per-CPU lists
        (refilled first when at their low mark).  __GFP_ZERO is served
        zeroed while zero_pages covers the request, else the CPU clears."""
        zeroed = bool(gfp & GFP_ZERO) and zone.zero_pages >= 1 << order
        kind = ZEROED if zeroed else NOT_ZEROED
        pfn = None
        if order == 0:
            pcp = self.pcp_list(zone, cpu, zeroed, bool(gfp & GFP_COLD))
            cpu.sys(self.pcp_op_ns, "buffered_rmqueue")
            if len(pcp.list) <= pcp.low:
                refills, _runs = self.rmqueue_bulk(zone, pcp, kind)
                zone.lock.hold(cpu, refills[0][1])
            if pcp.list:
                pfn = pcp.list.pop()
        if pfn is None:
            taken, splits, runs = rmqueue(zone, order, kind)
            if not taken:                     # the other kind: a zeroed block is then only a bonus
                zeroed = False
                taken, splits, runs = rmqueue(zone, order, kind ^ 1)
            zone.lock.hold(cpu, self.bulk_hold_ns(taken, splits[0]))
            if not taken:
                return None
            pfn = runs[0][0]
        self.set_allocated(zone, pfn, order)
        self._last_zone = zone                # the caller's page_zone(pfn) is next
        if not gfp & GFP_ZERO:
            return pfn, ALLOC_PLAIN
        self.prep_zero_page(cpu, zone, [(pfn, 1 << order)], zeroed, later, order=order)
        return pfn, ALLOC_ZEROED if zeroed else ALLOC_CLEARED

    def rmqueue_bulk(self, zone: Zone, pcp: PerCpuPages, kind: int,
                     refills: int = 1) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """rmqueue_bulk ``refills`` times in a row: each puts up to ``batch``
        order-0 pages of the list's kind on its cold end (list_add_tail),
        under the zone lock.  Returns each refill's (pages taken, zone lock
        hold), the hold for the caller to charge when that refill runs
        (buffered_rmqueue at once, a fault series (vmemu.mm.fault_batch) at
        each refill's own time, between the faults that use the pages), and
        the pages as (first pfn, count) runs, in the order taken."""
        batch = pcp.batch
        taken, splits, runs = rmqueue(zone, 0, kind, batch * refills, batch if refills > 1 else 0)
        pages, state, start = pcp.list, zone.page_state, zone.zone_start_pfn
        for pfn, n in runs:
            pages.extendleft(range(pfn, pfn + n))     # list_add_tail, page by page
            state[pfn - start: pfn - start + n] = marks(PS_PCP, n)
        if refills == 1:
            return [(taken, self.bulk_hold_ns(taken, splits[0]))], runs
        out, left = [], taken
        for j in range(refills):              # the last refills take less, or none, when the kind runs out
            n = batch if left > batch else left
            left -= n
            out.append((n, self.bulk_hold_ns(n, splits[j] if j < len(splits) else 0)))
        return out, runs

    def bulk_hold_ns(self, taken: int, splits: int) -> int:
        """The zone lock's hold for a refill of ``taken`` pages with ``splits`` splits."""
        return self.zone_lock_ns + taken * self.rmqueue_block_ns + splits * self.coalesce_step_ns

    def set_allocated(self, zone: Zone, pfn: int, order: int) -> None:
        idx = pfn - zone.zone_start_pfn
        state = zone.page_state
        state[idx] = order + 1
        if order:
            state[idx + 1: idx + (1 << order)] = tail_run(order)

    def prep_zero_page(self, cpu: CPU, zone: Zone, runs: list[tuple[int, int]], zeroed: bool,
                       later: DeferredMemory | None = None, times: list[tuple[int, int, int]] | None = None,
                       order: int = 0, sharing: int = 0) -> None:
        """__GFP_ZERO's promise for cpu's allocations of 2^order pages from
        zone, whose pages are ``runs`` ((first pfn, pages) each): each reads
        as zero.  Unless ``zeroed`` the CPU clears them: the clear's time on
        the node's bus is booked at cpu.time and charged to cpu, or, for a
        fault series, ``times`` gives the clears' starts as (first, step,
        count) segments, each with ``sharing`` other transfers on the bus,
        and the caller charges the CPU.  Counted; the real bytes are cleared
        and checked now, or by ``later`` (vmemu.mm.deferred: host-side, with
        the same effect)."""
        pages = runs[0][1] if len(runs) == 1 else sum(n for _, n in runs)
        allocs = pages >> order
        stat, zstat = self.cpu_stat[cpu.id], zone.stat
        if zeroed:
            stat["prezero_alloc_zeroed"] += allocs
            zstat["prezero_alloc_zeroed"] += allocs
            if self.zeroing_charge is not None:
                cpu.charged_ns += self.zeroing_charge(zone, pages)
        else:
            if times is None:
                self.clear_time(cpu, zone, pages)
            else:
                self.buses[zone.node].transfer_series(times, self.memsys.page_traffic(),
                                                      self.clear_rate(cpu, zone), "task", sharing)
            self.memsys.wrote(cpu.id, runs, self.memsys.lines_per_page)      # the cleared page is cached
            stat["prezero_alloc_cleared"] += allocs
            zstat["prezero_alloc_cleared"] += allocs
            stat["prezero_clear_pages"] += pages
            stat["prezero_clear_bytes"] += pages * self.page_size
            zstat["prezero_clear_pages"] += pages
        if not self.memory.real:
            return
        if later is not None:
            later.clear_and_check(cpu, zone, runs, not zeroed)
            return
        for first, n in runs:
            if not zeroed:
                self.memory.clear(first, n)
            for pfn in range(first, first + n, 1 << order):
                self.verify_zero(cpu, zone, pfn, 1 << order)

    def clear_rate(self, cpu: CPU, zone: Zone) -> float:
        """Bus bytes per ns of this CPU clearing pages of this zone
        (MemorySystem.clear_rate: a run of store misses, or a streaming clear)."""
        return self.memsys.clear_rate(cpu.node, zone.node)

    def clear_page_ns(self, cpu: CPU, zone: Zone, others: int = 0) -> int:
        """One page's clear by this CPU with ``others`` transfers on the bus."""
        return self.buses[zone.node].duration(self.memsys.page_traffic(), self.clear_rate(cpu, zone), others)

    def clear_time(self, cpu: CPU, zone: Zone, npages: int, user: str = "task") -> None:
        """The CPU's time clearing npages of zone: their traffic over the
        node's bus, booked there as ``user``'s (a faulting task, or kscrubd)."""
        end = self.buses[zone.node].transfer(cpu.time, npages * self.memsys.page_traffic(),
                                             self.clear_rate(cpu, zone), user)
        cpu.sys(end - cpu.time, "clear_page")

    def verify_zero(self, cpu: CPU, zone: Zone, pfn: int, npages: int) -> None:
        """One allocation of npages handed out for __GFP_ZERO must be zero in
        real memory.  A violation is counted and logged loudly, and the
        pages are cleared so that the caller still never sees dirty memory."""
        if self.memory.is_zero(pfn, npages):
            return
        self.cpu_stat[cpu.id]["prezero_verify_fail"] += 1
        zone.stat["prezero_verify_fail"] += 1
        log.error("ZERO GUARANTEE VIOLATED: pfn %d (%d pages) in node %d zone %s was handed out "
                  "for __GFP_ZERO but is not all zero", pfn, npages, zone.node, zone.name)
        self.memory.clear(pfn, npages)

    # -- freeing -------------------------------------------------------------

    def check_free(self, pfn: object, order: object) -> tuple[Zone, int, int]:
        """Validate a free before touching anything: (the page's zone, pfn, order)."""
        order = self.check_order(order)
        if type(pfn) is not int:
            raise PageAllocError(f"invalid pfn {pfn!r}")
        zone = self.page_zone(pfn)
        idx = pfn - zone.zone_start_pfn
        if idx & ((1 << order) - 1):
            raise PageAllocError(f"pfn {pfn} is not aligned to order {order} in zone {zone.name}")
        if idx + (1 << order) > zone.spanned_pages:
            raise PageAllocError(f"pfn {pfn} order {order} runs past the end of zone {zone.name}")
        state = zone.page_state[idx]
        if state == order + 1:
            return zone, pfn, order
        if state == PS_FREE:
            raise PageAllocError(f"free of pfn {pfn}: page is not allocated (double free, or never allocated)")
        if state == PS_PCP:
            raise PageAllocError(f"free of pfn {pfn}: double free, the page is on a per-CPU free list")
        if state == PS_TAIL:
            raise PageAllocError(f"free of pfn {pfn}: not the head of an allocated block")
        raise PageAllocError(f"free of pfn {pfn} with order {order}: it was allocated with order {state - 1}")

    def free_pages(self, cpu: CPU, pfn: object, order: object) -> None:
        """__free_pages: order 0 to the per-CPU hot list, larger blocks to the
        buddy lists as NOT_ZEROED.  Freed pages are poisoned."""
        zone, pfn, order = self.check_free(pfn, order)
        if order == 0:
            self.free_order0_run(cpu, [pfn], lambda z: 0)
            return
        n = 1 << order
        self.memory.poison(pfn, n)
        self.cpu_stat[cpu.id]["pgfree"] += n
        zone.stat["pgfree"] += n
        idx = pfn - zone.zone_start_pfn
        zone.page_state[idx: idx + n] = free_run(order)
        final, merges = free_one_page(zone, pfn, order, NOT_ZEROED)
        zone.lock.hold(cpu, self.zone_lock_ns + self.free_block_ns + merges * self.coalesce_step_ns)
        self.coalesced(zone, final, NOT_ZEROED, cpu.time)

    def order0_allocated(self, pfns) -> int:
        """How many of pfns, from the first, free_pages(cpu, pfn, 0) would take
        one after another: each an allocated order-0 page, none twice."""
        if self.allocated_runs(pfns) is not None:
            return len(pfns)                  # all of them (checked a run at a time)
        seen = set()                          # the first page that is not, one at a time
        for i, pfn in enumerate(pfns):
            if pfn.__class__ is not int or pfn in seen:
                return i
            try:
                zone = self.page_zone(pfn)
            except PageAllocError:
                return i
            if zone.page_state[pfn - zone.zone_start_pfn] != 1:
                return i
            seen.add(pfn)
        return len(pfns)

    def allocated_runs(self, pfns):
        """pfns sorted as (zone, first pfn, count) runs when every one is an
        allocated order-0 page and none is there twice; else None."""
        try:
            order = sorted(pfns)
            if order and order[0].__class__ is not int:
                return None
            runs = self.zone_runs(order)
            end = None
            for zone, first, n in runs:
                start = zone.zone_start_pfn
                if (end is not None and first < end) or zone.page_state[first - start: first - start + n].count(1) != n:
                    return None
                end = first + n
            return runs
        except (PageAllocError, TypeError):
            return None

    def free_order0_run(self, cpu: CPU, pfns, extra_ns) -> int:
        """free_pages(cpu, pfn, 0) for each of pfns in order, as long as each
        is an allocated order-0 page not freed before (order0_allocated),
        each free after ``extra_ns(zone)`` ns of the caller's work on that
        page (exit_mmap's zap).  Returns how many were freed: the next one
        is not such a page (free_pages says why).  Poisoning and the state
        bytes come first, a sorted run at a time: nothing reads these pages
        before they reach the buddy lists."""
        runs = self.allocated_runs(pfns)
        if runs is None:
            pfns = pfns[:self.order0_allocated(pfns)]
            runs = self.zone_runs(sorted(pfns))
        real = self.memory.real
        for zone, first, n in runs:
            zone.page_state[first - zone.zone_start_pfn: first - zone.zone_start_pfn + n] = marks(PS_PCP, n)
            if real:
                self.memory.poison(first, n)
        self.cpu_stat[cpu.id]["pgfree"] += len(pfns)
        self.free_hot_cold_pages(cpu, pfns, extra_ns)
        return len(pfns)

    def one_zone(self, pfns) -> Zone | None:
        """The zone of all pfns, if they are all one zone's."""
        zone = self.page_zone(pfns[0])
        return zone if zone.contains(min(pfns)) and zone.contains(max(pfns)) else None

    def zone_runs(self, order: list[int]):
        """Ascending pfns as (zone, first pfn, count) runs of consecutive pfns."""
        out = []
        lo, n = 0, len(order)
        while lo < n:
            zone = self.page_zone(order[lo])
            hi = bisect_right(order, zone.zone_start_pfn + zone.spanned_pages - 1, lo)
            out += [(zone, first, k) for first, k in ascending_runs(order, lo, hi)]
            lo = hi
        return out

    def free_hot_cold_pages(self, cpu: CPU, pfns, extra_ns, extra_activity: str = "zap_pte_range") -> None:
        """free_hot_cold_page for each of pfns (order-0 pages, marked PS_PCP
        already), one after another, each after ``extra_ns(zone)`` of the
        caller's work (``extra_activity``): a list op on its zone's hot
        list, and when that list is full a batch goes back to the buddy
        lists first (free_pages_bulk) at the time that free would run.  The
        time of the frees between two full lists is charged at once."""
        if not pfns:
            return
        zone = self.one_zone(pfns)
        if zone is not None:                  # one zone: the list takes runs of pages at a time
            zone.stat["pgfree"] += len(pfns)
            self._free_hot_run(zone, cpu, pfns, extra_ns(zone), extra_activity)
        else:
            self._free_hot_zones(cpu, pfns, extra_ns, extra_activity)

    def _free_hot_zones(self, cpu: CPU, pfns, extra_ns, extra_activity: str) -> None:
        """free_hot_cold_pages for pages of several zones: each zone's pages
        go on its hot list together and its drains take their pages in turn
        (_free_hot_run); the drains of every zone run in the order of the
        frees that reach them, each at that free's time."""
        which = [bisect_right(self._zone_starts, pfn) - 1 for pfn in pfns]
        extra = {i: extra_ns(self.zones[i]) for i in set(which)}
        work = list(accumulate(extra[i] for i in which))      # the caller's work up to each free
        drains = []                           # (the free that reaches it, zone, its zone's drains)
        for i, group in groupby(sorted(range(len(pfns)), key=which.__getitem__), key=which.__getitem__):
            frees, zone = list(group), self.zones[i]
            zone.stat["pgfree"] += len(frees)
            pcp = (zone.pageset.get(cpu.id) or zone.pcp(cpu.id))[PCP_HOT]
            fulls = full_frees(len(pcp.list), len(frees), pcp.high, pcp.batch)
            pcp.list.extend([pfns[f] for f in frees])
            zone_drains = self.drain_pcp(zone, pcp, pcp.batch, len(fulls))
            drains += [(frees[f], zone, zone_drains) for f in fulls]
        drains.sort(key=itemgetter(0))
        t, held = cpu.time, 0
        for free, zone, zone_drains in drains:
            hold, highest = next(zone_drains)
            cpu.time = before = t + work[free] + (free + 1) * self.pcp_op_ns + held
            self.drained(zone, cpu, hold, highest)
            held += cpu.time - before
        cpu.time = t + held
        self._charge_frees(cpu, len(pfns), work[-1], extra_activity)

    def _free_hot_run(self, zone: Zone, cpu: CPU, pfns, extra: int, extra_activity: str) -> None:
        """free_hot_cold_pages when every page is zone's, each after extra
        ns.  The list is a queue between its ends: the pages go on at its
        head and each free that finds it full first drains ``batch`` from
        its tail, so all of them go on at once and the drains take their
        pages in turn (drain_pcp), each charged at the time it runs."""
        pcp = (zone.pageset.get(cpu.id) or zone.pcp(cpu.id))[PCP_HOT]
        fulls = full_frees(len(pcp.list), len(pfns), pcp.high, pcp.batch)
        pcp.list.extend(pfns)
        drains = self.drain_pcp(zone, pcp, pcp.batch, len(fulls))
        lock, n = zone.lock, len(pfns)
        if fulls and lock.last_cpu is cpu and lock.free_at <= cpu.time:
            self._drains_uncontended(zone, cpu, fulls, drains, extra)
        else:
            done = 0                          # frees charged
            for full, (hold, highest) in zip(fulls, drains):
                self._charge_frees(cpu, full + 1 - done, (full + 1 - done) * extra, extra_activity)
                self.drained(zone, cpu, hold, highest)
                done = full + 1
            n -= done
        self._charge_frees(cpu, n, n * extra, extra_activity)

    def _drains_uncontended(self, zone: Zone, cpu: CPU, fulls: list[int], drains, extra: int) -> None:
        """The drains of _free_hot_run when zone's lock is this CPU's and
        free: each hold, after the frees before it, is the same
        uncontended hold as drained's; all are booked at once (another CPU
        behind this one may still meet them), each coalesce is at its own
        time.  The caller charges the frees."""
        each = extra + self.pcp_op_ns
        t = cpu.time
        held, bookings = 0, []
        for full, (hold, highest) in zip(fulls, drains):
            start = t + (full + 1) * each + held
            bookings.append((start, hold))
            held += hold
            if highest >= 0:
                self.coalesced(zone, highest, NOT_ZEROED, start + hold)
        zone.lock.held_uncontended(cpu, len(fulls), held, bookings)
        cpu.time = t + held
        cpu.system_ns += held

    def _charge_frees(self, cpu: CPU, frees: int, extra: int, extra_activity: str) -> None:
        """The time of ``frees`` frees to a hot list: the caller's work, then the list op."""
        if extra:
            cpu.sys(extra, extra_activity)
        cpu.sys(frees * self.pcp_op_ns, "free_hot_cold_page")

    def free_pages_bulk(self, zone: Zone, cpu: CPU, pcp: PerCpuPages, count: int) -> int:
        """Give ``count`` pages from the tail (coldest end) of a per-CPU list
        back to the buddy lists, always as NOT_ZEROED, under the zone lock
        (held now).  Returns the pages freed."""
        n = min(count, len(pcp.list))
        hold, highest = next(self.drain_pcp(zone, pcp, count))
        self.drained(zone, cpu, hold, highest)
        return n

    def drain_pcp(self, zone: Zone, pcp: PerCpuPages, count: int, drains: int = 1):
        """free_pages_bulk's list and buddy work ``drains`` times in a row:
        each gives ``count`` pages from the list's tail back to the buddy
        lists as NOT_ZEROED.  Yields each one's (zone lock hold, highest
        final order or -1) once its pages are on the buddy lists, for the
        caller to charge (drained) before the next one's.

        Pages that follow one another in a whole aligned block are freed as
        that block (free_blocks): inside it each page merges only with
        buddies inside it, so the block ends whole after 2^order - 1 merges,
        and the lists' other entries keep their order."""
        drained = pcp.take_tail(min(count * drains, len(pcp.list)))
        start, top = zone.zone_start_pfn, zone.max_order - 1
        state, order = zone.page_state, sorted(drained)     # every page drained is free from here
        if order and order[-1] - order[0] == len(order) - 1:
            state[order[0] - start: order[-1] + 1 - start] = marks(PS_FREE, len(order))
        else:
            for pfn in order:
                state[pfn - start] = PS_FREE
        chunks = [drained[at:at + count] for at in range(0, len(drained), count)]
        for pages in chunks + [[]] * (drains - len(chunks)):     # an empty list's drains free nothing
            blocks = free_blocks(pages, start, top)
            highest, merges = free_blocks_bulk(zone, blocks, NOT_ZEROED)
            # inside a whole block of the run, each page merges with buddies inside it: 2^order - 1 merges
            merges += len(pages) - len(blocks)
            yield (self.zone_lock_ns + len(pages) * self.free_block_ns + merges * self.coalesce_step_ns,
                   highest)

    def drained(self, zone: Zone, cpu: CPU, hold: int, highest: int) -> None:
        """A drain's zone lock hold, charged to cpu now, and its coalesce."""
        zone.lock.hold(cpu, hold)
        if highest >= 0:
            self.coalesced(zone, highest, NOT_ZEROED, cpu.time)

    def drain_pages(self, cpu: CPU) -> int:
        """drain_local_pages: empty this CPU's lists in every zone (the zeroed
        list too: its pages return as NOT_ZEROED)."""
        freed = 0
        for zone in self.zones:
            lists = zone.pageset.get(cpu.id)
            if lists:
                for pcp in lists:
                    if pcp.list:
                        freed += self.free_pages_bulk(zone, cpu, pcp, pcp.count)
        return freed

    def coalesced(self, zone: Zone, order: int, kind: int, t: int) -> None:
        """A free reached the buddy lists at time t, coalescing to ``order``."""
        if self.on_coalesce is not None:
            self.on_coalesce(zone, order, kind, t)


def full_frees(listed: int, n: int, high: int, batch: int) -> list[int]:
    """Which of n frees to a hot list holding ``listed`` pages find it full
    (``high`` pages or more), each of them draining ``batch`` pages first:
    after one, the list is again full ``batch`` frees later."""
    fulls, i = [], 0
    while listed > high and i < n:            # more than high (not left by the kernel's rules)
        fulls.append(i)
        listed += 1 - batch
        i += 1
    return fulls + list(range(i + high - listed, n, batch)) if i < n else fulls


def ascending_runs(order: list[int], lo: int, hi: int) -> list[tuple[int, int]]:
    """order[lo:hi], ascending and distinct, as (first, count) runs of
    consecutive pfns; a single run is found without a Python loop."""
    if hi - lo and order[hi - 1] - order[lo] == hi - lo - 1:
        return [(order[lo], hi - lo)]
    runs, i = [], lo
    while i < hi:
        j = i + 1
        while j < hi and order[j] == order[j - 1] + 1:
            j += 1
        runs.append((order[i], j - i))
        i = j
    return runs


def free_blocks(pages: list[int], start: int, top: int) -> list[tuple[int, int]]:
    """The pages, in order, as (index in the zone, order) blocks: each
    aligned block of order <= top whose pages come one after another in
    pages, ascending or descending, as one entry (the largest such from the
    run's first end); every other page as a block of order 0."""
    n = len(pages)
    if n > 1:
        first = pages[0]
        if pages[-1] == first - n + 1 and pages == list(range(first, first - n, -1)):
            return _run_blocks(first - start + 1, first - start - n + 1, top, True)
        if pages[-1] == first + n - 1 and pages == list(range(first, first + n)):
            return _run_blocks(first - start, first - start + n, top, False)
    return [(pfn - start, 0) for pfn in pages]


def _run_blocks(frm: int, to: int, top: int, down: bool) -> list[tuple[int, int]]:
    """The blocks of the pages from index frm to index to (exclusive), taken
    from frm's end: down from frm - 1, or up from frm.  Each is as large as
    the alignment of that end allows, within the pages left and top."""
    blocks = []
    if down:
        end, low = frm, to
        while end > low:
            order = (end & -end).bit_length() - 1
            left = (end - low).bit_length() - 1
            if left < order:
                order = left
            if order > top:
                order = top
            end -= 1 << order
            blocks.append((end, order))
    else:
        low, end = frm, to
        while low < end:
            order = (low & -low).bit_length() - 1 if low else top
            left = (end - low).bit_length() - 1
            if left < order:
                order = left
            if order > top:
                order = top
            blocks.append((low, order))
            low += 1 << order
    return blocks


@lru_cache(maxsize=None)
def _marks(value: int) -> bytes:
    return bytes([value]) * 4096


def marks(value: int, n: int) -> bytes:
    """n page_state bytes of ``value``, for a slice assignment."""
    return _marks(value)[:n] if n <= 4096 else bytes([value]) * n


@lru_cache(maxsize=None)
def tail_run(order: int) -> bytes:
    """page_state bytes for the tail pages of a block (slice assignment needs bytes)."""
    return bytes([PS_TAIL]) * ((1 << order) - 1)


@lru_cache(maxsize=None)
def free_run(order: int) -> bytes:
    return bytes(1 << order)
