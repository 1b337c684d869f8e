"""Kernel modes enforced by default_permissions, checked as root and as nobody."""

import os
import shutil

import pytest

from conftest import read, sh

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"),
                                reason="needs root and runuser to act as nobody")


def as_nobody(cmd: str):
    return sh(f"runuser -u nobody -- sh -c '{cmd}'")


def test_nobody_cannot_write_sysctl_but_can_read(mounted):
    path = f"{mounted}/proc/sys/vm/scrub_start"
    before = read(mounted, "proc/sys/vm/scrub_start")
    p = as_nobody(f"echo 3 > {path}")
    assert p.returncode != 0 and "Permission denied" in p.stderr
    assert read(mounted, "proc/sys/vm/scrub_start") == before
    p = as_nobody(f"cat {path} {mounted}/proc/meminfo {mounted}/sys/devices/system/node/node0/meminfo")
    assert p.returncode == 0 and p.stdout.startswith(before) and "MemZero" in p.stdout


def test_nobody_cannot_start_fault_jobs(mounted):
    p = as_nobody(f"echo 10 > {mounted}/proc/vmemu/fault")
    assert p.returncode != 0 and "Permission denied" in p.stderr
    assert as_nobody(f"cat {mounted}/proc/vmemu/fault").returncode == 0


def test_nobody_cannot_see_debugfs(mounted):
    p = as_nobody(f"cat {mounted}/sys/kernel/debug/fail_page_alloc/probability")
    assert p.returncode != 0 and "Permission denied" in p.stderr
    assert as_nobody(f"ls {mounted}/sys/kernel/debug").returncode != 0


def test_nobody_cannot_write_read_only_files(mounted):
    p = as_nobody(f"echo 1 > {mounted}/proc/meminfo")
    assert p.returncode != 0 and "Permission denied" in p.stderr


def test_root_write_to_read_only_proc_file_is_eio(mounted):
    # As on procfs: root may open a 0444 file for writing, the write fails.
    p = sh(f"echo 1 > {mounted}/proc/buddyinfo", shell="bash")
    assert p.returncode == 1 and "Input/output error" in p.stderr


def test_root_reads_debugfs(mounted):
    assert read(mounted, "sys/kernel/debug/fail_page_alloc/verbose") == "2\n"
