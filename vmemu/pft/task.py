"""pft's threads as scheduler tasks (vmemu.kernel.sched): the user program
whose every page fault the model runs, and its leader's exit."""

from __future__ import annotations

from typing import Any

from .. import shortcuts
from ..kernel.sched import CPU, Task
from ..mm.fault import BZERO, FaultPath, MMStruct
from ..mm.fault_batch import FaultBatch


def pft_thread(fault: FaultPath, cpu: CPU, mm: MMStruct, npages: int, failed: list[int],
               bzero: bool = False, progress: Any = None) -> Task:
    """One pft thread: every fault is a scheduler step.  With the host
    shortcuts on (vmemu.shortcuts), while this thread is the one the
    scheduler would resume next anyway (Timeline.solo_bound) it goes on
    without the round-trip: FaultBatch runs the faults a series applies
    to, and the next step's fault follows directly, with the horizon the
    scheduler would have set."""
    timeline = mm.page_table_lock.timeline
    # -z: the thread bzero()s the page it just faulted, in user space
    # (a run of store misses to local memory: the page's own cost, taken the same for every page)
    memsys = fault.memsys
    bzero_ns = memsys.store_run_ns(cpu.node, cpu.node, memsys.lines_per_page) if bzero else 0
    batch = FaultBatch(fault, bzero_ns) if shortcuts.enabled() else None
    i = 0
    while i < npages:
        if fault.do_anonymous_page(cpu, mm) is None:
            failed.append(cpu.id)
            break
        if bzero_ns:
            cpu.user(bzero_ns, BZERO)
        begun = i
        i += 1
        # solo_bound is at most the scheduler's bound: threads that
        # interleave at every fault go back to it without asking
        bound = timeline.solo_bound() if batch is not None and cpu.time < timeline.solo_until else 0
        if i < npages and cpu.time < bound and batch is not None:
            i += batch.run(cpu, mm, npages - i)
            bound = timeline.solo_bound()
        if progress is not None:
            # one tick of 0x1000 per fault index that is a multiple of 0x1000
            for _ in range(((i - 1) >> 12) - ((begun - 1) >> 12)):
                progress.tick(0x1000)
        if cpu.time < bound:
            timeline.horizon = cpu.time       # the next step starts now, as run() would start it
        else:
            yield
    fault.settle()                            # the real memory of the faults, before the thread ends


def pft_exit(fault: FaultPath, cpu: CPU, mm: MMStruct, chunk: int = 256) -> Task:
    """Task exit in steps of ``chunk`` pages, so daemons woken by the frees
    run concurrently in virtual time."""
    while mm.pages:
        fault.exit_mmap(cpu, mm, chunk)
        yield
