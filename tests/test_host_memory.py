"""Host memory: what the host backs, and what it may be asked to.

The footprint follows the bytes no rule describes: zeroed memory is given
back to the host (RealMemory.clear), a freed page is a poison mark and a
page pft's touch loop stored into a touched mark; every zero check still
reads real bytes, so a byte planted in a "zeroed" page is caught.  Measured
as the host counts it (RssAnon of this process, VmRSS of a daemon).

Refuse up front, never OOM: what a machine and a job may make the host
hold (vmemu.mm.memory.host_bytes), and every place that refuses on it or
sizes a worker count by it.  VMEMU_HOST_AVAILABLE pretends the host has
that much memory available (it reaches the daemon through the CLI)."""

from __future__ import annotations

import ctypes
import hashlib
import os
import random
import re

import pytest

import vmemu.mm.memory as memory_mod
from conftest import cli, daemon_pid, mounting, one_line, read, sh, vmemu, wait_for
from helpers import observe, tiny_machine
from vmemu import pft, shortcuts
from vmemu.mm.deferred import DeferredMemory
from vmemu.mm.gfp import GFP_HIGHUSER, GFP_ZERO
from vmemu.mm.memory import PAGE_POISON, TOUCH_BYTE, HostMemoryError, RealMemory, host_bytes, human_bytes
from vmemu.mm.mmzone import PCP_ZEROED, ZEROED
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


# -- the footprint follows the non-zero bytes ------------------------------------------

MiB = 1 << 20
PAGE = 4096


def rss(pid="self", field: str = "RssAnon") -> int:
    """Bytes of ``field`` in /proc/PID/status (the host's count)."""
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1)) << 10


@pytest.fixture
def arena():
    """64 MiB of real memory in 16 KiB pages."""
    m = RealMemory(16384, [(0, 4096)])
    yield m
    m.close()


def test_cleared_memory_reads_zero_and_holds_nothing(arena):
    arena.fill(0, 4096, 0x11)
    backed = rss()
    arena.clear(0, 4096)
    assert backed - rss() > 60 * MiB                       # all 64 MiB went back to the host
    gone = rss()
    assert arena.is_zero(0, 4096) and arena.read(7, 1) == bytes(16384)
    assert rss() - gone < 4 * MiB                          # reading maps the host's zero page


def test_a_store_backs_a_host_page_not_a_huge_page(arena):
    """The arena asks for huge pages (reads of zeroed memory map the huge
    zero page), but a store backs only its own host page."""
    arena.clear(0, 4096)
    assert arena.is_zero(0, 4096)                          # read: the zero page everywhere
    before = rss()
    for p in range(0, 4096, 128):                          # a byte in each 2 MiB region
        arena.touch(p, 0, 0x11)
    assert rss() - before < 32 * 64 << 10                  # 32 host pages, not 32 huge pages
    assert arena.read(128, 1) == b"\x11" + bytes(16383) and arena.is_zero(129, 127)


def test_a_byte_planted_in_cleared_memory_is_seen(arena):
    arena.clear(0, 4096)
    arena.touch(100, 16383, 0x5A)                          # the last byte of page 100
    assert not arena.is_zero(0, 4096) and not arena.is_zero(100, 1)
    assert arena.is_zero(0, 100) and arena.is_zero(101, 3995)
    arena.clear(100, 1)
    assert arena.is_zero(0, 4096)


def test_host_pages_shared_at_the_edges_are_memset(monkeypatch):
    """Pages of 4 KiB on a host of 16 KiB pages: clear gives back only the
    host pages inside the block and memsets the rest; the neighbours keep
    their bytes."""
    monkeypatch.setattr(memory_mod, "HOST_PAGE", 16384)
    m = RealMemory(4096, [(0, 64)])
    try:
        for first, n in ((1, 2), (6, 9), (16, 4), (30, 1)):
            m.fill(0, 64, 0x11)
            m.clear(first, n)
            for p in range(64):
                assert m.read(p, 1) == (bytes(4096) if first <= p < first + n else b"\x11" * 4096), (first, n, p)
    finally:
        m.close()


def digest_of_reads(m, pages: int) -> str:
    return hashlib.sha256(b"".join(m.read(p, 1) for p in range(pages))).hexdigest()


