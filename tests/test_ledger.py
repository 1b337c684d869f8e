"""The ledger: every emulated CPU nanosecond attributed (sum = CPUs x
elapsed), folded stacks that add up to it, who pays for background zeroing
(--charge), the timeline; proc/vmemu/ledger and prezero/charge through the
mount, driven with sh and cat."""

import pytest

from conftest import cli, mounting, one_line, read, sh
from vmemu import pft
from vmemu.kernel import ledger
from vmemu.kernel.ledger import IDLE

MiB = 1 << 20
CASES = [("altix-8", "stock", 1), ("altix-8", "prezero", 1), ("altix-8", "prezero", 8),
         ("altix-8", "stock", 8), ("x86-64", "prezero", 2)]


def job(profile, kernel, threads, nbytes=64 * MiB, rep=1, charge="kthread", bte=False, timeline_ns=None):
    spec = {"machine": dict(profile=profile, kernel=kernel, backing="none", charge=charge, bte=bte),
            "job": dict(nbytes=nbytes, threads=threads, rep=rep), "timeline_ns": timeline_ns}
    return pft.run_row(spec)


def cpu_time(m) -> int:
    return sum(c.user_ns + c.system_ns for c in m.cpus)


@pytest.mark.parametrize("profile,kernel,threads", CASES)
def test_every_cpu_nanosecond_of_a_job_is_accounted(profile, kernel, threads):
    m = pft.prepare_machine(profile, kernel=kernel, backing="none")
    try:
        busy0, mark = cpu_time(m), ledger.open_window(m)
        r = pft.run_job(m, 64 * MiB, threads)
        w = ledger.close_window(m, mark)
        busy = cpu_time(m) - busy0
    finally:
        m.close()
    assert w.elapsed >= r.wall_ns > 0
    assert w.by_cpu() == {c: w.elapsed for c in range(len(m.cpus))}        # sum = CPUs x elapsed
    assert all(ns >= 0 for ns in w.cpu.values())
    assert sum(w.cpu.values()) == len(m.cpus) * w.elapsed
    # what is not idle is exactly the CPUs' user + system time in the window
    assert sum(ns for (_c, task, _a), ns in w.cpu.items() if task != IDLE) == busy
    # the task's own entries are its row's user + system time
    assert w.by_task()["pft"] == r.user_ns + r.system_ns
    assert {a for (_c, t, a) in w.cpu if t == "pft"} >= {"do_page_fault", "user:touch", "zap_pte_range"}
    if kernel == "stock":
        assert not any(t.startswith("kscrubd") for t in w.by_task())
        assert set(w.bus_by_user()) == {"task"}          # every clear in the fault path
    assert (w.bus_by_user().get("task", 0) > 0) == (r.cleared > 0)


def test_since_boot_the_ledger_holds_every_cpu_nanosecond():
    m = pft.prepare_machine("altix-8", kernel="prezero", backing="none", bte=True)
    try:
        pft.run_job(m, 64 * MiB, 4)
        m.run_until_idle()
        w = ledger.since_boot(m)
        assert w.start == 0 and set(w.by_cpu().values()) == {w.elapsed}
        assert sum(ns for (_c, t, _a), ns in w.cpu.items() if t != IDLE) == cpu_time(m)
        # the buses' busy time split by user adds up to their totals; the BTE engines' too
        assert sum(w.bus.values()) == sum(b.busy_ns for b in m.buses)
        assert w.bus_by_user().get("bte", 0) > 0
        assert sum(w.bte.values()) == sum(e.busy_ns for es in m.bte.engines for e in es) > 0
    finally:
        m.close()


