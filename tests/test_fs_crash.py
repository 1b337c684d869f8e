"""The daemon killed in the middle of a fault job: mounting again just works."""

import os
import signal
import subprocess
import time

from conftest import read, vmemu, wait_for
from vmemu.mounts import mount_state, run_files


def test_sigkill_during_fault_job_then_mount_again(fresh_mountpoint, capsys):
    mp = fresh_mountpoint
    vmemu("mount", mp, "--profile", "x86-64", "--seed", "1")
    with open(run_files(mp)["pid"]) as f:
        pid = int(f.read())
    log = run_files(mp)["log"]
    job = subprocess.Popen(["sh", "-c", f"echo 'bytes=1G threads=2 rep=5' > {mp}/proc/vmemu/fault"],
                           stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: "fault job start" in open(log).read())
        assert job.poll() is None, "the job ended before the kill"
        os.kill(pid, signal.SIGKILL)
        _, err = job.communicate(timeout=20)        # the writer is released, with an error
        assert job.returncode != 0, err
    finally:
        job.kill()
        job.wait()
    wait_for(lambda: mount_state(mp) == "stale")
    t0 = time.monotonic()
    vmemu("mount", mp, "--profile", "x86-64", "--seed", "1")
    took = time.monotonic() - t0
    assert took < 10
    assert os.path.ismount(mp) and mount_state(mp) == "mounted"
    assert read(mp, "proc/meminfo").startswith("MemTotal:")
    assert read(mp, "proc/vmemu/fault").count("\n") == 1        # a fresh machine: no job row yet
    with capsys.disabled():
        print(f"\nmount after SIGKILL during a fault job: {took:.2f} s")
    vmemu("umount", mp)
    assert mount_state(mp) == "unmounted"
