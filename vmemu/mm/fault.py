"""Anonymous page faults (mm/memory.c do_anonymous_page) and task exit.

A fault on an untouched anonymous address takes the address space's
``page_table_lock``, drops it to allocate a ``__GFP_ZERO`` page (2.6.10 drops
the lock around the allocation), retakes it to install the pte, and returns
to user space, which then touches ``cachelines`` lines of the page.  A line
of a page this CPU has just cleared is in its cache; a line of a page cleared
earlier (by scrubd, the BTE, or at set-up) is not.
"""

from __future__ import annotations

from array import array

from ..kernel.sched import CPU, SpinLock
from .gfp import GFP_HIGHUSER, GFP_ZERO
from .page_alloc import ALLOC_CLEARED, PageAllocator

GFP_ANON = GFP_HIGHUSER | GFP_ZERO


class MMStruct:
    """mm_struct: the pages an emulated task has faulted in, and its page_table_lock."""

    def __init__(self, name: str = "task", timeline=None):
        self.page_table_lock = SpinLock(f"{name}-page_table_lock", timeline)
        self.pages = array("q")      # pfns of the anonymous pages, in fault order

    @property
    def rss(self) -> int:
        return len(self.pages)


class FaultPath:
    """The costs and steps of one anonymous fault on a given machine."""

    def __init__(self, alloc: PageAllocator, cost: dict, cache_line: int):
        self.alloc = alloc
        self.memory = alloc.memory
        self.fault_entry_ns = cost["fault_entry_ns"]
        self.pte_lock_ns = cost["pte_lock_ns"]
        self.hit_ns = cost["cacheline_hit_ns"]
        self.miss_ns = cost["cacheline_miss_ns"]
        self.user_per_page_ns = cost["user_per_page_ns"]
        self.exit_per_page_ns = cost["exit_per_page_ns"]
        self.cache_line = cache_line

    def do_anonymous_page(self, cpu: CPU, mm: MMStruct, cachelines: int) -> int | None:
        """One fault plus the user's touch of ``cachelines`` lines.
        Returns the pfn, or None when the allocation failed (the fault's VM_FAULT_OOM)."""
        cpu.sys(self.fault_entry_ns)
        lock = mm.page_table_lock
        lock.hold(cpu, self.pte_lock_ns)            # handle_pte_fault: find the pte is none
        got = self.alloc.alloc_pages_how(cpu, 0, GFP_ANON)
        if got is None:
            return None
        pfn, how = got
        lock.hold(cpu, self.pte_lock_ns)            # retake, set_pte, rss++
        mm.pages.append(pfn)
        self.alloc.cpu_stat[cpu.id]["pgfault"] += 1
        # user space: the touch loop
        line_ns = self.hit_ns if how == ALLOC_CLEARED else self.miss_ns
        cpu.user(self.user_per_page_ns + cachelines * line_ns)
        if self.memory.real:
            for line in range(cachelines):
                self.memory.touch(pfn, line * self.cache_line, 1)
        return pfn

    def exit_mmap(self, cpu: CPU, mm: MMStruct, limit: int | None = None) -> int:
        """Task exit: zap ptes and free pages, the most recent first, at most
        ``limit`` of them (all by default). Returns pages freed."""
        pages = mm.pages
        n = len(pages) if limit is None else min(limit, len(pages))
        free = self.alloc.free_pages
        for _ in range(n):
            cpu.sys(self.exit_per_page_ns)
            free(cpu, pages.pop(), 0)
        return n
