"""fail_page_alloc emulation: lib/fault-inject.c and fs/libfs.c simple_attr."""

import errno
import random
import re

import pytest
from hypothesis import given, settings, strategies as st

from vmemu.fs.debugfs import fail_page_alloc_files
from vmemu.mm.fail_page_alloc import FailPageAlloc
from vmemu.mm.gfp import GFP_HIGHMEM, GFP_NOFAIL, GFP_NOWARN, GFP_WAIT


class CountingRandom(random.Random):
    """A Random that records how often randrange(100) was drawn."""

    def __init__(self, seed=0):
        super().__init__(seed)
        self.draws = 0

    def randrange(self, *args):
        self.draws += 1
        return super().randrange(*args)


def armed(**settings_):
    """A FailPageAlloc that fails every eligible call unless told otherwise."""
    f = FailPageAlloc(rng=CountingRandom(1))
    f.probability = 100
    f.times = -1
    for k, v in settings_.items():
        setattr(f, k, v)
    return f


# -- defaults and files ------------------------------------------------------------

def test_kernel_defaults():
    f = FailPageAlloc()
    assert (f.probability, f.interval, f.times, f.space, f.verbose) == (0, 1, 1, 0, 2)
    assert f.min_order == 1
    assert f.ignore_gfp_wait is True and f.ignore_gfp_highmem is True
    assert f.task_filter is False
    assert (f.calls, f.failures) == (0, 0)


def test_files_names_modes_and_default_contents():
    files = fail_page_alloc_files(FailPageAlloc())
    assert {name: f.show() for name, f in files.items()} == {
        "probability": b"0\n",
        "interval": b"1\n",
        "times": b"1\n",
        "space": b"0\n",
        "verbose": b"2\n",
        "task-filter": b"N\n",
        "ignore-gfp-wait": b"Y\n",
        "ignore-gfp-highmem": b"Y\n",
        "min-order": b"1\n",
    }
    assert all(f.mode == 0o600 for f in files.values())


def test_files_are_views_of_the_live_state():
    f = FailPageAlloc()
    files = fail_page_alloc_files(f)
    files["min-order"].store(b"3\n")
    assert f.min_order == 3
    f.times = -1
    assert files["times"].show() == b"-1\n"
    files["ignore-gfp-wait"].store(b"N")
    assert f.ignore_gfp_wait is False


# -- check order ------------------------------------------------------------------

def test_probability_zero_never_fails_and_draws_nothing():
    f = FailPageAlloc(rng=CountingRandom())
    assert not any(f.should_fail(3) for _ in range(100))
    assert f.rng.draws == 0
    assert (f.calls, f.failures) == (100, 0)


def test_below_min_order_never_fails():
    f = armed()
    assert f.should_fail(0) is False      # min_order 1 by default
    assert f.should_fail(1) is True
    f.min_order = 4
    assert [f.should_fail(o) for o in range(6)] == [False] * 4 + [True] * 2


def test_min_order_filter_spends_nothing():
    f = armed(times=1, space=10, interval=2)
    f.min_order = 5
    f.should_fail(0)
    assert (f.times, f.space, f.count, f.rng.draws) == (1, 10, 0, 0)


@pytest.mark.parametrize("gfp,ignore_wait,ignore_highmem,fails", [
    (0, True, True, True),
    (GFP_WAIT, True, True, False),
    (GFP_WAIT, False, True, True),
    (GFP_HIGHMEM, True, True, False),
    (GFP_HIGHMEM, True, False, True),
    (GFP_WAIT | GFP_HIGHMEM, False, False, True),
    (GFP_NOFAIL, False, False, False),    # never failed
    (GFP_NOWARN, True, True, True),
])
def test_gfp_filters(gfp, ignore_wait, ignore_highmem, fails):
    f = armed(ignore_gfp_wait=ignore_wait, ignore_gfp_highmem=ignore_highmem)
    assert f.should_fail(1, gfp) is fails


