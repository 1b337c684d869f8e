"""The memory hardware of a machine: where a cache line is, and what a run
of line accesses costs.  The profile's ``[memory]`` table gives the facts.

Where a line is.  Every CPU (or every group of CPUs sharing a last-level
cache) has a cache of ``capacity`` lines.  A page's lines that a CPU wrote
are in its cache until that cache has since taken ``capacity`` more lines
(least recently written first out), or until another CPU writes the page
(ownership moves: one cache holds a written line) or a device writes it in
memory (the BTE: the lines are invalidated).  State is kept per page: a
page a CPU cleared has all its lines cached, a page it touched ``c`` lines
of has ``c``.

What a run costs.  The first line of a run of misses comes after the
latency of the memory holding it (the SLIT distance over 10 times the local
latency: the ACPI definition of a distance).  After that a CPU keeps
``depth`` misses in flight, so a line every latency/depth, unless the bytes
are the limit: the node's bus (shared: vmemu.kernel.sched.MemoryBus) or,
for another node's memory, the interconnect link.  With write-allocate
caches a store miss first reads the line and later writes it back: twice
the line on the bus.  The kernel's clear_page may instead *stream* (P6 and
later fast-string ``rep stos``: each whole line is invalidated elsewhere
and written, never read): then a page costs its bytes at the bandwidth.
"""

from __future__ import annotations

from typing import Any, Iterable


