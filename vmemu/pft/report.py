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


def plot(pairs, path: str, kernel: str | None = None) -> int:
    """fault/wsec and flt/cpu/s against threads; ours, and the seed's where given."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        import sys
        print("vmemu: --plot needs matplotlib: pip install 'vmemu[plot]' (or pip install matplotlib)",
              file=sys.stderr)
        return 1
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
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
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return 0


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
