"""`vmemu top`: one frame (--once) against the files it reads, the live view
in a terminal, and its one-line errors."""

import os
import pty
import re
import signal
import subprocess
import sys
import threading

import pytest

from conftest import VMEMU, read, wait_for

pytest.importorskip("rich")
ENV = dict(os.environ, COLUMNS="220", LINES="200")      # wide enough that no table wraps
P = "sys/kernel/mm/prezero"


def top(*args, env=ENV, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([*VMEMU, "top", *args], capture_output=True, text=True, env=env, timeout=timeout)


def settle(mp):
    """Start scrubd, run a job, and wait until every kscrubd sleeps: a still machine."""
    with open(os.path.join(mp, "proc/sys/vm/scrub_start"), "w") as f:
        f.write("6")
    with open(os.path.join(mp, "proc/vmemu/fault"), "w") as f:
        f.write("bytes=16M threads=2")
    states = lambda: [read(mp, f"{P}/scrubd/{n}/state") for n in sorted(os.listdir(os.path.join(mp, f"{P}/scrubd")))]
    wait_for(lambda: set(states()) == {"sleeping\n"}, timeout=60)


def table_rows(text: str, title: str) -> list[list[str]]:
    """The body rows of the rich table under title, as lists of cells."""
    block = text.split(title, 1)[1].split("└", 1)[0]
    return [[c.strip() for c in line.strip("│ \n").split("│")] for line in block.splitlines()
            if line.startswith("│")]


@pytest.mark.parametrize("profile, nodes, cpus, page_kib, orders, engines", [
    ("altix-8", 4, 8, 16, 18, "0/2"), ("x86-64", 1, 2, 4, 11, "-")])
def test_once_shows_what_the_files_say(mount_profile, profile, nodes, cpus, page_kib, orders, engines):
    mp = mount_profile(profile, "--backing", "none")
    settle(mp)
    p = top(mp, "--once")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    head = p.stdout.split("\n")[0]
    assert f"{cpus} CPUs, {nodes} nodes, page {page_kib} KiB" in head and "(since boot)" in head
    faults = int(read(mp, "proc/vmstat").split("pgfault ")[1].split()[0])
    assert faults > 0 and float(re.search(r"faults/s ([\d,]+)", head).group(1).replace(",", "")) > 0
    rows = table_rows(p.stdout, "\nnodes")
    assert [r[0] for r in rows] == [str(n) for n in range(nodes)]
    for n, row in enumerate(rows):
        kb = {l.split()[2].rstrip(":"): int(l.split()[3]) for l in
              read(mp, f"sys/devices/system/node/node{n}/meminfo").splitlines()}
        assert row[1:4] == [f"{kb['MemFree'] / 1024:,.1f}", f"{kb['MemZero'] / 1024:,.1f}",
                            f"{(kb['MemFree'] - kb['MemZero']) / 1024:,.1f}"]
        assert row[4] == "sleeping" and float(row[5].replace(",", "")) > 0 and row[6] == engines
    blocks = table_rows(p.stdout, "\nfree blocks per order")
    assert [len(r) for r in blocks] == [1 + orders] * nodes
    zeroed = sum(int(c.split("/")[0]) << o for r in blocks for o, c in enumerate(r[1:]) if c != ".")
    assert zeroed * page_kib == sum(int(l.split()[3]) for n in range(nodes) for l in
                                    read(mp, f"sys/devices/system/node/node{n}/meminfo").splitlines()
                                    if "MemZero" in l)
    assert [r[0] for r in table_rows(p.stdout, "\nCPUs: ")] == [str(c) for c in range(cpus)]


def test_live_view_redraws_and_ends_on_ctrl_c(mounted):
    # In a terminal (a pty), as a person runs it: a second frame has rates over its
    # interval; Ctrl-C ends it with exit code 0.
    master, slave = pty.openpty()
    proc = subprocess.Popen([*VMEMU, "top", mounted, "-d", "0.2"], stdin=slave, stdout=slave, stderr=slave,
                            env=ENV, close_fds=True)
    os.close(slave)
    screen = []

    def pump():
        try:
            while chunk := os.read(master, 65536):
                screen.append(chunk.decode(errors="replace"))
        except OSError:                     # the other end closed
            pass
    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        wait_for(lambda: "(last " in "".join(screen), timeout=30)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=10)
        os.close(master)
    assert "Traceback" not in "".join(screen)


def test_errors_are_one_line(fresh_mountpoint, mounted):
    p = top(fresh_mountpoint, "--once")
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "vmemu mount" in p.stderr
    p = top(mounted, "-d", "0")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "--delay" in p.stderr
    # Without rich (an optional extra) the command says how to get it, in one line.
    code = ("import sys; sys.modules['rich'] = None; from vmemu.cli import main; "
            f"sys.exit(main(['top', {mounted!r}, '--once']))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "pip install 'vmemu[top]'" in p.stderr
