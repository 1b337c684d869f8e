"""Machine profiles: the data that describes an emulated machine.

A profile is a TOML file with the tables ``[machine]``, ``[cpu]``,
``[cache]``, ``[memory]``, ``[cost]`` and ``[bte]``. Every parameter is written
``name = { value = ..., source = "..." }`` so that the place a number comes
from (a hardware fact, a kernel constant, or a fit to a named measurement)
travels with the number.  A profile may ``inherit`` another one and override
some parameters.

``[cpu]`` says what the CPUs are (architecture, identification, cores per
package); ``[cache]`` is the cache hierarchy of one CPU, one entry per cache
(see ``Cache``).  Both describe the machine, so they are kept inside
``Profile.machine`` (under "cpu" and "cache"): whatever copies the machine's
description (a saved state) carries them too.

``load_profile("altix-8")`` loads a shipped profile; ``load_profile(path)``
loads a user's file.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..lib.cmdline import memparse

PROFILE_DIR = Path(__file__).parent
DEFAULT_PROFILE = "altix-8"
SECTIONS = ("machine", "cpu", "memory", "cost", "bte")
ARCHES = ("ia64", "x86_64", "i386")

# Every parameter a profile must end up with (after inheritance), and its type.
REQUIRED = {
    "machine": {
        "page_size": int, "cache_line": int, "max_order": int, "nodes": int,
        "cpus_per_node": int, "node_memory": str, "zones": list, "backing": str,
        "cpu_mhz": int,
    },
    "cpu": {
        "arch": str, "vendor": str, "family": int, "model": int, "model_name": str, "stepping": int,
        "features": str, "bogomips": float, "cores_per_package": int, "nr_cpus_config": int,
    },
    # the memory hardware (vmemu.arch.memsys): what a line access costs
    "memory": {
        "hit_ns": int, "latency_ns": int, "transfer_ns": int, "transfer_remote_ns": int,
        "transfer_router_ns": int, "mlp": int,
        "bus_bytes_per_ns": float, "link_bytes_per_ns": float, "efficiency": float,
        "write_allocate": bool, "clear_streams": bool,
    },
    # the kernel's own work: CPU time of code paths, besides their memory accesses
    "cost": {
        "fault_entry_ns": int, "pte_lock_ns": int, "zone_lock_ns": int,
        "rmqueue_block_ns": int, "free_block_ns": int, "coalesce_step_ns": int,
        "pcp_op_ns": int, "user_per_page_ns": int, "exit_per_page_ns": int,
        "exit_lines": int, "exit_tlb_purge_per_page_ns": int,
    },
    "bte": {
        "engines_per_node": int, "rate_bytes_per_ns": float, "setup_ns": int,
        "timeout_ns": int, "min_len": int, "max_len": int,
    },
}

# What each architecture's /proc/cpuinfo needs besides the common [cpu] keys
# (vmemu/fs/cpuinfo.py prints them).
ARCH_REQUIRED = {
    "ia64": {"archrev": int, "cpu_regs": int, "itc_mhz": int},
    "x86_64": {"cpuid_level": int, "tlb_size": int, "address_sizes": str, "power_management": str},
    # bugs: the errata i386's show_cpuinfo reports as "yes", of I386_BUGS ("" for none)
    "i386": {"cpuid_level": int, "bugs": str},
}
I386_BUGS = ("fdiv", "hlt", "f00f", "coma")
CACHE_TYPES = ("Data", "Instruction", "Unified")
WRITE_POLICIES = ("WriteBack", "WriteThrough")


# Bounds of the kernel's configuration space (ia64 SN2 and x86-64 of 2.6.10):
# CONFIG_NODES_SHIFT 10, NR_CPUS up to 4096, pages of 4 KiB to 64 KiB.
NR_CPUS = 4096
MAX_NODE_MEMORY = 1 << 50
LIMITS = {"nodes": (1, 1024), "cpus_per_node": (1, NR_CPUS), "page_size": (4096, 65536),
          "cache_line": (16, 4096), "max_order": (1, 24), "nodes_per_brick": (1, 1024),
          "cpu_mhz": (1, 100_000)}


class ProfileError(ValueError):
    """A profile that cannot be loaded; the message names the file and the problem."""


@dataclass(frozen=True)
class Cache:
    """One cache of a CPU, as the profile's ``[cache]`` table gives it.

    ``name`` is the table key (L1d, L1i, L2, L3); ``level`` 1..3; ``type``
    Data, Instruction or Unified; ``size`` and ``line_size`` in bytes;
    ``ways`` its associativity; ``shared_cpus`` how many CPUs share one
    instance (consecutive CPU ids of one node: 1 = private to a CPU);
    ``write_policy`` WriteBack or WriteThrough.  Caches are listed in the
    kernel's leaf order (cpuN/cache/indexM): by level, data before
    instruction."""

    name: str
    level: int
    type: str
    size: int
    line_size: int
    ways: int
    shared_cpus: int
    write_policy: str

    @property
    def sets(self) -> int:
        return self.size // (self.ways * self.line_size)

    def sharing(self, cpu: int) -> range:
        """The CPU ids that share this cache with ``cpu``."""
        first = cpu - cpu % self.shared_cpus
        return range(first, first + self.shared_cpus)


CACHE_KEYS = {"level": int, "type": str, "size": str, "line_size": int, "ways": int,
              "shared_cpus": int, "write_policy": str, "source": str}


@dataclass
class Profile:
    name: str
    description: str
    machine: dict
    cost: dict
    bte: dict
    memory: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)   # "section.key" -> source text
    path: str = ""

    def section(self, name: str) -> dict:
        return getattr(self, name)

    @property
    def cpu(self) -> dict:
        """The [cpu] table (kept in machine, see the module's doc)."""
        self._describe_cpus()
        return self.machine["cpu"]

    @property
    def cache(self) -> dict:
        """The [cache] table as written: name -> {level, type, size, ...}."""
        self._describe_cpus()
        return self.machine["cache"]

    def _describe_cpus(self) -> None:
        """A machine saved before [cpu] and [cache] existed (an older
        vmemu's --state file) takes them from the shipped profile of its
        name, or else from its profile file (the saved path may well be an
        older copy of the file, without them)."""
        if "cpu" in self.machine:
            return
        fresh = load_profile(self.name if self.name in shipped_profiles() else self.path)
        self.machine["cpu"], self.machine["cache"] = fresh.cpu, fresh.cache
        self.sources.update({k: v for k, v in fresh.sources.items() if k.startswith(("cpu.", "cache."))})

    @property
    def caches(self) -> list[Cache]:
        """The caches of one CPU, in the kernel's leaf order."""
        return [Cache(name, c["level"], c["type"], parse_size(c["size"]), c["line_size"], c["ways"],
                      c["shared_cpus"], c["write_policy"]) for name, c in self.cache.items()]

    @property
    def nr_cpus(self) -> int:
        return self.machine["nodes"] * self.machine["cpus_per_node"]

    @property
    def total_pages(self) -> int:
        """Page frames of the whole machine (the zones cover each node exactly)."""
        return self.machine["nodes"] * (parse_size(self.machine["node_memory"]) // self.machine["page_size"])


def shipped_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def parse_size(text) -> int:
    """'1536M' -> bytes: memparse (vmemu.lib.cmdline), the one size syntax of vmemu."""
    try:
        return memparse(str(text))
    except OSError as e:
        raise ProfileError(f"bad size {text!r}: {e.strerror}") from None


def _resolve(name_or_path: str, relative_to: Path | None = None) -> Path:
    """A shipped profile's file, or a user's file; a relative path in an
    ``inherit`` is relative to the inheriting file."""
    if not isinstance(name_or_path, str) or not name_or_path:
        raise ProfileError(f"a profile is a name or a .toml path, not {name_or_path!r}")
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or "/" in name_or_path:
        if relative_to is not None and not candidate.is_absolute():
            candidate = relative_to.parent / candidate
        if not candidate.is_file():
            raise ProfileError(f"profile file {str(candidate)!r} not found")
        return candidate
    shipped = PROFILE_DIR / f"{name_or_path}.toml"
    if not shipped.is_file():
        raise ProfileError(
            f"unknown profile {name_or_path!r}: shipped profiles are {', '.join(shipped_profiles())}, "
            "or give a path to a .toml file")
    return shipped


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ProfileError(f"{path}: not UTF-8 text (byte {e.start}), so not a TOML profile") from None
    except OSError as e:
        raise ProfileError(f"{path}: cannot read: {e.strerror}") from None


def _merge(base: Profile | None, raw: dict, path: Path) -> Profile:
    for key in ("name", "description"):
        if not isinstance(raw.get(key, ""), str):
            raise ProfileError(f"{path}: {key} must be a string, got {raw[key]!r}")
    for section in SECTIONS:
        if not isinstance(raw.get(section, {}), dict):
            raise ProfileError(f"{path}: [{section}] must be a table")
    if not isinstance(raw.get("cache", {}), dict):
        raise ProfileError(f"{path}: [cache] must be a table")
    prof = Profile(
        name=raw.get("name", base.name if base else path.stem),
        description=raw.get("description", base.description if base else ""),
        # the nested [cpu] and [cache] tables are copied too: an override changes only this profile
        machine={k: dict(v) if isinstance(v, dict) else v for k, v in base.machine.items()}
        if base else {"cpu": {}, "cache": {}},
        cost=dict(base.cost) if base else {},
        bte=dict(base.bte) if base else {},
        memory=dict(base.memory) if base else {},
        sources=dict(base.sources) if base else {},
        path=str(path),
    )
    for section in SECTIONS:
        for key, entry in raw.get(section, {}).items():
            if isinstance(entry, dict):
                if "value" not in entry:
                    raise ProfileError(f"{path}: [{section}] {key} has no 'value'")
                prof.section(section)[key] = entry["value"]
                if "source" in entry:
                    prof.sources[f"{section}.{key}"] = entry["source"]
            else:
                prof.section(section)[key] = entry
    for name, leaf in raw.get("cache", {}).items():
        _check_cache_entry(path, name, leaf)
        prof.cache[name] = {k: v for k, v in leaf.items() if k != "source"}
        prof.sources[f"cache.{name}"] = leaf["source"]
    return prof


def _check_cache_entry(path: Path, name: str, leaf) -> None:
    """A [cache] entry names every key of Cache, with its source."""
    if not isinstance(leaf, dict):
        raise ProfileError(f"{path}: [cache] {name} must be a table {{ level = ..., source = ... }}")
    for key, typ in CACHE_KEYS.items():
        if not isinstance(leaf.get(key), typ) or isinstance(leaf.get(key), bool):
            raise ProfileError(f"{path}: [cache] {name}.{key} must be {typ.__name__}, got {leaf.get(key)!r}")
    extra = set(leaf) - set(CACHE_KEYS)
    if extra:
        raise ProfileError(f"{path}: [cache] {name}: unknown keys {', '.join(sorted(extra))}")


def _check(prof: Profile) -> None:
    for section, keys in REQUIRED.items():
        _check_keys(prof, section, keys)
    arch = prof.cpu["arch"]
    if arch not in ARCHES:
        raise ProfileError(f"{prof.path}: [cpu] arch must be one of {', '.join(ARCHES)}, got {arch!r}")
    _check_keys(prof, "cpu", ARCH_REQUIRED[arch])
    if arch == "i386":
        _check_i386_bugs(prof)
    _check_machine(prof)
    _check_memory(prof)
    _check_cpus(prof)
    zone_layout(prof)   # raises on a bad zone list


def _check_i386_bugs(prof: Profile) -> None:
    for bug in prof.cpu["bugs"].split():
        if bug not in I386_BUGS:
            raise ProfileError(f"{prof.path}: [cpu] bugs: {bug!r} is not one of {', '.join(I386_BUGS)}")


def _check_keys(prof: Profile, section: str, keys: dict) -> None:
    values = prof.section(section)
    for key, typ in keys.items():
        if key not in values:
            raise ProfileError(f"{prof.path}: [{section}] {key} is missing")
        value = values[key]
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            values[key] = value = float(value)
        if not isinstance(value, typ) or (typ is not bool and isinstance(value, bool)):
            raise ProfileError(f"{prof.path}: [{section}] {key} must be {typ.__name__}, got {value!r}")
        if typ in (int, float) and not 0 <= value < math.inf:
            raise ProfileError(f"{prof.path}: [{section}] {key} must be a finite number >= 0, got {value!r}")


def _check_memory(prof: Profile) -> None:
    mem = prof.memory
    for key in ("mlp", "latency_ns", "bus_bytes_per_ns"):
        if mem[key] <= 0:
            raise ProfileError(f"{prof.path}: [memory] {key} must be > 0, got {mem[key]!r}")
    if not 0 < mem["efficiency"] <= 1:
        raise ProfileError(f"{prof.path}: [memory] efficiency must be in (0, 1], got {mem['efficiency']!r}")


def _check_machine(prof: Profile) -> None:
    m = prof.machine
    for key, (low, high) in LIMITS.items():
        value = m.get(key, low)           # nodes_per_brick is optional
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ProfileError(f"{prof.path}: [machine] {key} must be an integer in {low}..{high}, got {value!r}")
    if m["nodes"] * m["cpus_per_node"] > NR_CPUS:
        raise ProfileError(f"{prof.path}: {m['nodes'] * m['cpus_per_node']} CPUs, more than NR_CPUS ({NR_CPUS})")
    if m["page_size"] & (m["page_size"] - 1):
        raise ProfileError(f"{prof.path}: page_size must be a power of two")
    if m["backing"] not in ("real", "none"):
        raise ProfileError(f"{prof.path}: backing must be 'real' or 'none'")
    if m["cache_line"] & (m["cache_line"] - 1) or m["page_size"] % m["cache_line"]:
        raise ProfileError(f"{prof.path}: cache_line must be a power of two that divides page_size")
    if parse_size(m["node_memory"]) > MAX_NODE_MEMORY:
        raise ProfileError(f"{prof.path}: node_memory {m['node_memory']} is more than 1 PiB")


def _check_cpus(prof: Profile) -> None:
    """Packages and caches tile each node's CPUs; NR_CPUS holds them all."""
    per_node, c = prof.machine["cpus_per_node"], prof.cpu
    if not 1 <= c["cores_per_package"] <= per_node or per_node % c["cores_per_package"]:
        raise ProfileError(f"{prof.path}: [cpu] cores_per_package must divide cpus_per_node ({per_node})")
    if not prof.nr_cpus <= c["nr_cpus_config"] <= NR_CPUS:
        raise ProfileError(f"{prof.path}: [cpu] nr_cpus_config must be in {prof.nr_cpus}..{NR_CPUS} "
                           f"(CONFIG_NR_CPUS: at least the machine's CPUs)")
    if not prof.cache:
        raise ProfileError(f"{prof.path}: [cache] is missing: a CPU has at least one cache")
    for cache in prof.caches:
        _check_cache(prof, cache, per_node)


def _check_cache(prof: Profile, cache: Cache, per_node: int) -> None:
    where = f"{prof.path}: [cache] {cache.name}"
    if cache.type not in CACHE_TYPES or cache.write_policy not in WRITE_POLICIES:
        raise ProfileError(f"{where}: type is one of {', '.join(CACHE_TYPES)} and write_policy one of "
                           f"{', '.join(WRITE_POLICIES)}")
    if not 1 <= cache.level <= 3 or not cache.ways or not cache.line_size:
        raise ProfileError(f"{where}: level must be 1..3, ways and line_size positive")
    if cache.size % (cache.ways * cache.line_size):
        raise ProfileError(f"{where}: size must be a multiple of ways x line_size (a whole number of sets)")
    if not 1 <= cache.shared_cpus <= per_node or per_node % cache.shared_cpus:
        raise ProfileError(f"{where}: shared_cpus must divide cpus_per_node ({per_node}): a cache serves one node")


def zone_layout(prof: Profile) -> list[tuple[str, int]]:
    """The zones of one node as (name, pages), from the profile's zones list.

    Each entry is [name, size] where size is a byte count ('16M'), 'all' (the
    whole node) or 'rest' (what the earlier zones left)."""
    page_size = prof.machine["page_size"]
    node_pages = parse_size(prof.machine["node_memory"]) // page_size
    layout, used = [], 0
    for entry in prof.machine["zones"]:
        if not (isinstance(entry, list) and len(entry) == 2):
            raise ProfileError(f"{prof.path}: each zone is [name, size], got {entry!r}")
        name, size = entry
        if size in ("all", "rest"):
            pages = node_pages - used
        else:
            pages = parse_size(size) // page_size
        if pages <= 0 or used + pages > node_pages:
            raise ProfileError(f"{prof.path}: zone {name} does not fit in node_memory")
        layout.append((str(name), pages))
        used += pages
    if used != node_pages:
        raise ProfileError(f"{prof.path}: zones cover {used} of {node_pages} pages of a node")
    return layout


def load_profile(name_or_path: str = DEFAULT_PROFILE, overrides: dict | None = None) -> Profile:
    """Load a shipped profile by name or a user's profile by path.

    ``overrides`` maps "section.key" to a value, for command-line options such
    as ``--backing none``."""
    prof = _load(_resolve(name_or_path), ())
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".", 1)
        prof.section(section)[key] = value
    _check(prof)
    return prof


def _load(path: Path, chain: tuple[Path, ...]) -> Profile:
    """The profile in ``path`` merged over what it inherits, unchecked;
    ``chain`` holds the files that inherit it (a cycle is an error)."""
    real = path.resolve()
    if real in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(real):], real))
        raise ProfileError(f"{path}: profiles inherit each other in a cycle: {cycle}")
    raw = _read_toml(path)
    base = None
    if "inherit" in raw:
        base = _load(_resolve(raw["inherit"], path), (*chain, real))
    return _merge(base, raw, path)
