"""`vmemu hostpft`: pft on this host's own kernel, with pft's options and rows."""

from __future__ import annotations

import sys


def job_of(args) -> tuple[int, list[int], int, int]:
    """(bytes, thread counts, rep, cachelines) from pft's options, with pft's defaults."""
    nbytes = args.bytes if args.bytes is not None else (1 if args.gigabytes is None else args.gigabytes) << 30
    threads = [t for group in args.threads for t in group] or [1]
    rep = 1 if args.rep is None else args.rep
    return nbytes, threads, rep, 1 if args.cachelines is None else args.cachelines


def cmd_hostpft(args) -> int:
    from ..cli import CommandError, UsageError
    from ..pft.report import format_results
    from .build import BuildError
    from .run import HostError, check_host_job, run_host_row, verbose_line
    nbytes, threads, rep, cachelines = job_of(args)
    try:
        for n in threads:                      # every row checked before the first runs
            check_host_job(nbytes, n, rep, cachelines)
    except HostError as e:
        raise UsageError(f"vmemu hostpft: {e}") from None
    try:
        results = [run_host_row(nbytes, n, rep, cachelines, args.zero) for n in threads]
    except (BuildError, HostError) as e:
        raise CommandError(f"hostpft: {e}") from None
    fmt = args.format or "2004"
    if args.verbose:
        for r in results:
            print(verbose_line(r), file=sys.stderr)
    print(format_results(results, fmt, title=args.title or fmt in ("csv", "json")))
    return 0


def add_hostpft(sub) -> None:
    p = sub.add_parser("hostpft", help="run the page fault test on this host's own kernel",
                       description="pft on this host's kernel: a small C program (built on first use with "
                                   "the system compiler) maps the area with MADV_NOHUGEPAGE and faults it "
                                   "from one pinned thread per CPU; rows as vmemu pft prints them.")
    add_options(p)
    p.set_defaults(func=cmd_hostpft)


def add_options(p) -> None:
    """The options of vmemu pft that describe a job on any machine."""
    from ..pft.cli import add_job_options
    add_job_options(p, "threads, or a list like 1,2 (at most the CPUs this process may use)",
                    "per row, on stderr: the faults the kernel counted and the exit's time")
    p.add_argument("--format", choices=("2004", "2006", "csv", "json"), help="default 2004")
