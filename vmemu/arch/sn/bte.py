"""The SGI Altix block transfer engine as a zero driver (arch/ia64/sn/kernel/bte.c).

Each node has ``engines_per_node`` engines (2 on SHUB1).  The zero driver
refuses (EINVAL) a range shorter than 60000 bytes, of BTE_MAX_XFER (8 MiB) or
more, or not cache-line aligned; otherwise the CPU tries its own engine, then
the other, and gets BTEFAIL_NOTAVAIL when all are busy (scrubd then clears on
the CPU).  A transfer takes setup latency plus length over the engine's rate,
moving its bytes over the node's memory bus (shared with the CPUs); its time
is not charged to any CPU.  The bytes are really zeroed at completion, and
completion frees the block as ZEROED.

Faults can be injected per engine at run time: a percentage of transfers
that end with a chosen ``bte_result_t`` error (the block goes back to scrubd
dirty and is cleared on the CPU: it is never handed out dirty), and a
percentage that hang.  A hung transfer never completes: after the timeout
(40 s of virtual time) the driver counts BTEFAIL_TOUT, runs the error
handler and retries the whole transfer, as bte_copy does.  Neither stops the
daemon or blocks allocations: the block is simply off the lists meanwhile.
"""

from __future__ import annotations

import errno
import random

# bte_result_t (include/asm-ia64/sn/bte.h)
BTE_SUCCESS = 0
BTEFAIL_DIR = 1
BTEFAIL_POISON = 2
BTEFAIL_WERR = 3
BTEFAIL_ACCESS = 4
BTEFAIL_PWERR = 5
BTEFAIL_PRERR = 6
BTEFAIL_TOUT = 7
BTEFAIL_XTERR = 8
BTEFAIL_NOTAVAIL = 9
BTE_RESULT_NAMES = ("BTE_SUCCESS", "BTEFAIL_DIR", "BTEFAIL_POISON", "BTEFAIL_WERR", "BTEFAIL_ACCESS",
                    "BTEFAIL_PWERR", "BTEFAIL_PRERR", "BTEFAIL_TOUT", "BTEFAIL_XTERR", "BTEFAIL_NOTAVAIL")
INJECTABLE = range(BTEFAIL_DIR, BTEFAIL_NOTAVAIL)      # the error codes a transfer can end with

L1_CACHE_BYTES = 128


