"""The buddy allocator's rules (vmemu/mm/page_alloc.py), one test per rule."""

import pytest

from helpers import free_blocks, tiny_machine
from vmemu.machine import check_invariants
from vmemu.mm.gfp import GFP_COLD, GFP_HIGHUSER, GFP_KERNEL, GFP_ZERO
from vmemu.mm.mmzone import NOT_ZEROED, PCP_HOT, PCP_ZEROED, ZEROED, zone_batchsize
from vmemu.mm.page_alloc import (ALLOC_CLEARED, ALLOC_PLAIN, ALLOC_ZEROED, PageAllocError,
                                 free_one_page, rmqueue)

GFP_ANON = GFP_HIGHUSER | GFP_ZERO


def make_zeroed(m, zone, pfn, order):
    """Turn the free NOT_ZEROED block at pfn into a ZEROED one (what scrubd does)."""
    del zone.free_area[NOT_ZEROED][order].free_list[pfn]
    m.memory.clear(pfn, 1 << order)
    free_one_page(zone, pfn, order, ZEROED, account=False)


def take_block(m, zone, order, kind=NOT_ZEROED):
    """Allocate a specific kind of block straight off the lists (a test's scalpel)."""
    _taken, _splits, runs = rmqueue(zone, order, kind)
    pfn = runs[0][0]
    m.alloc.set_allocated(zone, pfn, order)
    return pfn


# -- split and merge ---------------------------------------------------------

def test_split_returns_halves_to_the_same_kind():
    m = tiny_machine(pages=8, max_order=4)          # one order-3 block
    zone, cpu = m.zones[0], m.cpus[0]
    pfn = m.alloc.alloc_pages(cpu, 1, GFP_KERNEL)   # order 1 from order 3: two splits
    assert pfn == 0
    assert free_blocks(zone, NOT_ZEROED) == {1: [2], 2: [4]}
    assert free_blocks(zone, ZEROED) == {}
    check_invariants(m)


def test_split_of_zeroed_block_keeps_halves_zeroed():
    m = tiny_machine(pages=8, max_order=4)
    zone, cpu = m.zones[0], m.cpus[0]
    make_zeroed(m, zone, 0, 3)
    pfn = m.alloc.alloc_pages(cpu, 1, GFP_ANON)
    assert pfn == 0
    assert free_blocks(zone, ZEROED) == {1: [2], 2: [4]}
    assert zone.zero_pages == 6
    check_invariants(m)


def test_free_coalesces_buddies_of_same_kind():
    m = tiny_machine(pages=8, max_order=4)
    zone, cpu = m.zones[0], m.cpus[0]
    a = m.alloc.alloc_pages(cpu, 1, GFP_KERNEL)
    b = m.alloc.alloc_pages(cpu, 1, GFP_KERNEL)
    assert {a, b} == {0, 2}
    m.alloc.free_pages(cpu, a, 1)
    m.alloc.free_pages(cpu, b, 1)
    assert free_blocks(zone, NOT_ZEROED) == {3: [0]}
    check_invariants(m)


def test_zeroed_block_never_merges_with_unzeroed_buddy():
    m = tiny_machine(pages=8, max_order=4)
    zone = m.zones[0]
    low = take_block(m, zone, 2)         # pages 0-3
    high = take_block(m, zone, 2)        # pages 4-7
    assert (low, high) == (0, 4)
    m.alloc.set_allocated(zone, low, 2)
    # give the two halves back as different kinds
    zone.page_state[0:4] = bytes(4)
    zone.page_state[4:8] = bytes(4)
    free_one_page(zone, low, 2, ZEROED)
    free_one_page(zone, high, 2, NOT_ZEROED)
    assert free_blocks(zone, ZEROED) == {2: [0]}
    assert free_blocks(zone, NOT_ZEROED) == {2: [4]}
    check_invariants(m)


def test_zeroed_buddies_merge_into_zeroed_block():
    m = tiny_machine(pages=8, max_order=4)
    zone = m.zones[0]
    low, high = take_block(m, zone, 2), take_block(m, zone, 2)
    zone.page_state[0:8] = bytes(8)
    free_one_page(zone, low, 2, ZEROED)
    free_one_page(zone, high, 2, ZEROED)
    assert free_blocks(zone, ZEROED) == {3: [0]}
    assert zone.zero_pages == 8
    check_invariants(m)


# -- __GFP_ZERO ---------------------------------------------------------------