def test_times_zero_never_fails():
    f = armed(times=0)
    assert not any(f.should_fail(1) for _ in range(10))
    assert f.rng.draws == 0


def test_probability_100_times_2_fails_exactly_twice():
    f = armed(times=2)
    results = [f.should_fail(1) for _ in range(10)]
    assert results == [True, True] + [False] * 8
    assert f.times == 0
    assert (f.calls, f.failures) == (10, 2)


def test_times_minus_one_is_unlimited():
    f = armed(times=-1)
    assert all(f.should_fail(1) for _ in range(1000))
    assert f.times == -1
    assert f.failures == 1000


def test_other_negative_times_count_down_and_keep_failing():
    f = armed(times=-3)
    assert all(f.should_fail(1) for _ in range(3))
    assert f.times == -6


def test_space_is_consumed_in_pages_before_failing():
    # The page allocator charges 1 << order against space.
    f = armed(space=10)
    assert f.should_fail(1) is False     # 10 > 2: space 8
    assert f.space == 8
    assert f.should_fail(2) is False     # 8 > 4: space 4
    assert f.space == 4
    assert f.should_fail(2) is True      # 4 > 4 is false: go on, fail
    assert f.space == 4                  # not consumed when it does not cover
    assert f.should_fail(1) is False     # 4 > 2 again: space 2
    assert f.space == 2


def test_explicit_size_is_charged_instead():
    f = armed(space=10_000)
    assert f.should_fail(1, 0, 4096) is False
    assert f.space == 10_000 - 4096


def test_space_check_comes_after_times():
    f = armed(times=0, space=10)
    f.should_fail(1)
    assert f.space == 10


def test_interval_fails_only_every_nth_eligible_call():
    f = armed(interval=3)
    assert [f.should_fail(1) for _ in range(9)] == [False, False, True] * 3
    assert f.count == 9


def test_interval_counter_ignores_filtered_calls():
    f = armed(interval=2)
    f.should_fail(0)          # below min-order: not counted
    f.should_fail(1, GFP_WAIT)  # ignored flag: not counted
    assert f.count == 0
    assert [f.should_fail(1) for _ in range(4)] == [False, True, False, True]


def test_interval_one_does_not_count():
    f = armed(interval=1)
    f.should_fail(1)
    assert f.count == 0


def test_random_draw_decides_only_after_interval():
    f = armed(interval=2)
    f.should_fail(1)
    assert f.rng.draws == 0
    f.should_fail(1)
    assert f.rng.draws == 1


@pytest.mark.parametrize("probability", [1, 30, 99])
def test_probability_compares_with_randrange_100(probability):
    f = armed(probability=probability)
    f.rng = random.Random(7)
    mirror = random.Random(7)
    got = [f.should_fail(1) for _ in range(500)]
    want = [mirror.randrange(100) < probability for _ in range(500)]
    assert got == want


def test_same_seed_same_failures():
    def run():
        f = FailPageAlloc(rng=random.Random(42))
        f.probability, f.times = 25, -1
        return [f.should_fail(2) for _ in range(200)]
    assert run() == run()
    assert 20 < sum(run()) < 80


def test_task_filter_fails_only_flagged_tasks():
    f = armed(task_filter=True)
    assert f.should_fail(1) is False
    assert f.should_fail(1, make_it_fail=True) is True


def test_failure_message_respects_verbose_and_nowarn():
    log = []
    f = armed(times=5)
    f.printk = log.append
    f.should_fail(1)
    assert len(log) == 1 and "forcing a failure" in log[0] and "times 5" in log[0]
    f.should_fail(1, GFP_NOWARN)
    f.verbose = 0
    f.should_fail(1)
    assert len(log) == 1


# -- numeric files ---------------------------------------------------------------

def write(name, data, **state):
    """Write to one file of a fresh instance; return (result, value read back)."""
    f = FailPageAlloc()
    for k, v in state.items():
        setattr(f, k, v)
    file = fail_page_alloc_files(f)[name]
    try:
        r = file.store(data)
    except OSError as e:
        r = errno.errorcode[e.errno]
    return r, file.show()


