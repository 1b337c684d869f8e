"""`vmemu shell`: run a command where the emulated files sit over the real ones.

procps (free, vmstat, sysctl, top), numactl, lscpu and sysstat hardcode
/proc and /sys, so the only way to point them at the mount is a private
mount namespace with the emulated files bind-mounted over their real
counterparts (docs/tools.md), in a PID namespace with its
own /proc so that top lists no host process.  The host's mount table is
untouched: the binds live and die with the namespace.

The bind list is read from the mounted tree itself (the running daemon's
procfs table, with its own node and CPU counts), so a file added to the table
is bound as soon as the host has a file to cover.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

from .mounts import MOUNTED, describe, mount_entry, mount_state

# Directories bound whole: the host's versions hold entries the emulated
# machine must not show (host sysctls, host NUMA nodes, host cpuN with their
# caches and topology), and the emulated ones hold entries the host lacks
# (scrub_* sysctls, node1..N, cpu2..N).
WHOLE_DIRS = ("proc/sys/vm", "sys/devices/system/node", "sys/devices/system/cpu")


class ShellError(Exception):
    """A one-line reason the shell cannot start."""


def table_paths(mountpoint: str, skip=()) -> list[str]:
    """Every file path of the emulated tree, relative to the mount (as the
    daemon builds it), without descending into the directories in skip.
    Read from the mount itself so the running daemon's profile (nodes,
    CPUs) is what counts."""
    out = []
    for root, dirs, files in os.walk(mountpoint):
        rel = os.path.relpath(root, mountpoint)
        # pruned, not filtered: altix-512's cpu directory alone holds 36000 entries
        dirs[:] = sorted(d for d in dirs if os.path.normpath(os.path.join(rel, d)) not in skip)
        for name in sorted(files):
            out.append(os.path.normpath(os.path.join(rel, name)))
    return out


def bind_list(mountpoint: str, host_root: str = "/") -> list[tuple[str, str]]:
    """(source in the mount, target on the host) for every emulated file or
    WHOLE_DIRS directory that has a real counterpart to cover."""
    mp = os.path.realpath(mountpoint)
    binds = []
    for d in WHOLE_DIRS:
        if os.path.isdir(os.path.join(mp, d)) and os.path.isdir(os.path.join(host_root, d)):
            binds.append((os.path.join(mp, d), os.path.join(host_root, d)))
    for path in table_paths(mp, skip=WHOLE_DIRS):
        target = os.path.join(host_root, path)
        if os.path.isfile(target):
            binds.append((os.path.join(mp, path), target))
    return binds


def unshare_argv(mountpoint: str, command: list[str]) -> list[str]:
    """The unshare command line that binds everything and execs command."""
    state = mount_state(mountpoint)
    if state != MOUNTED:
        raise ShellError(f"{mountpoint}: {describe(state, mountpoint)}")
    opts = mount_entry(mountpoint).options
    if os.geteuid() == 0:
        ns = ["unshare", "--mount", "--propagation", "private"]
    elif "allow_other" in opts:
        # A user namespace gives us CAP_SYS_ADMIN over a new mount namespace;
        # its root is still our uid on the host, so FUSE lets it in only with allow_other.
        ns = ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]
    else:
        raise ShellError(f"{mountpoint}: not mounted with --allow-other; remount with "
                         f"`vmemu mount --allow-other {mountpoint}` or run vmemu shell as root")
    # A PID namespace with a fresh /proc under the binds: top and ps list the
    # namespace's own processes, not the host's.
    ns += ["--pid", "--fork", "--mount-proc"]
    binds = bind_list(mountpoint)
    if not binds:
        raise ShellError(f"{mountpoint}: no emulated file has a real counterpart to cover")
    # set -e: a bind that fails must not leave the command running on the real files.
    script = "set -e\n" + "".join(f"mount --bind {shlex.quote(s)} {shlex.quote(t)}\n" for s, t in binds)
    # The script is the namespace's init: the command runs as its child, not
    # exec'd, because init ignores every signal it has no handler for (a
    # Ctrl-C, a kill -TERM) and the command must not.
    script += 'set +e\n"$@"\nexit $?\n'
    return [*ns, "--", "sh", "-c", script, "vmemu-shell", *command]


def run(mountpoint: str, command: list[str]) -> int:
    """Run command (default: the user's shell) in the namespace; its exit code."""
    if not command:
        command = [os.environ.get("SHELL") or "/bin/sh"]
        print(f"vmemu: shell on {mountpoint}'s /proc and /sys; exit to leave", file=sys.stderr)
    argv = unshare_argv(mountpoint, command)
    env = dict(os.environ, VMEMU_MOUNTPOINT=os.path.realpath(mountpoint))
    try:
        rc = subprocess.run(argv, env=env).returncode
    except FileNotFoundError:
        raise ShellError("unshare not found: apt-get install util-linux") from None
    except KeyboardInterrupt:       # the child got the SIGINT too and decides
        return 130
    return 128 - rc if rc < 0 else rc
