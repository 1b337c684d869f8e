"""Each bulk operation is its single operation done n times: rmqueue of
``count`` blocks is __rmqueue count times, free_pages_bulk is
free_one_page page by page, a bus series is one transfer per page.  Each
comparison is of behaviour: free lists in order, counts, page state bytes,
lock hold time, and the answers the bus gives later requests."""

from __future__ import annotations

import random

import pytest

from helpers import tiny_machine
from vmemu.kernel.sched import NEVER, MemoryBus, Timeline
from vmemu.mm.fault_batch import pfn_runs
from vmemu.mm.gfp import GFP_KERNEL
from vmemu.mm.mmzone import NOT_ZEROED, PS_PCP
from vmemu.mm.page_alloc import free_blocks, free_one_page, rmqueue


def fragmented(seed: int, max_order: int = 8):
    """A small machine whose free lists a random alloc/free history fragmented."""
    m = tiny_machine(pages=1024, max_order=max_order, backing="none", seed=seed)
    r = random.Random(seed)
    cpu, alloc = m.cpus[0], m.alloc
    held = []
    for _ in range(300):
        if held and r.random() < 0.45:
            pfn, order = held.pop(r.randrange(len(held)))
            alloc.free_pages(cpu, pfn, order)
        else:
            order = r.choice([0, 0, 1, 2, 3])
            pfn = alloc.alloc_pages(cpu, order, GFP_KERNEL)
            if pfn is not None:
                held.append((pfn, order))
    return m


def lists(zone, kind=NOT_ZEROED):
    return [(list(a.free_list), a.nr_free) for a in zone.free_area[kind]]


@pytest.mark.parametrize("seed", range(12))
def test_rmqueue_of_count_blocks_is_rmqueue_count_times(seed):
    rng = random.Random(seed)
    order, count = rng.choice([0, 0, 1, 2]), rng.choice([1, 7, 31, 63, 200])
    out = []
    for bulk in (False, True):
        m = fragmented(seed)
        zone = m.zones[0]
        if bulk:
            taken, (splits,), runs = rmqueue(zone, order, NOT_ZEROED, count)
            pfns = [first + (i << order) for first, n in runs for i in range(n)]
        else:
            taken = splits = 0
            pfns = []
            for _ in range(count):
                got, (s,), runs = rmqueue(zone, order, NOT_ZEROED)
                if not got:
                    break
                taken, splits = taken + 1, splits + s
                pfns.append(runs[0][0])
        out.append((taken, splits, pfns, zone.free_pages, lists(zone)))
    assert out[0] == out[1]


