"""sys/kernel/mm/prezero/ through the mount: scrubd, zero drivers and BTE
controls and statistics (docs/interfaces.md), driven with sh -c like a user."""

import os
import re
import shutil
import stat

import pytest

from conftest import mounting, read, sh, wait_for

P = "sys/kernel/mm/prezero"
ALTIX = ("altix-8", "--backing", "none", "--speed", "20")   # 40 s BTE timeout = 2 s wall
ALTIX_NODES, ALTIX_ENGINES, ALTIX_ORDERS = 4, 2, 18
CONTROLS = {"policy", "charge", "enabled", "error_percent", "error_code", "hang_percent", "inject_errors",
            "inject_hangs"}
ENGINE = f"{P}/bte/node0/engine0"


@pytest.fixture(scope="module")
def altix():
    """A shared altix-8 mount for tests that leave the state as they found it."""
    with mounting(*ALTIX) as mp:
        yield mp


def echo(mp, value, path):
    return sh(f"echo '{value}' > {path}", cwd=mp, shell="bash")


def num(mp, path) -> int:
    return int(read(mp, path))


def total(mp, stat_name, kind="scrubd") -> int:
    """A per-node scrubd stat or per-engine BTE stat summed over the machine."""
    if kind == "scrubd":
        return sum(num(mp, f"{P}/scrubd/node{n}/{stat_name}") for n in range(ALTIX_NODES))
    return sum(num(mp, f"{P}/bte/node{n}/engine{i}/{stat_name}")
               for n in range(ALTIX_NODES) for i in range(ALTIX_ENGINES))


def engine_errors(mp, code: str) -> int:
    out = 0
    for n in range(ALTIX_NODES):
        for i in range(ALTIX_ENGINES):
            rows = dict(l.split() for l in read(mp, f"{P}/bte/node{n}/engine{i}/errors").splitlines())
            out += int(rows[code])
    return out


def blocks(mp, node: int) -> dict[str, list[int]]:
    return {r.split()[0]: [int(c) for c in r.split()[1:]]
            for r in read(mp, f"{P}/scrubd/node{node}/blocks_zeroed").splitlines()}


def vmstat(mp) -> dict[str, int]:
    return {k: int(v) for k, v in (l.split(" ") for l in read(mp, "proc/vmstat").splitlines())}


def idle(mp) -> bool:
    """Every kscrubd asleep with no block in flight (Scrub.busy() is false)."""
    return all(read(mp, f"{P}/scrubd/node{n}/state") == "sleeping\n" and
               num(mp, f"{P}/scrubd/node{n}/blocks_inflight") == 0 for n in range(ALTIX_NODES))


def zero_all_then_fault(mp, pages: int = 1024):
    """Have scrubd zero all memory (boot blocks are too big for the BTE: the
    CPU does them), then fault and free `pages`: their NOT_ZEROED blocks of
    orders 2..8 are the ones the BTE takes.  Waits until scrubd is done."""
    assert echo(mp, 6, "proc/sys/vm/scrub_start").returncode == 0
    wait_for(lambda: idle(mp))
    assert echo(mp, pages, "proc/vmemu/fault").returncode == 0     # returns when the job is done
    assert echo(mp, 6, "proc/sys/vm/scrub_start").returncode == 0  # wakes every node
    wait_for(lambda: idle(mp))


def walk_files(mp):
    for root, _, names in os.walk(os.path.join(mp, P)):
        for name in names:
            yield os.path.relpath(os.path.join(root, name), mp)


# -- layout, modes, formats -------------------------------------------------------------

def test_x86_tree_has_no_bte(mounted):
    assert sorted(os.listdir(os.path.join(mounted, P))) == ["charge", "policy", "scrubd", "zero_drivers"]
    assert os.listdir(os.path.join(mounted, P, "scrubd")) == ["node0"]
    assert read(mounted, f"{P}/zero_drivers") == "cpu enabled\n"
    v = vmstat(mounted)
    assert "scrubd_wakeups" in v and "scrubd_cpu_ns" in v
    assert not [k for k in v if k.startswith("bte_")]
    # The CPU fallback cannot be disabled: there is no file for it.
    p = sh(f"echo 0 > {P}/drivers/cpu/enabled", cwd=mounted, shell="bash")
    assert p.returncode == 1 and "No such file or directory" in p.stderr


