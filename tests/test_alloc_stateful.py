"""Random alloc/free/clear sequences on small machines of both page sizes,
with every invariant checked after every step."""

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from helpers import tiny_machine
from vmemu.machine import check_invariants
from vmemu.mm.gfp import GFP_COLD, GFP_HIGHUSER, GFP_ZERO
from vmemu.mm.mmzone import NOT_ZEROED, ZEROED
from vmemu.mm.page_alloc import PageAllocError, free_one_page


class AllocatorMachine(RuleBasedStateMachine):
    page_size = 4096
    max_order = 5

    def __init__(self):
        super().__init__()
        self.m = tiny_machine(page_size=self.page_size, pages=96, max_order=self.max_order,
                              nodes=2, cpus_per_node=2)
        self.held: list[tuple[int, int]] = []     # (pfn, order) handed out
        self.total = sum(z.spanned_pages for z in self.m.zones)

    @rule(cpu=st.integers(0, 3), order=st.integers(0, 4), zero=st.booleans(), cold=st.booleans())
    def alloc(self, cpu, order, zero, cold):
        gfp = GFP_HIGHUSER | (GFP_ZERO if zero else 0) | (GFP_COLD if cold else 0)
        pfn = self.m.alloc.alloc_pages(self.m.cpus[cpu], order, gfp)
        if pfn is None:
            return
        if zero:
            # the zero guarantee, checked on real memory independently of the allocator
            assert self.m.memory.read(pfn, 1 << order) == bytes(self.page_size << order)
        # the user writes to its pages, so reuse without clearing would show
        self.m.memory.fill(pfn, 1 << order, 0x33)
        self.held.append((pfn, order))

    @precondition(lambda self: self.held)
    @rule(cpu=st.integers(0, 3), pick=st.integers(0, 10 ** 6))
    def free(self, cpu, pick):
        pfn, order = self.held.pop(pick % len(self.held))
        self.m.alloc.free_pages(self.m.cpus[cpu], pfn, order)

    @precondition(lambda self: self.held)
    @rule(pick=st.integers(0, 10 ** 6))
    def bad_free_is_refused(self, pick):
        pfn, order = self.held[pick % len(self.held)]
        bad = (pfn + 1, 0) if order else (pfn, 1)     # a tail page, or the wrong order
        before = self.m.snapshot()
        with pytest.raises(PageAllocError):
            self.m.alloc.free_pages(self.m.cpus[0], *bad)
        assert self.m.snapshot() == before

    @precondition(lambda self: self.held)
    @rule(cpu=st.integers(0, 3), pick=st.integers(0, 10 ** 6))
    def double_free_is_refused(self, cpu, pick):
        pfn, order = self.held.pop(pick % len(self.held))
        self.m.alloc.free_pages(self.m.cpus[cpu], pfn, order)
        before = self.m.snapshot()
        with pytest.raises(PageAllocError):
            self.m.alloc.free_pages(self.m.cpus[cpu], pfn, order)
        assert self.m.snapshot() == before

    @rule(cpu=st.integers(0, 3))
    def drain(self, cpu):
        self.m.alloc.drain_pages(self.m.cpus[cpu])

    @rule(zone_index=st.integers(0, 1), order=st.integers(0, 4))
    def clear_a_block(self, zone_index, order):
        """What scrubd does: take a NOT_ZEROED block, clear it, free it as ZEROED."""
        zone = self.m.zones[zone_index]
        area = zone.free_area[NOT_ZEROED][order]
        if not area.nr_free:
            return
        pfn = area.pop_head()
        zone.free_pages -= 1 << order
        self.m.memory.clear(pfn, 1 << order)
        free_one_page(zone, pfn, order, ZEROED)

    @invariant()
    def allocator_invariants(self):
        check_invariants(self.m)
        held = sum(1 << o for _, o in self.held)
        free = sum(z.free_pages + z.pcp_pages() for z in self.m.zones)
        assert held + free == self.total
        assert self.m.counters()["prezero_verify_fail"] == 0

    def teardown(self):
        self.m.close()


class AllocatorMachine16K(AllocatorMachine):
    page_size = 16384


STATEFUL = settings(max_examples=60, stateful_step_count=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

TestAllocator4K = AllocatorMachine.TestCase
TestAllocator4K.settings = STATEFUL
TestAllocator16K = AllocatorMachine16K.TestCase
TestAllocator16K.settings = STATEFUL
