"""`vmemu validate`: a measured pft table run on a profile, ours beside
theirs with ratios, and whether they agree.

A table is CSV with the seed's columns (vmemu/data/seed-pft-8way.csv):
kernel, gb, rep, threads and the measured user_s, system_s, wall_s,
flt_cpu_s and fault_wsec; optionally wall_printed (kept, not compared) and
cachelines (pft -c, default 1).  Lines that start with '#' are comments.
Each row runs as pft runs a row, on a fresh machine of the profile; its
kernel name maps to pft's --kernel and --prezeroed through seed.KERNELS.

A row agrees when ours / theirs is within [1/(1+tol), 1+tol] on every
checked column (flt_cpu_s and fault_wsec unless told otherwise: the
seed's headline figures).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

from .job import JobError, JobResult, check_job
from .seed import KERNELS, seed_row_spec

REQUIRED = ("kernel", "gb", "rep", "threads", "user_s", "system_s", "wall_s", "flt_cpu_s", "fault_wsec")
OPTIONAL = ("wall_printed", "cachelines")
COUNTS = {"gb": 1, "rep": 1, "threads": 1, "cachelines": 0}       # column -> its smallest value
FIGURES = ("user_s", "system_s", "wall_s", "flt_cpu_s", "fault_wsec")
RATIO_COLUMNS = FIGURES[1:]           # user_s is shown without one: a small share of a row's CPU time
DEFAULT_CHECKED = ("flt_cpu_s", "fault_wsec")
DEFAULT_TOLERANCE = 0.15


class TableError(ValueError):
    """A table that cannot be validated; the message is one line naming the row or column."""


@dataclass(frozen=True)
class Row:
    number: int                 # 1, 2, ... in the table's order
    line: int                   # where it is in the file
    kernel: str
    gb: int
    rep: int
    threads: int
    cachelines: int
    theirs: dict                # FIGURES -> the measured value

    def describe(self) -> str:
        return f"row {self.number} ({self.kernel}, {self.threads} thread{'s' if self.threads != 1 else ''})"


# -- reading a table ------------------------------------------------------------------

def read_table(text: str, name: str) -> list[Row]:
    """The rows of a table's text; TableError naming ``name`` and the row or column."""
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1)
                if line.strip() and not line.lstrip().startswith("#")]
    if not numbered:
        raise TableError(f"{name}: no header line (expected {','.join(REQUIRED)})")
    header = check_header(split(*numbered[0], name), name)
    if len(numbered) == 1:
        raise TableError(f"{name}: a header and no rows")
    return [parse_row(header, split(n, line, name), i, n, name) for i, (n, line) in enumerate(numbered[1:], 1)]


def split(n: int, line: str, name: str) -> list[str]:
    """One line's cells: a table's rows are one line each (no cell spans lines)."""
    try:
        return next(csv.reader([line], strict=True))
    except csv.Error as e:
        raise TableError(f"{name}: line {n}: not CSV: {e}") from None


def check_header(header: list[str], name: str) -> list[str]:
    header = [column.strip() for column in header]
    for column in header:
        if column not in REQUIRED + OPTIONAL:
            raise TableError(f"{name}: unknown column {column!r} (columns: {', '.join(REQUIRED + OPTIONAL)})")
        if header.count(column) > 1:
            raise TableError(f"{name}: column {column} appears twice")
    missing = [column for column in REQUIRED if column not in header]
    if missing:
        raise TableError(f"{name}: no column {missing[0]} (required: {', '.join(REQUIRED)})")
    return header


def parse_row(header: list[str], values: list[str], number: int, line: int, name: str) -> Row:
    where = f"{name}: row {number} (line {line})"
    if len(values) != len(header):
        raise TableError(f"{where}: {len(values)} fields, the header has {len(header)}")
    cell = {column: value.strip() for column, value in zip(header, values)}
    if cell["kernel"] not in KERNELS:
        raise TableError(f"{where}: column kernel: {cell['kernel']!r} is not one of {', '.join(KERNELS)}")
    # a table without cachelines touches one line a page, as pft does without -c
    counts = {column: parse_count(cell.get(column, "1"), least, f"{where}: column {column}")
              for column, least in COUNTS.items()}
    theirs = {column: parse_figure(cell[column], column != "user_s", f"{where}: column {column}")
              for column in FIGURES}
    return Row(number, line, cell["kernel"], theirs=theirs, **counts)


