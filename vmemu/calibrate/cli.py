"""`vmemu calibrate`: measure this host, write it as a profile, check it."""

from __future__ import annotations

import os
import sys

DEFAULT_BASE = "x86-64"


class Progress:
    """The one progress line on stderr: rewritten in place on a terminal,
    a line per step otherwise (a log keeps them all)."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.tty = stream.isatty()
        self.shown = False

    def __call__(self, what: str, step: int, steps: int) -> None:
        line = f"calibrate: {what} ({step}/{steps})"
        self.stream.write(f"\r\033[K{line}" if self.tty else f"{line}\n")
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
        self.shown = False


def check_options(args) -> None:
    """Options that do not go together, and files that cannot be written: usage errors."""
    from ..cli import UsageError, file_problem
    prog = "vmemu calibrate"
    if not args.check:
        extra = [flag for flag, value in (("--profile", args.profile), ("-g", args.gigabytes),
                                          ("-b", args.bytes), ("-r", args.rep)) if value is not None]
        if extra:
            raise UsageError(f"{prog}: {extra[0]} goes with --check (the size and profile of the check)")
    if args.profile and (args.out or args.base):
        raise UsageError(f"{prog}: --profile checks a profile written before: it takes no "
                         f"{'--out' if args.out else '--base'}")
    if args.rep == 0 or args.gigabytes == 0 or args.bytes == 0:
        raise UsageError(f"{prog}: the check's size and repetitions must be positive")
    problem = args.out and file_problem(args.out)
    if problem:
        raise UsageError(f"{prog}: --out {args.out}: {problem}")


def calibrated_text(args, progress) -> str:
    """Measure this host: its profile's text."""
    from ..pft.cli import load
    from .host import describe
    from .measure import measure
    from .writer import inherit_ref, profile_text
    base = load(args.base or DEFAULT_BASE, prog="vmemu calibrate --base")
    host = describe()
    prims = measure(host, progress, base, inherit_ref(args.base or DEFAULT_BASE, None))
    progress.done()
    return profile_text(host, base, inherit_ref(args.base or DEFAULT_BASE, args.out), prims)


def check(args, path: str, progress, shown: str | None = None) -> int:
    """--check: the table of the profile at ``path`` (named ``shown`` in its title)."""
    from .check import check_title, format_check, run_check
    nbytes = args.bytes if args.bytes is not None else (args.gigabytes or 1) << 30
    rep = args.rep or 1
    pairs = run_check(path, nbytes, rep, progress)
    progress.done()
    print(format_check(pairs, check_title(shown or path, nbytes, rep)))
    return 0


def calibrate(args, progress) -> int:
    from .writer import write
    if args.profile:
        return check(args, args.profile, progress)
    text = calibrated_text(args, progress)
    if args.out:
        write(args.out, text)
        print(f"vmemu calibrate: wrote {args.out}", file=sys.stderr)
        return check(args, args.out, progress) if args.check else 0
    print(text, end="")
    if not args.check:
        return 0
    import tempfile                 # only here: vmemu's other commands start without it
    with tempfile.TemporaryDirectory(prefix="vmemu-calibrate-") as folder:
        path = os.path.join(folder, "host.toml")
        write(path, text)
        return check(args, path, progress, shown="(the profile above)")


def cmd_calibrate(args) -> int:
    from ..cli import CommandError
    from ..hostpft.build import BuildError
    from ..hostpft.run import HostError as PftError
    from ..mm.memory import HostMemoryError
    from .host import HostError
    from .measure import ProbeError
    check_options(args)
    progress = Progress()
    try:
        return calibrate(args, progress)
    except (BuildError, PftError, HostError, ProbeError, HostMemoryError) as e:
        progress.done()
        raise CommandError(f"calibrate: {e}") from None


def add_calibrate(sub) -> None:
    from ..cli import count, size
    p = sub.add_parser("calibrate", help="measure this host and write it as a profile; --check it against "
                                         "this host's kernel",
                       description="Measure this host's memory primitives (clear bandwidth, latency, "
                                   "parallelism, cache-line transfers, the fault path) with small C programs "
                                   "built on first use, and write a profile that inherits a base profile: the "
                                   "2.6-era kernel on this host's hardware (docs/calibrate.md).")
    p.add_argument("--out", metavar="FILE.toml", help="write the profile there (default: stdout)")
    p.add_argument("--base", metavar="PROFILE", help=f"the profile to inherit (default {DEFAULT_BASE})")
    p.add_argument("--check", action="store_true",
                   help="then run vmemu hostpft and vmemu pft --kernel stock on the profile side by side "
                        "(1, 2, 4 ... threads up to this host's CPUs; 1, 8 and 64 lines a page) and print the ratios")
    p.add_argument("--profile", metavar="FILE.toml", help="with --check: check this profile, measure nothing")
    amount = p.add_mutually_exclusive_group()
    amount.add_argument("-g", dest="gigabytes", type=count, help="with --check: gigabytes a repetition (default 1)")
    amount.add_argument("-b", dest="bytes", type=size, help="with --check: bytes a repetition, e.g. 64M")
    p.add_argument("-r", dest="rep", type=count, help="with --check: repetitions (default 1)")
    p.set_defaults(func=cmd_calibrate)
