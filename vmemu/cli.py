"""The `vmemu` command.  One function per subcommand and one parser block
each (see build_parser); main() only dispatches."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time

from .profiles import DEFAULT_PROFILE

DEFAULT_MOUNTPOINT = "./mountpoint"
MOUNT_TIMEOUT_S = 30


def die(msg: str) -> int:
    print(f"vmemu: {msg}", file=sys.stderr)
    return 1


def wait_for(cond, timeout: float, step: float = 0.05) -> bool:
    """Poll cond() until it is true or timeout seconds pass."""
    end = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() > end:
            return False
        time.sleep(step)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); it is not running.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def clear_stale(mountpoint: str) -> None:
    """A daemon killed with SIGKILL leaves "Transport endpoint is not connected"."""
    for cmd in (["fusermount3", "-u", mountpoint], ["umount", "-l", mountpoint]):
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        from .daemon import mount_state
        if mount_state(mountpoint) != "stale":
            return


# -- mount -----------------------------------------------------------------------

def cmd_mount(args) -> int:
    from .daemon import SetupError, load_fuse, mount_state, state_paths
    from .profiles import ProfileError, load_profile
    mp = args.mountpoint
    try:
        load_profile(args.profile)
        load_fuse()
    except (ProfileError, SetupError) as e:
        return die(str(e))
    state = mount_state(mp)
    if state == "stale":
        clear_stale(mp)
        state = mount_state(mp)
        if state == "stale":
            return die(f"{mp}: stale mount could not be cleared (try: umount -l {mp})")
    if state == "mounted":
        return die(f"{mp}: already mounted (vmemu umount {mp})")
    if not os.path.isdir(mp):
        return die(f"{mp}: no such directory")
    # A checked-in placeholder (.gitkeep) does not count as content.
    if not args.nonempty and [n for n in os.listdir(mp) if n != ".gitkeep"]:
        return die(f"{mp}: directory is not empty (use --nonempty to mount over it anyway)")
    paths = state_paths(mp)
    if args.foreground:
        from .daemon import serve
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        try:
            return serve(mp, args.profile, args.seed, args.backing, args.speed, args.allow_other,
                         args.fuse_threads, args.state)
        except SetupError as e:
            return die(str(e))
    cmd = [sys.executable, "-m", "vmemu.cli", "mount", mp, "--foreground", "--profile", args.profile,
           "--seed", str(args.seed), "--speed", str(args.speed), "--fuse-threads", args.fuse_threads]
    if args.backing:
        cmd += ["--backing", args.backing]
    if args.allow_other:
        cmd.append("--allow-other")
    if args.nonempty:
        cmd.append("--nonempty")
    if args.state:
        cmd += ["--state", os.path.abspath(args.state)]
    with open(paths["log"], "a") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    if not wait_for(lambda: proc.poll() is not None or mount_state(mp) == "mounted", MOUNT_TIMEOUT_S):
        proc.kill()
        return die(f"{mp}: mount did not come up in {MOUNT_TIMEOUT_S} s; see {paths['log']}")
    if proc.poll() is not None:
        with open(paths["log"]) as f:
            tail = f.read().strip().splitlines()[-1:]
        if tail and tail[0].startswith("vmemu: "):        # the daemon's own one-line reason
            return die(f"{tail[0][len('vmemu: '):]} (log: {paths['log']})")
        return die(f"daemon exited ({tail[0] if tail else 'no log'}); log: {paths['log']}")
    print(f"vmemu: {args.profile} mounted on {mp} (pid {proc.pid}, log {paths['log']})")
    return 0


def add_mount(sub) -> None:
    p = sub.add_parser("mount", help="mount the emulated /proc and /sys")
    p.add_argument("mountpoint", nargs="?", default=DEFAULT_MOUNTPOINT)
    p.add_argument("--profile", default=DEFAULT_PROFILE,
                   help=f"shipped profile name or a .toml file (default {DEFAULT_PROFILE}, the seed's machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--foreground", action="store_true", help="stay attached, log to stderr")
    p.add_argument("--allow-other", action="store_true", help="let other users in (modes still apply)")
    p.add_argument("--backing", choices=("real", "none"), default=None,
                   help="back page frames with host memory (default: the profile's choice)")
    p.add_argument("--speed", type=float, default=1.0, help="virtual seconds per wall second while idle")
    p.add_argument("--nonempty", action="store_true", help="mount over a non-empty directory")
    p.add_argument("--state", metavar="FILE",
                   help="restore the machine from FILE if it exists (its profile must match; its seed "
                        "and backing are kept); save it there on a clean unmount")
    p.add_argument("--fuse-threads", choices=("multi", "single"), default="multi",
                   help=argparse.SUPPRESS)   # for benchmarks/control_plane.py
    p.set_defaults(func=cmd_mount)


# -- umount ----------------------------------------------------------------------

def cmd_umount(args) -> int:
    from .daemon import mount_state, state_paths
    mp = args.mountpoint
    paths = state_paths(mp)
    pid = read_pid(paths["pid"])
    if pid and pid_alive(pid):
        # libfuse's SIGTERM handler unmounts (lazily when busy) and the daemon exits.
        os.kill(pid, signal.SIGTERM)
        if not wait_for(lambda: not pid_alive(pid), 15):
            return die(f"daemon {pid} did not exit after SIGTERM")
    state = mount_state(mp)
    if state == "stale":
        clear_stale(mp)
    elif state == "mounted":
        subprocess.run(["fusermount3", "-u", mp])
    if mount_state(mp) != "unmounted":
        return die(f"{mp}: still mounted")
    for p in ("pid", "state"):
        if os.path.exists(paths[p]):
            os.unlink(paths[p])
    return 0


def add_mountpoint_command(sub, name: str, help: str, func) -> None:
    """A subcommand whose only argument is the mount point."""
    p = sub.add_parser(name, help=help)
    p.add_argument("mountpoint", nargs="?", default=DEFAULT_MOUNTPOINT)
    p.set_defaults(func=func)


def add_umount(sub) -> None:
    add_mountpoint_command(sub, "umount", "unmount and stop the daemon", cmd_umount)


# -- status ----------------------------------------------------------------------

def cmd_status(args) -> int:
    from .daemon import mount_state, state_paths
    mp = args.mountpoint
    paths = state_paths(mp)
    state = mount_state(mp)
    try:
        with open(paths["state"]) as f:
            info = json.load(f)
    except (OSError, ValueError):
        info = {}
    pid = info.get("pid")
    alive = bool(pid and pid_alive(pid))
    print(f"mountpoint: {os.path.realpath(mp)}")
    print(f"state:      {state}" + ("" if state != "stale" else " (Transport endpoint is not connected)"))
    print(f"profile:    {info.get('profile', '-')}")
    print(f"pid:        {pid if alive else '-'}")
    uptime = "-"
    if state == "mounted":
        try:
            with open(os.path.join(mp, "proc/uptime")) as f:
                uptime = f.read().split()[0] + " s"
        except OSError as e:
            uptime = f"unreadable ({e.strerror})"
    print(f"uptime:     {uptime} (virtual)")
    print(f"log:        {paths['log']}")
    return 0 if state == "mounted" and alive else 1


def add_status(sub) -> None:
    add_mountpoint_command(sub, "status", "profile, pid, virtual uptime and mount state", cmd_status)


# -- shell -----------------------------------------------------------------------

def cmd_shell(args) -> int:
    from .shell import ShellError, run
    # argparse.REMAINDER keeps "--", which separates the mount point from the command.
    rest = args.args
    if "--" in rest:
        i = rest.index("--")
        head, command = rest[:i], rest[i + 1:]
    else:
        head, command = rest[:1], rest[1:]
    if len(head) > 1:
        return die("shell: usage: vmemu shell [MOUNTPOINT] [-- COMMAND...]")
    try:
        return run(head[0] if head else DEFAULT_MOUNTPOINT, command)
    except ShellError as e:
        return die(str(e))


def add_shell(sub) -> None:
    p = sub.add_parser("shell", usage="vmemu shell [MOUNTPOINT] [-- COMMAND...]",
                       help="a shell (or COMMAND) with the emulated files bound over /proc and /sys")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="[MOUNTPOINT] [-- COMMAND...]")
    p.set_defaults(func=cmd_shell)


# -- pft -------------------------------------------------------------------------

def parse_threads(text: str) -> list[int]:
    """-f 4, -f 1,2,4,8: one row per value."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"threads must be integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("no thread count given")
    return values


