"""The emulated files through monitoring exporters' parsers.

The parse_* functions are strict Python versions of the rules of the
Prometheus procfs library and node_exporter 1.5 collectors (what they read,
what makes them fail); they run against real mounts of the x86-64 and the
altix-8 (--backing none) profiles after a small fault job, so the per-CPU
lists and the counters are not all zero.  When the Debian package
prometheus-node-exporter is installed (or installable), the real binary is
pointed at the mount as well.
"""

import os
import re
import shutil
import socket
import subprocess
import urllib.request

import pytest

from conftest import make_mountpoint, unmount, vmemu, wait_for

PROCPS_READ = 8191          # procps reads at most this much, once
SYSCTL_READ = 128           # node_exporter's sysctl reader
PROFILES = {"x86-64": [], "altix-8": ["--backing", "none"]}


@pytest.fixture(scope="module", params=list(PROFILES))
def mp(request):
    d = make_mountpoint()
    vmemu("mount", d, "--profile", request.param, "--seed", "1", *PROFILES[request.param])
    try:
        # scrubd on and a job on every CPU: pagesets and counters in use, the
        # largest zoneinfo normal use produces.
        with open(os.path.join(d, "proc/sys/vm/scrub_start"), "w") as f:
            f.write("6")
        ncpu = len(cpulist(read(d, "sys/devices/system/cpu/online")))
        with open(os.path.join(d, "proc/vmemu/fault"), "w") as f:
            f.write(f"bytes=256M threads={ncpu}")
        yield d
    finally:
        unmount(d)
        shutil.rmtree(d, ignore_errors=True)


def read(mp, path) -> str:
    """One read of PROCPS_READ bytes, which must hold the whole file."""
    fd = os.open(os.path.join(mp, path), os.O_RDONLY)
    try:
        data = os.read(fd, PROCPS_READ)
        assert len(data) < PROCPS_READ, f"{path}: {len(data)} bytes do not fit one {PROCPS_READ}-byte read"
        assert os.read(fd, PROCPS_READ) == b""
    finally:
        os.close(fd)
    return data.decode("ascii")


def cpulist(text: str) -> list[int]:
    out = []
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def integer(s: str) -> int:
    assert re.fullmatch(r"-?\d+", s), f"not an integer: {s!r}"
    return int(s)


# -- parsers ------------------------------------------------------------------------

def parse_buddyinfo(text):
    # procfs buddyinfo.go: >= 4 fields, "Node N," "zone" NAME, same bucket count on every line.
    out, buckets = {}, None
    for line in text.splitlines():
        parts = line.split()
        assert len(parts) >= 4 and parts[0] == "Node" and parts[2] == "zone", line
        counts = [integer(c) for c in parts[4:]]
        assert buckets in (None, len(counts)), f"mismatch in number of buddyinfo buckets: {line}"
        buckets = len(counts)
        out[(parts[1].rstrip(","), parts[3].rstrip(","))] = counts
    return out


def parse_meminfo(text):
    # node_exporter meminfo_linux.go: "Key: value [kB]"; no blank or one-token lines.
    out = {}
    for line in text.splitlines():
        parts = line.split()
        assert len(parts) in (2, 3) and parts[0].endswith(":"), f"invalid line in meminfo: {line!r}"
        assert len(parts) == 2 or parts[2] == "kB", line
        out[parts[0][:-1]] = integer(parts[1]) * (1024 if len(parts) == 3 else 1)
    return out


def parse_vmstat(text):
    # node_exporter vmstat_linux.go: exactly "name value" (a blank line panics it).
    out = {}
    for line in text.splitlines():
        parts = line.split(" ")
        assert len(parts) == 2, f"vmstat line {line!r}"
        out[parts[0]] = integer(parts[1])
    return out


ZONEINFO_KEYS = {"nr_free_pages", "min", "low", "high", "scanned", "spanned", "present", "managed"}


def parse_zoneinfo(text):
    # procfs zoneinfo.go: blocks split on "\nNode", "(\d+), zone\s+(\w+)" names the
    # block, then the first field of each line is a key and the second its value.
    zones = []
    for block in text.split("\nNode"):
        z = {}
        for line in block.split("\n"):
            m = re.search(r"(\d+), zone\s+(\w+)", line)
            if m:
                z["node"], z["zone"] = m.groups()
                continue
            parts = line.split()
            if len(parts) < 2:
                continue
            if parts[0] in ZONEINFO_KEYS or parts[0].startswith(("nr_", "numa_")):
                z[parts[0]] = integer(parts[1])
            elif parts[0] == "protection:":
                values = line.split(":")[1].strip().strip("()").split(", ")
                z["protection"] = [integer(v) for v in values]
        assert "node" in z and "zone" in z, block[:60]
        zones.append(z)
    return zones


