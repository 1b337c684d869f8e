"""Host memory behind the emulated page frames.

``RealMemory`` backs each node with private anonymous host memory.  Every
byte the model reads is the emulated machine's, and every zero check reads
real memory, while the host holds only the bytes no rule describes:

- zeroing (clear_page of a page about to be used, scrubd, the BTE, the
  ``--prezeroed`` set-up) gives the host pages back: madvise(MADV_DONTNEED)
  on private anonymous memory, after which they read as zero (the host's
  zero page, in no RSS) until written;
- a page whose bytes follow a rule is a *mark*, one byte a page, instead of
  host memory: a freed page is *poisoned* (it reads PAGE_POISON
  throughout), and a faulted page the task stored into as pft's touch loop
  does (TOUCH_BYTE at the start of each of its first k cache lines, over
  the page's bytes) is *touched* (k).  The zero check fails on a marked
  page without reading it; ``read`` and ``digest`` return the marked
  bytes; a store that no mark describes first writes the page's marked
  bytes into host memory (``_store_marks``);
- the arena asks the host for huge pages, so that reading zeroed memory
  maps the host's huge zero page, one mapping per 2 MiB; a 2 MiB region is
  given base pages before our first store into it (``_writable``), so that
  a store backs 4 KiB, not 2 MiB.

``NoMemory`` keeps only metadata, for machines larger than the host:
clearing is accounted, not performed, and nothing can be verified.

Virtual time never depends on any of this.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import re
from typing import Final

PAGE_POISON: Final = 0xAA          # the kernel's PAGE_POISON pattern (mm/debug-pagealloc)
TOUCH_BYTE: Final = 1              # what pft's touch loop stores (a touched mark's byte)
POISONED: Final = 0xFF             # the mark of a poisoned page; 1 .. MAX_TOUCHED: a touched page's lines
MAX_TOUCHED: Final = POISONED - 1
HOST_PAGE = mmap.PAGESIZE   # what the host maps, gives back and counts in RSS
_libc = ctypes.CDLL(None, use_errno=True)
_memcmp = _libc.memcmp
_memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_memcmp.restype = ctypes.c_int
_madvise = _libc.madvise      # through ctypes: the GIL is released while the host works
_madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_madvise.restype = ctypes.c_int
_MADV_DONTNEED = mmap.MADV_DONTNEED
_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", 14)
_MADV_NOHUGEPAGE = getattr(mmap, "MADV_NOHUGEPAGE", 15)


def _huge_page_shift() -> int:
    """log2 of the host's huge page (PMD) size; 0 when the host has none."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size") as f:
            return int(f.read()).bit_length() - 1
    except (OSError, ValueError):
        return 0


# Regions of a huge page each; with no huge pages, 2 MiB regions and no
# MADV_HUGEPAGE (reading zeroed memory then maps the base zero page).
_HUGE_SHIFT = _huge_page_shift()
_REGION_SHIFT = _HUGE_SHIFT or 21
_MARK_RUNS = re.compile(rb"([^\x00])\1*", re.S)      # runs of one non-zero mark
# Faulted pages are cleared and checked a piece at a time, pieces aligned to
# it: a clear of a whole huge page gives back the host's mapping of the huge
# zero page, where a part would split it into base pages.
PIECE_BYTES: Final = 1 << _REGION_SHIFT


def _all_zero(addr: int, size: int) -> bool:
    """Every byte equals the next and the first is zero: one memcmp pass
    over the range itself, no zero buffer."""
    if ctypes.c_ubyte.from_address(addr).value:
        return False
    return size < 2 or _memcmp(addr, addr + 1, size - 1) == 0


class NoMemory:
    """Metadata-only backing."""

    real = False

    def clear(self, pfn: int, npages: int) -> None:
        pass

    def poison(self, pfn: int, npages: int) -> None:
        pass

    def is_zero(self, pfn: int, npages: int) -> bool:
        return True

    def fill(self, pfn: int, npages: int, byte: int) -> None:
        pass

    def touch(self, pfn: int, offset: int, byte: int) -> None:
        pass

    def touch_lines(self, pfn: int, npages: int, lines: int, line_size: int, byte: int) -> None:
        pass

    def mappings(self) -> list:
        return []

    def close(self) -> None:
        pass


