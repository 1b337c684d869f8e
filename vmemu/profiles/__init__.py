"""Machine profiles: the data that describes an emulated machine.

A profile is a TOML file with three tables, ``[machine]``, ``[cost]`` and
``[bte]``. Every parameter is written ``name = { value = ..., source = "..." }``
so that the place a number comes from (a hardware fact, a kernel constant, or
a fit to a named measurement) travels with the number.  A profile may
``inherit`` another one and override some parameters.

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
SECTIONS = ("machine", "cost", "bte")

# Every parameter a profile must end up with (after inheritance), and its type.
REQUIRED = {
    "machine": {
        "page_size": int, "cache_line": int, "max_order": int, "nodes": int,
        "cpus_per_node": int, "node_memory": str, "zones": list, "backing": str,
        "cpu_mhz": int,
    },
    "cost": {
        "fault_entry_ns": int, "pte_lock_ns": int, "zone_lock_ns": int,
        "rmqueue_block_ns": int, "free_block_ns": int, "coalesce_step_ns": int,
        "pcp_op_ns": int, "clear_bytes_per_ns": float, "mem_bw_bytes_per_ns": float,
        "cacheline_hit_ns": int, "cacheline_miss_ns": int, "user_per_page_ns": int,
        "exit_per_page_ns": int, "clear_remote_bytes_per_ns": float,
        "cacheline_miss_remote_ns": int, "exit_remote_per_page_ns": int,
        "lock_bounce_local_ns": int, "lock_bounce_remote_ns": int, "lock_bounce_router_ns": int,
        "exit_tlb_purge_per_page_ns": int,
    },
    "bte": {
        "engines_per_node": int, "rate_bytes_per_ns": float, "setup_ns": int,
        "timeout_ns": int, "min_len": int, "max_len": int,
    },
}


# Bounds of the kernel's configuration space (ia64 SN2 and x86-64 of 2.6.10):
# CONFIG_NODES_SHIFT 10, NR_CPUS up to 4096, pages of 4 KiB to 64 KiB.
NR_CPUS = 4096
MAX_NODE_MEMORY = 1 << 50
LIMITS = {"nodes": (1, 1024), "cpus_per_node": (1, NR_CPUS), "page_size": (4096, 65536),
          "cache_line": (16, 4096), "max_order": (1, 24), "nodes_per_brick": (1, 1024),
          "cpu_mhz": (1, 100_000)}


class ProfileError(ValueError):
    """A profile that cannot be loaded; the message names the file and the problem."""


@dataclass
class Profile:
    name: str
    description: str
    machine: dict
    cost: dict
    bte: dict
    sources: dict = field(default_factory=dict)   # "section.key" -> source text
    path: str = ""

    def section(self, name: str) -> dict:
        return getattr(self, name)

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
    prof = Profile(
        name=raw.get("name", base.name if base else path.stem),
        description=raw.get("description", base.description if base else ""),
        machine=dict(base.machine) if base else {},
        cost=dict(base.cost) if base else {},
        bte=dict(base.bte) if base else {},
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
    return prof


def _check(prof: Profile) -> None:
    for section, keys in REQUIRED.items():
        values = prof.section(section)
        for key, typ in keys.items():
            if key not in values:
                raise ProfileError(f"{prof.path}: [{section}] {key} is missing")
            value = values[key]
            if typ is float and isinstance(value, int) and not isinstance(value, bool):
                values[key] = value = float(value)
            if not isinstance(value, typ) or isinstance(value, bool):
                raise ProfileError(f"{prof.path}: [{section}] {key} must be {typ.__name__}, got {value!r}")
            if typ in (int, float) and not 0 <= value < math.inf:
                raise ProfileError(f"{prof.path}: [{section}] {key} must be a finite number >= 0, got {value!r}")
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
    for key in ("clear_bytes_per_ns", "mem_bw_bytes_per_ns"):
        if prof.cost[key] <= 0:
            raise ProfileError(f"{prof.path}: [cost] {key} must be positive")
    zone_layout(prof)   # raises on a bad zone list


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