def test_gfp_zero_takes_zeroed_block_without_clearing():
    m = tiny_machine(pages=16, max_order=4)
    zone, cpu = m.zones[0], m.cpus[0]
    make_zeroed(m, zone, 8, 3)
    got = m.alloc.alloc_pages_how(cpu, 3, GFP_ANON)
    assert got == (8, ALLOC_ZEROED)
    stat = m.alloc.cpu_stat[cpu.id]
    assert stat["prezero_alloc_zeroed"] == 1 and stat["prezero_clear_pages"] == 0
    assert m.memory.is_zero(8, 8)


def test_gfp_zero_without_zeroed_pages_clears_on_cpu():
    m = tiny_machine(pages=16, max_order=4)
    cpu = m.cpus[0]
    t0, s0 = cpu.time, cpu.system_ns
    pfn, how = m.alloc.alloc_pages_how(cpu, 2, GFP_ANON)
    assert how == ALLOC_CLEARED
    assert m.memory.is_zero(pfn, 4)                 # was poisoned at boot
    stat = m.alloc.cpu_stat[cpu.id]
    assert stat["prezero_clear_pages"] == 4 and stat["prezero_clear_bytes"] == 4 * 4096
    assert cpu.time > t0 and cpu.system_ns - s0 == cpu.time - t0


def test_gfp_zero_falls_back_when_zeroed_pages_too_fragmented():
    """zero_pages covers the request by count, but no ZEROED block is big enough."""
    m = tiny_machine(pages=16, max_order=4)
    zone, cpu = m.zones[0], m.cpus[0]
    # Split the block at 8 into four order-1 blocks; free 8 and 12 as ZEROED and
    # keep 10 and 14 in use, so the zeroed ones cannot merge.
    blocks = [take_block(m, zone, 1) for _ in range(4)]
    assert sorted(blocks) == [8, 10, 12, 14]
    for pfn in (8, 12):
        zone.page_state[pfn:pfn + 2] = bytes(2)
        m.memory.clear(pfn, 2)
        free_one_page(zone, pfn, 1, ZEROED)
    assert zone.zero_pages == 4
    pfn, how = m.alloc.alloc_pages_how(cpu, 2, GFP_ANON)
    assert how == ALLOC_CLEARED                       # fell back to NOT_ZEROED
    assert pfn == 0
    assert zone.zero_pages == 4                       # ZEROED blocks untouched
    assert m.memory.is_zero(pfn, 4)
    check_invariants(m)


def test_gfp_zero_fallback_to_zeroed_when_unzeroed_runs_out_still_clears():
    """__rmqueue fallback: zero = 0 whatever the other kind is (the patch's code)."""
    m = tiny_machine(pages=8, max_order=4)
    zone, cpu = m.zones[0], m.cpus[0]
    make_zeroed(m, zone, 0, 3)
    # order 3 with __GFP_ZERO: zero_pages (8) >= 8, so it asks ZEROED and gets it.
    assert m.alloc.alloc_pages_how(cpu, 3, GFP_ANON)[1] == ALLOC_ZEROED


def test_ordinary_allocations_consume_zeroed_after_unzeroed_runs_out():
    m = tiny_machine(pages=16, max_order=4)
    zone, cpu = m.zones[0], m.cpus[0]
    make_zeroed(m, zone, 8, 3)
    first = m.alloc.alloc_pages(cpu, 3, GFP_KERNEL)
    assert first == 0 and zone.zero_pages == 8          # NOT_ZEROED first
    second = m.alloc.alloc_pages(cpu, 3, GFP_KERNEL)
    assert second == 8 and zone.zero_pages == 0         # then ZEROED
    assert m.alloc.alloc_pages(cpu, 0, GFP_KERNEL) is None
    check_invariants(m)


def test_plain_allocation_is_not_cleared_and_sees_poison():
    m = tiny_machine(pages=16, max_order=4)
    cpu = m.cpus[0]
    pfn, how = m.alloc.alloc_pages_how(cpu, 3, GFP_KERNEL)
    assert how == ALLOC_PLAIN
    assert not m.memory.is_zero(pfn, 8)
    assert m.memory.read(pfn, 1)[:4] == b"\xaa" * 4


