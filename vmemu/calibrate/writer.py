"""The calibrated profile: what was read and measured on this host as
profile entries, and those entries as a TOML profile that inherits a base.

Entries are one flat table, "section.key" -> (value, source), so that a
key the model renames is one line of KEYS below.  Every source says where
its value comes from: "measured by calibrate on HOST, DATE: how" for what
this host told or showed, "choice: ..." or "assumed: ..." for the rest.
"""

from __future__ import annotations

import json
import math
import os
from datetime import date

from .host import Host

# profile key <- primitive (vmemu.calibrate.measure), and the key's type
KEYS = [
    ("memory.hit_ns", "hit_ns", int),                        # a line in this CPU's cache
    ("memory.latency_ns", "latency_ns", int),                # local memory load latency
    ("memory.transfer_ns", "transfer_ns", int),              # a line between two CPUs of a node
    ("memory.transfer_remote_ns", "remote_transfer_ns", int),   # ... and between nodes
    ("memory.transfer_router_ns", "remote_transfer_ns", int),
    ("memory.mlp", "mlp", int),                              # misses outstanding per CPU
    ("memory.bus_bytes_per_ns", "bus_bytes_per_ns", float),  # one node's memory, all its CPUs
    ("memory.link_bytes_per_ns", "link_bytes_per_ns", float),   # interconnect per direction; 0 on one node
    ("memory.write_allocate", "write_allocate", bool),
    ("memory.clear_streams", "clear_streams", bool),         # clear_page writes lines without reading them
    ("memory.efficiency", "efficiency", float),              # 1: bus_bytes_per_ns is a sustained rate
    ("cost.fault_entry_ns", "fault_entry_ns", int),
    ("cost.user_per_page_ns", "user_per_page_ns", int),
    ("cost.exit_per_page_ns", "exit_per_page_ns", int),
    ("cost.exit_lines", "exit_lines", int),                  # only when fewer than the base's fit the exit
]
SECTION_ORDER = ("machine", "cpu", "cache", "memory", "cost")


def measured(host: Host, day: str | None = None):
    """The source maker: how -> 'measured by calibrate on HOST, DATE: how'."""
    stamp = f"measured by calibrate on {host.hostname}, {day or date.today().isoformat()}"
    return lambda how: f"{stamp}: {how}"


def primitive_entries(prims: dict, src, nodes: int) -> dict:
    """The measured primitives under their profile keys (KEYS)."""
    out = {}
    for key, name, typ in KEYS:
        if name not in prims or ("remote" in name and nodes == 1):
            continue                  # not measured here: the base's value stands
        value, how = prims[name]
        out[key] = (typed(value, typ), src(how))
    if "memory.bus_bytes_per_ns" in out and "memory.efficiency" not in out:   # sustained: none of it lost on top
        out["memory.efficiency"] = (1.0, src("bus_bytes_per_ns is the sustained bandwidth measured, so all of it"))
    return out


def typed(value, typ):
    if typ is int:
        return max(int(round(value)), 0)
    if typ is float:
        return round(float(value), 3)
    return bool(value)


def render(entries: dict, name: str, description: str, inherit: str, header: list[str]) -> str:
    """The entries as a TOML profile inheriting ``inherit``."""
    lines = [f"# {h}" for h in header]
    lines += [f"name = {_toml(name)}", f"description = {_toml(description)}", f"inherit = {_toml(inherit)}"]
    for section in SECTION_ORDER:
        keys = [k for k in entries if k.split(".", 1)[0] == section]
        if keys:
            lines += ["", f"[{section}]"]
        for key in keys:
            value, source = entries[key]
            fields = dict(value) if isinstance(value, dict) else {"value": value}
            inline = ", ".join(f"{k} = {_toml(v)}" for k, v in {**fields, "source": source}.items())
            lines.append(f"{key.split('.', 1)[1]} = {{ {inline} }}")
    return "\n".join(lines) + "\n"


def _toml(value) -> str:
    """A TOML scalar or array: JSON's string escapes are TOML's."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no TOML form in a profile")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def inherit_ref(base: str, out: str | None) -> str:
    """How the written file names its base: a shipped name as it is, a file
    relative to the written file (absolute when it goes to stdout)."""
    from ..profiles import shipped_profiles
    if base in shipped_profiles():
        return base
    if out is None:
        return os.path.abspath(base)
    return os.path.relpath(os.path.abspath(base), os.path.dirname(os.path.abspath(out)))


def write(path: str, text: str) -> None:
    """Replace path with text in one step (a partial profile never exists)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# -- what the host's kernel says: [machine], [cpu], [cache] ---------------------