class _Arena:
    """One node's host memory: pfns start .. end - 1, from address base."""

    __slots__ = ("start", "end", "mem", "base", "marks", "region0", "small")

    def __init__(self, start: int, pages: int, page_size: int):
        self.start, self.end = start, start + pages
        size = pages * page_size
        self.mem = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
                             | getattr(mmap, "MAP_NORESERVE", 0))
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.mem))
        # Reading zeroed memory maps the host's huge zero page (no THP: the
        # host's base zero page instead, one mapping per host page).
        if _HUGE_SHIFT:
            _madvise(self.base, size, _MADV_HUGEPAGE)
        self.marks = bytearray(pages)           # a byte a page: 0, POISONED, or touched lines
        self.region0 = self.base >> _REGION_SHIFT
        # a byte per 2 MiB region: 1 once it has base pages for our stores (_writable)
        self.small = bytearray(((self.base + size - 1) >> _REGION_SHIFT) - self.region0 + 1)

    def mark_runs(self, i: int, j: int):
        """(first, end, mark) of the runs of one non-zero mark among pages i .. j - 1."""
        marks = self.marks
        for m in _MARK_RUNS.finditer(marks, i, j):
            first = m.start()
            yield first, m.end(), marks[first]

    def unmarked(self, i: int, j: int) -> bool:
        return self.marks.count(0, i, j) == j - i


_NO_ARENA = _Arena.__new__(_Arena)     # what a closed RealMemory looks at: no pfn is in it
_NO_ARENA.start = _NO_ARENA.end = 0


