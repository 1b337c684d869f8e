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


def altix(pages=4096, nodes=1, seed=0, backing="real") -> Machine:
    """A small Altix: 16 KiB pages, 2 BTEs per node, MAX_ORDER 9 so that every
    boot block (order 8, 4 MiB) is one the BTE takes."""
    m = tiny_machine(page_size=16384, pages=pages, max_order=9, nodes=nodes, base="altix-8",
                     seed=seed, backing=backing, poison_boot=backing == "real")
    m.sysctl["scrub_stop"] = 0
    return m


def run_with_faults(seed):
    """An Altix with BTE errors and hangs injected, scrubd on every free, four pft jobs."""
    from vmemu import pft
    from vmemu.arch.sn.bte import BTEFAIL_POISON
    m = altix(pages=8192, nodes=2, seed=seed)
    for e in m.bte.all_engines():
        e.error_percent, e.error_code, e.hang_percent = 20, BTEFAIL_POISON, 5
    m.set_sysctl("scrub_start", 0)
    rows = []
    for _ in range(4):
        m.run_until_idle()
        rows.append(pft.format_2004(pft.run_job(m, 96 << 20, threads=2, rep=2)))
    m.run_until_idle()
    return m, rows


ROW_FIELDS = ("bytes", "rep", "threads", "cachelines", "pages", "user_ns", "system_ns", "wall_ns")


def observe(m, results, rows=None) -> dict:
    """Everything observable of a machine after its jobs, as JSON-able data:
    the rows, every counter, free list and per-CPU list, virtual times,
    scrubd, BTE and bus totals, the ledger, the load average, and a digest
    of real memory.  What the model computes, never how the host computed it."""
    from dataclasses import asdict
    from vmemu.kernel import ledger
    out = {
        # the row's own fields (pft -v's extra figures come from the counters below)
        "results": [{k: v for k, v in asdict(r).items() if k in ROW_FIELDS} for r in results],
        "snapshot": m.snapshot(),
        "now": m.now,
        "horizon": m.timeline.horizon,
        "loadavg": list(m.loadavg.avenrun),
        "scrub_totals": m.scrub.totals(),
        "scrub_blocks": m.scrub.blocks_by_driver(),
        "scrub_daemons": [[d.state, d.inflight, sorted(d.stat.items())] for d in m.scrub.daemons],
        "buses": [(b.bytes, b.busy_ns, b.shared) for b in m.buses],
        "zone_lock_bounces": [z.lock.bounces for z in m.zones],
        "pcp": [[(cpu, [list(p.list) for p in lists]) for cpu, lists in sorted(z.pageset.items())]
                for z in m.zones],
        "memory_sha256": m.memory.digest() if m.memory.real else None,
        # every CPU ns by task and activity, the buses and BTE engines by user
        "ledger": ledger.table(ledger.since_boot(m)).splitlines(),
    }
    if m.bte is not None:
        out["bte_totals"] = m.bte.totals()
    if rows is not None:
        out["rows"] = rows
    return out


def pft_observe(profile, kernel, threads, nbytes, cachelines, bzero, seed, backing, jobs=2, memory=None,
                scrub=None, prezeroed=False) -> dict:
    """observe() after ``jobs`` pft jobs (each half the one before) on a small
    machine of the profile, then until idle."""
    from vmemu import pft
    small = {"machine.node_memory": memory or ("256M" if profile == "x86-64" else "512M")}
    m = pft.prepare_machine(profile, seed, kernel, backing=backing, overrides=small, scrub=scrub,
                            prezeroed=prezeroed)
    try:
        results = [pft.run_job(m, nbytes >> j, threads, 1, cachelines, bzero=bzero) for j in range(jobs)]
        m.run_until_idle()
        return observe(m, results)
    finally:
        m.close()
