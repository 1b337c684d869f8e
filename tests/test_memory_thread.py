"""The memory thread (RealMemory.later / sync) changes no byte and
no figure: the same jobs with and without it give the same observations
(helpers.observe: results, counters, lists and a SHA-256 of all real
memory), also when the work is handed over in tiny pieces and when pages
come out of a clear dirty.  The last tests are RealMemory's own rules."""

from __future__ import annotations

import ctypes
import random
import threading

import pytest

import vmemu.mm.deferred as deferred_mod
import vmemu.mm.memory as memory_mod
from helpers import observe, pft_observe
from vmemu import pft
from vmemu.mm.memory import PAGE_POISON, RealMemory

PAGE = 4096


def observed(monkeypatch, thread: bool, case: dict, tiny_pieces: bool = False):
    monkeypatch.setenv("VMEMU_MEMORY_THREAD", "1" if thread else "0")
    if tiny_pieces:      # many hand-overs, series cut every 16 pages
        monkeypatch.setattr(deferred_mod, "OFFLOAD_BYTES", 16 * PAGE)
        monkeypatch.setattr(memory_mod, "OFFLOAD_BYTES", 16 * PAGE)
    try:
        return pft_observe(**case)
    finally:
        monkeypatch.undo()


CASES = [
    dict(profile="x86-64", kernel="stock", threads=1, nbytes=16 << 20, cachelines=1),
    dict(profile="x86-64", kernel="prezero", threads=1, nbytes=8 << 20, cachelines=3),
    dict(profile="x86-64", kernel="stock", threads=2, nbytes=8 << 20, cachelines=0),
    dict(profile="altix-8", kernel="prezero", threads=3, nbytes=8 << 20, cachelines=1),   # several nodes
]


@pytest.mark.slow
@pytest.mark.parametrize("tiny", [False, True])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['profile']}-{c['kernel']}-{c['threads']}t")
def test_memory_thread_changes_nothing(monkeypatch, case, tiny):
    case = dict(case, bzero=False, seed=3, backing="real")
    inline = observed(monkeypatch, False, case)
    threaded = observed(monkeypatch, True, case, tiny_pieces=tiny)
    assert threaded == inline
    assert inline["memory_sha256"]                  # real memory was compared


def test_dirty_pages_are_found_with_the_thread(monkeypatch):
    """A clear that leaves a byte behind in some pages during the job: the
    check on the memory thread finds them, and settle() counts and clears
    each, as the inline check does."""
    real_clear = RealMemory.clear
    victims = set(random.Random(5).sample(range(0, 65536), 2000))     # node_memory 256M: 65536 pages

    def sloppy_clear(self, pfn, npages):
        real_clear(self, pfn, npages)
        for v in victims.intersection(range(pfn, pfn + npages)) - self.dirtied:
            self.dirtied.add(v)
            addr, _ = self._addr(v, 1)
            ctypes.memset(addr + 100, 0x5A, 1)

    results = []
    for thread in (False, True):
        monkeypatch.setenv("VMEMU_MEMORY_THREAD", "1" if thread else "0")
        monkeypatch.setattr(deferred_mod, "OFFLOAD_BYTES", 16 * PAGE)
        m = pft.prepare_machine("x86-64", 3, "stock", backing="real",
                                overrides={"machine.node_memory": "256M"})
        try:
            monkeypatch.setattr(RealMemory, "clear", sloppy_clear)     # armed for the job only
            monkeypatch.setattr(RealMemory, "dirtied", set(), raising=False)
            r = pft.run_job(m, 16 << 20, 1, 1, 1)
            monkeypatch.undo()
            results.append(observe(m, [r]))
        finally:
            m.close()
    inline, threaded = results
    assert threaded == inline
    assert verify_fails(inline) > 0, "the sabotage never hit a faulted page"


def verify_fails(observation) -> int:
    return observation["snapshot"]["counters"]["prezero_verify_fail"]


# -- RealMemory's own rules ------------------------------------------------------

@pytest.fixture
def mem():
    m = RealMemory(PAGE, [(0, 64), (64, 64)], offload=True)     # two nodes, two arenas
    yield m
    m.close()


