"""Mount, status, umount, signals, stale mounts, and the benchmark script."""

import os
import signal
import subprocess
import sys

import pytest

from conftest import VMEMU, read, vmemu, wait_for
from vmemu.daemon import SetupError, load_fuse
from vmemu.mounts import mount_state, run_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def daemon_pid(mp) -> int:
    with open(run_files(mp)["pid"]) as f:
        return int(f.read())


def gone(pid) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_mount_status_umount(fresh_mountpoint):
    mp = fresh_mountpoint
    p = vmemu("mount", mp, "--profile", "x86-64")
    assert "mounted on" in p.stdout
    assert mount_state(mp) == "mounted"
    pid = daemon_pid(mp)
    st = vmemu("status", mp).stdout
    assert "state:      mounted" in st and "profile:    x86-64" in st and f"pid:        {pid}" in st
    assert "(virtual)" in st and os.path.exists(run_files(mp)["log"])
    again = vmemu("mount", mp, check=False)
    assert again.returncode == 1 and "already mounted" in again.stderr
    vmemu("umount", mp)
    assert mount_state(mp) == "unmounted" and gone(pid)
    assert not os.path.exists(run_files(mp)["pid"])
    assert vmemu("status", mp, check=False).returncode == 1


def test_refuses_non_empty_directory(fresh_mountpoint):
    open(os.path.join(fresh_mountpoint, "precious"), "w").close()
    p = vmemu("mount", fresh_mountpoint, check=False)
    assert p.returncode == 1 and "not empty" in p.stderr and len(p.stderr.splitlines()) == 1
    assert mount_state(fresh_mountpoint) == "unmounted"
    os.unlink(os.path.join(fresh_mountpoint, "precious"))


def test_bad_profile_one_line(fresh_mountpoint):
    p = vmemu("mount", fresh_mountpoint, "--profile", "no-such-machine", check=False)
    assert p.returncode == 1 and "unknown profile" in p.stderr and len(p.stderr.splitlines()) == 1


def test_missing_dev_fuse_is_one_line(monkeypatch):
    real = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: False if p == "/dev/fuse" else real(p))
    with pytest.raises(SetupError, match="/dev/fuse is missing"):
        load_fuse()


@pytest.mark.slow
def test_sigkill_leaves_stale_mount_and_mount_again_works(fresh_mountpoint):
    mp = fresh_mountpoint
    vmemu("mount", mp)
    pid = daemon_pid(mp)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: gone(pid) and mount_state(mp) == "stale")
    with pytest.raises(OSError) as e:
        os.listdir(mp)
    assert e.value.strerror == "Transport endpoint is not connected"
    assert "stale" in vmemu("status", mp, check=False).stdout
    vmemu("mount", mp)
    assert read(mp, "proc/buddyinfo").startswith("Node 0, zone ")
    vmemu("umount", mp)
    assert mount_state(mp) == "unmounted"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_unmounts_cleanly(fresh_mountpoint, sig):
    mp = fresh_mountpoint
    vmemu("mount", mp)
    pid = daemon_pid(mp)
    os.kill(pid, sig)
    wait_for(lambda: gone(pid) and mount_state(mp) == "unmounted")
    assert not os.path.exists(run_files(mp)["pid"])
    with open(run_files(mp)["log"]) as f:
        assert f.read().rstrip().endswith(f"unmounted {mp}")


def test_foreground_mode(fresh_mountpoint):
    mp = fresh_mountpoint
    proc = subprocess.Popen([*VMEMU, "mount", mp, "--foreground", "--speed", "10"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: mount_state(mp) == "mounted")
        # --speed 10: virtual time runs ten times faster than wall time.
        wait_for(lambda: float(read(mp, "proc/uptime").split()[0]) >= 2.0)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert mount_state(mp) == "unmounted" and "unmounted" in err


def test_failing_request_does_not_kill_daemon(mounted):
    # A write to a read-only proc file is EIO; an unknown path ENOENT; the daemon lives on.
    p = subprocess.run(["bash", "-c", f"echo 1 > {mounted}/proc/meminfo"], capture_output=True, text=True)
    assert p.returncode == 1 and "Input/output error" in p.stderr
    assert not os.path.exists(os.path.join(mounted, "proc/nonexistent"))
    # The tree is fixed: creating answers ENOENT and removing EPERM, as /proc does.
    p = subprocess.run(["bash", "-c", f"echo > {mounted}/proc/new; rm {mounted}/proc/meminfo; mkdir {mounted}/proc/d"],
                       capture_output=True, text=True)
    assert p.stderr.count("No such file or directory") == 2 and "Operation not permitted" in p.stderr
    assert read(mounted, "proc/loadavg")


@pytest.mark.slow
def test_benchmark_runs(mounted):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks/control_plane.py"), mounted,
                        "--seconds", "0.2"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "buddyinfo" in p.stdout and "scrub_start" in p.stdout
