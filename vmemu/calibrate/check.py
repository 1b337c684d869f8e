"""calibrate --check: the host pft on this host's kernel beside vmemu pft on
the calibrated profile (stock kernel: the host has no prezeroing), row by
row, with the ratios ours/host."""

from __future__ import annotations

from ..hostpft.build import binary
from ..hostpft.run import best_of, host_cpus

LINES = (1, 8, 64)
REPEATS = 3                       # host rows: the least disturbed of this many


def grid(cpus: int, lines_a_page: int) -> list[tuple[int, int]]:
    """(threads, lines) of the check's rows: 1, 2, 4 ... threads and ``cpus``
    (every count on a small host, not hundreds of rows on a large one), for
    each line count a page holds."""
    threads = sorted({1 << i for i in range(cpus.bit_length()) if 1 << i <= cpus} | {cpus})
    return [(t, c) for c in LINES if c <= lines_a_page for t in threads]


def host_rows(nbytes: int, rep: int, rows: list[tuple[int, int]], progress=None, total: int = 0) -> list:
    out = []
    for i, (threads, lines) in enumerate(rows, 1):
        if progress:
            progress(f"checking: the host, {threads} thread{'s' if threads > 1 else ''}, {lines} "
                     f"line{'s' if lines > 1 else ''} a page", i, total or len(rows) + 1)
        out.append(best_of(REPEATS, nbytes, threads, rep, lines))
    return out


PROG = "vmemu calibrate --check"


def emulated_specs(profile: str, nbytes: int, rep: int, rows: list[tuple[int, int]]) -> list[dict]:
    """The same rows as `vmemu pft --profile PROFILE --kernel stock` specs them
    (a UsageError for a profile or a row vmemu pft would refuse)."""
    from ..pft.cli import job_specs, load, options_parser
    prof, specs = load(profile, prog=PROG), []
    for threads, lines in rows:
        args = options_parser().parse_args(["-b", str(nbytes), "-r", str(rep), "-f", str(threads), "-c", str(lines),
                                            "--profile", profile, "--kernel", "stock"])
        specs += job_specs(args, prof, prog=PROG)
    return specs


def run_check(profile: str, nbytes: int, rep: int, progress=None) -> list[tuple]:
    """(host row, emulated row) pairs for every row of the grid; every row
    of both is checked before the first runs."""
    import os
    from ..hostpft.run import check_host_job, line_size
    from ..pft import Progress, run_rows
    from ..pft.cli import load
    cpus = min(len(host_cpus()), load(profile, prog=PROG).nr_cpus)
    rows = grid(cpus, os.sysconf("SC_PAGESIZE") // line_size())
    specs = emulated_specs(profile, nbytes, rep, rows)
    for threads, lines in rows:
        check_host_job(nbytes, threads, rep, lines)
    binary("vmemu.hostpft", "pft.c")       # a missing compiler is the one line, before any progress
    hosts = host_rows(nbytes, rep, rows, progress)
    if progress:
        progress(f"checking: emulating the {len(rows)} rows", len(rows) + 1, len(rows) + 1)
    return list(zip(hosts, run_rows(specs, None, Progress(None))))


def format_check(pairs: list[tuple], title: str | None = None) -> str:
    """The table: per row, the host's and our flt/cpu/s and fault/wsec, ours/host."""
    head = (f"{'threads':>7} {'lines':>5} {'host flt/cpu/s':>15} {'vmemu':>12} {'ratio':>6}"
            f" {'host fault/wsec':>15} {'vmemu':>12} {'ratio':>6}")
    lines = ([title] if title else []) + [head]
    for host, ours in pairs:
        lines.append(f"{host.threads:>7} {host.cachelines:>5} {host.flt_cpu_s:15.0f} {ours.flt_cpu_s:12.0f}"
                     f" {_ratio(ours.flt_cpu_s, host.flt_cpu_s):>6} {host.fault_wsec:15.0f}"
                     f" {ours.fault_wsec:12.0f} {_ratio(ours.fault_wsec, host.fault_wsec):>6}")
    return "\n".join(lines)


def _ratio(ours: float, host: float) -> str:
    return f"{ours / host:.2f}" if host else "-"


def check_title(profile: str, nbytes: int, rep: int) -> str:
    size = f"{nbytes >> 30} GiB" if nbytes % (1 << 30) == 0 else f"{nbytes / (1 << 20):g} MiB"
    return (f"calibrate --check: vmemu pft --profile {profile} --kernel stock against this host's kernel "
            f"(vmemu hostpft, the best of {REPEATS}); {size} a repetition, {rep} repetition{'s' if rep > 1 else ''}; "
            "ratio: vmemu / host")
