"""The host-side shortcuts (vmemu.shortcuts: fault series, solo steps,
deferred memory, exit in runs, the memory thread) change nothing the model
computes.  The same random jobs run with every shortcut on and with the one
switch off; everything observable must be equal: rows, counters (per CPU),
free lists and per-CPU lists, virtual times, scrubd, BTE and bus totals,
fault injection's calls, the zero-check log, and a digest of real memory.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from helpers import observe, pft_observe, tiny_machine
from vmemu import pft, shortcuts
from vmemu.mm.fail_page_alloc import FailPageAlloc
from vmemu.mm.fault import GFP_ANON, FaultPath, MMStruct
from vmemu.mm.mmzone import ZEROED
from vmemu.mm.page_alloc import PageAllocError


def both_ways(fn, *args):
    """fn(*args) with the shortcuts on, then with them off."""
    on = fn(*args)
    with shortcuts.off():
        off = fn(*args)
    return on, off


# -- whole pft jobs ---------------------------------------------------------------

def series_case(seed: int) -> dict:
    """Jobs whose series of faults meet every way a series ends: the zone
    running down to pages_low (the next zone serves), the zeroed pages
    running out (the hot list serves), scrubd's steps in between, the
    load-average tick, a second thread."""
    rng = random.Random(1000 + seed)
    profile = rng.choice(["x86-64", "x86-64", "altix-8"])
    case = dict(profile=profile, kernel=rng.choice(["stock", "prezero", "prezero"]),
                threads=rng.choice([1, 1, 1, 2] if profile == "x86-64" else [1, 2, 3, 8]),
                nbytes=(rng.randint(8, 60) << 20) // (1 + (profile != "x86-64")),
                cachelines=rng.randint(0, 3), bzero=rng.random() < 0.2, seed=seed,
                backing="real" if profile == "x86-64" else rng.choice(["none", "real"]),
                memory="64M" if profile == "x86-64" else "256M",
                scrub={"scrub_start": rng.choice([0, 3, 6, 9]), "scrub_stop": rng.choice([0, 2])},
                prezeroed=rng.random() < 0.5)
    if seed % 4 == 0:       # the second job runs out of the zeroed pages the first left
        case.update(profile="x86-64", backing="real", memory="64M", kernel="stock", threads=1,
                    nbytes=rng.randint(36, 60) << 20, prezeroed=True)
    return case


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(16))
def test_fault_jobs_are_the_same_with_shortcuts_off(seed):
    case = series_case(seed)
    on, off = both_ways(lambda: pft_observe(**case))
    assert on == off, case


def faulty_job(case: dict, caplog) -> dict:
    """Jobs with fault injection and zeroed free pages dirtied on purpose:
    everything observable, who counted a dirty page, and the log lines."""
    rng = random.Random(case["seed"])
    small = {"machine.node_memory": "256M" if case["profile"] == "x86-64" else "512M"}
    m = pft.prepare_machine(case["profile"], case["seed"], case["kernel"], backing=case["backing"],
                            overrides=small)
    try:
        fpa = None
        if case["fail"] is not None:
            fpa = m.alloc.fail_page_alloc = FailPageAlloc(rng=random.Random(case["seed"]))
            fpa.probability, fpa.min_order, fpa.times = case["fail"], rng.choice([0, 1]), -1
            fpa.ignore_gfp_highmem = rng.random() < 0.5
        for _ in range(case["dirty"]):        # a zeroed free block that is not zero
            zone = rng.choice(m.zones)
            blocks = [(pfn, o) for o, a in enumerate(zone.free_area[ZEROED]) for pfn in a.free_list]
            if blocks:
                pfn, order = rng.choice(blocks)
                m.memory.fill(pfn + rng.randrange(1 << order), 1, 0x5A)
        caplog.clear()
        results, errors = [], []
        for j in range(2):
            try:
                results.append(pft.run_job(m, case["nbytes"] >> j, case["threads"], 1, case["cachelines"],
                                           bzero=case["bzero"]))
            except pft.JobError as e:
                errors.append(str(e))
        m.run_until_idle()
        out = observe(m, results)
        out.update(errors=errors, cpu_stat=m.alloc.cpu_stat,
                   fail_calls=None if fpa is None else (fpa.calls, fpa.failures),
                   log=sorted(r.getMessage() for r in caplog.records if "ZERO GUARANTEE" in r.getMessage()))
        return out
    finally:
        m.close()


def faulty_case(seed: int) -> dict:
    rng = random.Random(seed)
    profile = rng.choice(["x86-64", "altix-8"])
    return dict(profile=profile, seed=seed, kernel=rng.choice(["stock", "prezero"]),
                backing=rng.choice(["real", "real", "none"]),
                threads=rng.choice([1, 2] if profile == "x86-64" else [1, 2, 3, 4, 8]),
                nbytes=rng.choice([4, 8, 16, 64]) << 20, cachelines=rng.randint(0, 3),
                bzero=rng.random() < 0.3, fail=rng.choice([None, None, 0, 30]),
                dirty=rng.choice([0, 0, 3, 40]))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12))
def test_fault_injection_and_dirty_pages_are_the_same_with_shortcuts_off(caplog, seed):
    case = faulty_case(seed)
    on, off = both_ways(faulty_job, case, caplog)
    assert on == off, case


@pytest.mark.slow
def test_dirty_zeroed_pages_are_caught_either_way(caplog):
    case = dict(profile="altix-8", seed=3, kernel="prezero", backing="real", threads=4, nbytes=256 << 20,
                cachelines=2, bzero=False, fail=None, dirty=0)
    assert faulty_job(case, caplog)["snapshot"]["counters"]["prezero_verify_fail"] == 0
    case["dirty"] = 300
    on, off = both_ways(faulty_job, case, caplog)
    assert on["snapshot"]["counters"]["prezero_verify_fail"] > 0
    assert len(on["log"]) == on["snapshot"]["counters"]["prezero_verify_fail"]
    assert on == off


# -- exit ----------------------------------------------------------------------------

def build_mm(seed: int):
    """A 3-node machine and an mm whose pages several CPUs faulted, in random order."""
    rng = random.Random(seed)
    m = tiny_machine(pages=rng.choice([256, 1024]), max_order=6, nodes=3, cpus_per_node=2,
                     seed=seed, backing="real")
    m.set_sysctl("scrub_start", rng.choice([0, 2, 6]))   # frees that coalesce may wake scrubd
    mm = MMStruct("t", m.timeline, m.memsys.transfer)
    alloc = m.alloc
    leader = rng.choice(m.cpus)
    for _ in range(rng.randint(0, 40)):                  # pages on the leader's hot lists already
        pfn = alloc.alloc_pages(rng.choice(m.cpus), 0, GFP_ANON)
        if pfn is not None:
            alloc.free_pages(leader, pfn, 0)
    threads = rng.sample(m.cpus, rng.randint(1, len(m.cpus)))
    for _ in range(rng.randint(20, 400)):                # threads fault in turn, a few pages each
        cpu = rng.choice(threads)
        for _ in range(rng.choice([1, 1, 2, 5])):
            pfn = alloc.alloc_pages(cpu, 0, GFP_ANON)
            if pfn is not None:
                mm.pages.append(pfn)
    mm.nodes_run.update(c.node for c in threads)
    for zone in m.zones:                                 # hot lists of every fill and size
        for cpu in m.cpus:
            hot = zone.pcp(cpu.id)[0]
            hot.high = rng.randint(1, 24)
            hot.batch = rng.randint(1, hot.high)
    leader.time = max(c.time for c in m.cpus) + rng.randint(0, 5000)
    return m, mm, leader, rng


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


def exit_all(seed: int, defect: str | None) -> dict:
    m, mm, leader, rng = build_mm(seed)
    try:
        if defect:
            break_mm(m, mm, rng, defect)
        fault = FaultPath(m.alloc, m.cost, m.cache_line)
        error = None
        try:
            while mm.pages:
                fault.exit_mmap(leader, mm, rng.choice([1, 3, 64, 256, None]))
        except PageAllocError as e:
            error = str(e)
        out = observe(m, [])
        out.update(error=error, left=list(mm.pages), leader=(leader.time, leader.system_ns),
                   events=[e[:2] for e in m.events.pending()],
                   free_lists=[[list(a.free_list) for kind in z.free_area for a in kind] for z in m.zones],
                   page_state=[hashlib.sha256(z.page_state[:]).hexdigest() for z in m.zones])
        return out
    finally:
        m.close()


@pytest.mark.parametrize("seed", range(16))
def test_exit_in_runs_is_exit_page_by_page(seed):
    on, off = both_ways(exit_all, seed, None)
    assert on["error"] is None and not on["left"]
    assert on == off


@pytest.mark.parametrize("defect", ["twice", "not allocated", "outside"])
@pytest.mark.parametrize("seed", range(4))
def test_broken_mm_raises_the_same_either_way(seed, defect):
    on, off = both_ways(exit_all, seed, defect)
    assert on["error"] is not None
    assert on == off
