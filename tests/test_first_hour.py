"""What a new user hits in the first hour, one test per class of defect:
reads at an offset, options checked before anything runs, state never lost
silently, one line instead of a traceback, a stopped daemon, consistent
answers, a README session that shows what one gets, and the kernel's
answer to an over-long sysfs write.  Every CLI call goes through cli(),
which fails on a traceback in its stderr."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from conftest import VMEMU, cli, daemon_pid, one_line, read, sh, wait_for
from vmemu.mounts import mount_state, run_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- 1. reads at an offset on a fresh handle ------------------------------------------

OFFSET_FILES = ["proc/meminfo", "proc/vmstat", "proc/vmemu/zeroinfo", "sys/devices/system/node/node0/meminfo",
                "sys/devices/system/node/node0/numastat", "sys/kernel/mm/prezero/policy",
                "sys/kernel/debug/fail_page_alloc/probability"]


@pytest.mark.parametrize("path", OFFSET_FILES)
def test_fresh_handle_reads_at_any_offset(mounted, path):
    text = read(mounted, path).encode()
    full = os.path.join(mounted, path)
    fd = os.open(full, os.O_RDONLY)
    try:
        assert os.pread(fd, 20, 5) == text[5:25]
    finally:
        os.close(fd)
    with open(full, "rb") as f:
        f.seek(3)
        assert f.read(30) == text[3:33]
    if len(text) > 25:
        p = sh(f"dd if={full} bs=1 skip=5 count=20 status=none")
        assert p.returncode == 0 and p.stdout.encode() == text[5:25]


def test_sysctl_keeps_eof_past_offset(mounted):
    fd = os.open(os.path.join(mounted, "proc/sys/vm/scrub_start"), os.O_RDONLY)
    try:
        assert os.pread(fd, 20, 1) == b""          # proc_dointvec: any read at offset > 0 is EOF
        assert os.pread(fd, 20, 0) == read(mounted, "proc/sys/vm/scrub_start").encode()
    finally:
        os.close(fd)


# -- 2. options checked before anything is mounted or run ------------------------------

@pytest.mark.parametrize("args, words", [
    (["--speed", "nan"], ["--speed", "'nan'"]), (["--speed", "inf"], ["'inf'"]),
    (["--speed", "1e308"], ["'1e308'"]), (["--speed", "-1"], ["'-1'"]), (["--speed", "0"], ["'0'"]),
    (["--seed", "-3"], ["--seed", "not a number"]), (["--seed", "1" * 30], ["does not fit"]),
    (["--backing", "disk"], ["--backing"]), (["--bogus"], ["--bogus"]),
])
def test_bad_mount_options_are_usage_errors(fresh_mountpoint, args, words):
    p = cli("mount", fresh_mountpoint, "--profile", "x86-64", *args)
    one_line(p, 2, "vmemu mount: ", *words)
    assert mount_state(fresh_mountpoint) == "unmounted"


def test_speed_in_range_runs_the_clock(fresh_mountpoint):
    one = cli("mount", fresh_mountpoint, "--profile", "x86-64", "--backing", "none", "--speed", "1e3")
    assert one.returncode == 0, one.stderr
    try:
        wait_for(lambda: float(read(fresh_mountpoint, "proc/uptime").split()[0]) > 5)
    finally:
        assert cli("umount", fresh_mountpoint).returncode == 0


# -- 3. state is never lost without a word -----------------------------------------------

def test_unwritable_state_path_refused_at_mount(fresh_mountpoint, tmp_path):
    for state, words in ((str(tmp_path / "no" / "dir" / "s.state"), ["no such directory"]),
                         (str(tmp_path), ["is a directory"])):
        p = cli("mount", fresh_mountpoint, "--profile", "x86-64", "--state", state)
        one_line(p, 1, "--state", *words)
        assert mount_state(fresh_mountpoint) == "unmounted"


def test_failed_save_at_umount_is_reported_and_keeps_the_old_file(fresh_mountpoint, tmp_path):
    state = str(tmp_path / "machine.state")
    mount = ("mount", fresh_mountpoint, "--profile", "x86-64", "--backing", "none", "--state", state)
    assert cli(*mount).returncode == 0 and cli("umount", fresh_mountpoint).returncode == 0
    saved = open(state, "rb").read()
    assert cli(*mount).returncode == 0
    # The save writes STATE.tmp<pid> and renames it over STATE: a directory
    # in its way makes the write fail.
    os.mkdir(f"{state}.tmp{daemon_pid(fresh_mountpoint)}")
    p = cli("umount", fresh_mountpoint)
    one_line(p, 1, "not saved to", state)
    assert mount_state(fresh_mountpoint) == "unmounted"
    assert open(state, "rb").read() == saved


def test_dead_daemon_with_state_is_reported_at_umount(fresh_mountpoint, tmp_path):
    state = str(tmp_path / "machine.state")
    assert cli("mount", fresh_mountpoint, "--profile", "x86-64", "--backing", "none", "--state", state).returncode == 0
    pid = daemon_pid(fresh_mountpoint)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: mount_state(fresh_mountpoint) == "stale")
    p = cli("umount", fresh_mountpoint)
    one_line(p, 1, f"daemon {pid} had died", "not saved")
    assert mount_state(fresh_mountpoint) == "unmounted"


# -- 4. one line, never a traceback ------------------------------------------------------

PROFILES = {
    "latin1.toml": b'name = "caf\xe9"\n',
    "self.toml": b'inherit = "self.toml"\n',
    "a.toml": b'inherit = "b.toml"\n',
    "b.toml": b'inherit = "./a.toml"\n',
    "table.toml": b'inherit = "x86-64"\nmachine = 5\n',
    "nodes.toml": b'inherit = "x86-64"\n[machine]\nnodes = 1000000000000\n',
    "inf.toml": b'inherit = "x86-64"\n[memory]\nbus_bytes_per_ns = inf\n',
    "size.toml": b'inherit = "x86-64"\n[machine]\nnode_memory = "lots"\n',
    "name.toml": b'name = 5\ninherit = "x86-64"\n',
    "inherit.toml": b'inherit = 7\n',
}
WHY = {"latin1.toml": "not UTF-8", "self.toml": "cycle", "a.toml": "cycle", "b.toml": "cycle",
       "table.toml": "must be a table", "nodes.toml": "nodes must be an integer in 1..1024",
       "inf.toml": "finite", "size.toml": "bad size", "name.toml": "name must be a string",
       "inherit.toml": "not 7"}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_bad_profiles_are_one_line(tmp_path, fresh_mountpoint, name):
    for n, body in PROFILES.items():
        (tmp_path / n).write_bytes(body)
    path = str(tmp_path / name)
    one_line(cli("pft", "--profile", path), 2, WHY[name])
    one_line(cli("mount", fresh_mountpoint, "--profile", path), 1, WHY[name])
    assert mount_state(fresh_mountpoint) == "unmounted"


def test_closed_pipe_is_quiet(mounted):
    r, w = os.pipe()
    os.close(r)                                # the reader is gone before a byte is written
    try:
        p = subprocess.run([*VMEMU, "status", mounted], stdout=w, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(w)
    assert p.stderr == "" and p.returncode == 128 + signal.SIGPIPE
    p = sh(f"{sys.executable} -m vmemu.cli status {mounted} | head -1")
    assert p.stderr == "" and p.stdout.startswith("mountpoint: ")


def test_interrupted_pft_is_one_line():
    # rows far too long to end by themselves (786 M faults each); Ctrl-C once
    # both row workers have run a little
    proc = subprocess.Popen([*VMEMU, "pft", "-g", "4", "-r", "1000", "-f", "1,2", "--backing", "none", "-j", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: len([c for c in _children(proc.pid) if _cpu_ticks(c) > 2]) == 2, timeout=60)
        os.killpg(proc.pid, signal.SIGINT)         # Ctrl-C: the whole process group
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130 and err.strip() == "vmemu: interrupted", err


def _children(pid: int) -> list[str]:
    return [c for c in os.listdir("/proc") if c.isdigit() and _parent(c) == pid]


def _cpu_ticks(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return int(fields[11]) + int(fields[12])   # utime + stime
    except (OSError, ValueError, IndexError):
        return 0


def _parent(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


# -- 5. a stopped daemon ------------------------------------------------------------------

@pytest.mark.slow
def test_stopped_daemon_status_and_umount_do_not_hang(fresh_mountpoint):
    mp = fresh_mountpoint
    proc = subprocess.Popen([*VMEMU, "mount", mp, "--foreground", "--profile", "x86-64", "--backing", "none"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: mount_state(mp) == "mounted")
        proc.send_signal(signal.SIGSTOP)           # what Ctrl-Z does
        wait_for(lambda: open(f"/proc/{proc.pid}/stat").read().rpartition(")")[2].split()[0] == "T")
        st = cli("status", mp, timeout=30)
        assert st.returncode == 1 and "state:      hung" in st.stdout
        one_line(st, 1, f"daemon {proc.pid} is stopped", f"kill -CONT {proc.pid}", "vmemu umount")
        um = cli("umount", mp, timeout=60)
        assert um.returncode == 0, um.stderr
        assert proc.wait(timeout=30) == 0          # resumed, it unmounted and ended cleanly
        assert mount_state(mp) == "unmounted"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()


def test_only_the_main_thread_takes_the_signals_that_end_the_daemon(tmp_path):
    """libfuse's SIGTERM handler only marks the session ended; the main
    thread wakes to see it.  A SIGTERM taken by another thread (one left
    pending while the daemon was stopped goes to whichever thread runs
    first) would leave the daemon running: every other thread blocks it
    (/proc/PID/task/TID/status, SigBlk)."""
    from conftest import mounting
    stop = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT]
    with mounting("x86-64", "--backing", "none", "--state", str(tmp_path / "m.state")) as mp:
        pid = daemon_pid(mp)
        masks = {}
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                blocked = re.search(r"^SigBlk:\s+([0-9a-f]+)$", f.read(), re.M).group(1)
            masks[int(tid)] = int(blocked, 16)
        others = {tid: mask for tid, mask in masks.items() if tid != pid}
        assert len(others) >= 2, masks               # the clock and the checkpoints, at least
        for tid, mask in others.items():
            assert all(mask >> (sig - 1) & 1 for sig in stop), (tid, hex(mask))
        assert not any(masks[pid] >> (sig - 1) & 1 for sig in stop), hex(masks[pid])


# -- 6. consistent answers ------------------------------------------------------------------

def test_umount_and_status_of_what_is_not_a_vmemu_mount(tmp_path):
    plain = str(tmp_path)
    one_line(cli("umount", plain), 1, "not mounted")
    assert cli("status", plain).returncode == 1
    tmpfs = tmp_path / "tmpfs"
    tmpfs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "none", str(tmpfs)], check=True)
    try:
        one_line(cli("umount", str(tmpfs)), 1, "not a vmemu mount")
        st = cli("status", str(tmpfs))
        assert st.returncode == 1 and "state:      foreign" in st.stdout and "not a vmemu mount" in st.stderr
        assert os.path.ismount(tmpfs)
    finally:
        subprocess.run(["umount", str(tmpfs)])


def test_mount_on_a_file_says_not_a_directory(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    one_line(cli("mount", str(f), "--profile", "x86-64"), 1, "not a directory")
    one_line(cli("mount", str(tmp_path / "missing"), "--profile", "x86-64"), 1, "no such directory")


def pgfault(mp) -> int:
    return int(re.search(r"^pgfault (\d+)$", read(mp, "proc/vmstat"), re.M).group(1))


def test_fault_numbers_are_read_as_the_kernel_reads_them(mounted):
    for words, pages in (("pages=010", 8), ("0x10", 16), ("bytes=0x2K", 0), ("bytes=1M rep=02", 512),
                         ("pages=12 threads=0x2", 12), ("bytes=010K", 2)):
        before = pgfault(mounted)
        p = sh(f"echo '{words}' > proc/vmemu/fault", cwd=mounted, shell="bash")
        if pages == 0:                            # 0x2K is 2048 bytes: less than a page
            assert p.returncode == 1 and "Invalid argument" in p.stderr
            continue
        assert p.returncode == 0, (words, p.stderr)
        assert pgfault(mounted) - before == pages, words
    # the sysctls read 010 as octal too
    assert sh("echo 010 > proc/sys/vm/scrub_stop && cat proc/sys/vm/scrub_stop", cwd=mounted).stdout == "8\n"
    sh("echo 2 > proc/sys/vm/scrub_stop", cwd=mounted)


def test_same_size_syntax_in_pft_and_the_fault_file(mounted):
    rows = []
    for size in ("1M", "0x100000", "1024K"):
        p = cli("pft", "-b", size, "--profile", "x86-64", "--kernel", "stock", "--backing", "none", "--format", "csv")
        assert p.returncode == 0, p.stderr
        rows.append(p.stdout.splitlines()[1])
    assert len(set(rows)) == 1 and rows[0].startswith("0,1,1,1,")


@pytest.mark.parametrize("args, words", [
    (["-f", "1,,2"], ["empty item"]), (["-f", ","], ["empty item"]), (["-f", "1,"], ["empty item"]),
    (["--profile", "x86-64", "--bte"], ["x86-64 has no BTE"]),
    (["--prezeroed", "--kernel", "stock"], ["--prezeroed needs --kernel prezero"]),
    (["--scrub-start", "5", "--kernel", "stock"], ["--scrub-start needs --kernel prezero"]),
    (["-g", "1", "-b", "1M"], ["not allowed with"]),
    (["--compare-seed", "-f", "2"], ["takes no -f"]),
    (["-b", "1Q"], ["not a size"]), (["-g", "100"], ["pages per repetition"]),
    (["--scrub-stop", "5 6"], ["one integer only"]),
    (["--plot", "/nonexistent/dir/p.png"], ["--plot"]),
])
def test_pft_conflicts_and_bad_values_are_usage_errors(args, words):
    one_line(cli("pft", *args), 2, "vmemu pft: ", *words)


def test_pft_verbose_says_how_faults_were_served():
    p = cli("pft", "-b", "8M", "-f", "1,2", "--profile", "x86-64", "--backing", "none", "-v")
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 2 and all(l.startswith("pft: x86-64, prezero kernel, ") for l in lines)
    assert "2048 faults, 2048 served zeroed, 0 cleared in the fault" in lines[0]


def test_a_write_at_an_offset_to_fault_runs_the_job(mounted):
    before = pgfault(mounted)
    fd = os.open(os.path.join(mounted, "proc/vmemu/fault"), os.O_WRONLY)
    try:
        assert os.pwrite(fd, b"pages=7\n", 5) == 8
    finally:
        os.close(fd)
    assert pgfault(mounted) - before == 7


# -- 7. the README's session is what one gets ---------------------------------------------

@pytest.mark.slow
def test_readme_session_figures(fresh_mountpoint):
    """The README's session, on the same profile (no host memory: the figures
    do not depend on it), gives the rows and lines the README shows."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    mp = fresh_mountpoint
    assert cli("mount", mp, "--backing", "none", "--speed", "50").returncode == 0
    try:
        steps = [("echo 100000 > proc/vmemu/fault", "cat proc/vmemu/fault"),
                 ("echo 6 > proc/sys/vm/scrub_start", None),
                 ("while grep -qvx sleeping sys/kernel/mm/prezero/scrubd/node*/state; do sleep 0.1; done",
                  "grep -E 'Mem(Free|Zero)' proc/meminfo"),
                 ("echo 'bytes=1G threads=2 rep=3' > proc/vmemu/fault", "cat proc/vmemu/fault")]
        for do, show in steps:
            assert sh(do, cwd=mp, shell="bash").returncode == 0, do
            if show:
                for line in sh(show, cwd=mp).stdout.splitlines():
                    assert line in readme, line
    finally:
        cli("umount", mp)


