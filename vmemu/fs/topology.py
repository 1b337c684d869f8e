"""sys/devices/system/{cpu,node}: the emulated machine's CPUs, caches and
NUMA nodes, in the kernel's formats, so that numactl, numastat, lscpu,
mpstat, top and psutil describe the emulated machine (docs/tools.md).

    cpu/{possible,present,online}       cpulist of every CPU (no hotplug: all are online)
    cpu/offline                         empty list
    cpu/kernel_max                      CONFIG_NR_CPUS - 1 ([cpu] nr_cpus_config)
    cpu/cpuN/online                     1; every CPU but the boot CPU (the hotpluggable ones)
    cpu/cpuN/topology/*                 package and core ids, sibling masks ([cpu] cores_per_package)
    cpu/cpuN/cache/indexM/*             one leaf per [cache] entry; ia64's own attributes
                                        (arch/ia64/kernel/topology.c) or the generic ones
    cpu/cpuN/nodeM -> ../../node/nodeM  the CPU's node (mpstat -N reads the name)
    node/{possible,online,has_cpu,has_memory,has_normal_memory}  node lists
    node/nodeN/{cpumap,cpulist}         the node's CPUs
    node/nodeN/{meminfo,numastat,vmstat,distance}
    node/nodeN/cpuM -> ../../cpu/cpuM

Masks (`cpumap`, `*_siblings`, `shared_cpu_map`) are printed nr_cpu_ids bits
wide (the machine's CPU count), as the kernel has since 2.6.29; 2.6.10
printed NR_CPUS bits, which libnuma cannot parse when NR_CPUS exceeds the
host's cpumask (the research notes in docs/tools.md).  Sibling and cache
masks include every CPU of the group: no CPU is ever offline.
"""

from __future__ import annotations

import errno

from ..mm.vmstat import NUMA_EVENTS, VMSTAT_NUMA
from .base import ConstAttr, Link, SysfsAttr, kb
from .prezero import parse_bool

CPU = "sys/devices/system/cpu"
NODE = "sys/devices/system/node"


# -- the two mask formats -------------------------------------------------------------

def cpulist(ids) -> str:
    """"0-3,8" (bitmap_print_to_pagebuf list format)."""
    ids = sorted(ids)
    out, i = [], 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ",".join(out) + "\n"


def cpumap(ids, nbits: int) -> str:
    """The kernel's %*pb: nbits as hex in 32-bit groups joined by ',', most
    significant first; every group 8 digits but the first, which has just
    the digits its bits need (nr_cpu_ids 8, {2,3} -> "0c")."""
    value = sum(1 << i for i in set(ids)) & ((1 << nbits) - 1)
    low_groups = (nbits - 1) // 32            # the whole 32-bit groups below the first
    digits = f"{value:0{(nbits - 32 * low_groups + 3) // 4 + 8 * low_groups}x}"
    first = len(digits) - 8 * low_groups
    return ",".join([digits[:first], *(digits[i:i + 8] for i in range(first, len(digits), 8))]) + "\n"


# -- cpu/ -----------------------------------------------------------------------------

def cpu_files(m) -> dict:
    nr = len(m.cpus)
    every = cpulist(range(nr))
    files = {f"{CPU}/{name}": ConstAttr(every) for name in ("possible", "present", "online")}
    files[f"{CPU}/offline"] = ConstAttr("\n")
    files[f"{CPU}/kernel_max"] = ConstAttr(f"{m.profile.cpu['nr_cpus_config'] - 1}\n")
    leaves = cache_leaves(m)
    for c in m.cpus:
        d = f"{CPU}/cpu{c.id}"
        if c.id:
            files[f"{d}/online"] = cpu_online_file()
        files.update({f"{d}/topology/{k}": ConstAttr(v) for k, v in topology(m, c.id).items()})
        for i, leaf in enumerate(leaves):
            files.update({f"{d}/cache/index{i}/{k}": ConstAttr(v) for k, v in leaf(c.id).items()})
        files[f"{d}/node{c.node}"] = Link(f"../../node/node{c.node}")
    return files


def cpu_online_file() -> SysfsAttr:
    """cpuN/online (0644): writing 1 is the no-op it is on an online CPU;
    the model cannot take a CPU away, so 0 is refused as for a CPU that
    cannot go offline (EBUSY); anything else is kstrtobool's EINVAL."""
    def store(online: bool) -> None:
        if not online:
            raise OSError(errno.EBUSY, "online: the emulated CPUs cannot be taken offline")
    return SysfsAttr(lambda: 1, parse=parse_bool, store=store)


def topology(m, cpu: int) -> dict[str, str]:
    """cpuN/topology: one package per cores_per_package consecutive CPUs,
    one thread per core (no SMT in 2004 Itanium 2 or K8)."""
    per = m.profile.cpu["cores_per_package"]
    package = range(cpu - cpu % per, cpu - cpu % per + per)
    nbits = len(m.cpus)
    return {"physical_package_id": f"{cpu // per}\n", "core_id": f"{cpu % per}\n",
            "thread_siblings": cpumap([cpu], nbits), "thread_siblings_list": cpulist([cpu]),
            "core_siblings": cpumap(package, nbits), "core_siblings_list": cpulist(package)}


