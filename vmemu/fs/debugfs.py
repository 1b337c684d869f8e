"""sys/kernel/debug/fail_page_alloc/: the fault-injection attribute's
debugfs files, with the kernel's parsing (lib/fault-inject.c
fault_create_debugfs_attr, fs/libfs.c simple_attr_*, fs/debugfs/file.c).

Each file is a File (vmemu.fs.base) whose ``show()`` renders its value and
whose ``store(data)`` parses one write() and sets it, or raises OSError and
changes nothing.

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

from ..lib.kstrtox import U32_MAX, kstrtobool, kstrtoll, kstrtoull
from ..mm.fail_page_alloc import FailPageAlloc, s32
from .base import File

DEBUGFS_SIZE = 0
# struct simple_attr's set_buf is char[24]: 23 bytes plus the NUL.
SIMPLE_ATTR_SET_BUF = 24
# kstrtobool_from_user copies into char buf[4]: 3 bytes plus the NUL.
KSTRTOBOOL_BUF = 4


def c_string(data: bytes, bufsize: int) -> bytes:
    """What the kernel sees after copying into char buf[bufsize]: at most
    bufsize - 1 bytes, ending at the first NUL."""
    return bytes(data[:bufsize - 1]).split(b"\0", 1)[0]


class DebugfsAttr(File):
    """A 0600 debugfs file showing one attribute of ``owner`` (the file
    "min-order" shows owner.min_order); every write is parsed as given
    (simple_attr_write ignores the offset)."""

    def __init__(self, owner: FailPageAlloc, name: str):
        self.owner = owner
        self.name = name
        self.attr = name.replace("-", "_")
        super().__init__(self.show, mode=0o600, size=DEBUGFS_SIZE)

    def show(self) -> bytes:
        raise NotImplementedError

    def store(self, data: bytes) -> int:
        raise NotImplementedError

    def write(self, kernel, h, data: bytes, offset: int) -> int:
        return kernel.call(self.store, data)


class NumericAttr(DebugfsAttr):
    """A DEFINE_SIMPLE_ATTRIBUTE / DEFINE_DEBUGFS_ATTRIBUTE(_SIGNED) file.

    kind: "ulong" (unsigned long, 64-bit), "u32", or "atomic" (atomic_t,
    written with the signed parser since 6.1's debugfs fix).
    """

    def __init__(self, owner: FailPageAlloc, name: str, kind: str):
        if kind not in ("ulong", "u32", "atomic"):
            raise ValueError(kind)
        self.kind = kind
        super().__init__(owner, name)

    def show(self) -> bytes:
        return b"%d\n" % getattr(self.owner, self.attr)

    def store(self, data: bytes) -> int:
        text = c_string(data, SIMPLE_ATTR_SET_BUF)
        try:
            if self.kind == "atomic":
                val = s32(kstrtoll(text))
            elif self.kind == "u32":
                val = kstrtoull(text) & U32_MAX
            else:
                val = kstrtoull(text)
        except OSError as e:
            raise OSError(e.errno, f"{self.name}: {e.strerror}") from None
        setattr(self.owner, self.attr, val)
        # simple_attr_write claims the whole input on success.
        return len(data)


class BoolAttr(DebugfsAttr):
    """A debugfs_create_bool file."""

    def show(self) -> bytes:
        return b"Y\n" if getattr(self.owner, self.attr) else b"N\n"

    def store(self, data: bytes) -> int:
        val = kstrtobool(c_string(data, KSTRTOBOOL_BUF))
        if val is not None:
            setattr(self.owner, self.attr, val)
        # debugfs_write_file_bool returns the full count even on bad input.
        return len(data)


def fail_page_alloc_files(fpa: FailPageAlloc) -> dict[str, DebugfsAttr]:
    """The debugfs files, name -> file, in the kernel's order."""
    attrs = [
        NumericAttr(fpa, "probability", "ulong"),
        NumericAttr(fpa, "interval", "ulong"),
        NumericAttr(fpa, "times", "atomic"),
        NumericAttr(fpa, "space", "atomic"),
        NumericAttr(fpa, "verbose", "ulong"),
        BoolAttr(fpa, "task-filter"),
        BoolAttr(fpa, "ignore-gfp-wait"),
        BoolAttr(fpa, "ignore-gfp-highmem"),
        NumericAttr(fpa, "min-order", "u32"),
    ]
    return {a.name: a for a in attrs}
