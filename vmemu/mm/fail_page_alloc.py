"""The kernel's ``fail_page_alloc`` fault-injection attribute.

Pure logic: ``lib/fault-inject.c`` (``should_fail_ex``) plus the page
allocator's hook (``should_fail_alloc_page``), driven by an injected
``random.Random`` so runs are reproducible, and the debugfs files that
tune it, with the kernel's parsing.  Behaviour follows Linux 6.1 (the
hook lived in mm/page_alloc.c there, mm/fail_page_alloc.c later).

Interface for the FUSE layer, which mounts the files under
``sys/kernel/debug/fail_page_alloc/``::

    fpa = FailPageAlloc(rng=random.Random(seed))
    fpa.should_fail(order, gfp)          # -> bool, at every allocation
    for name, f in fpa.files().items():  # name -> DebugfsAttr
        f.mode                           # 0o600, like the kernel
        f.read()                         # -> bytes, the whole content
        f.write(data)                    # -> int, or raises OSError

``read()`` renders the whole file; serving offsets is the FUSE layer's job
(the kernel's simple_attr_read keeps a snapshot per open file for reads at
offset > 0).  ``write(data)`` takes what one write() brought.

Files (all 0600), in the kernel's creation order:

=================== ======== ================= ===========================
name                default  read format       write parsing
=================== ======== ================= ===========================
probability         0        ``%llu\\n``        kstrtoull, unsigned long
interval            1        ``%llu\\n``        kstrtoull, unsigned long
times               1        ``%lld\\n``        kstrtoll, stored as s32
space               0        ``%lld\\n``        kstrtoll, stored as s32
verbose             2        ``%llu\\n``        kstrtoull, unsigned long
task-filter         N        ``Y\\n``/``N\\n``   kstrtobool, bad input ignored
ignore-gfp-wait     Y        ``Y\\n``/``N\\n``   kstrtobool, bad input ignored
ignore-gfp-highmem  Y        ``Y\\n``/``N\\n``   kstrtobool, bad input ignored
min-order           1        ``%llu\\n``        kstrtoull, stored as u32
=================== ======== ================= ===========================

Numeric writes (simple_attr_write): only the first 23 bytes are looked at
and a NUL ends the text; base 0 (``0x`` hex, leading ``0`` octal); one
leading ``+`` (and for the signed files one ``-``); one trailing newline;
nothing else, not even leading blanks.  Malformed -> EINVAL, beyond 64 bits
-> ERANGE, ``-1`` to an unsigned file -> EINVAL.  ``times`` and ``space``
are atomic_t, so values are truncated to 32 bits (``4294967295`` is -1);
``min-order`` is u32 and truncated likewise.  A successful write returns
the full length.  On error nothing changes.

Bool writes (debugfs_write_file_bool / kstrtobool): only the first 3 bytes
count.  True: first byte y Y t T 1, or "o"/"O" then n/N.  False: n N f F 0,
or "o"/"O" then f/F.  Anything else is silently ignored; every write
returns the full length.  ("yes", "no", "true", "false", "on", "off",
"1\\n" all work; so does "nonsense", which reads as false.)

The kernel's ``verbose_ratelimit_interval_ms``, ``verbose_ratelimit_burst``
and the stack-trace filter files are not emulated.
"""

from __future__ import annotations

import errno
import random
from typing import Callable, Optional

from ..lib.kstrtox import S64_MAX, U32_MAX, U64_MAX, kstrtobool, kstrtoll, kstrtoull  # noqa: F401

# GFP bits the hook looks at, with their 2.6.x values (include/linux/gfp.h).
# ignore-gfp-wait tests __GFP_WAIT (__GFP_DIRECT_RECLAIM in later kernels).
GFP_HIGHMEM = 0x02
GFP_WAIT = 0x10
GFP_NOWARN = 0x200     # 6.x: suppresses the "forcing a failure" message
GFP_NOFAIL = 0x800     # never failed, whatever the settings