def parse_folded(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        stack, ns = line.rsplit(" ", 1)
        assert stack not in out
        out[stack] = int(ns)
    return out


def test_folded_stacks_total_the_ledger(tmp_path):
    out = tmp_path / "job.folded"
    p = cli("pft", "-b", "64M", "-f", "1,8", "--profile", "altix-8", "--backing", "none", "--ledger",
            "--folded", str(out))
    assert p.returncode == 0, p.stderr
    r = pft.run_rows([{"machine": dict(profile="altix-8", backing="none"), "job": dict(nbytes=64 * MiB, threads=8)}])[0]
    stacks = parse_folded((tmp_path / "job-f8.folded").read_text())
    assert sum(stacks.values()) == sum(r.ledger.cpu.values()) == 8 * r.ledger.elapsed
    for cpu in range(8):
        assert sum(ns for s, ns in stacks.items() if s.startswith(f"cpu{cpu};")) == r.ledger.elapsed
    assert stacks == {(f"cpu{c};{t};{a}" if t != IDLE else f"cpu{c};{IDLE}"): ns
                      for (c, t, a), ns in r.ledger.cpu.items() if ns}
    one = parse_folded((tmp_path / "job-f1.folded").read_text())
    assert all(s.count(";") in (1, 2) for s in one) and sum(one.values()) % 8 == 0
    assert "machine CPU time per fault" in p.stdout and p.stdout.count("ledger, ") == 2


def test_charge_task_lowers_flt_cpu_s_by_exactly_the_zeroing_it_charges():
    kthread = job("altix-8", "prezero", 1, 256 * MiB, rep=2)
    task = job("altix-8", "prezero", 1, 256 * MiB, rep=2, charge="task")
    assert kthread.charged_ns == 0 and task.charged_ns > 0
    assert task.served_zeroed == kthread.served_zeroed > 0
    assert (task.user_ns, task.wall_ns) == (kthread.user_ns, kthread.wall_ns)
    assert task.system_ns == kthread.system_ns + task.charged_ns
    assert task.flt_cpu_s == pytest.approx(task.pages * 1e9 / (kthread.user_ns + kthread.system_ns
                                                               + task.charged_ns), rel=1e-12)
    assert task.flt_cpu_s < kthread.flt_cpu_s
    assert task.fault_wsec == kthread.fault_wsec
    # the stock kernel has no background zeroing to charge
    assert job("altix-8", "stock", 1, charge="task").charged_ns == 0


def test_the_charge_is_kscrubds_time_for_the_pages_taken():
    """Taking every page kscrubd zeroed charges all of kscrubd's CPU time, no more."""
    m = pft.prepare_machine("x86-64", kernel="prezero", backing="none", charge="task")
    try:
        spent = m.scrub.totals()["cpu_ns"]
        zeroed = m.scrub.pages_zeroed()
        assert spent > 0 and zeroed > 0
        r = pft.run_job(m, zeroed * m.page_size // 2, 1)
        assert 0 < r.charged_ns <= spent
        assert r.charged_ns == pytest.approx(spent * r.served_zeroed / zeroed, rel=0.01)
    finally:
        m.close()


@pytest.mark.slow
def test_the_timeline_drains_and_refills():
    """-r 3 prezero: zeroed memory runs out during a repetition and kscrubd
    refills it between repetitions."""
    r = job("altix-8", "prezero", 1, 1 << 30, rep=3, timeline_ns=10_000_000)
    zeroed = [s["node0_zeroed_kb"] for s in r.samples]
    assert len(r.samples) >= 50 and zeroed[0] > 0
    empty = zeroed.index(0)
    assert max(zeroed[empty:]) > 0                        # refilled after it ran dry
    assert r.samples[-1]["faults"] == r.pages and [s["faults"] for s in r.samples] == \
        sorted(s["faults"] for s in r.samples)
    assert {s["node0_kscrubd"] for s in r.samples} >= {"running", "sleeping"}
    assert all(0 <= s[f"cpu{c}_busy"] <= 1 for s in r.samples for c in range(8))


@pytest.mark.slow
def test_timeline_csv_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    csv, png = tmp_path / "t.csv", tmp_path / "p.png"
    p = cli("pft", "-b", "128M", "-r", "2", "--profile", "x86-64", "--backing", "none",
            "--timeline", str(csv), "--timeline-interval", "5", "--plot", str(png))
    assert p.returncode == 0, p.stderr
    lines = csv.read_text().splitlines()
    assert lines[0].startswith("threads,t_ms,faults,node0_zeroed_kb,node0_not_zeroed_kb,node0_kscrubd")
    times = [float(line.split(",")[1]) for line in lines[1:]]
    assert times[:3] == [0.0, 5.0, 10.0] or all(b > a for a, b in zip(times, times[1:]))
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args,words", [
    (["--timeline-interval", "5"], ["--timeline-interval goes with --timeline"]),
    (["--timeline", "/nonexistent/dir/t.csv"], ["--timeline /nonexistent/dir/t.csv"]),
    (["--folded", "/nonexistent/dir/f"], ["--folded /nonexistent/dir/f"]),
    (["--timeline", "t.csv", "--timeline-interval", "0"], ["--timeline-interval"]),
    (["--charge", "nobody"], ["--charge", "'nobody'"]),
])
def test_bad_ledger_options_are_usage_errors(tmp_path, args, words):
    one_line(cli("pft", "-b", "8M", "--profile", "x86-64", *args, cwd=tmp_path), 2, *words)
    assert list(tmp_path.iterdir()) == []


# -- through the mount ---------------------------------------------------------------


def table(mp) -> list[tuple[str, str, str, int]]:
    lines = read(mp, "proc/vmemu/ledger").splitlines()
    assert lines[0].split() == ["resource", "user", "activity", "ns"]
    return [(r, u, a, int(ns)) for r, u, a, ns in (line.split() for line in lines[1:])]


def test_proc_vmemu_ledger_and_the_charge_file():
    with mounting("x86-64", "--backing", "none", "--speed", "max") as mp:
        before = table(mp)
        cpus = {r for r, *_ in before if r.startswith("cpu")}
        assert cpus == {"cpu0", "cpu1"}
        assert sh("echo 'bytes=32M threads=2' > proc/vmemu/fault", cwd=mp).returncode == 0
        rows = table(mp)
        per_cpu = {c: sum(ns for r, _u, _a, ns in rows if r == c) for c in cpus}
        assert len(set(per_cpu.values())) == 1                       # every CPU: the same elapsed
        assert sum(ns for r, u, a, ns in rows if u == "pft") > 0
        assert any(r == "bus0" and u == "task" for r, u, _a, _ns in rows)
        assert sh("cat proc/vmemu/ledger | awk 'NR > 1 && $2 == \"idle\"' | wc -l", cwd=mp).stdout.strip() == "2"
        # who pays: a sysfs choice, the kernel's [selected] format, EINVAL leaves it
        charge = "sys/kernel/mm/prezero/charge"
        assert read(mp, charge) == "[kthread] task\n"
        assert sh(f"echo task > {charge}", cwd=mp).returncode == 0
        assert read(mp, charge) == "kthread [task]\n"
        bad = sh(f"echo nobody > {charge}", cwd=mp, shell="bash")
        assert bad.returncode != 0 and "Invalid argument" in bad.stderr
        assert read(mp, charge) == "kthread [task]\n"
        assert sh(f"echo kthread > {charge}", cwd=mp).returncode == 0


def test_the_ledger_file_is_read_only():
    with mounting("x86-64", "--backing", "none") as mp:
        p = sh("echo 1 > proc/vmemu/ledger", cwd=mp, shell="bash")
        # as for root's write to the kernel's /proc/meminfo: the open succeeds, the write is EIO
        assert p.returncode != 0 and "Input/output error" in p.stderr
        assert table(mp)[0][0] == "cpu0"
