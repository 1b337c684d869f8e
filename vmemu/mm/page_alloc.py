"""The buddy allocator with zeroed and unzeroed free lists (mm/page_alloc.c).

The rules are those of the prezeroing series (reference section 1 and 2):

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
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from functools import lru_cache
from typing import Callable

from ..kernel.sched import CPU, MemoryBus
from .vmstat import new_cpu_stat
from .gfp import GFP_COLD, GFP_DMA, GFP_ZERO
from .mmzone import (NOT_ZEROED, PCP_COLD, PCP_HOT, PCP_ZEROED, PS_FREE, PS_PCP, PS_TAIL,
                     ZEROED, Node, Zone)

log = logging.getLogger("vmemu.page_alloc")


class PageAllocError(ValueError):
    """A caller asked the allocator for something impossible (bad order, bad
    pfn, double free).  Raised before any state changes."""


# How an allocation was satisfied, for the fault path's cache model.
ALLOC_PLAIN = 0        # no __GFP_ZERO
ALLOC_ZEROED = 1       # __GFP_ZERO served from zeroed memory: the page is not in this CPU's cache
ALLOC_CLEARED = 2      # __GFP_ZERO cleared by this CPU just now: the page is in its cache


# ---------------------------------------------------------------------------
# Zone-local buddy operations (called with zone->lock held)

def expand(zone: Zone, pfn: int, low: int, high: int, kind: int) -> int:
    """Split a block of order ``high`` down to ``low``; the upper halves go
    back to the free lists of the same kind.  Returns the number of splits."""
    size = 1 << high
    splits = high - low
    while high > low:
        high -= 1
        size >>= 1
        zone.free_area[kind][high].add(pfn + size)
    return splits


def rmqueue(zone: Zone, order: int, kind: int) -> tuple[int, int] | None:
    """__rmqueue: the head block of ``kind`` from the smallest order >= order.
    Returns (pfn, splits) or None."""
    areas = zone.free_area[kind]
    for current in range(order, zone.max_order):
        area = areas[current]
        if area.nr_free:
            pfn = area.pop_head()
            zone.free_pages -= 1 << order
            if kind == ZEROED:
                zone.zero_pages -= 1 << order
            return pfn, expand(zone, pfn, order, current, kind)
    return None


def free_one_page(zone: Zone, pfn: int, order: int, kind: int, account: bool = True) -> tuple[int, int]:
    """__free_one_page: put a block on the ``kind`` lists, merging with free
    buddies of the same kind.  Returns (final order, merges).

    ``account=False`` is for a block that stayed counted in free_pages while
    it was off the lists (scrubd's in-flight block)."""
    npages = 1 << order
    if account:
        zone.free_pages += npages
    if kind == ZEROED:
        zone.zero_pages += npages
    areas = zone.free_area[kind]
    start = zone.zone_start_pfn
    size = zone.spanned_pages
    idx = pfn - start
    merges = 0
    while order < zone.max_order - 1:
        buddy_idx = idx ^ (1 << order)
        if buddy_idx + (1 << order) > size:
            break
        area = areas[order]
        buddy = start + buddy_idx
        if buddy not in area.free_list:
            break
        area.remove(buddy)
        idx &= buddy_idx
        order += 1
        merges += 1
    areas[order].add(start + idx)
    return order, merges


# ---------------------------------------------------------------------------

class PageAllocator:
    """alloc_pages / free_pages over a machine's nodes and zones."""

    def __init__(self, nodes: list[Node], cpus: list[CPU], memory, buses: list[MemoryBus],
                 cost: dict, page_size: int, distance: list[list[int]]):
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
        self.clear_bytes_per_ns = cost["clear_bytes_per_ns"]
        self.clear_remote_bytes_per_ns = cost["clear_remote_bytes_per_ns"]
        self.fail_page_alloc = None      # an object with should_fail(order, gfp, size)
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

    def zonelist(self, node: int, dma: bool) -> list[Zone]:
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

    def check_order(self, order) -> None:
        if order.__class__ is not int or not 0 <= order < self.max_order:
            raise PageAllocError(f"invalid order {order!r}: must be an integer in 0..{self.max_order - 1}")

    # -- allocation --------------------------------------------------------

    def alloc_pages(self, cpu: CPU, order: int, gfp: int) -> int | None:
        """Allocate 2^order pages; the pfn of the first, or None (out of memory
        or an injected failure)."""
        got = self.alloc_pages_how(cpu, order, gfp)
        return None if got is None else got[0]

    def alloc_pages_how(self, cpu: CPU, order: int, gfp: int) -> tuple[int, int] | None:
        """__alloc_pages: returns (pfn, ALLOC_*) or None.

        Two passes over the zonelist, as 2.6.10 does before it would reclaim:
        first above each zone's pages_low, then above pages_min.  There is no
        reclaim to fall back on, so what fails both passes is out of memory."""
        if order.__class__ is not int or not 0 <= order < self.max_order:
            self.check_order(order)
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
                got = self.buffered_rmqueue(zone, cpu, order, gfp)
                if got is not None:
                    self.account_alloc(zone, cpu, order, zonelist[0])
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

    def account_alloc(self, zone: Zone, cpu: CPU, order: int, preferred: Zone) -> None:
        n = 1 << order
        self.cpu_stat[cpu.id]["pgalloc"] += n
        zone.stat["pgalloc"] += n
        nstat = self.nodes[zone.node].stat
        if zone.node == preferred.node:
            nstat["numa_hit"] += 1
        else:
            nstat["numa_miss"] += 1
            self.nodes[preferred.node].stat["numa_foreign"] += 1
        if zone.node == cpu.node:
            nstat["local_node"] += 1
        else:
            nstat["other_node"] += 1

    def buffered_rmqueue(self, zone: Zone, cpu: CPU, order: int, gfp: int) -> tuple[int, int] | None:
        """Take 2^order pages from zone; order 0 through the per-CPU lists.
        Clears on the CPU when __GFP_ZERO could not be served zeroed."""
        want_zero = bool(gfp & GFP_ZERO)
        zero = want_zero and zone.zero_pages >= 1 << order
        pfn = None
        if order == 0:
            which = PCP_ZEROED if zero else (PCP_COLD if gfp & GFP_COLD else PCP_HOT)
            pcp = (zone.pageset.get(cpu.id) or zone.pcp(cpu.id))[which]
            cpu.time += self.pcp_op_ns
            cpu.system_ns += self.pcp_op_ns
            if len(pcp.list) <= pcp.low:
                self.rmqueue_bulk(zone, cpu, pcp, ZEROED if which == PCP_ZEROED else NOT_ZEROED)
            if pcp.list:
                pfn = pcp.list.pop()
            # a page from the hot or cold list is never treated as zeroed
        if pfn is None:
            kind = ZEROED if zero else NOT_ZEROED
            got = rmqueue(zone, order, kind)
            if got is None:
                got = rmqueue(zone, order, kind ^ 1)
                zero = False
            if got is None:
                zone.lock.hold(cpu, self.zone_lock_ns)
                return None
            pfn, splits = got
            zone.lock.hold(cpu, self.zone_lock_ns + self.rmqueue_block_ns + splits * self.coalesce_step_ns)
        self.set_allocated(zone, pfn, order)
        if not want_zero:
            return pfn, ALLOC_PLAIN
        stat = self.cpu_stat[cpu.id]
        how = ALLOC_ZEROED
        if zero:
            stat["prezero_alloc_zeroed"] += 1
            zone.stat["prezero_alloc_zeroed"] += 1
        else:
            self.clear_on_cpu(cpu, zone, pfn, 1 << order)
            stat["prezero_alloc_cleared"] += 1
            zone.stat["prezero_alloc_cleared"] += 1
            how = ALLOC_CLEARED
        self.verify_zero(cpu, zone, pfn, order)
        return pfn, how

    def rmqueue_bulk(self, zone: Zone, cpu: CPU, pcp, kind: int) -> int:
        """Refill a per-CPU list with up to ``batch`` order-0 pages of its own
        kind (take_bulk), under the zone lock.  Returns the pages taken."""
        taken, splits, blocks = self.take_bulk(zone, kind, pcp.batch)
        pages, state, start = pcp.list, zone.page_state, zone.zone_start_pfn
        for pfn, n in blocks:
            pages.extendleft(range(pfn, pfn + n))     # list_add_tail, page by page
            state[pfn - start: pfn - start + n] = marks(PS_PCP, n)
        zone.lock.hold(cpu, self.bulk_hold_ns(taken, splits))
        return taken

    def bulk_hold_ns(self, taken: int, splits: int) -> int:
        """The zone lock's hold for a refill of ``taken`` pages with ``splits`` splits."""
        return self.zone_lock_ns + taken * self.rmqueue_block_ns + splits * self.coalesce_step_ns

    def take_bulk(self, zone: Zone, kind: int, need: int) -> tuple[int, int, list[tuple[int, int]]]:
        """rmqueue(zone, 0, kind) up to ``need`` times, the buddy lists' side of
        rmqueue_bulk: (pages taken, splits, the pages as (first pfn, count)
        runs in the order taken, each ascending).  The caller puts them on
        its list and marks them.

        rmqueue takes the head block of the smallest order that has one and
        splits it down (expand): its halves become the only blocks below its
        order, so the next pages are that block's, in ascending order, before
        any other block is touched; the i-th page of a block (i > 0) pops the
        half of order ctz(i).  So this takes whole blocks at a time, and a
        block taken in part leaves the rest on the lists as the aligned
        pieces expand would have left: same pages, same order, same lists,
        same splits."""
        areas = zone.free_area[kind]
        blocks = []
        taken = splits = 0
        top = -1                              # the highest order whose list changed
        lowest = 0                            # no block below this order (none were, none added)
        while need:
            for order in range(lowest, len(areas)):
                area = areas[order]
                if area.free_list:
                    break
            else:
                break
            lowest = order
            pfn = area.free_list.popitem()[0]     # the head block of the smallest order
            if order > top:
                top = order
            size = 1 << order
            take = min(need, size)
            blocks.append((pfn, take))
            # expand() splits `order` times for the first page, ctz(i) for the
            # i-th: sum(ctz(i) for i in 1..n) == n - popcount(n)
            splits += order + (take - 1) - (take - 1).bit_count()
            pos = take
            while pos < size:                 # the untaken rest, in aligned pieces (below order)
                low = pos & -pos
                areas[low.bit_length() - 1].free_list[pfn + pos] = None
                pos += low
            taken += take
            need -= take
        for area in areas[:top + 1]:
            area.nr_free = len(area.free_list)
        zone.free_pages -= taken
        if kind == ZEROED:
            zone.zero_pages -= taken
        return taken, splits, blocks

    def set_allocated(self, zone: Zone, pfn: int, order: int) -> None:
        idx = pfn - zone.zone_start_pfn
        state = zone.page_state
        state[idx] = order + 1
        if order:
            state[idx + 1: idx + (1 << order)] = tail_run(order)

    def clear_on_cpu(self, cpu: CPU, zone: Zone, pfn: int, npages: int) -> None:
        """prep_zero_page: the CPU clears the block, one memset, over the node's bus."""
        self.memory.clear(pfn, npages)
        nbytes = self.clear_time(cpu, zone, npages)
        stat = self.cpu_stat[cpu.id]
        stat["prezero_clear_pages"] += npages
        stat["prezero_clear_bytes"] += nbytes
        zone.stat["prezero_clear_pages"] += npages

    def clear_time(self, cpu: CPU, zone: Zone, npages: int) -> int:
        """The CPU's time clearing npages: the bytes over the node's bus.  Returns the bytes."""
        nbytes = npages * self.page_size
        rate = self.clear_bytes_per_ns if zone.node == cpu.node else self.clear_remote_bytes_per_ns
        end = self.buses[zone.node].transfer(cpu.time, nbytes, rate)
        cpu.system_ns += end - cpu.time
        cpu.time = end
        return nbytes

    def verify_zero(self, cpu: CPU, zone: Zone, pfn: int, order: int) -> None:
        """Every page handed out for __GFP_ZERO must be zero in real memory.
        A violation is counted and logged loudly, and the page is cleared so
        that the caller still never sees dirty memory."""
        if self.memory.is_zero(pfn, 1 << order):
            return
        self.cpu_stat[cpu.id]["prezero_verify_fail"] += 1
        zone.stat["prezero_verify_fail"] += 1
        log.error("ZERO GUARANTEE VIOLATED: pfn %d order %d in node %d zone %s was handed out "
                  "for __GFP_ZERO but is not all zero", pfn, order, zone.node, zone.name)
        self.memory.clear(pfn, 1 << order)

    # -- freeing -------------------------------------------------------------

    def check_free(self, pfn: int, order: int) -> Zone:
        """Validate a free before touching anything; returns the page's zone."""
        if order.__class__ is not int or not 0 <= order < self.max_order:
            self.check_order(order)
        if pfn.__class__ is not int:
            raise PageAllocError(f"invalid pfn {pfn!r}")
        zone = self.page_zone(pfn)
        idx = pfn - zone.zone_start_pfn
        if idx & ((1 << order) - 1):
            raise PageAllocError(f"pfn {pfn} is not aligned to order {order} in zone {zone.name}")
        if idx + (1 << order) > zone.spanned_pages:
            raise PageAllocError(f"pfn {pfn} order {order} runs past the end of zone {zone.name}")
        state = zone.page_state[idx]
        if state == order + 1:
            return zone
        if state == PS_FREE:
            raise PageAllocError(f"free of pfn {pfn}: page is not allocated (double free, or never allocated)")
        if state == PS_PCP:
            raise PageAllocError(f"free of pfn {pfn}: double free, the page is on a per-CPU free list")
        if state == PS_TAIL:
            raise PageAllocError(f"free of pfn {pfn}: not the head of an allocated block")
        raise PageAllocError(f"free of pfn {pfn} with order {order}: it was allocated with order {state - 1}")

    def free_pages(self, cpu: CPU, pfn: int, order: int) -> None:
        """__free_pages: order 0 to the per-CPU hot list, larger blocks to the
        buddy lists as NOT_ZEROED.  Freed pages are poisoned."""
        if order == 0 and pfn.__class__ is int:
            # the common case, checked without check_free's calls: an allocated
            # order-0 page (state byte 1) of the zone last looked at
            zone = self._last_zone
            idx = pfn - zone.zone_start_pfn
            if 0 <= idx < zone.spanned_pages and zone.page_state[idx] == 1:
                self.memory.poison(pfn, 1)
                self.cpu_stat[cpu.id]["pgfree"] += 1
                zone.stat["pgfree"] += 1
                self.free_hot_cold_page(zone, cpu, pfn, cold=False)
                return
        zone = self.check_free(pfn, order)
        n = 1 << order
        self.memory.poison(pfn, n)
        idx = pfn - zone.zone_start_pfn
        self.cpu_stat[cpu.id]["pgfree"] += n
        zone.stat["pgfree"] += n
        if order == 0:
            self.free_hot_cold_page(zone, cpu, pfn, cold=False)
            return
        zone.page_state[idx: idx + n] = free_run(order)
        final, merges = free_one_page(zone, pfn, order, NOT_ZEROED)
        zone.lock.hold(cpu, self.zone_lock_ns + self.free_block_ns + merges * self.coalesce_step_ns)
        self.coalesced(zone, final, NOT_ZEROED, cpu)

    def free_hot_cold_page(self, zone: Zone, cpu: CPU, pfn: int, cold: bool) -> None:
        pcp = (zone.pageset.get(cpu.id) or zone.pcp(cpu.id))[PCP_COLD if cold else PCP_HOT]
        cpu.time += self.pcp_op_ns
        cpu.system_ns += self.pcp_op_ns
        if len(pcp.list) >= pcp.high:
            self.free_pages_bulk(zone, cpu, pcp, pcp.batch)
        pcp.list.append(pfn)                      # list_add: the head, hottest
        zone.page_state[pfn - zone.zone_start_pfn] = PS_PCP

    def free_pages_bulk(self, zone: Zone, cpu: CPU, pcp, count: int) -> int:
        """Give ``count`` pages from the tail (coldest end) of a per-CPU list back
        to the buddy lists, always as NOT_ZEROED."""
        popleft = pcp.list.popleft
        pages = [popleft() for _ in range(min(count, len(pcp.list)))]
        self.free_listed_pages(zone, cpu, pages)
        return len(pages)

    def free_listed_pages(self, zone: Zone, cpu: CPU, pages: list[int]) -> None:
        """free_pages_bulk's work once the pages are off the per-CPU list:
        free_one_page(zone, pfn, 0, NOT_ZEROED) for each page in order,
        under the zone lock, written out on the free lists' dicts (nr_free
        is set from their sizes at the end).

        Pages that follow one another in a whole aligned block (free_blocks)
        are freed as that block: inside it, each page merges only with
        buddies inside it, so the block's 2^order pages end as the block,
        after 2^order - 1 merges, and every entry they put on a list along
        the way was taken off again (a dict keeps the order of the other
        entries across an insert and delete); the block then merges on as
        its last page would.  Same lists, same order, same merges."""
        start = zone.zone_start_pfn
        top = zone.max_order - 1
        areas = zone.free_area[NOT_ZEROED]
        state = zone.page_state
        highest = -1
        merges = 0
        # A buddy block that would run past the zone's end is never on a free
        # list (every listed block lies inside the zone), so the membership
        # test alone decides, as __free_one_page's two tests do together.
        for idx, order in free_blocks(pages, start, top):
            size = 1 << order
            state[idx: idx + size] = free_run(order)
            merges += size - 1 - order
            while order < top:                # coalesce with free NOT_ZEROED buddies
                bit = 1 << order
                blocks = areas[order].free_list
                buddy = start + (idx ^ bit)
                if buddy not in blocks:
                    break
                del blocks[buddy]
                idx &= ~bit
                order += 1
            areas[order].free_list[start + idx] = None
            merges += order
            if order > highest:
                highest = order
        for area in areas[:highest + 1]:      # no list above the highest final order changed
            area.nr_free = len(area.free_list)
        freed = len(pages)
        zone.free_pages += freed
        zone.lock.hold(cpu, self.zone_lock_ns + freed * self.free_block_ns + merges * self.coalesce_step_ns)
        if highest >= 0:
            self.coalesced(zone, highest, NOT_ZEROED, cpu)

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

    def coalesced(self, zone: Zone, order: int, kind: int, cpu: CPU) -> None:
        if self.on_coalesce is not None:
            self.on_coalesce(zone, order, kind, cpu.time)


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
            if end - low < 1 << order:
                order = (end - low).bit_length() - 1
            if order > top:
                order = top
            end -= 1 << order
            blocks.append((end, order))
    else:
        low, end = frm, to
        while low < end:
            order = (low & -low).bit_length() - 1 if low else top
            if end - low < 1 << order:
                order = (end - low).bit_length() - 1
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
