"""pft --timeline: the machine sampled every interval of virtual time while
a job runs (between two scheduler steps: Timeline.pacer), one CSV row per
sample: per node free zeroed and not-zeroed kB, kscrubd's state and BTE
engines busy; faults so far; per CPU the busy fraction of the interval."""

from __future__ import annotations


class Sampler:
    """The timeline's pacer for one job: a row every ``interval`` ns."""

    def __init__(self, machine, interval: int):
        self.m = machine
        self.interval = interval
        self.rows: list[dict] = []
        self.t0 = None
        self.last = None                      # (t, per-CPU busy ns, faults) of the last sample

    def __call__(self, t: int) -> None:
        m = self.m
        m.timeline.pace_at = t + self.interval
        busy = [c.user_ns + c.system_ns for c in m.cpus]
        faults = m.counters()["pgfault"]
        if self.t0 is None:
            self.t0, self.last = t, (t, busy, faults)
            self.faults0 = faults
        lt, lbusy, _ = self.last
        row = {"t_ms": round((t - self.t0) / 1e6, 3), "faults": faults - self.faults0}
        for node in m.nodes:
            zeroed = sum(z.zero_pages for z in node.zones)
            free = sum(z.free_pages for z in node.zones)
            row[f"node{node.id}_zeroed_kb"] = zeroed * m.page_size // 1024
            row[f"node{node.id}_not_zeroed_kb"] = (free - zeroed) * m.page_size // 1024
            row[f"node{node.id}_kscrubd"] = m.scrub.daemons[node.id].state.split()[0]
            if m.bte is not None:
                row[f"node{node.id}_bte_busy"] = sum(e.busy for e in m.bte.engines[node.id])
        span = t - lt
        for c, now, before in zip(m.cpus, busy, lbusy):
            row[f"cpu{c.id}_busy"] = round(min(1.0, (now - before) / span), 3) if span > 0 else 0.0
        self.rows.append(row)
        self.last = (t, busy, faults)


def csv_text(results) -> str:
    """Every row's samples, tagged with its thread count, as one CSV."""
    rows = [dict({"threads": r.threads}, **s) for r in results for s in r.samples]
    if not rows:
        return ""
    head = list(rows[0])
    return "\n".join([",".join(head)] + [",".join(str(row.get(k, "")) for k in head) for row in rows]) + "\n"
