"""The thin mfusepy adapter: paths are looked up in the procfs table and the
file objects do the rest.  No file-specific logic here.

Import it only after vmemu.daemon.load_fuse() has pointed mfusepy at libfuse3.

Every callback is wrapped so a failing request never takes the daemon down:
an OSError becomes its errno, anything else is logged and becomes EIO.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import stat as st
import time

import mfusepy as fuse

from .procfs import Handle, children

log = logging.getLogger("vmemu.fuse")


def guarded(method):
    @functools.wraps(method)
    def wrapper(self, *args):
        try:
            return method(self, *args)
        except OSError as e:
            log.debug("%s%r: %s", method.__name__, args[:1], e)
            raise fuse.FuseOSError(e.errno or errno.EIO) from None
        except Exception:
            log.exception("%s%r failed", method.__name__, args[:1])
            raise fuse.FuseOSError(errno.EIO) from None
    return wrapper


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

    @guarded
    def getattr(self, path, fh=None):
        f = self.lookup(path)
        t = self.mtime_ns
        attrs = dict(st_uid=0, st_gid=0, st_atime=t, st_mtime=t, st_ctime=t)
        if f.is_dir:
            subdirs = sum(1 for name in self.dirs[path.strip("/")]
                          if self.tree[(path.strip("/") + "/" + name).lstrip("/")].is_dir)
            attrs.update(st_mode=st.S_IFDIR | f.mode, st_nlink=2 + subdirs, st_size=0)
        else:
            attrs.update(st_mode=st.S_IFREG | f.mode, st_nlink=1, st_size=f.size)
        return attrs

    @guarded
    def readdir(self, path, fh):
        f = self.lookup(path)
        if not f.is_dir:
            raise OSError(errno.ENOTDIR, path)
        # '.' and '..' first: procps sysctl -a skips the first two entries blindly.
        return [".", "..", *self.dirs[path.strip("/")]]

    @guarded
    def open(self, path, flags):
        f = self.lookup(path)
        if f.is_dir:
            raise OSError(errno.EISDIR, path)
        fh = next(self.next_fh)
        self.handles[fh] = Handle(f)
        return fh

    @guarded
    def read(self, path, size, offset, fh):
        h = self.handles[fh]
        return h.file.read(self.kernel, h, size, offset)

    @guarded
    def write(self, path, data, offset, fh):
        h = self.handles[fh]
        return h.file.write(self.kernel, h, data, offset)

    @guarded
    def truncate(self, path, length, fh=None):
        self.lookup(path)
        return 0        # sysctl -w and the shell's > open with O_TRUNC

    @guarded
    def release(self, path, fh):
        self.handles.pop(fh, None)
        return 0

    @guarded
    def flush(self, path, fh):
        return 0

    # The tree is fixed: what /proc answers for creating or removing entries.
    @guarded
    def create(self, path, mode, fi=None):
        raise OSError(errno.ENOENT, path)

    @guarded
    def mkdir(self, path, mode):
        raise OSError(errno.ENOENT, path)

    @guarded
    def unlink(self, path):
        raise OSError(errno.EPERM, path)

    @guarded
    def rmdir(self, path):
        raise OSError(errno.EPERM, path)

    @guarded
    def rename(self, old, new):
        raise OSError(errno.EPERM, old)

    @guarded
    def chmod(self, path, mode):
        raise OSError(errno.EPERM, path)

    @guarded
    def chown(self, path, uid, gid):
        raise OSError(errno.EPERM, path)

    @guarded
    def statfs(self, path):
        return dict(f_bsize=4096, f_frsize=4096, f_namemax=255)
