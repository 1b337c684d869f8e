"""A thread's series of equal faults in one step (host-side batching).

pft runs every fault as one scheduler step.  While a thread is the one the
scheduler would resume next anyway (Timeline.solo_bound: no other task,
event or load-average tick due first), its next faults can run in one loop
without the round-trip.  When, besides, they are all served from the same
zone's same per-CPU list, by an uncontended page_table_lock, and (when
cleared) on a memory bus that the same other transfers share throughout
(MemoryBus.steady), every fault is do_anonymous_page with the same costs
(FaultPath's, PageAllocator's), one step apart, except the one
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

from collections import deque

from ..kernel.sched import CPU
from .fault import BZERO, GFP_ANON, TOUCH, FaultPath, MMStruct
from .mmzone import NOT_ZEROED, ZEROED, Zone
from .page_alloc import marks


class FaultBatch:
    """Runs of a thread's faults, each as if it were its own scheduler step."""

    def __init__(self, fault: FaultPath, extra_user_ns: int = 0):
        self.fault = fault
        self.alloc = fault.alloc
        self.extra_user_ns = extra_user_ns      # pft -z: the thread's bzero of each page

    def run(self, cpu: CPU, mm: MMStruct, limit: int) -> int:
        """Up to ``limit`` more faults while a series applies; returns how
        many (the caller does the next one through do_anonymous_page)."""
        done = 0
        while done < limit:
            k = self._series(cpu, mm, limit - done)
            if not k:
                break
            done += k
        return done

    def _series(self, cpu: CPU, mm: MMStruct, limit: int) -> int:
        lock, sem = mm.page_table_lock, mm.mmap_sem
        fault, alloc = self.fault, self.alloc
        t0 = cpu.time
        bound = lock.timeline.solo_bound()
        if t0 >= bound or lock.last_cpu is not cpu or sem.last_cpu is not cpu \
                or mm.counters_cpu not in (cpu, None):
            return 0
        if alloc.fail_page_alloc is not None and not alloc.fail_page_alloc.cannot_fail(0, GFP_ANON):
            return 0
        zonelist = alloc.zonelist(cpu.node)
        zone = next((z for z in zonelist if z.free_pages > z.pages_low), None)   # the low pass's choice
        if zone is None or zone.pageset.get(cpu.id) is None:
            return 0
        if fault.pte_lock_ns <= 0 or lock.free_at > t0 + fault.fault_entry_ns:
            return 0                          # a hold booked ahead of us: contention, the general path
        if zone.zero_pages >= 1 and fault.memsys.scrubbed_lines(cpu.id):
            return 0                          # zeroed pages this CPU's cache may hold: touches at other costs
        series = _Series(self, cpu, mm, zone, zonelist[0], bound)
        k = series.run(limit)
        if k:
            series.commit()
        return k


