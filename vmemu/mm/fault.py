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
    """mm_struct: the pages an emulated task has faulted in, its page_table_lock,
    and its mmap_sem (every fault takes it for reading: the read count is one
    cache line that every faulting CPU writes twice)."""

    def __init__(self, name: str = "task", timeline=None, cost: dict | None = None, distance=None):
        cost = cost or {}
        bounce = (cost.get("lock_bounce_local_ns", 0), cost.get("lock_bounce_remote_ns", 0), distance,
                  cost.get("lock_bounce_router_ns", 0))
        self.page_table_lock = SpinLock(f"{name}-page_table_lock", timeline, *bounce)
        self.mmap_sem = SpinLock(f"{name}-mmap_sem", timeline, *bounce)
        self.pages = array("q")      # pfns of the anonymous pages, in fault order
        self.nodes_run: set[int] = set()   # nodes whose CPUs ran this mm (cpu_vm_mask)

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
        self.miss_remote_ns = cost["cacheline_miss_remote_ns"]
        self.user_per_page_ns = cost["user_per_page_ns"]
        self.exit_per_page_ns = cost["exit_per_page_ns"]
        self.exit_remote_per_page_ns = cost["exit_remote_per_page_ns"]
        self.tlb_purge_ns = cost["exit_tlb_purge_per_page_ns"]
        self.page_zone = alloc.page_zone
        self.cache_line = cache_line

    def do_anonymous_page(self, cpu: CPU, mm: MMStruct, cachelines: int) -> int | None:
        """One fault plus the user's touch of ``cachelines`` lines.
        Returns the pfn, or None when the allocation failed (the fault's VM_FAULT_OOM)."""
        cpu.sys(self.fault_entry_ns)
        mm.mmap_sem.hold(cpu, 0)                    # down_read(&mm->mmap_sem)
        lock = mm.page_table_lock
        lock.hold(cpu, self.pte_lock_ns)            # handle_pte_fault: find the pte is none
        got = self.alloc.alloc_pages_how(cpu, 0, GFP_ANON)
        if got is None:
            return None
        pfn, how = got
        lock.hold(cpu, self.pte_lock_ns)            # retake, set_pte, rss++
        mm.mmap_sem.hold(cpu, 0)                    # up_read
        mm.pages.append(pfn)
        self.alloc.cpu_stat[cpu.id]["pgfault"] += 1
        # user space: the touch loop; a line not in this CPU's cache comes
        # from the page's memory, local or remote
        if how == ALLOC_CLEARED:
            line_ns = self.hit_ns
        elif self.page_zone(pfn).node == cpu.node:
            line_ns = self.miss_ns
        else:
            line_ns = self.miss_remote_ns
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
        page_zone = self.page_zone
        local, remote = self.exit_per_page_ns, self.exit_remote_per_page_ns
        if len(mm.nodes_run) > 1:
            # an mm that ran on several nodes needs global TLB purges (ptc.ga
            # across NUMAlink) while its ptes are zapped
            local += self.tlb_purge_ns
            remote += self.tlb_purge_ns
        for _ in range(n):
            pfn = pages.pop()
            # zap the pte and free: the struct page and its zone live with the memory
            cpu.sys(local if page_zone(pfn).node == cpu.node else remote)
            free(cpu, pfn, 0)
        return n
