"""The `vmemu` command.  One function per subcommand and one parser block
each (see build_parser); main() only dispatches.

Every failure a user can cause is one line on stderr: exit 2 for a usage
error (an option that does not parse, options that conflict, a job no
machine of the profile can run), 1 when the command could not do its work.
Options are checked before anything is mounted or run.  No command waits
on a mount without a time limit (vmemu.mounts).
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import signal
import sys
import threading
import time

from . import mounts
from .profiles import DEFAULT_PROFILE

DEFAULT_MOUNTPOINT = "./mountpoint"
MOUNT_TIMEOUT_S = 30
UMOUNT_TIMEOUT_S = 15
MAX_SPEED = 1_000_000
DEFAULT_CHECKPOINT_S = 60.0


class UsageError(Exception):
    """A usage error: exit 2 with this one line."""


class CommandError(Exception):
    """The command could not do its work: exit 1 with this one line."""


class Parser(argparse.ArgumentParser):
    """argparse with its errors as one line (no usage dump)."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def wait_for(cond, timeout: float, step: float = 0.05) -> bool:
    """Poll cond() until it is true or timeout seconds pass."""
    end = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() > end:
            return False
        time.sleep(step)


# -- option types: the kernel's parsers, one line on a bad value -------------------

def _kernel_parse(parse, what: str):
    def convert(text: str):
        try:
            return parse(text)
        except OSError as e:
            raise argparse.ArgumentTypeError(f"{text!r}: {e.strerror}; expected {what}") from None
    convert.__name__ = what           # argparse names the type in some messages
    return convert


def _count(text: str) -> int:
    from .lib.kstrtox import kstrtoull
    return kstrtoull(text.encode())


def _sysctl_int(text: str) -> int:
    # what proc_dointvec would store from this write, and nothing may be left over
    from .fs.sysctl import parse_intvec
    data = text.encode()
    values, used = parse_intvec("value", data, 1)
    if not values:
        raise OSError(errno.EINVAL, "no number given")
    if used != len(data):
        raise OSError(errno.EINVAL, "one integer only")
    return values[0]


def _size(text: str) -> int:
    from .lib.cmdline import memparse
    return memparse(text)


count = _kernel_parse(_count, "a count (decimal, 0x hex or 0 octal, as kstrtoull reads it)")
size = _kernel_parse(_size, "a size (a count with an optional K, M, G or T, as memparse reads it)")
sysctl_int = _kernel_parse(_sysctl_int, "an int (as proc_dointvec reads it)")


