"""The model's inputs derived from the measured primitives.

vmemu's memory model (vmemu.arch.memsys) prices a run of store misses as
the first line after ``latency_ns``, then a line every max(latency/mlp,
traffic/bus) (a line's traffic twice the line with write-allocate
caches), and clear_page as such a run over the page or, when the clear
streams (``clear_streams``: whole lines written without reading them), as
the page's bytes at the bus's rate.  The host's primitives are times, so
the [memory] values are derived (streaming, derive_memory):

- ``mlp``: the store misses in flight with which the model's run of the
  probe's longest store run takes the measured time;
- ``clear_streams``: whether the measured single-CPU clear is faster than
  the model's run of the page's lines as store misses with that mlp;
- ``bus_bytes_per_ns``: the larger of the all-CPU and single-CPU clear
  rates (both lower bounds of the bus), in the model's bytes of traffic:
  the bytes cleared when the clear streams, else twice them with
  write-allocate, and then mlp is instead the one with which the model's
  clear of a page takes the measured clear time.

The fault path's fixed costs are then net of what the model adds of its
own: the calibrated profile is emulated on the measured run (one thread,
one line a page, the same size) with ``fault_entry_ns``,
``user_per_page_ns`` and ``exit_per_page_ns`` at 0, and each measured
time a fault less the model's own for the same part (the fault, the user
loop, the exit) is the fixed cost.  The model's total for that run is then
the measured one (when the base's ``exit_lines`` loads at latency_ns alone
cost more than the measured exit, fewer are written: net_of_model).  Both
are measured primitives made into the model's inputs: no value is chosen
to match a row of the check.
"""

from __future__ import annotations

import os
import tempfile

from .host import Host

# what the emulated measured run zeroes: the fixed costs calibrate derives
FIXED = ("fault_entry_ns", "user_per_page_ns", "exit_per_page_ns")


def written(value, typ):
    """A value as the profile holds it (vmemu.calibrate.writer.typed)."""
    from .writer import typed
    return typed(value, typ)


def model_of(memory: dict, cache_line: int, page_size: int):
    """The model's memory system for ``memory`` on a one-CPU, one-node host."""
    from ..arch.memsys import MemorySystem
    values = {"transfer_ns": 0, "transfer_remote_ns": 0, "transfer_router_ns": 0, "link_bytes_per_ns": 0.0,
              "efficiency": 1.0, **memory}
    return MemorySystem(values, cache_line, page_size, 1, [0], [0], [[10]])


def model_clear_ns(memory: dict, cache_line: int, page_size: int) -> int:
    """The model's time for one CPU clearing one page of its own node's
    memory with the bus to itself (PageAllocator.clear_page_ns)."""
    from ..kernel.sched import MemoryBus
    ms = model_of(memory, cache_line, page_size)
    bus = MemoryBus(ms.bus_bytes_per_ns)
    return bus.duration(ms.page_traffic(), ms.clear_rate(0, 0))


