"""Integer sysctls the way the kernel's ``proc_dointvec`` handles them.

Pure logic, no FUSE and no I/O: the FUSE layer calls ``read`` and ``write``
with the offset and bytes it got and turns an ``OSError`` into the errno.

Behaviour follows Linux 6.1 ``__do_proc_dointvec`` / ``proc_get_long`` /
``do_proc_dointvec_conv`` with ``sysctl_writes_strict`` = 1 (the default),
and was cross-checked by writing to a real ``proc_dointvec`` sysctl
(net.ipv4.igmp_max_memberships) and a real ``proc_dointvec_minmax`` vector
(net.ipv4.tcp_rmem) on a 6.18 kernel.

Write, in order:

* an empty write returns 0 and changes nothing;
* a write at a non-zero offset is ignored but reports the full length;
* only the first PAGE_SIZE - 1 bytes are looked at;
* per value: skip whitespace (the kernel's ``isspace``: space, \\t, \\n, \\v,
  \\f, \\r and, because the kernel's ctype table is Latin-1, 0xA0); stop if
  nothing is left; an optional ``-``; a digit is required; the number is
  read like C ``strtoul`` base 0 (``0x`` hex, leading ``0`` octal, else
  decimal); a number spelt with 21 or more characters (sign included) is
  refused, because the kernel copies at most 21 bytes into a 22-byte buffer
  and cannot tell where such a number ends; the byte after the number must
  be space, tab, newline or the end of the data;
* each value must fit a C int and the optional min/max;
* no value at all (whitespace only) is EINVAL;
* whitespace after the last value parsed is consumed too, and the write
  returns the number of bytes consumed: ``"5 6\\n"`` to a single int
  stores 5 and returns 2.

Vector sysctls take up to ``len(values)`` numbers separated by whitespace
(the same rules as 2.6.35 to 6.1 plain ``proc_dointvec``; a comma is not a
separator there and is refused as trailing garbage).  Fewer numbers than
elements update only the leading elements.

One deliberate difference from the kernel: the kernel stores each vector
element as soon as it is parsed, so ``"1 x"`` to a 3-int vector returns
EINVAL but leaves element 0 set to 1.  Here a failed write changes nothing,
so that ``on_write`` sees whole, valid updates only.  Single ints behave
exactly like the kernel.

Read: ``"%d\\n"`` (vector elements joined by tabs); any read at an offset
> 0 returns EOF and a short buffer truncates the text.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

from ..lib.kstrtox import einval, parse_integer, parse_integer_fixup_radix
from .base import PAGE_SIZE, File, Handle

INT_MAX = 2**31 - 1
INT_MIN = -(2**31)
ULONG_MAX = 2**64 - 1          # unsigned long on a 64-bit kernel

# proc_get_long copies the token into char tmp[TMPBUFLEN] and NUL-terminates
# it, so at most TMPBUFLEN - 1 bytes are examined.
TMPBUFLEN = 22

# The kernel's isspace(): its ctype table is Latin-1, where 0xA0 (no-break
# space) is a space too.  Verified on a 6.18 kernel: b"\xa07" sets 7.
KERNEL_SPACES = frozenset(b" \t\n\v\f\r\xa0")

# proc_wspace_sep[]: the only bytes allowed right after a number.
PROC_WSPACE_SEP = frozenset(b" \t\n")

OnWrite = Callable[[list], None]


def _skip_spaces(buf: bytes, pos: int, end: int) -> int:
    """proc_skip_spaces: index of the first non-space byte before end."""
    while pos < end and buf[pos] in KERNEL_SPACES:
        pos += 1
    return pos


def _get_long(name: str, buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """proc_get_long: parse one number at buf[pos:end].

    Returns (signed value, index after the number).  Raises EINVAL.
    """
    size = end - pos
    tmp = buf[pos:pos + min(size, TMPBUFLEN - 1)]
    p = 0
    neg = False
    # A lone "-" with nothing after it is not taken as a sign.
    if tmp[:1] == b"-" and size > 1:
        neg = True
        p = 1
    if p >= len(tmp) or not 0x30 <= tmp[p] <= 0x39:
        if neg:
            raise einval(f"{name}: expected a digit after '-'")
        if tmp[:1] == b"+":
            raise einval(f"{name}: a leading '+' is not accepted")
        raise einval(f"{name}: not a number")
    base, p = parse_integer_fixup_radix(tmp, p)
    val, p = parse_integer(tmp, p, base)
    if val > ULONG_MAX:
        # strtoul_lenient reports ERANGE; proc_get_long turns it into EINVAL.
        raise einval(f"{name}: number does not fit in unsigned long")
    if p == TMPBUFLEN - 1:
        raise einval(f"{name}: number too long (at most {TMPBUFLEN - 2} characters)")
    if p < size and tmp[p] not in PROC_WSPACE_SEP:
        raise einval(f"{name}: trailing garbage after number")
    return (-val if neg else val), pos + p


def parse_intvec(
    name: str,
    data: bytes,
    count: int,
    minimum: Optional[int] = None,
    maximum: Optional[int] = None,
) -> tuple[list[int], int]:
    """Parse up to count ints the way __do_proc_dointvec(_minmax) writes them.

    Returns (values parsed, bytes consumed).  Raises OSError(EINVAL).
    An empty data returns ([], 0).
    """
    total = len(data)
    if total == 0:
        return [], 0
    # The kernel looks at no more than PAGE_SIZE - 1 bytes ...
    end = min(total, PAGE_SIZE - 1)
    pos = 0
    values: list[int] = []
    while pos < end and len(values) < count:
        pos = _skip_spaces(data, pos, end)
        if pos == end:
            break
        val, pos = _get_long(name, data, pos, end)
        values.append(_conv(name, val, minimum, maximum))
    if not values:
        raise einval(f"{name}: no number given")
    pos = _skip_spaces(data, pos, end)
    # ... yet reports consumed = count - what is left of that window, so a
    # value followed by more than a page of blanks claims the whole write.
    return values, total - (end - pos)


def _conv(name: str, val: int, minimum: Optional[int], maximum: Optional[int]) -> int:
    """do_proc_dointvec_conv plus the _minmax bounds check."""
    if not INT_MIN <= val <= INT_MAX:
        raise einval(f"{name}: {val} is out of int range")
    if minimum is not None and val < minimum:
        raise einval(f"{name}: {val} is below the minimum {minimum}")
    if maximum is not None and val > maximum:
        raise einval(f"{name}: {val} is above the maximum {maximum}")
    return val


class IntSysctl:
    """One /proc/sys integer (or vector of integers) file.

    ``on_write(new_values)`` runs after the new values are stored; if it
    raises, the old values are put back and the exception propagates (an
    OSError's errno is what the writer sees).
    """

    def __init__(
        self,
        name: str,
        value: int | Iterable[int],
        *,
        minimum: Optional[int] = None,
        maximum: Optional[int] = None,
        mode: int = 0o644,
        on_write: Optional[OnWrite] = None,
    ):
        values = [value] if isinstance(value, int) else list(value)
        if not values:
            raise ValueError(f"{name}: a sysctl needs at least one value")
        for v in values:
            if not INT_MIN <= v <= INT_MAX:
                raise ValueError(f"{name}: {v} does not fit in a C int")
        self.name = name
        self.values = values
        self.minimum = minimum
        self.maximum = maximum
        self.mode = mode
        self.on_write = on_write

    @property
    def value(self) -> int:
        """The first (for a plain int sysctl, the only) value."""
        return self.values[0]

    @value.setter
    def value(self, v: int) -> None:
        self.values[0] = v

    def text(self) -> bytes:
        return ("\t".join(str(v) for v in self.values) + "\n").encode()

    def read(self, offset: int = 0, size: int = 4096) -> bytes:
        # The handler renders from offset 0 only; a continuation read is EOF.
        if offset > 0 or size <= 0:
            return b""
        return self.text()[:size]

    def write(self, data: bytes, offset: int = 0) -> int:
        data = bytes(data)
        if not data:
            return 0
        if offset > 0:
            # sysctl_writes_strict = 1: ignored, but reported as written.
            return len(data)
        parsed, consumed = parse_intvec(
            self.name, data, len(self.values), self.minimum, self.maximum
        )
        old = list(self.values)
        new = parsed + old[len(parsed):]
        self.values = new
        if self.on_write is not None:
            try:
                self.on_write(list(new))
            except BaseException:
                self.values = old
                raise
        return consumed

    def __repr__(self) -> str:
        return f"IntSysctl({self.name!r}, {self.values!r})"


class SysctlFile(File):
    """/proc/sys/vm/<name>: an IntSysctl whose value lives in machine.sysctl."""

    def __init__(self, machine, name: str):
        self.sysctl = IntSysctl(name, machine.sysctl[name],
                                on_write=lambda v: machine.set_sysctl(name, v[0]))
        self.machine = machine
        self.name = name
        super().__init__(self._text, mode=self.sysctl.mode)

    def _text(self) -> bytes:
        self.sysctl.values = [self.machine.sysctl[self.name]]
        return self.sysctl.text()

    def read(self, kernel, h: Handle, size: int, offset: int) -> bytes:
        # proc_dointvec: any read at offset > 0 is EOF; a short buffer truncates.
        if offset > 0:
            return b""
        return kernel.render(self)[:size]

    def write(self, kernel, h: Handle, data: bytes, offset: int) -> int:
        def store():
            self.sysctl.values = [self.machine.sysctl[self.name]]
            return self.sysctl.write(data, offset)
        return kernel.call(store)
