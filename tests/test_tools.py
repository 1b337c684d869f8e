"""The usual tools, unmodified, inside `vmemu shell`, describe the emulated
machine and nothing else: numactl, numastat, lscpu, mpstat,
vmstat, top, free and psutil, on every profile, checked against the
profile's numbers.  Each profile's tools run in one shell session, every
tool's stdout and stderr to files of their own, so that a warning on stderr
is seen.  What the host still decides is in docs/tools.md.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import VMEMU, mounting, read
from vmemu.lib.cmdline import memparse
from vmemu.profiles import load_profile

TOOLS = ("unshare", "numactl", "numastat", "lscpu", "mpstat", "vmstat", "top", "free")
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in TOOLS),
                                reason="needs root, util-linux, numactl, sysstat and procps (scripts/test.sh)")

PSUTIL = ("import psutil, warnings; warnings.simplefilter('error'); "
          "print(psutil.cpu_count(), psutil.cpu_count(logical=False), len(psutil.cpu_times(percpu=True)), "
          "psutil.virtual_memory().total)")
COMMANDS = {
    "numactl": "numactl --hardware", "numastat": "numastat", "numastat_m": "numastat -m",
    "lscpu": "lscpu", "lscpu_caches": "lscpu -C", "mpstat": "mpstat -P ALL", "mpstat_nodes": "mpstat -N ALL",
    "vmstat": "vmstat", "top": "top -bn1 -1 -w 512", "free": "free -k",
    "psutil": f"{sys.executable} -c \"{PSUTIL}\"", "cpuinfo": "cat /proc/cpuinfo",
    "cpu_dir": "ls /sys/devices/system/cpu", "node_dir": "ls /sys/devices/system/node",
}


def run_tools(mp: str, names) -> dict[str, tuple[str, str]]:
    """name -> (stdout, stderr) of each command, all run in one vmemu shell."""
    out = tempfile.mkdtemp(prefix="vmemu-tools-")
    try:
        script = "".join(f"{COMMANDS[n]} >{out}/{n}.out 2>{out}/{n}.err\n" for n in names)
        p = subprocess.run([*VMEMU, "shell", mp, "--", "sh", "-c", script], capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stderr
        return {n: tuple(open(f"{out}/{n}.{k}").read() for k in ("out", "err")) for n in names}
    finally:
        shutil.rmtree(out, ignore_errors=True)


class Machine:
    """What the profile says the tools must show."""

    def __init__(self, name: str):
        p = load_profile(name)
        self.profile = p
        self.nodes = p.machine["nodes"]
        self.per_node = p.machine["cpus_per_node"]
        self.cpus = self.nodes * self.per_node
        self.node_mb = memparse(p.machine["node_memory"]) >> 20
        self.cores = p.cpu["cores_per_package"]

    def node_cpus(self, node: int) -> list[int]:
        return list(range(node * self.per_node, (node + 1) * self.per_node))


@pytest.fixture(scope="module", params=["altix-8", "x86-64", "i386-piii"])
def shell(request):
    """(Machine, mount point, tool outputs) for each profile."""
    with mounting(request.param) as mp:
        yield Machine(request.param), mp, run_tools(mp, COMMANDS)


def ids(cpu_list: str) -> list[int]:
    """"0-2,5" -> [0, 1, 2, 5] (lscpu writes a list of two as "0,1")."""
    out = []
    for part in cpu_list.split(","):
        first, _, last = part.partition("-")
        out += range(int(first), int(last or first) + 1)
    return out


def quiet(outputs, name) -> str:
    stdout, stderr = outputs[name]
    assert stderr == "", f"{name} wrote to stderr: {stderr}"
    assert not re.search(r"(?i)warning|not mounted|invalid", stdout), stdout
    return stdout


def test_numactl_hardware(shell):
    m, mp, out = shell
    text = quiet(out, "numactl")
    assert f"available: {m.nodes} nodes (0{f'-{m.nodes - 1}' if m.nodes > 1 else ''})\n" in text
    for node in range(m.nodes):
        assert f"node {node} cpus: {' '.join(map(str, m.node_cpus(node)))}\n" in text
        assert f"node {node} size: {m.node_mb} MB\n" in text
        row = read(mp, f"sys/devices/system/node/node{node}/distance").split()
        assert re.search(rf"^ +{node}: +{' +'.join(row)} *$", text, re.M), (node, row)


def test_numastat_and_meminfo_table(shell):
    m, _, out = shell
    text = quiet(out, "numastat")
    assert text.split("\n")[0].split() == [f"node{n}" for n in range(m.nodes)]
    assert [l.split()[0] for l in text.strip().split("\n")[1:]] == [
        "numa_hit", "numa_miss", "numa_foreign", "interleave_hit", "local_node", "other_node"]
    stdout, stderr = out["numastat_m"]
    assert stderr == ""
    # numastat 2.0.16 knows a fixed list of keys and says so, once per node, of the
    # prezeroing patch's MemZero line (docs/tools.md); nothing else is unknown to it.
    notes = [l for l in stdout.split("\n") if l.startswith("Token ")]
    assert notes == ["Token MemZero not in hash table."] * m.nodes
    total = re.search(r"^MemTotal +(.*)$", stdout, re.M).group(1).split()
    assert [float(v) for v in total] == [m.node_mb] * m.nodes + [m.node_mb * m.nodes]


def test_lscpu(shell):
    m, _, out = shell
    text = quiet(out, "lscpu")
    field = lambda name: re.search(rf"^{re.escape(name)}: +(.*)$", text, re.M).group(1)
    assert field("CPU(s)") == str(m.cpus) and ids(field("On-line CPU(s) list")) == list(range(m.cpus))
    assert field("Socket(s)") == str(m.cpus // m.cores) and field("Core(s) per socket") == str(m.cores)
    assert field("Thread(s) per core") == "1" and field("NUMA node(s)") == str(m.nodes)
    assert field("Vendor ID") == m.profile.cpu["vendor"]
    for node in range(m.nodes):
        assert ids(field(f"NUMA node{node} CPU(s)")) == m.node_cpus(node)
    caches = quiet(out, "lscpu_caches").strip().split("\n")[1:]
    assert [c.split()[0] for c in caches] == [c.name for c in m.profile.caches]
    for row, cache in zip(caches, m.profile.caches):
        assert row.split()[3:6] == [str(cache.ways), cache.type, str(cache.level)], row


def test_mpstat_counts_the_emulated_cpus(shell):
    m, _, out = shell
    text = quiet(out, "mpstat")
    assert f"({m.cpus} CPU)" in text.split("\n")[0]
    rows = [l.split()[1] for l in text.strip().split("\n")[3:]]
    assert rows == ["all"] + [str(c) for c in range(m.cpus)]
    nodes = [l.split()[1] for l in quiet(out, "mpstat_nodes").strip().split("\n")[3:]]
    assert nodes == ["all"] + [str(n) for n in range(m.nodes)]           # cpuN/nodeM links


def test_vmstat_top_free_show_the_emulated_memory(shell):
    m, mp, out = shell
    mem = {l.split(":")[0]: int(l.split()[1]) for l in read(mp, "proc/meminfo").splitlines()}
    assert mem["MemTotal"] == m.node_mb * m.nodes * 1024
    assert re.search(rf"^Mem: +{mem['MemTotal']} ", quiet(out, "free"), re.M)
    assert quiet(out, "vmstat").split("\n")[1].split()[:4] == ["r", "b", "swpd", "free"]
    top = quiet(out, "top")
    assert re.search(rf"MiB Mem : +{mem['MemTotal'] / 1024:.1f} total", top)
    assert [int(c) for c in re.findall(r"%Cpu(\d+) +:", top)] == list(range(m.cpus))
    tasks = int(re.search(r"Tasks: +(\d+) total", top).group(1))
    assert tasks < 10, "top lists the host's processes"           # the shell's PID namespace


def test_psutil(shell):
    m, _, out = shell
    logical, physical, per_cpu, total = quiet(out, "psutil").split()
    assert (int(logical), int(physical), int(per_cpu)) == (m.cpus, m.cpus, m.cpus)
    assert int(total) == m.node_mb * m.nodes << 20


def test_no_host_file_beside_the_emulated_ones(shell):
    m, mp, out = shell
    assert quiet(out, "cpuinfo") == read(mp, "proc/cpuinfo")
    assert quiet(out, "cpuinfo").count("\n\n") == m.cpus
    assert quiet(out, "cpu_dir").split() == sorted(os.listdir(os.path.join(mp, "sys/devices/system/cpu")))
    assert quiet(out, "node_dir").split() == sorted(os.listdir(os.path.join(mp, "sys/devices/system/node")))


@pytest.mark.slow
def test_altix_512_files_and_the_tools_that_parse_them():
    # 512 CPUs in 256 nodes. numactl and libnuma's users (top, vmstat) size their
    # cpumask from the host's sched_getaffinity and cannot parse a 512-bit map on a
    # host with a smaller one (docs/tools.md); the files and the other tools can.
    m = Machine("altix-512")
    with mounting("altix-512") as mp:
        assert read(mp, "sys/devices/system/node/node255/cpumap") == "c0000000" + ",00000000" * 15 + "\n"
        assert read(mp, "sys/devices/system/cpu/online") == "0-511\n"
        assert read(mp, "sys/devices/system/node/node255/cpulist") == "510-511\n"
        out = run_tools(mp, ["lscpu", "mpstat", "psutil", "numastat", "free"])
    text = quiet(out, "lscpu")
    assert re.search(r"^CPU\(s\): +512$", text, re.M) and re.search(r"^NUMA node\(s\): +256$", text, re.M)
    assert re.search(r"^NUMA node255 CPU\(s\): +510,511$", text, re.M)
    assert "(512 CPU)" in quiet(out, "mpstat").split("\n")[0]
    assert quiet(out, "mpstat").strip().split("\n")[-1].split()[1] == "511"
    assert quiet(out, "psutil").split()[:3] == ["512", "512", "512"]
    assert quiet(out, "numastat").split("\n")[0].split()[-1] == "node255"
    assert re.search(rf"^Mem: +{m.node_mb * 256 * 1024} ", quiet(out, "free"), re.M)
