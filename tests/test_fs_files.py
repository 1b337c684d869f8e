"""Every emulated file against the kernel's layout (docs/interfaces.md)."""

import os
import re
import shutil
import stat

import pytest

from conftest import read, sh, wait_for

ORDERS = 11          # x86-64: MAX_ORDER 11
ZONES = ("DMA", "Normal")
PROC_FILES = ["proc/buddyinfo", "proc/meminfo", "proc/vmstat", "proc/zoneinfo", "proc/stat",
              "proc/loadavg", "proc/uptime", "proc/vmemu/zeroinfo", "proc/vmemu/fault",
              "proc/sys/vm/scrub_start", "proc/sys/vm/scrub_stop", "proc/sys/vm/scrub_load"]
SYS_FILES = ["sys/devices/system/node/online", "sys/devices/system/node/possible",
             "sys/devices/system/cpu/online", "sys/devices/system/cpu/possible",
             "sys/devices/system/cpu/present",
             *(f"sys/devices/system/node/node0/{n}" for n in ("meminfo", "numastat", "distance", "cpulist"))]
DEBUG_FILES = [f"sys/kernel/debug/fail_page_alloc/{n}" for n in
               ("probability", "interval", "times", "space", "verbose", "task-filter",
                "ignore-gfp-wait", "ignore-gfp-highmem", "min-order")]
ALL_FILES = PROC_FILES + SYS_FILES + DEBUG_FILES


def lines(mp, path):
    text = read(mp, path)
    assert text.endswith("\n"), path
    out = text[:-1].split("\n")
    assert all(out), f"{path} has a blank line"
    return out


def meminfo_dict(mp, path="proc/meminfo"):
    return {l.split(":")[0]: int(l.split()[1]) for l in lines(mp, path)}


@pytest.mark.parametrize("path", ALL_FILES)
def test_whole_in_one_read_no_blank_lines(mounted, path):
    # procps reads at most 8191 bytes once; node_exporter's sysctl reader 128.
    fd = os.open(os.path.join(mounted, path), os.O_RDONLY)
    try:
        first = os.read(fd, 8191)
        assert len(first) < 8191
        assert os.read(fd, 8191) == b""
    finally:
        os.close(fd)
    assert first.endswith(b"\n") and b"\n\n" not in first and not first.startswith(b"\n")


@pytest.mark.parametrize("path", ALL_FILES)
def test_size_owner_mode(mounted, path):
    s = os.stat(os.path.join(mounted, path))
    assert stat.S_ISREG(s.st_mode) and s.st_uid == 0 and s.st_gid == 0
    mode = stat.S_IMODE(s.st_mode)
    if path.startswith("sys/kernel/debug/"):
        assert mode == 0o600
    elif path.startswith("proc/sys/") or path == "proc/vmemu/fault":
        assert mode == 0o644
    else:
        assert mode == 0o444
    assert s.st_size == (4096 if path.startswith("sys/devices/") else 0)


def test_directories(mounted):
    for d in ("", "proc", "proc/sys", "proc/sys/vm", "proc/vmemu", "sys/devices/system/node",
              "sys/kernel/mm/prezero"):
        s = os.stat(os.path.join(mounted, d))
        assert stat.S_ISDIR(s.st_mode) and stat.S_IMODE(s.st_mode) == 0o555 and s.st_uid == 0
    assert stat.S_IMODE(os.stat(os.path.join(mounted, "sys/kernel/debug")).st_mode) == 0o700


def test_listing_starts_with_dot_dotdot(mounted):
    # ls -f: unsorted, as readdir returns it (procps sysctl -a skips two entries blindly).
    for d in ("proc", "proc/sys/vm", "sys/kernel/debug/fail_page_alloc", "sys/kernel/mm/prezero"):
        out = sh(f"ls -a -f {d}", cwd=mounted).stdout.split()
        assert out[:2] == [".", ".."], d
        assert "." not in out[2:] and ".." not in out[2:]
    assert sorted(os.listdir(os.path.join(mounted, "proc/sys/vm"))) == ["scrub_load", "scrub_start", "scrub_stop"]
    # x86-64: no BTE, so no bte/ and no drivers/ (tests/test_fs_prezero.py covers the rest)
    assert sorted(os.listdir(os.path.join(mounted, "sys/kernel/mm/prezero"))) == \
        ["charge", "policy", "scrubd", "zero_drivers"]


