"""Host memory behind the emulated page frames.

``RealMemory`` backs each node with an anonymous mmap arena: clearing a
block is one memset over it, freed pages are poisoned, and a page handed out
as zeroed can be checked byte by byte.  ``NoMemory`` keeps only metadata, for
machines larger than the host: clearing is accounted, not performed, and
nothing can be verified.
"""

from __future__ import annotations

import ctypes
import mmap

PAGE_POISON = 0xAA          # the kernel's PAGE_POISON pattern (mm/debug-pagealloc)
_VERIFY_CHUNK = 1 << 20     # compare against a 1 MiB zero buffer at a time
_ZEROS = ctypes.create_string_buffer(_VERIFY_CHUNK)
_ZEROS_ADDR = ctypes.addressof(_ZEROS)
_memcmp = ctypes.CDLL(None).memcmp
_memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_memcmp.restype = ctypes.c_int
_HUGE_ARENA = 64 << 20      # arenas from this size on ask the host for huge pages
_POPULATE_SHIFT = 25        # host memory is faulted in 32 MiB at a time
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)    # Linux 5.14


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

    def close(self) -> None:
        pass


class RealMemory:
    """One mmap arena per node; pfns map to offsets within their node's arena."""

    real = True

    def __init__(self, page_size: int, node_spans: list[tuple[int, int]]):
        """node_spans: (start_pfn, pages) of each node, in pfn order."""
        self.page_size = page_size
        self._arenas = []       # (start_pfn, end_pfn, mmap, base address, chunks not yet populated)
        self._unpopulated = 0
        for start, pages in node_spans:
            arena = mmap.mmap(-1, pages * page_size,
                              flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0))
            if pages * page_size >= _HUGE_ARENA:
                # Host-side only: back big arenas with transparent huge pages
                # where the host allows it, so that the emulated machine's
                # first use of its RAM costs one host fault per 2 MiB, not
                # per 4 KiB.  The bytes and every clear of them are the same.
                try:
                    arena.madvise(mmap.MADV_HUGEPAGE)
                except (AttributeError, OSError):
                    pass
            base = ctypes.addressof(ctypes.c_char.from_buffer(arena))
            fresh = bytearray(b"\x01") * ((pages * page_size - 1 >> _POPULATE_SHIFT) + 1)
            self._unpopulated += len(fresh)
            self._arenas.append((start, start + pages, arena, base, fresh))
        self._last = self._arenas[0]

    def _addr(self, pfn: int, npages: int) -> tuple[int, int]:
        last = self._last
        start, end, _arena, base, _fresh = last
        if not (start <= pfn and pfn + npages <= end):
            for last in self._arenas:
                start, end, _arena, base, _fresh = last
                if start <= pfn and pfn + npages <= end:
                    self._last = last
                    break
            else:
                raise ValueError(f"pfn range {pfn}+{npages} is not inside one node's memory")
        offset, size = (pfn - start) * self.page_size, npages * self.page_size
        if self._unpopulated:
            self._populate(last, offset, size)
        return base + offset, size

    def _populate(self, arena, offset: int, size: int) -> None:
        """Host-side only: fault in the 32 MiB chunks of the arena that this
        access touches, each with one madvise(MADV_POPULATE_WRITE), before
        the first access.  Faulting the same memory in by the access itself
        costs the host one fault per huge page, several times slower in
        total (measured in docs/performance.md).  The bytes are the same:
        fresh anonymous memory is zero either way."""
        _start, _end, mem, _base, fresh = arena
        for chunk in range(offset >> _POPULATE_SHIFT, ((offset + size - 1) >> _POPULATE_SHIFT) + 1):
            if fresh[chunk]:
                fresh[chunk] = 0
                self._unpopulated -= 1
                first = chunk << _POPULATE_SHIFT
                try:
                    mem.madvise(_MADV_POPULATE_WRITE, first, min(1 << _POPULATE_SHIFT, len(mem) - first))
                except (OSError, ValueError):
                    self._unpopulated = 0     # the host cannot (before Linux 5.14): fault in by access
                    return

    def clear(self, pfn: int, npages: int) -> None:
        """One memset for the whole block (clear_page / zero_page(page, order))."""
        addr, size = self._addr(pfn, npages)
        ctypes.memset(addr, 0, size)

    def poison(self, pfn: int, npages: int) -> None:
        addr, size = self._addr(pfn, npages)
        ctypes.memset(addr, PAGE_POISON, size)

    def fill(self, pfn: int, npages: int, byte: int) -> None:
        addr, size = self._addr(pfn, npages)
        ctypes.memset(addr, byte, size)

    def touch(self, pfn: int, offset: int, byte: int) -> None:
        """A user store of one byte into a page (what pft's touch loop does)."""
        addr, _ = self._addr(pfn, 1)
        ctypes.memset(addr + offset, byte, 1)

    def touch_lines(self, pfn: int, npages: int, lines: int, line_size: int, byte: int) -> None:
        """``touch(p, line * line_size, byte)`` for every line < lines of every
        page p in pfn .. pfn + npages - 1: one strided store per line."""
        addr, size = self._addr(pfn, npages)
        arena = self._last[2]
        first = addr - self._last[3]
        data = bytes([byte]) * npages
        for line in range(lines):
            off = first + line * line_size
            arena[off: off + size: self.page_size] = data

    def is_zero(self, pfn: int, npages: int) -> bool:
        addr, size = self._addr(pfn, npages)
        done = 0
        while done < size:
            n = min(_VERIFY_CHUNK, size - done)
            if _memcmp(addr + done, _ZEROS_ADDR, n):
                return False
            done += n
        return True

    def read(self, pfn: int, npages: int) -> bytes:
        addr, size = self._addr(pfn, npages)
        return ctypes.string_at(addr, size)

    def close(self) -> None:
        """Give the arenas back to the host now (munmap), not when the last
        reference goes: a run of several machines must not hold them all."""
        arenas, self._arenas = self._arenas, []
        self._last = (0, 0, None, 0, b"")
        for _start, _end, arena, _base, _fresh in arenas:
            try:
                arena.close()
            except BufferError:      # still exported somewhere: dropped with its last reference
                pass
