"""vmemu sweep: the spec checked as pft checks its options, one row per point
in the grid's order, the same here and on a real Dask cluster (a scheduler
and workers started here, one of them killed mid-sweep), failures, Ctrl-C,
--resume, plots."""

import csv
import io
import json
import math
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from conftest import wait_for
from vmemu.sweep.spec import cell, load_spec

VMEMU = [sys.executable, "-m", "vmemu.cli"]
DASK = [sys.executable, "-m", "dask"]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# 8 tiny points (a few ms each): the grid's order, engines, formats
TINY = """
profile = "x86-64"
backing = "none"
bytes = ["8M", "0x1000000"]
threads = [1, 2]
kernel = ["stock", "prezero"]
"""
# 8 points of about a second each: long enough to kill a worker amid one
LONG = """
profile = "x86-64"
backing = "none"
bytes = "256M"
threads = 2
rep = [3, 4]
seed = [1, 2, 3, 4]
"""


def sweep(*args, check=True, timeout=300):
    p = subprocess.run([*VMEMU, "sweep", *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def spec(tmp_path, text, name="spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- the spec ------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ('thread = [1, 2]', "unknown key 'thread' (did you mean threads?)"),
    ('threads = []', "threads: an empty axis"),
    ('profile = "x86-64"\nthreads = [1, 4]', "point 2 (threads=4): threads=4: x86-64 has 2 CPUs"),
    ('bytes = ["64M", "-5"]', "bytes: '-5': not a size"),
    ('threads = "1e3"', "threads: '1e3': trailing garbage after number; expected a count"),
    ('threads = "1,2"', "threads: '1,2': one value a point; an axis is a list: threads = [1, 2]"),
    ('seed = -1', "seed: '-1': "),
    ('rep = 1.5', "rep: 1.5: expected a string or an integer"),
    ('kernel = ["stock", "bsd"]', "kernel: 'bsd': expected one of 'stock', 'prezero'"),
    ('prezeroed = 1', "prezeroed: 1: expected true or false"),
    ('profile = "nope"', "profile: unknown profile"),
    ('gigabytes = 1\nbytes = "1G"', "gigabytes and bytes: give one of them"),
    ('kernel = ["prezero", "stock"]\nscrub_stop = 3',
     'point 2 (kernel=stock): scrub_stop needs kernel = "prezero"'),
    ('profile = "x86-64"\nbte = true', "bte: x86-64 has no BTE"),
    ('scrub_start = "1 2"', "scrub_start: '1 2': one integer only"),
    ('threads = [1]\n[zip]\nthreads = [2]', "zip.threads: threads is set at the top too"),
    ('[zip]\nthreads = [1, 2]\nrep = [1]', "zip: its lists move together and need one length, not threads 2, rep 1"),
    ('[zip]\nrep = 2', "zip.rep: a list of values"),
    ('threads = [', "not TOML"),
])
def test_bad_specs_are_one_line_before_anything_runs(tmp_path, text, message):
    out = tmp_path / "out.csv"
    p = sweep(spec(tmp_path, text), "--out", out, check=False)
    assert p.returncode == 2 and message in p.stderr, p.stderr
    assert p.stderr.startswith("vmemu sweep: ") and len(p.stderr.splitlines()) == 1, p.stderr
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--resume"], "--resume needs --out FILE"),
    (["--out", "x.txt"], "--out x.txt: the name ends in .csv or .json"),
    (["--out", "/nonexistent/x.csv"], "no such directory"),
    (["--scheduler", "tcp://nohost"], "expected a scheduler's address"),
    (["--scheduler", "tcp://127.0.0.1:1", "-j", "2"], "-j sets the processes on this host"),
    (["--plot", "p.png"], "a line plot takes one axis and a heat map two; "),
])
def test_bad_options_are_usage_errors(tmp_path, args, message):
    p = sweep(spec(tmp_path, TINY), *args, check=False)
    assert p.returncode == 2 and message in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr


SPEC_KEYS = ["profile", "kernel", "gigabytes", "bytes", "rep", "threads", "cachelines", "scrub_start", "scrub_stop",
             "scrub_load", "prezeroed", "bte", "backing", "seed", "zero", "format", "thread", "zip"]
SPEC_VALUES = ['"x86-64"', '"altix-8"', '"stock"', '"prezero"', '"none"', '"1M"', '"0x10"', '"010"', '"-1"', '""',
               '"1,2"', "0", "1", "2", "-3", "1.5", "true", "false", "[]", "[1, 2]", "[0, 1]", '["1M", "2M"]',
               '["stock", "prezero"]', "[true]", "{}"]


