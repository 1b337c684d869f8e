"""`vmemu top [MOUNTPOINT]`: a live view of the emulated machine.

Per node: free memory zeroed and not zeroed, free blocks per order, kscrubd's
state and clearing rate, BTE engines busy; per CPU: utilisation; and faults
per second.  It reads only the mounted files, as any other client would
(proc/stat, proc/vmstat, proc/uptime, proc/vmemu/zeroinfo, the nodes'
meminfo and sys/kernel/mm/prezero), so it shows whatever machine is mounted
there.  Rates are over the last interval of virtual time; the first frame's
are since boot, as top's first frame is.

rich is an optional dependency (the `top` extra): nothing else needs it.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field

from . import mounts


NODE = "sys/devices/system/node"
PREZERO = "sys/kernel/mm/prezero"


class TopError(Exception):
    """A one-line reason there is nothing to show."""


@dataclass
class Sample:
    """One reading of the files a frame is drawn from."""

    uptime: float                                   # virtual seconds
    cpu_ticks: list[tuple[int, int, int]]           # per CPU: user, system, all (USER_HZ)
    pgfault: int
    node_kb: dict[int, tuple[int, int]]             # node -> (MemFree, MemZero) kB
    blocks: dict[int, list[tuple[int, int]]]        # node -> per order (zeroed, not zeroed) blocks
    scrubd: dict[int, tuple[str, int]]              # node -> (state, pages_zeroed)
    bte_busy: dict[int, tuple[int, int]] = field(default_factory=dict)   # node -> (busy, engines)


def read(mp: str, path: str) -> str:
    with open(os.path.join(mp, path)) as f:
        return f.read()


def nodes(mp: str) -> list[int]:
    return sorted(int(n[4:]) for n in os.listdir(os.path.join(mp, NODE)) if re.fullmatch(r"node\d+", n))


def cpu_ticks(stat: str) -> list[tuple[int, int, int]]:
    out = []
    for line in stat.splitlines():
        if re.match(r"cpu\d+ ", line):
            v = [int(x) for x in line.split()[1:]]
            out.append((v[0] + v[1], v[2] + v[5] + v[6], sum(v)))
    return out


def free_blocks(zeroinfo: str, node_ids) -> dict[int, list[tuple[int, int]]]:
    """proc/vmemu/zeroinfo summed over each node's zones: per order (zeroed, not zeroed)."""
    out: dict[int, list[list[int]]] = {n: [] for n in node_ids}
    for m in re.finditer(r"^Node +(\d+), zone +\S+, type +(\S+) +(.*)$", zeroinfo, re.M):
        counts = [int(c) for c in m.group(3).split()]
        rows = out.setdefault(int(m.group(1)), [])
        rows.extend([0, 0] for _ in range(len(counts) - len(rows)))
        for order, c in enumerate(counts):
            rows[order][0 if m.group(2) == "Zeroed" else 1] += c
    return {n: [tuple(r) for r in rows] for n, rows in out.items()}


def node_memory(mp: str, node: int) -> tuple[int, int]:
    kb = {}
    for line in read(mp, f"{NODE}/node{node}/meminfo").splitlines():
        parts = line.split()
        kb[parts[2].rstrip(":")] = int(parts[3])
    return kb["MemFree"], kb.get("MemZero", 0)


def bte_busy(mp: str, node: int) -> tuple[int, int] | None:
    d = os.path.join(mp, PREZERO, "bte", f"node{node}")
    if not os.path.isdir(d):
        return None
    engines = sorted(e for e in os.listdir(d) if e.startswith("engine"))
    return sum(read(d, f"{e}/busy").strip() == "1" for e in engines), len(engines)


def sample(mp: str) -> Sample:
    ids = nodes(mp)
    vmstat = dict(line.split() for line in read(mp, "proc/vmstat").splitlines())
    scrubd = {n: (read(mp, f"{PREZERO}/scrubd/node{n}/state").strip(),
                  int(read(mp, f"{PREZERO}/scrubd/node{n}/pages_zeroed"))) for n in ids}
    busy = {n: b for n in ids if (b := bte_busy(mp, n)) is not None}
    return Sample(uptime=float(read(mp, "proc/uptime").split()[0]), cpu_ticks=cpu_ticks(read(mp, "proc/stat")),
                  pgfault=int(vmstat["pgfault"]), node_kb={n: node_memory(mp, n) for n in ids},
                  blocks=free_blocks(read(mp, "proc/vmemu/zeroinfo"), ids), scrubd=scrubd, bte_busy=busy)


def page_size(mp: str) -> int:
    """The emulated page size: MemTotal over the zones' present pages."""
    total_kb = int(read(mp, "proc/meminfo").split()[1])
    present = sum(int(p) for p in re.findall(r"^ +present +(\d+)$", read(mp, "proc/zoneinfo"), re.M))
    return total_kb * 1024 // present