def test_poison_is_a_mark_that_reads_as_a_filled_page(arena):
    arena.clear(0, 4096)
    before = rss()
    arena.poison(0, 4096)
    assert rss() - before < 1 * MiB                        # a mark: no host memory
    poison = bytes([PAGE_POISON]) * 16384
    assert all(not arena.is_zero(p, 1) for p in range(4096))     # the zero check finds every one
    assert arena.read(9, 1) == poison
    arena.touch(9, 5000, 0x01)                             # a store into a poisoned page stores the poison first
    assert arena.read(9, 1) == poison[:5000] + b"\x01" + poison[5001:]
    assert rss() - before < 1 * MiB                        # that page's host pages only
    arena.clear(10, 1)
    assert arena.read(10, 1) == bytes(16384) and arena.read(11, 1) == poison
    assert arena.digest() == digest_of_reads(arena, 4096)


def test_the_touch_loop_is_a_mark_over_the_pages_bytes(arena):
    """pft's stores (TOUCH_BYTE at each of the first lines) onto unmarked
    pages are a mark: no host memory, the zero check fails, readers see
    the bytes over what the page held; any other store writes them first."""
    arena.clear(0, 4096)
    arena.touch(5, 1, 0x22)                                # a byte under the lines' stores
    before = rss()
    arena.touch_lines(0, 4096, 3, 128, TOUCH_BYTE)
    assert rss() - before < 1 * MiB
    page = bytearray(16384)
    page[0] = page[128] = page[256] = TOUCH_BYTE
    assert arena.read(7, 1) == page and not arena.is_zero(7, 1)
    assert arena.read(5, 1) == page[:1] + b"\x22" + page[2:]
    arena.touch_lines(7, 1, 5, 128, 0x33)                  # another byte: stored for real
    page[0] = page[128] = page[256] = page[384] = page[512] = 0x33
    assert arena.read(7, 1) == page
    assert arena.digest() == digest_of_reads(arena, 4096)
    arena.clear(0, 4096)
    assert arena.is_zero(0, 4096)


def test_poison_spans_nodes():
    m = RealMemory(PAGE, [(0, 64), (64, 64)])                # two nodes, two arenas
    try:
        m.poison(60, 4)                                      # the end of node 0
        m.poison(64, 4)                                      # the start of node 1
        m.poison(10, 1)
        assert m.read(60, 4) == m.read(64, 4) == bytes([PAGE_POISON]) * (4 * PAGE)
        assert m.read(10, 1) == bytes([PAGE_POISON]) * PAGE
        assert m.is_zero(11, 49) and m.is_zero(68, 60)
        with pytest.raises(ValueError, match="not inside one node"):
            m.poison(62, 4)
    finally:
        m.close()


def test_is_zero_sees_any_byte():
    m = RealMemory(PAGE, [(0, 4)])
    try:
        assert m.is_zero(0, 4) and m.is_zero(3, 1)
        _, _, address, _ = m.mappings()[0]
        for at in (0, 1, PAGE - 1, PAGE, 3 * PAGE + 17, 4 * PAGE - 1):
            ctypes.memset(address + at, 1, 1)                # behind the model's back
            page = at // PAGE
            assert not m.is_zero(0, 4) and not m.is_zero(page, 1), at
            assert all(m.is_zero(p, 1) for p in range(4) if p != page), at
            ctypes.memset(address + at, 0, 1)
        assert m.is_zero(0, 4)
    finally:
        m.close()


