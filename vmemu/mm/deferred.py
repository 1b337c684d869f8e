"""The real-memory work of faulted pages, later and in runs (host side only).

A __GFP_ZERO page handed to a faulting task needs real-memory work: clear it
(unless it came zeroed), check that it reads zero, then the user's stores
into its first lines.  That work changes no virtual time and no counter
unless the check fails.  Nothing but the faulting task can read or write an
allocated page (scrubd and the BTE only take free blocks), and the page is
freed only by exit_mmap, which settles this work first.  So the allocator
may hand it here (PageAllocator.prep_zero_page's ``later``), and it is done
for many pages at once, in sorted contiguous runs, each page still cleared,
checked, then touched.  A page found dirty is PageAllocator.verify_zero's,
charged to the CPU that faulted it, as it would have been at the fault:
only the moment of the log line moves.  vmemu.shortcuts turns it off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..kernel.sched import CPU
from .memory import PIECE_BYTES, TOUCH_BYTE, merged
from .mmzone import Zone

if TYPE_CHECKING:
    from .page_alloc import PageAllocator


class DeferredMemory:
    """Pages waiting for their clear, check and touch (``lines`` lines of
    ``line_size`` bytes each, the job's), by zone and by whether to clear."""

    FLUSH_BYTES = 32 << 20      # waiting before the work is done

    def __init__(self, alloc: PageAllocator, lines: int, line_size: int):
        self.alloc = alloc
        self.memory = alloc.memory
        self.lines = lines
        self.line_size = line_size
        page = alloc.page_size
        self.flush_at = max(1, self.FLUSH_BYTES // page)
        self.piece = max(1, PIECE_BYTES // page)
        self.pending: dict[tuple, list] = {}      # (zone, clear) -> [(cpu, runs)]
        self.waiting = 0                          # pages in pending

    def clear_and_check(self, cpu: CPU, zone: Zone, runs: list[tuple[int, int]], clear: bool) -> None:
        """The allocator's work for these runs (first pfn, pages) of cpu's
        faults, and the user's touch after it: later."""
        key = (zone, clear)
        group = self.pending.get(key)
        if group is None:
            group = self.pending[key] = []
        group.append((cpu, runs))
        self.waiting += sum(n for _, n in runs)
        if self.waiting >= self.flush_at:
            self.flush()

    def flush(self) -> None:
        """Do the work waiting."""
        pending, self.pending, self.waiting = self.pending, {}, 0
        for (zone, clear), group in pending.items():
            runs = merged_runs(group)
            bad = self.memory.clear_check_touch(runs, clear, self.piece, self.lines, self.line_size)
            self._verify(zone, bad, group)

    def settle(self) -> None:
        """All of it done, and every dirty page found counted and cleared."""
        if self.pending:
            self.flush()

    def _verify(self, zone, bad: list, group) -> None:
        """Pieces found not all zero: verify_zero finds, counts, logs and
        clears each dirty page, charged to the CPU that faulted it; then
        the user's touch, as for the others."""
        if not bad:
            return
        faulted_by = {pfn: cpu for cpu, runs in group for first, n in runs for pfn in range(first, first + n)}
        for at, k in bad:
            for pfn in range(at, at + k):
                self.alloc.verify_zero(faulted_by[pfn], zone, pfn, 1)
            if self.lines:
                self.memory.touch_lines(at, k, self.lines, self.line_size, TOUCH_BYTE)


def merged_runs(group) -> list[tuple[int, int]]:
    """The runs of every (cpu, runs) of group, sorted and joined where they
    touch (threads of one node take turns at the same blocks)."""
    return merged(r for _cpu, rs in group for r in rs)
