"""vmemu mount --state FILE: saved on a clean unmount, restored on the next mount."""

import os
import signal

import pytest

from conftest import daemon_pid, read, vmemu, wait_for
from vmemu.mounts import mount_state, run_files

SNAPSHOT = ["proc/vmstat", "proc/buddyinfo", "proc/vmemu/zeroinfo", "proc/meminfo",
            "proc/sys/vm/scrub_start", "proc/sys/vm/scrub_stop", "proc/sys/vm/scrub_load",
            "sys/kernel/mm/prezero/policy", "sys/kernel/debug/fail_page_alloc/probability",
            "sys/kernel/debug/fail_page_alloc/times", "sys/kernel/debug/fail_page_alloc/min-order"]
MOUNT = ("--profile", "x86-64", "--backing", "none", "--speed", "100")


def snapshot(mp):
    return {p: read(mp, p) for p in SNAPSHOT}


def idle(mp):
    """scrubd asleep with nothing in flight on every node, so a save changes nothing."""
    d = os.path.join(mp, "sys/kernel/mm/prezero/scrubd")
    return all(read(mp, f"sys/kernel/mm/prezero/scrubd/{n}/state") == "sleeping\n"
               and read(mp, f"sys/kernel/mm/prezero/scrubd/{n}/blocks_inflight") == "0\n"
               for n in os.listdir(d))


def scrubd_runs(mp) -> int:
    return int(read(mp, "proc/vmstat").split("scrubd_runs ")[1].split()[0])


def busy_machine(mp):
    """Sysctls and debugfs changed, a fault job run, scrubd done: what must survive."""
    for path, value in (("proc/sys/vm/scrub_stop", "3"), ("proc/sys/vm/scrub_load", "500"),
                        ("proc/sys/vm/scrub_start", "6"),
                        ("sys/kernel/debug/fail_page_alloc/probability", "7"),
                        ("sys/kernel/debug/fail_page_alloc/times", "-1"),
                        ("sys/kernel/debug/fail_page_alloc/min-order", "5")):
        with open(os.path.join(mp, path), "w") as f:
            f.write(value + "\n")
    with open(os.path.join(mp, "proc/vmemu/fault"), "w") as f:
        f.write("pages=5000 threads=2 rep=2\n")
    wait_for(lambda: idle(mp))


@pytest.fixture
def state_file(tmp_path):
    return str(tmp_path / "machine.state")


