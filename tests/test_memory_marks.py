"""RealMemory against a plain bytearray: random clears, fills, poisons,
single-byte stores and touch loops (pft's, and stores no mark describes)
on two nodes, with every page's bytes, the zero check and the digest
compared after every step.  The marks (poisoned, touched) and the host
memory given back are how RealMemory holds the bytes; the bytes are the
same as if every call had written them."""

from __future__ import annotations

import hashlib

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from vmemu.mm.memory import PAGE_POISON, TOUCH_BYTE, RealMemory

PAGE = 4096
LINE = 128
NODES = [(0, 24), (24, 40)]          # two arenas: pfns 0..23 and 24..63
TOTAL = 64


def spans():
    """(pfn, npages) inside one node."""
    return st.sampled_from(NODES).flatmap(
        lambda node: st.integers(node[0], node[0] + node[1] - 1).flatmap(
            lambda pfn: st.tuples(st.just(pfn), st.integers(1, node[0] + node[1] - pfn))))


class MemoryMachine(RuleBasedStateMachine):

    def __init__(self):
        super().__init__()
        self.mem = RealMemory(PAGE, NODES)
        self.ref = bytearray(TOTAL * PAGE)      # a fresh mapping reads as zero

    def teardown(self):
        self.mem.close()

    def _set(self, pfn: int, npages: int, byte: int) -> None:
        self.ref[pfn * PAGE:(pfn + npages) * PAGE] = bytes([byte]) * (npages * PAGE)

    @rule(span=spans())
    def clear(self, span):
        self.mem.clear(*span)
        self._set(*span, 0)

    @rule(span=spans(), byte=st.sampled_from([0, 1, 0x5A]))
    def fill(self, span, byte):
        self.mem.fill(*span, byte)
        self._set(*span, byte)

    @rule(span=spans())
    def poison(self, span):
        self.mem.poison(*span)
        self._set(*span, PAGE_POISON)

    @rule(pfn=st.integers(0, TOTAL - 1), offset=st.integers(0, PAGE - 1), byte=st.integers(0, 255))
    def touch(self, pfn, offset, byte):
        self.mem.touch(pfn, offset, byte)
        self.ref[pfn * PAGE + offset] = byte

    @rule(span=spans(), lines=st.integers(0, PAGE // LINE), byte=st.sampled_from([TOUCH_BYTE, 0x77]))
    def touch_lines(self, span, lines, byte):
        pfn, npages = span
        self.mem.touch_lines(pfn, npages, lines, LINE, byte)
        for p in range(pfn, pfn + npages):
            for line in range(lines):
                self.ref[p * PAGE + line * LINE] = byte

    @invariant()
    def same_bytes(self):
        for first, pages in NODES:
            data = self.mem.read(first, pages)
            assert data == bytes(self.ref[first * PAGE:(first + pages) * PAGE])
        for p in range(TOTAL):
            zero = not any(self.ref[p * PAGE:(p + 1) * PAGE])
            assert self.mem.is_zero(p, 1) == zero, p

    @invariant()
    def same_digest(self):
        assert self.mem.digest() == hashlib.sha256(self.ref).hexdigest()


TestMemoryMarks = MemoryMachine.TestCase
TestMemoryMarks.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])
