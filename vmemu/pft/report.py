"""pft's output: the 2004 and 2006 row layouts, CSV and JSON, the seed
comparison table, the progress line and the plots."""

from __future__ import annotations

from .job import JobResult

TITLE_2004 = " Gb Rep Threads   User      System     Wall flt/cpu/s fault/wsec"
TITLE_2006 = " Gb Rep Thr CLine  User      System   Wall  flt/cpu/s fault/wsec"
CSV_HEADER = "gb,rep,threads,cachelines,user_s,system_s,wall_s,flt_cpu_s,fault_wsec"


def _secs(ns: int) -> tuple[int, int]:
    ms = (ns + 500_000) // 1_000_000
    return ms // 1000, ms % 1000


def format_2004(r: JobResult) -> str:
    """The seed's row layout, with correct values (the original printed the
    wall time's centiseconds in a 3-digit field; this prints milliseconds)."""
    us, ums = _secs(r.user_ns)
    ss, sms = _secs(r.system_ns)
    ws, wms = _secs(r.wall_ns)
    return (f"{r.gb:3d}{r.rep:3d}{r.threads:4d}{us:4d}.{ums:03d}s{ss:7d}.{sms:03d}s"
            f"{ws:4d}.{wms:03d}s{r.flt_cpu_s:10.3f} {r.fault_wsec:10.3f}")


def format_2006(r: JobResult) -> str:
    def hs(ns):
        cs = (ns + 5_000_000) // 10_000_000
        return cs // 100, cs % 100
    (u, uc), (s, sc), (w, wc) = hs(r.user_ns), hs(r.system_ns), hs(r.wall_ns)
    return (f"{r.gb:3d}{r.rep:4d}{r.threads:4d}{r.cachelines:6d}{u:4d}.{uc:02d}s{s:7d}.{sc:02d}s"
            f"{w:4d}.{wc:02d}s{r.flt_cpu_s:11.3f} {r.fault_wsec:10.3f}")


def format_csv(r: JobResult) -> str:
    return (f"{r.gb},{r.rep},{r.threads},{r.cachelines},{r.user_ns / 1e9:.3f},{r.system_ns / 1e9:.3f},"
            f"{r.wall_ns / 1e9:.3f},{r.flt_cpu_s:.3f},{r.fault_wsec:.3f}")


def format_comparison(pairs) -> str:
    lines = [f"{'kernel':<18} {'thr':>3} {'seed f/wsec':>12} {'ours':>12} {'ratio':>6}"
             f" {'seed flt/cpu/s':>15} {'ours':>12} {'ratio':>6}"]
    for row, r in pairs:
        fw, fc = float(row["fault_wsec"]), float(row["flt_cpu_s"])
        lines.append(f"{row['kernel']:<18} {row['threads']:>3} {fw:12.0f} {r.fault_wsec:12.0f}"
                     f" {r.fault_wsec / fw:6.2f} {fc:15.0f} {r.flt_cpu_s:12.0f} {r.flt_cpu_s / fc:6.2f}")
    return "\n".join(lines)


def format_results(results: list[JobResult], fmt: str, title: bool = True) -> str:
    if fmt == "json":
        import json
        return json.dumps([r.as_dict() for r in results], indent=1)
    if fmt == "csv":
        return "\n".join([CSV_HEADER] + [format_csv(r) for r in results])
    row, head = (format_2006, TITLE_2006) if fmt == "2006" else (format_2004, TITLE_2004)
    return "\n".join(([head] if title else []) + [row(r) for r in results])


class Progress:
    """A one-line progress count on stderr, only when it is a terminal and
    only once a run has taken more than 2 s of host time."""

    def __init__(self, stream):
        import time
        self.stream = stream
        self.enabled = hasattr(stream, "isatty") and stream.isatty()
        self.start = time.monotonic()
        self.faults = 0
        self.shown = False
        self._clock = time.monotonic

    def tick(self, n: int) -> None:
        self.faults += n
        if self.enabled and self._clock() - self.start > 2:
            self.stream.write(f"\rpft: {self.faults:,} faults emulated, {self._clock() - self.start:.0f} s")
            self.stream.flush()
            self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False


