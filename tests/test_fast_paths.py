"""The host-side fast paths give exactly what the step-by-step paths give.

FaultPath.fault_run (faults batched while a thread runs alone) and
FaultPath._exit_run (exit a run of pages at a time) are switched off and the
same jobs are run again: every observable figure must be equal.  The golden
file (test_golden_virtual_time.py) pins fixed runs; these compare random
ones.
"""

from __future__ import annotations

import random

import pytest

from make_golden import observe
from vmemu import pft
from vmemu.kernel.sched import MemoryBus, Timeline
from vmemu.mm.fault import FaultPath, pfn_runs


def run(profile, kernel, threads, nbytes, cachelines, bzero, seed, backing, jobs=2, memory=None,
        scrub=None, prezeroed=False):
    small = {"machine.node_memory": memory or ("256M" if profile == "x86-64" else "512M")}
    m = pft.prepare_machine(profile, seed, kernel, backing=backing, overrides=small, scrub=scrub,
                            prezeroed=prezeroed)
    try:
        results = [pft.run_job(m, nbytes >> j, threads, 1, cachelines, bzero=bzero) for j in range(jobs)]
        m.run_until_idle()
        return observe(m, results)
    finally:
        m.close()


@pytest.mark.parametrize("seed", range(8))
def test_fast_paths_change_nothing(monkeypatch, seed):
    rng = random.Random(seed)
    profile = rng.choice(["x86-64", "altix-8"])
    backing = "real" if profile == "x86-64" else rng.choice(["none", "none", "real"])
    case = dict(profile=profile, kernel=rng.choice(["stock", "prezero"]),
                threads=rng.choice([1, 1, 2] if profile == "x86-64" else [1, 2, 3, 8]),
                nbytes=rng.choice([4, 8, 16]) << 20, cachelines=rng.randint(0, 3),
                bzero=rng.random() < 0.3, seed=seed, backing=backing)
    fast = run(**case)
    monkeypatch.setattr(FaultPath, "fault_run", lambda *a, **k: 0)
    monkeypatch.setattr(FaultPath, "_exit_run", lambda *a, **k: 0)
    slow = run(**case)
    assert fast == slow, case


@pytest.mark.parametrize("seed", range(16))
def test_fault_series_changes_nothing(monkeypatch, seed):
    """Jobs whose series of faults meet every way a series ends: the zone
    running down to pages_low (the next zone serves), the zeroed pages
    running out (the hot list serves), scrubd's steps in between, the
    load-average tick, a second thread."""
    rng = random.Random(1000 + seed)
    profile = rng.choice(["x86-64", "x86-64", "altix-8"])
    memory = "64M" if profile == "x86-64" else "256M"
    case = dict(profile=profile, kernel=rng.choice(["stock", "prezero", "prezero"]),
                threads=rng.choice([1, 1, 1, 2]), nbytes=(rng.randint(8, 60) << 20) // (1 + (profile != "x86-64")),
                cachelines=rng.randint(0, 2), bzero=rng.random() < 0.2, seed=seed,
                backing="real" if profile == "x86-64" else "none", memory=memory,
                scrub={"scrub_start": rng.choice([0, 3, 6, 9]), "scrub_stop": rng.choice([0, 2])},
                prezeroed=rng.random() < 0.5)
    if seed % 4 == 0:       # the second job runs out of the zeroed pages the first left
        case.update(profile="x86-64", backing="real", memory="64M", kernel="stock", threads=1,
                    nbytes=rng.randint(36, 60) << 20, prezeroed=True)
    fast = run(**case)
    monkeypatch.setattr(FaultPath, "fault_run", lambda *a, **k: 0)
    slow = run(**case)
    assert fast == slow, case


@pytest.mark.parametrize("seed", range(60))
def test_transfer_series_is_k_transfers(seed):
    """Segments of equal transfers with single ones in between (the fault
    series' refills) book what one transfer() call per transfer books."""
    rng = random.Random(seed)
    duration = rng.randint(1, 40)
    segments, calls = [], []                  # calls: (start, its step's start)
    t = 10_000
    for _ in range(rng.choice([1, 1, 2, 5, 30])):
        step, lead = rng.randint(duration + 11, 400), rng.randint(0, 10)
        count = rng.choice([1, 1, 2, rng.randint(1, 60)])
        segments.append((t + lead, step if count > 1 else rng.choice([0, step]), count, lead))
        calls += [(t + lead + i * step, t + i * step) for i in range(count)]
        t += count * step + rng.randint(0, 50)
    first, last = calls[0][0], calls[-1][0]
    # bookings of other agents: ended before first, or starting after the last transfer
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
        bus._active = list(others)
        bus.timeline.running = True
    assert a.alone_during(first, last)
    assert a.alone_until(first) > last
    rate = 4096 / duration
    for start, step_start in calls:
        a.timeline.horizon = step_start
        end = a.transfer(start, 4096, rate)
        assert end == start + duration
    b.transfer_series(segments, 4096, duration)
    assert (a._active, a.bytes, a.busy_ns, a.shared) == (b._active, b.bytes, b.busy_ns, b.shared)


def test_alone_until():
    bus = MemoryBus(1.0, Timeline())
    assert bus.alone_until(100) == 1 << 62
    bus._active = [(10, 50), (200, 300), (150, 160)]
    assert bus.alone_until(100) == 150
    assert bus.alone_until(40) == 40          # (10, 50) is in flight at 40
    assert bus.alone_until(50) == 150