@pytest.mark.parametrize("data,ret,readback", [
    (b"50", 2, b"50\n"),
    (b"50\n", 3, b"50\n"),
    (b"+50", 3, b"50\n"),
    (b"0x10", 4, b"16\n"),
    (b"0X1f\n", 5, b"31\n"),
    (b"010", 3, b"8\n"),
    (b"0", 1, b"0\n"),
    (b"18446744073709551615", 20, b"18446744073709551615\n"),
    (b"18446744073709551616", "ERANGE", b"0\n"),
    (b"99999999999999999999999", "ERANGE", b"0\n"),
    (b"0xfffffffffffffffff", "ERANGE", b"0\n"),
    (b"", "EINVAL", b"0\n"),
    (b"\n", "EINVAL", b"0\n"),
    (b"abc", "EINVAL", b"0\n"),
    (b" 5", "EINVAL", b"0\n"),          # no leading whitespace
    (b"5 ", "EINVAL", b"0\n"),
    (b"5\n\n", "EINVAL", b"0\n"),       # one newline only
    (b"5\r\n", "EINVAL", b"0\n"),
    (b"++5", "EINVAL", b"0\n"),
    (b"-1", "EINVAL", b"0\n"),          # unsigned file
    (b"-0", "EINVAL", b"0\n"),
    (b"5.0", "EINVAL", b"0\n"),
    (b"08", "EINVAL", b"0\n"),
    (b"0x", "EINVAL", b"0\n"),
    (b"5\0garbage", 9, b"5\n"),         # the kernel's C string ends at NUL
    (b"0" * 23 + b"5", 24, b"0\n"),     # only the first 23 bytes are read
    (b"1" + b"0" * 22 + b"x", "ERANGE", b"0\n"),
])
def test_probability_parsing(data, ret, readback):
    assert write("probability", data) == (ret, readback)


@pytest.mark.parametrize("data,ret,readback", [
    (b"-1", 2, b"-1\n"),
    (b"-1\n", 3, b"-1\n"),
    (b"+7", 2, b"7\n"),
    (b"-0x10", 5, b"-16\n"),
    (b"-0", 2, b"0\n"),
    (b"4294967295", 10, b"-1\n"),        # atomic_t keeps the low 32 bits
    (b"2147483648", 10, b"-2147483648\n"),
    (b"4294967296", 10, b"0\n"),
    (b"9223372036854775807", 19, b"-1\n"),
    (b"9223372036854775808", "ERANGE", b"1\n"),
    (b"-9223372036854775808", 20, b"0\n"),
    (b"-9223372036854775809", "ERANGE", b"1\n"),
    (b"-+1", "EINVAL", b"1\n"),
    (b"+-1", "EINVAL", b"1\n"),
    (b"--1", "EINVAL", b"1\n"),
    (b"- 1", "EINVAL", b"1\n"),
    (b"x", "EINVAL", b"1\n"),
])
def test_times_parsing_is_signed(data, ret, readback):
    assert write("times", data) == (ret, readback)


def test_space_is_signed_too():
    assert write("space", b"-5\n") == (3, b"-5\n")
    assert write("space", b"4096") == (4, b"4096\n")


@pytest.mark.parametrize("data,ret,readback", [
    (b"3", 1, b"3\n"),
    (b"4294967295", 10, b"4294967295\n"),
    (b"4294967296", 10, b"0\n"),         # u32 keeps the low 32 bits
    (b"-1", "EINVAL", b"1\n"),
])
def test_min_order_is_u32(data, ret, readback):
    assert write("min-order", data) == (ret, readback)


@pytest.mark.parametrize("name", ["interval", "verbose"])
def test_other_unsigned_files(name):
    assert write(name, b"7\n") == (2, b"7\n")
    assert write(name, b"-7")[0] == "EINVAL"


