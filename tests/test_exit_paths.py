"""Task exit a chunk at a time, and the common-case fault with its counters
and real memory work left for later, give exactly what the general paths give.

FaultPath._exit_run frees a whole chunk of an mm's pages in one pass, the
pages of several zones interleaved as several threads faulted them.  Each
case builds an mm on a small NUMA machine, exits it once with the chunk path
and once with it switched off (the page-by-page loop of exit_mmap, which
calls free_pages for every page), and compares everything observable:
times, counters, free lists in order, per-CPU lists, page state bytes, lock
calendars, scrubd's wake-ups and real memory.  Broken mms (a page twice, a
page not allocated, a pfn outside every zone) must raise the same error
after the same frees.

FaultPath._alloc_one (the order-0 __GFP_ZERO fault's common case) leaves
the counters, the clear and the zero check for later: FaultPath.finish_deferred
adds the counters and does the memory in sorted runs.  Random pft jobs are
run with it and with it switched off (every fault through alloc_pages_how,
counted and its real memory done at once); zeroed free pages dirtied on
purpose must be caught, counted, logged and cleared the same either way.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from helpers import tiny_machine
from make_golden import observe
from vmemu import pft
from vmemu.mm.fail_page_alloc import FailPageAlloc
from vmemu.mm.fault import GFP_ANON, FaultPath, MMStruct
from vmemu.mm.mmzone import ZEROED
from vmemu.mm.page_alloc import PageAllocError


def build(seed: int):
    """A 3-node machine and an mm whose pages several CPUs faulted, in random order."""
    rng = random.Random(seed)
    m = tiny_machine(pages=rng.choice([256, 1024]), max_order=6, nodes=3, cpus_per_node=2,
                     seed=seed, backing="real")
    m.set_sysctl("scrub_start", rng.choice([0, 2, 6]))   # frees that coalesce may wake scrubd
    fault = FaultPath(m.alloc, m.cost, m.cache_line)
    mm = MMStruct("t", m.timeline, m.cost, m.distance)
    alloc = m.alloc
    # some pages already on the leader's hot lists, from earlier frees
    leader = rng.choice(m.cpus)
    for _ in range(rng.randint(0, 40)):
        pfn = alloc.alloc_pages(rng.choice(m.cpus), 0, GFP_ANON)
        if pfn is not None:
            alloc.free_pages(leader, pfn, 0)
    # threads fault in turn, runs of a few pages each
    threads = rng.sample(m.cpus, rng.randint(1, len(m.cpus)))
    for _ in range(rng.randint(20, 400)):
        cpu = rng.choice(threads)
        for _ in range(rng.choice([1, 1, 2, 5])):
            pfn = alloc.alloc_pages(cpu, 0, GFP_ANON)
            if pfn is not None:
                mm.pages.append(pfn)
    mm.nodes_run.update(c.node for c in threads)
    # hot lists of every fill and size, so that bulk frees fall anywhere
    for zone in m.zones:
        for cpu in m.cpus:
            hot = zone.pcp(cpu.id)[0]
            hot.high = rng.randint(1, 24)
            hot.batch = rng.randint(1, hot.high)
    leader.time = max(c.time for c in m.cpus) + rng.randint(0, 5000)
    return m, fault, mm, leader, rng


def break_mm(m, mm, rng, defect: str) -> None:
    pages = mm.pages
    at = rng.randrange(len(pages) + 1)
    if defect == "twice":
        pages.insert(at, pages[rng.randrange(len(pages))])
    elif defect == "not allocated":           # free, or on a per-CPU list
        free = [z.zone_start_pfn + i for z in m.zones for i in range(z.spanned_pages) if z.page_state[i] != 1]
        pages.insert(at, rng.choice(free))
    elif defect == "outside":
        pages.insert(at, m.zones[-1].end_pfn + 5)


def state(m, fault, mm, leader, error) -> dict:
    out = observe(m, [])
    out["error"] = error
    out["left"] = list(mm.pages)
    out["leader"] = (leader.time, leader.system_ns)
    out["events"] = [(t, seq) for t, seq, _fn, _args in sorted(m.events._heap, key=lambda e: e[:2])]
    out["free_lists"] = [[list(a.free_list) for kind in z.free_area for a in kind] for z in m.zones]
    out["page_state"] = [hashlib.sha256(z.page_state[:]).hexdigest() for z in m.zones]
    return out


def exit_all(seed: int, chunked: bool, defect: str | None, monkeypatch) -> dict:
    with monkeypatch.context() as mp:
        if not chunked:
            mp.setattr(FaultPath, "_exit_run", lambda *a, **k: 0)
        m, fault, mm, leader, rng = build(seed)
        try:
            if defect:
                break_mm(m, mm, rng, defect)
            error = None
            try:
                while mm.pages:
                    fault.exit_mmap(leader, mm, rng.choice([1, 3, 64, 256, None]))
            except PageAllocError as e:
                error = str(e)
            return state(m, fault, mm, leader, error)
        finally:
            m.close()


@pytest.mark.parametrize("seed", range(24))
def test_chunked_exit_is_page_by_page(monkeypatch, seed):
    chunks = []
    exit_run = FaultPath._exit_run

    def counted(self, *args):
        chunks.append(exit_run(self, *args))
        return chunks[-1]
    monkeypatch.setattr(FaultPath, "_exit_run", counted)
    fast = exit_all(seed, True, None, monkeypatch)
    assert chunks and all(chunks)             # every chunk took the chunk path
    slow = exit_all(seed, False, None, monkeypatch)
    assert fast["error"] is None and not fast["left"]
    assert fast == slow


@pytest.mark.parametrize("defect", ["twice", "not allocated", "outside"])
@pytest.mark.parametrize("seed", range(4))
def test_broken_mm_raises_the_same(monkeypatch, seed, defect):
    fast = exit_all(seed, True, defect, monkeypatch)
    slow = exit_all(seed, False, defect, monkeypatch)
    assert fast["error"] is not None
    assert fast == slow


# -- the fault path --------------------------------------------------------------

def fault_job(case: dict, fast: bool, monkeypatch, caplog) -> dict:
    """Jobs on a small machine: every observable figure, and the zero-check log lines."""
    rng = random.Random(case["seed"])
    small = {"machine.node_memory": "256M" if case["profile"] == "x86-64" else "512M"}
    with monkeypatch.context() as mp:
        if not fast:
            mp.setattr(FaultPath, "_alloc_one", lambda *a, **k: None)
        m = pft.prepare_machine(case["profile"], case["seed"], case["kernel"], backing=case["backing"],
                                overrides=small)
        try:
            if case["fail"] is not None:
                fpa = m.alloc.fail_page_alloc = FailPageAlloc(rng=random.Random(case["seed"]))
                fpa.probability, fpa.min_order, fpa.times = case["fail"], rng.choice([0, 1]), -1
            for _ in range(case["dirty"]):        # a zeroed free block that is not zero
                zone = rng.choice(m.zones)
                blocks = [(pfn, o) for o, a in enumerate(zone.free_area[ZEROED]) for pfn in a.free_list]
                if blocks:
                    pfn, order = rng.choice(blocks)
                    m.memory.fill(pfn + rng.randrange(1 << order), 1, 0x5A)
            caplog.clear()
            results = []
            for j in range(2):
                try:
                    results.append(pft.run_job(m, case["nbytes"] >> j, case["threads"], 1, case["cachelines"],
                                               bzero=case["bzero"]))
                except pft.JobError as e:
                    results.append(str(e))
            m.run_until_idle()
            out = observe(m, [r for r in results if not isinstance(r, str)])
            out["errors"] = [r for r in results if isinstance(r, str)]
            out["cpu_stat"] = m.alloc.cpu_stat      # per CPU: who faulted a bad page
            out["fail_calls"] = None if case["fail"] is None else (fpa.calls, fpa.failures)
            out["log"] = sorted(r.getMessage() for r in caplog.records if "ZERO GUARANTEE" in r.getMessage())
            return out
        finally:
            m.close()


def fault_case(seed: int) -> dict:
    rng = random.Random(seed)
    profile = rng.choice(["x86-64", "altix-8"])
    return dict(profile=profile, seed=seed, kernel=rng.choice(["stock", "prezero"]),
                backing=rng.choice(["real", "real", "none"]),
                threads=rng.choice([1, 2] if profile == "x86-64" else [1, 2, 3, 4, 8]),
                nbytes=rng.choice([4, 8, 16, 64]) << 20, cachelines=rng.randint(0, 3),
                bzero=rng.random() < 0.3, fail=rng.choice([None, None, 0, 30]),
                dirty=rng.choice([0, 0, 3, 40]))


@pytest.mark.parametrize("seed", range(16))
def test_fault_common_case_changes_nothing(monkeypatch, caplog, seed):
    case = fault_case(seed)
    fast = fault_job(case, True, monkeypatch, caplog)
    slow = fault_job(case, False, monkeypatch, caplog)
    assert fast == slow, case


def test_dirty_zeroed_pages_are_caught_when_deferred(monkeypatch, caplog):
    case = dict(profile="altix-8", seed=3, kernel="prezero", backing="real", threads=4, nbytes=256 << 20,
                cachelines=2, bzero=False, fail=None, dirty=0)
    clean = fault_job(case, True, monkeypatch, caplog)
    assert clean["snapshot"]["counters"]["prezero_verify_fail"] == 0
    case["dirty"] = 300
    fast = fault_job(case, True, monkeypatch, caplog)
    slow = fault_job(case, False, monkeypatch, caplog)
    assert fast["snapshot"]["counters"]["prezero_verify_fail"] > 0
    assert len(fast["log"]) == fast["snapshot"]["counters"]["prezero_verify_fail"]
    assert fast == slow


def test_a_watched_verify_zero_sees_every_fault():
    """benchmarks/zero_guarantee.py wraps verify_zero to read every page handed
    out for __GFP_ZERO: then no fault leaves its check for later."""
    m = pft.prepare_machine("altix-8", 1, "prezero", backing="real", overrides={"machine.node_memory": "256M"})
    try:
        seen = []
        verify = m.alloc.verify_zero

        def watch(cpu, zone, pfn, order):
            seen.append(pfn)
            verify(cpu, zone, pfn, order)
        m.alloc.verify_zero = watch
        pft.run_job(m, 32 << 20, 3, 1, 1)
        assert len(seen) == m.counters()["pgfault"] == (32 << 20) // m.page_size
    finally:
        m.close()
