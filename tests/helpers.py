"""Small machines for model tests."""

from __future__ import annotations

from vmemu.machine import Machine
from vmemu.profiles import load_profile


def tiny_machine(page_size: int = 4096, pages: int = 64, max_order: int = 4, nodes: int = 1,
                 cpus_per_node: int = 2, backing: str = "real", seed: int = 0,
                 poison_boot: bool = True, base: str = "x86-64") -> Machine:
    """A one-zone-per-node machine of ``pages`` pages per node, with no
    watermark reserves so that every page can be allocated."""
    prof = load_profile(base, overrides={
        "machine.page_size": page_size,
        "machine.cache_line": 64 if page_size == 4096 else 128,
        "machine.node_memory": f"{pages * page_size // 1024}K",
        "machine.zones": [["Normal", "all"]],
        "machine.max_order": max_order,
        "machine.nodes": nodes,
        "machine.cpus_per_node": cpus_per_node,
        "cpu.cores_per_package": 1,         # single-core packages fit any number of CPUs per node
        "machine.backing": backing,
    })
    m = Machine(prof, seed=seed, poison_boot=poison_boot)
    for zone in m.zones:
        zone.pages_min = zone.pages_low = zone.pages_high = 0
    return m


def free_blocks(zone, kind) -> dict[int, list[int]]:
    """order -> sorted block pfns on free_area[kind][order]."""
    return {o: sorted(a.free_list) for o, a in enumerate(zone.free_area[kind]) if a.nr_free}