def test_any_spec_is_a_usage_error_or_a_grid(tmp_path):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from vmemu.cli import UsageError

    path, outcomes = tmp_path / "any.toml", set()

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.dictionaries(st.sampled_from(SPEC_KEYS), st.sampled_from(SPEC_VALUES), max_size=3),
           st.just({}) | st.dictionaries(st.sampled_from(SPEC_KEYS), st.sampled_from(SPEC_VALUES), max_size=2))
    def check(top, zipped):
        lines = [f"{k} = {v}" for k, v in top.items() if k != "zip"]
        lines += ["[zip]"] + [f"{k} = {v}" for k, v in zipped.items()] if zipped else []
        path.write_text("\n".join(lines) + "\n")
        try:
            s = load_spec(str(path))
        except UsageError as e:
            assert str(e).startswith(f"vmemu sweep: {path}") and "\n" not in str(e), str(e)
            outcomes.add("refused")
        else:
            assert len(s.points) == (math.prod(s.shape) if s.shape else 1)
            outcomes.add("grid" if s.shape else "point")

    check()
    assert outcomes == {"refused", "grid", "point"}


def test_numbers_read_as_the_kernel_reads_them(tmp_path):
    s = load_spec(str(spec(tmp_path, 'bytes = ["0x100000", "1M", 1048576]\nthreads = "0x2"\nseed = "010"\n'
                                       'scrub_load = "-1"\nrep = 0x3')))
    jobs = [p.row["job"] for p in s.points]
    assert [j["nbytes"] for j in jobs] == [1 << 20] * 3 and {j["threads"] for j in jobs} == {2}
    assert {j["rep"] for j in jobs} == {3}
    machine = s.points[0].row["machine"]
    assert machine["seed"] == 8 and machine["scrub"] == {"scrub_load": -1}


def test_grid_order_first_axis_slowest_zip_moves_together(tmp_path):
    s = load_spec(str(spec(tmp_path, 'profile = "x86-64"\nkernel = ["stock", "prezero"]\nrep = [1, 2]\n'
                                       '[zip]\nthreads = [1, 2]\ncachelines = [4, 8]\n')))
    assert s.axes == [["kernel"], ["rep"], ["threads", "cachelines"]] and s.shape == [2, 2, 2]
    got = [(p.values["kernel"], p.values["rep"], p.values["threads"], p.values["cachelines"]) for p in s.points]
    assert got == [(k, r, t, c) for k in ("stock", "prezero") for r in (1, 2) for t, c in ((1, 4), (2, 8))]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_examples_are_valid_specs(path):
    s = load_spec(str(path))
    assert len(s.points) > 1 and len(s.axes) in (1, 2)


# -- here: rows, failures, Ctrl-C, --resume ----------------------------------------------

def test_rows_in_grid_order_whatever_the_number_of_processes(tmp_path):
    path = spec(tmp_path, TINY)
    one = sweep(path, "-j", "1").stdout
    assert sweep(path, "-j", "3").stdout == one
    rows = list(csv.reader(io.StringIO(one)))
    assert rows[0] == ["profile", "backing", "bytes", "kernel", "gb", "rep", "threads", "cachelines",
                       "user_s", "system_s", "wall_s", "flt_cpu_s", "fault_wsec"]
    assert [(r[2], r[6], r[3]) for r in rows[1:]] == [(b, t, k) for b in ("8M", "0x1000000") for t in "12"
                                                      for k in ("stock", "prezero")]
    # each row is the row vmemu pft gives for those options
    pft = subprocess.run([*VMEMU, "pft", "--profile", "x86-64", "--backing", "none", "-b", "0x1000000", "-f", "2",
                          "--kernel", "stock", "--format", "csv"], capture_output=True, text=True, check=True)
    assert ",".join(rows[7][4:]) == pft.stdout.splitlines()[1]


@pytest.mark.slow
def test_json_holds_the_same_rows(tmp_path):
    path, out = spec(tmp_path, TINY), tmp_path / "out.json"
    sweep(path, "--out", out, "-j", "2")
    items = json.loads(out.read_text())
    rows = list(csv.DictReader(io.StringIO(sweep(path, "-j", "1").stdout)))
    assert len(items) == len(rows) == 8
    for item, row in zip(items, rows):
        assert list(item) == list(row)
        assert [cell(item[k]) for k in ("profile", "backing", "bytes", "kernel")] == [
            row[k] for k in ("profile", "backing", "bytes", "kernel")]
        assert all(item[k] == float(row[k]) for k in list(row)[4:])