def positive(text: str) -> int:
    value = count(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive count")
    return value


def thread_list(text: str) -> list[int]:
    """-f 4, -f 1,2,4,8: one row per value; no empty items."""
    items = text.split(",")
    if "" in items:
        raise argparse.ArgumentTypeError(f"{text!r}: an empty item in the list of thread counts")
    return [count(item) for item in items]


def number(text: str) -> float:
    """A float option's value, NaN when it is not a number (so that every
    range check refuses it with the option's own line)."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def speed(text: str) -> float:
    """--speed: virtual seconds per wall second, or max (jobs flat out)."""
    if text == "max":
        return math.inf
    value = number(text)
    if not 0 < value <= MAX_SPEED:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the speed is virtual seconds per wall second, a number above 0 and at most "
            f"{MAX_SPEED}, or max")
    return value


def checkpoint_interval(text: str) -> float:
    """--checkpoint: seconds between two checkpoints, 0 for none."""
    value = number(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r}: the checkpoint interval is seconds, a number >= 0 "
                                         "(0: no checkpoints)")
    return value


# -- mount -----------------------------------------------------------------------

def force_unmount(mountpoint: str) -> None:
    """Unmount lazily: a stale mount, or one whose daemon does not answer."""
    import subprocess
    for cmd in (["fusermount3", "-uz", mountpoint], ["umount", "-l", mountpoint]):
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if mounts.mount_entry(mountpoint) is None:
            return


def check_mountpoint(mp: str, nonempty: bool) -> None:
    state = mounts.mount_state(mp)
    if state == mounts.STALE:
        force_unmount(mp)
        state = mounts.mount_state(mp)
    if state == mounts.MOUNTED:
        raise CommandError(f"{mp}: already mounted (vmemu umount {mp})")
    if state != mounts.UNMOUNTED:
        raise CommandError(f"{mp}: {mounts.describe(state, mp)}")
    if not os.path.exists(mp):
        raise CommandError(f"{mp}: no such directory")
    if not os.path.isdir(mp):
        raise CommandError(f"{mp}: not a directory")
    # A checked-in placeholder (.gitkeep) does not count as content.
    if not nonempty and [n for n in os.listdir(mp) if n != ".gitkeep"]:
        raise CommandError(f"{mp}: directory is not empty (use --nonempty to mount over it anyway)")


def file_problem(path: str) -> str | None:
    """Why a file could not be written (replaced) at path, or None: checked
    by making a scratch file beside it, without touching path itself."""
    import tempfile
    if os.path.isdir(path):
        return "is a directory"
    if os.path.exists(path) and not os.path.isfile(path):
        return "not a regular file"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"no such directory {folder}"
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".vmemu-check-"):
            pass
    except OSError as e:
        return f"cannot write in {folder} ({e.strerror})"
    return None


def check_state_file(path: str) -> None:
    """--state FILE: refused now unless the machine can be saved there at the end."""
    problem = file_problem(path)
    if problem is None and os.path.exists(path) and not os.access(path, os.R_OK):
        problem = "not readable"
    if problem:
        raise CommandError(f"--state {path}: {problem}")


def cmd_mount(args) -> int:
    from .daemon import SetupError, load_fuse
    from .mm.memory import HostMemoryError, check_host_memory
    from .profiles import ProfileError, load_profile
    if args.checkpoint is not None and not args.state:
        raise UsageError("vmemu mount: --checkpoint needs --state FILE (the file checkpoints are saved to)")
    try:
        profile = load_profile(args.profile)
        load_fuse()
    except (ProfileError, SetupError) as e:
        raise CommandError(str(e)) from None
    check_mountpoint(args.mountpoint, args.nonempty)
    if args.state:
        check_state_file(args.state)
    # a state file's machine keeps its own backing: the daemon checks it as it reads the file
    if not (args.state and os.path.exists(args.state)):
        try:
            check_host_memory(profile, args.backing)
        except HostMemoryError as e:
            raise CommandError(str(e)) from None
    if args.foreground:
        return serve_foreground(args)
    return spawn_daemon(args)


def serve_foreground(args) -> int:
    import logging
    from .daemon import SetupError, serve
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        rc = serve(args.mountpoint, args.profile, args.seed, args.backing, args.speed, args.allow_other,
                   args.fuse_threads, args.state, checkpoint_seconds(args))
    except SetupError as e:
        raise CommandError(str(e)) from None
    if rc:
        raise CommandError(_take_error(args.mountpoint, keep=True) or "the machine was not saved")
    return 0


def checkpoint_seconds(args) -> float:
    """The checkpoint interval in force: --checkpoint, else DEFAULT_CHECKPOINT_S with --state."""
    if not args.state:
        return 0
    return DEFAULT_CHECKPOINT_S if args.checkpoint is None else args.checkpoint


def spawn_daemon(args) -> int:
    import subprocess
    mp = args.mountpoint
    log_path = mounts.run_files(mp)["log"]
    cmd = [sys.executable, "-m", "vmemu.cli", "mount", mp, "--foreground", "--profile", args.profile,
           "--seed", str(args.seed), "--speed", "max" if args.speed == math.inf else repr(args.speed),
           "--fuse-threads", args.fuse_threads]
    cmd += ["--backing", args.backing] if args.backing else []
    cmd += ["--allow-other"] if args.allow_other else []
    cmd += ["--nonempty"] if args.nonempty else []
    cmd += ["--state", os.path.abspath(args.state), "--checkpoint", repr(checkpoint_seconds(args))] \
        if args.state else []
    with open(log_path, "a") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    up = lambda: proc.poll() is not None or mounts.mount_state(mp) == mounts.MOUNTED
    if not wait_for(up, MOUNT_TIMEOUT_S, step=0.01):     # the mount returns as soon as it is up
        proc.kill()
        raise CommandError(f"{mp}: mount did not come up in {MOUNT_TIMEOUT_S} s; see {log_path}")
    if proc.poll() is not None:
        with open(log_path) as f:
            tail = f.read().strip().splitlines()[-1:]
        if tail and tail[0].startswith("vmemu: "):        # the daemon's own one-line reason
            raise CommandError(f"{tail[0][len('vmemu: '):]} (log: {log_path})")
        raise CommandError(f"daemon exited ({tail[0] if tail else 'no log'}); log: {log_path}")
    print(f"vmemu: {args.profile} mounted on {mp} (pid {proc.pid}, log {log_path})")
    return 0


def add_mount(sub) -> None:
    p = sub.add_parser("mount", help="mount the emulated /proc and /sys")
    p.add_argument("mountpoint", nargs="?", default=DEFAULT_MOUNTPOINT)
    p.add_argument("--profile", default=DEFAULT_PROFILE,
                   help=f"shipped profile name or a .toml file (default {DEFAULT_PROFILE}, the seed's machine)")
    p.add_argument("--seed", type=count, default=0)
    p.add_argument("--foreground", action="store_true", help="stay attached, log to stderr")
    p.add_argument("--allow-other", action="store_true", help="let other users in (modes still apply)")
    p.add_argument("--backing", choices=("real", "none"), default=None,
                   help="back page frames with host memory (default: the profile's choice); a machine "
                        "the host's available memory cannot hold is refused")
    p.add_argument("--speed", type=speed, default=1.0,
                   help=f"virtual seconds per wall second (above 0, at most {MAX_SPEED}); max: fault jobs "
                        "run flat out (idle time still follows wall time)")
    p.add_argument("--nonempty", action="store_true", help="mount over a non-empty directory")
    p.add_argument("--state", metavar="FILE",
                   help="restore the machine from FILE if it exists (its profile must match; its seed "
                        "and backing are kept); save it there on a clean unmount, and checkpoint it "
                        "there while mounted (--checkpoint)")
    p.add_argument("--checkpoint", metavar="SECONDS", type=checkpoint_interval, default=None,
                   help=f"with --state: also save the machine to FILE every SECONDS of wall time "
                        f"(default {DEFAULT_CHECKPOINT_S:g}) and after each fault job, each once the "
                        "machine is idle, so a SIGKILL or an OOM kill loses at most one interval; "
                        "0: only at unmount")
    p.add_argument("--fuse-threads", choices=("multi", "single"), default="multi",
                   help=argparse.SUPPRESS)   # for benchmarks/control_plane.py
    p.set_defaults(func=cmd_mount)


# -- umount ----------------------------------------------------------------------

def _take_error(mountpoint: str, keep: bool = False) -> str | None:
    """The daemon's reason it could not save the machine, if it left one."""
    path = mounts.run_files(mountpoint)["error"]
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    if not keep:
        os.unlink(path)
    return text or None


def _info(mountpoint: str) -> dict:
    import json
    try:
        with open(mounts.run_files(mountpoint)["info"]) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def stop_daemon(mp: str, pid: int) -> None:
    """SIGTERM (libfuse's handler unmounts and the daemon saves and exits);
    a stopped daemon is resumed so that it can.  One that is still there
    after UMOUNT_TIMEOUT_S is left running, its mount unmounted lazily."""
    try:
        os.kill(pid, signal.SIGTERM)
        if mounts.stopped(pid):
            os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:                # it ended meanwhile
        return
    except PermissionError:
        raise CommandError(f"daemon {pid} belongs to another user: it cannot be stopped from here") from None
    if wait_for(lambda: not mounts.pid_alive(pid), UMOUNT_TIMEOUT_S):
        return
    force_unmount(mp)
    raise CommandError(f"daemon {pid} has not exited {UMOUNT_TIMEOUT_S} s after SIGTERM; {mp} was unmounted "
                       f"lazily; the daemon saves (with --state) when it ends; kill -9 {pid} ends it unsaved")


def cmd_umount(args) -> int:
    mp = args.mountpoint
    files = mounts.run_files(mp)
    pid = mounts.read_pid(files["pid"])
    state = mounts.mount_state(mp)
    if state == mounts.FOREIGN:
        raise CommandError(f"{mp}: not a vmemu mount (another filesystem is mounted there)")
    if state == mounts.UNMOUNTED and not mounts.pid_alive(pid):
        error = _take_error(mp)
        raise CommandError(f"{mp}: {error}" if error else f"{mp}: not mounted")
    info, died = _info(mp), pid is not None and not mounts.pid_alive(pid)
    if mounts.pid_alive(pid):
        stop_daemon(mp, pid)
    if mounts.mount_entry(mp) is not None:
        force_unmount(mp)
    if mounts.mount_entry(mp) is not None:
        raise CommandError(f"{mp}: still mounted (umount -l {mp})")
    for name in ("pid", "info"):
        if os.path.exists(files[name]):
            os.unlink(files[name])
    error = _take_error(mp)
    if error:
        raise CommandError(error)
    if died and info.get("state_file"):
        raise CommandError(f"daemon {pid} had died (killed?): cleared its mount; the machine was not saved "
                           f"to {info['state_file']} at exit ({_last_save(info)})")
    if died:
        print(f"vmemu: daemon {pid} had died (killed?): cleared its mount", file=sys.stderr)
    return 0


def _last_save(info: dict) -> str:
    """What a dead daemon's state file holds, for its umount's line."""
    path = info["state_file"]
    if not os.path.exists(path):
        return "nothing had been saved there yet"
    when = time.strftime("%H:%M:%S", time.localtime(os.path.getmtime(path)))
    what = "checkpoint or save" if info.get("checkpoint") else "save"
    return f"the file holds the last {what}, of {when}; vmemu mount --state {path} restores it"


def add_mountpoint_command(sub, name: str, help: str, func) -> None:
    """A subcommand whose only argument is the mount point."""
    p = sub.add_parser(name, help=help)
    p.add_argument("mountpoint", nargs="?", default=DEFAULT_MOUNTPOINT)
    p.set_defaults(func=func)


def add_umount(sub) -> None:
    add_mountpoint_command(sub, "umount", "unmount and stop the daemon", cmd_umount)


# -- status ----------------------------------------------------------------------

def read_with_timeout(path: str, timeout: float) -> str | None:
    """The file's text, or None when the daemon does not answer in time."""
    out: list[str] = []

    def read() -> None:
        try:
            with open(path) as f:
                out.append(f.read())
        except OSError as e:
            out.append(f"unreadable ({e.strerror})")
    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    return out[0] if out else None


def pace_line(mp: str) -> str:
    """proc/vmemu/pace in one line: the speed, and how far the job in hand
    (or the last one) fell behind its pace."""
    text = read_with_timeout(os.path.join(mp, "proc/vmemu/pace"), mounts.PROBE_TIMEOUT_S)
    try:
        pace = dict(line.split(None, 1) for line in (text or "").splitlines())
        which = "job running" if pace["job"] == "running" else "last job"
        return f"speed {pace['speed']}, {which} {pace['behind_ms']} ms behind"
    except (KeyError, ValueError):
        return "no answer"


def cmd_status(args) -> int:
    mp = args.mountpoint
    files = mounts.run_files(mp)
    state = mounts.mount_state(mp)
    info = _info(mp)
    pid = info.get("pid") or mounts.read_pid(files["pid"])
    alive = mounts.pid_alive(pid)
    uptime = "-"
    if state == mounts.MOUNTED:
        text = read_with_timeout(os.path.join(mp, "proc/uptime"), mounts.PROBE_TIMEOUT_S)
        uptime = "no answer" if text is None else text.split()[0] + " s" if text[:1].isdigit() else text
    print(f"mountpoint: {mounts.canonical(mp)}")
    print(f"state:      {state}")
    print(f"profile:    {info.get('profile', '-')}")
    print(f"pid:        {pid if alive else '-'}" + (" (stopped)" if mounts.stopped(pid) else ""))
    print(f"uptime:     {uptime} (virtual)")
    if state == mounts.MOUNTED:
        print(f"pace:       {pace_line(mp)}")
    print(f"log:        {files['log']}")
    if state != mounts.MOUNTED:
        print(f"vmemu: {mp}: {mounts.describe(state, mp)}", file=sys.stderr)
    return 0 if state == mounts.MOUNTED and alive else 1


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
        raise UsageError("vmemu shell: usage: vmemu shell [MOUNTPOINT] [-- COMMAND...]")
    try:
        return run(head[0] if head else DEFAULT_MOUNTPOINT, command)
    except ShellError as e:
        raise CommandError(str(e)) from None


def add_shell(sub) -> None:
    p = sub.add_parser("shell", usage="vmemu shell [MOUNTPOINT] [-- COMMAND...]",
                       help="a shell (or COMMAND) with the emulated files bound over /proc and /sys")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="[MOUNTPOINT] [-- COMMAND...]")
    p.set_defaults(func=cmd_shell)


