"""kstrto*: the kernel's strict integer and bool parsers (lib/kstrtox.c,
lib/kstrtox.c kstrtobool), shared by every emulated file that parses like them.
Errors are OSError(EINVAL or ERANGE), as the kernel returns them."""

from __future__ import annotations

import errno
from typing import Optional

U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
S64_MAX = (1 << 63) - 1


def einval(msg: str) -> OSError:
    """The parsers' usual answer: EINVAL with a message for the log."""
    return OSError(errno.EINVAL, msg)


def digit_value(c: int) -> int:
    """Value of one ASCII digit in bases up to 16, or 99 for anything else."""
    if 0x30 <= c <= 0x39:
        return c - 0x30
    lc = c | 0x20
    if 0x61 <= lc <= 0x66:
        return lc - 0x61 + 10
    return 99


def parse_integer_fixup_radix(s: bytes, pos: int) -> tuple[int, int]:
    """_parse_integer_fixup_radix for base 0: (base, index of the first digit).

    "0x" counts as a hex prefix only when a hex digit follows; otherwise a
    leading 0 means octal (and the 0 itself is the first octal digit)."""
    if s[pos:pos + 1] != b"0":
        return 10, pos
    if s[pos + 1:pos + 2] in (b"x", b"X") and pos + 2 < len(s) and digit_value(s[pos + 2]) < 16:
        return 16, pos + 2
    return 8, pos


def parse_integer(s: bytes, pos: int, base: int) -> tuple[int, int]:
    """_parse_integer: (value, index after the last digit).  Like the
    kernel, it scans every digit but stops growing the value once it is
    beyond 64 bits (callers check for that), so a megabyte of digits costs
    a pass, not a quadratic big-number build."""
    val = 0
    while pos < len(s):
        d = digit_value(s[pos])
        if d >= base:
            break
        if val <= U64_MAX:
            val = val * base + d
        pos += 1
    return val, pos


def _kstrtoull_nosign(s: bytes) -> int:
    """_kstrtoull with base 0.  Raises OSError(EINVAL or ERANGE)."""
    base, start = parse_integer_fixup_radix(s, 0)
    val, i = parse_integer(s, start, base)
    # The kernel keeps scanning past an overflow and checks it first.
    if val > U64_MAX:
        raise OSError(errno.ERANGE, "number does not fit in 64 bits")
    if i == start:
        raise OSError(errno.EINVAL, "not a number")
    if s[i:i + 1] == b"\n":
        i += 1
    if i != len(s):
        raise OSError(errno.EINVAL, "trailing garbage after number")
    return val


def kstrtoull(s: bytes) -> int:
    """kstrtoull(s, 0, ...): one optional '+', no '-'."""
    if s[:1] == b"+":
        s = s[1:]
    return _kstrtoull_nosign(s)


def kstrtouint(s: bytes) -> int:
    """kstrtouint(s, 0, ...): kstrtoull, then ERANGE beyond 32 bits."""
    v = kstrtoull(s)
    if v > U32_MAX:
        raise OSError(errno.ERANGE, "number does not fit in 32 bits")
    return v


def kstrtoll(s: bytes) -> int:
    """kstrtoll(s, 0, ...): one optional '-' or '+'."""
    if s[:1] == b"-":
        tmp = _kstrtoull_nosign(s[1:])
        if tmp > S64_MAX + 1:
            raise OSError(errno.ERANGE, "number below the 64-bit minimum")
        return -tmp
    tmp = kstrtoull(s)
    if tmp > S64_MAX:
        raise OSError(errno.ERANGE, "number above the 64-bit maximum")
    return tmp


def kstrtobool(s: bytes) -> Optional[bool]:
    """kstrtobool (5.19+, with t/f): the bool, or None where it says EINVAL."""
    first, second = s[:1], s[1:2]
    if first in (b"y", b"Y", b"t", b"T", b"1"):
        return True
    if first in (b"n", b"N", b"f", b"F", b"0"):
        return False
    if first in (b"o", b"O"):
        if second in (b"n", b"N"):
            return True
        if second in (b"f", b"F"):
            return False
    return None