def streaming(prims: dict, host: Host, raw_bus: float, clear_ns: float) -> dict | None:
    """The [memory] values when this host's clear streams, else None.  The
    user's stores (the probe's longest run of stores to lines of a page in
    no cache) give mlp: the misses in flight with which the model's run of
    those stores takes the measured time.  A clear faster than the model's
    run of the page's lines as store misses with that mlp does not read
    its lines: it streams, at the bus's rate (bytes cleared, each line
    once)."""
    if "run_ns" not in prims:
        return None
    line, page = host.line_size, host.page_size
    runs = {k: v for k, v in prims["run_ns"][0].items() if 1 < k <= page // line}
    if not runs:
        return None
    n = max(runs)
    memory = {"hit_ns": written(prims["hit_ns"][0], int), "latency_ns": written(prims["latency_ns"][0], int),
              "bus_bytes_per_ns": written(raw_bus, float), "write_allocate": bool(prims["write_allocate"][0])}
    costs = {m: model_of(dict(memory, mlp=m), line, page).store_run_ns(0, 0, n) for m in range(1, n + 1)}
    mlp = min(costs, key=lambda m: (abs(costs[m] - runs[n]), m))
    reading = model_clear_ns(dict(memory, mlp=mlp, clear_streams=False), line, page)
    if clear_ns >= reading:
        return None
    return dict(memory, mlp=mlp, clear_streams=True, run=(n, runs[n], costs[mlp]), reading=reading)


def derive_memory(prims: dict, host: Host) -> None:
    """``bus_bytes_per_ns``, ``efficiency`` and ``mlp`` of the model from the
    measured clears, latency and write allocation (the module doc)."""
    line, page = host.line_size, host.page_size
    lines = page // line
    allocate = bool(prims["write_allocate"][0])
    traffic = line * (2 if allocate else 1)
    raw_bus, bus_how = prims["bus_bytes_per_ns"]
    one = prims["clear_bytes_per_ns"][0]
    if one > raw_bus:     # both are lower bounds of the node's bandwidth: the larger one
        bus_how = f"{bus_how}; one CPU alone cleared more, {one:.2f} bytes/ns: that, the larger lower bound"
        raw_bus = one
    clear_ns = page / one
    streams = streaming(prims, host, raw_bus, clear_ns)
    if streams is not None:
        derive_streaming(prims, streams, bus_how, clear_ns, host)
        return
    bus = written(raw_bus * traffic / line, float)
    memory = {"hit_ns": written(prims["hit_ns"][0], int), "latency_ns": written(prims["latency_ns"][0], int),
              "bus_bytes_per_ns": bus, "write_allocate": allocate}
    costs = {m: model_clear_ns(dict(memory, mlp=m), line, page) for m in range(1, lines + 1)}
    mlp = min(costs, key=lambda m: (abs(costs[m] - clear_ns), m))
    model = costs[mlp]
    if allocate:
        bus_how = (f"{bus_how}; as the model's bus traffic: a store miss moves the line twice (write-allocate), "
                   f"so {raw_bus:.2f} x {traffic // line} = {bus:.3f} bytes/ns")
    prims["bus_bytes_per_ns"] = (bus, bus_how)
    prims["efficiency"] = (1.0, "bus_bytes_per_ns is the sustained rate measured, so all of it")
    load_how = prims["mlp"][1]
    prims["mlp"] = (mlp, f"derived from the clear measured: the store misses in flight with which the model's clear of a {page}-byte page "
                         f"({lines} store misses, the first after latency_ns, alone on one CPU and its bus) takes "
                         f"{model} ns, the measured single-CPU clear being {clear_ns:.0f} ns "
                         f"({prims['clear_bytes_per_ns'][1]}); loads: {load_how}")
    prims["model_clear_ns"] = (model, f"the model's clear of a page with the written [memory] values: {model} ns")
    prims["clear_streams"] = (False, f"the clear measured ({clear_ns:.0f} ns a page) is no faster than the "
                                     "model's run of the page's lines as store misses: it reads its lines")


def derive_streaming(prims: dict, streams: dict, bus_how: str, clear_ns: float, host: Host) -> None:
    """The [memory] values of a host whose clear streams (streaming)."""
    n, measured, model = streams["run"]
    memory = {k: v for k, v in streams.items() if k not in ("run", "reading")}
    clear = model_clear_ns(memory, host.line_size, host.page_size)
    load_how = prims["mlp"][1]
    prims["bus_bytes_per_ns"] = (streams["bus_bytes_per_ns"], f"{bus_how}; the clear streams (each line once "
                                                              "on the bus), so the bytes cleared are the traffic")
    prims["efficiency"] = (1.0, "bus_bytes_per_ns is the sustained rate measured, so all of it")
    prims["mlp"] = (streams["mlp"], f"derived from the user's stores measured: the store misses in flight with "
                                    f"which the model's run of {n} store misses takes {model} ns, the measured "
                                    f"run {measured:.0f} ns; loads: {load_how}")
    prims["clear_streams"] = (True, f"the clear measured ({clear_ns:.0f} ns a page, "
                                    f"{prims['clear_bytes_per_ns'][1]}) is faster than the model's run of the "
                                    f"page's lines as store misses with that mlp ({streams['reading']} ns): it "
                                    "does not read its lines (as Intel documents for fast-string rep stos, "
                                    "SDM vol. 3A 8.2.4)")
    prims["model_clear_ns"] = (clear, f"the model's clear of a page with the written [memory] values: {clear} ns "
                                      f"(the bus's rate; the measured single-CPU clear {clear_ns:.0f} ns)")


def model_own(path: str, nbytes: int) -> dict:
    """What the model of the profile at ``path`` spends of its own on the
    measured run (one thread, one line a page, ``nbytes``, the stock
    kernel) with the fixed costs at 0: ns a fault of its fault path
    (system time outside the exit), of the user loop, of the exit, and of
    the clear within the fault."""
    from ..pft.job import prepare_machine, run_job
    m = prepare_machine(path, kernel="stock", backing="none", overrides={f"cost.{k}": 0 for k in FIXED})
    try:
        r = run_job(m, nbytes, threads=1, rep=1, cachelines=1)
    finally:
        m.close()
    clear = sum(ns for (_, _, activity), ns in r.ledger.cpu.items() if activity == "clear_page")
    pages = r.pages
    return {"fault": (r.system_ns - r.exit_ns) / pages, "user": r.user_ns / pages, "exit": r.exit_ns / pages,
            "clear": clear / pages}


def net_of_model(prims: dict, own: dict, exit_lines: int) -> None:
    """The fixed costs: the measured run's times a fault (``fault_run``)
    less the model's own (model_own) for the same part.  The model's exit
    loads ``exit_lines`` lines (the base's) at latency_ns a page; when those
    loads alone cost more than the measured exit leaves for them, the exit
    is written with the most whole loads that fit (``exit_lines``), so that
    the model's exit is still the measured one."""
    run, where = prims["fault_run"]
    latency = written(prims["latency_ns"][0], int)
    rest = own["exit"] - exit_lines * latency          # the exit's list and lock work, its loads aside
    fits = max(int((run["exit"] - rest) // latency), 0) if latency else exit_lines
    lines = min(exit_lines, fits)
    if lines < exit_lines:
        prims["exit_lines"] = (lines, f"{where}: the munmap at the end took {run['exit']:.0f} ns a page, the model's "
                                      f"exit work besides its loads {rest:.0f} ns, which leaves room for {lines} "
                                      f"load{'s' if lines != 1 else ''} at latency_ns ({latency} ns), not the "
                                      f"base's {exit_lines}: the host's exit walks its pages' lines in order, "
                                      "not one miss at a time")
    exit_own = rest + lines * latency
    parts = (("fault_entry_ns", "fault", own["fault"], f"{run['fault']:.0f} ns of system time a fault outside the "
              f"exit", f"the model's own fault path ({own['clear']:.0f} ns of it the page's clear; the rest the "
              "page_table_lock, per-CPU list and zone->lock work of the base profile)"),
             ("user_per_page_ns", "user", own["user"], f"{run['user']:.0f} ns of user time a fault (getrusage, "
              "sampled at the tick)", "the model's touch of the line, in the cache"),
             ("exit_per_page_ns", "exit", exit_own, f"the munmap at the end took {run['exit']:.0f} ns a page",
              f"the model's own exit ({lines} load{'s' if lines != 1 else ''} at latency_ns, the per-CPU list "
              "and zone->lock work)"))
    for key, part, less, measured, what in parts:
        prims[key] = (max(run[part] - less, 0),
                      f"{where}: {measured}, less {less:.0f} ns of {what} on the same run emulated, so that the "
                      f"calibrated model's {part} costs the measured time")


def step_model(host: Host, base, base_ref: str, prims: dict) -> None:
    """Emulate the measured run on the profile written so far (its fixed
    costs aside) and make the fixed costs net of the model's own."""
    from .writer import profile_text
    with tempfile.TemporaryDirectory(prefix="vmemu-calibrate-") as folder:
        path = os.path.join(folder, "host.toml")
        with open(path, "w") as f:
            f.write(profile_text(host, base, base_ref, {k: v for k, v in prims.items() if k not in FIXED}))
        own = model_own(path, prims["fault_run"][0]["bytes"])
    net_of_model(prims, own, base.cost["exit_lines"])