# -- top -------------------------------------------------------------------------

def delay(text: str) -> float:
    value = number(text)
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: the delay is seconds between frames, 0.1 to 3600")
    return value


def cmd_top(args) -> int:
    from .top import TopError, run
    try:
        return run(args.mountpoint, args.once, args.delay)
    except TopError as e:
        raise CommandError(str(e)) from None
    except KeyboardInterrupt:           # q for top(1), Ctrl-C here: the way out, not an error
        return 0


def add_top(sub) -> None:
    p = sub.add_parser("top", help="a live view: free memory zeroed and not per node, kscrubd, BTE, CPUs, faults")
    p.add_argument("mountpoint", nargs="?", default=DEFAULT_MOUNTPOINT)
    p.add_argument("--once", action="store_true", help="print one frame (rates since boot) and exit")
    p.add_argument("-d", "--delay", type=delay, default=1.0, help="seconds between frames (default 1)")
    p.set_defaults(func=cmd_top)


# -- pft -------------------------------------------------------------------------

from .pft.cli import add_pft   # noqa: E402  (the pft subcommand, in a module of its own)
from .sweep.cli import add_sweep   # noqa: E402  (pft over a grid: vmemu/sweep/)
from .pft.validate_cli import add_validate   # noqa: E402  (a measured pft table against a profile)
from .hostpft.cli import add_hostpft   # noqa: E402  (pft on the host's kernel: vmemu/hostpft/)
from .calibrate.cli import add_calibrate   # noqa: E402  (the host as a profile: vmemu/calibrate/)


