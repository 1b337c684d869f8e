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


def run(profile, kernel, threads, nbytes, cachelines, bzero, seed, backing, jobs=2):
    small = {"machine.node_memory": "256M" if profile == "x86-64" else "512M"}
    m = pft.prepare_machine(profile, seed, kernel, backing=backing, overrides=small)
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


@pytest.mark.parametrize("seed", range(40))
def test_transfer_series_is_k_transfers(seed):
    rng = random.Random(seed)
    step, duration, lead = rng.randint(50, 400), rng.randint(1, 40), rng.randint(0, 10)
    first = 10_000 + lead
    k = rng.randint(1, 60)
    last = first + (k - 1) * step
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
    rate = 4096 / duration
    for j in range(k):
        start = first + j * step
        a.timeline.horizon = start - lead
        end = a.transfer(start, 4096, rate)
        assert end == start + duration
    b.transfer_series(first, step, k, 4096, duration, lead)
    assert (a._active, a.bytes, a.busy_ns, a.shared) == (b._active, b.bytes, b.busy_ns, b.shared)


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