class BteEngine:
    """One engine: at most one transfer at a time, with its fault injection and counters."""

    def __init__(self, machine, node: int, index: int, seed: int):
        self.m = machine
        self.node = node
        self.index = index
        self.rng = random.Random(f"{seed}:bte:{node}:{index}")
        self.current: tuple | None = None     # (scrubd, zone, pfn, order) while a transfer is in flight
        self.hung = False
        # injection, writable at run time
        self.error_percent = 0
        self.error_code = BTEFAIL_POISON
        self.hang_percent = 0
        self.inject_errors = 0       # the next N transfers fail with error_code
        self.inject_hangs = 0        # the next N transfers hang
        # counters
        self.transfers = 0
        self.completed = 0
        self.bytes = 0
        self.busy_ns = 0
        self.errors = [0] * len(BTE_RESULT_NAMES)
        self.timeouts = 0
        self.retries = 0

    @property
    def busy(self) -> bool:
        return self.current is not None

    def draw_fault(self) -> str | None:
        """Decide how this transfer ends: None (success), 'error' or 'hang'."""
        if self.inject_hangs:
            self.inject_hangs -= 1
            return "hang"
        if self.inject_errors:
            self.inject_errors -= 1
            return "error"
        if self.hang_percent and self.rng.randrange(100) < self.hang_percent:
            return "hang"
        if self.error_percent and self.rng.randrange(100) < self.error_percent:
            return "error"
        return None

    def submit(self, t: int, scrubd, zone, pfn: int, order: int) -> None:
        self.current = (scrubd, zone, pfn, order)
        self.start_transfer(t)

    def start_transfer(self, t: int) -> None:
        assert self.current is not None
        scrubd, zone, pfn, order = self.current
        self.transfers += 1
        p = self.m.profile.bte
        fault = self.draw_fault()
        if fault == "hang":
            self.hung = True
            self.m.events.schedule(t + p["timeout_ns"], self.timed_out)
            return
        length = self.m.page_size << order
        self.m.memsys.invalidate(pfn, 1 << order)     # it writes memory: no cache keeps the old lines
        end = self.m.buses[zone.node].transfer(t + p["setup_ns"], length, p["rate_bytes_per_ns"], "bte")
        self.busy_ns += end - t
        self.m.events.schedule(end, self.complete, BTE_SUCCESS if fault is None else self.error_code)

    def complete(self, t: int, result: int) -> None:
        assert self.current is not None
        scrubd, zone, pfn, order = self.current
        self.current = None
        if result == BTE_SUCCESS:
            self.m.memory.clear(pfn, 1 << order)        # the bytes land now; the block stays free
            self.completed += 1
            self.bytes += self.m.page_size << order
            scrubd.finish_block(t, zone, pfn, order, "bte")
        else:
            self.errors[result] += 1
            scrubd.give_back_dirty(t, zone, pfn, order)

    def timed_out(self, t: int) -> None:
        """bte_copy's 40 s spin expired: count it, reset the engine, retry."""
        self.hung = False
        self.timeouts += 1
        self.errors[BTEFAIL_TOUT] += 1
        self.retries += 1
        self.start_transfer(t)


class BteZeroDriver:
    """The zero driver the Altix BTE patch registers with scrubd."""

    name = "bte"

    def __init__(self, machine, seed: int):
        self.m = machine
        self.enabled = True
        p = machine.profile.bte
        self.min_len = p["min_len"]
        self.max_len = p["max_len"]
        self.engines = [[BteEngine(machine, node.id, i, seed) for i in range(p["engines_per_node"])]
                        for node in machine.nodes]
        self.refused = 0             # EINVAL: outside the length window or misaligned
        self.notavail = 0            # BTEFAIL_NOTAVAIL: every engine busy, CPU fallback

    def eligible(self, addr: int, length: int) -> bool:
        return (self.min_len <= length < self.max_len
                and not addr % L1_CACHE_BYTES and not length % L1_CACHE_BYTES)

    def start(self, scrubd, cpu, zone, pfn: int, order: int) -> int:
        """0 when an engine took the block, else EINVAL or BTEFAIL_NOTAVAIL."""
        length = self.m.page_size << order
        if not self.eligible(pfn * self.m.page_size, length):
            self.refused += 1
            return errno.EINVAL
        engines = self.engines[zone.node]
        if not engines:
            return errno.ENODEV
        first = cpu.id % len(engines)          # a CPU's own engine first, then the others
        for i in range(len(engines)):
            engine = engines[(first + i) % len(engines)]
            if not engine.busy:
                engine.submit(cpu.time, scrubd, zone, pfn, order)
                cpu.sys(self.m.profile.bte["setup_ns"], "bte_copy")   # the CPU programs the engine
                return 0
        self.notavail += 1
        return BTEFAIL_NOTAVAIL

    def all_engines(self):
        return [e for node in self.engines for e in node]

    def totals(self) -> dict[str, int]:
        engines = self.all_engines()
        out = {"transfers": sum(e.transfers for e in engines),
               "completed": sum(e.completed for e in engines),
               "bytes": sum(e.bytes for e in engines),
               "timeouts": sum(e.timeouts for e in engines),
               "retries": sum(e.retries for e in engines),
               "notavail": self.notavail, "refused_einval": self.refused}
        for code in INJECTABLE:
            out[f"errors_{BTE_RESULT_NAMES[code]}"] = sum(e.errors[code] for e in engines)
        return out
