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
from typing import Generator, Iterable

NSEC_PER_SEC = 1_000_000_000
USER_HZ = 100


class CPU:
    """One emulated CPU: its timeline and its cpustat accounting (ns)."""

    __slots__ = ("id", "node", "time", "user_ns", "system_ns", "kthread_ns", "owner", "name")

    def __init__(self, cpu_id: int, node: int):
        self.id = cpu_id
        self.node = node
        self.time = 0          # virtual ns up to which this CPU has executed
        self.user_ns = 0
        self.system_ns = 0
        self.kthread_ns = 0    # the part of system_ns kernel daemons (kscrubd) spent here
        self.owner = None      # the task or kernel thread running on it, None when idle
        self.name = f"cpu{cpu_id}"

    def sys(self, ns: int) -> None:
        """Spend ns of kernel time on this CPU."""
        self.time += ns
        self.system_ns += ns

    def user(self, ns: int) -> None:
        self.time += ns
        self.user_ns += ns

    @property
    def busy(self) -> bool:
        return self.owner is not None

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

    __slots__ = ("horizon", "running", "next_tick", "on_tick", "solo_until", "events")

    def __init__(self):
        self.horizon = 0
        self.running = False     # inside sched.run; outside it calls arrive in time order
        self.next_tick = 1 << 62  # when on_tick(t) is next due (the load-average sample)
        self.on_tick = None
        # While a task's step runs: the scheduler would resume this same task
        # next, with nothing in between, for any next step starting before
        # solo_until (no other task due earlier, no tick due).  0 otherwise.
        self.solo_until = 0
        self.events: EventQueue | None = None   # the machine's timed events, if any

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
    exactly a FIFO spinlock."""

    __slots__ = ("name", "timeline", "_starts", "_ends", "acquired", "contended", "wait_ns",
                 "last_cpu", "bounce_local_ns", "bounce_remote_ns", "bounce_router_ns",
                 "bounces", "distance")

    def __init__(self, name: str, timeline: Timeline | None = None,
                 bounce_local_ns: int = 0, bounce_remote_ns: int = 0,
                 distance: list[list[int]] | None = None, bounce_router_ns: int | None = None):
        self.name = name
        self.timeline = timeline or Timeline()
        self._starts: list[int] = []
        self._ends: list[int] = []
        self.acquired = 0
        self.contended = 0
        self.wait_ns = 0
        # The lock's cache line moves to whoever takes it: taking it after
        # another CPU costs a transfer, dearer from another node (NUMA).
        self.last_cpu: CPU | None = None
        self.bounce_local_ns = bounce_local_ns
        self.bounce_remote_ns = bounce_remote_ns
        self.bounce_router_ns = bounce_remote_ns if bounce_router_ns is None else bounce_router_ns
        self.bounces = 0
        self.distance = distance      # node distances (SLIT): 20 one link away, more across a router

    def bounce_cost(self, from_node: int, to_node: int) -> int:
        if from_node == to_node:
            return self.bounce_local_ns
        if self.distance is None or self.distance[from_node][to_node] <= 20:
            return self.bounce_remote_ns
        return self.bounce_router_ns

    def hold(self, cpu: CPU, hold_ns: int) -> None:
        """Acquire, hold for hold_ns, release; all charged to cpu as system time.

        Fetching the lock's cache line from the CPU that had it last is a
        latency the acquirer pays before it can try; it does not lengthen
        the critical section."""
        last = self.last_cpu
        if last is not cpu:
            if last is not None:
                # bounce_cost(last.node, cpu.node), written out: this is every fault's path
                if last.node == cpu.node:
                    bounce = self.bounce_local_ns
                elif self.distance is None or self.distance[last.node][cpu.node] <= 20:
                    bounce = self.bounce_remote_ns
                else:
                    bounce = self.bounce_router_ns
                cpu.time += bounce
                cpu.system_ns += bounce
                self.bounces += 1
            self.last_cpu = cpu
        self.acquired += 1
        if hold_ns <= 0:
            return              # an atomic on the line (a read-side count): no critical section
        starts, ends = self._starts, self._ends
        t = cpu.time
        if not ends or ends[-1] <= t:
            # uncontended, the usual case: the lock is free from t on
            if len(ends) > 64:
                k = bisect_right(ends, self.timeline.prune_before(t))
                del starts[:k], ends[:k]
            starts.append(t)
            ends.append(t + hold_ns)
            cpu.system_ns += hold_ns
            cpu.time = t + hold_ns
            return
        if len(ends) > 64:
            k = bisect_right(ends, self.timeline.prune_before(t))
            if k:
                del starts[:k], ends[:k]
        i = bisect_right(ends, t)
        begin = t
        n = len(starts)
        while i < n and starts[i] < begin + hold_ns:
            if ends[i] > begin:
                begin = ends[i]
            i += 1
        starts.insert(i, begin)
        ends.insert(i, begin + hold_ns)
        if begin > t:
            self.contended += 1
            self.wait_ns += begin - t
        end = begin + hold_ns
        cpu.system_ns += end - t
        cpu.time = end

    @property
    def free_at(self) -> int:
        return self._ends[-1] if self._ends else 0


class MemoryBus:
    """A node's memory bandwidth, shared by every agent that clears memory
    (CPUs and the BTE).  An agent alone moves bytes at its own rate; when k
    other transfers are in flight at the moment one starts, it gets at most
    1/(k+1) of the bus (``bytes_per_ns`` in all).  A transfer's rate is fixed
    when it starts: a deterministic approximation of processor sharing."""

    __slots__ = ("bytes_per_ns", "timeline", "_active", "bytes", "busy_ns", "shared")

    def __init__(self, bytes_per_ns: float, timeline: Timeline | None = None):
        self.bytes_per_ns = bytes_per_ns
        self.timeline = timeline or Timeline()
        self._active: list[tuple[int, int]] = []   # (start, end) of transfers booked
        self.bytes = 0
        self.busy_ns = 0
        self.shared = 0          # transfers that started while others were in flight

    def transfer(self, start: int, nbytes: int, max_rate: float) -> int:
        """Move nbytes starting at ``start`` at up to max_rate; return the end time."""
        active = self._active
        if len(active) > 8:
            horizon = self.timeline.prune_before(start)
            active = self._active = [iv for iv in active if iv[1] > horizon]
        others = 0
        for s, e in active:
            if s <= start < e:
                others += 1
        rate = max_rate
        if others:
            self.shared += 1
            share = self.bytes_per_ns / (others + 1)
            if share < rate:
                rate = share
        elif self.bytes_per_ns < rate:
            rate = self.bytes_per_ns
        end = start + int(nbytes / rate + 0.5)
        active.append((start, end))
        self.bytes += nbytes
        self.busy_ns += end - start
        return end

    # transfer() prunes its calendar when a call finds more than this many bookings
    PRUNE_ABOVE = 8

    def alone_during(self, first: int, last: int) -> bool:
        """No booked transfer is in flight at any time in [first, last]."""
        for s, e in self._active:
            if e > first and s <= last:
                return False
        return True

    def alone_until(self, first: int) -> int:
        """The time before which transfers starting at or after ``first`` are
        alone on the bus (alone_during(first, x) for every x below it): the
        start of the first booking still in flight after first, NEVER if
        none, first itself if one is in flight at first."""
        until = NEVER
        for s, e in self._active:
            if e > first and s < until:
                until = s if s > first else first
        return until

    def transfer_series(self, segments: list[tuple[int, int, int, int]], nbytes: int, duration: int) -> None:
        """What transfer() does, called once per transfer of ``segments`` in
        order, for one agent alone on the bus: each segment (first, step,
        count, lead) is count transfers starting at first + i*step, each
        lasting ``duration`` and made from a scheduler step that began
        ``lead`` ns before it.  alone_during(first start, last start) holds,
        and each transfer ends by the next one's step start.  The same
        bookings, pruned at the same horizons.

        transfer() prunes, at a call whose calendar holds more than
        PRUNE_ABOVE, every booking that ended by that step's start.  Ours end
        before the next step starts, and the others end before the first
        start or start after the last one; so only the last pruning matters,
        and it keeps the others that end after the first start plus ours
        from that call on.  The calendar grows by one a call, so the
        prunings come at fixed intervals after the second."""
        active = self._active
        k = sum(seg[2] for seg in segments)
        first, _step, _count, lead = segments[0]
        length = len(active)
        if length > self.PRUNE_ABOVE:         # the first call prunes at its own horizon
            active = [iv for iv in active if iv[1] > first - lead]
            length = len(active)
        begin = 0                             # our first booking that is kept
        j = max(1, self.PRUNE_ABOVE + 1 - length)     # the next call that prunes
        if j < k:
            active = [iv for iv in active if iv[1] > first]
            period = max(1, self.PRUNE_ABOVE + 1 - len(active))
            begin = j + (k - 1 - j) // period * period    # the last one
        ours = []
        at = k
        for start, step, count, _lead in reversed(segments):   # ours from `begin` on, last first
            at -= count
            for i in range(count - 1, max(begin - at, 0) - 1, -1):
                ours.append((start + i * step, start + i * step + duration))
            if at <= begin:
                break
        ours.reverse()
        active.extend(ours)
        self._active = active
        self.bytes += k * nbytes
        self.busy_ns += k * duration

Task = Generator[None, None, None]
NEVER = 1 << 62


class EventQueue:
    """Timed callbacks in virtual time: kernel daemons' steps, BTE completions.
    Ordered by (time, sequence), so equal times run in scheduling order."""

    __slots__ = ("_heap", "_seq", "timeline")

    def __init__(self, timeline: Timeline):
        self._heap: list = []
        self._seq = 0
        self.timeline = timeline
        timeline.events = self

    def schedule(self, t: int, fn, *args) -> None:
        """Call fn(t, *args) at virtual time t."""
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn, args))

    def next_time(self) -> int:
        return self._heap[0][0] if self._heap else NEVER

    def run_one(self) -> None:
        t, _, fn, args = heapq.heappop(self._heap)
        tl = self.timeline
        if t > tl.horizon:
            tl.horizon = t
        if t >= tl.next_tick:
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


def _run_heap(heap, timeline, events) -> int:
    last = 0
    pop, push = heapq.heappop, heapq.heappush
    ev = events._heap if events is not None else None
    while heap:
        if ev and ev[0][0] <= heap[0][0]:
            events.run_one()        # a daemon step or a completion due before the next task step
            continue
        t, seq, cpu, task = pop(heap)
        if timeline is not None:
            timeline.horizon = t
            if t >= timeline.next_tick:
                timeline.on_tick(t)
            # This task's next step would again be the first to run if it
            # starts before: the next tick, and the next task (by time, then
            # start order).  Timed events are checked by Timeline.solo_bound.
            bound = timeline.next_tick
            if heap:
                other_t, other_seq = heap[0][0], heap[0][1]
                if seq < other_seq:
                    other_t += 1
                if other_t < bound:
                    bound = other_t
            timeline.solo_until = bound
        try:
            next(task)
        except StopIteration:
            last = max(last, cpu.time)
            continue
        finally:
            if timeline is not None:
                timeline.solo_until = 0
        push(heap, (cpu.time, seq, cpu, task))
    return last