def test_pfn_runs():
    assert pfn_runs([5, 6, 7, 3, 2, 9]) == [(5, 3), (2, 2), (9, 1)]
    assert pfn_runs([]) == []
    assert pfn_runs([4]) == [(4, 1)]


def _reference_refill(zone, pcp, kind, alloc):
    """2.6.10's rmqueue_bulk: rmqueue(zone, 0, kind) once per page."""
    from vmemu.mm.page_alloc import rmqueue
    from vmemu.mm.mmzone import PS_PCP
    hold, taken = alloc.zone_lock_ns, 0
    for _ in range(pcp.batch):
        got = rmqueue(zone, 0, kind)
        if got is None:
            break
        pfn, splits = got
        pcp.list.appendleft(pfn)
        zone.page_state[pfn - zone.zone_start_pfn] = PS_PCP
        hold += alloc.rmqueue_block_ns + splits * alloc.coalesce_step_ns
        taken += 1
    return hold, taken


@pytest.mark.parametrize("seed", range(12))
def test_rmqueue_bulk_is_rmqueue_per_page(seed):
    from helpers import tiny_machine
    from vmemu.mm.gfp import GFP_KERNEL
    from vmemu.mm.mmzone import NOT_ZEROED
    batch = random.Random(seed).choice([1, 7, 31, 63])
    lists = []
    for which in ("reference", "bulk"):
        m = tiny_machine(pages=1024, max_order=8, backing="none", seed=seed)
        r = random.Random(seed)
        cpu, zone, alloc = m.cpus[0], m.zones[0], m.alloc
        held = []
        for _ in range(300):                  # fragment the free lists
            if held and r.random() < 0.45:
                pfn, order = held.pop(r.randrange(len(held)))
                alloc.free_pages(cpu, pfn, order)
            else:
                order = r.choice([0, 0, 1, 2, 3])
                pfn = alloc.alloc_pages(cpu, order, GFP_KERNEL)
                if pfn is not None:
                    held.append((pfn, order))
        pcp = zone.pcp(cpu.id)[0]
        pcp.batch = batch
        before = cpu.time
        if which == "reference":
            hold, taken = _reference_refill(zone, pcp, NOT_ZEROED, alloc)
            zone.lock.hold(cpu, hold)
        else:
            taken = alloc.rmqueue_bulk(zone, cpu, pcp, NOT_ZEROED)
        lists.append((taken, cpu.time - before, list(pcp.list), zone.free_pages,
                      [(list(a.free_list), a.nr_free) for a in zone.free_area[NOT_ZEROED]],
                      bytes(zone.page_state[:1024])))
    assert lists[0] == lists[1]


def _batch_to_free(zone, rng) -> list[int]:
    """Fragment zone's NOT_ZEROED lists and return pages taken off them in
    an order free_pages_bulk might see: runs up and down, single pages."""
    from vmemu.mm.mmzone import NOT_ZEROED, PS_PCP
    from vmemu.mm.page_alloc import free_one_page, rmqueue
    taken = []
    for _ in range(rng.randint(100, zone.spanned_pages)):
        got = rmqueue(zone, 0, NOT_ZEROED)
        if got is None:
            break
        taken.append(got[0])
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
def test_free_listed_pages_is_free_one_page_per_page(seed):
    """free_listed_pages (whole aligned blocks of a run at a time) leaves the
    lists, their order, the counts, the page states and the lock's hold as
    free_one_page per page does."""
    from helpers import tiny_machine
    from vmemu.mm.mmzone import NOT_ZEROED
    from vmemu.mm.page_alloc import free_one_page
    out = []
    for which in ("reference", "blocks"):
        m = tiny_machine(pages=1024, max_order=random.Random(seed).choice([4, 8, 11]), backing="none")
        cpu, zone, alloc = m.cpus[0], m.zones[0], m.alloc
        batch = _batch_to_free(zone, random.Random(seed))
        before = cpu.time
        if which == "reference":
            merges = 0
            for pfn in batch:
                zone.page_state[pfn - zone.zone_start_pfn] = 0
                merges += free_one_page(zone, pfn, 0, NOT_ZEROED)[1]
            zone.lock.hold(cpu, alloc.zone_lock_ns + len(batch) * alloc.free_block_ns
                           + merges * alloc.coalesce_step_ns)
        else:
            alloc.free_listed_pages(zone, cpu, batch)
        out.append((cpu.time - before, zone.free_pages, bytes(zone.page_state[:1024]),
                    [(list(a.free_list), a.nr_free) for a in zone.free_area[NOT_ZEROED]]))
    assert out[0] == out[1]


def test_free_blocks():
    from vmemu.mm.page_alloc import free_blocks
    assert free_blocks([7, 6, 5, 4, 3], 0, 10) == [(4, 2), (3, 0)]
    assert free_blocks([3, 4, 5, 6, 7, 8], 0, 10) == [(3, 0), (4, 2), (8, 0)]
    assert free_blocks([100, 101], 100, 10) == [(0, 1)]
    assert free_blocks(list(range(15, -1, -1)), 0, 2) == [(12, 2), (8, 2), (4, 2), (0, 2)]
    assert free_blocks([5, 9, 8], 0, 10) == [(5, 0), (9, 0), (8, 0)]
