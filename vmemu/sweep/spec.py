"""A sweep's spec: a TOML file whose keys are `vmemu pft`'s options.

A value is one setting for every point; a list of values is an axis; a
``[zip]`` table holds lists of one length that move together as one axis.
The points are the product of the axes, the first axis slowest (the
``[zip]`` axis, which TOML puts after every other key, fastest).

A value is read by the option's own type, as `vmemu pft` reads it (a
string as the kernel reads it: kstrtoull counts, memparse sizes; a TOML
integer as it is), and every point is checked as `vmemu pft` checks its
options (check_conflicts, then check_job in job_specs), before anything
runs.  A problem is one UsageError naming the key, and the point.
"""

from __future__ import annotations

import argparse
import difflib
import itertools
from dataclasses import dataclass

from ..pft import CSV_HEADER
from ..pft import cli as pft_cli

PROG = "vmemu sweep"
PFT_COLUMNS = tuple(CSV_HEADER.split(","))


@dataclass
class Point:
    index: int          # in the grid's order
    values: dict        # key -> the value as the spec writes it (TOML's type)
    row: dict           # the row spec run_row takes


@dataclass
class Sweep:
    path: str
    keys: list[str]             # every key, in the spec's order
    axes: list[list[str]]       # the axes, each the keys that move along it
    shape: list[int]            # each axis's number of steps
    points: list[Point]

    @property
    def param_keys(self) -> list[str]:
        """The keys of the point's own columns: those pft's columns do not hold already."""
        return [k for k in self.keys if k not in PFT_COLUMNS]

    @property
    def header(self) -> list[str]:
        return self.param_keys + list(PFT_COLUMNS)

    @property
    def identity_columns(self) -> list[str]:
        """The columns that tell which point a row is (--resume matches them):
        the point's own, and those of pft's that are keys (threads, rep, cachelines)."""
        return self.param_keys + [k for k in self.keys if k in PFT_COLUMNS]

    def identity(self, point: Point) -> tuple[str, ...]:
        """The point's cells in identity_columns (pft's show the job's value, 2 for "0x2")."""
        own = self.param_keys
        return tuple(cell(point.values[k]) if k in own else str(point.row["job"][k]) for k in self.identity_columns)


def cell(value) -> str:
    """A spec value as text: a CSV cell, and how a point is named in messages."""
    if type(value) is bool:
        return "true" if value else "false"
    return str(value)


def describe(values: dict, keys) -> str:
    return ", ".join(f"{k}={cell(values[k])}" for k in keys)


def load_spec(path: str) -> Sweep:
    """The spec at ``path``, every point checked; UsageError otherwise."""
    data = read_toml(path)
    where = f"{PROG}: {path}"
    parser = pft_cli.options_parser()
    options = pft_cli.row_options(parser)
    axes, constants = split_axes(data, options, where)
    check_exclusive([*constants, *(k for axis in axes for k in axis)], parser, where)
    read = {k: read_value(options[k], k, v, where) for k, v in constants.items()}
    read_axes = [{k: [read_value(options[k], k, v, where) for v in vs] for k, vs in axis.items()}
                 for axis in axes]
    profiles = {name: pft_cli.load(name, f"{where}: profile")
                for name in distinct("profile", read, read_axes, parser.get_default("profile"))}
    points = []
    moving = [k for axis in axes for k in axis]
    for index, (values, converted) in enumerate(grid(constants, read, axes, read_axes)):
        prog = f"{where}: point {index + 1} ({describe(values, moving)})" if moving else where
        points.append(Point(index, values, row_spec(parser, converted, profiles, prog)))
    shape = [len(next(iter(axis.values()))) for axis in axes]
    return Sweep(path, [*constants, *moving], [list(axis) for axis in axes], shape, points)


def read_toml(path: str) -> dict:
    import tomllib
    from ..cli import UsageError
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise UsageError(f"{PROG}: {path}: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{PROG}: {path}: not TOML: {e}") from None


def split_axes(data: dict, options: dict, where: str) -> tuple[list[dict], dict]:
    """The spec's axes (each {key: values}) and its constants ({key: value})."""
    zipped = data.pop("zip", None)
    axes, constants = [], {}
    for key, value in data.items():
        check_key(key, options, where)
        if isinstance(value, list):
            axes.append({key: check_axis(key, value, where)})
        else:
            constants[key] = value
    if zipped is not None:
        axes.append(zip_axis(zipped, options, data, where))
    return axes, constants