def test_buddyinfo(mounted):
    rows = lines(mounted, "proc/buddyinfo")
    pat = re.compile(r"^Node (\d+), zone +(\w+) " + r"( *\d+ )" * ORDERS + "$")
    assert [pat.match(r).group(2) for r in rows] == list(ZONES)
    assert all(r.startswith("Node 0, zone ") and r[13:21].strip() in ZONES for r in rows)   # %8s
    assert len({len(r.split()) for r in rows}) == 1       # node_exporter: same columns every line
    total = sum(int(c) << o for r in rows for o, c in enumerate(r.split()[4:]))
    free_kb = int(re.search(r"MemFree: +(\d+)", read(mounted, "proc/meminfo")).group(1))
    assert abs(total * 4 - free_kb) < 40 * 1024      # same state up to a concurrent job's churn


def test_zeroinfo_matches_buddyinfo(mounted):
    head, *rows = lines(mounted, "proc/vmemu/zeroinfo")
    assert re.fullmatch(r"Free blocks count per zero state at order +" + r"( *\d+ )" * ORDERS, head)
    pat = re.compile(r"^Node +(\d+), zone +(\w+), type +(Zeroed|NotZeroed) " + r"( *\d+ )" * ORDERS + "$")
    assert all(pat.match(r) for r in rows) and len(rows) == 2 * len(ZONES)
    assert len({len(r) for r in rows}) == 1
    buddy = {r.split()[3]: [int(c) for c in r.split()[4:]] for r in lines(mounted, "proc/buddyinfo")}
    split = {}
    for r in rows:
        f = r.replace(",", "").split()
        split.setdefault(f[3], []).append([int(c) for c in f[6:]])
    for zone, (z, nz) in split.items():
        assert [a + b for a, b in zip(z, nz)] == buddy[zone]


def test_meminfo(mounted):
    rows = lines(mounted, "proc/meminfo")
    for r in rows:
        assert re.fullmatch(r"[A-Za-z()_0-9]+:\s+\d+( kB)?", r), r
        if r.endswith(" kB"):
            assert re.fullmatch(r".{16}[ \d]{8,} kB", r) and r[:16].rstrip().endswith(":"), r
    keys = [r.split(":")[0] for r in rows]
    assert keys[:4] == ["MemTotal", "MemFree", "MemZero", "MemAvailable"]
    for k in ("Buffers", "Cached", "SwapCached", "Active", "Inactive", "SwapTotal", "SwapFree", "Shmem", "Slab"):
        assert k in keys
    m = meminfo_dict(mounted)
    assert m["MemTotal"] == 2 * 1024 * 1024 and m["SwapTotal"] == m["SwapFree"] == 0
    assert 0 <= m["MemZero"] <= m["MemFree"] <= m["MemTotal"]


def test_vmstat(mounted):
    rows = lines(mounted, "proc/vmstat")
    for r in rows:
        assert re.fullmatch(r"[a-z_0-9]+ \d+", r), r       # exactly one space
    keys = [r.split()[0] for r in rows]
    assert len(keys) == len(set(keys))
    for k in ("nr_free_pages", "nr_zero_pages", "pgalloc_dma", "pgalloc_normal", "pgfree", "pgfault",
              "pgmajfault", "pswpin", "pswpout", "numa_hit", "numa_miss", "numa_foreign",
              "prezero_alloc_zeroed", "prezero_alloc_cleared"):
        assert k in keys
    v = dict(r.split() for r in rows)
    assert 0 <= int(v["nr_zero_pages"]) <= int(v["nr_free_pages"]) <= 2 << 18


def test_zoneinfo(mounted):
    rows = lines(mounted, "proc/zoneinfo")
    pats = [r"Node \d+, zone +\w+", r"  pages free +\d+", r"        (min|low|high|spanned|present|managed) +\d+",
            r"        protection: \((\d+, )*\d+\)", r"      [a-z_]+ +\d+", r"  pagesets",
            r"    cpu: \d+ pcp: [012]", r"              (count|high|batch): +\d+",
            r"  start_pfn: +\d+"]
    for r in rows:
        assert any(re.fullmatch(p, r) for p in pats), r
    heads = [r for r in rows if r.startswith("Node ")]
    assert [h.split()[-1] for h in heads] == list(ZONES)
    assert all(len(h) == len("Node 0, zone ") + 8 for h in heads)      # "%8s", no trailing space
    # 2.6.13: only CPUs with pages on a list, three lists (hot, cold, zeroed) each.
    cpu_rows = [r for r in rows if r.startswith("    cpu: ")]
    assert len(cpu_rows) % 3 == 0 and len(cpu_rows) <= len(ZONES) * 2 * 3


