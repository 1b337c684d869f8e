"""proc/vmemu/fault (pft jobs through the mount) and debugfs fail_page_alloc."""

import os
import re
import time

import pytest

from conftest import read, sh

TITLE = " Gb Rep Threads   User      System     Wall flt/cpu/s fault/wsec"
ROW = re.compile(r"^ *(\d+) *(\d+) *(\d+) *(\d+)\.(\d{3})s *(\d+)\.(\d{3})s *(\d+)\.(\d{3})s *([\d.]+) +([\d.]+)$")
FPA = "sys/kernel/debug/fail_page_alloc"
TOTAL_PAGES = 2 << 18


def vmstat(mp):
    return {k: int(v) for k, v in (l.split() for l in read(mp, "proc/vmstat").splitlines())}


def memfree(mp):
    return int(re.search(r"MemFree: +(\d+) kB", read(mp, "proc/meminfo")).group(1))


def pcp_pages(mp):
    return sum(int(x) for x in re.findall(r"count: +(\d+)", read(mp, "proc/zoneinfo")))


def fault(mp, words, shell="bash"):
    return sh(f"echo '{words}' > proc/vmemu/fault", cwd=mp, shell=shell)


def last_row(mp):
    title, row = read(mp, "proc/vmemu/fault").splitlines()
    assert title == TITLE
    m = ROW.match(row)
    assert m, row
    return [int(x) for x in m.groups()[:3]]


def test_echo_n_faults_n_pages(mounted):
    before = vmstat(mounted)["pgfault"]
    p = fault(mounted, "1000")
    assert p.returncode == 0, p.stderr
    assert last_row(mounted) == [0, 1, 1]
    assert vmstat(mounted)["pgfault"] - before == 1000
    out = sh("cat proc/vmemu/fault", cwd=mounted).stdout.splitlines()
    assert out[0] == TITLE and len(out) == 2


def test_key_value_words(mounted):
    before = vmstat(mounted)["pgfault"]
    assert fault(mounted, "pages=600 threads=2 rep=2 cachelines=4").returncode == 0
    assert last_row(mounted) == [0, 2, 2]
    assert vmstat(mounted)["pgfault"] - before == 1200
    before += 1200
    assert fault(mounted, "bytes=4M").returncode == 0
    assert vmstat(mounted)["pgfault"] - before == 1024
    assert fault(mounted, "bytes=64K rep=3").returncode == 0
    assert vmstat(mounted)["pgfault"] - before == 1024 + 48


@pytest.mark.slow
def test_gb_column(mounted):
    assert fault(mounted, "bytes=1G threads=2").returncode == 0
    assert last_row(mounted) == [1, 1, 2]


@pytest.mark.parametrize("words", ["foo", "pages=abc", "pages=1 pages=2", "pages=10 bytes=4K", "threads=2",
                                   "pages=10 threads=3", "pages=0", "-5", "pages=10 cachelines=1000",
                                   "pages=10K", "bytes=1X", "bytes=4GB", "pages=10 rep=0", f"pages=1000 rep={64 * TOTAL_PAGES}",
                                   "pages=5 nice=1"])
def test_bad_words_einval(mounted, words):
    before = read(mounted, "proc/vmemu/fault")
    p = fault(mounted, words)
    assert p.returncode == 1 and "Invalid argument" in p.stderr, (words, p.stderr)
    assert read(mounted, "proc/vmemu/fault") == before


@pytest.mark.parametrize("words", [f"pages=1 rep={8 * TOTAL_PAGES}", "pages=1 rep=33554432", "bytes=1G rep=17",
                                   "pages=1 rep=99999999999999999999", "pages=1 rep=1" + "0" * 30,
                                   "pages=10 threads=4294967297", "pages=10 threads=99999999999999999999",
                                   "pages=10 threads=" + "9" * 5000, "9" * 5000])
def test_huge_rep_or_threads_is_einval_at_once(mounted, words):
    # A job holds the machine while it runs: one that would run for minutes is refused.
    t0 = time.monotonic()
    p = fault(mounted, words)
    # beyond 64 bits, kstrtoull's ERANGE; otherwise too much work for one
    # job, EINVAL.  bash writes more than 4096 bytes in two write()s and
    # reports the second one's error (EINVAL: a lone newline is no job).
    assert p.returncode == 1, (words[:40], p.stderr)
    expect = ["Invalid argument"] if len(words) > 4096 else \
        ["Numerical result out of range"] if "9999999999999999" in words or len(words) > 30 else ["Invalid argument"]
    assert any(e in p.stderr for e in expect), (words[:40], p.stderr)
    assert time.monotonic() - t0 < 5
    assert fault(mounted, "1").returncode == 0


