"""The measured primitives of this host: each a value and how it was
measured, from the loops of probe.c and the host pft.

Every timing is the best of a few short trials (probe.c keeps the best),
because the host is shared: a trial another process disturbed runs slower,
never faster.  Buffers are sized from the host's largest cache so that a
"miss" misses it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from ..hostpft.build import binary
from ..hostpft.run import best_of
from .host import Host

PACKAGE = "vmemu.calibrate"
TIMEOUT_S = 120
MiB = 1 << 20
CHAINS = (1, 2, 4, 8, 16, 32)        # independent chases for the parallelism
RUN_LINES = (1, 8, 64)               # pft -c values the check runs
FAULT_REPEATS = 3
MAX_THREADS = 64                     # probe.c's clearing threads at most


class ProbeError(Exception):
    """A measuring loop that failed; one line."""


@dataclass
class Sizes:
    """Buffers of a calibration, from the host's largest cache and free memory."""
    big: int          # chases, runs, clears: 8x the largest cache, 64 MiB to 1 GiB
    alloc: int        # the write-allocation test: a quarter of the CPU's own L2
    fault: int        # the host pft's area: 4x big, at most 1 GiB

    @classmethod
    def of(cls, host: Host, available: int) -> "Sizes":
        # never more than an eighth of the available memory: the host is shared
        big = min(max(8 * host.llc, 64 * MiB), 1 << 30, max(available // 8, 16 * MiB))
        own = min((c.size for c in host.caches if c.level == 2), default=256 << 10)
        fault = min(4 * big, 1 << 30, max(available // 4, 16 * MiB))
        page = host.page_size
        return cls(big - big % page, max(page, own // 4 - own // 4 % page), fault - fault % page)


def probe(*args: str) -> list[dict]:
    """Run probe.c with ``args``; its output lines as dicts of numbers."""
    cmd = [binary(PACKAGE, "probe.c"), *args]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ProbeError(f"probe {args[0]} took more than {TIMEOUT_S} s") from None
    if p.returncode:
        lines = p.stderr.strip().splitlines()
        raise ProbeError(lines[-1] if lines else f"probe {args[0]} failed (exit code {p.returncode})")
    try:
        return [{k: _number(v) for k, v in (item.split("=", 1) for item in line.split())}
                for line in p.stdout.splitlines()]
    except ValueError:
        raise ProbeError(f"unexpected output from probe {args[0]}: {p.stdout.strip()[:120]!r}") from None


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def clear_method(host: Host) -> str:
    """How the host kernel's clear_page writes: rep stosb on x86-64 CPUs
    with ERMS (clear_page_erms), plain stores otherwise."""
    if host.arch == "x86_64" and "erms" in host.cpuinfo.get("flags", "").split():
        return "stosb"
    return "store"


def clear_rate(host: Host, sizes: Sizes, cpus: list[int], node: int | None = None) -> float:
    """Bytes per ns that ``cpus`` clear together, each its own buffer, page by page."""
    each = max(sizes.big // len(cpus), 16 * MiB)
    args = ["clear", "-m", clear_method(host), "-b", str(each), "-t", str(len(cpus)), "-n", "5",
            "-p", ",".join(map(str, cpus)), "-l", str(host.line_size)]
    return probe(*args, *(["-N", str(node)] if node is not None else []))[0]["bytes_per_ns"]


def chase(host: Host, nbytes: int, cpu: int, chains=(1,), node: int | None = None) -> dict[int, float]:
    """ns per load of K independent pointer chases over nbytes, for each K."""
    args = ["chase", "-b", str(nbytes), "-k", ",".join(map(str, chains)), "-n", "1000000", "-p", str(cpu),
            "-l", str(host.line_size)]
    rows = probe(*args, *(["-N", str(node)] if node is not None else []))
    return {r["chains"]: r["ns_per_load"] for r in rows}


def runs(host: Host, sizes: Sizes, cpu: int) -> dict[int, float]:
    """ns per page to store to the first L lines of a page not in any cache, for each L."""
    rows = probe("run", "-b", str(sizes.big), "-k", ",".join(map(str, RUN_LINES)), "-p", str(cpu),
                 "-l", str(host.line_size))
    return {r["lines"]: r["ns_per_page"] for r in rows}


def allocation(host: Host, sizes: Sizes, cpu: int) -> dict | None:
    """probe alloc's loads after flushes and writes, or None without clflush."""
    if host.arch != "x86_64":
        return None
    rows = probe("alloc", "-b", str(sizes.alloc), "-m", clear_method(host), "-p", str(cpu),
                 "-l", str(host.line_size))
    return {k: v for row in rows for k, v in row.items()}


def transfer(a: int, b: int) -> float:
    """ns for one line to move between CPUs a and b (ping-pong)."""
    return probe("pingpong", "-n", "2000", "-p", f"{a},{b}")[0]["ns_per_transfer"]


def fault_row(sizes: Sizes):
    """The host pft's 1-thread, 1-line row, the least disturbed of a few."""
    return best_of(FAULT_REPEATS, sizes.fault, 1, 1, 1)


# -- the steps of a calibration: each adds primitives, name -> (value, how) ----

def mib(n: int) -> str:
    return f"{n / MiB:g} MiB"


def step_clear(host: Host, sizes: Sizes, prims: dict) -> None:
    cpu = host.nodes[0].cpus[0]
    rate = clear_rate(host, sizes, [cpu])
    how = {"stosb": "rep stosb, the kernel's clear_page on CPUs with ERMS", "store": "plain stores"}[clear_method(host)]
    prims["clear_bytes_per_ns"] = (rate, f"CPU {cpu} clearing {mib(max(sizes.big, 16 * MiB))} page by page "
                                         f"({how}), best of 5 passes: {rate:.2f} bytes/ns")


def step_bus(host: Host, sizes: Sizes, prims: dict) -> None:
    cpus = host.nodes[0].cpus[:MAX_THREADS]
    if len(cpus) == 1:
        rate = prims["clear_bytes_per_ns"][0]
        prims["bus_bytes_per_ns"] = (rate, f"the node's one CPU clearing: {rate:.2f} bytes/ns")
        return
    rate = clear_rate(host, sizes, cpus)
    each = max(sizes.big // len(cpus), 16 * MiB)
    prims["bus_bytes_per_ns"] = (rate, f"all {len(cpus)} CPUs of node {host.nodes[0].id} clearing {mib(each)} "
                                       f"each at once, best of 5 passes: {rate:.2f} bytes/ns together (a lower "
                                       "bound of the memory's bandwidth when so few CPUs cannot fill it)")


def step_latency(host: Host, sizes: Sizes, prims: dict) -> None:
    cpu = host.nodes[0].cpus[0]
    ns = chase(host, sizes.big, cpu, CHAINS)
    hit = chase(host, host.page_size, cpu)[1]
    best = min(ns, key=ns.get)
    prims["latency_ns"] = (ns[1], f"a pointer chase through a random cycle of the {host.line_size}-byte lines of "
                                  f"{mib(sizes.big)} (largest cache {mib(host.llc)}; transparent huge pages where "
                                  f"available, so no TLB misses), 1M loads, best of 3: {ns[1]:.1f} ns a load")
    prims["hit_ns"] = (hit, f"the same chase through one {host.page_size}-byte page, in this CPU's cache: "
                            f"{hit:.2f} ns a load")
    prims["mlp"] = (ns[1] / ns[best], "the chase's latency over the time a load takes with K independent chases "
                                      "at once (" + ", ".join(f"K={k}: {v:.1f} ns" for k, v in ns.items()) +
                    f"), best K={best}: {ns[1] / ns[best]:.1f} misses outstanding")


def step_runs(host: Host, sizes: Sizes, prims: dict) -> None:
    ns = runs(host, sizes, host.nodes[0].cpus[0])
    value, how = prims["mlp"]
    text = ", ".join(f"{k} line{'s' if k > 1 else ''}: {v:.0f} ns" for k, v in ns.items())
    prims["mlp"] = (value, f"{how}; a run of stores to the first lines of a page in no cache, then a fence, "
                           f"costs {text}")
    prims["run_ns"] = (ns, text)


def step_alloc(host: Host, sizes: Sizes, prims: dict) -> None:
    r = allocation(host, sizes, host.nodes[0].cpus[0])
    if r is None:
        prims["write_allocate"] = (True, "not measured (no clflush on this architecture): assumed, as every "
                                         "write-back cache of the era allocates on a store miss")
        return
    method = clear_method(host)
    allocates = r["byte_ns"] < (r["cached_ns"] + r["flushed_ns"]) / 2
    cleared = "in the cache" if r[f"{method}_ns"] < (r["cached_ns"] + r["flushed_ns"]) / 2 else "not cached"
    prims["write_allocate"] = (allocates, f"{mib(sizes.alloc)} of lines flushed (clflush), written a byte each, "
                                          f"then loaded: {r['byte_ns']:.1f} ns a load, against {r['cached_ns']:.1f} "
                                          f"cached and {r['flushed_ns']:.1f} flushed; after the kernel's clear "
                                          f"({method}) {r[f'{method}_ns']:.1f} ns: the cleared lines are {cleared}")


def step_transfer(host: Host, sizes: Sizes, prims: dict) -> None:
    cpus = host.nodes[0].cpus
    if len(cpus) < 2:
        return
    ns = transfer(cpus[0], cpus[1])
    prims["transfer_ns"] = (ns, f"one line written in turn by CPUs {cpus[0]} and {cpus[1]} (ping-pong), "
                                f"4000 transfers a batch, best of 200 batches: {ns:.1f} ns a transfer")


def step_fault(host: Host, sizes: Sizes, prims: dict) -> None:
    """The host pft's 1-thread, 1-line row: the fault's system time, the user
    loop's and the exit's, a fault each (gross: derive.net_of_model takes
    off what the model adds of its own)."""
    r = fault_row(sizes)
    run = {"fault": (r.system_ns - r.exit_ns) / r.pages, "user": r.user_ns / r.pages, "exit": r.exit_ns / r.pages,
           "bytes": sizes.fault}
    where = (f"the host pft (vmemu hostpft -b {mib(sizes.fault)} -f 1 -c 1), the least disturbed of "
             f"{FAULT_REPEATS} runs: {r.pages} faults")
    prims["fault_run"] = (run, where)
    prims["fault_entry_ns"] = (run["fault"], f"{where}: {run['fault']:.0f} ns of system time a fault outside the "
                                             "exit, the page's clear included")
    prims["user_per_page_ns"] = (run["user"], f"{where}: {run['user']:.0f} ns of user time a fault")
    prims["exit_per_page_ns"] = (run["exit"], f"{where}: the munmap at the end took {run['exit']:.0f} ns a page")


def step_remote(host: Host, sizes: Sizes, prims: dict) -> None:
    """A CPU of the first node against the second node's memory and CPU."""
    here, there = host.nodes[0], host.nodes[1]
    cpu = here.cpus[0]
    rate = clear_rate(host, sizes, [cpu], node=there.id)
    lat = chase(host, sizes.big, cpu, node=there.id)[1]
    ns = transfer(cpu, there.cpus[0])
    far = f"node {here.id} (CPU {cpu}) to node {there.id} (distance {here.distance[host.nodes.index(there)]})"
    prims["link_bytes_per_ns"] = (rate, f"{far}: clearing {mib(sizes.big)} bound to node {there.id} (mbind), "
                                        f"best of 5 passes: {rate:.2f} bytes/ns")
    prims["remote_latency_ns"] = (lat, f"{far}: the pointer chase on memory of node {there.id}: {lat:.1f} ns")
    prims["remote_transfer_ns"] = (ns, f"{far}: ping-pong of one line between CPUs {cpu} and "
                                       f"{there.cpus[0]}: {ns:.1f} ns a transfer")


STEPS = [("clear bandwidth", step_clear), ("memory bandwidth", step_bus),
         ("memory latency and parallelism", step_latency), ("runs of lines", step_runs),
         ("write allocation", step_alloc), ("cache-line transfers", step_transfer), ("the fault path", step_fault)]


def measure(host: Host, progress=None, base=None, base_ref: str | None = None) -> dict:
    """Every primitive of this host: name -> (value, how), the [memory]
    values derived from them (vmemu.calibrate.derive); with ``base`` (the
    profile the calibrated one inherits, named ``base_ref`` in it), the
    fault path's fixed costs net of what the model adds of its own."""
    from ..mm.memory import host_bytes_available
    from .derive import derive_memory, step_model
    sizes = Sizes.of(host, host_bytes_available())
    build_programs()                  # a missing compiler is the one line, before any progress
    steps = list(STEPS)
    if len(host.nodes) > 1:
        steps.append(("the interconnect", step_remote))
    if base is not None:
        steps.append(("the model's own fault costs", None))
    prims: dict = {}
    if len(host.nodes) == 1:
        prims["link_bytes_per_ns"] = (0.0, "one node: no interconnect")
    for i, (label, step) in enumerate(steps, 1):
        if progress:
            progress(f"measuring {label}" if step else f"emulating {label}", i, len(steps))
        if step is None:          # the last step: the model of what was measured and derived
            step_model(host, base, base_ref or base.name, prims)
            continue
        step(host, sizes, prims)
        if step is step_alloc:    # the clears, latency and write allocation known
            derive_memory(prims, host)
    return prims


def build_programs() -> None:
    binary(PACKAGE, "probe.c")
    binary("vmemu.hostpft", "pft.c")
