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

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

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


def shipped_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def parse_size(text: str) -> int:
    """'1536M' -> bytes. Accepts K, M, G, T suffixes (powers of 1024) or plain bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
    if not m:
        raise ProfileError(f"bad size {text!r}: expected a number with an optional K/M/G/T suffix")
    shift = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2).upper()]
    return int(m.group(1)) << shift


def _resolve(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or "/" in name_or_path:
        if not candidate.is_file():
            raise ProfileError(f"profile file {name_or_path!r} not found")
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
    except OSError as e:
        raise ProfileError(f"{path}: cannot read: {e.strerror}") from None


def _merge(base: Profile | None, raw: dict, path: Path) -> Profile:
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
            if typ in (int, float) and value < 0:
                raise ProfileError(f"{prof.path}: [{section}] {key} must not be negative")
    m = prof.machine
    if not isinstance(m.get("nodes_per_brick", 1), int) or m.get("nodes_per_brick", 1) < 1:
        raise ProfileError(f"{prof.path}: nodes_per_brick must be a positive integer")
    if m["page_size"] & (m["page_size"] - 1) or m["page_size"] < 4096:
        raise ProfileError(f"{prof.path}: page_size must be a power of two >= 4096")
    if not 1 <= m["max_order"] <= 24:
        raise ProfileError(f"{prof.path}: max_order must be in 1..24")
    if m["nodes"] < 1 or m["cpus_per_node"] < 1:
        raise ProfileError(f"{prof.path}: need at least one node and one CPU per node")
    if m["backing"] not in ("real", "none"):
        raise ProfileError(f"{prof.path}: backing must be 'real' or 'none'")
    if m["page_size"] % m["cache_line"]:
        raise ProfileError(f"{prof.path}: cache_line must divide page_size")
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
    path = _resolve(name_or_path)
    raw = _read_toml(path)
    base = None
    if "inherit" in raw:
        if raw["inherit"] == path.stem:
            raise ProfileError(f"{path}: a profile cannot inherit itself")
        base = load_profile(raw["inherit"])
    prof = _merge(base, raw, path)
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".", 1)
        prof.section(section)[key] = value
    _check(prof)
    return prof
