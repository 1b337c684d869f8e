"""vmemu pft: options, formats, determinism, and the same row through the mount."""

import json
import re
import subprocess
import sys

import pytest

from conftest import mounting, read, sh
from vmemu import pft

VMEMU = [sys.executable, "-m", "vmemu.cli"]
ROW_2004 = re.compile(r"^ {0,2}\d+ {0,2}\d+ {0,3}\d+ {0,3}\d+\.\d{3}s {0,6}\d+\.\d{3}s {0,3}\d+\.\d{3}s"
                      r" {0,9}\d+\.\d{3} {1,10}\d+\.\d{3}$")


def run(*args, check=True):
    p = subprocess.run([*VMEMU, "pft", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert p.returncode == 0, p.stderr
    return p


@pytest.mark.parametrize("args, message", [
    (["-g", "0"], "size must be a positive integer"),
    (["-b", "-5"], "'-5': not a size"),
    (["-r", "0"], "rep must be a positive integer"),
    (["-f", "0"], "threads must be a positive integer"),
    (["-f", "9", "--profile", "x86-64"], "x86-64 has 2 CPUs"),
    (["-f", "1,2,16"], "altix-8 has 8 CPUs"),
    (["--profile", "nope"], "unknown profile"),
    (["-c", "129"], "has 128 cache lines"),
    (["-f", "x"], "'x': not a number"),
    (["-j", "0"], "'0' is not a positive count"),
])
def test_bad_options_are_usage_errors(args, message):
    p = run(*args, check=False)
    assert p.returncode == 2 and message in p.stderr and p.stderr.startswith("vmemu pft: "), p.stderr
    assert len(p.stderr.splitlines()) == 1


@pytest.mark.slow
def test_2004_rows_one_per_thread_count():
    out = run("-b", str(64 << 20), "-r", "2", "-f", "1,2", "--profile", "x86-64", "-t").stdout.splitlines()
    assert out[0] == pft.TITLE_2004
    assert len(out) == 3 and all(ROW_2004.match(line) for line in out[1:]), out
    assert [int(line.split()[2]) for line in out[1:]] == [1, 2]


@pytest.mark.slow
def test_csv_and_json_formats():
    csv = run("-b", str(32 << 20), "-f", "1", "-f", "2", "--profile", "x86-64", "--format", "csv").stdout
    lines = csv.splitlines()
    assert lines[0] == "gb,rep,threads,cachelines,user_s,system_s,wall_s,flt_cpu_s,fault_wsec"
    assert len(lines) == 3 and all(len(line.split(",")) == 9 for line in lines[1:])
    rows = json.loads(run("-b", str(32 << 20), "-f", "2", "--profile", "x86-64", "--format", "json").stdout)
    assert rows[0]["threads"] == 2 and rows[0]["pages"] == 8192 and rows[0]["fault_wsec"] > 0


@pytest.mark.slow
def test_same_seed_same_table_different_kernel_differs():
    args = ("-b", str(48 << 20), "-r", "2", "-f", "1,2", "--profile", "x86-64", "--backing", "none")
    assert run(*args).stdout == run(*args).stdout
    assert run(*args, "--kernel", "stock").stdout != run(*args).stdout


def test_prezeroed_is_faster_than_stock():
    def wsec(*extra):
        r = json.loads(run("-b", str(256 << 20), "--profile", "altix-8", "--backing", "none",
                           "--format", "json", *extra).stdout)[0]
        return r["fault_wsec"]
    assert wsec("--prezeroed") > 4 * wsec("--kernel", "stock")


def test_cache_lines_cost_more_on_prezeroed_pages():
    """Lines of a page cleared by this CPU are in its cache; prezeroed ones are not."""
    m = pft.prepare_machine("altix-8", kernel="stock", backing="none")
    hot = pft.run_job(m, 64 << 20, cachelines=64)
    m = pft.prepare_machine("altix-8", kernel="stock", prezeroed=True, backing="none")
    cold = pft.run_job(m, 64 << 20, cachelines=64)
    assert cold.user_ns > 5 * hot.user_ns


def test_mount_fault_trigger_gives_the_same_row_as_vmemu_pft():
    with mounting("x86-64", "--seed", "3") as mp:
        r = sh(f"echo 'bytes=64M threads=2 rep=2' > {mp}/proc/vmemu/fault")
        assert r.returncode == 0, r.stderr
        row_mount = read(mp, "proc/vmemu/fault").splitlines()[1]
    out = run("-b", str(64 << 20), "-f", "2", "-r", "2", "--kernel", "stock", "--profile", "x86-64",
              "--seed", "3").stdout.splitlines()
    assert row_mount == out[0]


@pytest.mark.slow
def test_plot_needs_matplotlib_or_writes_png(tmp_path):
    png = tmp_path / "p.png"
    p = run("-b", str(16 << 20), "-f", "1,2", "--profile", "x86-64", "--plot", str(png), check=False)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert p.returncode == 2 and "needs matplotlib" in p.stderr and not png.exists()
    else:
        assert p.returncode == 0 and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_rows_in_parallel_processes_are_the_rows_run_one_by_one():
    args = ("-b", str(32 << 20), "-r", "2", "-f", "1,2,4,8", "--kernel", "prezero", "--format", "csv")
    one_by_one = run(*args, "-j", "1").stdout
    assert len(one_by_one.splitlines()) == 5
    assert run(*args, "-j", "3").stdout == one_by_one


def test_a_row_that_fails_in_a_worker_is_reported():
    # x86-64 has 2 GiB: a 2 GiB task passes the check, then runs out of
    # memory at the watermarks in its worker process
    p = run("-g", "2", "-f", "1,2", "--profile", "x86-64", "--backing", "none", "-j", "2", check=False)
    assert p.returncode == 1 and "pft: out of memory" in p.stderr, p.stderr
    assert len(p.stderr.splitlines()) == 1 and "Traceback" not in p.stderr


def test_progress_only_on_a_terminal():
    import io
    progress = pft.Progress(io.StringIO())
    progress.start -= 10
    progress.tick(4096)
    assert not progress.enabled and progress.stream.getvalue() == ""
