"""Fixtures that mount the real FUSE filesystem through the `vmemu` CLI."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

VMEMU = [sys.executable, "-m", "vmemu.cli"]


def wait_for(cond, timeout: float = 20.0, step: float = 0.02):
    """Poll cond() until it returns something true; fail after timeout seconds."""
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout} s: {cond}")
        time.sleep(step)  # noqa: sleep-ok (the poll interval of a wait on a condition)


def vmemu(*args, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    p = subprocess.run([*VMEMU, *args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode:
        raise AssertionError(f"vmemu {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


def sh(cmd: str, cwd: str | None = None, shell: str = "sh", timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a shell command line the way a user would."""
    return subprocess.run([shell, "-c", cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def read(mp: str, path: str) -> str:
    with open(os.path.join(mp, path)) as f:
        return f.read()


def make_mountpoint() -> str:
    # Under /tmp, world-traversable, so `nobody` can reach the mount (test_fs_perms).
    d = tempfile.mkdtemp(prefix="vmemu-test-", dir="/tmp")
    os.chmod(d, 0o755)
    return d


def unmount(mp: str) -> None:
    vmemu("umount", mp, check=False)
    if os.path.ismount(mp):
        subprocess.run(["umount", "-l", mp], capture_output=True)
    from vmemu.mounts import run_files
    try:
        os.unlink(run_files(mp)["log"])     # one log per throw-away mount point
    except FileNotFoundError:
        pass


@contextlib.contextmanager
def mounting(profile: str = "x86-64", *args: str):
    """Mount ``profile`` (extra `vmemu mount` options in args) in a fresh
    directory; yields its path and unmounts afterwards."""
    mp = make_mountpoint()
    # jobs flat out unless a test asks for a pace (idle time follows wall time either way)
    pace = () if "--speed" in args else ("--speed", "max")
    vmemu("mount", mp, "--profile", profile, "--seed", "1", "--allow-other", *pace, *args)
    try:
        yield mp
    finally:
        unmount(mp)
        shutil.rmtree(mp, ignore_errors=True)


@pytest.fixture(scope="module")
def mounted():
    """The x86-64 profile mounted in a fresh directory; yields its path."""
    with mounting("x86-64") as mp:
        yield mp


@pytest.fixture
def mount_profile():
    """Factory: ``mount_profile("altix-8", "--backing", "none")`` mounts that
    profile in a fresh directory for this test only and returns the path."""
    with contextlib.ExitStack() as stack:
        yield lambda profile, *args: stack.enter_context(mounting(profile, *args))


@pytest.fixture
def fresh_mountpoint():
    """An empty directory; whatever a test mounts there is unmounted afterwards."""
    mp = make_mountpoint()
    try:
        yield mp
    finally:
        unmount(mp)
        shutil.rmtree(mp, ignore_errors=True)