def test_altix_tree(altix):
    assert sorted(os.listdir(os.path.join(altix, P))) == ["bte", "charge", "drivers", "policy", "scrubd",
                                                        "zero_drivers"]
    assert sorted(os.listdir(os.path.join(altix, P, "bte"))) == \
        ["node0", "node1", "node2", "node3", "notavail", "refused"]
    assert sorted(os.listdir(os.path.join(altix, ENGINE))) == sorted(
        ["busy", "hung", "transfers", "completed", "bytes", "busy_ms", "timeouts", "retries", "errors",
         "error_percent", "error_code", "hang_percent", "inject_errors", "inject_hangs"])
    assert sorted(os.listdir(os.path.join(altix, P, "scrubd/node3"))) == sorted(
        ["state", "wakeups", "runs", "passes", "load_gate_refusals", "load_waits", "redone_blocks",
         "blocks_inflight", "cpu_ms", "blocks_zeroed", "pages_zeroed"])
    assert os.listdir(os.path.join(altix, P, "drivers")) == ["bte"]
    assert read(altix, f"{P}/zero_drivers") == "bte enabled\ncpu enabled\n"   # try order, CPU last


def test_modes_sizes_owner(altix):
    paths = list(walk_files(altix))
    assert len(paths) == 4 + ALTIX_NODES * 11 + 2 + ALTIX_NODES * ALTIX_ENGINES * 14
    for path in paths:
        s = os.stat(os.path.join(altix, path))
        assert stat.S_ISREG(s.st_mode) and s.st_uid == 0 and s.st_gid == 0, path
        assert s.st_size == 4096, path
        want = 0o644 if os.path.basename(path) in CONTROLS else 0o444
        assert stat.S_IMODE(s.st_mode) == want, path
    for root, dirs, _ in os.walk(os.path.join(altix, P)):
        for d in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(root, d)).st_mode) == 0o555


def test_every_file_whole_in_one_read(altix):
    for path in walk_files(altix):
        fd = os.open(os.path.join(altix, path), os.O_RDONLY)
        try:
            first = os.read(fd, 8191)
            assert os.read(fd, 8191) == b""
        finally:
            os.close(fd)
        assert first.endswith(b"\n") and b"\n\n" not in first and not first.startswith(b"\n"), path


def test_line_formats(altix):
    one_value = re.compile(r"\d+\n|sleeping\n|running\n|waiting_cpu\n|waiting_load\n")
    for path in walk_files(altix):
        name = os.path.basename(path)
        text = read(altix, path)
        if name == "blocks_zeroed":
            rows = text.splitlines()
            assert [r.split()[0] for r in rows] == ["bte", "cpu"]
            assert all(re.fullmatch(r"\w+( +\d+){%d}" % ALTIX_ORDERS, r) for r in rows), text
            assert len({len(r.split()) for r in rows}) == 1 and len({len(r) for r in rows}) == 1
        elif name == "errors":
            rows = text.splitlines()
            assert [r.split()[0] for r in rows] == ["BTEFAIL_DIR", "BTEFAIL_POISON", "BTEFAIL_WERR",
                                                    "BTEFAIL_ACCESS", "BTEFAIL_PWERR", "BTEFAIL_PRERR",
                                                    "BTEFAIL_TOUT", "BTEFAIL_XTERR"]
            assert all(re.fullmatch(r"BTEFAIL_[A-Z]+ \d+", r) for r in rows)
        elif name == "zero_drivers":
            assert all(re.fullmatch(r"\w+ (enabled|disabled)", r) for r in text.splitlines())
        elif name == "policy":
            assert text == "[order] percentage\n"
        elif name == "charge":
            assert text == "[kthread] task\n"
        elif name == "error_code":
            assert text == ("BTEFAIL_DIR [BTEFAIL_POISON] BTEFAIL_WERR BTEFAIL_ACCESS BTEFAIL_PWERR "
                            "BTEFAIL_PRERR BTEFAIL_TOUT BTEFAIL_XTERR\n")
        else:
            assert one_value.fullmatch(text), (path, text)
    for line in read(altix, "proc/vmstat").splitlines():
        assert re.fullmatch(r"[a-z0-9_]+ \d+", line), line


# -- writes: good values, bad values -------------------------------------------------------

BAD = [
    (f"{P}/policy", ["Order", "orderx", "", "order percentage", " order", "[order]"]),
    (f"{P}/charge", ["Task", "tasks", "", "kthread task", "[kthread]"]),
    (f"{P}/drivers/bte/enabled", ["2", "abc", "", "-1"]),
    (f"{ENGINE}/error_percent", ["101", "-1", "abc", "5 ", "1.5", "0x", " 5"]),
    (f"{ENGINE}/hang_percent", ["101", "-1", "x"]),
    (f"{ENGINE}/error_code", ["0", "9", "BTE_SUCCESS", "BTEFAIL_NOTAVAIL", "btefail_poison",
                              "POISON", "2x", ""]),
    (f"{ENGINE}/inject_errors", ["-1", "x", "1 2", ""]),
    (f"{ENGINE}/inject_hangs", ["-5", "1e3"]),
]