def cache_leaves(m) -> list:
    """One function per cache leaf: CPU id -> {attribute: text}, with the
    architecture's own attribute set."""
    nbits = len(m.cpus)
    ia64 = m.profile.cpu["arch"] == "ia64"

    def leaf(cache):
        def attrs(cpu: int) -> dict[str, str]:
            shared = cache.sharing(cpu)
            out = {"level": f"{cache.level}\n", "type": f"{cache.type}\n", "size": f"{cache.size // 1024}K\n",
                   "coherency_line_size": f"{cache.line_size}\n", "ways_of_associativity": f"{cache.ways}\n",
                   "number_of_sets": f"{cache.sets}\n", "shared_cpu_map": cpumap(shared, nbits)}
            if ia64:           # arch/ia64/kernel/topology.c: no id, list or partition; the write policy
                out["attributes"] = f"{cache.write_policy}\n"
            else:              # drivers/base/cacheinfo.c (x86 prints no write policy)
                out.update(id=f"{cpu // cache.shared_cpus}\n", physical_line_partition="1\n",
                           shared_cpu_list=cpulist(shared))
            return out
        return attrs
    return [leaf(cache) for cache in m.profile.caches]


# -- node/ ----------------------------------------------------------------------------

def node_files(m) -> dict:
    nodes = cpulist(n.id for n in m.nodes)
    with_cpus = cpulist(n.id for n in m.nodes if n.cpus)
    with_memory = cpulist(n.id for n in m.nodes if any(z.present_pages for z in n.zones))
    files = {f"{NODE}/{name}": ConstAttr(nodes) for name in ("possible", "online")}
    files[f"{NODE}/has_cpu"] = ConstAttr(with_cpus)
    # ZONE_DMA counts as normal memory (N_NORMAL_MEMORY: zones up to ZONE_NORMAL)
    files.update({f"{NODE}/{name}": ConstAttr(with_memory) for name in ("has_memory", "has_normal_memory")})
    for node in m.nodes:
        d = f"{NODE}/node{node.id}"
        files[f"{d}/cpumap"] = ConstAttr(cpumap(node.cpus, len(m.cpus)))
        files[f"{d}/cpulist"] = ConstAttr(cpulist(node.cpus))
        files[f"{d}/distance"] = ConstAttr(" ".join(map(str, m.distance[node.id])) + "\n")
        files[f"{d}/meminfo"] = SysfsAttr(lambda node=node: node_meminfo(m, node))
        files[f"{d}/numastat"] = SysfsAttr(lambda node=node: numastat(node))
        files[f"{d}/vmstat"] = SysfsAttr(lambda node=node: node_vmstat(node))
        files.update({f"{d}/cpu{c}": Link(f"../../cpu/cpu{c}") for c in node.cpus})
    return files


def node_meminfo(m, node) -> str:
    """node_read_meminfo of 2.6.10 with the prezeroing patch's MemZero after
    MemFree, in today's columns; no highmem on 64-bit, so Low = all.  The
    emulator has no page cache, so Active and Inactive are 0."""
    total = kb(m, sum(z.present_pages for z in node.zones))
    free = kb(m, sum(z.free_pages for z in node.zones))
    zero = kb(m, sum(z.zero_pages for z in node.zones))
    lines = [("MemTotal", total), ("MemFree", free), ("MemZero", zero), ("MemUsed", total - free),
             ("Active", 0), ("Inactive", 0), ("HighTotal", 0), ("HighFree", 0),
             ("LowTotal", total), ("LowFree", free)]
    text = "".join(f"Node {node.id} {label + ':':<16}{value:8d} kB\n" for label, value in lines)
    # hugetlb_report_node_meminfo: no huge pages are configured
    return text + f"Node {node.id} HugePages_Total: {0:5d}\nNode {node.id} HugePages_Free:  {0:5d}\n"


def numastat(node) -> str:
    return "".join(f"{k} {node.stat.get(k, 0)}\n" for k in NUMA_EVENTS)


def node_vmstat(node) -> str:
    """nodeN/vmstat (node_read_vmstat): the node's page counts, then its
    NUMA events under /proc/vmstat's names."""
    counts = [("nr_free_pages", sum(z.free_pages for z in node.zones)),
              ("nr_zero_pages", sum(z.zero_pages for z in node.zones))]
    counts += [(name, node.stat.get(key, 0)) for name, key in VMSTAT_NUMA.items()]
    return "".join(f"{k} {v}\n" for k, v in counts)


def files(kernel) -> dict:
    """Every cpu/ and node/ file, by path relative to the mount."""
    return {**cpu_files(kernel.machine), **node_files(kernel.machine)}
