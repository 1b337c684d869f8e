"""Anonymous page faults (mm/memory.c do_anonymous_page) and task exit.

A fault on an untouched anonymous address takes the address space's
``page_table_lock``, drops it to allocate a ``__GFP_ZERO`` page (2.6.10 drops
the lock around the allocation), retakes it to install the pte, and returns
to user space, which then touches ``cachelines`` lines of the page.  A line
of a page this CPU has just cleared is in its cache; a line of a page cleared
earlier (by scrubd, the BTE, or at set-up) is not.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from itertools import chain

from ..kernel.sched import CPU, SpinLock
from .fail_page_alloc import FailPageAlloc
from .gfp import GFP_HIGHUSER, GFP_ZERO
from .mmzone import NOT_ZEROED, PCP_HOT, PCP_ZEROED, PS_PCP, ZEROED, Zone
from .memory import OFFLOAD_BYTES, OFFLOAD_PIECE
from .page_alloc import ALLOC_CLEARED, ALLOC_ZEROED, PageAllocator, marks

GFP_ANON = GFP_HIGHUSER | GFP_ZERO


class MMStruct:
    """mm_struct: the pages an emulated task has faulted in, its page_table_lock,
    and its mmap_sem (every fault takes it for reading: the read count is one
    cache line that every faulting CPU writes twice)."""

    def __init__(self, name: str = "task", timeline=None, cost: dict | None = None, distance=None):
        cost = cost or {}
        bounce = (cost.get("lock_bounce_local_ns", 0), cost.get("lock_bounce_remote_ns", 0), distance,
                  cost.get("lock_bounce_router_ns", 0))
        self.page_table_lock = SpinLock(f"{name}-page_table_lock", timeline, *bounce)
        self.mmap_sem = SpinLock(f"{name}-mmap_sem", timeline, *bounce)
        self.pages = array("q")      # pfns of the anonymous pages, in fault order
        self.nodes_run: set[int] = set()   # nodes whose CPUs ran this mm (cpu_vm_mask)
        # what do_anonymous_page left for later (FaultPath.finish_deferred):
        # faults not counted yet, (cpu, zone, preferred zone, zeroed) -> how many,
        # and pages whose real memory is not done yet, (cpu, cleared, cachelines) -> pfns
        self.uncounted: dict[tuple, int] = {}
        self.deferred: dict[tuple, list[int]] = {}

    @property
    def rss(self) -> int:
        return len(self.pages)


class FaultPath:
    """The costs and steps of one anonymous fault on a given machine."""

    def __init__(self, alloc: PageAllocator, cost: dict, cache_line: int):
        self.alloc = alloc
        self.memory = alloc.memory
        self.fault_entry_ns = cost["fault_entry_ns"]
        self.pte_lock_ns = cost["pte_lock_ns"]
        self.hit_ns = cost["cacheline_hit_ns"]
        self.miss_ns = cost["cacheline_miss_ns"]
        self.miss_remote_ns = cost["cacheline_miss_remote_ns"]
        self.user_per_page_ns = cost["user_per_page_ns"]
        self.exit_per_page_ns = cost["exit_per_page_ns"]
        self.exit_remote_per_page_ns = cost["exit_remote_per_page_ns"]
        self.tlb_purge_ns = cost["exit_tlb_purge_per_page_ns"]
        self.page_zone = alloc.page_zone
        self.cache_line = cache_line
        self.page_size = alloc.page_size
        # The common-case fault (_alloc_one) leaves its counters and its
        # real-memory work for later (finish_deferred), unless something
        # watches every page's zero check as it happens:
        # benchmarks/zero_guarantee.py wraps this allocator's verify_zero,
        # and then every fault takes the general path, as before.
        self.watched = "verify_zero" in vars(alloc)
        # With a memory thread, a fault series hands its real-memory work
        # over every OFFLOAD_BYTES, so that the thread starts early and the
        # model goes on meanwhile (_clear_check_touch_later, settle).
        self.series_cap = OFFLOAD_BYTES // self.page_size if self.memory.offload else 1 << 62
        self.unsettled = False
        self.unverified: list = []

    def do_anonymous_page(self, cpu: CPU, mm: MMStruct, cachelines: int) -> int | None:
        """One fault plus the user's touch of ``cachelines`` lines.
        Returns the pfn, or None when the allocation failed (the fault's VM_FAULT_OOM)."""
        cpu.time += self.fault_entry_ns             # cpu.sys: the trap
        cpu.system_ns += self.fault_entry_ns
        sem = mm.mmap_sem                           # down_read(&mm->mmap_sem): hold(cpu, 0),
        if sem.last_cpu is cpu:                     # an atomic on the count's line, which
            sem.acquired += 1                       # bounces only when another CPU had it
        else:
            sem.hold(cpu, 0)
        lock = mm.page_table_lock
        lock.hold(cpu, self.pte_lock_ns)            # handle_pte_fault: find the pte is none
        got = None if self.watched else self._alloc_one(cpu)
        if got is None:
            got = self.alloc.alloc_pages_how(cpu, 0, GFP_ANON)
            if got is None:
                return None
            pfn, how = got
            zone = None                             # counted, cleared and checked already
            self.alloc.cpu_stat[cpu.id]["pgfault"] += 1
        else:
            pfn, zone, preferred, zero = got
            how = ALLOC_ZEROED if zero else ALLOC_CLEARED
            key = (cpu, zone, preferred, zero)      # counted later, by _account
            mm.uncounted[key] = mm.uncounted.get(key, 0) + 1
        lock.hold(cpu, self.pte_lock_ns)            # retake, set_pte, rss++
        sem.acquired += 1                           # up_read: the line is still ours (hold(cpu, 0))
        mm.pages.append(pfn)
        self._user_touch(cpu, mm, pfn, how, zone, cachelines)
        return pfn

    def _alloc_one(self, cpu: CPU) -> tuple[int, Zone, Zone, bool] | None:
        """alloc_pages_how(cpu, 0, GFP_ANON) in its common case, with fewer
        calls: (pfn, zone, preferred zone, served zeroed), or None, with
        nothing changed, when the common case does not apply.

        The common case: fault injection cannot fail the call (it only
        counts it), and the first zone above pages_low serves it from the
        per-CPU list, refilled first if low: buffered_rmqueue would succeed
        there, so the low pass stops at that zone, as it does here.  The
        same time is charged at the same moments (the list op, the refill,
        the clear's bus time).  Left to the caller: the counters (_account
        adds them k at a time: sums that nothing reads while a job runs)
        and the real memory (the clear unless zeroed, the zero check)."""
        alloc = self.alloc
        fail = alloc.fail_page_alloc
        if fail is not None and (type(fail) is not FailPageAlloc or (fail.probability and not fail.min_order)):
            return None                       # should_fail might say yes: the general path
        zonelist = alloc._zonelists.get((cpu.node, False)) or alloc.zonelist(cpu.node, False)
        for zone in zonelist:
            if zone.free_pages > zone.pages_low:
                break
        else:
            return None
        zero = zone.zero_pages >= 1
        kind = ZEROED if zero else NOT_ZEROED
        pcp = (zone.pageset.get(cpu.id) or zone.pcp(cpu.id))[PCP_ZEROED if zero else PCP_HOT]
        refill = len(pcp.list) <= pcp.low
        if refill and not pcp.list and not any(area.free_list for area in zone.free_area[kind]):
            return None                       # the refill would bring nothing: rmqueue's fallbacks
        if fail is not None:
            fail.calls += 1                   # should_fail: order 0 below min-order, or probability 0
        cpu.time += alloc.pcp_op_ns
        cpu.system_ns += alloc.pcp_op_ns
        if refill:
            alloc.rmqueue_bulk(zone, cpu, pcp, kind)
        pfn = pcp.list.pop()
        zone.page_state[pfn - zone.zone_start_pfn] = 1     # set_allocated, order 0
        if not zero:
            alloc.clear_time(cpu, zone, 1)    # prep_zero_page's time (the memset is left for later)
        return pfn, zone, zonelist[0], zero

    def _user_touch(self, cpu: CPU, mm: MMStruct, pfn: int, how: int, zone, cachelines: int) -> None:
        """User space: the touch loop.  A line not in this CPU's cache comes
        from the page's memory, local or remote.  ``zone`` is None when the
        page was cleared and checked already, else that is left for later."""
        if how == ALLOC_CLEARED:
            line_ns = self.hit_ns
        elif (zone or self.page_zone(pfn)).node == cpu.node:
            line_ns = self.miss_ns
        else:
            line_ns = self.miss_remote_ns
        ns = self.user_per_page_ns + cachelines * line_ns
        cpu.time += ns                              # cpu.user
        cpu.user_ns += ns
        if not self.memory.real:
            return
        if zone is None:
            for line in range(cachelines):
                self.memory.touch(pfn, line * self.cache_line, 1)
            return
        key = (cpu, how == ALLOC_CLEARED, cachelines)
        pending = mm.deferred.get(key)
        if pending is None:
            pending = mm.deferred[key] = []
        pending.append(pfn)
        if len(pending) >= self.DEFER_MAX:
            self.finish_deferred(mm)

    # -- real memory of faulted pages, later and in runs ----------------------
    #
    # A fault's real-memory work (clear the page unless it came zeroed,
    # check it is zero, touch the user's lines) changes no virtual time and
    # no counter unless the check fails.  Nothing but the faulting task can
    # read or write an allocated page: scrubd and the BTE only take free
    # blocks, and the page is freed only by exit_mmap, which finishes this
    # work first.  So do_anonymous_page may leave it for later, and it is
    # then done for many pages at once, in sorted contiguous runs, each page
    # still cleared, checked, then touched.  The check sees what it would
    # have seen at the fault: the page's bytes have not changed since.  A
    # failed check counts, logs and clears the page as verify_zero does,
    # charged to the faulting CPU; only the moment of the log line moves.

    DEFER_MAX = 1024       # pages per list before the work is done anyway
    CLEAR_PIECE = 256 << 10     # bytes of a run cleared and checked at a time

    def finish_deferred(self, mm: MMStruct) -> None:
        """Do what do_anonymous_page left for later: the counters, and the
        real-memory work, the pages of every CPU together (threads of one
        node take turns at the same blocks), the same work at a time."""
        uncounted, mm.uncounted = mm.uncounted, {}
        for (cpu, zone, preferred, zero), k in uncounted.items():
            self._account(cpu, zone, preferred, k, zero)
        deferred, mm.deferred = mm.deferred, {}
        work: dict[tuple[bool, int], list] = {}    # (cleared, cachelines) -> [(cpu, pfns)]
        for (cpu, cleared, cachelines), pfns in deferred.items():
            work.setdefault((cleared, cachelines), []).append((cpu, pfns))
        for (cleared, cachelines), lists in work.items():
            order = sorted(chain.from_iterable(pfns for _cpu, pfns in lists))
            faulted_by = _FaultedBy(lists)
            for zone, group in self._by_zone(order):
                self._clear_check_touch(zone, sorted_runs(group), cleared, cachelines, faulted_by)
        if self.unsettled:
            self.settle()

    def _clear_check_touch(self, zone, runs, cleared: bool, cachelines: int, faulted_by) -> None:
        """Runs (first pfn, pages) of faulted pages of zone: clear (when
        cleared), check, touch, here and now (RealMemory.clear_check_touch),
        a piece of CLEAR_PIECE at a time."""
        piece = max(1, self.CLEAR_PIECE // self.page_size)
        bad = self.memory.clear_check_touch(runs, cleared, piece, cachelines, self.cache_line)
        self._verify_bad(zone, bad, cachelines, faulted_by)

    def _verify_bad(self, zone, bad: list, cachelines: int, faulted_by) -> None:
        """Pieces found not all zero: verify_zero finds, counts, logs and
        clears each bad page, charged to the CPU that faulted it
        (faulted_by(pfn)); then the user's touch, as for the others."""
        for at, k in bad:
            for pfn in range(at, at + k):
                self.alloc.verify_zero(faulted_by(pfn), zone, pfn, 0)
            if cachelines:
                self.memory.touch_lines(at, k, cachelines, self.cache_line, 1)

    def _clear_check_touch_later(self, cpu: CPU, zone, runs, cleared: bool, cachelines: int) -> None:
        """_clear_check_touch for one thread's fault series, handed to the
        memory thread when there is one: the pieces it finds not all zero
        wait in self.unverified for settle(), on this thread (the counters
        are the model's), before the pages can be freed."""
        memory = self.memory
        if not memory.offload:
            self._clear_check_touch(zone, runs, cleared, cachelines, lambda pfn: cpu)
            return
        piece = max(1, OFFLOAD_PIECE // self.page_size)
        unverified = self.unverified

        def work():
            bad = memory.clear_check_touch(runs, cleared, piece, cachelines, self.cache_line)
            if bad:
                unverified.append((cpu, zone, bad, cachelines))
        memory.populate_ahead(runs)
        memory.later(work)
        self.unsettled = True

    def settle(self) -> None:
        """Wait for the memory thread's work on faulted pages, then verify
        the pieces it found not all zero."""
        self.unsettled = False
        self.memory.sync()
        unverified, self.unverified = self.unverified, []
        for cpu, zone, bad, cachelines in unverified:
            self._verify_bad(zone, bad, cachelines, lambda pfn, cpu=cpu: cpu)

    def _by_zone(self, order: list[int]) -> list:
        """Ascending pfns split by zone: (zone, its pfns) each; PageAllocError
        for a pfn outside every zone."""
        groups = []
        lo, n = 0, len(order)
        while lo < n:
            zone = self.alloc.page_zone(order[lo])
            hi = bisect_left(order, zone.zone_start_pfn + zone.spanned_pages, lo)
            groups.append((zone, order[lo:hi]))
            lo = hi
        return groups

    # -- the batched fast path ----------------------------------------------
    #
    # pft runs every fault as one scheduler step.  While a thread is the one
    # the scheduler would resume next anyway (Timeline.solo_bound: no other
    # task, event or load-average tick due first), its next faults can run
    # in one loop without the round-trip.  When, in addition, they are all
    # served from the same zone's same per-CPU list, by an uncontended
    # page_table_lock, and (when cleared) on an idle memory bus, every fault
    # charges the same costs, except that the one which finds the list at
    # its low mark first refills it (rmqueue_bulk) under the zone lock,
    # which delays its clear and the rest by the lock's hold.  fault_run
    # does them as a series (_FaultSeries): runs of equal faults added k at
    # a time, and each refill as do_anonymous_page does it, at the same
    # virtual instant (the zone lock booked by SpinLock.hold itself, at the
    # step's horizon).  The same lock and bus intervals are booked, the
    # pages leave the per-CPU list in the same order, and their real memory
    # is cleared, verified and touched in contiguous runs (each page is
    # still cleared, checked to be zero, then touched).  Anything else (a
    # bounce, contention, fault injection, the first fault of a step) goes
    # through do_anonymous_page.

    def fault_run(self, cpu: CPU, mm: MMStruct, cachelines: int, limit: int, extra_user_ns: int = 0) -> int:
        """Up to ``limit`` more faults, each as if it were its own scheduler
        step, as long as the fast path applies.  Returns how many were done;
        the caller does the next one through do_anonymous_page."""
        done = 0
        while done < limit:
            k = self._fast_faults(cpu, mm, cachelines, min(limit - done, self.series_cap), extra_user_ns)
            if not k:
                break
            done += k
        return done

    def _fast_faults(self, cpu: CPU, mm: MMStruct, cachelines: int, limit: int, extra_user_ns: int) -> int:
        lock, sem = mm.page_table_lock, mm.mmap_sem
        timeline = lock.timeline
        t0 = cpu.time
        bound = timeline.solo_bound()
        if t0 >= bound or lock.last_cpu is not cpu or sem.last_cpu is not cpu or self.watched:
            return 0
        alloc = self.alloc
        fail = alloc.fail_page_alloc
        if fail is not None and (type(fail) is not FailPageAlloc or fail.probability != 0):
            return 0
        zonelist = alloc._zonelists.get((cpu.node, False)) or alloc.zonelist(cpu.node, False)
        for zone in zonelist:                 # the low-watermark pass picks the first zone above pages_low
            if zone.free_pages > zone.pages_low:
                break
        else:
            return 0
        lists = zone.pageset.get(cpu.id)
        if lists is None:
            return 0
        zero = zone.zero_pages >= 1
        ends = lock._ends
        if self.pte_lock_ns <= 0 or (ends and ends[-1] > t0 + self.fault_entry_ns):
            return 0                          # a hold booked ahead of us: contention, the general path
        series = _FaultSeries(self, cpu, zone, lists[PCP_ZEROED if zero else PCP_HOT], zero,
                              cachelines, extra_user_ns, timeline, bound)
        k = series.run(limit)
        if not k:
            return 0
        # page_table_lock: each fault books two holds, and all but the last
        # fault's end before its start.  SpinLock.hold drops holds that end
        # before the horizon (no later request can meet them), so booking
        # just the last two, and pruning, leaves a calendar that answers
        # every later request the same.
        t_last = series.last_start
        starts = lock._starts
        if len(ends) > 64:
            cut = bisect_right(ends, t_last)
            del starts[:cut], ends[:cut]
        starts += series.last_holds
        ends += [hold + self.pte_lock_ns for hold in series.last_holds]
        timeline.horizon = t_last             # the last fault's step start
        cpu.time = series.t
        cpu.system_ns += series.system_ns
        cpu.user_ns += series.user_ns
        lock.acquired += 2 * k
        sem.acquired += 2 * k
        if fail is not None:
            fail.calls += k                   # should_fail with probability 0 only counts the call
        self._account(cpu, zone, zonelist[0], k, zero)
        if series.clears:
            series.bus.transfer_series(series.clears, self.page_size, series.clear_ns)
        runs = self._take_from_pcp(mm, zone, series.pcp, series.listed, k, series.blocks)
        if self.memory.real:
            self._clear_check_touch_later(cpu, zone, runs, not zero, cachelines)
        return k

    def _take_from_pcp(self, mm: MMStruct, zone, pcp, listed: int, k: int, blocks: list) -> list:
        """The k pops off pcp.list, which held ``listed`` pages before the
        series, with the refills' blocks (first pfn, count) put on it (at the
        cold end, each ascending) in between: the list is a queue between
        its two ends, so the pops take what it held, hottest first, then the
        blocks in order, and the rest of the blocks stays listed.  The
        popped pages go to mm.pages in that order and are marked allocated;
        returns them as runs (first pfn, count)."""
        pop = pcp.list.pop
        popped = [pop() for _ in range(min(k, listed))]
        mm.pages.extend(popped)
        runs = pfn_runs(popped)
        rest = k - len(popped)
        state, start = zone.page_state, zone.zone_start_pfn
        for first, n in blocks:
            use = min(rest, n)
            if use:
                mm.pages.extend(range(first, first + use))
                if runs and runs[-1][0] + runs[-1][1] == first:
                    runs[-1] = (runs[-1][0], runs[-1][1] + use)
                else:
                    runs.append((first, use))
                rest -= use
            if use < n:                       # rmqueue_bulk's list_add_tail and PS_PCP marks
                pcp.list.extendleft(range(first + use, first + n))
                state[first + use - start: first + n - start] = marks(PS_PCP, n - use)
        for first, n in runs:
            state[first - start: first - start + n] = marks(1, n)     # set_allocated, order 0
        return runs

    def _account(self, cpu: CPU, zone, preferred, k: int, zero: bool) -> None:
        """The counters of k order-0 __GFP_ZERO faults served by zone."""
        alloc = self.alloc
        stat, zstat = alloc.cpu_stat[cpu.id], zone.stat
        stat["pgalloc"] += k
        zstat["pgalloc"] += k
        stat["pgfault"] += k
        nstat = alloc.nodes[zone.node].stat
        if zone.node == preferred.node:
            nstat["numa_hit"] += k
        else:
            nstat["numa_miss"] += k
            alloc.nodes[preferred.node].stat["numa_foreign"] += k
        nstat["local_node" if zone.node == cpu.node else "other_node"] += k
        if zero:
            stat["prezero_alloc_zeroed"] += k
            zstat["prezero_alloc_zeroed"] += k
        else:
            stat["prezero_alloc_cleared"] += k
            zstat["prezero_alloc_cleared"] += k
            stat["prezero_clear_pages"] += k
            stat["prezero_clear_bytes"] += k * self.page_size
            zstat["prezero_clear_pages"] += k

    def exit_mmap(self, cpu: CPU, mm: MMStruct, limit: int | None = None) -> int:
        """Task exit: zap ptes and free pages, the most recent first, at most
        ``limit`` of them (all by default). Returns pages freed."""
        if mm.uncounted or mm.deferred or self.unsettled:
            self.finish_deferred(mm)
        pages = mm.pages
        n = len(pages) if limit is None else min(limit, len(pages))
        free = self.alloc.free_pages
        page_zone = self.page_zone
        local, remote = self.exit_per_page_ns, self.exit_remote_per_page_ns
        if len(mm.nodes_run) > 1:
            # an mm that ran on several nodes needs global TLB purges (ptc.ga
            # across NUMAlink) while its ptes are zapped
            local += self.tlb_purge_ns
            remote += self.tlb_purge_ns
        if n and self._exit_run(cpu, mm, n, local, remote):
            return n
        for _ in range(n):
            pfn = pages.pop()
            # zap the pte and free: the struct page and its zone live with the memory
            cpu.sys(local if page_zone(pfn).node == cpu.node else remote)
            free(cpu, pfn, 0)
        return n

    def _exit_run(self, cpu: CPU, mm: MMStruct, limit: int, local: int, remote: int) -> int:
        """exit_mmap's loop for the ``limit`` most recent pages at once, when
        every one is an order-0 page that free_pages would accept (allocated,
        inside a zone, none twice).  Returns pages freed (0: use the
        page-by-page loop, which also reports errors).

        Nothing else runs inside a scheduler step, so the only things the
        loop's order decides are the CPU's time and each zone's hot list.
        Each free costs the zap (local or remote: where the struct page
        lives) plus a per-CPU list op, and appends to its zone's hot list;
        when that list is full, that free first gives a batch back to the
        buddy lists (free_pages_bulk) at the time it would run, which books
        the zone lock and may wake scrubd then.  The pages of several zones
        interleave (one per faulting thread), so the loop keeps every zone's
        room and walks the pages in exit order.  Poisoning and the page
        state bytes are done first, a sorted run at a time: poisoning
        touches only these pages, which nothing reads before they reach the
        buddy lists, and free_pages_bulk only ever turns a mark into
        PS_FREE after it was set."""
        pages = mm.pages
        chunk = pages[len(pages) - limit:]
        chunk.reverse()                       # the most recent first
        groups = self._exit_groups(chunk)
        if groups is None:
            return 0
        del pages[len(pages) - limit:]
        pcp_mark = bytes([PS_PCP])
        for zone, _pfns, runs in groups:
            state, start = zone.page_state, zone.zone_start_pfn
            for first, n in runs:
                state[first - start: first - start + n] = pcp_mark * n
                self.memory.poison_later(first, n)
        self._free_hot_pages(cpu, chunk, groups, local, remote)
        self.alloc.cpu_stat[cpu.id]["pgfree"] += limit
        return limit

    def _free_hot_pages(self, cpu: CPU, chunk, groups: list, local: int, remote: int) -> None:
        """free_hot_cold_page for each page of chunk, in order, on its zone's hot list."""
        alloc = self.alloc
        if len(groups) == 1:
            zone = groups[0][0]
            zone.stat["pgfree"] += len(chunk)
            step = (local if zone.node == cpu.node else remote) + alloc.pcp_op_ns
            self._free_hot_one_zone(cpu, zone, chunk, step)
            return
        where = {}                            # pfn -> its zone's slot
        steps, hots, rooms, pcps, zones = [], [], [], [], []
        for slot, (zone, pfns, _runs) in enumerate(groups):
            where.update(dict.fromkeys(pfns, slot))
            pcp = zone.pcp(cpu.id)[PCP_HOT]
            steps.append((local if zone.node == cpu.node else remote) + alloc.pcp_op_ns)
            hots.append(pcp.list)
            rooms.append(pcp.high - len(pcp.list))
            pcps.append(pcp)
            zones.append(zone)
            zone.stat["pgfree"] += len(pfns)
        spent = 0                             # time of the frees since cpu.time was last set
        for pfn in chunk:
            slot = where[pfn]
            spent += steps[slot]
            if rooms[slot] <= 0:              # the list is full: a batch goes back first
                cpu.time += spent
                cpu.system_ns += spent
                spent = 0
                pcp = pcps[slot]
                alloc.free_pages_bulk(zones[slot], cpu, pcp, pcp.batch)
                rooms[slot] = pcp.high - len(pcp.list)
            rooms[slot] -= 1
            hots[slot].append(pfn)
        cpu.time += spent
        cpu.system_ns += spent

    def _free_hot_one_zone(self, cpu: CPU, zone, chunk, step: int) -> None:
        """_free_hot_pages when every page of chunk belongs to zone, each
        free costing ``step``: the pages go onto the hot list a run at a
        time, between the frees that find it full, and the time of the
        frees in between is charged at once, before each such free's
        free_pages_bulk as the page-by-page loop charges it."""
        pcp = zone.pcp(cpu.id)[PCP_HOT]
        hot = pcp.list
        room = pcp.high - len(hot)
        n = len(chunk)
        done = 0                              # chunk[:done] is on the list and charged
        while done + max(room, 0) < n:
            full = done + max(room, 0)        # the free that finds the list full
            hot.extend(chunk[done:full])
            spent = (full + 1 - done) * step
            cpu.time += spent
            cpu.system_ns += spent
            self.alloc.free_pages_bulk(zone, cpu, pcp, pcp.batch)
            room = pcp.high - len(hot) - 1
            hot.append(chunk[full])
            done = full + 1
        hot.extend(chunk[done:])
        spent = (n - done) * step
        cpu.time += spent
        cpu.system_ns += spent

    def _exit_groups(self, chunk) -> list | None:
        """The pages of chunk by zone: (zone, its pages ascending, their runs),
        or None when free_pages would not take every one of them as an
        allocated order-0 page (outside every zone, state byte not 1, or
        the same page twice)."""
        order = sorted(chunk)
        if len(order) != len(set(order)):
            return None
        try:
            by_zone = self._by_zone(order)
        except ValueError:
            return None
        groups = []
        for zone, pfns in by_zone:
            runs = sorted_runs(pfns)
            state, start = zone.page_state, zone.zone_start_pfn
            for first, k in runs:
                if state[first - start: first - start + k].count(1) != k:
                    return None               # not all allocated with order 0: check_free will say why
            groups.append((zone, pfns, runs))
        return groups


class _FaultSeries:
    """The virtual-time side of a series of faults of one thread running
    alone, all served by one zone's per-CPU list (FaultPath._fast_faults):
    when each starts and what it charges, the refills on the way, the
    clears' bus bookings.  Every fault is what do_anonymous_page would do
    as its own scheduler step at that start:

    - a fault that finds the list above its low mark: the trap, the
      page_table_lock hold (uncontended: our own holds end before), the
      list op, the clear (alone on the bus: it starts before ``until``),
      the second hold, the user's touch: the same ``step`` each time;
    - one that finds it at the low mark refills it first: rmqueue_bulk's
      buddy work (take_bulk) and its zone lock hold, booked by
      SpinLock.hold at the same instant with the horizon at the step's
      start, so the calendar is pruned as it would be; only when the lock
      is neither held ahead of us nor last taken by another CPU, so that
      the hold is the only delay, and when the refill brings a page to pop
      (else rmqueue would fall back).  Its clear, second hold and touch
      follow the hold.

    The series stops where a fault would choose another zone or list
    (zone.free_pages at pages_low, zero_pages running out), where it would
    start at the thread's bound, or where its clear could meet another
    agent's transfer on the bus."""

    def __init__(self, fault: FaultPath, cpu: CPU, zone: Zone, pcp, zero: bool, cachelines: int,
                 extra_user_ns: int, timeline, bound: int):
        alloc = fault.alloc
        self.alloc, self.cpu, self.zone, self.pcp, self.zero = alloc, cpu, zone, pcp, zero
        self.kind = ZEROED if zero else NOT_ZEROED
        self.timeline = timeline
        self.fe, self.pte, pcp_ns = fault.fault_entry_ns, fault.pte_lock_ns, alloc.pcp_op_ns
        self.lead = lead = self.fe + self.pte + pcp_ns     # a fault's start to its refill or clear
        self.t = cpu.time                     # the next fault's start
        self.until = self.refill_until = bound
        self.bus = None
        if zero:
            self.clear_ns = 0
            line_ns = fault.miss_ns if zone.node == cpu.node else fault.miss_remote_ns
        else:
            self.bus = bus = alloc.buses[zone.node]
            rate = alloc.clear_bytes_per_ns if zone.node == cpu.node else alloc.clear_remote_bytes_per_ns
            if bus.bytes_per_ns < rate:       # MemoryBus.transfer with no other transfer in flight
                rate = bus.bytes_per_ns
            self.clear_ns = int(alloc.page_size / rate + 0.5)
            line_ns = fault.hit_ns
            free = bus.alone_until(self.t + lead) - lead     # faults starting before: clears alone
            hold_max = alloc.bulk_hold_ns(pcp.batch, pcp.batch * zone.max_order)
            self.until = min(bound, free)
            self.refill_until = min(bound, free - hold_max)
        self.sys_each = self.fe + 2 * self.pte + pcp_ns + self.clear_ns
        self.user_each = fault.user_per_page_ns + cachelines * line_ns + extra_user_ns
        self.step = self.sys_each + self.user_each
        self.listed = len(pcp.list)           # the list's length before the series
        self.blocks: list[tuple[int, int]] = []     # the refills' pages, as rmqueue_bulk takes them
        self.clears: list[tuple[int, int, int, int]] = []   # for MemoryBus.transfer_series
        self.system_ns = self.user_ns = 0     # charged so far, but for the zone lock's holds
        self.last_start = 0                   # the last fault's start
        self.last_holds = ()                  # and its two page_table_lock holds' starts

    def run(self, limit: int) -> int:
        """Up to ``limit`` faults; returns how many."""
        zone, pcp, zero = self.zone, self.pcp, self.zero
        listed = self.listed
        done = 0
        while done < limit and zone.free_pages > zone.pages_low and (zone.zero_pages >= 1) == zero:
            if listed > pcp.low:
                k = min(limit - done, listed - pcp.low, (self.until - 1 - self.t) // self.step + 1)
                if k <= 0:
                    break
                self._equal_faults(k)
                listed -= k
                done += k
            else:
                taken = self._refill_fault(listed)
                if taken is None:
                    break
                listed += taken - 1
                done += 1
        return done

    def _equal_faults(self, k: int) -> None:
        """k faults that find the list above its low mark, one step apart."""
        t, step = self.t, self.step
        if self.bus is not None:
            self.clears.append((t + self.lead, step, k, self.lead))
        self.last_start = last = t + (k - 1) * step
        self.last_holds = (last + self.fe, last + self.lead + self.clear_ns)
        self.t = t + k * step
        self.system_ns += k * self.sys_each
        self.user_ns += k * self.user_each

    def _refill_fault(self, listed: int) -> int | None:
        """The fault that refills the list first: returns the pages the
        refill took, or None (nothing done) when it needs the general path."""
        t, cpu, zone = self.t, self.cpu, self.zone
        lock = zone.lock
        if t >= self.refill_until or lock.timeline is not self.timeline:
            return None
        if lock.last_cpu is not cpu and lock.last_cpu is not None:
            return None                       # the lock's line bounces: the general path
        if lock._ends and lock._ends[-1] > t + self.lead:
            return None                       # held ahead of us: contention, the general path
        if not listed and not any(area.free_list for area in zone.free_area[self.kind]):
            return None                       # nothing to pop: rmqueue's fallbacks
        self.timeline.horizon = t             # the fault's step starts at t
        cpu.time = t + self.lead
        taken, splits, blocks = self.alloc.take_bulk(zone, self.kind, self.pcp.batch)
        self.blocks += blocks
        lock.hold(cpu, self.alloc.bulk_hold_ns(taken, splits))    # charges cpu.time and system_ns
        clear = cpu.time
        if self.bus is not None:
            self.clears.append((clear, 0, 1, clear - t))
        self.last_start = t
        self.last_holds = (t + self.fe, clear + self.clear_ns)
        self.t = clear + self.clear_ns + self.pte + self.user_each
        self.system_ns += self.sys_each
        self.user_ns += self.user_each
        return taken


class _FaultedBy:
    """pfn -> the CPU that faulted it, from (cpu, pfns) lists; the map is
    built when first asked (only a failed zero check asks)."""

    def __init__(self, lists: list):
        self.lists = lists
        self.cpu_of: dict | None = None

    def __call__(self, pfn: int) -> CPU:
        if self.cpu_of is None:
            self.cpu_of = {p: cpu for cpu, pfns in self.lists for p in pfns}
        return self.cpu_of[pfn]


def pfn_runs(pfns) -> list[tuple[int, int]]:
    """(lowest pfn, count) of each run of consecutive pfns, ascending or
    descending, in the order given."""
    runs = []
    n = len(pfns)
    i = 0
    while i < n:
        a = pfns[i]
        j = i + 1
        if j < n and pfns[j] == a + 1:
            while j < n and pfns[j] == a + (j - i):
                j += 1
            runs.append((a, j - i))
        elif j < n and pfns[j] == a - 1:
            while j < n and pfns[j] == a - (j - i):
                j += 1
            runs.append((a - (j - i) + 1, j - i))
        else:
            runs.append((a, 1))
        i = j
    return runs


def sorted_runs(pfns) -> list[tuple[int, int]]:
    """pfn_runs of strictly ascending pfns, without a pass over them when
    they are all one run (they span exactly as many pfns as there are)."""
    if pfns and pfns[-1] - pfns[0] == len(pfns) - 1:
        return [(pfns[0], len(pfns))]
    return pfn_runs(pfns)