class RealMemory:
    """One arena per node; pfns map to offsets within their node's arena."""

    real = True

    def __init__(self, page_size: int, node_spans: list[tuple[int, int]]):
        """node_spans: (start_pfn, pages) of each node, in pfn order."""
        self.page_size = page_size
        self._arenas = [_Arena(start, pages, page_size) for start, pages in node_spans]
        self._last = self._arenas[0]
        self.touch_line = 0             # the line size of the touched marks (set by the first)

    def _span(self, pfn: int, npages: int) -> tuple[_Arena, int, int]:
        """The arena of pfn .. pfn + npages - 1, and their offset and size in
        it in bytes."""
        a = self._last
        if not (a.start <= pfn and pfn + npages <= a.end):
            self._last = a = self._arena_of(pfn, npages)
        return a, (pfn - a.start) * self.page_size, npages * self.page_size

    def mappings(self) -> list[tuple[int, int, int, int]]:
        """(first pfn, pages, host address, bytes) of each node's memory:
        where to look in /proc/PID/smaps or /proc/PID/mem (a marked page's
        bytes are in its mark, not there)."""
        return [(a.start, a.end - a.start, a.base, len(a.mem)) for a in self._arenas]

    def _arena_of(self, pfn: int, npages: int) -> _Arena:
        """The arena holding pfn .. pfn + npages - 1 (ValueError if none does)."""
        for a in self._arenas:
            if a.start <= pfn and pfn + npages <= a.end:
                return a
        raise ValueError(f"pfn range {pfn}+{npages} is not inside one node's memory")

    def _writable(self, a: _Arena, offset: int, size: int) -> None:
        """Before our stores into offset .. offset + size of a: each 2 MiB
        region they reach gets base pages (MADV_NOHUGEPAGE), and one that
        reads all zero is given back first, so that a store into the huge
        zero page backs 4 KiB of host memory, not a huge page."""
        lo = ((a.base + offset) >> _REGION_SHIFT) - a.region0
        hi = ((a.base + offset + size - 1) >> _REGION_SHIFT) - a.region0 + 1
        small = a.small
        if small.count(0, lo, hi) == 0:
            return
        top = a.base + len(a.mem)
        for r in range(lo, hi):
            if small[r]:
                continue
            start = max((a.region0 + r) << _REGION_SHIFT, a.base)
            end = min((a.region0 + r + 1) << _REGION_SHIFT, top)
            zero = _all_zero(start, end - start)
            _madvise(start, end - start, _MADV_NOHUGEPAGE)
            if zero:
                _madvise(start, end - start, _MADV_DONTNEED)
            small[r] = 1

    # -- writing ----------------------------------------------------------------

    def clear(self, pfn: int, npages: int) -> None:
        """clear_page / zero_page(page, order): every byte of the pages zero,
        and their host memory given back: madvise(MADV_DONTNEED) over the
        host pages inside them (private anonymous memory: they read as zero
        until written, and hold nothing); a host page shared with another
        block (pages smaller than the host's) is memset instead."""
        a, offset, size = self._span(pfn, npages)
        start = a.base + offset
        end = start + size
        lo = -(-start // HOST_PAGE) * HOST_PAGE
        hi = end // HOST_PAGE * HOST_PAGE
        if lo < hi:
            if _madvise(lo, hi - lo, _MADV_DONTNEED):
                raise OSError(ctypes.get_errno(), f"madvise(MADV_DONTNEED) of pfn {pfn}+{npages}")
        else:
            lo = hi = end               # inside one host page: all of it memset
        if start < lo:
            self._writable(a, offset, lo - start)
            ctypes.memset(start, 0, lo - start)
        if hi < end:
            self._writable(a, hi - a.base, end - hi)
            ctypes.memset(hi, 0, end - hi)
        self._unmark(a, pfn - a.start, npages)

    def fill(self, pfn: int, npages: int, byte: int) -> None:
        """Every byte of the pages set to ``byte`` (0: clear)."""
        if not byte:
            self.clear(pfn, npages)
            return
        a, offset, size = self._span(pfn, npages)
        self._writable(a, offset, size)
        ctypes.memset(a.base + offset, byte, size)
        self._unmark(a, pfn - a.start, npages)

    def poison(self, pfn: int, npages: int) -> None:
        """Freed pages are poisoned (so a page handed out as zeroed without a
        clear is caught): marked, no host memory written."""
        a, _, _ = self._span(pfn, npages)
        i = pfn - a.start
        a.marks[i: i + npages] = b"\xff" * npages

    def _unmark(self, a: _Arena, i: int, npages: int) -> None:
        """Pages i .. i + npages - 1 of a were just written whole."""
        if not a.unmarked(i, i + npages):
            a.marks[i: i + npages] = bytes(npages)

    def _store_marks(self, a: _Arena, i: int, npages: int) -> None:
        """Before a store no mark describes into pages i .. i + npages - 1 of
        a: the marked ones among them get their bytes in host memory."""
        ps = self.page_size
        for first, end, mark in list(a.mark_runs(i, i + npages)):
            self._writable(a, first * ps, (end - first) * ps)
            if mark == POISONED:
                ctypes.memset(a.base + first * ps, PAGE_POISON, (end - first) * ps)
            else:
                self._store_lines(a, first, end - first, mark, self.touch_line, TOUCH_BYTE)
            a.marks[first:end] = bytes(end - first)

    def _store_lines(self, a: _Arena, i: int, npages: int, lines: int, line_size: int, byte: int) -> None:
        """byte at the start of each of the first ``lines`` lines of pages
        i .. i + npages - 1 of a, in host memory: one strided store a line."""
        ps = self.page_size
        first, size = i * ps, npages * ps
        data = bytes([byte]) * npages
        for line in range(lines):
            off = first + line * line_size
            a.mem[off: off + size: ps] = data

    def touch(self, pfn: int, offset: int, byte: int) -> None:
        """A user store of one byte into a page."""
        a, start, _ = self._span(pfn, 1)
        self._store_marks(a, pfn - a.start, 1)
        self._writable(a, start + offset, 1)
        ctypes.memset(a.base + start + offset, byte, 1)

    def touch_lines(self, pfn: int, npages: int, lines: int, line_size: int, byte: int) -> None:
        """``touch(p, line * line_size, byte)`` for every line < lines of every
        page p in pfn .. pfn + npages - 1: the touched mark where it
        describes them (pft's stores onto unmarked pages), else stores."""
        if not lines:
            return
        a, first, size = self._span(pfn, npages)
        i = pfn - a.start
        if self.touch_line == 0:
            self.touch_line = line_size
        if byte == TOUCH_BYTE and lines <= MAX_TOUCHED and line_size == self.touch_line \
                and a.unmarked(i, i + npages):
            a.marks[i: i + npages] = bytes([lines]) * npages
            return
        self._store_marks(a, i, npages)
        self._writable(a, first, size)
        self._store_lines(a, i, npages, lines, line_size, byte)

    # -- reading ----------------------------------------------------------------

    def is_zero(self, pfn: int, npages: int) -> bool:
        """Every byte of the pages reads zero: none is marked, and real memory
        is all zero."""
        a, offset, size = self._span(pfn, npages)
        i = pfn - a.start
        return a.unmarked(i, i + npages) and _all_zero(a.base + offset, size)

    def read(self, pfn: int, npages: int) -> bytes:
        """The pages' bytes as the emulated machine holds them."""
        a, offset, size = self._span(pfn, npages)
        data = ctypes.string_at(a.base + offset, size)
        i = pfn - a.start
        if a.unmarked(i, i + npages):
            return data
        out = bytearray(data)
        for first, end, mark in a.mark_runs(i, i + npages):
            self._apply_mark(out, (first - i) * self.page_size, end - first, mark)
        return bytes(out)

    def _apply_mark(self, buf: bytearray, at: int, npages: int, mark: int) -> None:
        """The bytes of npages pages of one mark, onto their real bytes in buf from at."""
        ps = self.page_size
        if mark == POISONED:
            buf[at: at + npages * ps] = bytes([PAGE_POISON]) * (npages * ps)
            return
        data = bytes([TOUCH_BYTE]) * npages
        for line in range(mark):
            off = at + line * self.touch_line
            buf[off: at + npages * ps: ps] = data

    def digest(self) -> str:
        """SHA-256 over every byte of every node's memory, as read() reads
        them (tests, golden runs)."""
        import hashlib
        h = hashlib.sha256()
        ps = self.page_size
        step = max(1, (64 << 20) // ps)
        for a in self._arenas:
            pages, done = a.end - a.start, 0
            for first, end, mark in [*a.mark_runs(0, pages), (pages, pages, 0)]:
                _hash_real(h, a.base + done * ps, (first - done) * ps)
                done = end
                if mark == POISONED:
                    _hash_poison(h, (end - first) * ps)
                    continue
                for at in range(first, end, step):        # touched: its bytes, 64 MiB at a time
                    n = min(step, end - at)
                    buf = bytearray(ctypes.string_at(a.base + at * ps, n * ps))
                    self._apply_mark(buf, 0, n, mark)
                    h.update(buf)
        return h.hexdigest()

    def clear_check_touch(self, runs, clear: bool, piece: int, lines: int, line_size: int) -> list:
        """What faulted pages need of real memory, for runs (first pfn,
        pages): clear each (when ``clear``), check it is all zero, then make
        the user's store of TOUCH_BYTE into the first ``lines`` cache lines
        of each page; ``piece`` pages at a time.  A piece that is not all
        zero is left untouched and returned as (first pfn, pages): the
        caller finds, counts and clears its bad pages, then touches it."""
        bad = []
        for first, n in runs:
            at, end = first, first + n
            while at < end:
                k = min(end, (at // piece + 1) * piece) - at     # pieces aligned: whole huge pages
                if clear:
                    self.clear(at, k)
                if not self.is_zero(at, k):
                    bad.append((at, k))
                elif lines:
                    self.touch_lines(at, k, lines, line_size, TOUCH_BYTE)
                at += k
        return bad

    def close(self) -> None:
        """Give the arenas back to the host now (munmap), not when the last
        reference goes: a run of several machines must not hold them all."""
        arenas, self._arenas = self._arenas, []
        self._last = _NO_ARENA
        for a in arenas:
            try:
                a.mem.close()
            except BufferError:      # still exported somewhere: dropped with its last reference
                pass


def _hash_real(h, addr: int, size: int) -> None:
    """h.update over size bytes of host memory from addr, 64 MiB at a time
    (no copy)."""
    chunk = 64 << 20
    for off in range(0, size, chunk):
        n = min(chunk, size - off)
        h.update(memoryview((ctypes.c_char * n).from_address(addr + off)))


def _hash_poison(h, size: int) -> None:
    """h.update over size bytes of PAGE_POISON, 64 MiB at a time."""
    chunk = memoryview(bytes([PAGE_POISON]) * min(size, 64 << 20))
    for off in range(0, size, len(chunk) or 1):
        h.update(chunk[:size - off])


def merged(runs) -> list[tuple[int, int]]:
    """Disjoint (first, count) runs, sorted, with adjacent ones joined."""
    out: list[tuple[int, int]] = []
    for first, n in sorted(runs):
        if out and out[-1][0] + out[-1][1] == first:
            out[-1] = (out[-1][0], out[-1][1] + n)
        else:
            out.append((first, n))
    return out

# -- how much host memory a machine may make the host hold ---------------------------
#
# The one estimate behind every refusal and every worker count (vmemu mount,
# a state file's restore, a fault job, vmemu pft and its -j), so that the
# host's OOM killer never has to choose: a machine that cannot fit is refused
# before it is built.  Worst cases, measured on CPython 3.11 (VmHWM and
# ru_maxrss; the figures are in docs/reliability.md):
#
# - the process itself: an idle daemon of x86-64 or altix-8 holds 26 MiB,
#   altix-512's (512 CPUs, 256 nodes: its files and per-CPU lists) 68 MiB;
BASE_BYTES = 64 << 20
PER_CPU_BYTES = 128 << 10
# - the machine: one page_state byte per page frame, and a second while a
#   save (a checkpoint) holds its copy; free lists and per-CPU lists are
#   bounded by the number of free blocks, small on a machine between jobs;
MACHINE_BYTES_PER_PAGE = 2
# - a fault job, per page of a repetition: the task's pfn array (8 bytes
#   and its growth), exit's reversed copy (8), and while exit frees them a
#   sorted list of the pfns as Python ints (8 + 32) and a set over them
#   (16 to 43): about 100 bytes derived; 52 measured at the peak of a
#   one-thread job (x86-64 stock, 99 % of memory), 8 to 15 with more
#   threads; 128 leaves a margin;
JOB_BYTES_PER_PAGE = 128
# - real backing: every page frame.  The model's own work backs next to
#   nothing (zeroing gives host pages back, poison and pft's stores are
#   marks), but a store no mark describes backs its host page, and the
#   arena has to hold one in every page.


class HostMemoryError(Exception):
    """A machine or job the host's available memory cannot hold (one line)."""


def host_bytes(profile, backing: str | None = None, job_pages: int = 0) -> int:
    """The most host memory a machine of ``profile`` with ``backing`` (None:
    the profile's) may make the host hold, with a fault job of ``job_pages``
    pages per repetition running (0: between jobs)."""
    backing = backing or profile.machine["backing"]
    pages = profile.total_pages
    need = BASE_BYTES + PER_CPU_BYTES * profile.nr_cpus + MACHINE_BYTES_PER_PAGE * pages
    need += job_bytes(profile, job_pages)
    if backing == "real":
        need += pages * profile.machine["page_size"]
    return need


def job_bytes(profile, job_pages: int) -> int:
    """What a fault job of ``job_pages`` pages per repetition adds to its
    machine's host memory (its bookkeeping; real backing is counted whole
    with the machine)."""
    return JOB_BYTES_PER_PAGE * min(job_pages, profile.total_pages)


def host_bytes_available() -> int:
    """The host memory available to a new process (/proc/meminfo's MemAvailable).
    VMEMU_HOST_AVAILABLE=SIZE (memparse: 2G, 512M) pretends the host has
    that much, for tests of the refusals."""
    fake = os.environ.get("VMEMU_HOST_AVAILABLE")
    if fake is not None:
        from ..lib.cmdline import memparse
        try:
            return memparse(fake.strip())
        except OSError as e:
            raise HostMemoryError(f"VMEMU_HOST_AVAILABLE={fake!r}: {e.strerror}; expected a size "
                                  "such as 2G") from None
    with open("/proc/meminfo") as f:              # what psutil reads too, without its 10 ms import
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise HostMemoryError("/proc/meminfo has no MemAvailable line (Linux 3.14 or later has one)")


def check_host_memory(profile, backing: str | None = None, job_pages: int = 0,
                      hint: str | None = None) -> int:
    """host_bytes, if the host has that much available; else HostMemoryError
    (see fits).  ``hint`` ends the line; by default --backing none, when
    that would fit."""
    backing = backing or profile.machine["backing"]
    need = host_bytes(profile, backing, job_pages)
    if hint is None and backing == "real" and host_bytes(profile, "none", job_pages) <= host_bytes_available():
        hint = "use --backing none"
    return fits(need, f"{profile.name} with {backing} backing", hint)


def fits(need: int, what: str, hint: str | None = None) -> int:
    """need, if the host has that much memory available; else one line:
    what may hold how much, and how much the host has."""
    have = host_bytes_available()
    if need > have:
        raise HostMemoryError(f"{what} may hold {human_bytes(need)} of host memory; this host has "
                              f"{human_bytes(have)} available" + (f" ({hint})" if hint else ""))
    return need


def human_bytes(n: int) -> str:
    """1536 MiB -> '1.5 GiB': binary units, one decimal."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    i = 0
    while n >= 1024 ** (i + 1) and i < len(units) - 1:
        i += 1
    return f"{n} bytes" if i == 0 else f"{n / 1024 ** i:.1f} {units[i]}"
