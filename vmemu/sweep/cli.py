"""`vmemu sweep SPEC.toml`: every point of a spec's grid, each a pft row on
a fresh machine, here or on a Dask cluster; one output row per point, in
the grid's order, the same whatever ran them.

Everything is checked before the first point runs: the spec (spec.py),
--out and --plot, the scheduler's address.  A failed point is reported
with its parameters while the others go on (exit 1 at the end, the output
holding the points that ran); Ctrl-C stops the points in hand, writes the
output and exits 130 (--resume goes on from there).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:                             # the spec's module is imported when a sweep runs
    from .spec import Point, Sweep

SAVE_EVERY_S = 10           # --out FILE is rewritten this often while points complete


class Run:
    """The rows a sweep has, written to --out (or stdout at the end)."""

    def __init__(self, sweep: Sweep, out: str | None, fmt: str, rows: dict[int, list[str]]):
        self.sweep, self.out, self.fmt = sweep, out, fmt
        self.rows = rows
        self.failed: list[int] = []
        self.saved = time.monotonic()

    def record(self, point: Point, outcome, progress) -> None:
        from ..pft import JobResult, format_csv
        from .spec import PROG, describe
        if isinstance(outcome, JobResult):
            self.rows[point.index] = format_csv(outcome).split(",")
        else:
            self.failed.append(point.index)
            reason = getattr(outcome, "strerror", None) or str(outcome)
            progress.note(f"{PROG}: point {point.index + 1} ({describe(point.values, self.sweep.keys)}) "
                          f"failed: {reason}")
        progress.advance(failed=not isinstance(outcome, JobResult))
        if self.out and time.monotonic() - self.saved > SAVE_EVERY_S:
            self.save()

    def save(self) -> None:
        from .output import format_rows, write_atomically
        if self.out:
            write_atomically(self.out, format_rows(self.sweep, self.rows, self.fmt))
            self.saved = time.monotonic()

    def where(self) -> str:
        done = f"{len(self.rows)} of {len(self.sweep.points)} points"
        return f"{done} in {self.out}" if self.out else f"{done} ran"


def cmd_sweep(args) -> int:
    from .output import check_plot_axes, output_format, plot, read_rows
    from .spec import load_spec
    sweep = load_spec(args.spec)
    fmt = output_format(args.out)
    check_options(args)
    check_plot_axes(sweep, args.plot)
    run = Run(sweep, args.out, fmt, read_rows(sweep, args.out, fmt) if args.resume else {})
    todo = [p for p in sweep.points if p.index not in run.rows]
    engine = make_engine([p.row for p in todo], args)
    interrupted = False
    try:
        run_points(run, todo, engine)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        run.save()                # whatever the way out: the points that ran are kept
    if interrupted:
        print(f"vmemu: interrupted: {run.where()}" + (" (--resume runs the rest)" if args.out else ""),
              file=sys.stderr)
        return 130
    if not args.out:
        from .output import format_rows
        sys.stdout.write(format_rows(sweep, run.rows, fmt))
    if args.plot:
        plot(sweep, run.rows, args.plot)
    if run.failed:
        from ..cli import CommandError
        raise CommandError(f"sweep: {len(run.failed)} of {len(sweep.points)} points failed; {run.where()}")
    return 0


def check_options(args) -> None:
    from ..cli import UsageError
    from .spec import PROG
    from ..pft.cli import check_plot
    from .engines import check_dask
    if args.resume and not args.out:
        raise UsageError(f"{PROG}: --resume needs --out FILE (the points already there are skipped)")
    if args.scheduler and args.jobs:
        raise UsageError(f"{PROG}: -j sets the processes on this host; with --scheduler the cluster's "
                         "workers run the points")
    if args.scheduler:
        check_dask(PROG)
    check_plot(args.plot, PROG)


def make_engine(specs: list[dict], args):
    """The engine the options choose for the points not in hand yet.  Here,
    a point the host's memory cannot hold refuses the sweep before any
    point runs, as it refuses pft (a cluster's workers are other hosts)."""
    from ..cli import UsageError
    from ..mm.memory import HostMemoryError
    from .engines import ClusterRows, local
    from .spec import PROG
    if not specs:
        return None
    if args.scheduler:
        return ClusterRows(args.scheduler, specs)
    try:
        return local(specs, args.jobs)
    except HostMemoryError as e:
        raise UsageError(f"{PROG}: {e}") from None


def run_points(run: Run, todo: list[Point], engine) -> None:
    """The points not in hand yet on ``engine``; it starts (workers forked,
    or the cluster reached) before the bar."""
    from .progress import progress_bar
    if engine is None:
        return
    with engine as outcomes, progress_bar(sys.stderr, len(run.sweep.points), len(run.rows)) as progress:
        for k, outcome in outcomes:
            run.record(todo[k], outcome, progress)


def scheduler(text: str) -> str:
    """--scheduler's type (engines.scheduler, imported when a sweep runs)."""
    from .engines import scheduler
    return scheduler(text)


def add_sweep(sub) -> None:
    from ..cli import positive
    p = sub.add_parser("sweep", help="run pft over a grid of parameters, here or on a Dask cluster",
                       description="Every point of SPEC's grid is a pft row on a fresh machine. SPEC is TOML: "
                                   "its keys are vmemu pft's options (profile, kernel, bytes, threads, "
                                   "scrub_stop, ...); a list is an axis, the grid their product; a [zip] table "
                                   "holds lists that move together. One output row per point, in the grid's "
                                   "order: the point's parameters, then pft's csv columns.")
    p.add_argument("spec", metavar="SPEC.toml")
    p.add_argument("--out", metavar="FILE.csv|FILE.json", help="write the rows there (default: CSV on stdout)")
    p.add_argument("--plot", metavar="FILE.png", help="one axis: lines; two axes: heat maps (matplotlib)")
    p.add_argument("--scheduler", metavar="ADDRESS", type=scheduler,
                   help="run the points on the Dask cluster of this scheduler (tcp://HOST:PORT)")
    p.add_argument("-j", "--jobs", type=positive,
                   help="points to run at once here, each in its own process (default: one per host CPU, "
                        "as host memory allows)")
    p.add_argument("--resume", action="store_true", help="skip the points already in --out FILE")
    p.set_defaults(func=cmd_sweep)
