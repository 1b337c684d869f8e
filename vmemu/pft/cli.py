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
               "bte": "--bte", "format": "--format", "verbose": "-v"}
PREZERO_ONLY = {"prezeroed": "--prezeroed", "scrub_start": "--scrub-start", "scrub_stop": "--scrub-stop",
                "scrub_load": "--scrub-load", "bte": "--bte"}


def given(args, name: str) -> bool:
    value = getattr(args, name)
    return value not in (None, False, [])


def check_conflicts(args, profile) -> None:
    from ..cli import UsageError
    if args.compare_seed:
        extra = [flag for name, flag in JOB_OPTIONS.items() if given(args, name)]
        if extra:
            raise UsageError(f"vmemu pft: --compare-seed runs the seed's own rows; it takes no {extra[0]}")
    if args.kernel == "stock":
        extra = [flag for name, flag in PREZERO_ONLY.items() if given(args, name)]
        if extra:
            raise UsageError(f"vmemu pft: {extra[0]} needs --kernel prezero (the stock kernel has no "
                             "zeroed free lists and no scrubd)")
    if args.bte and profile.bte["engines_per_node"] == 0:
        raise UsageError(f"vmemu pft: --bte: {profile.name} has no BTE")


def check_plot(path: str | None) -> None:
    """--plot FILE.png: matplotlib is there and FILE can be written, before any row runs."""
    from ..cli import UsageError, file_problem
    if not path:
        return
    try:
        import matplotlib  # noqa: F401  (only: is it there)
    except ImportError:
        raise UsageError("vmemu pft: --plot needs matplotlib: pip install 'vmemu[plot]'") from None
    problem = file_problem(path)
    if problem:
        raise UsageError(f"vmemu pft: --plot {path}: {problem}")


def job_specs(args, profile) -> list[dict]:
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
            raise UsageError(f"vmemu pft: {e.strerror}") from None
    scrub = {k: v for k, v in (("scrub_start", args.scrub_start), ("scrub_stop", args.scrub_stop),
                               ("scrub_load", args.scrub_load)) if v is not None}
    machine = dict(profile=profile, seed=args.seed, kernel=args.kernel or "prezero",
                   prezeroed=args.prezeroed, backing=args.backing, scrub=scrub, bte=args.bte)
    return [{"machine": machine, "job": dict(nbytes=nbytes, threads=n, rep=rep, cachelines=cachelines,
                                             bzero=args.zero)} for n in threads]


def cmd_pft(args) -> int:
    from .. import pft
    from ..cli import CommandError, UsageError
    from ..mm.memory import HostMemoryError
    from ..profiles import ProfileError, load_profile
    try:
        profile = load_profile(args.profile)
    except ProfileError as e:
        raise UsageError(f"vmemu pft: {e}") from None
    check_conflicts(args, profile)
    check_plot(args.plot)
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
    if args.plot:
        return pft.plot([(None, r) for r in results], args.plot, kernel=args.kernel or "prezero")
    return 0


def add_pft(sub) -> None:
    from ..cli import count, positive, size, sysctl_int, thread_list
    p = sub.add_parser("pft", help="run the seed's page fault test on the emulated machine",
                       description="pft, the page fault test of the seed, in virtual time. "
                                   "Several -f values (or -f 1,2,4,8) give one row each. Numbers are "
                                   "read as the kernel reads them: 0x hex, a leading 0 octal; sizes may "
                                   "end in K, M, G or T.")
    amount = p.add_mutually_exclusive_group()
    amount.add_argument("-g", dest="gigabytes", type=count, help="gigabytes per repetition (default 1)")
    amount.add_argument("-b", dest="bytes", type=size, help="bytes per repetition, e.g. 64M")
    p.add_argument("-r", dest="rep", type=count, help="repetitions (default 1)")
    p.add_argument("-f", dest="threads", type=thread_list, action="append", default=[],
                   help="threads, or a list like 1,2,4,8")
    p.add_argument("-c", dest="cachelines", type=count, help="cache lines touched per page (default 1)")
    p.add_argument("-z", dest="zero", action="store_true", help="bzero the area first (user-space clear)")
    p.add_argument("-t", dest="title", action="store_true", help="print the title line")
    p.add_argument("-v", dest="verbose", action="store_true",
                   help="per row, on stderr: the job and how its faults were served")
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
    p.add_argument("--compare-seed", action="store_true",
                   help="run the seed's 9 rows on the profile and print ours beside the seed's")
    p.set_defaults(func=cmd_pft)
