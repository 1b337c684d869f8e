"""Virtual time: CPUs with their own timelines, shared resources, and the
event loop that runs emulated tasks concurrently.

Every CPU has ``time``, the virtual nanosecond up to which it has executed.
An operation on a CPU advances that CPU's time by its cost and accounts it as
user or system time.  Tasks are generators: each ``yield`` ends one step, and
the scheduler always resumes the task whose CPU is furthest behind, so steps
of different CPUs interleave in virtual-time order.  Shared resources
(a spinlock, a node's memory bus) are reservation calendars: a CPU that
arrives while the resource is held waits (spins) until it is free.

Nothing here looks at the host clock: the same operations give the same
times, byte for byte.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import defaultdict
from typing import Any, Callable, Final, Generator, Iterable

NSEC_PER_SEC: Final = 1_000_000_000
USER_HZ: Final = 100
# later than any event: the largest int mypyc keeps unboxed (vmemu/native.py), so comparing with it stays cheap
NEVER: Final = (1 << 62) - 1


def after(times: list[int], t: int, lo: int = 0) -> int:
    """bisect_right(times, t, lo): the index of the first entry after t in
    a time-ordered calendar (a lock's calendar is searched several times a
    fault).  Compiled by mypyc (vmemu/native.py), this loop of unboxed
    compares beats calling bisect on boxed ints; as Python, bisect's own
    C loop is faster, and is what runs."""
    hi = len(times)
    while lo < hi:
        mid = (lo + hi) >> 1
        if t < times[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


if __file__.endswith(".py"):
    after = bisect_right  # type: ignore[assignment]  # noqa: F811 - the same function, in C


class CPU:
    """One emulated CPU: its timeline, its cpustat accounting (ns), and its
    ledger: every nanosecond charged to it, by task and activity.

    ``ledgers[task][activity]`` holds the ns the CPU spent on ``activity``
    (named after the kernel function doing the work) for ``task`` (the
    owner's name: a pft task, kscrubdN; "kernel" with no owner); ``ledger``
    is the running task's, switched when the owner changes.  Idle time is
    what is not charged."""

    __slots__ = ("id", "node", "time", "user_ns", "system_ns", "kthread_ns", "charged_ns", "_owner", "name",
                 "ledgers", "ledger")

    def __init__(self, cpu_id: int, node: int):
        self.id = cpu_id
        self.node = node
        self.time = 0          # virtual ns up to which this CPU has executed
        self.user_ns = 0
        self.system_ns = 0
        self.kthread_ns = 0    # the part of system_ns kernel daemons (kscrubd) spent here
        self.charged_ns = 0    # --charge task: background zeroing charged to the tasks run here
        self.name = f"cpu{cpu_id}"
        self.ledgers: dict[str, defaultdict] = {}
        self._owner: Any = None
        self.owner = None      # the task or kernel thread running on it, None when idle

    @property
    def owner(self) -> Any:
        return self._owner

    @owner.setter
    def owner(self, owner: Any) -> None:
        self._owner = owner
        task = "kernel" if owner is None else owner.name
        ledger = self.ledgers.get(task)
        if ledger is None:
            ledger = self.ledgers[task] = defaultdict(int)
        self.ledger = ledger

    def sys(self, ns: int, activity: str) -> None:
        """Spend ns of kernel time on this CPU doing ``activity``."""
        self.time += ns
        self.system_ns += ns
        self.ledger[activity] += ns

    def user(self, ns: int, activity: str) -> None:
        self.time += ns
        self.user_ns += ns
        self.ledger[activity] += ns

    @property
    def busy(self) -> bool:
        return self._owner is not None

    def catch_up(self, now: int) -> None:
        """An idle CPU starting work at ``now`` skips the idle gap."""
        if self.time < now:
            self.time = now


class Timeline:
    """Shared by everything of one machine that keeps reservations.

    ``horizon`` is a lower bound on the time of every future request: the
    scheduler raises it to the time of the step it is about to run (the
    earliest of all runnable CPUs).  Reservations that ended before it can
    never matter again and are pruned."""

    __slots__ = ("horizon", "running", "next_tick", "on_tick", "solo_until", "events", "pace_at", "pacer")

    def __init__(self) -> None:
        self.horizon = 0
        self.running = False     # inside sched.run; outside it calls arrive in time order
        self.next_tick = NEVER    # when on_tick(t) is next due (the load-average sample)
        self.on_tick: Callable[[int], None] | None = None
        # While a task's step runs: the scheduler would resume this same task
        # next, with nothing in between, for any next step starting before
        # solo_until (no other task due earlier, no tick due).  0 otherwise.
        self.solo_until = 0
        self.events: EventQueue | None = None   # the machine's timed events, if any
        # Host side: pacer(t) is called between two steps once virtual time
        # reaches pace_at (the daemon's pacing of a job against wall time,
        # and its windows for readers); it sets the next pace_at.  No step
        # and no series of steps runs past pace_at without it.
        self.pace_at = NEVER
        self.pacer: Callable[[int], None] | None = None

    def pace(self, t: int) -> None:
        """Between two steps, at t >= pace_at: the pacer's turn."""
        if t > self.horizon:
            self.horizon = t
        self.pace_at = NEVER
        if self.pacer is not None:
            self.pacer(t)

    def solo_bound(self) -> int:
        """The time before which the running task may start more steps
        without yielding: the scheduler's bound, and no timed event due
        at or before then (events scheduled since the step began count)."""
        bound = self.solo_until
        events = self.events
        if events is not None and events._heap and events._heap[0][0] < bound:
            bound = events._heap[0][0]
        return bound

    def prune_before(self, t: int) -> int:
        """The time before which reservations may be forgotten, for a request at t."""
        return self.horizon if self.running else t


class SpinLock:
    """A spinlock as a reservation calendar.

    Scheduler steps are not infinitely fine, so a CPU may ask for the lock at
    a virtual time earlier than a hold another CPU has already booked.  The
    lock therefore keeps the booked holds (disjoint intervals) and gives the
    requester the first gap at or after its arrival that fits its hold: it
    spins (system time) until then.  With requests in time order this is
    exactly a FIFO spinlock.

    Holds that ended before the timeline's horizon can never delay a later
    request; the calendar forgets them once it holds more than PRUNE_ABOVE
    (then twice what it kept), which changes no answer."""

    PRUNE_ABOVE = 64

    __slots__ = ("name", "timeline", "_starts", "_ends", "acquired", "contended", "wait_ns",
                 "_takes", "_takers", "bounce_ns", "bounces", "kind", "spin", "transfer", "users", "_prune_at")

    def __init__(self, name: str, timeline: Timeline | None = None,
                 bounce_ns: list[list[int]] | None = None, kind: str | None = None):
        self.name = name
        self.timeline = timeline or Timeline()
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._prune_at = self.PRUNE_ABOVE
        self.acquired = 0
        self.contended = 0
        self.wait_ns = 0
        # The lock's cache line moves to whoever takes it: taking it after
        # another CPU costs a transfer, dearer from another node (NUMA).  Who
        # had it last is asked in virtual time: the takes, time-ordered.
        self._takes: list[int] = []
        self._takers: list[CPU] = []
        # bounce_ns[a][b]: the line moving from a CPU of node a to one of node b
        # (MemorySystem.transfer); None: free (a machine without a memory system)
        self.bounce_ns = bounce_ns
        self.bounces = 0
        self.users: set[int] = set()          # the CPUs that ever took the lock
        # the ledger's activities: the hold, the spin before it, the line's transfer
        self.kind = kind = kind or name          # page_table_lock, zone->lock, ...
        self.spin, self.transfer = f"spin:{kind}", f"cacheline:{kind}"

    def _prune(self, t: int) -> None:
        """Forget the holds over before the horizon; the next prune waits
        until the calendar has doubled again (at least PRUNE_ABOVE)."""
        k = after(self._ends, self.timeline.prune_before(t))
        if k:
            del self._starts[:k], self._ends[:k]
        self._prune_at = max(self.PRUNE_ABOVE, 2 * len(self._ends))

    def hold(self, cpu: CPU, hold_ns: int) -> None:
        """Acquire, hold for hold_ns, release; all charged to cpu as system
        time.  hold_ns 0 is an atomic on the line (a read-side count): no
        critical section, only the line's transfer.

        Taking the lock's line from the CPU that had it last (in virtual
        time) is a latency the acquirer pays before it can try; it then
        spins until the first gap of hold_ns between the holds booked."""
        t = cpu.time
        takes = self._takes
        owner: CPU | None
        if takes and takes[-1] <= t:              # the usual case: the latest take is the owner
            owner = self._takers[-1]
        else:
            i = after(takes, t)
            owner = self._takers[i - 1] if i else None
        move = 0
        if owner is not cpu and owner is not None and self.bounce_ns is not None:
            move = self.bounce_ns[owner.node][cpu.node]
            self.bounces += 1
            cpu.ledger[self.transfer] += move
        self.acquired += 1
        begin = t + move                          # the line is here: the hold may begin
        end = begin
        if hold_ns > 0:
            ends = self._ends
            if len(ends) > self._prune_at:
                self._prune(t)
                ends = self._ends
            if not ends or ends[-1] <= begin:     # uncontended, the usual case
                ends.append(begin + hold_ns)
                self._starts.append(begin)
            else:
                i, begin = self._gap(begin, hold_ns)
                if begin > end:
                    self.contended += 1
                    self.wait_ns += begin - end
                    cpu.ledger[self.spin] += begin - end
                self._starts.insert(i, begin)     # the calendar: the hold [begin, end)
                ends.insert(i, begin + hold_ns)
            end = begin + hold_ns
            cpu.ledger[self.kind] += hold_ns
        self._took(begin, cpu)
        cpu.system_ns += end - t                  # the transfer, the spin, the hold
        cpu.time = end

    def _gap(self, t: int, span: int) -> tuple[int, int]:
        """The first gap of ``span`` ns at or after t between booked holds:
        (its index in the calendar, its start)."""
        starts, ends = self._starts, self._ends
        i = after(ends, t)
        begin, n = t, len(starts)
        while i < n and starts[i] < begin + span:
            if ends[i] > begin:
                begin = ends[i]
            i += 1
        return i, begin

    # -- the line ----------------------------------------------------------------

    @property
    def last_cpu(self) -> CPU | None:
        """The CPU of the latest take in virtual time."""
        return self._takers[-1] if self._takers else None

    def _took(self, t: int, cpu: CPU) -> None:
        """The CPU has the line from t on."""
        self.users.add(cpu.id)
        takes = self._takes
        if not takes or takes[-1] <= t:
            takes.append(t)
            self._takers.append(cpu)
        else:
            i = after(takes, t)
            takes.insert(i, t)
            self._takers.insert(i, cpu)
        if len(takes) > self.PRUNE_ABOVE + 2 * len(self.users):
            keep = min(after(takes, self.timeline.prune_before(t)), len(takes) - len(self.users))
            if keep > len(self.users):
                del takes[:keep - len(self.users)], self._takers[:keep - len(self.users)]

    def takes(self) -> list[tuple[int, int]]:
        """The line's takes that still count, as (time, cpu id) (for a saved machine)."""
        return [(t, c.id) for t, c in zip(self._takes, self._takers)]

    def restore_takes(self, takes, cpus) -> None:
        """Takes from takes(), with ``cpus`` the machine's CPUs by id."""
        pairs = sorted((int(t), int(c)) for t, c in takes)
        self._takes = [t for t, _ in pairs]
        self._takers = [cpus[c] for _, c in pairs]
        self.users = {c for _, c in pairs}

    @property
    def free_at(self) -> int:
        """The end of the last booked hold (0 if none)."""
        return self._ends[-1] if self._ends else 0

    def held_uncontended(self, cpu: CPU, acquisitions: int, held_ns: int, bookings,
                         last_take: int | None = None) -> None:
        """hold() ``acquisitions`` times in a row by a CPU that has the line
        (or takes it from nobody) and never waits (a fault series, exit's
        drains), each hold ending before the next begins, ``held_ns`` in
        all, charged as the holds' (the caller adds it to the CPU's time).
        ``bookings`` are the (start, ns) of those that may still delay
        another CPU, every one that ends after the horizon (a fault series
        moves the horizon to its last fault: only its last holds).
        The line is this CPU's from each booked hold's start, and from
        ``last_take`` (default: the last booking's start, or now): another
        CPU woken between two of the holds (kscrubd, by a drain's coalesce)
        finds it here."""
        self.acquired += acquisitions
        for start, _ in bookings:
            self._took(start, cpu)
        if last_take is None and not bookings:
            last_take = cpu.time
        if last_take is not None and (not bookings or last_take != bookings[-1][0]):
            self._took(last_take, cpu)
        if held_ns:
            cpu.ledger[self.kind] += held_ns
        if bookings and len(self._ends) > self._prune_at:
            self._prune(bookings[0][0])
        for start, ns in bookings:
            self._starts.append(start)
            self._ends.append(start + ns)

    def bookings(self) -> list[tuple[int, int]]:
        """The holds booked that may still delay a request (for a saved machine)."""
        return list(zip(self._starts, self._ends))

    def restore_bookings(self, bookings) -> None:
        """Bookings from bookings(): disjoint (start, end) pairs in time order."""
        starts, ends = [int(s) for s, _ in bookings], [int(e) for _, e in bookings]
        if any(s > e for s, e in zip(starts, ends)) or any(e > s for e, s in zip(ends, starts[1:])):
            raise ValueError(f"{self.name}: bookings overlap or run backwards")
        self._starts, self._ends = starts, ends


class MemoryBus:
    """A node's memory bandwidth, shared by every agent that clears memory
    (CPUs and the BTE).  An agent alone moves bytes at its own rate; when k
    other transfers are in flight at the moment one starts, it gets at most
    1/(k+1) of the bus (``bytes_per_ns`` in all).  A transfer's rate is fixed
    when it starts: a deterministic approximation of processor sharing.

    The calendar holds series of equal transfers, (first start, step,
    count, duration) each: a CPU clearing page after page books one entry,
    not one per page.  Series that ended before the horizon are forgotten
    once there are more than PRUNE_ABOVE, which changes no answer."""

    PRUNE_ABOVE = 8

    __slots__ = ("bytes_per_ns", "timeline", "_series", "bytes", "busy_ns", "busy_by", "shared", "_busy_until")

    def __init__(self, bytes_per_ns: float, timeline: Timeline | None = None):
        self.bytes_per_ns = bytes_per_ns
        self.timeline = timeline or Timeline()
        self._series: list[tuple[int, int, int, int]] = []
        self._busy_until = 0     # no transfer booked is in flight from here on
        self.bytes = 0
        self.busy_ns = 0
        self.busy_by: dict[str, int] = {}   # busy_ns by user: "task" (fault-path clears), "kscrubd", "bte"
        self.shared = 0          # transfers that started while others were in flight

    def duration(self, nbytes: int, max_rate: float, others: int = 0) -> int:
        """How long nbytes take at up to max_rate with ``others`` transfers in flight."""
        share = self.bytes_per_ns / (others + 1)
        return int(nbytes / (max_rate if max_rate < share else share) + 0.5)

    def in_flight(self, t: int) -> int:
        """Booked transfers in flight at time t."""
        if t >= self._busy_until:
            return 0
        n = 0
        for first, step, count, dur in self._series:
            if t < first:
                continue
            if step:
                hi = min(count - 1, (t - first) // step)
                lo = max(0, (t - dur - first) // step + 1)
                n += max(0, hi - lo + 1)
            elif t < first + dur:
                n += count
        return n

    def transfer(self, start: int, nbytes: int, max_rate: float, user: str) -> int:
        """``user`` moves nbytes starting at ``start`` at up to max_rate;
        return the end time."""
        others = self.in_flight(start) if start < self._busy_until else 0
        if others:
            self.shared += 1
        dur = self.duration(nbytes, max_rate, others)
        series = self._series
        if len(series) > self.PRUNE_ABOVE:
            self._prune(self.timeline.prune_before(start))
            series = self._series
        series.append((start, 0, 1, dur))
        if start + dur > self._busy_until:
            self._busy_until = start + dur
        self.bytes += nbytes
        self.busy_ns += dur
        self.busy_by[user] = self.busy_by.get(user, 0) + dur
        return start + dur

    def transfer_series(self, segments, nbytes: int, max_rate: float, user: str, others: int = 0) -> int:
        """Transfers of nbytes each, ``segments`` of them: (first, step,
        count) starting at first, first + step, ... (a CPU clearing page
        after page), each done before the next starts and each starting
        with ``others`` booked transfers in flight (the caller asked
        steady).  Returns each one's duration.  Segments over before the
        horizon are counted, never booked (they could only be pruned)."""
        dur = self.duration(nbytes, max_rate, others)
        if not segments:
            return dur
        horizon = self.timeline.prune_before(segments[0][0])
        self._prune(horizon)
        kept = [(first, step, count, dur) for first, step, count in segments
                if first + (count - 1) * step + dur > horizon]
        self._series += kept
        self._busy_until = max([self._busy_until] + [f + (c - 1) * st + dur for f, st, c, _ in kept])
        count = sum(count for _, _, count in segments)
        if others:
            self.shared += count
        self.bytes += count * nbytes
        self.busy_ns += count * dur
        self.busy_by[user] = self.busy_by.get(user, 0) + count * dur
        return dur

    def _prune(self, horizon: int) -> None:
        """Forget the series over before horizon, once there are more than PRUNE_ABOVE."""
        if len(self._series) > self.PRUNE_ABOVE:
            self._series = [s for s in self._series if s[0] + (s[2] - 1) * s[1] + s[3] > horizon]

    def steady(self, first: int) -> tuple[int, int]:
        """(booked transfers in flight at ``first``, the time before which
        that number holds): a transfer starting in between shares the bus
        with as many as one starting at first.  Where booked transfers of
        one series overlap each other, the answer is (in flight, first)."""
        if first >= self._busy_until:
            return 0, NEVER
        n, until = 0, NEVER
        for s0, step, count, dur in self._series:
            if s0 + (count - 1) * step + dur <= first:
                continue
            if step and count > 1 and step < dur:
                return self.in_flight(first), first
            # the series' first transfer that ends after first (all of them when step is 0)
            i = 0 if not step or s0 + dur > first else (first - dur - s0) // step + 1
            s = s0 + i * step
            if s <= first:                    # in flight: the count changes when it ends
                n += 1 if step else count
                change = s + dur
            else:
                change = s
            if change < until:
                until = change
        return n, until

    def bookings(self) -> list[tuple[int, int, int, int]]:
        """The series booked that may still share the bus (for a saved machine)."""
        return list(self._series)

    def restore_bookings(self, series) -> None:
        """Series from bookings(): (first, step, count, duration), count >= 1."""
        out = []
        for first, step, count, dur in series:
            if count < 1 or step < 0 or dur < 0:
                raise ValueError(f"memory bus booking {first, step, count, dur} is not a series")
            out.append((int(first), int(step), int(count), int(dur)))
        self._series = out
        self._busy_until = max([0] + [f + (c - 1) * st + d for f, st, c, d in out])


Task = Generator[None, None, None]


class EventQueue:
    """Timed callbacks in virtual time: kernel daemons' steps, BTE completions.
    Ordered by (time, sequence), so equal times run in scheduling order."""

    __slots__ = ("_heap", "seq", "timeline")

    def __init__(self, timeline: Timeline):
        self._heap: list = []
        self.seq = 0             # events scheduled so far: ties run in this order
        self.timeline = timeline
        timeline.events = self

    def schedule(self, t: int, fn, *args) -> None:
        """Call fn(t, *args) at virtual time t."""
        self.seq += 1
        heapq.heappush(self._heap, (t, self.seq, fn, args))

    def next_time(self) -> int:
        return self._heap[0][0] if self._heap else NEVER

    def pending(self) -> list[tuple[int, int, object, tuple]]:
        """The events due, in the order they will run: (time, sequence, fn, args)."""
        return sorted(self._heap, key=lambda e: e[:2])

    def run_one(self) -> None:
        t, _, fn, args = heapq.heappop(self._heap)
        tl = self.timeline
        if t > tl.horizon:
            tl.horizon = t
        if t >= tl.next_tick and tl.on_tick is not None:
            tl.on_tick(t)
        fn(t, *args)

    def run_until(self, t: int) -> int:
        """Run every event due at or before t; returns how many ran."""
        n = 0
        outer, self.timeline.running = self.timeline.running, True
        try:
            while self._heap and self._heap[0][0] <= t:
                self.run_one()
                n += 1
        finally:
            self.timeline.running = outer
        return n

    def __len__(self) -> int:
        return len(self._heap)


def run(steps: Iterable[tuple[CPU, Task]], timeline: Timeline | None = None,
        events: EventQueue | None = None) -> int:
    """Run tasks to completion, each bound to its CPU, in virtual-time order.

    Each task is a generator whose every ``yield`` ends a step; the task of
    the CPU furthest behind runs next (ties broken by start order, so the
    result is deterministic).  Timed events due before the next task step
    (kernel daemons, device completions) run first.  Returns the virtual
    time at which the last task finished."""
    heap = []
    for seq, (cpu, task) in enumerate(steps):
        heap.append((cpu.time, seq, cpu, task))
    heapq.heapify(heap)
    last = 0
    if timeline is not None:
        outer, timeline.running = timeline.running, True
    try:
        last = _run_heap(heap, timeline, events)
    finally:
        if timeline is not None:
            timeline.running = outer
    return last


def _run_heap(heap: list[tuple[int, int, CPU, Task]], timeline: Timeline | None, events: EventQueue | None) -> int:
    """run()'s loop: the earliest task's step, or the timed events due
    before it.  The task runs where it sits, at the heap's top, and goes
    back with its new time in one sift (heapreplace)."""
    last = 0
    ev = events._heap if events is not None else None
    replace = heapq.heapreplace
    while heap:
        if ev and events is not None and ev[0][0] <= heap[0][0]:
            if timeline is not None and ev[0][0] >= timeline.pace_at:
                timeline.pace(ev[0][0])
            events.run_one()        # a daemon step or a completion due before the next task step
            continue
        t, seq, cpu, task = heap[0]
        if timeline is not None:
            if t >= timeline.pace_at:
                timeline.pace(t)
            timeline.horizon = t
            if t >= timeline.next_tick and timeline.on_tick is not None:
                timeline.on_tick(t)
            # This task's next step would again be the first to run if it
            # starts before: the next tick, the next pace, and the next task
            # (by time, then start order: the smaller of the top's two
            # children).  Timed events are checked by Timeline.solo_bound.
            bound = timeline.next_tick if timeline.next_tick < timeline.pace_at else timeline.pace_at
            if len(heap) > 1:
                other = heap[1] if len(heap) == 2 or heap[1] < heap[2] else heap[2]
                other_t = other[0] + 1 if seq < other[1] else other[0]
                if other_t < bound:
                    bound = other_t
            timeline.solo_until = bound
        try:
            next(task)
            done = False
        except StopIteration:
            done = True
        finally:
            if timeline is not None:
                timeline.solo_until = 0
        if done:
            last = max(last, cpu.time)
            heapq.heappop(heap)
        else:
            replace(heap, (cpu.time, seq, cpu, task))
    return last
