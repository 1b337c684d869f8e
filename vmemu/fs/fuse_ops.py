"""The thin mfusepy adapter: paths are looked up in the procfs table and the
file objects do the rest.  No file-specific logic here.

Import it only after vmemu.daemon.load_fuse() has pointed mfusepy at libfuse3.

VmemuFUSE wraps every callback so a failing request never takes the daemon
down: an OSError becomes its errno, anything else is logged and becomes EIO.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import logging
import stat as st
import threading
import time

import mfusepy as fuse

from .base import Handle
from .procfs import children

log = logging.getLogger("vmemu.fuse")


_thread_local = threading.local()


def keep_thread_state() -> None:
    """Keep this libfuse worker thread's Python thread state between requests.

    libfuse's worker threads are not Python threads: for every callback,
    ctypes creates a Python thread state and destroys it on return, which
    costs more than serving a small file.  One PyGILState_Ensure that is never
    released keeps the state for the thread's lifetime (measured: multi-threaded
    open+read+close about 3x faster; see docs/performance.md)."""
    if not getattr(_thread_local, "kept", False):
        ctypes.pythonapi.PyGILState_Ensure()
        _thread_local.kept = True


class VmemuFUSE(fuse.FUSE):
    """mfusepy's FUSE with the daemon's error policy in one place, and lean
    versions of the three callbacks every open+read+close makes.

    mfusepy wraps every callback in ``_wrapper``; this one keeps the worker's
    thread state, turns an OSError into its errno and anything else into a
    logged EIO, so a failing request never takes the daemon down.  ``open``,
    ``read`` and ``release`` skip mfusepy's path decoding (read and release
    find the file by handle; measured: about 5 us less daemon CPU per
    open+read+close, see docs/performance.md)."""

    def _wrapper(self, func, *args):
        keep_thread_state()
        try:
            return func(*args) or 0
        except OSError as e:                  # FuseOSError is one
            log.debug("%s: %s", func.__name__, e)
            return -e.errno if isinstance(e.errno, int) and e.errno > 0 else -errno.EIO
        except Exception:
            log.exception("%s%r failed", func.__name__, args[:1])
            return -errno.EIO

    def open(self, path: bytes, fip) -> int:
        fi = fip.contents
        fi.fh = self.operations.open(path.decode(self.encoding, self.errors), fi.flags)
        return 0

    def read(self, path, buf, size: int, offset: int, fip) -> int:
        data = self.operations.read(None, size, offset, fip.contents.fh)
        ctypes.memmove(buf, data, len(data))
        return len(data)

    def release(self, path, fip) -> int:
        return self.operations.release(None, fip.contents.fh)


class VmemuOps(fuse.Operations):
    use_ns = True

    def __init__(self, kernel):
        self.kernel = kernel
        self.tree = kernel.tree
        self.dirs = children(self.tree)
        self.handles: dict[int, Handle] = {}
        self.next_fh = itertools.count(1)
        self.mtime_ns = int(time.time() * 1e9)

    def lookup(self, path: str):
        f = self.tree.get(path.strip("/"))
        if f is None:
            raise OSError(errno.ENOENT, path)
        return f

    def getattr(self, path, fh=None):
        f = self.lookup(path)
        t = self.mtime_ns
        attrs = dict(st_uid=0, st_gid=0, st_atime=t, st_mtime=t, st_ctime=t)
        if f.is_dir:
            subdirs = sum(1 for entry in self.dirs[path.strip("/")] if self.tree[entry].is_dir)
            attrs.update(st_mode=st.S_IFDIR | f.mode, st_nlink=2 + subdirs, st_size=0)
        elif f.is_link:
            attrs.update(st_mode=st.S_IFLNK | f.mode, st_nlink=1, st_size=len(f.target))
        else:
            attrs.update(st_mode=st.S_IFREG | f.mode, st_nlink=1, st_size=f.size)
        return attrs

    def readlink(self, path):
        f = self.lookup(path)
        if not f.is_link:
            raise OSError(errno.EINVAL, path)
        return f.target

    def readdir(self, path, fh):
        f = self.lookup(path)
        if not f.is_dir:
            raise OSError(errno.ENOTDIR, path)
        # '.' and '..' first: procps sysctl -a skips the first two entries blindly.
        return [".", "..", *(entry.rpartition("/")[2] for entry in self.dirs[path.strip("/")])]

    def open(self, path, flags):
        f = self.lookup(path)
        if f.is_dir:
            raise OSError(errno.EISDIR, path)
        fh = next(self.next_fh)
        self.handles[fh] = Handle(f)
        return fh

    def read(self, path, size, offset, fh):
        h = self.handles[fh]
        return h.file.read(self.kernel, h, size, offset)

    def write(self, path, data, offset, fh):
        h = self.handles[fh]
        return h.file.write(self.kernel, h, data, offset)

    def truncate(self, path, length, fh=None):
        self.lookup(path)
        return 0        # sysctl -w and the shell's > open with O_TRUNC

    def release(self, path, fh):
        self.handles.pop(fh, None)
        return 0

    # No flush: every write has taken effect when it returns, so there is
    # nothing to do on close.  Left unset, libfuse answers ENOSYS once and the
    # kernel stops sending FLUSH, one request less per close.
    flush = None

    # The tree is fixed: what /proc answers for creating or removing entries.
    def create(self, path, mode, fi=None):
        raise OSError(errno.ENOENT, path)

    def mkdir(self, path, mode):
        raise OSError(errno.ENOENT, path)

    def unlink(self, path):
        raise OSError(errno.EPERM, path)

    def rmdir(self, path):
        raise OSError(errno.EPERM, path)

    def rename(self, old, new):
        raise OSError(errno.EPERM, old)

    def chmod(self, path, mode):
        raise OSError(errno.EPERM, path)

    def chown(self, path, uid, gid):
        raise OSError(errno.EPERM, path)

    def statfs(self, path):
        return dict(f_bsize=4096, f_frsize=4096, f_namemax=255)