# struct simple_attr's set_buf is char[24]: 23 bytes plus the NUL.
SIMPLE_ATTR_SET_BUF = 24
# kstrtobool_from_user copies into char buf[4]: 3 bytes plus the NUL.
KSTRTOBOOL_BUF = 4


def _s32(v: int) -> int:
    """What atomic_set() keeps of a 64-bit value: the low 32 bits, signed."""
    v &= U32_MAX
    return v - 2**32 if v > 2**31 - 1 else v


def _u32(v: int) -> int:
    return v & U32_MAX


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
            self.space = _s32(self.space - size)
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
            self.times = _s32(self.times - 1)
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

    # -- debugfs -------------------------------------------------------------

    def files(self) -> dict[str, "DebugfsAttr"]:
        """The debugfs files, name -> file object, in the kernel's order."""
        attrs = [
            NumericAttr(self, "probability", "ulong"),
            NumericAttr(self, "interval", "ulong"),
            NumericAttr(self, "times", "atomic"),
            NumericAttr(self, "space", "atomic"),
            NumericAttr(self, "verbose", "ulong"),
            BoolAttr(self, "task-filter"),
            BoolAttr(self, "ignore-gfp-wait"),
            BoolAttr(self, "ignore-gfp-highmem"),
            NumericAttr(self, "min-order", "u32"),
        ]
        return {a.name: a for a in attrs}


# kstrto* live in vmemu/lib/kstrtox.py (lib/kstrtox.c); re-exported for the attrs below.


def _c_string(data: bytes, bufsize: int) -> bytes:
    """What the kernel sees after copying into char buf[bufsize]: at most
    bufsize - 1 bytes, ending at the first NUL."""
    return bytes(data[:bufsize - 1]).split(b"\0", 1)[0]


# -- the files ------------------------------------------------------------------

class DebugfsAttr:
    """Common shape of a debugfs file: ``name``, ``mode``, ``read()``,
    ``write()``.  The file "min-order" shows FailPageAlloc.min_order."""

    mode = 0o600

    def __init__(self, owner: FailPageAlloc, name: str):
        self.owner = owner
        self.name = name
        self.attr = name.replace("-", "_")

    def read(self) -> bytes:
        raise NotImplementedError

    def write(self, data: bytes) -> int:
        raise NotImplementedError


class NumericAttr(DebugfsAttr):
    """A DEFINE_SIMPLE_ATTRIBUTE / DEFINE_DEBUGFS_ATTRIBUTE(_SIGNED) file.

    kind: "ulong" (unsigned long, 64-bit), "u32", or "atomic" (atomic_t,
    written with the signed parser since 6.1's debugfs fix).
    """

    def __init__(self, owner: FailPageAlloc, name: str, kind: str):
        super().__init__(owner, name)
        if kind not in ("ulong", "u32", "atomic"):
            raise ValueError(kind)
        self.kind = kind

    def read(self) -> bytes:
        return b"%d\n" % getattr(self.owner, self.attr)

    def write(self, data: bytes) -> int:
        text = _c_string(data, SIMPLE_ATTR_SET_BUF)
        try:
            if self.kind == "atomic":
                val = _s32(kstrtoll(text))
            elif self.kind == "u32":
                val = _u32(kstrtoull(text))
            else:
                val = kstrtoull(text)
        except OSError as e:
            raise OSError(e.errno, f"{self.name}: {e.strerror}") from None
        setattr(self.owner, self.attr, val)
        # simple_attr_write claims the whole input on success.
        return len(data)


class BoolAttr(DebugfsAttr):
    """A debugfs_create_bool file."""

    def read(self) -> bytes:
        return b"Y\n" if getattr(self.owner, self.attr) else b"N\n"

    def write(self, data: bytes) -> int:
        val = kstrtobool(_c_string(data, KSTRTOBOOL_BUF))
        if val is not None:
            setattr(self.owner, self.attr, val)
        # debugfs_write_file_bool returns the full count even on bad input.
        return len(data)