# -- 8. the small things --------------------------------------------------------------------

def test_version_and_a_quiet_mount_log(mounted):
    p = cli("--version")
    assert p.returncode == 0 and re.fullmatch(r"vmemu \d+\.\d+\.\d+\nmodel: (compiled \(mypyc\)|Python \(.+\))\n", p.stdout)
    log = open(run_files(mounted)["log"]).read()
    assert "Ignoring invalid" not in log and "Traceback" not in log


def test_a_long_sysfs_write_is_cut_at_a_page(mount_profile):
    mp = mount_profile("altix-8", "--backing", "none")
    attr = os.path.join(mp, "sys/kernel/mm/prezero/bte/node0/engine0/error_percent")
    fd = os.open(attr, os.O_WRONLY)
    try:
        # kernfs hands store() the first page only: 4096 ones are beyond 32 bits
        with pytest.raises(OSError) as e:
            os.write(fd, b"1" * (1 << 20))
        assert e.value.errno == 34
        # and a write whose first page parses is a short write of a page
        assert os.write(fd, b"5\0" + b"x" * 10000) == 4096
    finally:
        os.close(fd)
    assert read(mp, "sys/kernel/mm/prezero/bte/node0/engine0/error_percent") == "5\n"


# -- any argv: a usage error or a run, never a traceback ------------------------------------