def parse_count(text: str, least: int, where: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < least:
        raise TableError(f"{where}: {text!r} is not an integer >= {least}")
    return int(text)


def parse_figure(text: str, positive: bool, where: str) -> float:
    """A measured figure: finite, above 0 when a ratio is taken of it."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value < math.inf if positive else 0 <= value < math.inf):
        raise TableError(f"{where}: {text!r} is not a number {'above' if positive else '>='} 0")
    return value


def row_specs(rows: list[Row], profile, name: str, backing: str = "none") -> list[dict]:
    """One pft row spec per table row (seed_row_spec), each job checked
    against the profile (TableError naming the table and the row).  The
    backing is none: virtual times are the same without host memory behind
    the page frames, and rows run in parallel then hold far less of it."""
    specs = []
    for row in rows:
        try:
            check_job(profile, row.gb << 30, row.threads, row.rep, row.cachelines)
        except JobError as e:
            raise TableError(f"{name}: {row.describe()}: {e.strerror}") from None
        fields = dict(kernel=row.kernel, gb=row.gb, rep=row.rep, threads=row.threads, cachelines=row.cachelines)
        specs.append(seed_row_spec(fields, profile, backing=backing))
    return specs


# -- comparing ------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    """A row, ours beside theirs."""

    row: Row
    ours: dict                  # FIGURES -> our value

    @classmethod
    def of(cls, row: Row, r: JobResult) -> Outcome:
        return cls(row, {"user_s": r.user_ns / 1e9, "system_s": r.system_ns / 1e9, "wall_s": r.wall_ns / 1e9,
                         "flt_cpu_s": r.flt_cpu_s, "fault_wsec": r.fault_wsec})

    def ratio(self, column: str) -> float:
        return self.ours[column] / self.row.theirs[column]


def band(tolerance: float) -> tuple[float, float]:
    """The ratios that agree: as far below 1 as above, by factor."""
    return 1 / (1 + tolerance), 1 + tolerance


def outside(outcomes: list[Outcome], tolerance: float, checked) -> list[tuple[Outcome, str]]:
    """(row, column) of every checked ratio outside the band, in table order."""
    low, high = band(tolerance)
    return [(o, c) for o in outcomes for c in checked if not low <= o.ratio(c) <= high]


def worst(outcomes: list[Outcome], column: str) -> Outcome:
    """The row whose ratio in column is farthest from 1, by factor (the first of equals)."""
    return max(outcomes, key=lambda o: abs(math.log(o.ratio(column))) if o.ratio(column) > 0 else math.inf)


# -- output ---------------------------------------------------------------------------

# a ratio is 5 characters and a mark: '*' when it is checked and outside the band
TEXT_HEADER = (f"{'row':>3} {'kernel':<17} {'gb':>3} {'rep':>3} {'thr':>3} {'cl':>3} {'user_s':>8} {'ours':>8}"
               f" {'system_s':>9} {'ours':>9} ratio  {'wall_s':>8} {'ours':>8} ratio "
               f" {'flt_cpu_s':>10} {'ours':>10} ratio  {'fault_wsec':>10} {'ours':>10} ratio")
LAYOUT = {"user_s": (8, 3), "system_s": (9, 3), "wall_s": (8, 3), "flt_cpu_s": (10, 0), "fault_wsec": (10, 0)}


def format_text(outcomes: list[Outcome], tolerance: float, checked) -> str:
    """One line per row and a summary; a checked ratio outside the band is marked '*'."""
    misses = outside(outcomes, tolerance, checked)
    lines = [TEXT_HEADER] + [text_line(o, {c for m, c in misses if m is o}) for o in outcomes]
    return "\n".join(lines + [summary(outcomes, tolerance, checked, misses)])


def text_line(o: Outcome, marked: set) -> str:
    r = o.row
    out = f"{r.number:>3} {r.kernel:<17} {r.gb:>3} {r.rep:>3} {r.threads:>3} {r.cachelines:>3}"
    for column, (width, decimals) in LAYOUT.items():
        out += f" {r.theirs[column]:{width}.{decimals}f} {o.ours[column]:{width}.{decimals}f}"
        if column in RATIO_COLUMNS:
            out += f" {o.ratio(column):5.3f}{'*' if column in marked else ' '}"
    return out.rstrip()


def summary(outcomes: list[Outcome], tolerance: float, checked, misses) -> str:
    worst_of = {c: worst(outcomes, c) for c in RATIO_COLUMNS}
    worsts = ", ".join(f"{c} {o.ratio(c):.3f} (row {o.row.number})" for c, o in worst_of.items())
    low, high = band(tolerance)
    agree = len(outcomes) - len({id(o) for o, _ in misses})
    return (f"worst ratio: {worsts}; {agree} of {len(outcomes)} rows within [{low:.3f}, {high:.3f}] "
            f"on {', '.join(checked)}")


def format_csv(outcomes: list[Outcome], tolerance: float, checked) -> str:
    """The rows as CSV: theirs as the table gives them, ours, the ratios, and
    within (yes or no: every checked ratio in the band)."""
    misses = {id(o) for o, _ in outside(outcomes, tolerance, checked)}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(csv_header())
    for o in outcomes:
        r = o.row
        cells = [r.number, r.kernel, r.gb, r.rep, r.threads, r.cachelines]
        for c in FIGURES:
            cells += [repr(r.theirs[c]), f"{o.ours[c]:.3f}"] + ([f"{o.ratio(c):.4f}"] if c in RATIO_COLUMNS else [])
        writer.writerow(cells + ["no" if id(o) in misses else "yes"])
    return out.getvalue().rstrip("\n")


def csv_header() -> list[str]:
    names = ["row", "kernel", "gb", "rep", "threads", "cachelines"]
    for c in FIGURES:
        names += [c, f"{c}_ours"] + ([f"{c}_ratio"] if c in RATIO_COLUMNS else [])
    return names + ["within"]


def verdict(outcomes: list[Outcome], tolerance: float, checked) -> str | None:
    """None when every row agrees; else one line naming the first row that does not."""
    misses = outside(outcomes, tolerance, checked)
    if not misses:
        return None
    o, column = misses[0]
    low, high = band(tolerance)
    more = len(misses) - 1
    return (f"{o.row.describe()}: {column} ratio {o.ratio(column):.3f} outside [{low:.3f}, {high:.3f}]"
            + (f" (and {more} more ratio{'s' if more != 1 else ''} outside)" if more else ""))