def parse_stat(text):
    # procfs stat.go: cpu lines "%s %f x10", intr/ctxt/btime/processes/procs_*, softirq 11 numbers.
    out = {"cpus": {}}
    for line in text.splitlines():
        parts = line.split()
        if parts[0].startswith("cpu"):
            assert len(parts) == 11, f"cpu line with {len(parts) - 1} fields: {line}"
            out["cpus"][parts[0]] = [integer(v) for v in parts[1:]]
        elif parts[0] == "softirq":
            assert len(parts) == 12, line
        elif parts[0] in ("intr", "ctxt", "btime", "processes", "procs_running", "procs_blocked"):
            out[parts[0]] = integer(parts[1])
            assert all(integer(v) >= 0 for v in parts[1:])
    for k in ("intr", "ctxt", "btime", "processes", "procs_running", "procs_blocked"):
        assert k in out, k
    return out


def parse_loadavg(text):
    parts = text.split()
    assert len(parts) == 5, text
    loads = [float(p) for p in parts[:3]]
    running, total = (integer(x) for x in parts[3].split("/"))
    integer(parts[4])
    assert 1 <= running <= total
    return loads


def parse_node_meminfo(text, node):
    # node_exporter meminfo_numa_linux.go: "Node N Key: value [kB]", 4 or 5 fields.
    out = {}
    for line in text.splitlines():
        parts = line.split()
        assert parts[:2] == ["Node", str(node)] and len(parts) in (4, 5), f"invalid line in file: {line}"
        assert len(parts) == 4 or parts[4] == "kB"
        out[parts[2].rstrip(":")] = integer(parts[3]) * (1024 if len(parts) == 5 else 1)
    return out


def parse_numastat(text):
    out = {}
    for line in text.splitlines():
        parts = line.split()
        assert len(parts) == 2, f"line scan did not return 2 fields: {line}"
        out[parts[0]] = integer(parts[1])
    return out


# -- the files through them -----------------------------------------------------------

def every_file(mp):
    for root, _, files in os.walk(mp):
        for name in files:
            yield os.path.relpath(os.path.join(root, name), mp)


# vmemu's own tables, which no procps tool reads and which grow with CPUs x
# activities (as a large machine's seq_file files do): read whole, in parts.
GROWING = {"proc/vmemu/ledger"}


def test_every_file_whole_in_one_read(mp):
    for path in every_file(mp):
        if path in GROWING:
            with open(os.path.join(mp, path)) as f:
                assert f.read().endswith("\n"), path
            continue
        try:
            text = read(mp, path)
        except PermissionError:         # write-only triggers
            continue
        if path == "proc/cpuinfo":     # one record per CPU, each closed by a blank line
            assert all(r and "\n\n" not in r for r in text.split("\n\n")[:-1]) and text.endswith("\n\n")
        elif text not in ("", "\n"):    # "\n": an empty CPU or node list (cpu/offline)
            assert text.endswith("\n") and "\n\n" not in text and not text.startswith("\n"), path


def test_buddyinfo_and_meminfo_agree(mp):
    buddy = parse_buddyinfo(read(mp, "proc/buddyinfo"))
    mem = parse_meminfo(read(mp, "proc/meminfo"))
    for k in ("MemTotal", "MemFree", "MemZero", "MemAvailable", "SwapTotal", "SwapFree", "Buffers", "Cached"):
        assert k in mem
    zones = parse_zoneinfo(read(mp, "proc/zoneinfo"))
    page = mem["MemTotal"] // sum(z["present"] for z in zones)         # the emulated page size
    assert sum(c << o for counts in buddy.values() for o, c in enumerate(counts)) * page <= mem["MemFree"]


def test_vmstat(mp):
    v = parse_vmstat(read(mp, "proc/vmstat"))
    assert v["pgfault"] > 0 and v["pswpin"] == v["pswpout"] == 0 and "nr_free_pages" in v


def test_zoneinfo(mp):
    zones = parse_zoneinfo(read(mp, "proc/zoneinfo"))
    nodes = cpulist(read(mp, "sys/devices/system/node/online"))
    assert sorted({int(z["node"]) for z in zones}) == nodes
    for z in zones:
        for k in ("nr_free_pages", "min", "low", "high", "spanned", "present", "managed", "protection"):
            assert k in z, (z["node"], z["zone"], k)
        assert 0 <= z["nr_free_pages"] <= z["present"] <= z["spanned"]


