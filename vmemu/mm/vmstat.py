"""Event counters, under the kernel's names where the kernel has them.

The prezeroing series added no /proc/vmstat counters; the emulator's own are
prefixed ``prezero_`` (allocator side), ``scrubd_`` and ``bte_`` so that
nobody mistakes them for upstream counters.
"""

from __future__ import annotations

# vm events counted per CPU (kernel: struct page_state / vm_event_states).
CPU_EVENTS = (
    "pgalloc", "pgfree", "pgfault", "pgmajfault",
    # emulator: __GFP_ZERO allocations served from zeroed lists vs cleared by the CPU
    "prezero_alloc_zeroed", "prezero_alloc_cleared",
    # emulator: pages and bytes the CPU cleared in the allocation (fault) path
    "prezero_clear_pages", "prezero_clear_bytes",
    # emulator: a page handed out for __GFP_ZERO that was not all zero (must stay 0)
    "prezero_verify_fail",
    # emulator: allocations refused by fail_page_alloc, and plain allocation failures
    "prezero_alloc_injected_fail", "prezero_alloc_fail",
)

# counted per zone as well (pages, except the alloc_* counts which are allocations)
ZONE_EVENTS = ("pgalloc", "pgfree", "prezero_alloc_zeroed", "prezero_alloc_cleared",
               "prezero_clear_pages", "prezero_verify_fail")

# numastat, counted per node (drivers/base/node.c numastat_show order).
NUMA_EVENTS = ("numa_hit", "numa_miss", "numa_foreign", "interleave_hit", "local_node", "other_node")
# /proc/vmstat's names for the same counters (mm/vmstat.c vmstat_text)
VMSTAT_NUMA = dict(zip(("numa_hit", "numa_miss", "numa_foreign", "numa_interleave", "numa_local", "numa_other"),
                       NUMA_EVENTS))


def new_cpu_stat() -> dict[str, int]:
    return dict.fromkeys(CPU_EVENTS, 0)


def sum_stats(stats) -> dict[str, int]:
    total: dict[str, int] = {}
    for stat in stats:
        for key, value in stat.items():
            total[key] = total.get(key, 0) + value
    return total
