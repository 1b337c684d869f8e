"""What this host's kernel says about its hardware: CPUs, NUMA nodes and
their distances, cache leaves, /proc/cpuinfo.  Plain reads of /sys and
/proc, no measuring (that is measure.py)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

CPU_DIR = "/sys/devices/system/cpu"
NODE_DIR = "/sys/devices/system/node"


@dataclass
class Node:
    id: int
    cpus: list[int]
    memory: int               # bytes (MemTotal)
    distance: list[int]       # SLIT distances to every node, in node order


@dataclass
class CacheLeaf:
    """One cpu0/cache/index<M> leaf, as sysfs gives it."""
    index: int
    level: int
    type: str
    size: int                 # bytes
    line_size: int
    ways: int
    shared_cpus: int          # CPUs sharing one instance

    @property
    def name(self) -> str:
        """The profile's key: L1d, L1i, L2, L3."""
        return f"L{self.level}" + {"Data": "d", "Instruction": "i"}.get(self.type, "")


@dataclass
class Host:
    hostname: str
    arch: str
    page_size: int
    cpus: list[int]           # online CPUs
    nodes: list[Node]
    caches: list[CacheLeaf]
    cpuinfo: dict = field(default_factory=dict)   # the first processor's record
    package_cpus: int = 1     # CPUs in the first CPU's package
    mhz: int = 1000
    mhz_from: str = "assumed: the clock was not read"   # where mhz was read

    @property
    def line_size(self) -> int:
        data = [c for c in self.caches if c.level == 1 and c.type != "Instruction"]
        return data[0].line_size if data else 64

    @property
    def llc(self) -> int:
        """The largest cache's size: what a buffer must dwarf to miss it."""
        return max((c.size for c in self.caches), default=32 << 20)


class HostError(Exception):
    """The host's description could not be read; one line."""


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def parse_cpulist(text: str) -> list[int]:
    """The kernel's cpulist ("0-3,8") as a list of ids."""
    ids: list[int] = []
    for item in filter(None, text.strip().split(",")):
        low, _, high = item.partition("-")
        ids.extend(range(int(low), int(high or low) + 1))
    return ids


def parse_size(text: str) -> int:
    """A sysfs cache size ("48K", "32768K", "1M") in bytes."""
    m = re.fullmatch(r"(\d+)([KMG]?)", text.strip())
    if not m:
        raise HostError(f"unexpected cache size {text!r}")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]


def online_cpus() -> list[int]:
    try:
        return parse_cpulist(read(f"{CPU_DIR}/online"))
    except OSError:
        return list(range(os.cpu_count() or 1))


def nodes(cpus: list[int]) -> list[Node]:
    """The NUMA nodes with CPUs; one node of every CPU and all memory
    where the kernel has no NUMA (no /sys/devices/system/node)."""
    try:
        ids = parse_cpulist(read(f"{NODE_DIR}/has_cpu"))
    except OSError:
        return [Node(0, cpus, meminfo_total("/proc/meminfo"), [10])]
    found = []
    for n in ids:
        path = f"{NODE_DIR}/node{n}"
        distance = [int(d) for d in read(f"{path}/distance").split()]
        found.append(Node(n, parse_cpulist(read(f"{path}/cpulist")), meminfo_total(f"{path}/meminfo"), distance))
    return found


def meminfo_total(path: str) -> int:
    """MemTotal in bytes from /proc/meminfo or a node's meminfo."""
    m = re.search(r"MemTotal:\s+(\d+) kB", read(path))
    if not m:
        raise HostError(f"{path}: no MemTotal line")
    return int(m.group(1)) * 1024


def cache_leaves(cpu: int = 0) -> list[CacheLeaf]:
    base = f"{CPU_DIR}/cpu{cpu}/cache"
    leaves = []
    for entry in sorted(os.listdir(base) if os.path.isdir(base) else []):
        if not re.fullmatch(r"index\d+", entry):
            continue
        d = f"{base}/{entry}"
        size, line = parse_size(read(f"{d}/size")), int(read(f"{d}/coherency_line_size"))
        # a fully associative cache reports 0 ways: one set of size / line
        ways = int(read(f"{d}/ways_of_associativity")) or size // line
        leaves.append(CacheLeaf(int(entry[5:]), int(read(f"{d}/level")), read(f"{d}/type"), size, line, ways,
                                len(parse_cpulist(read(f"{d}/shared_cpu_list")))))
    return leaves


def cpuinfo() -> dict:
    """The first record of /proc/cpuinfo, keys as written ("model name")."""
    record = {}
    for line in read("/proc/cpuinfo").split("\n\n")[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            record[key.strip()] = value.strip()
    return record


def package_cpus(cpu: int) -> int:
    try:
        return len(parse_cpulist(read(f"{CPU_DIR}/cpu{cpu}/topology/package_cpus_list")))
    except OSError:
        return 1


def cpu_mhz(record: dict) -> tuple[int, str]:
    """The CPU's clock and where it was read: cpufreq's maximum, else
    /proc/cpuinfo's current 'cpu MHz' (a VM has no cpufreq)."""
    path = f"{CPU_DIR}/cpu0/cpufreq/cpuinfo_max_freq"
    try:
        return int(read(path)) // 1000, f"{path} (kHz)"
    except (OSError, ValueError):
        pass
    if "cpu MHz" in record:
        return max(int(float(record["cpu MHz"])), 1), "'cpu MHz' of /proc/cpuinfo (no cpufreq)"
    return 1000, "assumed: neither cpufreq nor /proc/cpuinfo gives the clock"


def describe() -> Host:
    """This host, as its kernel describes it."""
    import platform
    import socket
    try:
        cpus, record = online_cpus(), cpuinfo()
        mhz, mhz_from = cpu_mhz(record)
        return Host(socket.gethostname(), platform.machine(), os.sysconf("SC_PAGESIZE"), cpus, nodes(cpus),
                    cache_leaves(cpus[0]), record, package_cpus(cpus[0]), mhz, mhz_from)
    except (OSError, ValueError) as e:
        raise HostError(f"cannot read this host's description: {e}") from None
