"""What the CLI and the daemon share about a mount point: the daemon's run
files, the mount table entry, and whether the mount answers.

Nothing here may block on the mount itself: a daemon that is stopped
(Ctrl-Z, SIGSTOP) or stuck leaves every request to its filesystem waiting,
so the mount table is read from /proc/self/mountinfo, the path is made
canonical without stepping into the mount, and the one request that does
reach the daemon (statfs) runs in a thread with a time limit.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass

FSTYPE = "fuse.vmemu"         # fsname vmemu, subtype vmemu (daemon.serve)
PROBE_TIMEOUT_S = 3.0

MOUNTED = "mounted"           # a vmemu mount whose daemon answers
UNMOUNTED = "unmounted"       # nothing is mounted there
STALE = "stale"               # the daemon is gone: "Transport endpoint is not connected"
HUNG = "hung"                 # the daemon does not answer (stopped, or stuck)
FOREIGN = "foreign"           # another filesystem is mounted there


def runtime_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    d = os.path.join(base, "vmemu") if base else f"/tmp/vmemu-{os.getuid()}"
    os.makedirs(d, mode=0o700, exist_ok=True)
    return d


def canonical(mountpoint: str) -> str:
    """The absolute, symlink-free path of mountpoint, found without a stat of
    the mount point itself (which a hung daemon would have to answer): only
    its parent is resolved, and the last component if it is a symlink."""
    path = os.path.abspath(mountpoint)
    try:
        target = os.readlink(path)            # a mount root is never a symlink: no request
    except OSError:
        target = None
    if target is not None:
        return canonical(os.path.join(os.path.dirname(path), target))
    parent, name = os.path.split(path)
    return os.path.join(os.path.realpath(parent), name) if name else path


def run_files(mountpoint: str) -> dict[str, str]:
    """The daemon's files for this mount point: pid, log, info (JSON with
    its settings) and error (why the last unmount could not save)."""
    h = hashlib.sha1(canonical(mountpoint).encode()).hexdigest()[:12]
    base = os.path.join(runtime_dir(), h)
    return {"pid": base + ".pid", "log": base + ".log", "info": base + ".json", "error": base + ".error"}


@dataclass
class MountEntry:
    fstype: str
    source: str
    options: set[str]


def mount_entry(mountpoint: str) -> MountEntry | None:
    """The mount table's (the last) entry for mountpoint, or None."""
    real = canonical(mountpoint)
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields, tail = pre.split(), post.split()
            if len(fields) < 6 or len(tail) < 3:
                continue
            if fields[4].encode().decode("unicode_escape") == real:
                found = MountEntry(tail[0], tail[1], set(fields[5].split(",")) | set(tail[2].split(",")))
    return found


def mount_state(mountpoint: str, timeout: float = PROBE_TIMEOUT_S) -> str:
    """MOUNTED, UNMOUNTED, STALE, HUNG or FOREIGN, within about ``timeout`` s."""
    entry = mount_entry(mountpoint)
    if entry is None:
        return UNMOUNTED
    if entry.fstype != FSTYPE:
        return FOREIGN
    return probe(mountpoint, timeout)


def probe(mountpoint: str, timeout: float) -> str:
    """Ask the daemon for statfs (always a request: never answered from a
    cache) in a thread of its own; HUNG when no answer comes in time."""
    result: list[str] = []

    def ask() -> None:
        try:
            os.statvfs(mountpoint)
            result.append(MOUNTED)
        except OSError:               # ENOTCONN: the daemon is gone
            result.append(STALE)

    t = threading.Thread(target=ask, name="vmemu-probe", daemon=True)
    t.start()
    t.join(timeout)
    return result[0] if result else HUNG


def read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def process_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (R, S, T for stopped, Z, ...), or
    None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int | None) -> bool:
    """A process that has not exited (a zombie child of ours has)."""
    return pid is not None and process_state(pid) not in (None, "Z", "X")


def stopped(pid: int | None) -> bool:
    return pid is not None and process_state(pid) in ("T", "t")


def describe(state: str, mountpoint: str) -> str:
    """One line on a mount point that is not MOUNTED: what is wrong and what to do."""
    if state == UNMOUNTED:
        return f"not mounted (vmemu mount {mountpoint})"
    if state == FOREIGN:
        return "not a vmemu mount (another filesystem is mounted there)"
    if state == STALE:
        return f"the daemon is gone (Transport endpoint is not connected); vmemu umount {mountpoint} clears it"
    pid = read_pid(run_files(mountpoint)["pid"])
    if stopped(pid):
        return (f"daemon {pid} is stopped (SIGSTOP or Ctrl-Z) and does not answer: resume it with "
                f"kill -CONT {pid} (or fg), or stop it with vmemu umount {mountpoint}")
    return (f"the daemon{f' (pid {pid})' if pid else ''} does not answer within {PROBE_TIMEOUT_S:g} s: "
            f"wait, or vmemu umount {mountpoint} (it unmounts lazily if it must)")