@pytest.mark.parametrize("path, bad", [(p, b) for p, values in BAD for b in values])
def test_bad_value_is_einval_and_changes_nothing(altix, path, bad):
    before = read(altix, path)
    p = echo(altix, bad, path)
    assert p.returncode == 1 and "write error: Invalid argument" in p.stderr, p.stderr
    assert read(altix, path) == before


@pytest.mark.parametrize("path", [f"{ENGINE}/error_percent", f"{ENGINE}/inject_errors"])
def test_overflow_is_erange(altix, path):
    before = read(altix, path)
    p = echo(altix, "99999999999999999999999", path)
    assert p.returncode == 1 and "Numerical result out of range" in p.stderr
    p = echo(altix, "4294967296", path)           # beyond kstrtouint's 32 bits
    assert p.returncode == 1 and "Numerical result out of range" in p.stderr
    assert read(altix, path) == before


def test_read_only_stat_refuses_writes(altix):
    p = echo(altix, 5, f"{ENGINE}/transfers")
    assert p.returncode == 1 and "Permission denied" in p.stderr
    assert read(altix, f"{ENGINE}/transfers") == "0\n"


@pytest.mark.parametrize("path, written, shown, default", [
    (f"{ENGINE}/error_percent", "100", "100\n", "0"),
    (f"{ENGINE}/error_percent", "+7", "7\n", "0"),
    (f"{ENGINE}/hang_percent", "0x10", "16\n", "0"),
    (f"{ENGINE}/inject_errors", "010", "8\n", "0"),               # kstrto*: base 0, octal
    (f"{ENGINE}/inject_hangs", "4294967295", "4294967295\n", "0"),
    (f"{ENGINE}/error_code", "3", "[BTEFAIL_WERR]", "2"),
    (f"{ENGINE}/error_code", "BTEFAIL_XTERR", "[BTEFAIL_XTERR]", "BTEFAIL_POISON"),
    (f"{P}/drivers/bte/enabled", "0", "0\n", "1"),
    (f"{P}/drivers/bte/enabled", "n", "0\n", "y"),
    (f"{P}/policy", "percentage", "order [percentage]\n", "order"),
])
def test_good_values_with_and_without_newline(altix, path, written, shown, default):
    for cmd in (f"echo {written} > {path}", f"printf %s {written} > {path}"):
        p = sh(cmd, cwd=altix, shell="bash")
        assert p.returncode == 0, p.stderr
        assert shown in read(altix, path)
        assert echo(altix, default, path).returncode == 0
    assert shown not in read(altix, path)


def test_disabled_driver_shows_in_zero_drivers(altix):
    assert echo(altix, 0, f"{P}/drivers/bte/enabled").returncode == 0
    try:
        assert read(altix, f"{P}/zero_drivers") == "bte disabled\ncpu enabled\n"
    finally:
        echo(altix, 1, f"{P}/drivers/bte/enabled")
    assert read(altix, f"{P}/zero_drivers") == "bte enabled\ncpu enabled\n"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root and runuser")
def test_nobody_reads_stats_but_cannot_write_controls(mounted):
    path = f"{mounted}/{P}/policy"
    p = sh(f"runuser -u nobody -- sh -c 'echo percentage > {path}'")
    assert p.returncode != 0 and "Permission denied" in p.stderr
    p = sh(f"runuser -u nobody -- cat {path} {mounted}/{P}/scrubd/node0/wakeups")
    assert p.returncode == 0 and p.stdout.startswith("[order] percentage\n")


# -- effects on the machine -------------------------------------------------------------

def test_policy_switch_changes_what_scrubd_does(mount_profile):
    mp = mount_profile(*ALTIX)
    assert echo(mp, "percentage", f"{P}/policy").returncode == 0
    assert read(mp, f"{P}/policy") == "order [percentage]\n"
    # V8: the write wakes every node, but no order has 512 times as many
    # NOT_ZEROED blocks as ZEROED ones (scrub_stop 2 / 1024): nothing to zero.
    assert echo(mp, 6, "proc/sys/vm/scrub_start").returncode == 0
    wait_for(lambda: idle(mp))
    assert total(mp, "wakeups") == ALTIX_NODES and total(mp, "runs") == ALTIX_NODES
    assert total(mp, "passes") == 0 and total(mp, "pages_zeroed") == 0
    # The seed's order policy: the same write zeroes every boot block.
    assert echo(mp, "order", f"{P}/policy").returncode == 0
    assert echo(mp, 6, "proc/sys/vm/scrub_start").returncode == 0
    wait_for(lambda: idle(mp))
    assert total(mp, "wakeups") == 2 * ALTIX_NODES and total(mp, "passes") > 0
    pages = total(mp, "pages_zeroed")
    assert pages > 0 and pages == sum(c << o for n in range(ALTIX_NODES)
                                      for o, c in enumerate(blocks(mp, n)["cpu"]))
    v = vmstat(mp)
    assert v["scrubd_wakeups"] == 2 * ALTIX_NODES and v["scrubd_passes"] == total(mp, "passes")
    assert v["nr_zero_pages"] >= pages


