"""`vmemu pft`: the options, their checks, and the run.

Every option is checked before the first row runs: values by the kernel's
parsers (vmemu.cli option types), conflicts here, each row's job by
check_job, the plot's file by opening it.  A problem is a usage error.
"""

from __future__ import annotations

import sys

# Options that describe a job or a kernel: --compare-seed runs the seed's own rows
JOB_OPTIONS = {"gigabytes": "-g", "bytes": "-b", "rep": "-r", "threads": "-f", "cachelines": "-c",
               "zero": "-z", "title": "-t", "kernel": "--kernel", "scrub_start": "--scrub-start",
               "scrub_stop": "--scrub-stop", "scrub_load": "--scrub-load", "prezeroed": "--prezeroed",
               "bte": "--bte", "format": "--format", "verbose": "-v", "charge": "--charge", "ledger": "--ledger",
               "folded": "--folded", "timeline": "--timeline"}
PREZERO_ONLY = {"prezeroed": "--prezeroed", "scrub_start": "--scrub-start", "scrub_stop": "--scrub-stop",
                "scrub_load": "--scrub-load", "bte": "--bte"}
# Options that say how pft runs and prints, not what a row is: every other
# option describes a row (what a sweep spec may set, see row_options)
RUN_OPTIONS = ("help", "title", "verbose", "format", "jobs", "plot", "compare_seed", "ledger", "folded",
               "timeline", "timeline_interval")


def flag(name: str, value: str | None = None) -> str:
    """An option as pft's command line spells it (--kernel prezero): how
    check_conflicts names options unless its caller names them otherwise."""
    return JOB_OPTIONS.get(name, "--" + name.replace("_", "-")) + ("" if value is None else f" {value}")


def given(args, name: str) -> bool:
    value = getattr(args, name)
    return value not in (None, False, [])


def check_conflicts(args, profile, prog: str = "vmemu pft", option=flag) -> None:
    """Options that do not go together: a UsageError that names them with
    ``option(name, value=None)`` (vmemu sweep names them as its spec's keys)."""
    from ..cli import UsageError
    if args.compare_seed:
        extra = [option(name) for name in JOB_OPTIONS if given(args, name)]
        if extra:
            raise UsageError(f"{prog}: {option('compare_seed')} runs the seed's own rows; it takes no {extra[0]}")
    if args.kernel == "stock":
        extra = [option(name) for name in PREZERO_ONLY if given(args, name)]
        if extra:
            raise UsageError(f"{prog}: {extra[0]} needs {option('kernel', 'prezero')} (the stock kernel has no "
                             "zeroed free lists and no scrubd)")
    if args.bte and profile.bte["engines_per_node"] == 0:
        raise UsageError(f"{prog}: {option('bte')}: {profile.name} has no BTE")


def check_plot(path: str | None, prog: str = "vmemu pft") -> None:
    """--plot FILE.png: matplotlib is there and FILE can be written, before any row runs."""
    from ..cli import UsageError, file_problem
    if not path:
        return
    try:
        import matplotlib  # noqa: F401  (only: is it there)
    except ImportError:
        raise UsageError(f"{prog}: --plot needs matplotlib: pip install 'vmemu[plot]'") from None
    problem = file_problem(path)
    if problem:
        raise UsageError(f"{prog}: --plot {path}: {problem}")


def load(name: str, prog: str = "vmemu pft"):
    """The profile NAME (a shipped one or a file), or a UsageError."""
    from ..cli import UsageError
    from ..profiles import ProfileError, load_profile
    try:
        return load_profile(name)
    except ProfileError as e:
        raise UsageError(f"{prog}: {e}") from None


def options_parser():
    """A parser of pft's options alone: what a sweep spec reads its keys with,
    so an option added to `vmemu pft` is a key there too."""
    from ..cli import Parser
    p = Parser(prog="vmemu pft")
    add_options(p)
    return p


def row_options(p) -> dict:
    """The options of parser ``p`` (options_parser) that describe a row, by
    name (dest): their argparse actions, with the type that reads a value
    and the choices it may take."""
    # argparse has no public list of a parser's actions or groups: these are they
    return {a.dest: a for a in p._actions if a.dest not in RUN_OPTIONS}