def test_clearing_is_one_memset_per_block(monkeypatch):
    m = tiny_machine(pages=16, max_order=4)
    calls = []
    real_clear = m.memory.clear
    monkeypatch.setattr(m.memory, "clear", lambda pfn, n: (calls.append((pfn, n)), real_clear(pfn, n)))
    pfn = m.alloc.alloc_pages(m.cpus[0], 3, GFP_ANON)
    assert calls == [(pfn, 8)]


def test_freed_pages_are_poisoned():
    m = tiny_machine(pages=16, max_order=4, poison_boot=False)
    cpu = m.cpus[0]
    pfn = m.alloc.alloc_pages(cpu, 2, GFP_ANON)
    assert m.memory.is_zero(pfn, 4)
    m.alloc.free_pages(cpu, pfn, 2)
    assert m.memory.read(pfn, 4) == b"\xaa" * (4 * 4096)


def test_zero_guarantee_violation_is_counted_and_page_still_zero(caplog):
    m = tiny_machine(pages=16, max_order=4)
    zone, cpu = m.zones[0], m.cpus[0]
    make_zeroed(m, zone, 8, 3)
    m.memory.fill(8, 8, 0x5A)                      # a "zeroed" block that is not
    pfn, how = m.alloc.alloc_pages_how(cpu, 3, GFP_ANON)
    assert (pfn, how) == (8, ALLOC_ZEROED)
    assert m.alloc.cpu_stat[cpu.id]["prezero_verify_fail"] == 1
    assert m.memory.is_zero(pfn, 8)
    assert "ZERO GUARANTEE VIOLATED" in caplog.text


# -- per-CPU lists ------------------------------------------------------------

def pcp_machine():
    m = tiny_machine(pages=8192, max_order=11)
    zone = m.zones[0]
    assert zone.batch == 3
    return m, zone, m.cpus[0]


def test_batchsize_matches_2_6_10_rule():
    assert zone_batchsize(520192, 4096) == 31       # x86-64 Normal zone: the familiar 31
    assert zone_batchsize(4096, 4096) == 1
    assert zone_batchsize(98304, 16384) == 7        # 1.5 GB node of 16 KiB pages


def test_pcp_refill_takes_batch_when_at_or_below_low():
    m, zone, cpu = pcp_machine()
    hot = zone.pcp(cpu.id)[PCP_HOT]
    assert (hot.low, hot.high, hot.batch) == (6, 18, 3)
    m.alloc.alloc_pages(cpu, 0, GFP_KERNEL)
    assert hot.count == 2                    # 0 <= low: refilled 3, handed 1 out
    m.alloc.alloc_pages(cpu, 0, GFP_KERNEL)
    assert hot.count == 4                    # 2 <= low again
    check_invariants(m)


def test_pcp_free_flushes_batch_when_at_high():
    m, zone, cpu = pcp_machine()
    hot = zone.pcp(cpu.id)[PCP_HOT]
    pages = [m.alloc.alloc_pages(cpu, 0, GFP_KERNEL) for _ in range(30)]
    m.alloc.drain_pages(cpu)                   # start from empty lists
    assert hot.count == 0
    free_before = zone.free_pages
    for i, pfn in enumerate(pages[:18]):
        m.alloc.free_pages(cpu, pfn, 0)
    assert hot.count == 18 and zone.free_pages == free_before      # at high, nothing flushed yet
    m.alloc.free_pages(cpu, pages[18], 0)
    assert hot.count == 16                                          # flushed batch 3, added 1
    assert zone.free_pages == free_before + 3
    assert zone.zero_pages == 0                                     # flushed as NOT_ZEROED
    check_invariants(m)


def test_pcp_order0_is_lifo_hot():
    m, zone, cpu = pcp_machine()
    a = m.alloc.alloc_pages(cpu, 0, GFP_KERNEL)
    m.alloc.free_pages(cpu, a, 0)
    assert m.alloc.alloc_pages(cpu, 0, GFP_KERNEL) == a


def test_cold_allocation_uses_cold_list():
    m, zone, cpu = pcp_machine()
    m.alloc.alloc_pages(cpu, 0, GFP_KERNEL | GFP_COLD)
    lists = zone.pcp(cpu.id)
    assert lists[1].count == 2 and lists[PCP_HOT].count == 0


