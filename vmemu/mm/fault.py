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
from bisect import bisect_right

from ..kernel.sched import CPU, SpinLock
from .fail_page_alloc import FailPageAlloc
from .gfp import GFP_HIGHUSER, GFP_ZERO
from .mmzone import PCP_HOT, PCP_ZEROED, PS_PCP
from .page_alloc import ALLOC_CLEARED, PageAllocator

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

    def do_anonymous_page(self, cpu: CPU, mm: MMStruct, cachelines: int) -> int | None:
        """One fault plus the user's touch of ``cachelines`` lines.
        Returns the pfn, or None when the allocation failed (the fault's VM_FAULT_OOM)."""
        cpu.sys(self.fault_entry_ns)
        mm.mmap_sem.hold(cpu, 0)                    # down_read(&mm->mmap_sem)
        lock = mm.page_table_lock
        lock.hold(cpu, self.pte_lock_ns)            # handle_pte_fault: find the pte is none
        got = self.alloc.alloc_pages_how(cpu, 0, GFP_ANON)
        if got is None:
            return None
        pfn, how = got
        lock.hold(cpu, self.pte_lock_ns)            # retake, set_pte, rss++
        mm.mmap_sem.hold(cpu, 0)                    # up_read
        mm.pages.append(pfn)
        self.alloc.cpu_stat[cpu.id]["pgfault"] += 1
        # user space: the touch loop; a line not in this CPU's cache comes
        # from the page's memory, local or remote
        if how == ALLOC_CLEARED:
            line_ns = self.hit_ns
        elif self.page_zone(pfn).node == cpu.node:
            line_ns = self.miss_ns
        else:
            line_ns = self.miss_remote_ns
        cpu.user(self.user_per_page_ns + cachelines * line_ns)
        if self.memory.real:
            for line in range(cachelines):
                self.memory.touch(pfn, line * self.cache_line, 1)
        return pfn

    # -- the batched fast path ----------------------------------------------
    #
    # pft runs every fault as one scheduler step.  While a thread is the one
    # the scheduler would resume next anyway (Timeline.solo_bound: no other
    # task, event or load-average tick due first), its next faults can run
    # in one loop without the round-trip.  When, in addition, they are all
    # served from the same per-CPU list without a refill, by an uncontended
    # page_table_lock, and (when cleared) on an idle memory bus, every such
    # fault charges exactly the same costs: fault_run does them as a run,
    # adds the costs k times, books the same lock and bus intervals, and
    # clears, verifies and touches the real pages in contiguous runs (each
    # page is still cleared, checked to be zero, then touched).  Anything
    # else (a refill, a bounce, contention, fault injection, the first
    # fault of a step) goes through do_anonymous_page.

    def fault_run(self, cpu: CPU, mm: MMStruct, cachelines: int, limit: int, extra_user_ns: int = 0) -> int:
        """Up to ``limit`` more faults, each as if it were its own scheduler
        step, as long as the fast path applies.  Returns how many were done;
        the caller does the next one through do_anonymous_page."""
        done = 0
        while done < limit:
            k = self._fast_faults(cpu, mm, cachelines, limit - done, extra_user_ns)
            if not k:
                break
            done += k
        return done

    def _fast_faults(self, cpu: CPU, mm: MMStruct, cachelines: int, limit: int, extra_user_ns: int) -> int:
        lock, sem = mm.page_table_lock, mm.mmap_sem
        timeline = lock.timeline
        t0 = cpu.time
        bound = timeline.solo_bound()
        if t0 >= bound or lock.last_cpu is not cpu or sem.last_cpu is not cpu:
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
        pcp = lists[PCP_ZEROED if zero else PCP_HOT]
        k = min(limit, len(pcp.list) - pcp.low)     # faults before the list needs a refill
        if k <= 0:
            return 0
        fe, pte, pcp_ns = self.fault_entry_ns, self.pte_lock_ns, alloc.pcp_op_ns
        ends = lock._ends
        if pte <= 0 or (ends and ends[-1] > t0 + fe):
            return 0                          # a hold booked ahead of us: contention, the general path
        nbytes = self.page_size
        if zero:
            clear_ns = 0
            line_ns = self.miss_ns if zone.node == cpu.node else self.miss_remote_ns
        else:
            bus = alloc.buses[zone.node]
            rate = alloc.clear_bytes_per_ns if zone.node == cpu.node else alloc.clear_remote_bytes_per_ns
            if bus.bytes_per_ns < rate:       # MemoryBus.transfer with no other transfer in flight
                rate = bus.bytes_per_ns
            clear_ns = int(nbytes / rate + 0.5)
            line_ns = self.hit_ns
        sys_ns = fe + 2 * pte + pcp_ns + clear_ns
        user_ns = self.user_per_page_ns + cachelines * line_ns + extra_user_ns
        step = sys_ns + user_ns
        k = min(k, (bound - 1 - t0) // step + 1)    # fault j starts at t0 + j*step < bound
        pop = pcp.list.pop
        starts = lock._starts
        if not zero:
            first = t0 + fe + pte + pcp_ns
            if not bus.alone_during(first, first + (k - 1) * step):
                return 0                      # another transfer in flight: shared bandwidth, the general path
            bus.transfer_series(first, step, k, nbytes, clear_ns, fe + pte + pcp_ns)
        pfns = [pop() for _ in range(k)]
        t_last = t0 + (k - 1) * step          # the last of these steps' start: the new horizon
        # page_table_lock: each fault books two holds, and all but the last
        # fault's end before t_last.  SpinLock.hold drops holds that end
        # before the horizon (no later request can meet them), so booking
        # just the last two, and pruning, leaves a calendar that answers
        # every later request the same.
        if len(ends) > 64:
            cut = bisect_right(ends, t_last)
            del starts[:cut], ends[:cut]
        a = t_last + fe
        b = a + pte + pcp_ns + clear_ns
        starts += (a, b)
        ends += (a + pte, b + pte)
        timeline.horizon = t_last
        cpu.time = t0 + k * step
        cpu.system_ns += k * sys_ns
        cpu.user_ns += k * user_ns
        lock.acquired += 2 * k
        sem.acquired += 2 * k
        if fail is not None:
            fail.calls += k                   # should_fail with probability 0 only counts the call
        self._account(cpu, zone, zonelist[0], k, zero)
        mm.pages.extend(pfns)
        runs = pfn_runs(pfns)
        state, start = zone.page_state, zone.zone_start_pfn
        for first, n in runs:
            state[first - start: first - start + n] = b"\x01" * n     # set_allocated, order 0
        if self.memory.real:
            self._clear_verify_touch(cpu, zone, runs, zero, cachelines)
        return k

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

    def _clear_verify_touch(self, cpu: CPU, zone, runs: list[tuple[int, int]], zero: bool,
                            cachelines: int) -> None:
        """Real memory of faulted pages, a contiguous run at a time: clear
        (unless served zeroed), verify zero, touch the user's lines."""
        memory = self.memory
        for first, n in runs:
            if not zero:
                memory.clear(first, n)
            if not memory.is_zero(first, n):
                for pfn in range(first, first + n):     # find, count and clear each bad page
                    self.alloc.verify_zero(cpu, zone, pfn, 0)
            if cachelines:
                memory.touch_lines(first, n, cachelines, self.cache_line, 1)

    def exit_mmap(self, cpu: CPU, mm: MMStruct, limit: int | None = None) -> int:
        """Task exit: zap ptes and free pages, the most recent first, at most
        ``limit`` of them (all by default). Returns pages freed."""
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
        done = 0
        while done < n:
            k = self._exit_run(cpu, mm, n - done, local, remote)
            if not k:
                break
            done += k
        for _ in range(n - done):
            pfn = pages.pop()
            # zap the pte and free: the struct page and its zone live with the memory
            cpu.sys(local if page_zone(pfn).node == cpu.node else remote)
            free(cpu, pfn, 0)
        return n

    def _exit_run(self, cpu: CPU, mm: MMStruct, limit: int, local: int, remote: int) -> int:
        """exit_mmap's loop for the most recent pages while they are order-0
        pages of one zone that free_pages would accept: each costs the same
        (zap + per-CPU list op) until the hot list is full, when that free
        first gives a batch back to the buddy lists (free_pages_bulk, at the
        time it would run).  Pages are poisoned and marked per-CPU a run at a
        time; nothing reads them in between.  Returns pages freed (0: use
        the page-by-page loop, which also reports errors)."""
        pages = mm.pages
        alloc = self.alloc
        last = pages[-1]
        zone = alloc._last_zone
        start = zone.zone_start_pfn
        if not start <= last < start + zone.spanned_pages:
            try:
                zone = alloc.page_zone(last)
            except ValueError:
                return 0
            start = zone.zone_start_pfn
        lists = zone.pageset.get(cpu.id)
        if lists is None:
            return 0
        end = start + zone.spanned_pages
        pfns = []
        for pfn in reversed(pages[len(pages) - limit:]):
            if not start <= pfn < end:
                break
            pfns.append(pfn)
        k = len(pfns)
        if k == 0 or len(set(pfns)) != k:
            return 0
        runs = pfn_runs(pfns)
        state = zone.page_state
        for first, n in runs:
            if state[first - start: first - start + n].count(1) != n:
                return 0                      # not all allocated with order 0: check_free will say why
        del pages[len(pages) - k:]
        memory = self.memory
        pcp_mark = bytes([PS_PCP])
        for first, n in runs:
            state[first - start: first - start + n] = pcp_mark * n
            memory.poison(first, n)
        step = (local if zone.node == cpu.node else remote) + alloc.pcp_op_ns
        pcp = lists[PCP_HOT]
        hot = pcp.list
        i = 0
        while i < k:
            room = min(pcp.high - len(hot), k - i)
            if room > 0:
                cpu.time += room * step
                cpu.system_ns += room * step
                hot.extend(pfns[i: i + room])
                i += room
            else:
                cpu.time += step
                cpu.system_ns += step
                alloc.free_pages_bulk(zone, cpu, pcp, pcp.batch)
                hot.append(pfns[i])
                i += 1
        alloc.cpu_stat[cpu.id]["pgfree"] += k
        zone.stat["pgfree"] += k
        return k


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
