"""proc_dointvec emulation: the write/read rules of vmemu/fs/sysctl.py.

Expected results marked "6.18" were observed on a real kernel by writing to
net.ipv4.igmp_max_memberships (plain proc_dointvec) and net.ipv4.tcp_rmem
(a proc_dointvec_minmax vector) in a private network namespace.
"""

import errno
import re

import pytest
from hypothesis import given, settings, strategies as st

from vmemu.fs.sysctl import INT_MAX, INT_MIN, IntSysctl

START = 20
EINVAL = "EINVAL"
EINVAL_PAIR = (EINVAL, START)


def do_write(data, offset=0, start=START, **kw):
    """Write to a fresh int sysctl; return (result, value after)."""
    s = IntSysctl("scrub_start", start, **kw)
    try:
        r = s.write(data, offset)
    except OSError as e:
        assert e.errno == errno.EINVAL   # parsing never yields another errno
        assert s.value == start          # and never changes the value
        return EINVAL, s.value
    return r, s.value


# (data, expected return, expected value)
WRITES = [
    (b"", 0, START),                      # empty write: nothing happens
    (b"5", 1, 5),
    (b"5\n", 2, 5),
    (b"5 6\n", 2, 5),                     # one int: stops after "5 "
    (b"5\n\n\n  ", 6, 5),                 # trailing blanks all consumed
    (b"5 \v6", 3, 5),                     # \v counts as blank after the value
    (b"\n\t 7", 4, 7),                    # leading whitespace skipped
    (b"\v5", 2, 5),
    (b"\r5", 2, 5),
    (b"\f5", 2, 5),
    (b"\xa07", 2, 7),                     # 6.18: Latin-1 no-break space
    (b"010", 3, 8),                       # octal
    (b"007", 3, 7),
    (b"0x20", 4, 32),                     # hex
    (b"0X1f", 4, 31),
    (b"-0x10", 5, -16),
    (b"0", 1, 0),
    (b"-0", 2, 0),
    (b"-5\n", 3, -5),
    (b"2147483647", 10, INT_MAX),
    (b"-2147483648", 11, INT_MIN),
    (b"2147483648", EINVAL, START),       # INT_MAX + 1
    (b"-2147483649", EINVAL, START),      # INT_MIN - 1
    (b"4294967296", EINVAL, START),
    (b"99999999999999999999", EINVAL, START),   # beyond unsigned long
    (b"+5", EINVAL, START),
    (b"50abc", EINVAL, START),
    (b"5.5", EINVAL, START),
    (b"50\r\n", EINVAL, START),
    (b"50\0", EINVAL, START),
    (b"5\v", EINVAL, START),
    (b"7\xa0", EINVAL, START),
    (b"5,6", EINVAL, START),              # a comma is not a separator
    (b"   ", EINVAL, START),              # whitespace only
    (b"\n", EINVAL, START),
    (b"-", EINVAL, START),
    (b"--5", EINVAL, START),
    (b"- 5", EINVAL, START),
    (b"abc", EINVAL, START),
    (b"\0" + b"5", EINVAL, START),
    (b"08", EINVAL, START),               # parses "0", then '8' is garbage
    (b"0x", EINVAL, START),               # no hex digit: octal "0", then 'x'
    (b"0xg", EINVAL, START),
    # the 21-character limit counts everything the number spans
    (b"0" * 20, 20, 0),                   # 20 characters: fine
    (b"0" * 20 + b"\n", 21, 0),
    (b"0" * 19 + b"5", 20, 5),
    (b"0" * 18 + b"12", 20, 10),          # octal 12
    (b"0" * 21, EINVAL, START),           # 21 characters
    (b"0" * 21 + b"\n", EINVAL, START),
    (b"0" * 30, EINVAL, START),
    (b"-" + b"0" * 18 + b"7", 20, -7),    # the sign counts: 20 characters
    (b"-" + b"0" * 19 + b"7", EINVAL, START),   # 21 characters
    (b"-" + b"0" * 20, EINVAL, START),
    (b"0x" + b"0" * 19, EINVAL, START),
]


@pytest.mark.parametrize("data,ret,value", WRITES)
def test_write_table(data, ret, value):
    assert do_write(data) == (ret, value)