def machine_entries(host: Host, base, src) -> dict:
    """[machine]: the host's page, nodes, CPUs, memory, line and clock."""
    per_node = min(len(n.cpus) for n in host.nodes)
    block = host.page_size << (base.machine["max_order"] - 1)       # the largest buddy block
    memory = min(n.memory for n in host.nodes) // block * block
    node_dir = "/sys/devices/system/node"
    distances = "; ".join(f"node{n.id} {' '.join(map(str, n.distance))}" for n in host.nodes)
    uneven = "" if all(len(n.cpus) == per_node for n in host.nodes) else " (the fewest of any node: nodes differ)"
    return {
        "machine.page_size": (host.page_size, src("sysconf(_SC_PAGESIZE)")),
        "machine.nodes": (len(host.nodes), src(f"the nodes with CPUs in {node_dir}/has_cpu; SLIT distances "
                                               f"{distances}")),
        "machine.cpus_per_node": (per_node, src(f"{node_dir}/node*/cpulist{uneven}")),
        "machine.node_memory": (f"{memory >> 20}M", src(f"MemTotal of {node_dir}/node*/meminfo, the least of any "
                                                       f"node, rounded down to whole {block >> 20} MiB blocks "
                                                       "(MAX_ORDER of the base)")),
        "machine.cache_line": (host.line_size, src("coherency_line_size of the L1 data cache in "
                                                   "/sys/devices/system/cpu/cpu0/cache")),
        "machine.cpu_mhz": (host.mhz, host.mhz_from if host.mhz_from.startswith("assumed") else src(host.mhz_from)),
        "machine.backing": ("none", "choice: the host cannot back an emulated copy of all of its own memory; "
                                    "virtual times are the same with real backing (docs/model.md)"),
    }


def cache_entries(host: Host, per_node: int, src) -> dict:
    """[cache]: cpu0's cache leaves as the profile's entries, in leaf order."""
    out = {}
    for c in host.caches:
        shared = math.gcd(c.shared_cpus, per_node)
        note = "" if shared == c.shared_cpus else f"; shared by {c.shared_cpus} CPUs, written {shared} (a divisor " \
                                                  "of the CPUs of a node, as the profile needs)"
        policy = "WriteThrough" if c.type == "Instruction" else "WriteBack"
        out[f"cache.{c.name}"] = ({"level": c.level, "type": c.type, "size": f"{c.size >> 10}K",
                                   "line_size": c.line_size, "ways": c.ways, "shared_cpus": shared,
                                   "write_policy": policy},
                                  src(f"/sys/devices/system/cpu/cpu0/cache/index{c.index}{note}; the write policy "
                                      "is assumed (sysfs does not give it): write-back, an instruction cache "
                                      "holds no dirty lines"))
    return out


CPUINFO_KEYS = [("vendor", "vendor_id", str), ("family", "cpu family", int), ("model", "model", int),
                ("model_name", "model name", str), ("stepping", "stepping", int), ("features", "flags", str),
                ("bogomips", "bogomips", float), ("cpuid_level", "cpuid level", int),
                ("address_sizes", "address sizes", str), ("power_management", "power management", str)]


def cpu_entries(host: Host, base, per_node: int, src) -> dict:
    """[cpu] from /proc/cpuinfo on an x86-64 host; nothing elsewhere (the
    base's CPUs stand: vmemu prints only ia64's and x86_64's cpuinfo)."""
    if host.arch != "x86_64":
        return {}
    out = {"cpu.arch": ("x86_64", src("uname -m"))}
    for key, label, typ in CPUINFO_KEYS:
        if label in host.cpuinfo:
            try:
                out[f"cpu.{key}"] = (typ(host.cpuinfo[label]), src(f"{label!r} of /proc/cpuinfo"))
            except ValueError:
                continue
    tlb = host.cpuinfo.get("TLB size", "").split()
    if tlb[:1] and tlb[0].isdigit():
        out["cpu.tlb_size"] = (int(tlb[0]), src("'TLB size' of /proc/cpuinfo"))
    out["cpu.cores_per_package"] = (math.gcd(host.package_cpus, per_node),
                                    src("package_cpus_list of /sys/devices/system/cpu/cpu0/topology (within a node)"))
    nr_cpus = len(host.nodes) * per_node
    if base.cpu.get("nr_cpus_config", 0) < nr_cpus:
        out["cpu.nr_cpus_config"] = (nr_cpus, "choice: the base's CONFIG_NR_CPUS raised to this host's CPUs")
    return out


def profile_entries(host: Host, base, prims: dict, day: str | None = None) -> dict:
    """Every entry of the calibrated profile, in the order it is written."""
    src = measured(host, day)
    entries = machine_entries(host, base, src)
    per_node = entries["machine.cpus_per_node"][0]
    entries.update(cpu_entries(host, base, per_node, src))
    entries.update(cache_entries(host, per_node, src))
    entries.update(primitive_entries(prims, src, len(host.nodes)))
    return entries


def profile_text(host: Host, base, base_ref: str, prims: dict, day: str | None = None) -> str:
    """The calibrated profile of this host, inheriting ``base_ref``."""
    day = day or date.today().isoformat()
    entries = profile_entries(host, base, prims, day)
    model = host.cpuinfo.get("model name", host.arch)
    per_node = entries["machine.cpus_per_node"][0]
    nodes = len(host.nodes)
    description = (f"this host ({host.hostname}): {model}, {nodes * per_node} CPUs in {nodes} "
                   f"node{'s' if nodes > 1 else ''}, {entries['machine.node_memory'][0]} a node, measured by "
                   f"vmemu calibrate on {day}")
    header = [f"{host.hostname} as an emulated machine: written by `vmemu calibrate` on {day}.",
              f"The 2.6-era kernel of the base profile ({base.name}) on this host's hardware: what it does not",
              "measure it inherits. What each value means and how it was measured: docs/calibrate.md."]
    return render(entries, f"host-{host.hostname}", description, base_ref, header)
