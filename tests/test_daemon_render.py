"""The daemon's request path without FUSE: the render cache (Kernel.render
serves a file's text again while the model's generation is unchanged) and
the one error policy of every callback (VmemuFUSE._wrapper)."""

from __future__ import annotations

import errno
import logging

import pytest

from vmemu.daemon import Kernel, load_fuse
from vmemu.fs.base import Handle
from vmemu.fs.procfs import parse_fault
from vmemu.machine import Machine


@pytest.fixture
def kernel():
    k = Kernel(Machine("x86-64", seed=1, backing="none"), 1)
    yield k
    k.machine.close()


def counting(f):
    """Count the renders of file f (the model is read once per render)."""
    calls = []
    render = f.render

    def counted():
        calls.append(1)
        return render()
    f.render = counted
    return calls


def read(kernel, path) -> bytes:
    f = kernel.tree[path]
    return f.read(kernel, Handle(f), 1 << 20, 0)


def test_unchanged_model_renders_once(kernel):
    calls = counting(kernel.tree["proc/buddyinfo"])
    texts = {read(kernel, "proc/buddyinfo") for _ in range(50)}
    assert len(texts) == 1 and len(calls) == 1


def test_a_write_is_seen_by_the_next_read(kernel):
    path = "proc/sys/vm/scrub_start"
    before = read(kernel, path)
    f = kernel.tree[path]
    new = b"3\n" if before != b"3\n" else b"5\n"
    assert f.write(kernel, Handle(f), new, 0) == len(new)
    assert read(kernel, path) == new != before


def test_every_locked_call_starts_a_new_generation(kernel):
    calls = counting(kernel.tree["proc/vmstat"])
    read(kernel, "proc/vmstat")
    kernel.call(kernel.machine.advance, 10**9)          # what the clock thread does
    read(kernel, "proc/vmstat")
    kernel.call(lambda: None)                           # even a call that changed nothing
    read(kernel, "proc/vmstat")
    assert len(calls) == 3


def test_a_failed_call_still_invalidates(kernel):
    # A call that raised may have changed the model half way: render again.
    calls = counting(kernel.tree["proc/meminfo"])
    read(kernel, "proc/meminfo")

    def fails():
        raise OSError(errno.EINVAL, "no")
    with pytest.raises(OSError):
        kernel.call(fails)
    read(kernel, "proc/meminfo")
    assert len(calls) == 2


def test_a_fault_job_shows_after_it_ends(kernel):
    before = read(kernel, "proc/buddyinfo")
    kernel.fault(parse_fault(b"bytes=4M\n", kernel.machine))
    after = read(kernel, "proc/buddyinfo")
    assert after != before
    assert after == kernel.tree["proc/buddyinfo"].generate()


def test_static_files_are_not_cached(kernel):
    path = next(p for p, f in kernel.tree.items() if not f.is_dir and not f.model)
    read(kernel, path)
    assert path not in kernel.rendered


# -- the error policy ----------------------------------------------------------

@pytest.fixture
def wrapper():
    load_fuse()
    from vmemu.fs.fuse_ops import VmemuFUSE
    fs = VmemuFUSE.__new__(VmemuFUSE)        # the constructor would mount
    return fs._wrapper


def test_results_pass_through(wrapper):
    assert wrapper(lambda: 7) == 7
    assert wrapper(lambda: None) == 0        # mfusepy's convention: no value is success


def test_oserror_becomes_its_errno(wrapper):
    fuse = load_fuse()

    def enoent():
        raise OSError(errno.ENOENT, "x")

    def eperm():
        raise fuse.FuseOSError(errno.EPERM)

    def no_errno():
        raise OSError("no errno")
    assert wrapper(enoent) == -errno.ENOENT
    assert wrapper(eperm) == -errno.EPERM
    assert wrapper(no_errno) == -errno.EIO


def test_a_bug_is_logged_and_is_eio(wrapper, caplog):
    def buggy(path):
        raise ZeroDivisionError("bug")
    with caplog.at_level(logging.ERROR, logger="vmemu.fuse"):
        assert wrapper(buggy, b"/proc/meminfo") == -errno.EIO
    assert "buggy" in caplog.text and "ZeroDivisionError" in caplog.text