def test_stat(mounted):
    rows = lines(mounted, "proc/stat")
    assert re.fullmatch(r"cpu  \d+( \d+){9}", rows[0])
    assert re.fullmatch(r"cpu0 \d+( \d+){9}", rows[1]) and re.fullmatch(r"cpu1 \d+( \d+){9}", rows[2])
    keys = [r.split()[0] for r in rows[3:]]
    for k in ("intr", "ctxt", "btime", "processes", "procs_running", "procs_blocked"):
        assert k in keys
    for r in rows[3:]:
        assert re.fullmatch(r"[a-z_]+( \d+)+", r), r
    cols = [[int(x) for x in r.split()[1:]] for r in rows[:3]]
    assert [a + b for a, b in zip(cols[1], cols[2])] == cols[0]


def test_loadavg_uptime(mounted):
    assert re.fullmatch(r"\d+\.\d\d \d+\.\d\d \d+\.\d\d \d+/\d+ \d+\n", read(mounted, "proc/loadavg"))
    first = read(mounted, "proc/uptime")
    assert re.fullmatch(r"\d+\.\d\d \d+\.\d\d\n", first)
    # Virtual time follows wall time while idle.
    wait_for(lambda: float(read(mounted, "proc/uptime").split()[0]) > float(first.split()[0]))


def test_node_files(mounted):
    node = "sys/devices/system/node/node0"
    rows = lines(mounted, f"{node}/meminfo")
    for r in rows[:-2]:
        assert re.fullmatch(r"Node 0 [A-Za-z]+: +\d+ kB", r) and len(r) == len("Node 0 ") + 16 + 8 + 3, r
    assert [r.split()[2] for r in rows[:4]] == ["MemTotal:", "MemFree:", "MemZero:", "MemUsed:"]
    # hugetlb_report_node_meminfo: a count of huge pages, no unit
    assert rows[-2:] == ["Node 0 HugePages_Total:     0", "Node 0 HugePages_Free:      0"]
    ns = lines(mounted, f"{node}/numastat")
    assert [r.split()[0] for r in ns] == ["numa_hit", "numa_miss", "numa_foreign", "interleave_hit",
                                          "local_node", "other_node"]
    assert all(re.fullmatch(r"[a-z_]+ \d+", r) for r in ns)
    assert read(mounted, f"{node}/distance") == "10\n"
    assert read(mounted, f"{node}/cpulist") == "0-1\n"
    assert read(mounted, "sys/devices/system/node/online") == "0\n"
    for f in ("online", "possible", "present"):
        assert read(mounted, f"sys/devices/system/cpu/{f}") == "0-1\n"


def test_per_handle_snapshot_then_fresh_after_lseek(mounted):
    path = os.path.join(mounted, "proc/vmstat")
    fd = os.open(path, os.O_RDONLY)
    try:
        head = os.read(fd, 40)
        assert sh("echo 500 > proc/vmemu/fault", cwd=mounted).returncode == 0
        rest = os.read(fd, 8191)
        snapshot = dict(l.split() for l in (head + rest).decode().splitlines())
        fresh = dict(l.split() for l in read(mounted, "proc/vmstat").splitlines())
        assert int(fresh["pgfault"]) == int(snapshot["pgfault"]) + 500
        os.lseek(fd, 0, os.SEEK_SET)
        again = dict(l.split() for l in os.read(fd, 8191).decode().splitlines())
        assert again["pgfault"] == fresh["pgfault"]
    finally:
        os.close(fd)


def test_shell_tools(mounted):
    p = sh("cat proc/meminfo | head -n 3 && grep -c . proc/vmstat && wc -l proc/buddyinfo", cwd=mounted)
    assert p.returncode == 0 and "MemZero" in p.stdout and p.stdout.split()[-2] == "2"


def test_psutil(mounted):
    psutil = pytest.importorskip("psutil")
    old = psutil.PROCFS_PATH
    psutil.PROCFS_PATH = os.path.join(mounted, "proc")
    try:
        vm = psutil.virtual_memory()
        assert vm.total == 2 << 30 and 0 < vm.available <= vm.total
        sw = psutil.swap_memory()
        assert sw.total == 0 and sw.sin == 0
        assert len(psutil.cpu_times(percpu=True)) == 2
        assert psutil.boot_time() > 0
        assert psutil.cpu_stats().ctx_switches >= 0
    finally:
        psutil.PROCFS_PATH = old


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("free"),
                    reason="needs root, unshare and procps")
def test_procps_free_in_private_namespace(mounted):
    p = sh(f"unshare -m sh -c 'mount --bind {mounted}/proc/meminfo /proc/meminfo && free -k'")
    assert p.returncode == 0, p.stderr
    assert re.search(r"^Mem: +2097152 ", p.stdout, re.M)