def test_every_access_waits_for_the_work_before_it(mem):
    mem.later(mem.fill, 3, 2, 0x11)
    mem.later(mem.fill, 4, 1, 0x22)
    assert mem.read(3, 2) == b"\x11" * PAGE + b"\x22" * PAGE


def test_poison_spans_nodes(mem):
    mem.clear(0, 64)
    mem.clear(64, 64)
    mem.poison(60, 4)             # the end of node 0
    mem.poison(64, 4)             # the start of node 1
    mem.poison(10, 1)
    assert mem.read(60, 4) == mem.read(64, 4) == bytes([PAGE_POISON]) * (4 * PAGE)
    assert mem.read(10, 1) == bytes([PAGE_POISON]) * PAGE
    assert mem.is_zero(11, 49) and mem.is_zero(68, 60)


def test_an_error_on_the_thread_reaches_the_next_sync(mem):
    def broken():
        raise RuntimeError("memory thread bug")
    mem.later(broken)
    mem.later(mem.fill, 0, 1, 0x33)     # work after the error is still done
    with pytest.raises(RuntimeError, match="memory thread bug"):
        mem.sync()
    assert mem.read(0, 1) == b"\x33" * PAGE
    mem.sync()                          # reported once


def test_close_finishes_the_work(monkeypatch):
    m = RealMemory(PAGE, [(0, 16)], offload=True)
    done = []
    m.later(lambda: done.append(m.is_zero(0, 16)))
    m.close()
    assert done == [True]


@pytest.mark.parametrize("offload", [False, True])
def test_is_zero_sees_any_byte(offload):
    m = RealMemory(PAGE, [(0, 4)], offload=offload)
    try:
        assert m.is_zero(0, 4) and m.is_zero(3, 1)
        for at in (0, 1, PAGE - 1, PAGE, 3 * PAGE + 17, 4 * PAGE - 1):
            addr, _ = m._addr(0, 4)
            ctypes.memset(addr + at, 1, 1)
            page = at // PAGE
            assert not m.is_zero(0, 4) and not m.is_zero(page, 1), at
            assert all(m.is_zero(p, 1) for p in range(4) if p != page), at
            ctypes.memset(addr + at, 0, 1)
        assert m.is_zero(0, 4)
    finally:
        m.close()


def test_without_the_thread_work_is_done_at_once():
    m = RealMemory(PAGE, [(0, 4)], offload=False)
    try:
        threads = threading.active_count()
        m.later(m.fill, 0, 1, 0x44)
        m.poison(1, 1)
        assert threading.active_count() == threads          # no memory thread was started
        assert m.read(0, 2) == b"\x44" * PAGE + bytes([PAGE_POISON]) * PAGE
    finally:
        m.close()


def test_single_cpu_hosts_get_no_thread(monkeypatch):
    monkeypatch.delenv("VMEMU_MEMORY_THREAD", raising=False)
    monkeypatch.setattr(memory_mod.os, "sched_getaffinity", lambda pid: {0})
    assert memory_mod.offload_default() is False
    monkeypatch.setattr(memory_mod.os, "sched_getaffinity", lambda pid: {0, 1})
    assert memory_mod.offload_default() is True
    monkeypatch.setenv("VMEMU_MEMORY_THREAD", "0")
    assert memory_mod.offload_default() is False


def test_row_workers_get_a_memory_thread_only_with_cpus_to_spare(monkeypatch):
    import os
    monkeypatch.delenv("VMEMU_MEMORY_THREAD", raising=False)
    pft.rows.memory_thread_policy(False)            # rows in parallel keep the CPUs busy already
    assert os.environ["VMEMU_MEMORY_THREAD"] == "0" and not memory_mod.offload_default()
    monkeypatch.setenv("VMEMU_MEMORY_THREAD", "1")
    pft.rows.memory_thread_policy(False)            # the user's choice stands
    assert os.environ["VMEMU_MEMORY_THREAD"] == "1"
    monkeypatch.delenv("VMEMU_MEMORY_THREAD")
    pft.rows.memory_thread_policy(True)
    assert os.environ["VMEMU_MEMORY_THREAD"] == "1"
