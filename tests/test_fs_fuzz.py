"""Hostile input to every writable file of the mount.

The writable files are found by walking the mount.  Every input goes both to
the mount and to the same file object of an in-process copy of the machine
(vmemu.daemon.Kernel on the same profile and seed: IntSysctl for sysctls,
the fail_page_alloc attrs for debugfs, the prezero parsers, the fault
trigger's rules).  The two must agree on the result (bytes written or
errno) and on the value read back afterwards; on an error the value must be
what it was; the daemon must answer a read of proc/meminfo after each case.
"""

import errno
import os
import random
import re
import threading
from collections import Counter

import pytest

from conftest import mounting, read
from vmemu.daemon import Kernel
from vmemu.fs.base import Handle
from vmemu.fs.procfs import FaultFile
from vmemu.machine import Machine

rng = random.Random(6)
INPUTS = [
    b"", b" ", b"\t\n", b"\n", b"\v\f\r",                         # empty, whitespace only
    b"5", b"+5", b"-5", b"--5", b"+-5", b"-+5", b"-", b"+",        # signs
    b"010", b"08", b"0x", b"0x1F", b"0X7fffffff", b"0x80000000", b"0x1Fg", b"0xffffffffffffffff",
    b"1" * 21, b"9" * 25, b"0" * 30 + b"1", b"-" + b"1" * 22,      # 21+ characters
    b"2147483647", b"2147483648", b"-2147483648", b"-2147483649",  # INT_MAX, +1, INT_MIN, -1
    b"4294967295", b"4294967296", b"18446744073709551615", b"18446744073709551616",
    b"5\0", b"5\x006", b"\x005", b"5\r", b"5\r\n", b"\r5", b"5\n\n", b"5 6\n", b" 5", b"\xa05",
    b"5.5", b"5abc", b"y", b"N\n", b"on", b"off", b"order\n", b"percentage", b"BTEFAIL_WERR\n",
    b"pages=3 rep=2", b"bytes=64K threads=2", b"pages=1 rep=99999999999999999999",
    bytes(range(256)), b"\xff\xfe\xc3\xa9", rng.randbytes(64), rng.randbytes(4097),
]
MIB = b"9" * (1 << 20)
CANDIDATES = [b"1\n", b"2\n", b"3\n", b"0\n", b"Y\n", b"N\n", b"order\n", b"percentage\n",
              b"BTEFAIL_WERR\n", b"BTEFAIL_DIR\n", b"kthread\n", b"task\n"]
TOTAL = {}


