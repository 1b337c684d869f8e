"""`vmemu validate [TABLE.csv]`: the options, their checks and the run of
a measured pft table; the table and the comparison are validate.py's.

Everything is checked before the first row runs: the options, the
profile, every row of the table and its job.  A problem is a usage error
(exit 2, one line); a ratio outside the band is exit 1, after the table.
"""

from __future__ import annotations

import argparse
import sys

PROG = "vmemu validate"


def tolerance(text: str) -> float:
    from ..cli import number
    value = number(text)
    if not 0 <= value < 1e6:
        raise argparse.ArgumentTypeError(f"{text!r}: the tolerance is a fraction >= 0 (0.15: within 15%)")
    return value


def columns(text: str) -> tuple[str, ...]:
    """--check: compared columns, comma-separated."""
    from .validate import RATIO_COLUMNS
    names = tuple(name.strip() for name in text.split(","))
    for name in names:
        if name not in RATIO_COLUMNS:
            raise argparse.ArgumentTypeError(f"{name!r} is not a compared column; the columns are "
                                             f"{', '.join(RATIO_COLUMNS)}")
    return tuple(dict.fromkeys(names))          # each once, in the order given


def read_input(path: str | None) -> tuple[str, str]:
    """(text, name) of the table: the file, or the seed's table without one."""
    from ..cli import UsageError
    from .seed import SEED_CSV, seed_text
    if path is None:
        return seed_text(), f"{SEED_CSV} (the seed's table)"
    try:
        with open(path, encoding="utf-8-sig") as f:     # a spreadsheet's byte-order mark is no column
            return f.read(), path
    except UnicodeDecodeError as e:
        raise UsageError(f"{PROG}: {path}: not UTF-8 text (byte {e.start}), so not a CSV table") from None
    except OSError as e:
        raise UsageError(f"{PROG}: {path}: {e.strerror}") from None


def cmd_validate(args) -> int:
    from ..cli import CommandError, UsageError
    from ..mm.memory import HostMemoryError
    from . import validate
    from .cli import load
    from .job import JobError
    from .report import Progress
    from .rows import run_rows
    if args.seed and args.table:
        raise UsageError(f"{PROG}: --seed runs the seed's own table; give it or {args.table}, not both")
    profile = load(args.profile, PROG)
    text, name = read_input(args.table)
    checked = args.check or validate.DEFAULT_CHECKED
    try:
        rows = validate.read_table(text, name)
        specs = validate.row_specs(rows, profile, name)
        results = run_rows(specs, args.jobs, Progress(sys.stderr), note=lambda line: print(f"{PROG}: {line}",
                                                                                            file=sys.stderr))
    except (validate.TableError, HostMemoryError) as e:        # both found before any row ran
        raise UsageError(f"{PROG}: {e}") from None
    except JobError as e:
        raise CommandError(f"validate: {e.strerror}") from None
    outcomes = [validate.Outcome.of(row, r) for row, r in zip(rows, results)]
    render = validate.format_csv if args.format == "csv" else validate.format_text
    print(render(outcomes, args.tolerance, checked))
    problem = validate.verdict(outcomes, args.tolerance, checked)
    if problem:
        raise CommandError(f"validate: {problem}")
    return 0


def add_validate(sub) -> None:
    from ..cli import positive
    from ..profiles import DEFAULT_PROFILE
    from .validate import DEFAULT_CHECKED, DEFAULT_TOLERANCE, RATIO_COLUMNS
    p = sub.add_parser("validate", help="run a measured pft table on a profile: ours beside theirs, with ratios",
                       description="Every row of TABLE (CSV with the seed's columns: kernel, gb, rep, threads, "
                                   "user_s, system_s, wall_s, flt_cpu_s, fault_wsec; optional wall_printed, "
                                   "cachelines) runs as vmemu pft runs a row, on a fresh machine of the profile. "
                                   "Exit 1 when a checked ratio (ours / theirs) is outside "
                                   "[1/(1+TOL), 1+TOL]. Without TABLE: the seed's own table.")
    p.add_argument("table", nargs="?", metavar="TABLE.csv")
    p.add_argument("--seed", action="store_true", help="the seed's own table (the default without TABLE)")
    p.add_argument("--profile", default=DEFAULT_PROFILE, help=f"the machine (default {DEFAULT_PROFILE})")
    p.add_argument("--tolerance", type=tolerance, default=DEFAULT_TOLERANCE, metavar="TOL",
                   help=f"how far a ratio may be from 1, as a fraction (default {DEFAULT_TOLERANCE})")
    p.add_argument("--check", type=columns, metavar="COLUMN[,COLUMN...]",
                   help=f"the ratios that must be in the band, of {', '.join(RATIO_COLUMNS)} "
                        f"(default {','.join(DEFAULT_CHECKED)})")
    p.add_argument("-j", "--jobs", type=positive,
                   help="rows to run at once, each in its own process (default: one per host CPU, as host "
                        "memory allows); the output is the same whatever the number")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--format", choices=("text", "csv"), help="a text table (default) or CSV")
    form.add_argument("--csv", dest="format", action="store_const", const="csv", help="the same as --format csv")
    p.set_defaults(func=cmd_validate)