def cmd_pft(args) -> int:
    from . import pft
    from .profiles import ProfileError, load_profile
    try:
        profile = load_profile(args.profile)
    except ProfileError as e:
        args.parser.error(str(e))
    if args.jobs is not None and args.jobs <= 0:
        args.parser.error(f"-j must be positive, got {args.jobs}")
    if args.compare_seed:
        pairs = pft.compare_seed(profile, args.seed, backing=args.backing or "none",
                                 progress=pft.Progress(sys.stderr), jobs=args.jobs)
        print(pft.format_comparison(pairs))
        if args.plot:
            return pft.plot(pairs, args.plot)
        return 0
    nbytes = args.bytes if args.bytes is not None else args.gigabytes << 30
    threads = [t for group in args.threads for t in group] or [1]
    problems = pft.check_options(profile, nbytes, threads, args.rep, args.cachelines)
    if problems:
        args.parser.error(problems)
    scrub = {k: v for k, v in (("scrub_start", args.scrub_start), ("scrub_stop", args.scrub_stop),
                               ("scrub_load", args.scrub_load)) if v is not None}
    specs = [{"machine": dict(profile=profile, seed=args.seed, kernel=args.kernel, prezeroed=args.prezeroed,
                              backing=args.backing, scrub=scrub, bte=args.bte),
              "job": dict(nbytes=nbytes, threads=n, rep=args.rep, cachelines=args.cachelines, bzero=args.zero)}
             for n in threads]
    try:
        results = pft.run_rows(specs, args.jobs, pft.Progress(sys.stderr))
    except pft.JobError as e:
        return die(f"pft: {e.strerror}")
    print(pft.format_results(results, args.format, title=args.title or args.format in ("csv", "json")))
    if args.plot:
        return pft.plot([(None, r) for r in results], args.plot, kernel=args.kernel)
    return 0