def fuse_write(path, chunks):
    """[(data, offset or None)] on one fd -> list of results (count or -errno)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        out = []
        for data, offset in chunks:
            try:
                out.append(os.write(fd, data) if offset is None else os.pwrite(fd, data, offset))
            except OSError as e:
                out.append(-e.errno)
        return out
    finally:
        os.close(fd)


def model_write(kernel, f, chunks):
    """The same writes on the in-process copy, with the file position the fd would have."""
    out, pos = [], 0
    for data, offset in chunks:
        at = pos if offset is None else offset
        if not data:
            r = 0                # an empty write() never reaches the daemon (FUSE drops it)
        else:
            try:
                r = f.write(kernel, Handle(f), data, at)
            except OSError as e:
                r = -e.errno
        if offset is None and r > 0:
            pos += r
        out.append(r)
    return out


def model_text(kernel, f) -> bytes:
    return f.read(kernel, Handle(f), 1 << 20, 0)


def mount_text(mp, path) -> bytes:
    with open(os.path.join(mp, path), "rb") as fh:
        return fh.read()


def writable_files(mp):
    out = []
    for d, _, names in os.walk(mp):
        for n in names:
            p = os.path.join(d, n)
            if os.stat(p).st_mode & 0o222:
                out.append(os.path.relpath(p, mp))
    return sorted(out)


def restore_input(text: bytes) -> bytes:
    """What to write to get ``text`` back: the bracketed choice, or the text itself."""
    m = re.search(rb"\[(\S+)\]", text)
    return m.group(1) + b"\n" if m else text


def valid_values(profile, path):
    """Up to 4 inputs that the file accepts whole, each with a different text."""
    scratch = Kernel(Machine(profile, seed=1, backing="none"), 1)
    f = scratch.tree[path]
    seen = {}
    for c in CANDIDATES:
        if model_write(scratch, f, [(c, None)]) == [len(c)]:
            seen.setdefault(model_text(scratch, f), c)
    scratch.machine.close()
    return list(seen.items())[:4]


def fuzz(mp, profile):
    kernel = Kernel(Machine(profile, seed=1, backing="none"), 1)
    paths = writable_files(mp)
    assert paths == sorted(p for p, f in kernel.tree.items() if not f.is_dir and not f.is_link and f.mode & 0o222)
    bad, count, outcomes = [], 0, Counter()

    def check(path, name, chunks, exp_results=None):
        nonlocal count
        f = kernel.tree[path]
        before = mount_text(mp, path)
        got = fuse_write(os.path.join(mp, path), chunks)
        want = model_write(kernel, f, chunks)
        count += len(chunks)
        outcomes.update(errno.errorcode[-r] if r < 0 else "ok" for r in got)
        after = mount_text(mp, path)
        if got != want:
            bad.append(f"{path} {name}: mount gave {got}, the parser {want}")
        if any(r < 0 for r in got) and len(chunks) == 1 and after != before:
            bad.append(f"{path} {name}: error {got} but the value changed {before!r} -> {after!r}")
        if not isinstance(f, FaultFile) and after != model_text(kernel, f):
            bad.append(f"{path} {name}: reads {after!r}, the parser's copy {model_text(kernel, f)!r}")
        assert read(mp, "proc/meminfo").startswith("MemTotal:"), (path, name)

    for path in paths:
        f = kernel.tree[path]
        original = mount_text(mp, path)
        assert isinstance(f, FaultFile) or original == model_text(kernel, f), path
        for data in INPUTS:
            check(path, repr(data[:24]), [(data, None)])
        check(path, "1 MiB", [(MIB, None)])
        for off in (1, 4095, 4096):
            check(path, f"pwrite at {off}", [(b"3\n", off)])
        check(path, "two writes on one fd", [(b"1", None), (b"2\n", None)])
        check(path, "two writes, second bad", [(b"1\n", None), (b"x\n", None)])
        # Concurrent writers: different valid values; the result is one of them.
        values = valid_values(profile, path)
        assert values, path
        faults = int(mount_text(mp, "proc/vmstat").split(b"pgfault ")[1].split()[0])
        results = []
        threads = [threading.Thread(target=lambda v=v: [results.extend(
            fuse_write(os.path.join(mp, path), [(v, None)])) for _ in range(5)]) for _, v in values]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), f"{path}: concurrent writers hang"
        count += 5 * len(values)
        if sorted(results) != sorted(len(v) for _, v in values for _ in range(5)):
            bad.append(f"{path} concurrent: {results}")
        now = mount_text(mp, path)
        if isinstance(f, FaultFile):
            faults_after = int(mount_text(mp, "proc/vmstat").split(b"pgfault ")[1].split()[0])
            if faults_after - faults != 5 * sum(int(v) for _, v in values):
                bad.append(f"{path} concurrent: {faults_after - faults} faults")
        else:
            texts = dict(values)
            if now not in texts:
                bad.append(f"{path} concurrent: reads {now!r}, none of {list(texts)}")
            else:
                model_write(kernel, f, [(texts[now], None)])
            # Put the file back as it was, on both sides.
            check(path, "restore", [(restore_input(original), None)])
            if mount_text(mp, path) != original:
                bad.append(f"{path}: not restored to {original!r}")
    kernel.machine.close()
    TOTAL[profile] = (len(paths), count, outcomes)
    assert not bad, f"{len(bad)} mismatches:\n" + "\n".join(bad[:40])
    return count


@pytest.mark.parametrize("profile, args", [("x86-64", ()),
                                           pytest.param("altix-8", ("--backing", "none"), marks=pytest.mark.slow)])
@pytest.mark.slow
def test_hostile_input_to_every_writable_file(profile, args, capsys):
    with mounting(profile, *args) as mp:
        fuzz(mp, profile)
    with capsys.disabled():
        files, n, outcomes = TOTAL[profile]
        print(f"\nfuzz {profile}: {n} inputs to {files} writable files ({dict(outcomes)}); "
              f"total so far {sum(c for _, c, _ in TOTAL.values())}")
