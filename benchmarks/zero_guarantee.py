#!/usr/bin/env python3
"""The zero guarantee at scale: 10^6 anonymous faults (pft jobs) on a small
Altix-like machine with real memory, scrubd on (both policies, changing
sysctls) and BTE errors and hangs injected while it runs; then

- faults run and pages handed out for __GFP_ZERO;
- non-zero bytes handed out: every __GFP_ZERO page is read back and its
  non-zero bytes counted here, at the moment the allocator hands it out
  (before the allocator's own verify, which would clear it); plus the
  allocator's prezero_verify_fail counter, and periodic sweeps over every
  ZEROED free block and zeroed per-CPU page;
- BTE errors, hangs (timeouts) and retries: injected (as the engines drew
  them) and seen (the engines' counters, scrubd's redone blocks);
- pages lost: check_invariants plus free + per-CPU == total at the end.

    python benchmarks/zero_guarantee.py [--faults N] [--seed S] [--smoke]

The last line of output is one JSON object; the exit status is 1 when a
dirty byte was handed out or a page was lost.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import table  # noqa: E402

# Watch wraps the allocator's verify_zero; a compiled model's methods cannot be wrapped
os.environ["VMEMU_NATIVE"] = "0"

from vmemu import pft, shortcuts  # noqa: E402
from vmemu.machine import Machine, check_invariants  # noqa: E402
from vmemu.mm.gfp import GFP_HIGHUSER, GFP_ZERO  # noqa: E402
from vmemu.mm.mmzone import PCP_ZEROED, ZEROED  # noqa: E402
from vmemu.profiles import load_profile  # noqa: E402


def build(seed: int) -> Machine:
    """2 nodes x 2 CPUs, 64 MiB per node of 16 KiB pages, MAX_ORDER 9 (so every
    block of order 2..8 is one the BTE takes), real memory poisoned at boot."""
    prof = load_profile("altix-8", overrides={
        "machine.node_memory": "64M", "machine.nodes": 2, "machine.cpus_per_node": 2,
        "machine.max_order": 9, "machine.backing": "real"})
    return Machine(prof, seed=seed, poison_boot=True)


class Watch:
    """Counts what the allocator hands out for __GFP_ZERO and what the BTE
    engines draw, by wrapping the model's own hooks on this machine only.
    Run with the host shortcuts off (vmemu.shortcuts), so that every page's
    check is verify_zero's, at the moment the page is handed out."""

    def __init__(self, m: Machine):
        self.m = m
        self.pages = 0
        self.dirty_bytes = 0
        self.dirty_pages = 0
        self.injected = {"error": 0, "hang": 0}
        verify = m.alloc.verify_zero
        read = m.memory.read

        def verify_zero(cpu, zone, pfn, npages):
            data = read(pfn, npages)
            bad = len(data) - data.count(0)
            self.pages += npages
            if bad:
                self.dirty_bytes += bad
                self.dirty_pages += npages
            verify(cpu, zone, pfn, npages)
        m.alloc.verify_zero = verify_zero          # instance attribute: shadows the method

        for e in m.bte.all_engines():
            e.draw_fault = self._counting(e.draw_fault)

    def _counting(self, draw):
        def draw_fault():
            fault = draw()
            if fault is not None:
                self.injected[fault] += 1
            return fault
        return draw_fault


def sweep(m: Machine) -> int:
    """Non-zero bytes in every ZEROED free block and zeroed per-CPU page."""
    bad = 0
    for z in m.zones:
        for order, area in enumerate(z.free_area[ZEROED]):
            for pfn in area.free_list:
                data = m.memory.read(pfn, 1 << order)
                bad += len(data) - data.count(0)
        for lists in z.pageset.values():
            for pfn in lists[PCP_ZEROED].list:
                data = m.memory.read(pfn, 1)
                bad += len(data) - data.count(0)
    return bad


def perturb(m: Machine, rng: random.Random) -> None:
    """Between jobs: new injection settings, sysctls and policy now and then."""
    for e in m.bte.all_engines():
        if rng.random() < 0.3:
            e.error_percent = rng.choice([0, 5, 20, 50])
            e.hang_percent = rng.choice([0, 0, 2, 10])
            e.error_code = rng.randint(1, 8)
        if rng.random() < 0.1:
            e.inject_errors += rng.randint(1, 3)
        if rng.random() < 0.05:
            e.inject_hangs += 1
    if rng.random() < 0.2:
        m.set_sysctl("scrub_stop", rng.choice([0, 2, 4, 300]))
        m.set_sysctl("scrub_load", rng.choice([999, 999, 2, 0]))
        m.set_sysctl("scrub_start", rng.choice([0, 2, 4, 6, 100]))
    if rng.random() < 0.05:
        m.set_scrub_policy(rng.choice(["order", "percentage"]))


