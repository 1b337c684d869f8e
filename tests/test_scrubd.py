"""scrubd's rules (vmemu/mm/scrubd.py), one test per rule."""

from helpers import free_blocks, tiny_machine
from vmemu import pft
from vmemu.kernel.loadavg import FSHIFT
from vmemu.machine import check_invariants
from vmemu.mm.gfp import GFP_KERNEL
from vmemu.mm.fault import MMStruct
from vmemu.mm.mmzone import NOT_ZEROED, ZEROED
from vmemu.mm.scrubd import (POLICY_PERCENT, RUNNING, SLEEPING, v8_order_wanted,
                             v8_wake_needed)


def scrub_machine(**kw):
    kw.setdefault("pages", 16)
    kw.setdefault("max_order", 4)
    m = tiny_machine(**kw)
    m.sysctl["scrub_stop"] = 0
    return m


def coalesce_to(m, order):
    """Allocate two buddies of order-1 and free them: the second free coalesces to ``order``."""
    cpu = m.cpus[0]
    a = m.alloc.alloc_pages(cpu, order - 1, GFP_KERNEL)
    b = m.alloc.alloc_pages(cpu, order - 1, GFP_KERNEL)
    assert a ^ b == 1 << (order - 1)
    m.alloc.free_pages(cpu, a, order - 1)
    m.alloc.free_pages(cpu, b, order - 1)


def daemon(m, node=0):
    return m.scrub.daemons[node]


# -- wake rules -----------------------------------------------------------------

def test_off_by_default_at_max_order():
    m = scrub_machine()
    assert m.sysctl["scrub_start"] == m.max_order
    coalesce_to(m, 3)
    assert daemon(m).stat["wakeups"] == 0 and daemon(m).state == SLEEPING


def test_wakes_at_coalesce_order_equal_to_scrub_start():
    m = scrub_machine()
    m.sysctl["scrub_start"] = 3          # set without the write's wake-all
    coalesce_to(m, 3)
    assert daemon(m).stat["wakeups"] == 1 and daemon(m).state == RUNNING


def test_no_wake_at_scrub_start_minus_one():
    m = scrub_machine()
    m.sysctl["scrub_start"] = 3
    hold = m.alloc.alloc_pages(m.cpus[0], 2, GFP_KERNEL)   # the buddy of what coalesces
    coalesce_to(m, 2)                    # so this coalesces to order 2 only
    assert daemon(m).stat["wakeups"] == 0
    m.alloc.free_pages(m.cpus[0], hold, 2)                 # now order 3: wakes
    assert daemon(m).stat["wakeups"] == 1


def test_scrub_start_zero_wakes_on_every_free():
    m = scrub_machine()
    m.sysctl["scrub_start"] = 0
    cpu = m.cpus[0]
    pfn = m.alloc.alloc_pages(cpu, 1, GFP_KERNEL)
    m.alloc.free_pages(cpu, pfn, 1)
    assert daemon(m).stat["wakeups"] == 1


def test_writing_scrub_start_below_max_order_wakes_every_node():
    m = scrub_machine(nodes=3, cpus_per_node=1)
    m.set_sysctl("scrub_start", 5)           # >= MAX_ORDER (4): still off
    assert all(d.stat["wakeups"] == 0 for d in m.scrub.daemons)
    m.set_sysctl("scrub_start", 3)
    assert [d.stat["wakeups"] for d in m.scrub.daemons] == [1, 1, 1]


# -- the work loop ------------------------------------------------------------------

