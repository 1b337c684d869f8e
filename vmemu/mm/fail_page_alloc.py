"""The kernel's ``fail_page_alloc`` fault-injection attribute.

Pure logic: ``lib/fault-inject.c`` (``should_fail_ex``) plus the page
allocator's hook (``should_fail_alloc_page``), driven by an injected
``random.Random`` so runs are reproducible.  Behaviour follows Linux 6.1
(the hook lived in mm/page_alloc.c there, mm/fail_page_alloc.c later).
Its debugfs files are vmemu/fs/debugfs.py.

    fpa = FailPageAlloc(rng=random.Random(seed))
    fpa.should_fail(order, gfp)          # -> bool, at every allocation
"""

from __future__ import annotations

import random
from typing import Callable, Optional

from ..lib.kstrtox import U32_MAX, U64_MAX
# the GFP bits the hook looks at; ignore-gfp-wait tests __GFP_WAIT
# (__GFP_DIRECT_RECLAIM in later kernels), __GFP_NOWARN silences the message
from .gfp import GFP_HIGHMEM, GFP_NOFAIL, GFP_NOWARN, GFP_WAIT


def s32(v: int) -> int:
    """What atomic_set() keeps of a 64-bit value: the low 32 bits, signed."""
    v &= U32_MAX
    return v - 2**32 if v > 2**31 - 1 else v


class FailPageAlloc:
    """State of the fail_page_alloc fault attribute, with kernel defaults."""

    def __init__(
        self,
        rng: Optional[random.Random] = None,
        printk: Optional[Callable[[str], None]] = None,
    ):
        # struct fault_attr (FAULT_ATTR_INITIALIZER)
        self.probability = 0      # percent; above 100 behaves like 100
        self.interval = 1
        self.times = 1            # failures left; -1 = unlimited
        self.space = 0            # budget consumed before any failure
        self.verbose = 2
        self.task_filter = False
        self.count = 0            # the attribute's call counter for interval
        # fail_page_alloc's own knobs
        self.min_order = 1
        self.ignore_gfp_wait = True
        self.ignore_gfp_highmem = True
        # emulator statistics (not a kernel file)
        self.calls = 0
        self.failures = 0
        self.rng = rng if rng is not None else random.Random()
        self.printk = printk

    # -- the allocator hook ------------------------------------------------

    def should_fail(
        self,
        order: int,
        gfp: int = 0,
        size: Optional[int] = None,
        *,
        make_it_fail: bool = False,
    ) -> bool:
        """should_fail_alloc_page: True if this allocation must fail.

        ``size`` is what is charged against ``space``.  The kernel's page
        allocator passes ``1 << order`` (pages, not bytes), which is the
        default here; pass something else only on purpose.
        ``make_it_fail`` stands for the current task's make-it-fail flag,
        which only matters when task-filter is on.
        """
        self.calls += 1
        failed = self._should_fail_alloc_page(order, gfp, size, make_it_fail)
        if failed:
            self.failures += 1
        return failed

    def cannot_fail(self, order: int, gfp: int) -> bool:
        """should_fail(order, gfp) would say no before it draws a number or
        changes anything but its call count (a fault series counts its calls
        with cannot_fail_calls instead)."""
        return (order < self.min_order or bool(gfp & GFP_NOFAIL) or bool(self.ignore_gfp_highmem and gfp & GFP_HIGHMEM)
                or bool(self.ignore_gfp_wait and gfp & GFP_WAIT) or self.probability == 0)

    def cannot_fail_calls(self, n: int) -> None:
        self.calls += n

    def _should_fail_alloc_page(self, order, gfp, size, make_it_fail) -> bool:
        if order < self.min_order:
            return False
        if gfp & GFP_NOFAIL:
            return False
        if self.ignore_gfp_highmem and gfp & GFP_HIGHMEM:
            return False
        if self.ignore_gfp_wait and gfp & GFP_WAIT:
            return False
        if size is None:
            size = 1 << order
        return self._should_fail_ex(size, make_it_fail, nowarn=bool(gfp & GFP_NOWARN))

    def _should_fail_ex(self, size: int, make_it_fail: bool, nowarn: bool) -> bool:
        """lib/fault-inject.c should_fail_ex, in its order of checks."""
        if self.probability == 0:
            return False
        if self.task_filter and not make_it_fail:
            return False
        if self.times == 0:
            return False
        if self.space > size:
            # Still inside the budget: spend it.  When space <= size the
            # budget is left as it is and the call goes on.
            self.space = s32(self.space - size)
            return False
        if self.interval > 1:
            # The counter only moves for calls that got this far.
            self.count = (self.count + 1) & U64_MAX
            if self.count % self.interval:
                return False
        # The random number is drawn only here, so earlier filters do not
        # disturb the sequence.
        if self.probability <= self.rng.randrange(100):
            return False
        if not nowarn:
            self._fail_dump()
        if self.times != -1:
            self.times = s32(self.times - 1)
        return True

    def _fail_dump(self) -> None:
        # The kernel also rate-limits this and dumps a stack if verbose > 1.
        if self.verbose > 0 and self.printk is not None:
            self.printk(
                "FAULT_INJECTION: forcing a failure.\n"
                f"name fail_page_alloc, interval {self.interval}, "
                f"probability {self.probability}, space {self.space}, "
                f"times {self.times}\n"
            )