def since(prev: Sample | None, cur: Sample) -> Sample:
    """The baseline rates are taken from: the previous sample, or boot."""
    if prev is not None and cur.uptime > prev.uptime:
        return prev
    zero = [(0, 0, 0)] * len(cur.cpu_ticks)
    return Sample(0.0, zero, 0, {}, {}, {n: ("", 0) for n in cur.scrubd})


# -- drawing -------------------------------------------------------------------------

def frame(mp: str, page: int, prev: Sample | None, cur: Sample):
    """The rich renderable of one frame."""
    from rich.console import Group
    from rich.text import Text
    base = since(prev, cur)
    dt = cur.uptime - base.uptime
    faults = (cur.pgfault - base.pgfault) / dt if dt > 0 else 0.0
    head = Text.assemble(
        ("vmemu top", "bold"), f"  {mp}  up {cur.uptime:.2f} s (virtual)  "
        f"{len(cur.cpu_ticks)} CPUs, {len(cur.node_kb)} nodes, page {page // 1024} KiB  ",
        ("faults/s ", "bold"), f"{faults:,.0f}",
        "  (since boot)" if base.uptime == 0 else f"  (last {dt:.2f} s)")
    return Group(head, node_table(page, base, cur, dt), order_table(cur), cpu_table(base, cur))


def node_table(page: int, base: Sample, cur: Sample, dt: float):
    from rich.table import Table
    t = Table(title="nodes", title_justify="left", expand=False)
    for name in ("node", "free MiB", "zeroed MiB", "not zeroed MiB", "kscrubd", "clearing MiB/s", "BTE busy"):
        t.add_column(name, justify="left" if name in ("node", "kscrubd") else "right")
    for n, (free, zero) in cur.node_kb.items():
        state, zeroed = cur.scrubd[n]
        rate = (zeroed - base.scrubd.get(n, ("", 0))[1]) * page / dt / (1 << 20) if dt > 0 else 0.0
        busy = cur.bte_busy.get(n)
        t.add_row(str(n), f"{free / 1024:,.1f}", f"{zero / 1024:,.1f}", f"{(free - zero) / 1024:,.1f}", state,
                  f"{rate:,.1f}", f"{busy[0]}/{busy[1]}" if busy else "-")
    return t


def order_table(cur: Sample):
    from rich.table import Table
    orders = max((len(r) for r in cur.blocks.values()), default=0)
    t = Table(title="free blocks per order: zeroed/not zeroed", title_justify="left", expand=False)
    t.add_column("node")
    for o in range(orders):
        t.add_column(str(o), justify="right")
    for n, rows in cur.blocks.items():
        t.add_row(str(n), *(f"{z}/{u}" if z or u else "." for z, u in rows))
    return t


def cpu_table(base: Sample, cur: Sample):
    """Per-CPU utilisation, mpstat's columns, several CPUs to a row on big machines."""
    from rich.table import Table
    per_row = 1 if len(cur.cpu_ticks) <= 16 else 4
    t = Table(title="CPUs: % of the interval", title_justify="left", expand=False)
    for _ in range(per_row):
        for name in ("cpu", "%usr", "%sys", "%idle"):
            t.add_column(name, justify="right")
    cells = []
    for c, (now, then) in enumerate(zip(cur.cpu_ticks, base.cpu_ticks)):
        user, system, total = (a - b for a, b in zip(now, then))
        pct = lambda x: f"{100 * x / total:.1f}" if total > 0 else "0.0"
        cells.append([str(c), pct(user), pct(system), pct(total - user - system)])
    for i in range(0, len(cells), per_row):
        row = [x for cell in cells[i:i + per_row] for x in cell]
        t.add_row(*row, *[""] * (4 * per_row - len(row)))
    return t


# -- the command ---------------------------------------------------------------------

def check(mp: str) -> None:
    state = mounts.mount_state(mp)
    if state in (mounts.HUNG, mounts.STALE):
        raise TopError(f"{mp}: {mounts.describe(state, mp)}")
    for path in ("proc/vmemu/zeroinfo", f"{PREZERO}/scrubd", NODE):
        if not os.path.exists(os.path.join(mp, path)):
            raise TopError(f"{mp}: no {path}: is a vmemu filesystem mounted there? (vmemu mount {mp})")


def run(mp: str, once: bool, interval: float) -> int:
    try:
        from rich.console import Console
        from rich.live import Live
    except ImportError:
        raise TopError("vmemu top needs the rich package: pip install 'vmemu[top]' (or pip install rich)") from None
    check(mp)
    page = page_size(mp)
    console = Console()
    prev, cur = None, sample(mp)
    if once:
        console.print(frame(mp, page, None, cur))
        return 0
    with Live(frame(mp, page, None, cur), console=console, screen=False, auto_refresh=False,
              vertical_overflow="crop") as live:
        while True:
            time.sleep(interval)  # noqa: sleep-ok (the refresh interval of a live view)
            prev, cur = cur, sample(mp)
            live.update(frame(mp, page, prev, cur), refresh=True)