def exclusive_options(p) -> list[tuple[str, ...]]:
    """The groups of options of parser ``p`` of which one only may be given (-g or -b)."""
    return [tuple(a.dest for a in group._group_actions) for group in p._mutually_exclusive_groups]


def check_files(args) -> None:
    """--folded and --timeline files can be written, before anything runs."""
    from ..cli import UsageError, file_problem
    for option, path in (("--folded", args.folded), ("--timeline", args.timeline)):
        problem = path and file_problem(path)
        if problem:
            raise UsageError(f"vmemu pft: {option} {path}: {problem}")
    if args.timeline_interval is not None and not args.timeline:
        raise UsageError("vmemu pft: --timeline-interval goes with --timeline")
    if args.timeline_interval is not None and not 0 < args.timeline_interval <= 1e6:
        raise UsageError("vmemu pft: --timeline-interval is milliseconds of virtual time, above 0")
    args.timeline_interval = args.timeline_interval or 10.0


def job_specs(args, profile, prog: str = "vmemu pft") -> list[dict]:
    """One row spec per thread count, each job checked (check_job)."""
    from ..cli import UsageError
    from .job import JobError, check_job
    nbytes = args.bytes if args.bytes is not None else (1 if args.gigabytes is None else args.gigabytes) << 30
    threads = [t for group in args.threads for t in group] or [1]
    rep = 1 if args.rep is None else args.rep
    cachelines = 1 if args.cachelines is None else args.cachelines
    for n in threads:
        try:
            check_job(profile, nbytes, n, rep, cachelines)
        except JobError as e:
            raise UsageError(f"{prog}: {e.strerror}") from None
    scrub = {k: v for k, v in (("scrub_start", args.scrub_start), ("scrub_stop", args.scrub_stop),
                               ("scrub_load", args.scrub_load)) if v is not None}
    machine = dict(profile=profile, seed=args.seed, kernel=args.kernel or "prezero",
                   prezeroed=args.prezeroed, backing=args.backing, scrub=scrub, bte=args.bte,
                   charge=args.charge or "kthread")
    timeline_ns = int(args.timeline_interval * 1e6) if args.timeline else None
    return [{"machine": machine, "timeline_ns": timeline_ns,
             "job": dict(nbytes=nbytes, threads=n, rep=rep, cachelines=cachelines, bzero=args.zero)}
            for n in threads]


def cmd_pft(args) -> int:
    from .. import pft
    from ..cli import CommandError, UsageError
    from ..mm.memory import HostMemoryError
    profile = load(args.profile)
    check_conflicts(args, profile)
    check_plot(args.plot)
    check_files(args)
    progress = pft.Progress(sys.stderr)
    try:
        if args.compare_seed:
            pairs = pft.compare_seed(profile, args.seed, backing=args.backing or "none", progress=progress,
                                     jobs=args.jobs)
            print(pft.format_comparison(pairs))
            return pft.plot(pairs, args.plot) if args.plot else 0
        specs = job_specs(args, profile)
        results = pft.run_rows(specs, args.jobs, progress)
    except HostMemoryError as e:          # found before any row ran
        raise UsageError(f"vmemu pft: {e}") from None
    except pft.JobError as e:
        raise CommandError(f"pft: {e.strerror}") from None
    fmt = args.format or "2004"
    if args.verbose:
        for spec, r in zip(specs, results):
            print(pft.report.verbose_line(spec, r, profile), file=sys.stderr)
    print(pft.format_results(results, fmt, title=args.title or fmt in ("csv", "json")))
    if args.ledger:
        print(pft.report.ledger_summary(results))
    write_outputs(args, results)
    if args.plot:
        return pft.plot([(None, r) for r in results], args.plot, kernel=args.kernel or "prezero",
                        timelines=results if args.timeline else None)
    return 0


