"""The file types of the mounted tree: a directory, a generated file, a
sysfs attribute, a symbolic link, and the per-open handle.  Every emulated file is one of
these (or a subclass in the module that owns its format), so that the FUSE
adapter and the tree know one interface: ``read(kernel, handle, size,
offset)`` and ``write(kernel, handle, data, offset)``.

A file never takes the model lock itself: it asks ``kernel.render(file)``
for its text and ``kernel.call(fn, ...)`` to change the model
(vmemu.daemon.Kernel), so the locking policy lives in one place.
"""

from __future__ import annotations

import errno

PAGE_SIZE = 4096      # the kernel's buffer for one write to a sysctl or a sysfs store()
PROCFS_SIZE = 0       # procfs files report size 0 (why every open uses direct_io)
SYSFS_SIZE = 4096     # sysfs attributes report a page


class Handle:
    """One open file: the snapshot its reads are served from (None until the
    first read)."""

    __slots__ = ("file", "data")

    def __init__(self, file):
        self.file = file
        self.data: bytes | None = None


class Dir:
    is_dir = True
    is_link = False
    __slots__ = ("mode",)      # altix-512's tree has thousands

    def __init__(self, mode: int = 0o555):
        self.mode = mode


class File:
    """A read-only generated file (mode 0444, procfs size 0 by default).

    ``render`` returns the whole text.  ``model`` says whether rendering reads
    the machine (then it happens under the model lock, see Kernel.render)."""

    is_dir = False
    is_link = False
    __slots__ = ("render", "mode", "size", "model", "path")

    def __init__(self, render, mode: int = 0o444, size: int = PROCFS_SIZE, model: bool = True):
        self.render = render
        self.mode = mode
        self.size = size
        self.model = model
        self.path = ""            # set by build_tree; the key of published snapshots

    def generate(self) -> bytes:
        text = self.render()
        return text.encode() if isinstance(text, str) else text

    def read(self, kernel, h: Handle, size: int, offset: int) -> bytes:
        # seq_file and sysfs: the first read renders, whatever its offset, and
        # later reads are served from that text (one cat sees one state); a
        # read at offset 0 renders afresh, so a re-read after lseek(0) is fresh.
        if offset == 0 or h.data is None:
            h.data = kernel.render(self)
        return h.data[offset:offset + size]

    def write(self, kernel, h: Handle, data: bytes, offset: int) -> int:
        # Root may open a 0444 proc file for writing, but the write fails (EIO).
        raise OSError(errno.EIO, f"{self.path} is not writable")


class Link:
    """A symbolic link, as sysfs's cpuN/nodeM -> ../../node/nodeM.  The
    target is relative, so it resolves inside a directory bound elsewhere
    (vmemu shell) as well as under the mount."""

    is_dir = False
    is_link = True
    model = False          # nothing to render: the kernel follows it
    mode = 0o777

    def __init__(self, target: str):
        self.target = target
        self.path = ""


def kb(m, pages: int) -> int:
    """Pages of the machine in kB, the unit of every meminfo."""
    return pages * m.page_size // 1024


def text(v) -> str:
    return v if isinstance(v, str) else f"{int(v)}\n"


class SysfsAttr(File):
    """A sysfs attribute: ``show()`` -> str or int; with ``store`` it is a
    control (0644) whose writes are parsed by ``parse`` and applied by
    ``store(value)`` under the model lock."""

    __slots__ = ("parse", "store")

    def __init__(self, show, parse=None, store=None):
        super().__init__(show, mode=0o644 if store else 0o444, size=SYSFS_SIZE)
        self.parse = parse
        self.store = store

    def generate(self) -> bytes:
        return text(self.render()).encode()

    def write(self, kernel, h, data: bytes, offset: int) -> int:
        if self.store is None:
            # sysfs refuses a read-only attribute at open; FUSE lets root open it, so refuse here
            raise OSError(errno.EACCES, f"{self.path} is read-only")
        # kernfs_fop_write_iter: a sysfs attribute takes at most a page per
        # write() (a longer one is cut there and the writer sees a short
        # write); the page is NUL-terminated, so a C string ends at the first
        # NUL; store() consumes it all; the offset is ignored.
        data = bytes(data[:PAGE_SIZE])
        value = self.parse(data.split(b"\0", 1)[0])
        kernel.call(self.store, value)
        return len(data)


_CONSTANTS: dict[str, bytes] = {}


class ConstAttr(SysfsAttr):
    """A read-only sysfs attribute whose text never changes (a CPU's
    topology, its caches): kept as bytes, rendered without the model lock."""

    __slots__ = ("value",)

    def __init__(self, value: str):
        File.__init__(self, None, size=SYSFS_SIZE, model=False)    # a read-only SysfsAttr with no show()
        self.parse = self.store = None
        self.value = _CONSTANTS.setdefault(value, value.encode())     # "0\n", "64\n": one object each

    def generate(self) -> bytes:
        return self.value
