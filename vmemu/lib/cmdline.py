"""memparse (lib/cmdline.c): a size with an optional binary suffix.

One size syntax for every size vmemu reads: ``bytes=`` of the fault file,
``vmemu pft -b``, and the profiles' ``node_memory`` and zone sizes.  The
number is read like the kernel's ``simple_strtoull(s, &end, 0)`` (``0x``
hex, a leading ``0`` octal, else decimal), then one of K M G T P E (either
case) multiplies by 1024 per step.  The kernel's memparse stops at the
first character it does not understand and leaves the rest to its caller;
every caller here wants the whole token, so anything after the suffix is
EINVAL, and a value beyond 64 bits ERANGE (kstrtox's rules).
"""

from __future__ import annotations

import errno

from .kstrtox import U64_MAX, parse_integer, parse_integer_fixup_radix

SUFFIX_SHIFT = {c: 10 * (i + 1) for i, c in enumerate("KMGTPE")}


def memparse(text: str | bytes) -> int:
    """'4G' -> 4294967296, '0x1000' -> 4096, '010' -> 8; OSError(EINVAL or ERANGE)."""
    s = text.encode() if isinstance(text, str) else bytes(text)
    base, start = parse_integer_fixup_radix(s, 0)
    value, i = parse_integer(s, start, base)
    if i == start:
        raise OSError(errno.EINVAL, "not a size")
    shift = SUFFIX_SHIFT.get(chr(s[i]).upper(), 0) if i < len(s) else 0
    if shift:
        i += 1
    if i != len(s):
        raise OSError(errno.EINVAL, "not a size")
    value <<= shift
    if value > U64_MAX:
        raise OSError(errno.ERANGE, "number does not fit in 64 bits")
    return value