def check_key(key: str, options: dict, where: str) -> None:
    from ..cli import UsageError
    if key in options:
        return
    near = difflib.get_close_matches(key, options, n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    raise UsageError(f"{where}: unknown key {key!r}{hint}; the keys are vmemu pft's options: "
                     f"{', '.join(options)}, and the table [zip]")


def check_axis(key: str, values: list, where: str) -> list:
    from ..cli import UsageError
    if not values:
        raise UsageError(f"{where}: {key}: an empty axis (a list needs one value at least)")
    return values


def zip_axis(zipped, options: dict, data: dict, where: str) -> dict:
    """[zip]: lists of one length, one axis."""
    from ..cli import UsageError
    if not isinstance(zipped, dict) or not zipped:
        raise UsageError(f"{where}: zip: a table of lists that move together, like [zip] a = [1, 2] b = [3, 4]")
    for key, values in zipped.items():
        check_key(key, options, where)
        if key in data:
            raise UsageError(f"{where}: zip.{key}: {key} is set at the top too; give it in one place")
        if not isinstance(values, list):
            raise UsageError(f"{where}: zip.{key}: a list of values (the [zip] table holds axes)")
        check_axis(f"zip.{key}", values, where)
    lengths = {k: len(v) for k, v in zipped.items()}
    if len(set(lengths.values())) > 1:
        raise UsageError(f"{where}: zip: its lists move together and need one length, not "
                         + ", ".join(f"{k} {n}" for k, n in lengths.items()))
    return zipped


def check_exclusive(keys: list[str], parser, where: str) -> None:
    """Options of which one only may be given (gigabytes, bytes)."""
    from ..cli import UsageError
    for group in pft_cli.exclusive_options(parser):
        both = [k for k in group if k in keys]
        if len(both) > 1:
            raise UsageError(f"{where}: {' and '.join(both)}: give one of them, not both")


def read_value(action: argparse.Action, key: str, value, where: str):
    """A spec value as `vmemu pft` reads its option: by the option's type
    (a TOML integer is its decimal text), its choices; a flag takes a bool."""
    from ..cli import UsageError
    if action.nargs == 0:
        if type(value) is not bool:
            raise UsageError(f"{where}: {key}: {toml(value)}: expected true or false")
        return value
    if type(value) not in (int, str):
        raise UsageError(f"{where}: {key}: {toml(value)}: expected a string or an integer")
    text = str(value)
    try:
        read = action.type(text) if action.type else text
    except argparse.ArgumentTypeError as e:
        raise UsageError(f"{where}: {key}: {e}") from None
    if action.choices and read not in action.choices:
        raise UsageError(f"{where}: {key}: {text!r}: expected one of {', '.join(map(repr, action.choices))}")
    if isinstance(read, list) and len(read) != 1:
        # -f 1,2,4 is several rows; a point is one: the axis says it
        raise UsageError(f"{where}: {key}: {text!r}: one value a point; an axis is a list: "
                         f"{key} = [{', '.join(map(str, read))}]")
    return read


def toml(value) -> str:
    return cell(value) if type(value) in (bool, int) else repr(value)


def distinct(key: str, read: dict, read_axes: list[dict], default) -> list:
    if key in read:
        return [read[key]]
    for axis in read_axes:
        if key in axis:
            return list(dict.fromkeys(axis[key]))
    return [default]


def grid(constants: dict, read: dict, axes: list[dict], read_axes: list[dict]):
    """(values as written, values as read) for every point, in the grid's order."""
    steps = [list(zip(zip(*axis.values()), zip(*read_axis.values())))
             for axis, read_axis in zip(axes, read_axes)]
    for combo in itertools.product(*steps):
        values, converted = dict(constants), dict(read)
        for axis, (written, as_read) in zip(axes, combo):
            values.update(zip(axis, written))
            converted.update(zip(axis, as_read))
        yield values, converted


def row_spec(parser, converted: dict, profiles: dict, prog: str) -> dict:
    """The point's one row spec, checked as `vmemu pft` checks its options."""
    args = parser.parse_args([])
    for key, value in converted.items():
        # an option that collects values (-f) holds a list of what each gives
        setattr(args, key, [value] if isinstance(parser.get_default(key), list) else value)
    profile = profiles[args.profile]
    pft_cli.check_conflicts(args, profile, prog, option=spec_key)
    (spec,) = pft_cli.job_specs(args, profile, prog)
    return spec


def spec_key(name: str, value: str | None = None) -> str:
    """An option as a spec spells it (kernel = "prezero"), for check_conflicts."""
    return name if value is None else f'{name} = "{value}"'
