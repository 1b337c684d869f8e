"""vmemu mount --state FILE: saved on a clean unmount, restored on the next mount."""

import os
import signal

import pytest

from conftest import read, vmemu, wait_for
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


@pytest.mark.parametrize("stop", ["umount", signal.SIGTERM, signal.SIGINT])
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
