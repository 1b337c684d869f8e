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


def cli(*args, timeout: float = 120, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """`vmemu ARGS` as a user runs it (``env`` added to the environment);
    fails on a traceback in its stderr."""
    p = subprocess.run([*VMEMU, *args], capture_output=True, text=True, timeout=timeout,
                       env=None if env is None else {**os.environ, **env}, **kw)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def one_line(p: subprocess.CompletedProcess, code: int, *words: str) -> None:
    """Exit code ``code`` with one line on stderr that holds every word."""
    assert p.returncode == code, (p.returncode, p.stderr)
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    for w in words:
        assert w in p.stderr, (w, p.stderr)


def sh(cmd: str, cwd: str | None = None, shell: str = "sh", timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a shell command line the way a user would."""
    return subprocess.run([shell, "-c", cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def read(mp: str, path: str) -> str:
    with open(os.path.join(mp, path)) as f:
        return f.read()


def daemon_pid(mp: str) -> int:
    from vmemu.mounts import run_files
    with open(run_files(mp)["pid"]) as f:
        return int(f.read())


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