def test_highest_order_first_and_block_off_lists_while_in_flight():
    m = scrub_machine()
    zone = m.zones[0]
    a = m.alloc.alloc_pages(m.cpus[0], 2, GFP_KERNEL)   # leaves NOT_ZEROED blocks of order 2 and 3
    assert sorted(free_blocks(zone, NOT_ZEROED)) == [2, 3]
    m.sysctl["scrub_start"] = 0
    daemon(m).wakeup(m.now)
    m.events.run_one()                                   # the first pass: one block per zone
    assert zone.scrub_inflight == 8                      # the order-3 block, highest first
    assert 3 not in free_blocks(zone, NOT_ZEROED)
    assert zone.free_pages == 12                         # still counted as free
    # an allocation cannot take it: the only order-3 block is in flight
    assert m.alloc.alloc_pages(m.cpus[1], 3, GFP_KERNEL) is None
    got = m.alloc.alloc_pages(m.cpus[1], 2, GFP_KERNEL)
    assert got is not None and got not in range(0, 8)
    m.alloc.free_pages(m.cpus[1], got, 2)
    m.alloc.free_pages(m.cpus[0], a, 2)
    m.run_until_idle()
    check_invariants(m)


def test_stop_condition_leaves_orders_below_scrub_stop():
    m = scrub_machine(pages=64, max_order=5)
    zone, cpu = m.zones[0], m.cpus[0]
    held = [m.alloc.alloc_pages(cpu, 0, GFP_KERNEL) for _ in range(3)]   # fragments one block
    m.sysctl["scrub_stop"] = 2
    m.set_sysctl("scrub_start", 2)
    m.run_until_idle()
    assert daemon(m).state == SLEEPING
    nz = free_blocks(zone, NOT_ZEROED)
    assert all(order < 2 for order in nz), nz           # nothing of order >= scrub_stop left
    assert nz                                           # lower orders were not zeroed
    assert zone.zero_pages == zone.free_pages - sum(len(v) << o for o, v in nz.items())
    assert m.memory.is_zero(*next((p, 1 << o) for o, ps in free_blocks(zone, ZEROED).items() for p in ps))
    del held


def test_zeroed_block_does_not_merge_with_unzeroed_buddy():
    m = scrub_machine(pages=8, max_order=4)
    zone, cpu = m.zones[0], m.cpus[0]
    low = m.alloc.alloc_pages(cpu, 2, GFP_KERNEL)        # 0-3 in use, 4-7 free
    m.set_sysctl("scrub_start", 0)
    m.run_until_idle()
    assert free_blocks(zone, ZEROED) == {2: [4]}
    m.set_sysctl("scrub_start", 4)                       # off: keep the unzeroed half unzeroed
    m.alloc.free_pages(cpu, low, 2)                      # its buddy is ZEROED: no merge
    assert free_blocks(zone, NOT_ZEROED) == {2: [0]}
    assert free_blocks(zone, ZEROED) == {2: [4]}
    check_invariants(m)


def test_zeroed_buddies_merge_after_scrubbing():
    m = scrub_machine(pages=8, max_order=4)
    zone, cpu = m.zones[0], m.cpus[0]
    a = m.alloc.alloc_pages(cpu, 2, GFP_KERNEL)
    m.set_sysctl("scrub_start", 0)
    m.run_until_idle()                                   # 4-7 zeroed
    m.alloc.free_pages(cpu, a, 2)                        # wakes (start 0); 0-3 gets zeroed, merges
    m.run_until_idle()
    assert free_blocks(zone, ZEROED) == {3: [0]} and zone.zero_pages == 8
    check_invariants(m)


def test_scrubd_time_is_system_time_of_its_cpu():
    m = scrub_machine(pages=4096, max_order=11)
    before = [c.system_ns for c in m.cpus]
    m.set_sysctl("scrub_start", 0)
    m.run_until_idle()
    used = sum(c.system_ns - b for c, b in zip(m.cpus, before))
    assert used == daemon(m).stat["cpu_ns"] > 0
    assert m.zero_pages() == m.free_pages()


def test_scrubd_waits_while_every_cpu_of_its_node_is_busy():
    m = scrub_machine(pages=4096, max_order=11, cpus_per_node=2)
    m.sysctl["scrub_start"] = 0
    m.claim_cpus(m.cpus, MMStruct("job"))
    m.alloc.free_pages(m.cpus[0], m.alloc.alloc_pages(m.cpus[0], 3, GFP_KERNEL), 3)
    m.advance(10**9)
    assert daemon(m).state == "waiting for a CPU" and daemon(m).stat["passes"] == 0
    m.release_cpus(m.cpus, m.now)
    m.run_until_idle()
    assert daemon(m).stat["passes"] > 0 and daemon(m).state == SLEEPING


