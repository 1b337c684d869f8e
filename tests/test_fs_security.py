"""What the mount lets through, beyond the mode checks of test_fs_perms.py:
nothing outside the fixed tree, no mode the kernel would not give, no write
by a non-root user, allow_other only on request, no mount over content."""

import errno
import os
import re
import shutil
import stat

import pytest

from conftest import mounting, read, sh, vmemu
from vmemu.daemon import load_fuse
from vmemu.mounts import mount_state

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "interfaces.md")
as_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"),
                             reason="needs root and runuser to act as nobody")


@pytest.fixture(scope="module")
def altix():
    with mounting("altix-8", "--backing", "none") as mp:
        yield mp


@pytest.fixture(scope="module", params=["x86-64", "altix-8"])
def tree(request, mounted, altix):
    """Every mount, with {path: st_mode} of everything in it (lstat: nothing followed)."""
    mp = mounted if request.param == "x86-64" else altix
    entries = {}
    for d, dirs, files in os.walk(mp):
        for n in dirs + files:
            p = os.path.join(d, n)
            entries[os.path.relpath(p, mp)] = os.lstat(p).st_mode
    return mp, entries


def doc_modes():
    """[(regex of a path, mode)] from the tables of docs/interfaces.md."""
    rows, prefix = [], ""
    for line in open(DOC):
        if line.startswith("## "):
            prefix = line.split()[1].strip("/")
        m = re.match(r"\| (`[^|]+) \| (0[0-7]{3}) \|", line)
        if not m:
            continue
        names = re.findall(r"`([^`]+)`", m.group(1))
        first = names[0] if names[0].startswith(("proc/", "sys/")) else f"{prefix}/{names[0]}"
        base = first.rpartition("/")[0]
        for path in [first] + [f"{base}/{n}" for n in names[1:]]:
            pattern = re.sub(r"<[A-Z]>", r"\\d+", re.escape(path)).replace("<name>", "[^/]+")
            rows.append((re.compile(pattern), int(m.group(2), 8)))
    return rows


def test_modes_are_the_documented_kernel_modes(tree):
    mp, entries = tree
    rows = doc_modes()
    wrong = []
    for path, mode in entries.items():
        if stat.S_ISLNK(mode):            # sysfs's cpu<C>/node<N> and node<N>/cpu<C>: inside the tree
            target = os.readlink(os.path.join(mp, path))
            assert not os.path.isabs(target), (path, target)
            assert os.path.realpath(os.path.join(mp, path)).startswith(os.path.realpath(mp) + "/"), path
        if stat.S_ISDIR(mode):
            want = {0o700 if path == "sys/kernel/debug" else 0o555}
        else:
            assert stat.S_ISREG(mode) or stat.S_ISLNK(mode), path
            want = {m for rx, m in rows if rx.fullmatch(path)}
        if want != {stat.S_IMODE(mode)}:
            wrong.append(f"{path}: {oct(stat.S_IMODE(mode))}, documented {sorted(map(oct, want))}")
    assert not wrong, "\n".join(wrong)
    assert os.stat(mp).st_uid == 0 and all(os.stat(os.path.join(mp, p)).st_uid == 0 for p in entries)


def test_root_cannot_write_read_only_files(tree):
    mp, entries = tree
    for path, mode in entries.items():
        if stat.S_ISREG(mode) and not mode & 0o222:
            fd = os.open(os.path.join(mp, path), os.O_WRONLY)
            try:
                with pytest.raises(OSError) as e:
                    os.write(fd, b"0\n")
                assert e.value.errno in (errno.EIO, errno.EACCES), path     # procfs EIO, sysfs EACCES
            finally:
                os.close(fd)


@as_root
def test_nobody_cannot_write_anything(tree):
    mp, entries = tree
    files = [os.path.join(mp, p) for p, mode in entries.items() if stat.S_ISREG(mode)]
    controls = {p: read(mp, os.path.relpath(p, mp)) for p in files if os.stat(p).st_mode & 0o222}
    script = 'while read f; do if ( printf 1 > "$f" ) 2>/dev/null; then echo "WROTE $f"; fi; done'
    p = sh(f"printf '%s\\n' {' '.join(files)} | runuser -u nobody -- sh -c '{script}'")
    assert p.returncode == 0 and p.stdout == "", p.stdout + p.stderr
    assert {p: read(mp, os.path.relpath(p, mp)) for p in controls} == controls


