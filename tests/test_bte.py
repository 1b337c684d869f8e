import pytest
"""The Altix BTE zero driver: eligibility, engines, NOTAVAIL, injected errors and hangs."""

import errno

from helpers import altix, run_with_faults
from vmemu.arch.sn.bte import BTEFAIL_NOTAVAIL, BTEFAIL_TOUT, BTEFAIL_WERR
from vmemu.machine import check_invariants
from vmemu.mm.gfp import GFP_KERNEL


def test_eligibility_window_and_alignment():
    m = altix()
    bte = m.bte
    assert m.zero_drivers[0] is bte
    ok = [o for o in range(12) if bte.eligible(0, m.page_size << o)]
    assert ok == list(range(2, 9))                     # 64 KiB .. 4 MiB; 8 MiB is BTE_MAX_XFER
    assert bte.eligible(0, 60032) and not bte.eligible(0, 59904)   # the 60000-byte floor
    assert not bte.eligible(64, 65536)                 # address not 128-byte aligned
    assert not bte.eligible(0, 65536 + 64)             # length not a multiple of 128
    d = m.scrub.daemons[0]
    zone, cpu = m.zones[0], m.cpus[0]
    assert bte.start(d, cpu, zone, 0, 1) == errno.EINVAL and bte.refused == 1
    assert bte.start(d, cpu, zone, 0, 9) == errno.EINVAL and bte.refused == 2


def test_notavail_falls_back_to_cpu_when_both_engines_busy():
    m = altix()
    m.set_sysctl("scrub_start", 0)
    m.run_until_idle()
    t = m.bte.totals()
    assert t["transfers"] >= 2 and t["notavail"] >= 1
    blocks = m.scrub.blocks_by_driver()
    assert sum(blocks["bte"]) == t["completed"] and sum(blocks.get("cpu", [])) >= 1
    assert m.zero_pages() == m.free_pages()
    check_invariants(m)


def test_bte_time_is_not_charged_to_any_cpu_but_uses_the_bus():
    m = altix()
    m.set_sysctl("scrub_start", 0)
    m.run_until_idle()
    d = m.scrub.daemons[0]
    cpu_pages = sum(c << o for o, c in enumerate(m.scrub.blocks_by_driver().get("cpu", [])))
    bte_busy = sum(e.busy_ns for e in m.bte.all_engines())
    assert bte_busy > 0
    # scrubd's CPU time covers its CPU clears and the engine set-ups, not the BTE transfers
    clear_ns = cpu_pages * m.memsys.page_traffic() / m.memsys.clear_rate(0, 0)
    assert d.stat["cpu_ns"] < clear_ns + bte_busy
    assert m.buses[0].bytes >= m.bte.totals()["bytes"]


def test_disabled_driver_is_skipped():
    m = altix()
    m.bte.enabled = False
    m.set_sysctl("scrub_start", 0)
    m.run_until_idle()
    assert m.bte.totals()["transfers"] == 0 and "bte" not in m.scrub.blocks_by_driver()


def test_injected_errors_are_cleared_on_cpu_never_handed_out_dirty():
    m = altix()
    for e in m.bte.all_engines():
        e.inject_errors = 2
        e.error_code = BTEFAIL_WERR
    m.set_sysctl("scrub_start", 0)
    m.run_until_idle()
    assert m.bte.totals()["errors_BTEFAIL_WERR"] == 4
    assert m.scrub.daemons[0].stat["redone_blocks"] == 4
    assert m.zero_pages() == m.free_pages()
    check_invariants(m)


def test_hang_times_out_after_40s_retries_and_never_blocks_allocation():
    m = altix()
    e0, e1 = m.bte.all_engines()
    e0.inject_hangs = 1
    m.set_sysctl("scrub_start", 0)
    m.advance(10**9)                        # one second in: the hung transfer is still out
    assert e0.hung and e0.timeouts == 0
    assert m.alloc.alloc_pages(m.cpus[1], 0, GFP_KERNEL) is not None   # allocations go on
    m.advance(40 * 10**9)
    assert e0.timeouts == 1 and e0.retries == 1 and e0.errors[BTEFAIL_TOUT] == 1
    m.run_until_idle()
    assert not e0.busy and m.zones[0].scrub_inflight == 0


@pytest.mark.slow
def test_fault_heavy_run_with_injected_errors_and_hangs():
    m, rows = run_with_faults(seed=5)
    t = m.bte.totals()
    assert t["errors_BTEFAIL_POISON"] > 0 and t["timeouts"] > 0
    assert t["retries"] == t["timeouts"]
    engines = m.bte.all_engines()
    # every transfer ended as completed, errored, or timed out and was retried
    assert t["transfers"] == t["completed"] + t["errors_BTEFAIL_POISON"] + t["timeouts"]
    assert sum(d.stat["redone_blocks"] for d in m.scrub.daemons) == t["errors_BTEFAIL_POISON"]
    assert m.counters()["prezero_verify_fail"] == 0           # nothing handed out dirty
    assert m.counters()["prezero_alloc_zeroed"] > 0
    assert all(not e.busy for e in engines)
    check_invariants(m)                                       # no page lost
    assert m.free_pages() + sum(z.pcp_pages() for z in m.zones) == m.total_pages


@pytest.mark.slow
def test_determinism_with_injected_faults():
    a, rows_a = run_with_faults(seed=11)
    b, rows_b = run_with_faults(seed=11)
    assert rows_a == rows_b and a.snapshot() == b.snapshot() and a.bte.totals() == b.bte.totals()
    c, rows_c = run_with_faults(seed=12)
    assert c.bte.totals() != a.bte.totals()


def test_notavail_code_is_9():
    assert BTEFAIL_NOTAVAIL == 9
