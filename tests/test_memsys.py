"""The memory hardware model (vmemu.arch.memsys): where lines are, what a run costs."""

from vmemu.arch.sn.bte import BteZeroDriver  # noqa: F401  (the BTE is part of altix-8)
from vmemu.machine import Machine


def altix():
    return Machine("altix-8", backing="none")


def test_hit_after_clear():
    m = altix()
    ms = m.memsys
    ms.wrote(0, ((100, 1),), ms.lines_per_page)
    assert ms.cached_lines(0, 100) == ms.lines_per_page
    assert ms.touch_ns(0, 100, 0, 8) == 8 * ms.hit_ns
    assert ms.cached_lines(1, 100) == 0 or ms.cpu_group[1] == ms.cpu_group[0]
    assert ms.touch_ns(2, 100, 0, 128) > 100 * ms.hit_ns        # another CPU misses


def test_capacity_eviction():
    m = altix()
    ms = m.memsys
    per = ms.lines_per_page
    ms.wrote(0, ((0, 1),), per)
    ms.wrote(0, ((1, ms.capacity // per - 1),), per)             # exactly fills the cache
    assert ms.cached_lines(0, 0) == per
    ms.wrote(0, ((10_000, 1),), per)                             # one page more pushes the oldest out
    assert ms.cached_lines(0, 0) == 0
    assert ms.cached_lines(0, 10_000) == per


def test_writing_moves_ownership():
    m = altix()
    ms = m.memsys
    ms.wrote(0, ((5, 1),), ms.lines_per_page)
    ms.wrote(2, ((5, 1),), 4)
    assert ms.cached_lines(0, 5) == 0 and ms.cached_lines(2, 5) == 4


def test_device_write_invalidates():
    m = altix()
    ms = m.memsys
    ms.wrote(0, ((5, 3),), ms.lines_per_page)
    ms.invalidate(6, 1)
    assert [ms.cached_lines(0, p) for p in (5, 6, 7)] == [ms.lines_per_page, 0, ms.lines_per_page]


def test_a_run_of_misses_is_bounded_by_bandwidth_and_parallelism():
    ms = altix().memsys
    short = ms.store_run_ns(0, 0, ms.mlp)                        # posted: only issue cost
    assert short == ms.mlp * ms.hit_ns
    per_line = ms.line_ns(0, 0)
    assert per_line == max(ms.latency[0][0] / ms.mlp, ms.store_traffic / ms.bus_bytes_per_ns)
    long = ms.store_run_ns(0, 0, 128)
    assert long < 128 * ms.latency[0][0]                         # overlapped, not lines x latency
    assert long == int(ms.latency[0][0] + (127 - ms.mlp) * per_line + 0.5)
    assert ms.store_run_ns(0, 3, 128) > long                     # across the router: the link


# -- who pollutes a CPU's cache: kscrubd clearing on it, not the BTE ------------------------

def scrub_two_blocks(use_bte: bool):
    """A machine whose CPU 0 holds a page it cleared, and then kscrubd of node 0
    zeroes two 4 MiB blocks (order 8; 512 pages, more than the 6 MB L3 holds)
    on CPU 0, by the BTE or on the CPU."""
    from vmemu.mm.gfp import GFP_HIGHUSER
    from vmemu.mm.mmzone import NOT_ZEROED
    m = altix()
    ms, cpu, zone = m.memsys, m.cpus[0], m.zones[0]
    blocks = [m.alloc.alloc_pages(cpu, 8, GFP_HIGHUSER) for _ in range(4)]
    kept, freed = blocks[0], blocks[1::2]
    for pfn in freed:                                  # their buddies stay allocated: they stay order 8
        m.alloc.free_pages(cpu, pfn, 8)
    assert zone.free_area[NOT_ZEROED][8].nr_free == 2
    ms.wrote(0, ((kept, 1),), ms.lines_per_page)      # CPU 0 holds a page of its own
    ms.wrote(2, ((freed[0] + 7, 1),), ms.lines_per_page)   # CPU 2 holds a page of a block
    m.bte.enabled = use_bte
    for _ in freed:
        m.scrub.daemons[0].scrub_block(cpu, zone, 8)
    m.run_until_idle()
    return m, kept, freed


def test_kscrubd_clearing_on_a_cpu_pushes_out_what_it_held():
    m, kept, freed = scrub_two_blocks(use_bte=False)
    ms = m.memsys
    assert m.scrub.blocks_by_driver() == {"cpu": [0] * 8 + [2] + [0] * 9}
    assert ms.cached_lines(0, kept) == 0                         # polluted
    last = max(freed) + 255
    assert ms.cached_lines(0, last) == ms.lines_per_page        # the last block's lines are there now
    assert ms.cached_lines(2, freed[0] + 7) == 0                 # the clear took the line from CPU 2


def test_the_bte_clears_in_memory_and_pollutes_no_cache():
    m, kept, freed = scrub_two_blocks(use_bte=True)
    ms = m.memsys
    assert m.scrub.blocks_by_driver() == {"bte": [0] * 8 + [2] + [0] * 9}
    assert ms.cached_lines(0, kept) == ms.lines_per_page         # CPU 0's cache is as it was
    assert not any(ms.cached_lines(c.id, b + i) for c in m.cpus for b in freed for i in (0, 7, 255))


def test_pft_touches_hit_after_its_own_clear_and_miss_on_prezeroed_pages():
    """pft -c 128: the stock kernel's task touches lines it just cleared (hits);
    on prezeroed pages every line misses, a run bound by bandwidth, not 128 latencies."""
    from vmemu import pft
    per_page = {}
    for kernel, prezeroed in (("stock", False), ("prezero", True)):
        m = pft.prepare_machine("altix-8", 0, kernel, prezeroed=prezeroed, backing="none")
        try:
            r = pft.run_job(m, 64 << 20, threads=1, rep=1, cachelines=128)
            per_page[kernel] = r.user_ns / r.pages
            ms = m.memsys
        finally:
            m.close()
    user = 150                                                    # altix-8's user_per_page_ns
    assert per_page["stock"] == user + 128 * ms.hit_ns
    assert per_page["prezero"] == user + ms.store_run_ns(0, 0, 128)
    assert 10 * 128 * ms.hit_ns < per_page["prezero"] - user < 128 * ms.latency[0][0] / 2


def test_a_streaming_clear_moves_each_line_once_at_the_bus_rate():
    """i386-piii's clear_page streams (P6 fast strings): a page is its bytes
    at the bus's rate, each line once on the bus; a user's run of store
    misses still reads every line (write-allocate) and waits on latency."""
    ms = Machine("i386-piii", backing="none").memsys
    per = ms.lines_per_page
    assert ms.clear_streams and ms.page_traffic() == per * ms.line
    assert ms.clear_page_ns(0, 0) == int(per * ms.line / ms.bus_bytes_per_ns + 0.5)
    assert ms.store_run_ns(0, 0, per) > ms.clear_page_ns(0, 0)       # the same lines, read first
    reading = altix().memsys                                           # ia64's clear reads each line
    assert not reading.clear_streams
    assert reading.page_traffic() == reading.lines_per_page * reading.store_traffic
    assert reading.clear_page_ns(0, 0) == reading.store_run_ns(0, 0, reading.lines_per_page)


def test_a_line_shared_by_nodes_costs_a_transfer_per_pair_of_them():
    m = Machine("altix-8", backing="none")
    ms = m.memsys
    one_node = ms.shared_transfer([0, 1])
    assert one_node[0][0] == ms.transfer[0][0]                 # the bus within a node: uncontended
    brick = ms.shared_transfer([0, 1, 2, 3])                   # 2 nodes: 2 x 1 transfers
    assert brick[0][1] == 2 * ms.transfer[0][1] and brick[0][0] == ms.transfer[0][0]
    four = ms.shared_transfer(range(8))                        # 4 nodes: 4 x 3
    assert four[0][3] == 12 * ms.transfer[0][3] and four[2][3] == 12 * ms.transfer[2][3]


def test_rss_line_moves_inside_the_hold_and_exit_purges_per_node():
    from vmemu.mm.fault import FaultPath, MMStruct
    m = altix()
    fp = FaultPath(m.alloc, m.cost, m.cache_line)
    mm = MMStruct("t", m.timeline, m.memsys.transfer)
    cpu0, cpu7 = m.cpus[0], m.cpus[7]
    assert fp.counters_ns(cpu0, mm) == 0 and fp.counters_ns(cpu0, mm) == 0     # its own line
    assert fp.counters_ns(cpu7, mm) == m.memsys.transfer[0][3]                 # from node 0 to node 3
    mm.nodes_run.update({0})
    alone = fp.zap_ns(cpu0, mm, 0)
    mm.nodes_run.update({1, 2, 3})
    assert fp.zap_ns(cpu0, mm, 0) == alone + 4 * fp.tlb_purge_ns