def test_a_failed_point_is_reported_and_the_rest_go_on(tmp_path):
    # 2G on x86-64 passes pft's check, then runs out of memory in its worker
    path, out = spec(tmp_path, 'profile = "x86-64"\nbacking = "none"\nbytes = ["2G", "16M"]\n'), tmp_path / "o.csv"
    p = sweep(path, "--out", out, "-j", "1", check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("vmemu sweep: point 1 (profile=x86-64, backing=none, bytes=2G) "
                                                   "failed: out of memory"), p.stderr
    assert lines[1] == f"vmemu: sweep: 1 of 2 points failed; 1 of 2 points in {out}"
    assert [r[2] for r in csv.reader(out.open())] == ["bytes", "16M"]


def test_resume_runs_only_the_points_not_in_the_file(tmp_path):
    path, out = spec(tmp_path, TINY), tmp_path / "out.csv"
    sweep(path, "--out", out)
    full = out.read_text()
    lines = full.splitlines()
    # rows 3 and 6 gone; row 1 marked: a point run again would lose the mark
    marked = lines[1].rsplit(",", 1)[0] + ",1.000"
    out.write_text("\n".join([lines[0], marked, lines[2], lines[4], lines[5], lines[7], lines[8]]) + "\n")
    sweep(path, "--out", out, "--resume")
    assert out.read_text() == full.replace(lines[1], marked)
    out.write_text(full + "other,none,8M,stock,0,1,1,1,0.001,0.002,0.003,4.000,5.000\n")
    p = sweep(path, "--out", out, "--resume", check=False)
    assert p.returncode == 2 and "row 9 (other,none,8M," in p.stderr and "no point of" in p.stderr


def test_resume_a_json_file(tmp_path):
    path, out = spec(tmp_path, TINY), tmp_path / "out.json"
    sweep(path, "--out", out, "-j", "2")
    full = out.read_text()
    items = json.loads(full)
    items[0]["fault_wsec"] = 1.0                 # kept, not run again
    out.write_text(json.dumps(items[:3] + items[5:], indent=1) + "\n")
    sweep(path, "--out", out, "--resume")
    assert json.loads(out.read_text()) == items and out.read_text() == json.dumps(items, indent=1) + "\n"


def test_ctrl_c_stops_the_workers_and_keeps_the_file(tmp_path):
    # points far too long to end by themselves; Ctrl-C once both workers run
    path, out = spec(tmp_path, 'backing = "none"\ngigabytes = 4\nrep = 1000\nthreads = [1, 2]\n'), tmp_path / "o.csv"
    proc = subprocess.Popen([*VMEMU, "sweep", str(path), "--out", str(out), "-j", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        workers = wait_for(lambda: _busy_children(proc.pid, 2), timeout=60)
        os.killpg(proc.pid, signal.SIGINT)         # Ctrl-C: the whole process group
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err == f"vmemu: interrupted: 0 of 2 points in {out} (--resume runs the rest)\n"
    wait_for(lambda: not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers), timeout=30)
    assert out.read_text().splitlines() == ["backing,gigabytes,gb,rep,threads,cachelines,user_s,system_s,wall_s,"
                                            "flt_cpu_s,fault_wsec"]


def _busy_children(pid: int, n: int) -> list | None:
    """The children of pid once n of them have run a little (or None)."""
    try:
        children = psutil.Process(pid).children()
        busy = [c for c in children if sum(c.cpu_times()[:2]) > 0.05]
    except psutil.NoSuchProcess:
        return None
    return children if len(busy) >= n else None


def test_progress_bar_on_a_terminal_only(tmp_path):
    path = spec(tmp_path, TINY)
    master, slave = pty.openpty()
    try:
        p = subprocess.run([*VMEMU, "sweep", str(path), "-j", "1"], stdout=subprocess.PIPE, stderr=slave,
                           timeout=120)
        os.close(slave)
        drawn = _read_all(master)
    finally:
        os.close(master)
    assert p.returncode == 0 and "8/8" in drawn and "points" in drawn, drawn
    assert p.stdout.decode() == sweep(path, "-j", "1").stdout      # the bar is on stderr alone


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:                 # EIO: the other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def test_plain_counter_says_points_and_time_left():
    from vmemu.sweep.progress import Counter, progress_bar
    stream, now = io.StringIO(), [0.0]
    with Counter(stream, total=10, done=4, clock=lambda: now[0]) as counter:
        now[0] = 30.0
        counter.advance()
        counter.advance(failed=True)
        counter.note("vmemu sweep: point 3 failed")
    text = stream.getvalue()
    assert "sweep: 4/10 points, ? left" in text and "vmemu sweep: point 3 failed\n" in text
    assert text.endswith("sweep: 6/10 points, 1 failed, 0:01:00 left\n")
    assert type(progress_bar(io.StringIO(), 3)).__name__ == "Quiet"


# -- plots ------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("text", ['threads = [1, 2]', 'threads = [1, 2]\n[zip]\nbytes = ["8M", "16M"]\nrep = [1, 2]'],
                         ids=["line", "heat-map"])
def test_plot_one_axis_lines_two_axes_heat_map(tmp_path, text):
    png = tmp_path / "p.png"
    p = sweep(spec(tmp_path, 'profile = "x86-64"\nbacking = "none"\n' + text), "--plot", png, check=False)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert p.returncode == 2 and "needs matplotlib" in p.stderr and not png.exists()
    else:
        assert p.returncode == 0 and png.read_bytes()[:4] == b"\x89PNG", p.stderr


# -- a Dask cluster: a real scheduler and workers, here ------------------------------------

class Cluster:
    def __init__(self, folder: Path):
        self.folder, self.procs, self.client = folder, [], None
        scheduler_file = folder / "scheduler.json"
        self.start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                   "--scheduler-file", str(scheduler_file))
        self.address = wait_for(lambda: _address(scheduler_file), timeout=60)
        from distributed import Client
        self.client = Client(self.address, timeout=30, set_as_default=False)

    def start(self, *args) -> subprocess.Popen:
        log = open(self.folder / f"{args[0]}-{len(self.procs)}.log", "w")
        proc = subprocess.Popen([*DASK, *args], stdout=log, stderr=log, cwd=self.folder)
        self.procs.append(proc)
        return proc

    def add_worker(self, name: str) -> subprocess.Popen:
        """A worker of one thread, in one process (no nanny: killing it loses it)."""
        proc = self.start("worker", self.address, "--name", name, "--nthreads", "1", "--no-nanny",
                          "--no-dashboard", "--local-directory", str(self.folder))
        wait_for(lambda: self.worker_address(name), timeout=60)
        return proc

    def worker_address(self, name: str) -> str | None:
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        return next((addr for addr, w in workers.items() if w.get("name") == name), None)

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        for proc in reversed(self.procs):
            proc.kill()
            proc.wait(timeout=30)


