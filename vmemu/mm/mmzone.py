"""Nodes, zones, free areas and per-CPU pagesets (include/linux/mmzone.h).

Free memory is kept as blocks, never as per-page objects: a free area is an
ordered set of block-head pfns, so a 4 TiB machine boots with a few thousand
entries.  The only per-page state is one byte in ``Zone.page_state`` (an
anonymous mmap, so untouched pages cost no host memory), used to catch
double frees and frees of pages that were never handed out.
"""

from __future__ import annotations

import mmap
from collections import deque
from itertools import islice
from typing import Final

from ..kernel.sched import SpinLock
from .vmstat import NUMA_EVENTS, ZONE_EVENTS

# The two kinds of free list the prezeroing patch adds (free_area[kind][order]).
NOT_ZEROED: Final = 0
ZEROED: Final = 1

# Per-CPU page lists: the 2.6.10 hot and cold lists plus the patch's zeroed list.
PCP_HOT: Final = 0
PCP_COLD: Final = 1
PCP_ZEROED: Final = 2

# page_state byte values. 0: not handed out (in the buddy lists, or in flight in scrubd).
PS_FREE: Final = 0
PS_PCP: Final = 0xFE       # on a per-CPU list
PS_TAIL: Final = 0xFF      # tail page of an allocated block; a head holds order + 1


class FreeArea:
    """free_area[kind][order]: block heads, newest last (the list head).
    nr_free (blocks) is the list's length."""

    __slots__ = ("free_list",)

    def __init__(self) -> None:
        self.free_list: dict[int, None] = {}

    @property
    def nr_free(self) -> int:
        return len(self.free_list)

    def add(self, pfn: int) -> None:          # list_add: to the head
        self.free_list[pfn] = None

    def pop_head(self) -> int:
        return self.free_list.popitem()[0]

    def __contains__(self, pfn: int) -> bool:
        return pfn in self.free_list


class PerCpuPages:
    """struct per_cpu_pages: a LIFO list (head = right end), count, low, high, batch."""

    __slots__ = ("list", "low", "high", "batch")

    def __init__(self, low: int, high: int, batch: int):
        self.list: deque[int] = deque()
        self.low = low
        self.high = high
        self.batch = batch

    @property
    def count(self) -> int:
        return len(self.list)

    def take(self, k: int) -> list[int]:
        """k pops off the head (the hot end): the pages, in the order taken."""
        pages = self.list
        if 2 * k <= len(pages):
            return [pages.pop() for _ in range(k)]
        taken = list(islice(reversed(pages), k))
        rest = list(islice(pages, len(pages) - k))
        pages.clear()
        pages.extend(rest)
        return taken

    def take_tail(self, k: int) -> list[int]:
        """k pops off the tail (the cold end), in the order taken."""
        pages = self.list
        if 2 * k <= len(pages):
            return [pages.popleft() for _ in range(k)]
        taken = list(islice(pages, k))
        rest = list(islice(pages, k, None))
        pages.clear()
        pages.extend(rest)
        return taken


def zone_batchsize(present_pages: int, page_size: int) -> int:
    """2.6.10-11 zone_batchsize: ~1/1024 of the zone, at most 256 KiB worth,
    divided by 4, clamped to 2^n - 1 to avoid cache-colouring pathologies."""
    batch = present_pages // 1024
    if batch * page_size > 256 * 1024:
        batch = (256 * 1024) // page_size
    batch //= 4
    if batch < 1:
        batch = 1
    return (1 << (batch + batch // 2).bit_length()) - 1


def pageset_lists(batch: int) -> list[PerCpuPages]:
    """setup_pageset: hot low 2*batch high 6*batch; cold (and zeroed) low 0 high 2*batch."""
    return [PerCpuPages(2 * batch, 6 * batch, batch),
            PerCpuPages(0, 2 * batch, batch),
            PerCpuPages(0, 2 * batch, batch)]


class Zone:
    """struct zone, with the patch's two sets of free areas and zero_pages."""

    def __init__(self, node: int, name: str, start_pfn: int, pages: int,
                 max_order: int, page_size: int):
        self.node = node
        self.name = name
        self.zone_start_pfn = start_pfn
        self.spanned_pages = pages
        self.present_pages = pages
        self.max_order = max_order
        self.free_area = [[FreeArea() for _ in range(max_order)] for _ in (NOT_ZEROED, ZEROED)]
        self.free_pages = 0       # pages in both kinds of buddy lists (+ scrubd's in-flight block)
        self.zero_pages = 0       # pages in ZEROED buddy lists
        self.lock = SpinLock(f"zone-{node}-{name}", kind="zone->lock")
        self.batch = zone_batchsize(pages, page_size)
        self.pageset: dict[int, list[PerCpuPages]] = {}   # cpu id -> lists, made on first use
        self.pages_min = self.pages_low = self.pages_high = 0
        self.page_state = mmap.mmap(-1, max(pages, 1))   # one byte per page, see PS_*
        self.stat: dict[str, int] = dict.fromkeys(ZONE_EVENTS, 0)
        self.scrub_inflight = 0   # pages scrubd has taken off the lists to zero

    @property
    def end_pfn(self) -> int:
        return self.zone_start_pfn + self.spanned_pages

    def contains(self, pfn: int) -> bool:
        return self.zone_start_pfn <= pfn < self.zone_start_pfn + self.spanned_pages

    def pcp(self, cpu_id: int) -> list[PerCpuPages]:
        lists = self.pageset.get(cpu_id)
        if lists is None:
            lists = self.pageset[cpu_id] = pageset_lists(self.batch)
        return lists

    def pcp_pages(self) -> int:
        return sum(p.count for lists in self.pageset.values() for p in lists)

    def nr_free(self, kind: int) -> list[int]:
        return [area.nr_free for area in self.free_area[kind]]

    def boot_free_all(self) -> None:
        """free_all_bootmem: the zone starts as maximal aligned NOT_ZEROED blocks."""
        idx, size = 0, self.spanned_pages
        while idx < size:
            order = self.max_order - 1
            while order and (idx & ((1 << order) - 1) or idx + (1 << order) > size):
                order -= 1
            self.free_area[NOT_ZEROED][order].add(self.zone_start_pfn + idx)
            self.free_pages += 1 << order
            idx += 1 << order


class Node:
    """pg_data_t: a NUMA node with its CPUs and zones."""

    def __init__(self, node_id: int, start_pfn: int, pages: int, cpus: list[int]):
        self.id = node_id
        self.node_start_pfn = start_pfn
        self.node_spanned_pages = pages
        self.cpus = cpus
        self.zones: list[Zone] = []
        self.stat: dict[str, int] = dict.fromkeys(NUMA_EVENTS, 0)   # numastat counters