def add_pft(sub) -> None:
    p = sub.add_parser("pft", help="run the seed's page fault test on the emulated machine",
                       description="pft, the page fault test of the seed, in virtual time. "
                                   "Several -f values (or -f 1,2,4,8) give one row each.")
    p.add_argument("-g", dest="gigabytes", type=int, default=1, help="gigabytes per repetition (default 1)")
    p.add_argument("-b", dest="bytes", type=int, help="bytes per repetition (overrides -g)")
    p.add_argument("-r", dest="rep", type=int, default=1, help="repetitions (default 1)")
    p.add_argument("-f", dest="threads", type=parse_threads, action="append", default=[],
                   help="threads, or a list like 1,2,4,8")
    p.add_argument("-c", dest="cachelines", type=int, default=1, help="cache lines touched per page")
    p.add_argument("-z", dest="zero", action="store_true", help="bzero the area first (user-space clear)")
    p.add_argument("-t", dest="title", action="store_true", help="print the title line")
    p.add_argument("-v", dest="verbose", action="store_true", help="verbose")
    p.add_argument("--profile", default="altix-8")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kernel", choices=("stock", "prezero"), default="prezero")
    p.add_argument("--scrub-start", type=int)
    p.add_argument("--scrub-stop", type=int)
    p.add_argument("--scrub-load", type=int)
    p.add_argument("--prezeroed", action="store_true", help="start with every free block zeroed")
    p.add_argument("--bte", action="store_true", help="let scrubd use the Altix BTE (the seed's table had none)")
    p.add_argument("--backing", choices=("real", "none"), help="override the profile's memory backing")
    p.add_argument("--format", choices=("2004", "2006", "csv", "json"), default="2004")
    p.add_argument("-j", "--jobs", type=int,
                   help="rows to run at once, each in its own process (default: one per host CPU, "
                        "as host memory allows); the rows are the same whatever the number")
    p.add_argument("--plot", metavar="FILE.png", help="plot fault/wsec and flt/cpu/s against threads")
    p.add_argument("--compare-seed", action="store_true",
                   help="run the seed's 9 rows on the profile and print ours beside the seed's")
    p.set_defaults(func=cmd_pft, parser=p)


# -------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vmemu", description="Emulated Linux prezeroing machine served as /proc and /sys over FUSE")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_mount, add_umount, add_status, add_shell, add_pft):
        add(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