def test_zeroed_pcp_list_filled_only_from_zeroed_blocks_and_drains_unzeroed():
    m, zone, cpu = pcp_machine()
    make_zeroed(m, zone, 0, 10)
    zeroed = zone.pcp(cpu.id)[PCP_ZEROED]
    pfn, how = m.alloc.alloc_pages_how(cpu, 0, GFP_ANON)
    assert how == ALLOC_ZEROED and zeroed.count == 2
    assert pfn < 1024 and all(p < 1024 for p in zeroed.list)       # from the ZEROED block
    zero_before = zone.zero_pages
    m.alloc.drain_pages(cpu)
    assert zeroed.count == 0 and zone.zero_pages == zero_before     # returned as NOT_ZEROED
    check_invariants(m)


def test_gfp_zero_with_no_zero_pages_uses_hot_list_and_clears():
    m, zone, cpu = pcp_machine()
    pfn, how = m.alloc.alloc_pages_how(cpu, 0, GFP_ANON)
    assert how == ALLOC_CLEARED and zone.pcp(cpu.id)[PCP_ZEROED].count == 0


# -- zonelists, NUMA, out of memory ------------------------------------------

def test_allocation_falls_back_to_other_node_and_counts_numa():
    m = tiny_machine(pages=8, max_order=4, nodes=2, cpus_per_node=1)
    cpu0 = m.cpus[0]
    assert m.alloc.alloc_pages(cpu0, 3, GFP_KERNEL) == 0           # local node
    assert m.alloc.alloc_pages(cpu0, 3, GFP_KERNEL) == 8           # node 1
    assert m.nodes[0].stat["numa_hit"] == 1 and m.nodes[1].stat["numa_miss"] == 1
    assert m.nodes[0].stat["numa_foreign"] == 1 and m.nodes[1].stat["other_node"] == 1
    assert m.alloc.alloc_pages(cpu0, 0, GFP_KERNEL) is None
    assert m.alloc.cpu_stat[0]["prezero_alloc_fail"] == 1


def test_watermarks_reserve_pages():
    m = tiny_machine(pages=64, max_order=4)
    zone, cpu = m.zones[0], m.cpus[0]
    zone.pages_min, zone.pages_low = 16, 20
    got = 0
    while m.alloc.alloc_pages(cpu, 3, GFP_KERNEL) is not None:
        got += 8
    assert zone.free_pages > zone.pages_min - 8 and got == 48


# -- bad input ----------------------------------------------------------------

@pytest.mark.parametrize("order", [-1, 4, 99, 1.0, "0", None, True])
def test_invalid_order_rejected_without_state_change(order):
    m = tiny_machine(pages=16, max_order=4)
    before = m.snapshot()
    with pytest.raises(PageAllocError, match="invalid order"):
        m.alloc.alloc_pages(m.cpus[0], order, GFP_KERNEL)
    assert m.snapshot() == before


def test_bad_frees_rejected_without_state_change():
    m = tiny_machine(pages=16, max_order=4)
    cpu = m.cpus[0]
    one = m.alloc.alloc_pages(cpu, 0, GFP_KERNEL)
    m.alloc.free_pages(cpu, one, 0)
    live = m.alloc.alloc_pages(cpu, 2, GFP_KERNEL)
    gone = m.alloc.alloc_pages(cpu, 2, GFP_KERNEL)
    m.alloc.free_pages(cpu, gone, 2)
    assert len({one, live, gone}) == 3
    never = next(p for p in range(16) if m.zones[0].page_state[p] == 0 and p not in (live, gone, one))
    cases = [
        ((gone, 2), "not allocated"),                     # double free
        ((never, 0), "not allocated"),                    # never allocated
        ((16, 0), "outside every zone"),                  # past the end
        ((-1, 0), "outside every zone"),
        ((live + 1, 1), "not aligned"),
        ((live, 99), "invalid order"),
        (("x", 0), "invalid pfn"),
        ((live + 1, 0), "not the head"),
        ((live, 1), "allocated with order 2"),
        ((one, 0), "per-CPU free list"),
    ]
    before = m.snapshot()
    for args, message in cases:
        with pytest.raises(PageAllocError, match=message):
            m.alloc.free_pages(cpu, *args)
        assert m.snapshot() == before, args
    check_invariants(m)


def test_metadata_only_backing_accounts_clearing():
    m = tiny_machine(pages=16, max_order=4, backing="none")
    cpu = m.cpus[0]
    pfn, how = m.alloc.alloc_pages_how(cpu, 2, GFP_ANON)
    assert how == ALLOC_CLEARED
    assert m.alloc.cpu_stat[0]["prezero_clear_bytes"] == 4 * 4096 and cpu.system_ns > 0
    assert not m.memory.real