def test_error_message_names_the_sysctl_and_the_problem():
    s = IntSysctl("scrub_start", 1)
    with pytest.raises(OSError) as ei:
        s.write(b"50abc")
    assert ei.value.errno == errno.EINVAL
    assert "scrub_start" in ei.value.strerror
    assert "trailing garbage" in ei.value.strerror


@pytest.mark.parametrize("data", [b"5", b"abc", b"   ", b"2147483648"])
def test_write_at_nonzero_offset_is_ignored_but_succeeds(data):
    s = IntSysctl("x", 1)
    assert s.write(data, offset=2) == len(data)
    assert s.value == 1


def test_empty_write_at_offset_returns_zero():
    s = IntSysctl("x", 1)
    assert s.write(b"", offset=3) == 0
    assert s.value == 1


def test_shell_retry_of_the_rest_lands_at_offset_and_is_ignored():
    # echo "5 6" > f: write() returns 2, the shell writes "6\n" at offset 2.
    s = IntSysctl("x", 1)
    data = b"5 6\n"
    n = s.write(data, 0)
    assert n == 2
    assert s.write(data[n:], n) == 2
    assert s.value == 5


def test_only_first_page_minus_one_is_parsed():
    # 6.18: a value after 4095 blanks is never reached.
    assert do_write(b" " * 4094 + b"5") == (4095, 5)
    assert do_write(b" " * 4095 + b"5") == EINVAL_PAIR
    # ... and garbage beyond that window is never seen.
    assert do_write(b" " * 4094 + b"5x") == (4096, 5)
    # 6.18: a value followed by more than a page of blanks claims everything.
    assert do_write(b"5\n" + b" " * 5000) == (5002, 5)


# -- read ----------------------------------------------------------------------

def test_read_formats():
    assert IntSysctl("x", 42).read(0, 4096) == b"42\n"
    assert IntSysctl("x", -7).read(0, 4096) == b"-7\n"
    assert IntSysctl("x", [4, 4, 1, 7]).read(0, 4096) == b"4\t4\t1\t7\n"


def test_read_at_offset_is_eof():
    s = IntSysctl("x", 32768)
    assert s.read(1, 4096) == b""
    assert s.read(6, 4096) == b""


@pytest.mark.parametrize("size,expect", [(1, b"3"), (3, b"327"), (5, b"32768"),
                                         (6, b"32768\n"), (100, b"32768\n"),
                                         (0, b"")])
def test_short_read_truncates(size, expect):
    # 6.18, /proc/sys/kernel/pid_max: pread(fd, 3, 0) == b"327".
    assert IntSysctl("x", 32768).read(0, size) == expect


def test_short_read_of_a_vector_truncates():
    s = IntSysctl("x", [4, 4, 1, 7])
    assert s.read(0, 2) == b"4\t"
    assert s.read(0, 5) == b"4\t4\t1"


# -- min/max ---------------------------------------------------------------------

@pytest.mark.parametrize("data,ret,value", [
    (b"0", 1, 0),
    (b"100", 3, 100),
    (b"-1", EINVAL, START),
    (b"101", EINVAL, START),
    (b"0x64", 4, 100),
    (b"0x65", EINVAL, START),
])
def test_minmax(data, ret, value):
    assert do_write(data, minimum=0, maximum=100) == (ret, value)


def test_only_min_or_only_max():
    assert do_write(b"-5", minimum=1) == EINVAL_PAIR
    assert do_write(b"2147483647", minimum=1) == (10, INT_MAX)
    assert do_write(b"-2147483648", maximum=0) == (11, INT_MIN)
    assert do_write(b"1", maximum=0) == EINVAL_PAIR


# -- on_write --------------------------------------------------------------------

def test_on_write_sees_the_new_value_after_success_only():
    seen = []
    s = IntSysctl("x", 1, on_write=lambda v: seen.append((list(v), s.value)))
    s.write(b"9\n")
    with pytest.raises(OSError):
        s.write(b"junk")
    s.write(b"3", offset=1)
    s.write(b"")
    assert seen == [([9], 9)]


def test_on_write_raising_keeps_the_old_value():
    def refuse(values):
        raise OSError(errno.EBUSY, "x: scrubber running")

    s = IntSysctl("x", 1, on_write=refuse)
    with pytest.raises(OSError) as ei:
        s.write(b"9\n")
    assert ei.value.errno == errno.EBUSY
    assert s.value == 1
    assert s.read(0, 100) == b"1\n"