# -- the load gate -------------------------------------------------------------------

def test_load_gate_blocks_then_releases():
    m = scrub_machine()
    m.sysctl["scrub_start"] = 0
    m.sysctl["scrub_load"] = 2
    m.loadavg.avenrun[0] = 3 << FSHIFT            # load 3.00
    coalesce_to(m, 3)
    assert daemon(m).stat["load_gate_refusals"] >= 1 and daemon(m).stat["wakeups"] == 0
    m.advance(300 * 10**9)                        # 5 idle minutes: the 1-minute load decays
    assert m.loadavg.load1() < 2
    coalesce_to(m, 3)
    assert daemon(m).stat["wakeups"] == 1


def test_scrub_load_zero_never_wakes():
    m = scrub_machine()
    m.sysctl["scrub_load"] = 0
    m.set_sysctl("scrub_start", 0)
    coalesce_to(m, 3)
    assert daemon(m).stat["wakeups"] == 0 and daemon(m).stat["load_gate_refusals"] >= 2


def test_load_average_follows_running_tasks():
    m = tiny_machine(pages=8192, max_order=11, backing="none")
    m.claim_cpus(m.cpus, MMStruct("busy"))
    m.advance(60 * 10**9)
    one, five, fifteen = m.loadavg.loads()
    assert 1.2 < one < 2 and five < one and fifteen < five
    assert m.loadavg.text_fields()[0] == f"{m.loadavg.avenrun[0] + 10 >> FSHIFT}." \
        f"{((m.loadavg.avenrun[0] + 10) & 2047) * 100 >> FSHIFT:02d}"


# -- the V8 percentage policy --------------------------------------------------------

def test_v8_thresholds_divide_by_1024():
    assert v8_wake_needed(99, 1024, 100) and not v8_wake_needed(100, 1024, 100)
    # 1000 * 100 / 1024 = 97.6: 97 is the threshold (it would be 100 with /1000)
    assert v8_wake_needed(96, 1000, 100) and not v8_wake_needed(97, 1000, 100)
    assert v8_order_wanted(299, 1024, 300) and not v8_order_wanted(300, 1024, 300)
    assert v8_order_wanted(291, 1000, 300) and not v8_order_wanted(292, 1000, 300)
    assert not v8_order_wanted(0, 0, 300)


def test_v8_policy_zeroes_low_orders_up_to_ratio():
    m = tiny_machine(pages=512, max_order=5)
    cpu = m.cpus[0]
    held = [m.alloc.alloc_pages(cpu, 0, GFP_KERNEL) for _ in range(200)]
    for pfn in held[::2]:
        m.alloc.free_pages(cpu, pfn, 0)
    m.alloc.drain_pages(cpu)
    m.set_scrub_policy(POLICY_PERCENT)
    m.sysctl.update(scrub_start=100, scrub_stop=300, scrub_load=999)
    m.set_sysctl("scrub_start", 100)
    m.run_until_idle()
    zone = m.zones[0]
    for order in range(m.max_order):
        assert not v8_order_wanted(zone.free_area[ZEROED][order].nr_free,
                                   zone.free_area[NOT_ZEROED][order].nr_free, 300), order
    assert zone.zero_pages > 0
    check_invariants(m)


def test_policies_compared_on_the_same_workload():
    results = {}
    for policy in ("order", POLICY_PERCENT):
        m = tiny_machine(pages=8192, max_order=11, backing="none", seed=3)
        m.set_scrub_policy(policy)
        if policy == "order":
            m.sysctl.update(scrub_stop=2)
            m.set_sysctl("scrub_start", 4)
        else:
            m.sysctl.update(scrub_stop=300)
            m.set_sysctl("scrub_start", 100)
        m.run_until_idle()
        r = pft.run_job(m, 16 << 20, threads=1, rep=2)
        results[policy] = (m.counters()["prezero_alloc_zeroed"], r.fault_wsec)
    assert results["order"] != results[POLICY_PERCENT]
