"""A thread's series of equal faults in one step (host-side batching).

pft runs every fault as one scheduler step.  While a thread is the one the
scheduler would resume next anyway (Timeline.solo_bound: no other task,
event or load-average tick due first), its next faults can run in one loop
without the round-trip.  When, besides, they are all served from the same
zone's same per-CPU list, by an uncontended page_table_lock, and (when
cleared) on an idle memory bus, every fault is do_anonymous_page with the
same costs (FaultPath's, PageAllocator's), one step apart, except the one
that finds the list at its low mark: it refills it first (rmqueue_bulk,
the allocator's own) under the zone lock, which delays it and the rest by
the lock's hold.  FaultBatch does such faults k at a time: the list's pops,
the refills, the page_table_lock holds, the clears' bus bookings
(MemoryBus.transfer_series), the counters (PageAllocator.account_alloc and
prep_zero_page with a count).  Anything else (a bounce, contention, fault
injection that might fail, another zone or list, the first fault of a
step) goes through do_anonymous_page.  test_shortcuts compares machines
run with and without it.
"""

from __future__ import annotations

from ..kernel.sched import CPU
from .fault import BZERO, GFP_ANON, TOUCH, FaultPath, MMStruct
from .mmzone import NOT_ZEROED, ZEROED, Zone
from .page_alloc import ALLOC_CLEARED, ALLOC_ZEROED, marks


class FaultBatch:
    """Runs of a thread's faults, each as if it were its own scheduler step."""

    def __init__(self, fault: FaultPath, extra_user_ns: int = 0):
        self.fault = fault
        self.alloc = fault.alloc
        self.extra_user_ns = extra_user_ns      # pft -z: the thread's bzero of each page
        # With a memory thread, a series ends where the deferred work is
        # handed over, so that the thread starts on it while the model goes on.
        later = fault.later
        self.cap = later.flush_at if later is not None and self.alloc.memory.offload else 1 << 62

    def run(self, cpu: CPU, mm: MMStruct, limit: int) -> int:
        """Up to ``limit`` more faults while a series applies; returns how
        many (the caller does the next one through do_anonymous_page)."""
        done = 0
        while done < limit:
            k = self._series(cpu, mm, min(limit - done, self.cap))
            if not k:
                break
            done += k
        return done

    def _series(self, cpu: CPU, mm: MMStruct, limit: int) -> int:
        lock, sem = mm.page_table_lock, mm.mmap_sem
        fault, alloc = self.fault, self.alloc
        t0 = cpu.time
        bound = lock.timeline.solo_bound()
        if t0 >= bound or lock.last_cpu is not cpu or sem.last_cpu is not cpu:
            return 0
        if alloc.fail_page_alloc is not None and not alloc.fail_page_alloc.cannot_fail(0, GFP_ANON):
            return 0
        zonelist = alloc.zonelist(cpu.node)
        zone = next((z for z in zonelist if z.free_pages > z.pages_low), None)   # the low pass's choice
        if zone is None or zone.pageset.get(cpu.id) is None:
            return 0
        if fault.pte_lock_ns <= 0 or lock.free_at > t0 + fault.fault_entry_ns:
            return 0                          # a hold booked ahead of us: contention, the general path
        series = _Series(self, cpu, mm, zone, zonelist[0], bound)
        k = series.run(limit)
        if k:
            series.commit()
        return k


