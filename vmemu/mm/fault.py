"""Anonymous page faults (mm/memory.c do_anonymous_page) and task exit.

A fault on an untouched anonymous address takes the address space's
``page_table_lock``, drops it to allocate a ``__GFP_ZERO`` page (2.6.10 drops
the lock around the allocation), retakes it to install the pte, and returns
to user space, which then touches ``cachelines`` lines of the page.  A line
of a page this CPU has just cleared is in its cache; a line of a page cleared
earlier (by scrubd, the BTE, or at set-up) is not.

This is the model of one fault and of exit.  vmemu.mm.fault_batch runs a
series of equal faults of one thread in one step (host-side batching, the
same costs from the methods here); vmemu.mm.deferred does the faulted
pages' real-memory work later and in runs.  vmemu.shortcuts turns both off.
"""

from __future__ import annotations

from array import array
from typing import Final

from .. import shortcuts
from ..kernel.sched import CPU, SpinLock, Timeline
from .deferred import DeferredMemory
from .gfp import GFP_HIGHUSER, GFP_ZERO
from .memory import TOUCH_BYTE
from .page_alloc import ALLOC_CLEARED, PageAllocator

GFP_ANON: Final = GFP_HIGHUSER | GFP_ZERO
TOUCH: Final = "user:touch"            # the ledger's names for pft's touch loop in user space,
BZERO: Final = "user:bzero"            # and for pft -z's clear of each page


class MMStruct:
    """mm_struct: the pages an emulated task has faulted in, its page_table_lock,
    and its mmap_sem (every fault takes it for reading: the read count is one
    cache line that every faulting CPU writes twice).  ``bounce_ns`` prices
    their line's transfers (MemorySystem.shared_transfer for the CPUs of the
    task's threads).  Its counters (rss) are in the next line, which a fault
    writes under page_table_lock: ``counters_cpu`` wrote it last."""

    def __init__(self, name: str = "task", timeline: Timeline | None = None,
                 bounce_ns: list[list[int]] | None = None):
        self.name = name
        self.page_table_lock = SpinLock(f"{name}-page_table_lock", timeline, bounce_ns, kind="page_table_lock")
        self.mmap_sem = SpinLock(f"{name}-mmap_sem", timeline, bounce_ns, kind="mmap_sem")
        self.counters_cpu: CPU | None = None
        self.pages = array("q")      # pfns of the anonymous pages, in fault order
        self.nodes_run: set[int] = set()   # nodes whose CPUs ran this mm (cpu_vm_mask)