def _batch_to_free(zone, rng) -> list[int]:
    """Fragment zone's NOT_ZEROED lists and return pages taken off them in
    an order free_pages_bulk might see: runs up and down, single pages."""
    taken = []
    for _ in range(rng.randint(100, zone.spanned_pages)):
        got, _splits, runs = rmqueue(zone, 0, NOT_ZEROED)
        if not got:
            break
        taken.append(runs[0][0])
    rng.shuffle(taken)
    back, keep = taken[:len(taken) // 3], sorted(taken[len(taken) // 3:])
    for pfn in back:                          # holes of every size
        free_one_page(zone, pfn, 0, NOT_ZEROED)
    pieces, i = [], 0
    while i < len(keep):
        n = rng.choice([1, 2, 3, 8, 31, 64, 200])
        piece = keep[i:i + n]
        pieces.append(piece[::-1] if rng.random() < 0.5 else piece)
        i += n
    rng.shuffle(pieces)
    batch = [pfn for piece in pieces for pfn in piece][:rng.choice([1, 31, 63, len(keep)])]
    for pfn in batch:
        zone.page_state[pfn - zone.zone_start_pfn] = PS_PCP
    return batch


@pytest.mark.parametrize("seed", range(30))
def test_free_pages_bulk_is_free_one_page_per_page(seed):
    """free_pages_bulk (whole aligned blocks of a run at a time) leaves the
    lists, their order, the counts, the page states and the lock's hold as
    free_one_page per page does."""
    out = []
    for bulk in (False, True):
        m = tiny_machine(pages=1024, max_order=random.Random(seed).choice([4, 8, 11]), backing="none")
        cpu, zone, alloc = m.cpus[0], m.zones[0], m.alloc
        batch = _batch_to_free(zone, random.Random(seed))
        before = cpu.time
        if bulk:
            pcp = zone.pcp(cpu.id)[0]
            pcp.list.extend(batch)
            alloc.free_pages_bulk(zone, cpu, pcp, len(batch))
        else:
            merges = 0
            for pfn in batch:
                zone.page_state[pfn - zone.zone_start_pfn] = 0
                merges += free_one_page(zone, pfn, 0, NOT_ZEROED)[1]
            zone.lock.hold(cpu, alloc.zone_lock_ns + len(batch) * alloc.free_block_ns
                           + merges * alloc.coalesce_step_ns)
        out.append((cpu.time - before, zone.free_pages, bytes(zone.page_state[:1024]), lists(zone)))
    assert out[0] == out[1]


def pcp_state(zone, pcp) -> tuple:
    return (list(pcp.list), zone.free_pages, bytes(zone.page_state[:zone.spanned_pages]), lists(zone))


@pytest.mark.parametrize("seed", range(12))
def test_refills_in_a_row_are_rmqueue_bulk_each_time(seed):
    """rmqueue_bulk with ``refills`` takes what as many refills one after
    another take, each with its own pages and zone lock hold (the kind
    running out on the way included)."""
    rng = random.Random(seed)
    refills, batch = rng.choice([2, 3, 8, 40]), rng.choice([1, 3, 7, 31])
    out = []
    for bulk in (False, True):
        m = fragmented(seed)
        zone, alloc = m.zones[0], m.alloc
        pcp = zone.pcp(0)[0]
        pcp.batch = batch
        if bulk:
            got, runs = alloc.rmqueue_bulk(zone, pcp, NOT_ZEROED, refills)
        else:
            got, runs = [], []
            for _ in range(refills):
                one, more = alloc.rmqueue_bulk(zone, pcp, NOT_ZEROED)
                got, runs = got + one, runs + more
        runs = [pfn for first, n in runs for pfn in range(first, first + n)]
        out.append((got, runs, pcp_state(zone, pcp)))
    assert out[0] == out[1]


@pytest.mark.parametrize("seed", range(12))
def test_drains_in_a_row_are_free_pages_bulk_each_time(seed):
    """drain_pcp with ``drains`` gives back what as many free_pages_bulk
    calls one after another do, each with its own hold and highest order."""
    rng = random.Random(seed)
    count, drains, max_order = rng.choice([1, 7, 31]), rng.choice([1, 2, 5, 30]), rng.choice([4, 8, 11])
    out = []
    for bulk in (False, True):
        m = tiny_machine(pages=1024, max_order=max_order, backing="none")
        zone, alloc = m.zones[0], m.alloc
        pcp = zone.pcp(0)[0]
        pcp.list.extend(_batch_to_free(zone, random.Random(seed)))
        got = list(alloc.drain_pcp(zone, pcp, count, drains)) if bulk else \
            [next(alloc.drain_pcp(zone, pcp, count)) for _ in range(drains)]
        out.append((got, pcp_state(zone, pcp)))
    assert out[0] == out[1]


def test_free_blocks():
    assert free_blocks([7, 6, 5, 4, 3], 0, 10) == [(4, 2), (3, 0)]
    assert free_blocks([3, 4, 5, 6, 7, 8], 0, 10) == [(3, 0), (4, 2), (8, 0)]
    assert free_blocks([100, 101], 100, 10) == [(0, 1)]
    assert free_blocks(list(range(15, -1, -1)), 0, 2) == [(12, 2), (8, 2), (4, 2), (0, 2)]
    assert free_blocks([5, 9, 8], 0, 10) == [(5, 0), (9, 0), (8, 0)]


def test_pfn_runs():
    assert pfn_runs([5, 6, 7, 3, 2, 9]) == [(5, 3), (2, 2), (9, 1)]
    assert pfn_runs([]) == []
    assert pfn_runs([4]) == [(4, 1)]


# -- the memory bus ---------------------------------------------------------------

def answers(bus: MemoryBus, times) -> list:
    """What the bus tells later requests: transfers in flight, and how long that number holds."""
    return [(bus.in_flight(t), bus.steady(t)) for t in times]


@pytest.mark.parametrize("seed", range(60))
def test_a_transfer_series_is_one_transfer_per_page(seed):
    """Series of equal transfers with single ones in between (a fault
    series' refills), beside other agents' transfers that end before or
    start after them, book what one transfer() per transfer books."""
    rng = random.Random(seed)
    duration = rng.randint(1, 40)
    segments, calls = [], []                  # calls: (start, its step's start)
    t = 10_000
    for _ in range(rng.choice([1, 1, 2, 5, 30])):
        step, lead = rng.randint(duration + 11, 400), rng.randint(0, 10)
        count = rng.choice([1, 1, 2, rng.randint(1, 60)])
        segments.append((t + lead, step if count > 1 else rng.choice([0, step]), count))
        calls += [(t + lead + i * step, t + i * step) for i in range(count)]
        t += count * step + rng.randint(0, 50)
    first, last = calls[0][0], calls[-1][0]
    others = []
    for _ in range(rng.randint(0, 14)):
        if rng.random() < 0.5:
            e = rng.randint(first - 500, first)
            others.append((e - rng.randint(1, 300), e))
        else:
            s = rng.randint(last + 1, last + 5000)
            others.append((s, s + rng.randint(1, 300)))
    rng.shuffle(others)
    a, b = MemoryBus(1e9, Timeline()), MemoryBus(1e9, Timeline())
    for bus in (a, b):
        bus.timeline.running = True           # requests out of time order: nothing is pruned
        for s, e in others:
            bus.transfer(s, 4096 * (e - s), 4096, "task")      # 4096 bytes/ns: lasts e - s
    assert a.steady(first)[1] > last
    rate = 4096 / duration
    for start, _step_start in calls:
        assert a.transfer(start, 4096, rate, "task") == start + duration
    assert b.transfer_series(segments, 4096, rate, "task") == duration
    probe = sorted({x for s, *_ in calls for x in (s - 1, s, s + duration - 1, s + duration)} |
                   {x for s, e in others for x in (s - 1, s, e - 1, e)})
    assert answers(a, probe) == answers(b, probe)
    assert (a.bytes, a.busy_ns, a.shared) == (b.bytes, b.busy_ns, b.shared)


def test_steady_and_in_flight():
    bus = MemoryBus(1.0, Timeline())
    assert bus.steady(100) == (0, NEVER)
    for start, end in ((10, 50), (200, 300), (150, 160)):
        bus.transfer(start, end - start, 1.0, "task")
    assert bus.steady(100) == (0, 150)
    assert bus.steady(40) == (1, 50)          # (10, 50) is in flight at 40
    assert bus.steady(50) == (0, 150)
    assert bus.steady(155) == (1, 160)
    assert [bus.in_flight(t) for t in (9, 10, 49, 50, 155, 250)] == [0, 1, 1, 0, 1, 1]
    bus.transfer_series([(400, 100, 5)], 10, 1.0, "task")     # 400-410, 500-510, ... 800-810
    assert [bus.in_flight(t) for t in (405, 410, 505, 799, 805, 810)] == [1, 0, 1, 0, 1, 0]
    assert bus.steady(420) == (0, 500) and bus.steady(505) == (1, 510) and bus.steady(811) == (0, NEVER)


@pytest.mark.parametrize("seed", range(30))
def test_a_transfer_series_on_a_shared_bus_is_one_transfer_per_page(seed):
    """A series of clears while other agents' transfers are in flight
    (kscrubd clearing a block on the same node) books what one transfer()
    per page books, as long as the number in flight stays what steady
    says for the series' first start."""
    rng = random.Random(seed)
    a, b = MemoryBus(8.0, Timeline()), MemoryBus(8.0, Timeline())
    others = [(0, rng.randint(20_000, 90_000)) for _ in range(rng.randint(1, 3))]
    others.append((rng.randint(50_000, 95_000), 200_000))      # one that starts during the series
    for bus in (a, b):
        bus.timeline.running = True
        for s, e in others:
            bus.transfer(s, 8 * (e - s), 8.0, "kscrubd")
    first, rate = rng.randint(100, 1000), rng.choice([1.0, 2.0, 6.0])
    sharing, until = a.steady(first)
    step = a.duration(4096, rate, sharing) + rng.randint(0, 300)      # each clear done before the next
    count = max(1, (until - 1 - first) // step + 1)
    assert sharing >= 1 and first + (count - 1) * step < until
    ends = [a.transfer(first + i * step, 4096, rate, "task") - (first + i * step) for i in range(count)]
    assert len(set(ends)) == 1
    assert b.transfer_series([(first, step, count)], 4096, rate, "task", sharing) == ends[0]
    probe = sorted({first + i * step + d for i in range(count) for d in (-1, 0, ends[0] - 1, ends[0])} |
                   {x for s, e in others for x in (s - 1, s, e - 1, e)})
    assert answers(a, probe) == answers(b, probe)
    assert (a.bytes, a.busy_ns, a.shared) == (b.bytes, b.busy_ns, b.shared)