def test_error_leaves_value_and_names_the_file():
    f = FailPageAlloc()
    f.probability = 42
    with pytest.raises(OSError) as ei:
        fail_page_alloc_files(f)["probability"].store(b"lots")
    assert ei.value.errno == errno.EINVAL
    assert "probability" in ei.value.strerror
    assert f.probability == 42


# -- bool files -------------------------------------------------------------------

@pytest.mark.parametrize("data,value", [
    (b"Y", True), (b"y", True), (b"1", True), (b"Y\n", True), (b"yes", True),
    (b"t", True), (b"T", True), (b"true", True), (b"on", True), (b"ON", True),
    (b"On\n", True), (b"1234", True),
    (b"N", False), (b"n", False), (b"0", False), (b"N\n", False), (b"no", False),
    (b"f", False), (b"false", False), (b"off", False), (b"OFF", False),
    (b"of", False), (b"nonsense", False),
])
def test_bool_accepted(data, value):
    for start in (True, False):
        f = FailPageAlloc()
        f.task_filter = start
        file = fail_page_alloc_files(f)["task-filter"]
        assert file.store(data) == len(data)
        assert f.task_filter is value
        assert file.show() == (b"Y\n" if value else b"N\n")


@pytest.mark.parametrize("data", [
    b"", b"\n", b"o", b"o\n", b"ox", b"2", b"-1", b" Y", b"\0Y",
    b"enable", b"x" * 100,
])
def test_bool_other_input_silently_ignored(data):
    for start in (True, False):
        f = FailPageAlloc()
        f.ignore_gfp_highmem = start
        assert fail_page_alloc_files(f)["ignore-gfp-highmem"].store(data) == len(data)
        assert f.ignore_gfp_highmem is start


def test_bool_looks_at_three_bytes_only():
    f = FailPageAlloc()
    file = fail_page_alloc_files(f)["ignore-gfp-wait"]
    file.store(b"\0\0\0Y")       # the Y is past the 3-byte buffer
    assert f.ignore_gfp_wait is True
    file.store(b"oN")
    assert f.ignore_gfp_wait is True
    file.store(b"oF")
    assert f.ignore_gfp_wait is False


# -- property: unsigned parsing agrees with an independent oracle ----------------

U64_NUMBER = re.compile(
    rb"\+?"                                       # one optional plus
    rb"(?:0[xX](?=[0-9a-fA-F])([0-9a-fA-F]+)"     # hex needs a digit after 0x
    rb"|(0[0-7]*)"                                # leading 0: octal
    rb"|([1-9][0-9]*))"                           # decimal
    rb"(.*)",                                     # whatever follows
    re.S,
)


def oracle_u64(data):
    """kstrtoull base 0 on what simple_attr_write sees: errno name or value."""
    s = data[:23].split(b"\0", 1)[0]
    m = U64_NUMBER.fullmatch(s)
    if m is None:
        return "EINVAL"
    hex_, octal, decimal, rest = m.groups()
    if hex_ is not None:
        v = int(hex_, 16)
    elif octal is not None:
        v = int(octal, 8)
    else:
        v = int(decimal, 10)
    if v > 2**64 - 1:
        return "ERANGE"      # overflow wins over trailing garbage
    return v if rest in (b"", b"\n") else "EINVAL"


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(
    [b"0", b"1", b"7", b"8", b"9", b"a", b"F", b"x", b"+", b"-", b"\n", b" ",
     b"\0", b"99999999999", b"ffffffff"]), max_size=8).map(b"".join))
@pytest.mark.slow
def test_unsigned_write_matches_oracle(data):
    f = FailPageAlloc()
    f.probability = 5
    want = oracle_u64(data)
    try:
        n = fail_page_alloc_files(f)["probability"].store(data)
    except OSError as e:
        assert errno.errorcode[e.errno] == want
        assert f.probability == 5
        return
    assert n == len(data)
    assert f.probability == want