# -------------------------------------------------------------------------------

def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version
    try:
        return dist_version("vmemu")
    except PackageNotFoundError:
        return "unknown"


class VersionAction(argparse.Action):
    """--version: the package's version, looked up only when asked for, and
    whether the model runs compiled."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0,
                         help=help or "show program's version number and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from . import native
        print(f"vmemu {version()}\nmodel: {native.status()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="vmemu",
                    description="Emulated Linux prezeroing machine served as /proc and /sys over FUSE")
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add in (add_mount, add_umount, add_status, add_shell, add_top, add_pft, add_sweep, add_validate,
                add_hostpft, add_calibrate):
        add(sub)
    return parser


def main(argv=None) -> int:
    try:
        args, extra = build_parser().parse_known_args(argv)
        if extra:
            raise UsageError(f"vmemu {args.command}: unrecognized arguments: {' '.join(extra)} "
                             f"(see vmemu {args.command} --help)")
        rc = args.func(args)
        sys.stdout.flush()                    # a closed pipe is found here, not at exit
        return rc
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    except CommandError as e:
        print(f"vmemu: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nvmemu: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (vmemu status | head -1): end quietly, as a C
        # tool killed by SIGPIPE would; nothing more can reach it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except Exception as e:                    # a bug: still one line, the traceback on request
        if os.environ.get("VMEMU_DEBUG"):
            raise
        print(f"vmemu: internal error: {type(e).__name__}: {e} (VMEMU_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 70


if __name__ == "__main__":
    # `python -m vmemu.cli` (how the daemon is started): run the module's
    # imported copy, so its error classes are the ones pft.cli raises.
    from vmemu.cli import main as _main
    sys.exit(_main())