def test_disabled_bte_leaves_all_zeroing_to_the_cpu(mount_profile):
    mp = mount_profile(*ALTIX)
    assert echo(mp, 0, f"{P}/drivers/bte/enabled").returncode == 0
    zero_all_then_fault(mp)
    assert all(not any(blocks(mp, n)["bte"]) for n in range(ALTIX_NODES))
    assert sum(blocks(mp, 0)["cpu"][2:9]) > 0             # BTE-sized blocks, cleared by the CPU
    assert total(mp, "transfers", "bte") == 0
    assert num(mp, f"{P}/bte/refused") == 0 and num(mp, f"{P}/bte/notavail") == 0  # never asked
    # Enabled again, the next round of BTE-sized blocks goes to the engines.
    assert echo(mp, 1, f"{P}/drivers/bte/enabled").returncode == 0
    zero_all_then_fault(mp)
    assert sum(blocks(mp, 0)["bte"]) > 0
    assert total(mp, "completed", "bte") == sum(sum(blocks(mp, n)["bte"]) for n in range(ALTIX_NODES))


def test_injected_errors_show_in_error_counters(mount_profile):
    mp = mount_profile(*ALTIX)
    engines = [f"{P}/bte/node{n}/engine{i}" for n in range(ALTIX_NODES) for i in range(ALTIX_ENGINES)]
    for e in engines:
        assert echo(mp, 2, f"{e}/inject_errors").returncode == 0
        assert echo(mp, "BTEFAIL_WERR", f"{e}/error_code").returncode == 0
    zero_all_then_fault(mp)
    used = sum(2 - num(mp, f"{e}/inject_errors") for e in engines)     # the count goes down as used
    assert used > 0
    assert engine_errors(mp, "BTEFAIL_WERR") == used
    assert engine_errors(mp, "BTEFAIL_POISON") == 0
    assert total(mp, "redone_blocks") == used                          # cleared on the CPU instead
    v = vmstat(mp)
    assert v["bte_errors_btefail_werr"] == used and v["scrubd_redone_blocks"] == used
    assert v["bte_transfers"] == total(mp, "transfers", "bte")
    # A percentage with a numeric code: every transfer of these engines fails.
    for e in engines:
        assert echo(mp, 0, f"{e}/inject_errors").returncode == 0       # drop what is left
        assert echo(mp, 100, f"{e}/error_percent").returncode == 0
        assert echo(mp, 6, f"{e}/error_code").returncode == 0
    before = total(mp, "transfers", "bte")
    zero_all_then_fault(mp)
    failed = engine_errors(mp, "BTEFAIL_PRERR")
    assert failed > 0 and failed == total(mp, "transfers", "bte") - before
    assert engine_errors(mp, "BTEFAIL_WERR") == used
    assert total(mp, "redone_blocks") == used + failed


@pytest.mark.slow
def test_injected_hang_times_out_and_is_retried(mount_profile):
    mp = mount_profile(*ALTIX)
    engines = [f"{P}/bte/node0/engine{i}" for i in range(ALTIX_ENGINES)]
    assert echo(mp, 6, "proc/sys/vm/scrub_start").returncode == 0
    wait_for(lambda: idle(mp))
    for e in engines:
        assert echo(mp, 1, f"{e}/inject_hangs").returncode == 0
    assert echo(mp, 1024, "proc/vmemu/fault").returncode == 0
    assert echo(mp, 6, "proc/sys/vm/scrub_start").returncode == 0
    # The next transfer hangs: the engine stays busy until bte_copy's 40 s timeout.
    wait_for(lambda: any(read(mp, f"{e}/hung") == "1\n" for e in engines), timeout=10)
    assert any(read(mp, f"{e}/busy") == "1\n" for e in engines)
    wait_for(lambda: idle(mp), timeout=30)
    hung = [e for e in engines if read(mp, f"{e}/inject_hangs") == "0\n"]
    assert hung
    for e in engines:
        expect = 1 if e in hung else 0
        assert num(mp, f"{e}/timeouts") == expect and num(mp, f"{e}/retries") == expect
        rows = dict(l.split() for l in read(mp, f"{e}/errors").splitlines())
        assert int(rows["BTEFAIL_TOUT"]) == expect
        assert read(mp, f"{e}/hung") == "0\n" and read(mp, f"{e}/busy") == "0\n"
    # The retried transfers completed: their blocks count as zeroed by the BTE.
    assert sum(num(mp, f"{e}/completed") for e in hung) >= len(hung)
    assert sum(blocks(mp, 0)["bte"]) == sum(num(mp, f"{e}/completed") for e in engines)
    assert vmstat(mp)["bte_timeouts"] == len(hung)