def test_on_write_raising_keeps_the_old_vector():
    def refuse(values):
        raise OSError(errno.EINVAL, "x: no")

    s = IntSysctl("x", [1, 2, 3], on_write=refuse)
    with pytest.raises(OSError):
        s.write(b"7 8")
    assert s.values == [1, 2, 3]


# -- vectors (6.18, net.ipv4.tcp_rmem) ------------------------------------------

VEC = [4096, 131072, 6291456]


@pytest.mark.parametrize("data,ret,values", [
    (b"1 2 3", 5, [1, 2, 3]),
    (b"1 2 3 4", 6, [1, 2, 3]),           # extra numbers are left over
    (b"1 2 3\n4", 6, [1, 2, 3]),
    (b"1", 1, [1, 131072, 6291456]),       # fewer numbers: the rest stay
    (b"1 2", 3, [1, 2, 6291456]),
    (b"1\t2\n3\n", 6, [1, 2, 3]),
    (b"1  \v 2 \r3", 9, [1, 2, 3]),        # any blanks between values
    (b"1 2 3 \r\n", 8, [1, 2, 3]),
    (b"1,2,3", EINVAL, VEC),
    (b"1 x", EINVAL, VEC),                 # kernel: leaves [1, ...]; see module doc
    (b"1 2 0x", EINVAL, VEC),
    (b"1 0 3", EINVAL, VEC),               # 0 is below tcp_rmem's minimum 1
    (b"\n", EINVAL, VEC),
])
def test_vector_writes(data, ret, values):
    s = IntSysctl("tcp_rmem", list(VEC), minimum=1)
    try:
        r = s.write(data)
    except OSError as e:
        assert e.errno == errno.EINVAL
        r = EINVAL
    assert (r, s.values) == (ret, values)


def test_constructor_rejects_values_outside_int():
    with pytest.raises(ValueError):
        IntSysctl("x", 2**31)
    with pytest.raises(ValueError):
        IntSysctl("x", [])


def test_default_mode():
    assert IntSysctl("x", 0).mode == 0o644
    assert IntSysctl("x", 0, mode=0o200).mode == 0o200


# -- property: agrees with an independent oracle ---------------------------------

SPACES = b" \t\n\v\f\r\xa0"
NUMBER = re.compile(
    rb"([ \t\n\v\f\r\xa0]*)"                       # leading blanks
    rb"(-?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*))"  # the number
    rb"(?=[ \t\n]|\Z)",                            # then a separator or the end
    re.S,
)


def oracle(data):
    """(bytes consumed, value) for a write to a single int, or None for EINVAL."""
    m = NUMBER.match(data)
    if m is None:
        return None
    token = m.group(2)
    if len(token) >= 21:
        return None
    digits = token.lstrip(b"-")
    if digits[:2].lower() == b"0x":
        value = int(digits[2:], 16)
    elif digits.startswith(b"0"):
        value = int(digits, 8)
    else:
        value = int(digits, 10)
    if token.startswith(b"-"):
        value = -value
    if not INT_MIN <= value <= INT_MAX:
        return None
    end = m.end()
    while end < len(data) and data[end] in SPACES:
        end += 1
    return end, value


PIECES = [b" ", b"\t", b"\n", b"\r", b"\v", b"\xa0", b"\0", b"-", b"+", b"0",
          b"1", b"7", b"8", b"9", b"x", b"X", b"a", b"f", b"g", b".", b",",
          b"2147483647", b"2147483648", b"0000000000", b"99999999999"]


@settings(max_examples=3000, deadline=None)
@given(st.one_of(
    st.binary(max_size=30),
    st.lists(st.sampled_from(PIECES), max_size=10).map(b"".join),
))
@pytest.mark.slow
def test_write_matches_oracle(data):
    s = IntSysctl("x", START)
    expected = oracle(data)
    try:
        consumed = s.write(data)
    except OSError as e:
        assert e.errno == errno.EINVAL
        assert s.value == START
        assert expected is None or data == b""
        return
    if data == b"":
        assert consumed == 0 and s.value == START
        return
    assert expected == (consumed, s.value)