class FaultPath:
    """The costs and steps of one anonymous fault, and of exit, on a given
    machine, for a job touching ``cachelines`` lines of every page."""

    def __init__(self, alloc: PageAllocator, cost: dict, cache_line: int, cachelines: int = 1):
        self.alloc = alloc
        self.memory = alloc.memory
        self.fault_entry_ns = cost["fault_entry_ns"]
        self.pte_lock_ns = cost["pte_lock_ns"]
        self.memsys = alloc.memsys
        self.user_per_page_ns = cost["user_per_page_ns"]
        self.exit_per_page_ns = cost["exit_per_page_ns"]
        self.exit_lines = cost["exit_lines"]
        self.tlb_purge_ns = cost["exit_tlb_purge_per_page_ns"]
        self.cache_line = cache_line
        self.cachelines = cachelines
        # host side: the faulted pages' clear, check and touch, later and in runs
        self.later = DeferredMemory(alloc, cachelines, cache_line) \
            if shortcuts.enabled() and self.memory.real else None
        self.touch_now = self.later is None and cachelines and self.memory.real   # the user's stores, at the fault

    # -- the fault -----------------------------------------------------------

    def do_anonymous_page(self, cpu: CPU, mm: MMStruct) -> int | None:
        """One fault plus the user's touch of the job's lines.  Returns the
        pfn, or None when the allocation failed (the fault's VM_FAULT_OOM)."""
        alloc = self.alloc
        cpu.sys(self.fault_entry_ns, "do_page_fault")     # the trap, handle_mm_fault, the pte
        sem = mm.mmap_sem
        sem.hold(cpu, 0)                            # down_read: an atomic on the count's line
        lock = mm.page_table_lock
        lock.hold(cpu, self.pte_lock_ns)            # handle_pte_fault: the pte is none
        got = alloc.alloc_pages_how(cpu, 0, GFP_ANON, self.later)
        if got is None:
            return None
        pfn, how = got
        alloc.cpu_stat[cpu.id]["pgfault"] += 1
        lock.hold(cpu, self.pte_lock_ns + self.counters_ns(cpu, mm))   # retake, set_pte, rss++
        sem.hold(cpu, 0)                            # up_read: the count's line again (others may have it)
        mm.pages.append(pfn)
        cpu.user(self.touch_ns(cpu, pfn, alloc.page_zone(pfn).node), TOUCH)
        if how != ALLOC_CLEARED:              # the cleared page is in the cache already
            self.memsys.wrote(cpu.id, ((pfn, 1),), self.cachelines)
        if self.touch_now:
            self.memory.touch_lines(pfn, 1, self.cachelines, self.cache_line, TOUCH_BYTE)
        return pfn

    def counters_ns(self, cpu: CPU, mm: MMStruct) -> int:
        """rss++ under page_table_lock: mm_struct's counters are in another
        line than its locks, written only under the lock, so the holder
        stalls for the line's transfer from the CPU that installed the last
        pte (uncontended: the lock lets one CPU at a time ask for it)."""
        last, mm.counters_cpu = mm.counters_cpu, cpu
        if last is None or last is cpu:
            return 0
        return self.memsys.transfer[last.node][cpu.node]

    def touch_ns(self, cpu: CPU, pfn: int, node: int) -> int:
        """User space's touch loop on a page just faulted: its stores to the
        job's lines hit where this CPU's cache holds them (a page it just
        cleared) and miss to the page's memory otherwise."""
        return self.user_per_page_ns + self.memsys.touch_ns(cpu.id, pfn, node, self.cachelines)

    def touch_series_ns(self, cpu: CPU, node: int, cleared: bool) -> int:
        """touch_ns for each page of a fault series: pages this CPU cleared
        (all cached), or pages none of whose lines it holds (the series
        runs only while MemorySystem.scrubbed_lines says none can be)."""
        lines = self.cachelines
        memsys = self.memsys
        own = lines * memsys.hit_ns if cleared else memsys.store_run_ns(cpu.node, node, lines)
        return self.user_per_page_ns + own

    def settle(self) -> None:
        """Finish the faulted pages' deferred real-memory work (before they
        can be freed, and at the end of a task's faults)."""
        if self.later is not None:
            self.later.settle()

    # -- exit ------------------------------------------------------------------

    def zap_ns(self, cpu: CPU, mm: MMStruct, node: int) -> int:
        """zap_pte_range's cost for one page: the code, and exit_lines loads
        of lines on the page's node one after the other (its struct page, its
        zone's lru); an mm that ran on several nodes needs a global TLB purge
        on each of them (one node: a local purge, in exit_per_page_ns)."""
        ns = self.exit_per_page_ns + self.exit_lines * self.memsys.latency[cpu.node][node]
        nodes = len(mm.nodes_run)
        return ns + (self.tlb_purge_ns * nodes if nodes > 1 else 0)

    def exit_mmap(self, cpu: CPU, mm: MMStruct, limit: int | None = None) -> int:
        """Task exit: zap ptes and free pages, the most recent first, at most
        ``limit`` of them (all by default).  Returns pages freed; a page
        free_pages refuses raises its error after the frees before it."""
        self.settle()
        pages = mm.pages
        n = len(pages) if limit is None else min(limit, len(pages))
        chunk = pages[len(pages) - n:]
        chunk.reverse()                       # the most recent first
        step = len(chunk) if shortcuts.enabled() else 1
        done = 0
        while done < n:
            part = chunk[done:done + step]
            ok = self.alloc.free_order0_run(cpu, part, lambda zone: self.zap_ns(cpu, mm, zone.node))
            del pages[len(pages) - ok:]
            done += ok
            if ok < len(part):                # free_pages says why this one cannot be freed
                pfn = pages.pop()
                cpu.sys(self.zap_ns(cpu, mm, self.alloc.page_zone(pfn).node), "zap_pte_range")
                self.alloc.free_pages(cpu, pfn, 0)
                done += 1
        return n