class _Series:
    """One series: faults from one zone's one per-CPU list.  ``t`` is the
    next fault's start; ``step`` the time from one equal fault's start to
    the next's; ``listed`` the list's length as the next fault finds it.

    Refills are taken several at a time (rmqueue_bulk with ``refills``),
    as many as the series is sure to reach: each is still charged to the
    fault that finds the list at its low mark, with its own zone lock hold.
    Until then its pages wait on the list's cold end, out of ``listed``,
    and out of the zone's free pages (``ahead``)."""

    def __init__(self, batch: FaultBatch, cpu: CPU, mm: MMStruct, zone: Zone, preferred: Zone, bound: int):
        fault, alloc = batch.fault, batch.alloc
        self.fault, self.alloc, self.cpu, self.mm = fault, alloc, cpu, mm
        self.zone, self.preferred = zone, preferred
        self.zero = zero = zone.zero_pages >= 1
        self.kind = ZEROED if zero else NOT_ZEROED
        self.pcp = alloc.pcp_list(zone, cpu, zero)
        self.listed = self.own = len(self.pcp.list)     # the list's length, and its own pages
        self.refill_runs: list[tuple[int, int]] = []     # the pages the refills put on it, in order
        self.fe, self.pte = fault.fault_entry_ns, fault.pte_lock_ns
        self.lead = self.fe + self.pte + alloc.pcp_op_ns      # a fault's start to its refill or clear
        self.t = cpu.time
        self.until = self.refill_until = bound
        self.clear_ns = self.sharing = 0
        self.hold_max = alloc.bulk_hold_ns(self.pcp.batch, self.pcp.batch * zone.max_order)
        if not zero:
            # the clears of faults starting before ``free`` share the bus with the same transfers
            self.sharing, steady = alloc.buses[zone.node].steady(self.t + self.lead)
            self.clear_ns = alloc.clear_page_ns(cpu, zone, self.sharing)
            free = steady - self.lead
            self.until = min(bound, free)
            self.refill_until = min(bound, free - self.hold_max)
        self.sys_each = self.fe + 2 * self.pte + alloc.pcp_op_ns + self.clear_ns
        self.touch_ns, self.extra_user_ns = fault.touch_series_ns(cpu, zone.node, not zero), batch.extra_user_ns
        self.user_each = self.touch_ns + self.extra_user_ns
        self.step = self.sys_each + self.user_each
        self.done = 0
        self.ahead: deque[tuple[int, int]] = deque()     # refills taken, not reached: (pages, hold)
        self.ahead_pages = 0
        self.refills = self.hold_ns = 0       # refills reached, their zone lock holds
        self.last_refill = (0, 0)             # the last one's hold: (start, ns)
        self.clears: list[tuple[int, int, int]] = []     # the clears' starts: (first, step, count)
        self.last_start = 0                   # the last fault's start
        self.last_holds: list[int] = []       # and its two page_table_lock holds' starts

    def run(self, limit: int) -> int:
        """Up to ``limit`` faults; returns how many."""
        zone, pcp, zero = self.zone, self.pcp, self.zero
        while self.done < limit:
            ahead = self.ahead_pages          # the low pass still picks this zone, and this list
            if zone.free_pages + ahead <= zone.pages_low or (zone.zero_pages + zero * ahead >= 1) != zero:
                break
            if self.listed > pcp.low:
                k = min(limit - self.done, self.listed - pcp.low, (self.until - 1 - self.t) // self.step + 1)
                if k <= 0:
                    break
                self._equal_faults(k)
            elif not self._refill_fault(limit):
                break
            elif len(self.ahead) > 1:
                self._reached_cycles()
        return self.done

    def _equal_faults(self, k: int) -> None:
        """k faults that find the list above its low mark, one step apart."""
        t, step = self.t, self.step
        self._clears(t + self.lead, k)
        self.last_start = last = t + (k - 1) * step
        self.last_holds = [last + self.fe, last + self.lead + self.clear_ns]
        self.t = t + k * step
        self.listed -= k
        self.done += k

    def _refill_fault(self, limit: int) -> bool:
        """The fault that refills the list first, or False (nothing done)
        when it needs the general path."""
        if not self.ahead and not self._take_refills(limit):
            return False
        taken, hold = self.ahead.popleft()
        self.ahead_pages -= taken
        t = self.t
        clear = t + self.lead + hold          # the zone lock held from t + lead
        self._clears(clear, 1)
        self.refills += 1
        self.hold_ns += hold
        self.last_refill = (t + self.lead, hold)
        self.last_start = t
        self.last_holds = [t + self.fe, clear + self.clear_ns]
        self.t = clear + self.clear_ns + self.pte + self.user_each
        self.listed += taken - 1
        self.done += 1
        return True

    def _reached_cycles(self) -> None:
        """The faults up to the last refill taken ahead: each refill's
        fault, then the faults that find the list above its low mark.
        Every one of them is reached (_refills_ahead), so none is checked."""
        ahead, clears, low = self.ahead, self.clears, self.pcp.low
        t, listed, step, lead = self.t, self.listed, self.step, self.lead
        held = pages = faults = refills = 0
        while len(ahead) > 1:
            taken, hold = ahead.popleft()
            refill = t                        # the refill's fault, its zone lock held from t + lead
            listed += taken - 1
            equal = listed - low if listed > low else 0
            listed -= equal
            clears.append((t + lead + hold, step, 1 + equal))   # its clear, then the others'
            t += hold + (1 + equal) * step
            held, pages, faults, refills = held + hold, pages + taken, faults + 1 + equal, refills + 1
        last = t - step if equal else refill
        self.last_refill = (refill + lead, hold)
        self.last_start = last
        self.last_holds = [last + self.fe, t - step + lead + self.clear_ns]
        self.t, self.listed = t, listed
        self.refills += refills
        self.hold_ns += held
        self.ahead_pages -= pages
        self.done += faults

    def _take_refills(self, limit: int) -> bool:
        """rmqueue_bulk for the fault at self.t and as many after it as the
        series is sure to reach, or False when that fault needs the
        general path."""
        t, cpu, zone = self.t, self.cpu, self.zone
        lock = zone.lock
        if t >= self.refill_until or (lock.last_cpu is not cpu and lock.last_cpu is not None):
            return False                      # too late, or the lock's line bounces
        if lock.free_at > t + self.lead:
            return False                      # held ahead of us: contention
        if not self.listed and not any(area.free_list for area in zone.free_area[self.kind]):
            return False                      # nothing to pop: rmqueue's fallbacks
        refills, runs = self.alloc.rmqueue_bulk(zone, self.pcp, self.kind, self._refills_ahead(limit))
        self.ahead.extend(refills)
        self.refill_runs += runs
        self.ahead_pages = sum(taken for taken, _ in self.ahead)
        return True

    def _refills_ahead(self, limit: int) -> int:
        """How many refills from the one at self.t on the series reaches for
        sure, each taking a whole batch: between two of them at most
        ``batch`` faults (the list is at its low mark before each), each
        reached before limit, before refill_until (each hold at most
        hold_max), while the zone keeps more than pages_low free.  One at
        least (the next fault's, whatever it takes)."""
        zone, batch = self.zone, self.pcp.batch
        kind_free = zone.zero_pages if self.zero else zone.free_pages - zone.zero_pages - zone.scrub_inflight
        n = min((limit - self.done - 1) // batch + 1,
                (self.refill_until - 1 - self.t) // (batch * self.step + self.hold_max) + 1,
                (zone.free_pages - zone.pages_low - 1) // batch + 1,
                kind_free // batch)
        return n if n > 1 else 1

    def _clears(self, first: int, k: int) -> None:
        """k faults' clears (when not zeroed), from first on, one step apart:
        joined to the last series of clears when they go on from it."""
        clears, step = self.clears, self.step
        if clears and clears[-1][0] + clears[-1][2] * step == first:
            clears[-1] = (clears[-1][0], step, clears[-1][2] + k)
        else:
            clears.append((first, step, k))

    def commit(self) -> None:
        """What the faults left for after the loop: the pages off the list,
        the CPU's time, the locks' holds, the counters."""
        cpu, k, mm, zone = self.cpu, self.done, self.mm, self.zone
        assert not self.ahead, "a refill taken ahead was not reached"   # _refills_ahead's promise
        popped = self.pcp.take(k)             # the pages, in the order the faults took them
        runs = self._runs(popped)
        state, start = zone.page_state, zone.zone_start_pfn
        for first, n in runs:
            state[first - start: first - start + n] = marks(1, n)     # set_allocated, order 0
        mm.pages.extend(popped)
        mm.page_table_lock.timeline.horizon = self.last_start     # the last fault's step start
        mm.page_table_lock.held_uncontended(cpu, 2 * k, 2 * k * self.pte,
                                            [(start, self.pte) for start in self.last_holds], self.last_holds[-1])
        mm.counters_cpu = cpu
        mm.mmap_sem.held_uncontended(cpu, 2 * k, 0, [], self.last_holds[-1] + self.pte)
        if self.refills:
            zone.lock.held_uncontended(cpu, self.refills, self.hold_ns, [self.last_refill], self.last_refill[0])
        cpu.time = self.t
        cpu.system_ns += k * self.sys_each + self.hold_ns
        cpu.user_ns += k * self.user_each
        self._charge_ledger(cpu, k)
        alloc = self.alloc
        if alloc.fail_page_alloc is not None:
            alloc.fail_page_alloc.cannot_fail_calls(k)
        alloc.account_alloc(zone, cpu, self.preferred, 0, k)
        alloc.cpu_stat[cpu.id]["pgfault"] += k
        alloc.prep_zero_page(cpu, zone, runs, self.zero, self.fault.later, self.clears, sharing=self.sharing)
        if self.zero:                         # the touches brought their lines into this CPU's cache
            self.fault.memsys.wrote(cpu.id, runs, self.fault.cachelines)

    def _runs(self, popped: list[int]) -> list[tuple[int, int]]:
        """The pages as (first, count) runs: the list's own pages came off
        first, then the refills' in the order rmqueue_bulk took them."""
        own = min(len(popped), self.own)
        runs = pfn_runs(popped[:own])
        left = len(popped) - own
        for first, n in self.refill_runs:
            if left <= 0:
                break
            n = n if n < left else left
            if runs and runs[-1][0] + runs[-1][1] == first:
                runs[-1] = (runs[-1][0], runs[-1][1] + n)
            else:
                runs.append((first, n))
            left -= n
        return runs

    def _charge_ledger(self, cpu: CPU, k: int) -> None:
        """The ledger's entries of k faults (the locks' holds are theirs)."""
        ledger = cpu.ledger
        ledger["do_page_fault"] += k * self.fe
        ledger["buffered_rmqueue"] += k * self.alloc.pcp_op_ns
        if self.clear_ns:
            ledger["clear_page"] += k * self.clear_ns
        ledger[TOUCH] += k * self.touch_ns
        if self.extra_user_ns:
            ledger[BZERO] += k * self.extra_user_ns


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