def _address(scheduler_file: Path) -> str | None:
    try:
        return json.loads(scheduler_file.read_text())["address"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        c.add_worker("w1")
        c.add_worker("w2")
        yield c
    finally:
        c.stop()


@pytest.mark.slow
def test_same_rows_here_and_on_the_cluster(tmp_path, cluster):
    path = spec(tmp_path, TINY)
    here = sweep(path, "-j", "2")
    there = sweep(path, "--scheduler", cluster.address)
    assert there.stdout == here.stdout and len(there.stdout.splitlines()) == 9
    assert there.stderr == ""                       # nothing of dask's on the user's terminal
    out = tmp_path / "out.json"
    sweep(path, "--scheduler", cluster.address, "--out", out)
    sweep(path, "-j", "1", "--out", tmp_path / "here.json")
    assert out.read_bytes() == (tmp_path / "here.json").read_bytes()


@pytest.mark.slow
def test_a_worker_killed_mid_sweep_still_gives_every_row(tmp_path, cluster):
    path = spec(tmp_path, LONG)
    here = sweep(path, "-j", "2").stdout
    doomed = cluster.add_worker("doomed")
    address = cluster.worker_address("doomed")
    proc = subprocess.Popen([*VMEMU, "sweep", str(path), "--scheduler", cluster.address],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: cluster.client.processing([address]).get(address), timeout=60)
        doomed.kill()                               # SIGKILL amid a point: the scheduler loses the worker
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and err == "", err
    assert out == here
    assert cluster.worker_address("doomed") is None


@pytest.mark.slow
def test_ctrl_c_on_the_cluster_is_one_line(tmp_path, cluster):
    path = spec(tmp_path, LONG)
    proc = subprocess.Popen([*VMEMU, "sweep", str(path), "--scheduler", cluster.address],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: any(cluster.client.processing().values()), timeout=60)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130 and out == "", err
    assert err.startswith("vmemu: interrupted: ") and len(err.splitlines()) == 1, err
    # the points not begun are cancelled: the cluster forgets them all
    wait_for(lambda: not any(cluster.client.processing().values()), timeout=60)


@pytest.mark.slow
def test_no_scheduler_there_is_one_line(tmp_path):
    p = sweep(spec(tmp_path, TINY), "--scheduler", "tcp://127.0.0.1:9", check=False, timeout=60)
    assert p.returncode == 1 and p.stderr == ("vmemu: --scheduler tcp://127.0.0.1:9: no scheduler answered "
                                              "in 10 s\n"), p.stderr