class _Series:
    """One series: faults from one zone's one per-CPU list.  ``t`` is the
    next fault's start; ``step`` the time from one equal fault's start to
    the next's."""

    def __init__(self, batch: FaultBatch, cpu: CPU, mm: MMStruct, zone: Zone, preferred: Zone, bound: int):
        fault, alloc = batch.fault, batch.alloc
        self.fault, self.alloc, self.cpu, self.mm = fault, alloc, cpu, mm
        self.zone, self.preferred = zone, preferred
        self.zero = zero = zone.zero_pages >= 1
        self.kind = ZEROED if zero else NOT_ZEROED
        self.pcp = alloc.pcp_list(zone, cpu, zero)
        self.fe, self.pte = fault.fault_entry_ns, fault.pte_lock_ns
        self.lead = self.fe + self.pte + alloc.pcp_op_ns      # a fault's start to its refill or clear
        self.t = cpu.time
        self.until = self.refill_until = bound
        self.clear_ns = 0
        if not zero:
            bus = alloc.buses[zone.node]
            self.clear_ns = bus.duration(alloc.page_size, alloc.clear_rate(cpu, zone))
            free = bus.alone_until(self.t + self.lead) - self.lead     # faults starting before: clears alone
            hold_max = alloc.bulk_hold_ns(self.pcp.batch, self.pcp.batch * zone.max_order)
            self.until = min(bound, free)
            self.refill_until = min(bound, free - hold_max)
        self.sys_each = self.fe + 2 * self.pte + alloc.pcp_op_ns + self.clear_ns
        how = ALLOC_ZEROED if zero else ALLOC_CLEARED
        self.touch_ns, self.extra_user_ns = fault.touch_ns(cpu, zone.node, how), batch.extra_user_ns
        self.user_each = self.touch_ns + self.extra_user_ns
        self.step = self.sys_each + self.user_each
        self.done = 0
        self.popped: list[int] = []           # the pages taken, in order
        self.runs: list[tuple[int, int]] = []     # the same as (first, count) runs
        self.clears: list[tuple[int, int, int]] = []     # their clears' starts: (first, step, count)
        self.system_ns = self.user_ns = 0     # charged so far, but for the zone lock's holds
        self.last_start = 0                   # the last fault's start
        self.last_holds: list[int] = []       # and its two page_table_lock holds' starts

    def run(self, limit: int) -> int:
        """Up to ``limit`` faults; returns how many."""
        zone, pcp, zero = self.zone, self.pcp, self.zero
        while self.done < limit and zone.free_pages > zone.pages_low and (zone.zero_pages >= 1) == zero:
            listed = len(pcp.list)
            if listed > pcp.low:
                k = min(limit - self.done, listed - pcp.low, (self.until - 1 - self.t) // self.step + 1)
                if k <= 0:
                    break
                self._equal_faults(k)
            elif not self._refill_fault():
                break
        return self.done

    def _equal_faults(self, k: int) -> None:
        """k faults that find the list above its low mark, one step apart."""
        t, step = self.t, self.step
        self._take(k, (t + self.lead, step))
        self.last_start = last = t + (k - 1) * step
        self.last_holds = [last + self.fe, last + self.lead + self.clear_ns]
        self.t = t + k * step
        self.system_ns += k * self.sys_each
        self.user_ns += k * self.user_each

    def _refill_fault(self) -> bool:
        """The fault that refills the list first, or False (nothing done)
        when it needs the general path."""
        t, cpu, zone, pcp = self.t, self.cpu, self.zone, self.pcp
        lock = zone.lock
        if t >= self.refill_until or (lock.last_cpu is not cpu and lock.last_cpu is not None):
            return False                      # too late, or the lock's line bounces
        if lock.free_at > t + self.lead:
            return False                      # held ahead of us: contention
        if not pcp.list and not any(area.free_list for area in zone.free_area[self.kind]):
            return False                      # nothing to pop: rmqueue's fallbacks
        lock.timeline.horizon = t             # the fault's step starts at t
        cpu.time = t + self.lead
        self.alloc.rmqueue_bulk(zone, cpu, pcp, self.kind)    # charges its zone lock hold
        clear = cpu.time
        self._take(1, (clear, 0))
        self.last_start = t
        self.last_holds = [t + self.fe, clear + self.clear_ns]
        self.t = clear + self.clear_ns + self.pte + self.user_each
        self.system_ns += self.sys_each
        self.user_ns += self.user_each
        return True

    def _take(self, k: int, times: tuple[int, int]) -> None:
        """k pops off the per-CPU list; the i-th one's clear (when not
        zeroed) starts at times[0] + i * times[1]."""
        pop = self.pcp.list.pop
        taken = [pop() for _ in range(k)]
        self.popped += taken
        runs = self.runs
        for first, n in pfn_runs(taken):      # joined to the last run where they touch
            if runs and runs[-1][0] + runs[-1][1] == first:
                runs[-1] = (runs[-1][0], runs[-1][1] + n)
            else:
                runs.append((first, n))
        clears = self.clears
        if clears and clears[-1][0] + clears[-1][2] * self.step == times[0]:
            clears[-1] = (clears[-1][0], self.step, clears[-1][2] + k)   # the same series of clears goes on
        else:
            clears.append((times[0], times[1], k))
        self.done += k

    def commit(self) -> None:
        """What the k faults left for after the loop: the CPU's time, the
        locks' holds, the counters."""
        cpu, k, mm, zone = self.cpu, self.done, self.mm, self.zone
        state, start = zone.page_state, zone.zone_start_pfn
        runs = self.runs
        for first, n in runs:
            state[first - start: first - start + n] = marks(1, n)     # set_allocated, order 0
        mm.pages.extend(self.popped)
        mm.page_table_lock.held_uncontended(cpu, 2 * k, self.last_holds, self.pte)
        mm.mmap_sem.held_uncontended(cpu, 2 * k, [], 0)
        mm.page_table_lock.timeline.horizon = self.last_start     # the last fault's step start
        cpu.time = self.t
        cpu.system_ns += self.system_ns
        cpu.user_ns += self.user_ns
        ledger = cpu.ledger                   # the page_table_lock holds: held_uncontended's
        ledger["do_page_fault"] += k * self.fe
        ledger["buffered_rmqueue"] += k * self.alloc.pcp_op_ns
        if self.clear_ns:
            ledger["clear_page"] += k * self.clear_ns
        ledger[TOUCH] += k * self.touch_ns
        if self.extra_user_ns:
            ledger[BZERO] += k * self.extra_user_ns
        alloc = self.alloc
        if alloc.fail_page_alloc is not None:
            alloc.fail_page_alloc.cannot_fail_calls(k)
        alloc.account_alloc(zone, cpu, self.preferred, 0, k)
        alloc.cpu_stat[cpu.id]["pgfault"] += k
        alloc.prep_zero_page(cpu, zone, runs, self.zero, self.fault.later, self.clears)


def pfn_runs(pfns) -> list[tuple[int, int]]:
    """(lowest pfn, count) of each run of consecutive pfns, ascending or
    descending, in the order given."""
    n = len(pfns)
    if n > 1 and pfns[-1] - pfns[0] == n - 1 and pfns == list(range(pfns[0], pfns[0] + n)):
        return [(pfns[0], n)]                 # one ascending run: checked without a Python loop
    runs = []
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