def test_zoneinfo_pagesets_2_6_13_layout(mp):
    text = read(mp, "proc/zoneinfo")
    blocks = re.findall(r"\n    cpu: (\d+) pcp: (\d)\n              count: (\d+)"
                        r"\n              high:  (\d+)\n              batch: (\d+)", text)
    assert blocks, "a job ran: some CPU has pages on a per-CPU list"
    assert text.count("\n    cpu: ") == len(blocks)
    assert all(int(count) <= int(high) for _, _, count, high, _ in blocks)


def test_node_meminfo_and_numastat(mp):
    nodes = cpulist(read(mp, "sys/devices/system/node/online"))
    total = 0
    for n in nodes:
        d = f"sys/devices/system/node/node{n}"
        m = parse_node_meminfo(read(mp, f"{d}/meminfo"), n)
        assert {"MemTotal", "MemFree", "MemUsed"} <= set(m) and m["MemUsed"] == m["MemTotal"] - m["MemFree"]
        total += m["MemTotal"]
        ns = parse_numastat(read(mp, f"{d}/numastat"))
        assert list(ns) == ["numa_hit", "numa_miss", "numa_foreign", "interleave_hit", "local_node", "other_node"]
        assert len(read(mp, f"{d}/distance").split()) == len(nodes)
    assert total == parse_meminfo(read(mp, "proc/meminfo"))["MemTotal"]


def test_stat_and_loadavg(mp):
    s = parse_stat(read(mp, "proc/stat"))
    cpus = cpulist(read(mp, "sys/devices/system/cpu/online"))
    assert list(s["cpus"]) == ["cpu"] + [f"cpu{c}" for c in cpus]
    assert all(v >= 0 for v in parse_loadavg(read(mp, "proc/loadavg")))


def test_sysctl_integers_in_128_bytes(mp):
    d = os.path.join(mp, "proc/sys/vm")
    for name in os.listdir(d):
        fd = os.open(os.path.join(d, name), os.O_RDONLY)
        try:
            data = os.read(fd, SYSCTL_READ)
        finally:
            os.close(fd)
        assert data.endswith(b"\n") and len(data) < SYSCTL_READ
        [integer(v) for v in data.decode().strip().split("\t")]


# -- the real node_exporter ---------------------------------------------------------

COLLECTORS = ("buddyinfo", "meminfo", "vmstat", "zoneinfo", "meminfo_numa", "loadavg", "stat")


@pytest.fixture(scope="module")
def node_exporter():
    exe = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if not exe:     # scripts/test.sh installs it; a bare pytest run may not have it
        pytest.skip("prometheus-node-exporter is not installed (scripts/test.sh installs it)")
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_node_exporter(mp, node_exporter):
    port = free_port()
    argv = ["timeout", "120", node_exporter, f"--web.listen-address=127.0.0.1:{port}",
            f"--path.procfs={mp}/proc", f"--path.sysfs={mp}/sys", f"--path.rootfs={mp}",
            "--collector.disable-defaults", "--collector.vmstat.fields=.*", "--collector.stat.softirq",
            *(f"--collector.{c}" for c in COLLECTORS)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def scrape():
            if proc.poll() is not None:
                raise AssertionError(f"node_exporter exited: {proc.stderr.read()[-500:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    return r.read().decode()
            except OSError:
                return None
        metrics = wait_for(scrape, timeout=30)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for c in COLLECTORS:
        assert f'node_scrape_collector_success{{collector="{c}"}} 1' in metrics, \
            f"collector {c} failed: {proc.stderr.read()[-2000:]}"
    def value(name):
        m = re.search(rf"^{name} (\S+)$", metrics, re.M)
        assert m, name
        return float(m.group(1))
    mem = parse_meminfo(read(mp, "proc/meminfo"))
    assert value("node_memory_MemTotal_bytes") == mem["MemTotal"]
    assert value("node_vmstat_pgfault") > 0
    assert re.search(r'^node_buddyinfo_blocks\{node="0",size="0",zone="\w+"\} ', metrics, re.M)
    assert re.search(r'^node_zoneinfo_present_pages\{node="0",zone="\w+"\} ', metrics, re.M)
    assert re.search(r'^node_memory_numa_MemTotal\{node="0"\} ', metrics, re.M)
    assert value("node_boot_time_seconds") == parse_stat(read(mp, "proc/stat"))["btime"]
    assert re.search(r"^node_context_switches_total ", metrics, re.M)
    assert re.search(r"^node_load1 ", metrics, re.M)
