"""A sweep's output: CSV or JSON rows in the grid's order, written whole
and atomically; the rows of an earlier run read back (--resume); plots.

A finished point is kept as its pft columns' cells (format_csv's text),
so that a row read back from a file is written again byte for byte.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile

from .spec import PFT_COLUMNS, PROG, Sweep, cell

FORMATS = {".csv": "csv", ".json": "json"}


def output_format(path: str | None) -> str:
    """csv or json, by the file's name (stdout: csv); UsageError otherwise."""
    from ..cli import UsageError, file_problem
    if path is None:
        return "csv"
    fmt = FORMATS.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise UsageError(f"{PROG}: --out {path}: the name ends in .csv or .json (the format it gets)")
    problem = file_problem(path)
    if problem:
        raise UsageError(f"{PROG}: --out {path}: {problem}")
    return fmt


def format_rows(sweep: Sweep, rows: dict[int, list[str]], fmt: str) -> str:
    """The rows (index -> pft cells) in the grid's order: the point's
    parameters, then pft's columns."""
    params = sweep.param_keys
    if fmt == "json":
        items = [{**{k: sweep.points[i].values[k] for k in params},
                  **{c: json.loads(v) for c, v in zip(PFT_COLUMNS, rows[i])}} for i in sorted(rows)]
        return json.dumps(items, indent=1) + "\n"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(sweep.header)
    for i in sorted(rows):
        writer.writerow([cell(sweep.points[i].values[k]) for k in params] + rows[i])
    return out.getvalue()


def write_atomically(path: str, text: str) -> None:
    """Replace path with text in one step: a reader (or a crash) sees the old file or the new."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        mask = os.umask(0)
        os.umask(mask)
        mode = 0o666 & ~mask
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_rows(sweep: Sweep, path: str, fmt: str) -> dict[int, list[str]]:
    """--resume: the points already in path (index -> pft cells); none if
    there is no such file.  A file of other columns, or with a row that is
    no point of the spec, is a UsageError: it is not ours to drop rows."""
    from ..cli import UsageError
    where = f"{PROG}: --resume: {path}"
    try:
        with open(path, newline="") as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise UsageError(f"{where}: {e.strerror}") from None
    header, lines = _json_lines(text, sweep, where) if fmt == "json" else _csv_lines(text)
    if header != sweep.header:
        raise UsageError(f"{where}: its columns ({','.join(header)}) are not this spec's ({','.join(sweep.header)})")
    columns = [header.index(c) for c in sweep.identity_columns]
    points = {sweep.identity(p): p.index for p in sweep.points}
    done = {}
    for n, row in enumerate(lines, 1):
        index = points.get(tuple(row[j] for j in columns)) if len(row) == len(header) else None
        if index is None or index in done:
            what = "a second row of one point" if index is not None else "no point of " + sweep.path
            raise UsageError(f"{where}: row {n} ({','.join(row)[:60]}): {what}")
        done[index] = row[len(sweep.param_keys):]
    return done


def _csv_lines(text: str) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(text)))
    return (rows[0], rows[1:]) if rows else ([], [])


def _json_lines(text: str, sweep: Sweep, where: str) -> tuple[list[str], list[list[str]]]:
    """A JSON file's rows as cells: the parameters as in CSV, pft's columns as JSON numbers."""
    from ..cli import UsageError
    try:
        items = json.loads(text)
        if not (isinstance(items, list) and all(isinstance(item, dict) for item in items)):
            raise ValueError("not a list of objects")
    except ValueError as e:
        raise UsageError(f"{where}: not a sweep's JSON ({e})") from None
    if not items:
        return sweep.header, []
    params = len(sweep.param_keys)
    return list(items[0]), [[cell(v) for v in list(item.values())[:params]]
                            + [json.dumps(v) for v in list(item.values())[params:]] for item in items]


# -- plots ------------------------------------------------------------------------

METRICS = (("fault_wsec", "faults per wall second"), ("flt_cpu_s", "faults per CPU second"))


def check_plot_axes(sweep: Sweep, path: str | None) -> None:
    """--plot draws one axis as lines, two as heat maps: checked before anything runs."""
    from ..cli import UsageError
    if path and len(sweep.axes) not in (1, 2):
        named = "; ".join("+".join(axis) for axis in sweep.axes) or "none"
        raise UsageError(f"{PROG}: --plot {path}: a line plot takes one axis and a heat map two; "
                         f"{sweep.path} has {len(sweep.axes)} ({named})")


def plot(sweep: Sweep, rows: dict[int, list[str]], path: str) -> None:
    """fault/wsec and flt/cpu/s against the sweep's axis (lines) or two axes
    (heat maps); a failed point is a gap."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, panels = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (metric, title) in zip(panels, METRICS):
        column = PFT_COLUMNS.index(metric)
        values = [float(rows[p.index][column]) if p.index in rows else math.nan for p in sweep.points]
        if len(sweep.axes) == 1:
            _line(ax, sweep, values)
        else:
            fig.colorbar(_heat_map(ax, sweep, values), ax=ax)
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def axis_labels(sweep: Sweep, axis: int) -> list[str]:
    """The steps of an axis as text ("a/b" for a [zip] axis's keys together)."""
    stride = math.prod(sweep.shape[axis + 1:])
    return ["/".join(cell(sweep.points[j * stride].values[k]) for k in sweep.axes[axis])
            for j in range(sweep.shape[axis])]


def _line(ax, sweep: Sweep, values: list[float]) -> None:
    labels = axis_labels(sweep, 0)
    ax.plot(range(len(labels)), values, "o-")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("/".join(sweep.axes[0]))
    ax.grid(True, alpha=0.3)


def _heat_map(ax, sweep: Sweep, values: list[float]):
    rows, cols = axis_labels(sweep, 0), axis_labels(sweep, 1)
    grid = [values[r * len(cols):(r + 1) * len(cols)] for r in range(len(rows))]
    image = ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_ylabel("/".join(sweep.axes[0]))
    ax.set_xlabel("/".join(sweep.axes[1]))
    if len(rows) * len(cols) <= 64:          # small grids carry their numbers
        for r, line in enumerate(grid):
            for c, v in enumerate(line):
                if not math.isnan(v):       # dark figures on the map's light end, light on its dark end
                    ax.text(c, r, f"{v:,.0f}", ha="center", va="center", fontsize=7,
                            color="black" if image.norm(v) > 0.6 else "white")
    return image