def write_outputs(args, results) -> None:
    """--folded and --timeline files (one folded file per row: -fN before the suffix when several)."""
    from ..cli import CommandError
    from ..kernel.ledger import folded
    from .timeline import csv_text
    outputs = []
    if args.folded:
        root, dot, ext = args.folded.rpartition(".") if "." in args.folded else (args.folded, "", "")
        for r in results:
            name = args.folded if len(results) == 1 else f"{root}-f{r.threads}{dot}{ext}"
            outputs.append((name, folded(r.ledger)))
    if args.timeline:
        outputs.append((args.timeline, csv_text(results)))
    for name, text in outputs:
        try:
            with open(name, "w") as f:
                f.write(text)
        except OSError as e:
            raise CommandError(f"pft: {name}: {e.strerror}") from None


def add_pft(sub) -> None:
    p = sub.add_parser("pft", help="run the seed's page fault test on the emulated machine",
                       description="pft, the page fault test of the seed, in virtual time. "
                                   "Several -f values (or -f 1,2,4,8) give one row each. Numbers are "
                                   "read as the kernel reads them: 0x hex, a leading 0 octal; sizes may "
                                   "end in K, M, G or T.")
    add_options(p)
    p.set_defaults(func=cmd_pft)


def add_job_options(p, threads_help: str, verbose_help: str) -> None:
    """The options that describe a pft job on any machine (vmemu pft's, vmemu hostpft's)."""
    from ..cli import count, size, thread_list
    amount = p.add_mutually_exclusive_group()
    amount.add_argument("-g", dest="gigabytes", type=count, help="gigabytes per repetition (default 1)")
    amount.add_argument("-b", dest="bytes", type=size, help="bytes per repetition, e.g. 64M")
    p.add_argument("-r", dest="rep", type=count, help="repetitions (default 1)")
    p.add_argument("-f", dest="threads", type=thread_list, action="append", default=[], help=threads_help)
    p.add_argument("-c", dest="cachelines", type=count, help="cache lines touched per page (default 1)")
    p.add_argument("-z", dest="zero", action="store_true", help="bzero each page after its fault (user space)")
    p.add_argument("-t", dest="title", action="store_true", help="print the title line")
    p.add_argument("-v", dest="verbose", action="store_true", help=verbose_help)


def add_options(p) -> None:
    """pft's options: the one list, for `vmemu pft` and a sweep spec's keys."""
    from ..cli import count, positive, sysctl_int
    add_job_options(p, "threads, or a list like 1,2,4,8",
                    "per row, on stderr: the job and how its faults were served")
    p.add_argument("--profile", default="altix-8")
    p.add_argument("--seed", type=count, default=0)
    p.add_argument("--kernel", choices=("stock", "prezero"), help="default prezero")
    p.add_argument("--scrub-start", type=sysctl_int)
    p.add_argument("--scrub-stop", type=sysctl_int)
    p.add_argument("--scrub-load", type=sysctl_int)
    p.add_argument("--prezeroed", action="store_true", help="start with every free block zeroed")
    p.add_argument("--bte", action="store_true", help="let scrubd use the Altix BTE (the seed's table had none)")
    p.add_argument("--backing", choices=("real", "none"), help="override the profile's memory backing")
    p.add_argument("--format", choices=("2004", "2006", "csv", "json"), help="default 2004")
    p.add_argument("-j", "--jobs", type=positive,
                   help="rows to run at once, each in its own process (default: one per host CPU); "
                        "never more than host memory holds (a larger N is capped, with a note); the "
                        "rows are the same whatever the number")
    p.add_argument("--plot", metavar="FILE.png", help="plot fault/wsec and flt/cpu/s against threads")
    p.add_argument("--charge", choices=("kthread", "task"),
                   help="who pays for background zeroing: kthread (the patch, default) or task "
                        "(the task taking a zeroed page is charged kscrubd's time for it)")
    p.add_argument("--ledger", action="store_true",
                   help="after the rows: where every CPU nanosecond went (task, kernel threads, idle)")
    p.add_argument("--folded", metavar="FILE",
                   help="the job's ledger as folded stacks (cpuN;task;function ns), for flame graphs")
    p.add_argument("--timeline", metavar="FILE.csv",
                   help="the machine sampled while the job runs (zeroed memory per node, faults, kscrubd, CPUs)")
    p.add_argument("--timeline-interval", type=float, metavar="MS",
                   help="milliseconds of virtual time between two samples (default 10)")
    p.add_argument("--compare-seed", action="store_true",
                   help="run the seed's 9 rows on the profile and print ours beside the seed's")