@pytest.mark.parametrize("words", [f"pages={TOTAL_PAGES + 1}", "bytes=1T", "bytes=0x80000001K"])
def test_more_than_the_machine_has_is_enomem(mounted, words):
    free, pcp = memfree(mounted), pcp_pages(mounted)
    p = fault(mounted, words)
    assert p.returncode == 1 and "Cannot allocate memory" in p.stderr
    assert (memfree(mounted), pcp_pages(mounted)) == (free, pcp)


@pytest.mark.slow
def test_real_oom_frees_everything(mounted):
    # All of memory: the job runs until the allocator fails at the watermark,
    # then the task exits and every page comes back.
    free, pcp = memfree(mounted), pcp_pages(mounted)
    p = fault(mounted, "bytes=2G threads=2")
    assert p.returncode == 1 and "Cannot allocate memory" in p.stderr
    assert vmstat(mounted)["prezero_alloc_fail"] >= 1
    # Pages freed at exit go through the per-CPU lists, which MemFree does not count.
    assert memfree(mounted) // 4 + pcp_pages(mounted) == free // 4 + pcp
    assert abs(memfree(mounted) - free) <= 4 * 2 * 2 * 3 * 6 * 15     # at most every per-CPU list full


@pytest.fixture
def fpa(mounted):
    d = os.path.join(mounted, FPA)
    yield d
    for name, v in (("probability", "0"), ("times", "1"), ("min-order", "1"), ("ignore-gfp-wait", "Y"),
                    ("ignore-gfp-highmem", "Y"), ("interval", "1"), ("space", "0")):
        with open(os.path.join(d, name), "w") as f:
            f.write(v + "\n")


def test_fail_page_alloc_files(mounted, fpa):
    assert sorted(os.listdir(fpa)) == sorted(["probability", "interval", "times", "space", "verbose",
                                              "task-filter", "ignore-gfp-wait", "ignore-gfp-highmem",
                                              "min-order"])
    assert read(mounted, f"{FPA}/probability") == "0\n" and read(mounted, f"{FPA}/times") == "1\n"
    assert read(mounted, f"{FPA}/ignore-gfp-wait") == "Y\n"
    p = sh("echo abc > probability", cwd=fpa, shell="bash")
    assert p.returncode == 1 and "Invalid argument" in p.stderr
    p = sh("echo 99999999999999999999999 > probability", cwd=fpa, shell="bash")
    assert p.returncode == 1 and "Numerical result out of range" in p.stderr
    assert sh("echo 0x10 > probability && echo nonsense > task-filter", cwd=fpa).returncode == 0
    assert read(mounted, f"{FPA}/probability") == "16\n" and read(mounted, f"{FPA}/task-filter") == "N\n"


def test_fail_page_alloc_makes_a_job_fail(mounted, fpa):
    assert sh("echo 100 > probability; echo -1 > times", cwd=fpa).returncode == 0
    assert read(mounted, f"{FPA}/times") == "-1\n"
    # The kernel's defaults still spare this job: an anonymous fault is an order-0
    # GFP_HIGHUSER allocation, below min-order 1 and with __GFP_WAIT and __GFP_HIGHMEM.
    assert fault(mounted, "1000").returncode == 0
    assert sh("echo 0 > min-order; echo N > ignore-gfp-wait; echo N > ignore-gfp-highmem",
              cwd=fpa).returncode == 0
    free, pcp = memfree(mounted), pcp_pages(mounted)
    injected = vmstat(mounted)["prezero_alloc_injected_fail"]
    p = fault(mounted, "1000")
    assert p.returncode == 1 and "Cannot allocate memory" in p.stderr
    assert vmstat(mounted)["prezero_alloc_injected_fail"] > injected
    assert memfree(mounted) // 4 + pcp_pages(mounted) == free // 4 + pcp
    # Reset: probability 0 turns it off.
    assert sh("echo 0 > probability", cwd=fpa).returncode == 0
    assert fault(mounted, "1000").returncode == 0