@pytest.mark.parametrize("stop", ["umount", pytest.param(signal.SIGTERM, marks=pytest.mark.slow),
                                  pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_restored_after_clean_shutdown(fresh_mountpoint, state_file, stop):
    mp = fresh_mountpoint
    vmemu("mount", mp, *MOUNT, "--state", state_file)
    assert not os.path.exists(state_file)          # booted fresh
    fresh = snapshot(mp)
    busy_machine(mp)
    before = snapshot(mp)
    assert before["proc/vmstat"] != fresh["proc/vmstat"]
    assert before["proc/sys/vm/scrub_start"] == "6\n"
    if stop == "umount":
        vmemu("umount", mp)
    else:
        with open(run_files(mp)["pid"]) as f:
            os.kill(int(f.read()), stop)
        wait_for(lambda: mount_state(mp) == "unmounted" and not os.path.exists(run_files(mp)["pid"]))
    assert os.path.getsize(state_file) > 0
    vmemu("mount", mp, *MOUNT, "--state", state_file)
    assert snapshot(mp) == before
    assert "restored x86-64 from" in open(run_files(mp)["log"]).read()
    vmemu("umount", mp)


@pytest.mark.slow
def test_corrupt_or_foreign_state_is_refused(fresh_mountpoint, state_file):
    mp = fresh_mountpoint
    vmemu("mount", mp, *MOUNT, "--state", state_file)
    vmemu("umount", mp)
    good = open(state_file, "rb").read()
    corrupt = bytearray(good)
    corrupt[len(good) // 2] ^= 0x01
    cases = [(bytes(corrupt), "corrupt: SHA-256"), (good[:len(good) // 2], "truncated"),
             (b"hello\n", "not a vmemu state file"), (b"", "empty file")]
    for data, why in cases:
        with open(state_file, "wb") as f:
            f.write(data)
        p = vmemu("mount", mp, *MOUNT, "--state", state_file, check=False)
        assert p.returncode == 1 and why in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr
        assert p.stderr.startswith(f"vmemu: refusing --state {state_file}: ")
        assert mount_state(mp) == "unmounted" and not os.path.ismount(mp) and os.listdir(mp) == []
        assert open(state_file, "rb").read() == data          # left as it was
    # Another profile's state is foreign too.
    with open(state_file, "wb") as f:
        f.write(good)
    p = vmemu("mount", mp, "--profile", "altix-8", "--backing", "none", "--state", state_file, check=False)
    assert p.returncode == 1 and "saved with profile 'x86-64', not 'altix-8'" in p.stderr
    assert mount_state(mp) == "unmounted"


# -- checkpoints (--checkpoint SECONDS): what a SIGKILL or the OOM killer leaves --------

def checkpoint_shows(state_file, paths):
    """The files ``paths`` as the machine in the state file would show them
    (None while there is no valid file): the state as the last checkpoint
    holds it, rendered by the same code as the mount's."""
    from vmemu.daemon import Kernel
    from vmemu.state import StateError, load_state
    try:
        m = load_state(state_file)
    except StateError:
        return None
    try:
        tree = Kernel(m).tree
        return {p: tree[p].generate().decode() for p in paths}
    finally:
        m.close()


def kill_and_clear(mp):
    """kill -9 the daemon, then vmemu umount: one line that reports the death."""
    pid = daemon_pid(mp)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: mount_state(mp) == "stale")
    p = vmemu("umount", mp, check=False)
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr
    assert f"daemon {pid} had died" in p.stderr and "was not saved" in p.stderr
    return p.stderr


@pytest.mark.slow
def test_checkpoint_survives_sigkill(fresh_mountpoint, state_file):
    mp = fresh_mountpoint
    vmemu("mount", mp, *MOUNT, "--state", state_file, "--checkpoint", "0.5")
    busy_machine(mp)                          # sysctls, debugfs, a job, scrubd done
    before = snapshot(mp)
    wait_for(lambda: checkpoint_shows(state_file, SNAPSHOT) == before)
    err = kill_and_clear(mp)
    assert "holds the last checkpoint or save" in err and f"--state {state_file} restores it" in err
    vmemu("mount", mp, *MOUNT, "--state", state_file)
    assert snapshot(mp) == before
    vmemu("umount", mp)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "bit flipped"])
def test_torn_checkpoint_is_refused(fresh_mountpoint, state_file, damage):
    mp = fresh_mountpoint
    vmemu("mount", mp, *MOUNT, "--state", state_file, "--checkpoint", "0.2")
    wait_for(lambda: os.path.exists(state_file))
    kill_and_clear(mp)
    data = bytearray(open(state_file, "rb").read())
    if damage == "truncated":                 # what a write cut short would leave
        data = data[:len(data) * 2 // 3]
    else:
        data[len(data) // 3] ^= 0x10
    open(state_file, "wb").write(data)
    p = vmemu("mount", mp, *MOUNT, "--state", state_file, check=False)
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr
    assert p.stderr.startswith(f"vmemu: refusing --state {state_file}: ")
    assert ("truncated" if damage == "truncated" else "SHA-256") in p.stderr
    assert mount_state(mp) == "unmounted" and os.listdir(mp) == []


def session(mp, state_file, checkpoints: bool):
    """Two jobs with scrubd on; with checkpoints, each job's end is waited
    for in the state file before going on.  Returns the rows and vmstat.
    Idle time follows wall time: each job starts once scrubd has done all
    there is, so how long the host took between two writes changes nothing."""
    rows = []
    with open(os.path.join(mp, "proc/sys/vm/scrub_start"), "w") as f:
        f.write("6\n")
    wait_for(lambda: scrubd_runs(mp) > 0 and idle(mp))
    for job in ("pages=20000 threads=2", "bytes=64M threads=2 rep=2"):
        with open(os.path.join(mp, "proc/vmemu/fault"), "w") as f:
            f.write(job + "\n")
        rows.append(read(mp, "proc/vmemu/fault"))
        wait_for(lambda: idle(mp))
        if checkpoints:
            vmstat = read(mp, "proc/vmstat")
            wait_for(lambda: checkpoint_shows(state_file, ["proc/vmstat"]) == {"proc/vmstat": vmstat})
        else:
            assert not os.path.exists(state_file)
    return rows, read(mp, "proc/vmstat")


@pytest.mark.slow
def test_checkpoints_never_change_behaviour(fresh_mountpoint, tmp_path):
    mp, results = fresh_mountpoint, []
    for interval in ("0", "0.1"):
        state = str(tmp_path / f"every-{interval}.state")
        vmemu("mount", mp, "--profile", "x86-64", "--backing", "none", "--speed", "max",
              "--state", state, "--checkpoint", interval)
        try:
            results.append(session(mp, state, interval != "0"))
        finally:
            vmemu("umount", mp)
    assert "checkpoint to" in open(run_files(mp)["log"]).read()
    assert results[0] == results[1]


def test_checkpoint_waits_until_the_machine_is_idle(fresh_mountpoint, state_file):
    mp = fresh_mountpoint
    # at 0.05 virtual s per wall s, scrubd needs about 10 s of wall time to
    # zero x86-64's free memory: checkpoints fall due meanwhile
    vmemu("mount", mp, *MOUNT[:-1], "0.05", "--state", state_file, "--checkpoint", "0.2")
    wait_for(lambda: os.path.exists(state_file))
    fresh = snapshot(mp)
    with open(os.path.join(mp, "proc/sys/vm/scrub_start"), "w") as f:
        f.write("0\n")
    log = run_files(mp)["log"]
    wait_for(lambda: "checkpoint deferred until the machine is idle" in open(log).read())
    assert read(mp, "sys/kernel/mm/prezero/scrubd/node0/state") != "sleeping\n"
    kill_and_clear(mp)
    # the last checkpoint is the idle machine before the write, not one mid-pass
    vmemu("mount", mp, *MOUNT, "--state", state_file)
    assert snapshot(mp) == fresh and idle(mp)
    vmemu("umount", mp)


@pytest.mark.slow
def test_a_failing_checkpoint_keeps_the_previous_file_and_the_daemon(fresh_mountpoint, state_file):
    mp = fresh_mountpoint
    vmemu("mount", mp, *MOUNT, "--state", state_file, "--checkpoint", "0.2")
    wait_for(lambda: os.path.exists(state_file))
    log = run_files(mp)["log"]
    # A checkpoint writes STATE.tmp<pid> and renames it over STATE: a
    # directory in its way makes every write fail, as a full disk would.
    blocker = f"{state_file}.tmp{daemon_pid(mp)}"
    wait_for(lambda: make_dir(blocker))      # not while a checkpoint is writing it
    kept = open(state_file, "rb").read()
    wait_for(lambda: f"checkpoint to {state_file} failed: Is a directory; the previous file is kept"
             in open(log).read())
    assert open(state_file, "rb").read() == kept
    assert read(mp, "proc/sys/vm/scrub_start") == "11\n"        # the daemon goes on
    os.rmdir(blocker)
    wait_for(lambda: open(state_file, "rb").read() != kept)     # the next interval writes again
    vmemu("umount", mp)


def make_dir(path) -> bool:
    try:
        os.mkdir(path)
        return True
    except FileExistsError:
        return False