def run(target: int, seed: int, report_every: int) -> dict:
    rng = random.Random(seed)
    m = build(seed)
    w = Watch(m)
    m.set_sysctl("scrub_stop", 2)
    m.set_sysctl("scrub_start", 4)
    faults = jobs = enomem = direct = 0
    sweeps_dirty = 0
    t0 = time.perf_counter()
    next_report = report_every
    while faults < target:
        perturb(m, rng)
        pages = rng.choice([16, 64, 256, 512, 1024, 2048, 4096, 6144])
        threads = rng.randint(1, 4)
        before = m.counters()["pgfault"]
        try:
            pft.run_job(m, pages * m.page_size, threads=threads, rep=1, cachelines=rng.randint(0, 4))
        except pft.JobError:
            enomem += 1
        faults += m.counters()["pgfault"] - before
        jobs += 1
        # a few direct __GFP_ZERO allocations of higher orders, checked and given back
        for _ in range(4):
            order = rng.randint(1, 8)
            pfn = m.alloc.alloc_pages(m.cpus[rng.randrange(4)], order, GFP_HIGHUSER | GFP_ZERO)
            if pfn is not None:
                direct += 1
                m.memory.fill(pfn, 1 << order, 0x77)          # the user dirties it
                m.alloc.free_pages(m.cpus[rng.randrange(4)], pfn, order)
        m.advance(rng.choice([0, 10**5, 10**6, 10**7, 10**9, 20 * 10**9, 45 * 10**9]))
        if jobs % 50 == 0:
            sweeps_dirty += sweep(m)
            check_invariants(m, deep=False)
        if faults >= next_report:
            print(f"  {faults:,} faults, {jobs} jobs, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            next_report += report_every
    # wind down: no new faults injected, let scrubd and the engines finish
    for e in m.bte.all_engines():
        e.inject_errors = e.inject_hangs = e.error_percent = e.hang_percent = 0
    m.set_sysctl("scrub_load", 999)
    m.run_until_idle()
    elapsed = time.perf_counter() - t0
    sweeps_dirty += sweep(m)
    lost = m.total_pages - (m.free_pages() + sum(z.pcp_pages() for z in m.zones))
    try:
        check_invariants(m)
        invariants = "ok"
    except AssertionError as e:
        invariants = str(e)
    c = m.counters()
    t = m.bte.totals()
    errors = sum(v for k, v in t.items() if k.startswith("errors_"))
    return {
        "faults": faults, "jobs": jobs, "jobs_enomem": enomem, "direct_gfp_zero_allocs": direct,
        "gfp_zero_pages": w.pages,
        "served_prezeroed": c["prezero_alloc_zeroed"], "cleared_in_fault_path": c["prezero_alloc_cleared"],
        "dirty_bytes": w.dirty_bytes, "dirty_pages": w.dirty_pages, "sweep_dirty_bytes": sweeps_dirty,
        "verify_fail": c["prezero_verify_fail"],
        "pages_lost": lost, "invariants": invariants, "scrubd_busy_at_end": m.scrub.busy(),
        "bte_errors_injected": w.injected["error"], "bte_hangs_injected": w.injected["hang"],
        # seen: an injected error with code BTEFAIL_TOUT lands in errors_BTEFAIL_TOUT too
        "bte_errors_seen": errors - t["timeouts"], "bte_timeouts_seen": t["timeouts"],
        "bte_retries_seen": t["retries"],
        "scrubd_redone_blocks": sum(d.stat["redone_blocks"] for d in m.scrub.daemons),
        "bte_transfers": t["transfers"], "bte_completed": t["completed"], "bte_notavail": t["notavail"],
        "scrubd_pages_zeroed": sum(d.pages_zeroed() for d in m.scrub.daemons),
        "virtual_s": m.now / 1e9, "host_s": round(elapsed, 1), "seed": seed,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faults", type=int, default=10**6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="a tiny run (20,000 faults)")
    args = ap.parse_args()
    target = 20_000 if args.smoke else args.faults
    with shortcuts.off():
        r = run(target, args.seed, report_every=max(target // 10, 1))
    print(table([(k, v) for k, v in r.items()], ("figure", "value")))
    good = (r["dirty_bytes"] == 0 and r["sweep_dirty_bytes"] == 0 and r["verify_fail"] == 0
            and r["pages_lost"] == 0 and r["invariants"] == "ok"
            and r["bte_errors_injected"] == r["bte_errors_seen"] == r["scrubd_redone_blocks"]
            and r["bte_hangs_injected"] == r["bte_timeouts_seen"] == r["bte_retries_seen"])
    r["ok"] = good
    print(json.dumps(r, sort_keys=True))
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