def test_dirty_pages_are_found_by_the_deferred_check(monkeypatch):
    """A clear that leaves a byte behind in some pages during the job: the
    deferred check (many pages at once) finds them, and settle() counts and
    clears each, as the check at each fault does with the shortcuts off."""
    real_clear = RealMemory.clear
    victims = set(random.Random(5).sample(range(0, 65536), 2000))     # node_memory 256M: 65536 pages

    def sloppy_clear(self, pfn, npages):
        real_clear(self, pfn, npages)
        for v in victims.intersection(range(pfn, pfn + npages)) - self.dirtied:
            self.dirtied.add(v)
            ctypes.memset(self.mappings()[0][2] + v * PAGE + 100, 0x5A, 1)

    def job():
        monkeypatch.setattr(DeferredMemory, "FLUSH_BYTES", 16 * PAGE)     # many flushes
        m = pft.prepare_machine("x86-64", 3, "stock", backing="real", overrides={"machine.node_memory": "256M"})
        try:
            monkeypatch.setattr(RealMemory, "clear", sloppy_clear)     # armed for the job only
            monkeypatch.setattr(RealMemory, "dirtied", set(), raising=False)
            r = pft.run_job(m, 16 << 20, 1, 1, 1)
            monkeypatch.undo()
            return observe(m, [r])
        finally:
            m.close()

    deferred = job()
    with shortcuts.off():
        inline = job()
    assert deferred == inline
    assert deferred["snapshot"]["counters"]["prezero_verify_fail"] > 0, "the sabotage never hit a faulted page"


def test_a_fault_job_holds_no_host_memory():
    """A job's pages: cleared (given back), checked (read through the zero
    page), touched and poisoned (marks): the host backs none of them, and
    every page was checked (no verify failure)."""
    for kernel in ("stock", "prezero"):
        m = pft.prepare_machine("altix-8", 0, kernel, backing="real", overrides={
            "machine.node_memory": "128M", "machine.nodes": 1, "machine.cpus_per_node": 2})
        try:
            before = rss()
            r = pft.run_job(m, 96 * MiB, 1, 1, 1)
            assert r.pages == 6144 and m.counters()["prezero_verify_fail"] == 0
            assert rss() - before < 8 * MiB, kernel            # not 96
        finally:
            m.close()


def test_a_planted_byte_in_a_zeroed_free_page_is_caught_and_cleared():
    m = tiny_machine(pages=64, max_order=4)
    try:
        m.set_sysctl("scrub_stop", 0)
        m.set_sysctl("scrub_start", 0)
        m.run_until_idle()
        zeroed = [p for z in m.zones for o, a in enumerate(z.free_area[ZEROED]) for b in a.free_list
                  for p in range(b, b + (1 << o))]
        assert len(zeroed) == 64 and all(m.memory.is_zero(p, 1) for p in zeroed)
        for p in zeroed:
            m.memory.touch(p, 4000, 0x5A)
        pfn = m.alloc.alloc_pages(m.cpus[0], 0, GFP_HIGHUSER | GFP_ZERO)
        assert m.counters()["prezero_verify_fail"] == 1         # caught at hand-out ...
        assert m.memory.read(pfn, 1) == bytes(4096)            # ... and the task gets zeros
    finally:
        m.close()


def test_a_restored_machine_is_zero_where_zeroed_and_poisoned_elsewhere(tmp_path):
    """Restored real memory, checked on its real bytes (is_zero, not read's
    view): every zeroed free page is zero, every other page fails the check
    (its canary)."""
    from vmemu.state import load_state, save_state
    m = tiny_machine(pages=256, max_order=6)
    try:
        pft.run_job(m, 128 * 4096, 1, 1, 1)
        m.set_sysctl("scrub_start", 3)
        m.run_until_idle()
        held = m.alloc.alloc_pages(m.cpus[0], 2, GFP_HIGHUSER | GFP_ZERO)
        path = str(tmp_path / "m.state")
        save_state(m, path)
    finally:
        m.close()
    r = load_state(path)
    try:
        zero = {p for z in r.zones for o, a in enumerate(z.free_area[ZEROED]) for b in a.free_list
                for p in range(b, b + (1 << o))}
        zero |= {p for z in r.zones for lists in z.pageset.values() for p in lists[PCP_ZEROED].list}
        assert 0 < len(zero) < 256 and held not in zero
        assert [r.memory.is_zero(p, 1) for p in range(256)] == [p in zero for p in range(256)]
    finally:
        r.close()


# -- the same, through a mounted daemon ------------------------------------------------

def wait_scrubd_idle(mp: str) -> None:
    def idle():
        nodes = [d for d in os.listdir(os.path.join(mp, "sys/kernel/mm/prezero/scrubd")) if d.startswith("node")]
        return all(read(mp, f"sys/kernel/mm/prezero/scrubd/{d}/state").strip() == "sleeping" for d in nodes)
    wait_for(idle, timeout=120)


def vmstat(mp: str) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in read(mp, "proc/vmstat").splitlines())}


