"""kstrto*: the kernel's strict integer and bool parsers (lib/kstrtox.c,
lib/kstrtox.c kstrtobool), shared by every emulated file that parses like them.
Errors are OSError(EINVAL or ERANGE), as the kernel returns them."""

from __future__ import annotations

import errno
from typing import Optional

U64_MAX = (1 << 64) - 1
S64_MAX = (1 << 63) - 1


def digit_value(c: int) -> int:
    """Value of one ASCII digit in bases up to 16, or 99 for anything else."""
    if 0x30 <= c <= 0x39:
        return c - 0x30
    lc = c | 0x20
    if 0x61 <= lc <= 0x66:
        return lc - 0x61 + 10
    return 99


def _kstrtoull_nosign(s: bytes) -> int:
    """_kstrtoull with base 0.  Raises OSError(EINVAL or ERANGE)."""
    i, base = 0, 10
    if s[:1] == b"0":
        base = 8
        if s[1:2] in (b"x", b"X") and len(s) > 2 and digit_value(s[2]) < 16:
            base, i = 16, 2
    val, start = 0, i
    while i < len(s) and digit_value(s[i]) < base:
        val = val * base + digit_value(s[i])
        i += 1
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
