"""Refuse up front, never OOM: what a machine and a job may make the host
hold (vmemu.mm.memory.host_bytes), and every place that refuses on it or
sizes a worker count by it.  VMEMU_HOST_AVAILABLE pretends the host has
that much memory available (it reaches the daemon through the CLI)."""

from __future__ import annotations

import os

import pytest

from conftest import cli, one_line, read, vmemu
from vmemu.mm.memory import HostMemoryError, host_bytes, human_bytes
from vmemu.mounts import mount_state
from vmemu.pft.rows import default_jobs, row_bytes
from vmemu.profiles import load_profile


def nothing_mounted(mp: str) -> None:
    assert mount_state(mp) == "unmounted" and os.listdir(mp) == []


def test_the_estimate():
    big, small = load_profile("altix-512"), load_profile("x86-64")
    assert human_bytes(host_bytes(big, "real")) == "4.0 TiB"
    assert host_bytes(big, "none") < 1 << 30               # 268 M page frames, metadata only
    assert host_bytes(small, "real") - host_bytes(small, "none") == 2 << 30
    assert host_bytes(small, "none", job_pages=1000) > host_bytes(small, "none")
    assert host_bytes(small, None) == host_bytes(small, "real")     # the profile's backing


def test_altix_512_real_is_refused_by_mount_and_pft(fresh_mountpoint):
    p = cli("mount", fresh_mountpoint, "--profile", "altix-512", "--backing", "real")
    one_line(p, 1, "vmemu: altix-512 with real backing may hold 4.0 TiB of host memory; this host has ",
             " available (use --backing none)")
    nothing_mounted(fresh_mountpoint)
    one_line(cli("pft", "--profile", "altix-512", "--backing", "real"), 2,
             "vmemu pft: altix-512 with real backing may hold 4.0 TiB")


def test_a_small_host_refuses_altix_8_real(fresh_mountpoint):
    small = {"VMEMU_HOST_AVAILABLE": "1G"}
    one_line(cli("mount", fresh_mountpoint, env=small), 1,
             "altix-8 with real backing may hold 6.1 GiB", "this host has 1.0 GiB available", "--backing none")
    nothing_mounted(fresh_mountpoint)
    one_line(cli("pft", "-b", "8M", env=small), 2, "vmemu pft: altix-8 with real backing may hold 6.1 GiB")
    ok = cli("pft", "-b", "8M", "--backing", "none", env=small)
    assert ok.returncode == 0 and ok.stderr == "", ok.stderr
    one_line(cli("pft", "-b", "8M", env={"VMEMU_HOST_AVAILABLE": "lots"}), 2, "VMEMU_HOST_AVAILABLE='lots'")


def test_a_sweep_with_a_point_the_host_cannot_hold_is_refused_before_any_point(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text('profile = "x86-64"\nbytes = "8M"\nbacking = ["none", "real"]\n')
    out = tmp_path / "rows.csv"
    p = cli("sweep", spec, "--out", out, env={"VMEMU_HOST_AVAILABLE": "1G"})
    one_line(p, 2, "vmemu sweep: x86-64 with real backing may hold 2.1 GiB")
    assert not out.exists()


def test_an_explicit_j_is_capped_by_memory():
    args = ["pft", "-b", "8M", "-f", "1,2", "--profile", "x86-64", "--backing", "none"]
    need = max(row_bytes(s) for s in _specs(args))
    room = {"VMEMU_HOST_AVAILABLE": str(need * 3 // 2)}            # one row at a time
    capped = cli(*args, "-j", "2", env=room)
    one_line(capped, 0, "vmemu pft: -j 2 capped to 1: each row may hold ")
    assert capped.stdout == cli(*args, "-j", "1").stdout


def _specs(argv):
    from vmemu.cli import build_parser
    from vmemu.pft.cli import job_specs
    args = build_parser().parse_args(argv)
    return job_specs(args, load_profile(args.profile))


def test_default_jobs_is_cpus_rows_and_memory(monkeypatch):
    specs = _specs(["pft", "-b", "8M", "-f", "1,1,2,2", "--profile", "x86-64", "--backing", "none"])
    cpus, need = len(os.sched_getaffinity(0)), row_bytes(specs[0])
    notes = []
    monkeypatch.setenv("VMEMU_HOST_AVAILABLE", str(100 * need))
    assert default_jobs(specs) == min(cpus, 4)
    assert default_jobs(specs[:1], requested=8) == 1 and not notes      # no more than the rows
    monkeypatch.setenv("VMEMU_HOST_AVAILABLE", str(2 * need))
    assert default_jobs(specs) == min(cpus, 2)
    assert default_jobs(specs, requested=4, note=notes.append) == 2 and "-j 4 capped to 2" in notes[0]
    monkeypatch.setenv("VMEMU_HOST_AVAILABLE", str(need - 1))
    with pytest.raises(HostMemoryError, match="x86-64 with none backing may hold"):
        default_jobs(specs)


def test_a_saved_real_machine_is_refused_on_a_small_host(fresh_mountpoint, tmp_path):
    state = str(tmp_path / "real.state")
    vmemu("mount", fresh_mountpoint, "--profile", "x86-64", "--backing", "real", "--state", state)
    vmemu("umount", fresh_mountpoint)
    # --backing none does not help: the saved machine keeps its backing
    p = cli("mount", fresh_mountpoint, "--profile", "x86-64", "--backing", "none", "--state", state,
            env={"VMEMU_HOST_AVAILABLE": "1G"})
    one_line(p, 1, f"vmemu: refusing --state {state}: x86-64 with real backing may hold 2.1 GiB",
             "(a saved machine keeps its backing)")
    nothing_mounted(fresh_mountpoint)


def test_a_fault_job_the_host_cannot_hold_is_enomem(fresh_mountpoint, tmp_path):
    # 4 M page frames: a job of all of them keeps 512 MiB of bookkeeping
    profile = tmp_path / "x86-64-16g.toml"
    profile.write_text('inherit = "x86-64"\nname = "x86-64-16g"\n[machine]\nnode_memory = "16G"\n')
    machine = host_bytes(load_profile(str(profile)), "none")
    env = {"VMEMU_HOST_AVAILABLE": str(machine)}                # the machine fits; the job does not
    assert cli("mount", fresh_mountpoint, "--profile", str(profile), "--backing", "none", env=env).returncode == 0
    try:
        fault = os.path.join(fresh_mountpoint, "proc/vmemu/fault")
        with pytest.raises(OSError) as e, open(fault, "w") as f:
            f.write("pages=4000000\n")
        assert e.value.errno == 12                                 # ENOMEM, before the job starts
        assert "pgfault 0\n" in read(fresh_mountpoint, "proc/vmstat")
        with open(fault, "w") as f:
            f.write("pages=1000\n")
        assert "pgfault 1000\n" in read(fresh_mountpoint, "proc/vmstat")
    finally:
        vmemu("umount", fresh_mountpoint)