def run(cmd: str) -> None:
    p = sh(cmd)
    assert p.returncode == 0, (cmd, p.stderr)


@pytest.mark.slow
def test_a_daemon_holds_no_memory_for_a_job_or_for_zeroed_pages():
    with mounting("x86-64") as mp:
        pid = daemon_pid(mp)
        run(f"echo 'bytes=512M' > {mp}/proc/vmemu/fault")
        used = rss(pid, "VmRSS")
        assert used < 128 * MiB                           # the job's pages: touched, then poisoned
        run(f"echo 0 > {mp}/proc/sys/vm/scrub_stop && echo 0 > {mp}/proc/sys/vm/scrub_start")
        wait_scrubd_idle(mp)
        assert rss(pid, "VmRSS") < 128 * MiB, (used, rss(pid, "VmRSS"))
        info = dict(line.split(":") for line in read(mp, "proc/meminfo").splitlines())
        assert info["MemZero"] == info["MemFree"]


def test_a_byte_planted_in_a_daemons_zeroed_page_is_caught(tmp_path):
    """Every page of a scrubbed 40 MiB machine gets a planted byte through
    /proc/PID/mem: each page a job is then handed as zeroed is caught by
    the check (prezero_verify_fail), and the daemon log says so."""
    profile = tmp_path / "x86-64-40m.toml"
    profile.write_text('inherit = "x86-64"\nname = "x86-64-40m"\n[machine]\nnode_memory = "40M"\n')
    with mounting(str(profile)) as mp:
        run(f"echo 0 > {mp}/proc/sys/vm/scrub_stop && echo 0 > {mp}/proc/sys/vm/scrub_start")
        wait_scrubd_idle(mp)
        from vmemu.mounts import run_files
        log = run_files(mp)["log"]
        with open(log) as f:
            first, last, address, size = re.search(r"host memory of pfns (\d+)-(\d+): (0x[0-9a-f]+), (\d+) bytes",
                                                    f.read()).groups()
        pages = int(last) - int(first) + 1
        assert pages * 4096 == int(size) == 40 * MiB
        try:
            mem = os.open(f"/proc/{daemon_pid(mp)}/mem", os.O_RDWR)
        except PermissionError as e:
            pytest.skip(f"cannot write the daemon's memory here: {e}")
        try:
            for p in range(pages):
                os.pwrite(mem, b"\x5a", int(address, 16) + p * 4096 + 1000)
        finally:
            os.close(mem)
        before = vmstat(mp)
        run(f"echo 'pages=2048' > {mp}/proc/vmemu/fault")
        after = vmstat(mp)
        zeroed = after["prezero_alloc_zeroed"] - before["prezero_alloc_zeroed"]
        assert zeroed > 1000
        assert after["prezero_verify_fail"] - before["prezero_verify_fail"] == zeroed
        with open(log) as f:
            assert f.read().count("ZERO GUARANTEE VIOLATED") == zeroed


@pytest.mark.slow
def test_a_restored_daemon_holds_no_memory_for_its_zeroed_pages(fresh_mountpoint, tmp_path):
    state = str(tmp_path / "x86.state")
    mount = ("mount", fresh_mountpoint, "--profile", "x86-64", "--speed", "max", "--state", state)
    vmemu(*mount)
    run(f"echo 'bytes=512M' > {fresh_mountpoint}/proc/vmemu/fault")
    run(f"echo 0 > {fresh_mountpoint}/proc/sys/vm/scrub_stop && echo 0 > {fresh_mountpoint}/proc/sys/vm/scrub_start")
    wait_scrubd_idle(fresh_mountpoint)
    vmemu("umount", fresh_mountpoint)
    vmemu(*mount)
    assert rss(daemon_pid(fresh_mountpoint), "VmRSS") < 128 * MiB
    before = vmstat(fresh_mountpoint)
    run(f"echo 'bytes=256M' > {fresh_mountpoint}/proc/vmemu/fault")
    after = vmstat(fresh_mountpoint)
    assert after["prezero_alloc_zeroed"] - before["prezero_alloc_zeroed"] == 65536     # all served zeroed ...
    assert after["prezero_verify_fail"] == before["prezero_verify_fail"] == 0        # ... and really zero
