"""Host memory behind the emulated page frames.

``RealMemory`` backs each node with private anonymous host memory.  Every
byte the model reads is real and every zero check reads it, while the host
holds only the pages that hold something:

- a page about to be used (the fault path's clear_page) is cleared with
  memset: it is written again at once, and memset is several times
  cheaper than giving the host page back and faulting it in again.  A
  faulted page whose task writes only its first lines, on pages larger
  than the host's, is released instead (``clears_by_memset``): the host
  then backs only the host pages the task writes;
- a free block zeroed to stay free (scrubd, the BTE, the ``--prezeroed``
  set-up) is *released* (``release``): madvise(MADV_DONTNEED) gives its
  host pages back, after which they read as zero (the host's shared zero
  page, which counts in no RSS) until something writes them;
- a freed page is poisoned by a canary: PAGE_POISON in its first byte, and
  the page marked poisoned.  The zero check still fails on it; readers
  (``read``, ``digest``) see it filled with PAGE_POISON, and a store into
  part of it fills it first, so every byte anyone sees is what filling it
  would have given, without the host backing the whole page.

``NoMemory`` keeps only metadata, for machines larger than the host:
clearing is accounted, not performed, and nothing can be verified.

Host-side only, RealMemory can do the bulk of this work on a second host
thread (the *memory thread*), the way the Altix's BTE zeroes memory off the
CPU: the fault path hands over the clearing, checking and touching of a
series of faulted pages (``later``) and exit its poisoning
(``poison_later``), and goes on with the model while the memory thread's
memset and memcmp run without the GIL.  The work is done in the order it
was handed over, and every other access waits for all of it first
(``_span`` calls ``sync``), so every byte ends up as if each call had been
made in place.  Virtual time never depends on it.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from .. import shortcuts

PAGE_POISON = 0xAA          # the kernel's PAGE_POISON pattern (mm/debug-pagealloc)
HOST_PAGE = mmap.PAGESIZE   # what the host maps, gives back and counts in RSS
_libc = ctypes.CDLL(None, use_errno=True)
_memcmp = _libc.memcmp
_memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_memcmp.restype = ctypes.c_int
_madvise = _libc.madvise      # through ctypes: the GIL is released while the host works
_madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_madvise.restype = ctypes.c_int
_MADV_DONTNEED = mmap.MADV_DONTNEED
_POPULATE_SHIFT = 21        # host memory is faulted in 2 MiB at a time
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)    # Linux 5.14
# Work handed to the memory thread at a time, at least (a fault series is
# cut there, exit's poisoning gathered up to it).
OFFLOAD_BYTES = 32 << 20
# The memory thread clears and checks a piece at a time, the check while the
# piece is still in the host's cache.  Between two pieces it needs the GIL
# back, which the busy model thread gives up only after the switch interval:
# Python's 5 ms would leave the memory thread waiting most of the time, so
# the process runs with 50 us once it has a memory thread.  Measured
# (docs/performance.md): 2 MiB pieces at 50 us, 0.33 s a 1 GiB job; 32 MiB
# at 0.5 ms, 0.37 to 0.47 s.
OFFLOAD_PIECE = 2 << 20
_SWITCH_INTERVAL = 0.00005


def offload_default() -> bool:
    """Use a memory thread unless the host gives this process a single CPU
    (VMEMU_MEMORY_THREAD=0 or 1 decides instead) or the host shortcuts are
    off (vmemu.shortcuts)."""
    if not shortcuts.enabled():
        return False
    env = os.environ.get("VMEMU_MEMORY_THREAD")
    if env is not None:
        return env.strip() not in ("", "0", "no", "off")
    return len(os.sched_getaffinity(0)) > 1


def _all_zero(addr: int, size: int) -> bool:
    """Every byte equals the next and the first is zero: one memcmp pass
    over the range itself, no zero buffer."""
    if ctypes.c_ubyte.from_address(addr).value:
        return False
    return size < 2 or _memcmp(addr, addr + 1, size - 1) == 0


class NoMemory:
    """Metadata-only backing."""

    real = False
    offload = False

    def clear(self, pfn: int, npages: int) -> None:
        pass

    def release(self, pfn: int, npages: int) -> None:
        pass

    def poison(self, pfn: int, npages: int) -> None:
        pass

    def sync(self) -> None:
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

    __slots__ = ("start", "end", "mem", "base", "fresh", "poisoned")

    def __init__(self, start: int, pages: int, page_size: int):
        self.start, self.end = start, start + pages
        size = pages * page_size
        self.mem = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
                             | getattr(mmap, "MAP_NORESERVE", 0))
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.mem))
        # The host's base pages, even where it makes huge pages by default:
        # a huge page made a fresh 1 GiB cost the host 0.14 to 1.05 s instead
        # of a steady 0.26 s (compaction; measured in docs/performance.md),
        # and one byte written would back 2 MiB.  (No THP: nothing to do.)
        _madvise(self.base, size, mmap.MADV_NOHUGEPAGE)
        # 2 MiB regions that no memset has written since the mapping (_populate)
        self.fresh = bytearray(b"\x01") * ((size - 1 >> _POPULATE_SHIFT) + 1)
        # a byte a page: 1 while the page is poisoned (only its canary written)
        self.poisoned = bytearray(pages)

    def poisoned_runs(self, i: int, j: int):
        """(first, end) page indexes of the poisoned runs among pages i .. j - 1."""
        flags = self.poisoned
        at = flags.find(1, i, j)
        while at >= 0:
            end = flags.find(0, at, j)
            end = j if end < 0 else end
            yield at, end
            at = flags.find(1, end, j)


_NO_ARENA = _Arena.__new__(_Arena)     # what a closed RealMemory looks at: no pfn is in it
_NO_ARENA.start = _NO_ARENA.end = 0


class RealMemory:
    """One arena per node; pfns map to offsets within their node's arena."""

    real = True

    def __init__(self, page_size: int, node_spans: list[tuple[int, int]], offload: bool | None = None):
        """node_spans: (start_pfn, pages) of each node, in pfn order.
        offload: use a memory thread (default: offload_default())."""
        self.page_size = page_size
        self.offload = offload_default() if offload is None else offload
        self._executor: ThreadPoolExecutor | None = None
        self._executor_pid = 0
        self._worker = None             # the memory thread's ident
        self._futures: list = []        # work handed over, not yet waited for
        self._poison_runs: list[tuple[int, int]] = []     # poison_later's, not yet handed over
        self._poison_pages = 0
        self._behind = False            # either list is not empty
        self._populating = threading.Lock()     # claims a region for _populate
        self._arenas = [_Arena(start, pages, page_size) for start, pages in node_spans]
        self._unpopulated = sum(len(a.fresh) for a in self._arenas)
        self._last = self._arenas[0]

    def _span(self, pfn: int, npages: int) -> tuple[_Arena, int, int]:
        """The arena of pfn .. pfn + npages - 1, and their offset and size in
        it in bytes, once the memory thread has done the work handed over
        before (unless this is the memory thread)."""
        if self._behind and threading.get_ident() != self._worker:
            self.sync()
        a = self._last
        if not (a.start <= pfn and pfn + npages <= a.end):
            self._last = a = self._arena_of(pfn, npages)
        return a, (pfn - a.start) * self.page_size, npages * self.page_size

    def _addr(self, pfn: int, npages: int) -> tuple[int, int]:
        a, offset, size = self._span(pfn, npages)
        return a.base + offset, size

    def _populate(self, a: _Arena, offset: int, size: int) -> None:
        """Host-side only: before a memset, fault in each 2 MiB region it
        writes that no memset has written yet, with one
        madvise(MADV_POPULATE_WRITE): faulting those pages in by the memset
        itself costs the host a trap a page, 10 % of a fresh machine's
        first job (measured in docs/performance.md).  A region is
        populated once: holes a release makes later are faulted in by the
        memset, as populating again would walk the whole region."""
        fresh = a.fresh
        for region in range(offset >> _POPULATE_SHIFT, ((offset + size - 1) >> _POPULATE_SHIFT) + 1):
            if fresh[region]:
                with self._populating:        # the model's thread may populate too (populate_ahead)
                    if not fresh[region]:
                        continue
                    fresh[region] = 0
                    self._unpopulated -= 1
                first = region << _POPULATE_SHIFT
                if _madvise(a.base + first, min(1 << _POPULATE_SHIFT, len(a.mem) - first),
                            _MADV_POPULATE_WRITE):
                    self._unpopulated = 0     # the host cannot (before Linux 5.14): fault in by access
                    return

    def populate_ahead(self, runs) -> None:
        """Host-side balance on a fresh machine: while the memory thread
        still has more than one piece of work waiting, the model's thread
        faults in the host memory of the runs (first pfn, pages) it is about
        to hand over for a memset, instead of leaving that too to the
        memory thread.  A region is populated once, by whichever thread
        claims it first; an access racing a populate just faults its pages
        in itself."""
        if not self._unpopulated or sum(not f.done() for f in self._futures) < 2:
            return
        for first, n in runs:
            a = self._arena_of(first, n)
            self._populate(a, (first - a.start) * self.page_size, n * self.page_size)

    def mappings(self) -> list[tuple[int, int, int, int]]:
        """(first pfn, pages, host address, bytes) of each node's memory:
        where to look in /proc/PID/smaps or /proc/PID/mem."""
        return [(a.start, a.end - a.start, a.base, len(a.mem)) for a in self._arenas]

    def _arena_of(self, pfn: int, npages: int) -> _Arena:
        """The arena holding pfn .. pfn + npages - 1 (ValueError if none does)."""
        for a in self._arenas:
            if a.start <= pfn and pfn + npages <= a.end:
                return a
        raise ValueError(f"pfn range {pfn}+{npages} is not inside one node's memory")

    # -- writing ----------------------------------------------------------------

    def clear(self, pfn: int, npages: int) -> None:
        """clear_page / zero_page(page, order) of pages about to be used:
        one memset for the whole block."""
        self.fill(pfn, npages, 0)

    def fill(self, pfn: int, npages: int, byte: int) -> None:
        """Every byte of the pages set to ``byte``, with one memset."""
        a, offset, size = self._span(pfn, npages)
        if self._unpopulated:
            self._populate(a, offset, size)
        ctypes.memset(a.base + offset, byte, size)
        self._unpoison(a, pfn - a.start, npages)

    def release(self, pfn: int, npages: int) -> None:
        """Zero a free block that stays free, giving its host memory back:
        madvise(MADV_DONTNEED) over the host pages inside it (private
        anonymous memory: they read as zero until written, and hold
        nothing); a host page it shares with another block (pages smaller
        than the host's) is memset instead."""
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
        ctypes.memset(start, 0, lo - start)
        ctypes.memset(hi, 0, end - hi)
        self._unpoison(a, pfn - a.start, npages)

    def poison(self, pfn: int, npages: int) -> None:
        """Freed pages are poisoned (so a page handed out as zeroed without a
        clear is caught); with a memory thread, gathered and handed over
        OFFLOAD_BYTES at a time: nothing reads a freed page before another
        access, which waits for it (_span)."""
        if self.offload:
            self._poison_later(pfn, npages)
            return
        self._poison(pfn, npages)

    def _poison(self, pfn: int, npages: int) -> None:
        # The canary: one strided store, so the host backs at most the host
        # page of each page's first byte, not the whole page.
        a, offset, size = self._span(pfn, npages)
        i = pfn - a.start
        a.poisoned[i: i + npages] = b"\x01" * npages
        a.mem[offset: offset + size: self.page_size] = bytes([PAGE_POISON]) * npages

    def _unpoison(self, a: _Arena, i: int, npages: int) -> None:
        """Pages i .. i + npages - 1 of a were just written whole."""
        if a.poisoned.find(1, i, i + npages) >= 0:
            a.poisoned[i: i + npages] = bytes(npages)

    def _fill_poison(self, a: _Arena, i: int, npages: int) -> None:
        """Before a store into pages i .. i + npages - 1 of a: the poisoned
        ones among them are filled with the poison they read as, so that the
        bytes around the store are what they would have been."""
        for first, end in list(a.poisoned_runs(i, i + npages)):
            ctypes.memset(a.base + first * self.page_size, PAGE_POISON, (end - first) * self.page_size)
            a.poisoned[first:end] = bytes(end - first)

    def touch(self, pfn: int, offset: int, byte: int) -> None:
        """A user store of one byte into a page (what pft's touch loop does)."""
        a, start, _ = self._span(pfn, 1)
        self._fill_poison(a, pfn - a.start, 1)
        ctypes.memset(a.base + start + offset, byte, 1)

    def touch_lines(self, pfn: int, npages: int, lines: int, line_size: int, byte: int) -> None:
        """``touch(p, line * line_size, byte)`` for every line < lines of every
        page p in pfn .. pfn + npages - 1: one strided store per line."""
        a, first, size = self._span(pfn, npages)
        self._fill_poison(a, pfn - a.start, npages)
        data = bytes([byte]) * npages
        for line in range(lines):
            off = first + line * line_size
            a.mem[off: off + size: self.page_size] = data

    # -- reading ----------------------------------------------------------------

    def is_zero(self, pfn: int, npages: int) -> bool:
        """Every byte of the pages reads zero, in real memory (a poisoned
        page fails on its canary)."""
        return _all_zero(*self._addr(pfn, npages))

    def read(self, pfn: int, npages: int) -> bytes:
        """The pages' bytes as the emulated machine holds them (a poisoned
        page reads PAGE_POISON throughout)."""
        a, offset, size = self._span(pfn, npages)
        data = ctypes.string_at(a.base + offset, size)
        i = pfn - a.start
        runs = list(a.poisoned_runs(i, i + npages))
        if not runs:
            return data
        out = bytearray(data)
        for first, end in runs:
            out[(first - i) * self.page_size: (end - i) * self.page_size] = \
                bytes([PAGE_POISON]) * ((end - first) * self.page_size)
        return bytes(out)

    def digest(self) -> str:
        """SHA-256 over every byte of every node's memory, as read() reads
        them (tests, golden runs)."""
        import hashlib
        self.sync()
        h = hashlib.sha256()
        ps = self.page_size
        for a in self._arenas:
            pages, done = a.end - a.start, 0
            for first, end in [*a.poisoned_runs(0, pages), (pages, pages)]:
                _hash_real(h, a.base + done * ps, (first - done) * ps)
                _hash_poison(h, (end - first) * ps)
                done = end
        return h.hexdigest()

    def clear_check_touch(self, runs, clear: bool, piece: int, lines: int, line_size: int) -> list:
        """What faulted pages need of real memory, for runs (first pfn,
        pages): clear each (when ``clear``), check it is all zero, then make
        the user's store of 1 into the first ``lines`` cache lines of each
        page; ``piece`` pages at a time (checked while still in the host's
        cache).  A piece that is not all zero is left untouched and returned
        as (first pfn, pages): the caller finds, counts and clears its bad
        pages, then touches it."""
        zero = self.clear if self.clears_by_memset(lines, line_size) else self.release
        bad = []
        for first, n in runs:
            end = first + n
            for at in range(first, end, piece if clear else n):
                k = min(piece, end - at) if clear else n
                if clear:
                    zero(at, k)
                if not self.is_zero(at, k):
                    bad.append((at, k))
                elif lines:
                    self.touch_lines(at, k, lines, line_size, 1)
        return bad

    def clears_by_memset(self, lines: int, line_size: int) -> bool:
        """Whether faulted pages whose first ``lines`` lines the user touches
        are cleared by memset: when the touch writes every host page of a
        page, which memset writes at once.  Otherwise (pages larger than the
        host's, a few lines touched) they are released, and the host backs
        only the host pages the touch writes: a quarter of a 16 KiB page
        with one line touched."""
        return lines * line_size > self.page_size - HOST_PAGE

    # -- the memory thread ------------------------------------------------------

    def later(self, fn, *args) -> None:
        """fn(*args), work on this memory only, done on the memory thread
        after everything handed over before (at once when there is none)."""
        if not self.offload:
            fn(*args)
            return
        if self._poison_runs:
            self._hand_over_poison()
        self._hand_over(fn, *args)

    def _poison_later(self, pfn: int, npages: int) -> None:
        self._poison_runs.append((pfn, npages))
        self._poison_pages += npages
        self._behind = True
        if self._poison_pages * self.page_size >= OFFLOAD_BYTES:
            self._hand_over_poison()

    def sync(self) -> None:
        """Wait until all work handed over is done; re-raise the first error
        it met (the rest of the work was still done)."""
        if self._poison_runs:
            self._hand_over_poison()
        futures, self._futures = self._futures, []
        errors = [e for e in (f.exception() for f in futures) if e is not None]
        self._behind = False
        if errors:
            raise errors[0]

    def _hand_over_poison(self) -> None:
        runs, self._poison_runs, self._poison_pages = self._poison_runs, [], 0
        self._hand_over(self._poison_runs_merged, runs)

    def _poison_runs_merged(self, runs: list[tuple[int, int]]) -> None:
        # Freed pages, each once (a page is freed again only after a clear,
        # which comes after this work): sorted and merged, one strided store a run.
        for first, n in merged(runs):
            end = first + n
            for a in self._arenas:              # one strided store per node at most
                lo, hi = max(first, a.start), min(end, a.end)
                if lo < hi:
                    self._poison(lo, hi - lo)

    def _hand_over(self, fn, *args) -> None:
        if self._executor is None or self._executor_pid != os.getpid():    # none yet, or forked
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="vmemu-memory")
            self._executor_pid = os.getpid()
            self._worker = self._executor.submit(threading.get_ident).result()
            if sys.getswitchinterval() > _SWITCH_INTERVAL:
                sys.setswitchinterval(_SWITCH_INTERVAL)
        self._futures.append(self._executor.submit(fn, *args))
        self._behind = True

    def close(self) -> None:
        """Give the arenas back to the host now (munmap), not when the last
        reference goes: a run of several machines must not hold them all."""
        try:
            self.sync()
        finally:
            if self._executor is not None and self._executor_pid == os.getpid():
                self._executor.shutdown()
            self._executor = None
            self._unmap()

    def _unmap(self) -> None:
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
# - real backing: every page frame can become resident (scrubd clears every
#   free page; a job touches its pages; exit poisons them), so all of it.


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
    """The host memory available to a new process (psutil: MemAvailable).
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
    import psutil
    return psutil.virtual_memory().available


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