class MemorySystem:
    """Caches, latencies and bandwidths of one machine (see the module doc)."""

    # A packed cache entry: ((clock * (lines_per_page + 1)) + lines) * groups + group,
    # so that a series of pages is one arithmetic progression (dict.update from a range).

    def __init__(self, memory: dict, cache_line: int, page_size: int, llc_lines: int,
                 cpu_group: list[int], cpu_node: list[int], distance: list[list[int]]):
        self.hit_ns = memory["hit_ns"]
        self.mlp = memory["mlp"]
        self.bus_bytes_per_ns = memory["bus_bytes_per_ns"] * memory["efficiency"]
        self.link_bytes_per_ns = memory["link_bytes_per_ns"] * memory["efficiency"]
        self.line = cache_line
        self.lines_per_page = page_size // cache_line
        self.store_traffic = cache_line * (2 if memory["write_allocate"] else 1)
        # clear_page's stores stream: whole lines written without reading them first
        # (a machine saved before the key had none that did)
        self.clear_streams = bool(memory.get("clear_streams", False))
        local = memory["latency_ns"]
        # latency[a][b]: a line of node b's memory reaching a CPU of node a
        # (every matrix here holds one object per distinct value, Any so that
        # mypyc does not box each entry anew: altix-512 has 256 nodes)
        latency: dict[int, Any] = {d: local * d // 10 for row in distance for d in row}
        self.latency = [[latency[d] for d in row] for row in distance]
        # transfer[a][b]: a written line moving from a CPU of node a to one of node b,
        # uncontended (per distance: one node, one link, a router); shared_transfer: contended
        contended = {10: memory["transfer_ns"], 20: memory["transfer_remote_ns"]}
        self.transfer = [[contended.get(d, memory["transfer_router_ns"]) for d in row] for row in distance]
        self.capacity = llc_lines
        self.cpu_group = cpu_group
        self.cpu_node = cpu_node
        self.groups = max(cpu_group) + 1 if cpu_group else 1
        self.clock = [0] * self.groups        # lines each cache has taken so far
        self.scrubbed = [-llc_lines] * self.groups   # its clock after kscrubd last cleared on its CPUs
        self.where: dict[int, int] = {}       # pfn -> packed entry (the class comment)
        self._prune_above = 4 * self.groups * max(1, llc_lines // self.lines_per_page) + 4096
        # host side: the costs above are pure functions of the facts, asked
        # every fault; computed once (per node pair, per run length), and a
        # node pair's depend only on its distance and whether it is one node
        self._runs: dict[tuple[int, int, int], int] = {}
        pairs: dict[tuple[int, bool], tuple[int, int]] = {}     # (distance, same node) -> a pair with them
        for a, row in enumerate(distance):
            for b, d in enumerate(row):
                pairs.setdefault((d, a == b), (a, b))
        per_line: dict[tuple[int, bool], Any] = {key: self._per_line(a, b) for key, (a, b) in pairs.items()}
        self._line_ns = [[per_line[d, a == b] for b, d in enumerate(row)] for a, row in enumerate(distance)]
        rate: dict[tuple[int, bool], Any] = {key: self.page_traffic() / max(1, self.clear_page_ns(a, b))
                                             for key, (a, b) in pairs.items()}
        self._clear_rate = [[rate[d, a == b] for b, d in enumerate(row)] for a, row in enumerate(distance)]

    # -- costs -----------------------------------------------------------------

    def shared_transfer(self, users) -> list[list[int]]:
        """transfer[a][b] for a line that the CPUs ``users`` all keep taking
        (an mm_struct's first line: mmap_sem's count and page_table_lock,
        written by every fault of every thread).  Within a node the line
        moves over the snooped bus, as uncontended.  From another node it
        goes through the line's home directory, which keeps one request per
        line in flight and refuses the others until it is done (they retry):
        with n nodes sharing the line a take waits behind the other n - 1
        nodes' hand-offs, and each hand-off costs a transfer per sharing node
        (after a test-and-test-and-set release every node's spinners re-read
        the line), so n (n - 1) transfers in all."""
        n = len({self.cpu_node[c] for c in users})
        k = n * (n - 1)
        return [[x if a == b else x * k for b, x in enumerate(row)] for a, row in enumerate(self.transfer)]

    def line_ns(self, cpu_node: int, mem_node: int) -> float:
        """Time per line of a long run of store misses by one CPU (mlp of
        them in flight, the bus to itself)."""
        return self._line_ns[cpu_node][mem_node]

    def _per_line(self, cpu_node: int, mem_node: int) -> float:
        per_line = max(self.latency[cpu_node][mem_node] / self.mlp, self.store_traffic / self.bus_bytes_per_ns)
        return self._over_link(cpu_node, mem_node, per_line)

    def _over_link(self, cpu_node: int, mem_node: int, per_line: float) -> float:
        """A line's time, at least the interconnect link's for another node's memory."""
        if cpu_node != mem_node and self.link_bytes_per_ns:
            return max(per_line, self.line / self.link_bytes_per_ns)
        return per_line

    def store_run_ns(self, cpu_node: int, mem_node: int, misses: int) -> int:
        """The CPU's time for a run of ``misses`` store misses.  Stores are
        posted: the CPU goes on while fewer than mlp are in flight, so it
        waits only for the run's lines beyond the last mlp (the first line
        comes after the latency, the next ones a line time apart)."""
        if misses <= self.mlp:
            return misses * self.hit_ns
        key = (cpu_node, mem_node, misses)
        ns = self._runs.get(key)
        if ns is None:
            lat = self.latency[cpu_node][mem_node]
            ns = self._runs[key] = max(misses * self.hit_ns,
                                       int(lat + (misses - 1 - self.mlp) * self.line_ns(cpu_node, mem_node) + 0.5))
        return ns

    def clear_page_ns(self, cpu_node: int, mem_node: int) -> int:
        """A CPU's clear_page of one page of mem_node's memory, the bus to
        itself: a run of store misses, or, when its stores stream (whole
        lines written without reading them first: nothing to wait for), the
        page's bytes at the bus's rate (and the link's, for another node)."""
        lines = self.lines_per_page
        if not self.clear_streams:
            return self.store_run_ns(cpu_node, mem_node, lines)
        per_line = self._over_link(cpu_node, mem_node, self.line / self.bus_bytes_per_ns)
        return max(lines * self.hit_ns, int(lines * per_line + 0.5))

    def clear_rate(self, cpu_node: int, mem_node: int) -> float:
        """Bus bytes per ns of a CPU clearing whole pages of mem_node's
        memory (clear_page_ns; MemoryBus may give less)."""
        return self._clear_rate[cpu_node][mem_node]

    def page_traffic(self) -> int:
        """Bus bytes of a CPU clearing one page: each line once when the
        clear streams, else as any store miss (twice with write-allocate)."""
        return self.lines_per_page * (self.line if self.clear_streams else self.store_traffic)

    def touch_ns(self, cpu: int, pfn: int, mem_node: int, lines: int) -> int:
        """A CPU storing to the first ``lines`` lines of a page: hits for
        the lines its cache holds, a run of store misses for the rest."""
        cached = min(lines, self.cached_lines(cpu, pfn))
        return cached * self.hit_ns + self.store_run_ns(self.cpu_node[cpu], mem_node, lines - cached)

    # -- where lines are -------------------------------------------------------

    def cached_lines(self, cpu: int, pfn: int) -> int:
        """How many of the page's lines are in this CPU's cache."""
        entry = self.where.get(pfn)
        if entry is None:
            return 0
        group = self.cpu_group[cpu]
        if entry % self.groups != group:
            return 0
        entry //= self.groups
        lines = entry % (self.lines_per_page + 1)
        since = self.clock[group] - entry // (self.lines_per_page + 1)
        return max(0, min(lines, self.capacity - since))

    def scrubbed_lines(self, cpu: int) -> bool:
        """Whether this CPU's cache may still hold lines kscrubd cleared on
        it (free zeroed pages: a fault taking one finds some lines cached)."""
        group = self.cpu_group[cpu]
        return self.clock[group] - self.scrubbed[group] < self.capacity

    def wrote(self, cpu: int, runs: Iterable[tuple[int, int]], lines: int, kscrubd: bool = False) -> None:
        """The CPU wrote the first ``lines`` lines of the pages in ``runs``
        ((first pfn, count) each, in order): now in its cache, most recent
        last, and in no other.  ``kscrubd``: clearing free pages."""
        if lines <= 0:
            return
        group = self.cpu_group[cpu]
        per_page = self.lines_per_page + 1
        for first, n in runs:
            if n == 1:                         # a fault's page: one entry (the arithmetic below, for one)
                clock = self.clock[group] = self.clock[group] + lines
                self.where[first] = (clock * per_page + lines) * self.groups + group
                continue
            step = lines * per_page * self.groups
            keep = max(1, self.capacity // lines)
            if n > keep:                       # the early ones are out of the cache again already
                self.invalidate(first, n - keep)
                self.clock[group] += (n - keep) * lines
                first, n = first + n - keep, keep
            start = ((self.clock[group] + lines) * per_page + lines) * self.groups + group
            self.where.update(zip(range(first, first + n), range(start, start + n * step, step)))
            self.clock[group] += n * lines
        if kscrubd:
            self.scrubbed[group] = self.clock[group]
        if len(self.where) > self._prune_above:
            self._prune()

    def invalidate(self, first: int, n: int) -> None:
        """Memory of pages [first, first + n) was written by a device: no
        cache holds their lines any more."""
        where = self.where
        if n <= len(where):
            for pfn in range(first, first + n):
                where.pop(pfn, None)
        else:
            for pfn in [p for p in where if first <= p < first + n]:
                del where[pfn]

    def _prune(self) -> None:
        """Forget the entries no cache holds any more."""
        groups, per_page = self.groups, self.lines_per_page + 1
        live = {}
        for pfn, entry in self.where.items():
            group, rest = entry % groups, entry // groups
            if self.clock[group] - rest // per_page < self.capacity:
                live[pfn] = entry
        self.where = live
        self._prune_above = max(self._prune_above, 2 * len(live))

    # -- saved machines --------------------------------------------------------

    def state(self) -> dict:
        return {"clock": list(self.clock), "scrubbed": list(self.scrubbed), "where": sorted(self.where.items())}

    def restore(self, saved: dict | None) -> None:
        """State from state(); None: empty caches (a machine saved before they were modelled)."""
        if saved is None:
            return
        if len(saved["clock"]) != self.groups:
            raise ValueError(f"memory system: {len(saved['clock'])} caches saved, the machine has {self.groups}")
        self.clock = [int(c) for c in saved["clock"]]
        self.scrubbed = [int(c) for c in saved["scrubbed"]]
        self.where = {int(p): int(e) for p, e in saved["where"]}
