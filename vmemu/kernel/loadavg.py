"""The kernel's load average (kernel/sched/loadavg.c, CALC_LOAD in 2.6).

Every LOAD_FREQ (5 s of virtual time) the number of runnable tasks is
sampled and folded into three exponentially decayed averages in 11-bit fixed
point, with the kernel's constants, so /proc/loadavg reads as it would.
"""

from __future__ import annotations

FSHIFT = 11
FIXED_1 = 1 << FSHIFT
LOAD_FREQ_NS = 5 * 1_000_000_000          # 5 s (the kernel's 5*HZ+1 ticks)
EXP_1, EXP_5, EXP_15 = 1884, 2014, 2037     # 1/exp(5s/1min), 1/exp(5s/5min), 1/exp(5s/15min)


def calc_load(load: int, exp: int, active: int) -> int:
    newload = load * exp + active * (FIXED_1 - exp)
    if active >= load:
        newload += FIXED_1 - 1
    return newload // FIXED_1


class LoadAvg:
    """avenrun[3] and the next sample time."""

    def __init__(self):
        self.avenrun = [0, 0, 0]
        self.next_sample = LOAD_FREQ_NS
        self.samples = 0

    def sample_until(self, now: int, nr_running: int) -> None:
        """Fold in every sample due up to ``now`` with the given run-queue length."""
        active = nr_running * FIXED_1
        while self.next_sample <= now:
            a = self.avenrun
            a[0] = calc_load(a[0], EXP_1, active)
            a[1] = calc_load(a[1], EXP_5, active)
            a[2] = calc_load(a[2], EXP_15, active)
            self.next_sample += LOAD_FREQ_NS
            self.samples += 1

    def load1(self) -> float:
        return self.avenrun[0] / FIXED_1

    def loads(self) -> tuple[float, float, float]:
        one, five, fifteen = (x / FIXED_1 for x in self.avenrun)
        return one, five, fifteen

    def text_fields(self) -> list[str]:
        """The three values as /proc/loadavg prints them (LOAD_INT.LOAD_FRAC)."""
        out = []
        for x in self.avenrun:
            x += FIXED_1 // 200
            out.append(f"{x >> FSHIFT}.{((x & (FIXED_1 - 1)) * 100) >> FSHIFT:02d}")
        return out
