"""Live jobs: virtual time follows wall time x speed during a fault job too,
the files move while it runs, the row is the same whatever the pace, and a
job the host cannot keep pace with says so."""

from __future__ import annotations

import re
import threading

import pytest

from conftest import read, sh, vmemu, wait_for
from vmemu.mounts import run_files


def pgfault(mp) -> int:
    return int(re.search(r"^pgfault (\d+)$", read(mp, "proc/vmstat"), re.M).group(1))


def start_job(mp, words: str) -> tuple[threading.Thread, dict]:
    result: dict = {}
    job = threading.Thread(target=lambda: result.update(p=sh(f"echo '{words}' > proc/vmemu/fault",
                                                             cwd=mp, shell="bash")))
    job.start()
    wait_for(lambda: read(mp, "proc/vmemu/pace").splitlines()[1] == "job running" or not job.is_alive())
    return job, result


def watch(mp, job: threading.Thread, reading) -> list:
    """What reading(mp) gives while the job runs (every read returns while
    it runs: the job lets readers in at least every 50 ms)."""
    seen = []
    while job.is_alive():
        seen.append(reading(mp))
    job.join()
    return seen


@pytest.mark.slow
def test_statistics_move_during_a_4_gib_job(mount_profile):
    # altix-8 stock: 262,144 faults of about 14 us, 3.7 s of virtual time at speed 1
    mp = mount_profile("altix-8", "--backing", "none", "--speed", "1")
    before = pgfault(mp)
    job, result = start_job(mp, "bytes=4G")
    values = watch(mp, job, pgfault)
    assert result["p"].returncode == 0, result["p"].stderr
    assert len(set(values)) >= 5, sorted(set(values))
    assert values == sorted(values) and before <= values[0] and values[-1] <= before + 262144


@pytest.mark.slow
def test_the_row_is_the_same_whatever_the_pace(mount_profile):
    rows = []
    for speed in ("max", "1", "3"):
        mp = mount_profile("x86-64", "--backing", "none", "--speed", speed)
        p = sh("echo 'bytes=256M threads=2 rep=2' > proc/vmemu/fault && cat proc/vmemu/fault", cwd=mp, shell="bash")
        assert p.returncode == 0, p.stderr
        rows.append(p.stdout.splitlines()[1])
    assert rows[0] == rows[1] == rows[2]


def test_a_paced_job_takes_its_virtual_time(mount_profile):
    """At speed 1 a job of 0.3 s of virtual time does not end sooner in wall time."""
    import time
    mp = mount_profile("x86-64", "--backing", "none", "--speed", "1")
    t0 = time.monotonic()
    assert sh("echo 'bytes=512M' > proc/vmemu/fault", cwd=mp, shell="bash").returncode == 0
    wall = time.monotonic() - t0
    row = read(mp, "proc/vmemu/fault").splitlines()[1]
    wall_row = float(re.findall(r"(\d+\.\d{3})s", row)[2])      # User, System, Wall
    assert wall_row > 0.2 and wall >= wall_row


@pytest.mark.slow
def test_a_job_the_host_cannot_keep_up_with_says_so(mount_profile):
    mp = mount_profile("altix-8", "--backing", "none", "--speed", "1000000")
    # two threads take turns at every fault: well over 100 ms of host time on any host
    assert sh("echo 'bytes=1G threads=2' > proc/vmemu/fault", cwd=mp, shell="bash").returncode == 0
    pace = dict(line.split() for line in read(mp, "proc/vmemu/pace").splitlines())
    assert pace["speed"] == "1e+06" and pace["job"] == "idle" and int(pace["behind_ms"]) > 100
    assert "behind its pace" in open(run_files(mp)["log"]).read()
    st = vmemu("status", mp).stdout
    assert re.search(r"pace:\s+speed 1e\+06, last job \d+ ms behind", st), st


@pytest.mark.slow
def test_mpstat_sees_the_faulting_cpus_busy(mount_profile):
    mp = mount_profile("altix-8", "--backing", "none", "--speed", "1", "--allow-other")
    assert sh("echo 6 > proc/sys/vm/scrub_start", cwd=mp, shell="bash").returncode == 0
    wait_for(lambda: all(read(mp, f"sys/kernel/mm/prezero/scrubd/node{n}/state") == "sleeping\n"
                         for n in range(4)), timeout=60)
    job, result = start_job(mp, "bytes=4G rep=6 threads=2")     # CPUs 0 and 1 fault, node 0's kscrubd waits
    try:
        # the idle nodes' kscrubd zero what each exit freed there: sample 3 s from the
        # first exit on, which holds another exit (a repetition is about 1 s) whatever
        # the pace the host keeps up with, and ends before the job does
        wait_for(lambda: any(read(mp, f"sys/kernel/mm/prezero/scrubd/node{n}/state") == "running\n"
                             for n in (1, 2, 3)), timeout=120, step=0.005)
        p = sh(f"{vmemu_cmd()} shell {mp} -- mpstat -P ALL 1 3", timeout=60)
    finally:
        job.join()
    assert p.returncode == 0, p.stderr
    sys_of = {}
    for line in p.stdout.splitlines():
        f = line.split()
        if len(f) > 5 and f[0] == "Average:" and f[1].isdigit():
            sys_of[int(f[1])] = float(f[4])     # Average: CPU %usr %nice %sys ...
    # both faulting CPUs busy; one of them idles while the other runs the serial
    # exit or finishes its share of a repetition (load imbalance), so the
    # sample sees them busy together on average, not each all the time
    assert sys_of[0] + sys_of[1] > 100 and min(sys_of[0], sys_of[1]) > 20, p.stdout
    assert any(sys_of[c] > 1 for c in range(2, 8)), p.stdout       # kscrubd on the idle nodes


def vmemu_cmd() -> str:
    import sys
    return f"{sys.executable} -m vmemu.cli"