def test_nothing_can_be_created_linked_or_renamed(tree):
    mp, entries = tree
    j = lambda p: os.path.join(mp, p)
    attempts = [
        (os.symlink, "/etc/passwd", j("proc/passwd")),
        (os.symlink, "/etc/passwd", j("x")),
        (os.symlink, "../../../etc/passwd", j("proc/sys/vm/x")),
        (os.link, j("proc/meminfo"), j("proc/m2")),
        (os.link, "/etc/passwd", j("proc/passwd")),
        (os.mkdir, j("proc/d")),
        (os.mkdir, j("proc/sys/vm/../../../d")),
        (os.mknod, j("proc/fifo"), 0o600 | stat.S_IFIFO),
        (os.rename, j("proc/meminfo"), j("proc/m3")),
        (os.rename, j("proc/sys/vm/scrub_start"), j("../outside")),
        (os.unlink, j("proc/meminfo")),
        (os.rmdir, j("proc/sys/vm")),
        (os.chmod, j("proc/sys/vm/scrub_start"), 0o666),
        (os.chown, j("proc/meminfo"), 65534, 65534),
        (os.setxattr, j("proc/meminfo"), "user.x", b"1"),
        (os.open, j("proc/new"), os.O_CREAT | os.O_WRONLY, 0o644),
        (os.open, j("proc/sys/vm/scrub_start"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644),
        (os.open, j("proc/../../etc/passwd"), os.O_RDONLY),
        (os.open, j("proc/meminfo/../meminfo"), os.O_RDONLY),
        (os.open, j("proc/..%2f..%2fetc/passwd"), os.O_RDONLY),
    ]
    for fn, *args in attempts:
        with pytest.raises(OSError):
            fn(*args)
    after = {os.path.relpath(os.path.join(d, n), mp) for d, ds, fs in os.walk(mp) for n in ds + fs}
    assert after == set(entries)
    assert not os.path.exists(os.path.join(os.path.dirname(mp), "outside"))


def test_daemon_lookup_never_leaves_the_table(mounted):
    # Paths reach the daemon resolved by the kernel; even if a raw one came in,
    # the lookup is a table look-up, with no file system underneath.
    load_fuse()
    from vmemu.fs.fuse_ops import VmemuOps
    from vmemu.daemon import Kernel
    from vmemu.machine import Machine
    ops = VmemuOps(Kernel(Machine("x86-64", backing="none")))
    for path in ("/../../etc/passwd", "/proc/../../etc/passwd", "/proc/sys/vm/../../../etc/shadow",
                 "//etc/passwd", "/proc/meminfo/..", "/etc/passwd", "/proc/./meminfo", "/proc/meminfo\0"):
        with pytest.raises(Exception) as e:
            ops.getattr(path)
        assert getattr(e.value, "errno", None) == errno.ENOENT, path
    ops.kernel.machine.close()


def mount_options(mp):
    real = os.path.realpath(mp)
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        if fields[4] == real:
            return line.split(" - ")[1].split()[2].split(",") + fields[5].split(",")
    raise AssertionError(f"{mp} not in mountinfo")


def test_allow_other_only_when_asked(mounted, fresh_mountpoint):
    assert "allow_other" in mount_options(mounted)            # conftest mounts with --allow-other
    vmemu("mount", fresh_mountpoint, "--profile", "x86-64", "--backing", "none")
    opts = mount_options(fresh_mountpoint)
    assert "allow_other" not in opts and "default_permissions" in opts and "nosuid" in opts, opts
    vmemu("umount", fresh_mountpoint)


def test_nonempty_only_with_the_option(fresh_mountpoint):
    mp = fresh_mountpoint
    with open(os.path.join(mp, "precious"), "w") as f:
        f.write("keep me\n")
    p = vmemu("mount", mp, "--profile", "x86-64", "--backing", "none", check=False)
    assert p.returncode == 1 and "not empty" in p.stderr and mount_state(mp) == "unmounted"
    vmemu("mount", mp, "--profile", "x86-64", "--backing", "none", "--nonempty")
    assert mount_state(mp) == "mounted" and not os.path.exists(os.path.join(mp, "precious"))
    vmemu("umount", mp)
    assert open(os.path.join(mp, "precious")).read() == "keep me\n"
    os.unlink(os.path.join(mp, "precious"))