PFT_WORDS = ["-g", "-b", "-r", "-f", "-c", "-z", "-t", "-v", "-j", "--profile", "--seed", "--kernel", "--scrub-start",
             "--scrub-stop", "--scrub-load", "--prezeroed", "--bte", "--backing", "--format", "--plot",
             "--compare-seed", "x86-64", "altix-8", "stock", "prezero", "none", "real", "csv", "json", "0", "1",
             "2", "010", "0x10", "-1", "1M", "1G", "1T", "1,2", "1,,2", ",", "", "nan", "1e9", "9" * 25]


@pytest.mark.slow
def test_any_pft_argv_is_a_usage_error_or_a_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)               # --plot WORD draws WORD here when matplotlib is installed
    import contextlib
    import io
    from unittest import mock

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from vmemu import pft
    from vmemu.cli import main

    ran = []

    def fake_rows(specs, jobs=None, progress=None):
        ran.append(len(specs))
        return [pft.JobResult(s["job"]["nbytes"], s["job"]["rep"], s["job"]["threads"], s["job"]["cachelines"],
                              1, 1, 1, 1) for s in specs]

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.lists(st.sampled_from(PFT_WORDS), max_size=7))
    def check(argv):
        out, err = io.StringIO(), io.StringIO()
        with mock.patch.object(pft, "run_rows", fake_rows), mock.patch.object(pft, "compare_seed", lambda *a, **k: []), \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(["pft", *argv])
            except SystemExit as e:           # --help
                rc = e.code
        assert rc in (0, 2), (argv, rc, err.getvalue())
        assert "internal error" not in err.getvalue() and "Traceback" not in err.getvalue(), (argv, err.getvalue())
        if rc == 2:
            assert len(err.getvalue().strip().splitlines()) == 1, (argv, err.getvalue())

    check()
    assert ran                                # some of the argvs were runs