def plot(pairs, path: str, kernel: str | None = None, timelines=None) -> int:
    """fault/wsec and flt/cpu/s against threads; ours, and the seed's where
    given; with ``timelines`` (rows with samples, pft --timeline) also
    zeroed memory per node and the fault rate against virtual time."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        import sys
        print("vmemu: --plot needs matplotlib: pip install 'vmemu[plot]' (or pip install matplotlib)",
              file=sys.stderr)
        return 1
    fig, axes = plt.subplots(1, 4 if timelines else 2, figsize=(22 if timelines else 11, 4.2))
    _plot_rows(axes, pairs, kernel)
    if timelines:
        _plot_timelines(axes[2], axes[3], timelines)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return 0


def _plot_rows(axes, pairs, kernel) -> None:
    series: dict[str, list] = {}
    for row, r in pairs:
        label = row["kernel"] if row else (kernel or "vmemu")
        if label == "prezero-allzeroed":
            continue
        series.setdefault(label, []).append((row, r))
    for ax, metric, title in ((axes[0], "fault_wsec", "faults per wall second"),
                              (axes[1], "flt_cpu_s", "faults per CPU second")):
        for label, items in series.items():
            xs = [r.threads for _, r in items]
            ax.plot(xs, [getattr(r, metric) for _, r in items], "o-", label=f"{label} (vmemu)")
            if items[0][0] is not None:
                ax.plot(xs, [float(row[metric]) for row, _ in items], "s--", label=f"{label} (seed)")
        ax.set_xlabel("threads")
        ax.set_title(title)
        ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)


def _plot_timelines(zero_ax, rate_ax, results) -> None:
    """Zeroed memory per node (MiB) and faults per second against virtual time, per row."""
    for r in results:
        t = [s["t_ms"] / 1000 for s in r.samples]
        for key in (k for k in r.samples[0] if k.endswith("_zeroed_kb")) if r.samples else ():
            zero_ax.plot(t, [s[key] / 1024 for s in r.samples], label=f"{r.threads}t {key[:-10]}")
        rates = [(b["faults"] - a["faults"]) / ((b["t_ms"] - a["t_ms"]) / 1000 or 1)
                 for a, b in zip(r.samples, r.samples[1:])]
        rate_ax.plot(t[1:], rates, label=f"{r.threads} threads")
    for ax, title in ((zero_ax, "zeroed free memory per node, MiB"), (rate_ax, "faults per virtual second")):
        ax.set_xlabel("virtual seconds")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)


def ledger_split(r: JobResult) -> dict[str, int]:
    """A row's window of the ledger in ns: the pft tasks, kernel threads
    (kscrubd), other kernel time (no task: "kernel"), idle, and the memory
    buses' busy time by user."""
    from ..kernel.ledger import IDLE
    by_task = r.ledger.by_task()
    kthreads = sum(ns for t, ns in by_task.items() if t.startswith("kscrubd"))
    tasks = sum(ns for t, ns in by_task.items() if t not in (IDLE, "kernel") and not t.startswith("kscrubd"))
    bus = r.ledger.bus_by_user()
    return {"elapsed": r.ledger.elapsed, "task": tasks, "kthread": kthreads, "kernel": by_task.get("kernel", 0),
            "idle": by_task.get(IDLE, 0), "busy": tasks + kthreads + by_task.get("kernel", 0),
            **{f"bus_{user}": ns for user, ns in sorted(bus.items())}}


def ledger_summary(results) -> str:
    """pft --ledger: per row, where the machine's time went (virtual ms)
    and the machine's CPU time per fault, idle left out."""
    lines = []
    for r in results:
        s = ledger_split(r)
        bus = ", ".join(f"{k[4:]} {ns / 1e6:.3f}" for k, ns in s.items() if k.startswith("bus_")) or "none"
        lines.append(f"ledger, {r.threads} thread{'s' if r.threads != 1 else ''}: task {s['task'] / 1e6:.3f} ms, "
                     f"kernel threads {s['kthread'] / 1e6:.3f} ms, other kernel {s['kernel'] / 1e6:.3f} ms, "
                     f"idle {s['idle'] / 1e6:.3f} ms; machine CPU time per fault {s['busy'] / r.pages / 1000:.3f} us; "
                     f"memory buses busy (ms): {bus}; zeroing charged to the task {r.charged_ns / 1e6:.3f} ms")
    return "\n".join(lines)


def verbose_line(spec: dict, r: JobResult, profile) -> str:
    """pft -v: one row's job and how its faults were served, in one line."""
    m = spec["machine"]
    page = profile.machine["page_size"]
    kernel = "all pages prezeroed, " if m.get("prezeroed") else ""
    n = lambda k, word: f"{k} {word}" + ("" if k == 1 else "s")
    return (f"pft: {profile.name}, {m.get('kernel', 'prezero')} kernel, {kernel}{n(r.threads, 'thread')} x "
            f"{r.pages // r.rep // r.threads} pages of {page} bytes, {n(r.rep, 'repetition')}, "
            f"{n(r.cachelines, 'cache line')} a page: {r.pages} faults, {r.served_zeroed} served zeroed, {r.cleared} cleared in the "
            f"fault; kscrubd zeroed {r.scrubbed_pages} pages with {r.kscrubd_ns / 1e9:.3f} s of CPU")
