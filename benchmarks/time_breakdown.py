#!/usr/bin/env python3
"""Where the time goes: the seed's configurations (altix-8, -g 4 -r 3),
stock against prezero at 1 and 8 threads, each job's window of the ledger
as machine CPU time per fault, by who spent it and on what; with the
zeroing kscrubd did ahead of the job that the faults used (what
--charge task charges).  docs/time.md's table and picture are made with

    python benchmarks/time_breakdown.py --markdown --plot docs/time.png
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vmemu import pft  # noqa: E402
from vmemu.kernel.ledger import IDLE  # noqa: E402

CONFIGS = [("stock", 1), ("prezero", 1), ("stock", 8), ("prezero", 8)]
# the ledger's activities, gathered for the table and the bars
TASK_GROUPS = {"do_page_fault": "fault entry", "clear_page": "clear_page in the fault",
               "buffered_rmqueue": "allocator", "free_hot_cold_page": "allocator", "zone->lock": "allocator",
               "page_table_lock": "mm locks", "mmap_sem": "mm locks", "user:touch": "user: touch",
               "user:bzero": "user: touch", "zap_pte_range": "exit_mmap"}
GROUPS = ["fault entry", "clear_page in the fault", "allocator", "mm locks", "user: touch", "exit_mmap",
          "kscrubd clear_page", "kscrubd, other kernel", "zeroing ahead (charged)"]


def group(task: str, activity: str) -> str | None:
    """The group of a ledger entry; None for idle.  A lock's spin and line
    transfer go with the lock (an activity this table does not know fails)."""
    if task == IDLE:
        return None
    if task == "pft":
        return TASK_GROUPS[activity.split(":", 1)[1] if activity.startswith(("spin:", "cacheline:")) else activity]
    return "kscrubd clear_page" if task.startswith("kscrubd") and activity == "clear_page" else "kscrubd, other kernel"


def breakdown(kernel: str, threads: int, gigabytes: int = 4, rep: int = 3) -> tuple[pft.JobResult, dict]:
    """One row under --charge task (its flt/cpu/s also counts the zeroing
    done ahead), and its machine CPU time per fault by group, in µs."""
    spec = {"machine": dict(profile="altix-8", kernel=kernel, backing="none", charge="task"),
            "job": dict(nbytes=gigabytes << 30, threads=threads, rep=rep)}
    r = pft.run_row(spec)
    per = {g: 0.0 for g in GROUPS}
    for (_cpu, task, act), ns in r.ledger.cpu.items():
        g = group(task, act)
        if g:
            per[g] += ns / r.pages / 1000
    per["zeroing ahead (charged)"] = r.charged_ns / r.pages / 1000
    return r, per


TASK = GROUPS[:6]


def markdown(rows) -> str:
    out = ["| kernel | threads | task µs/fault | of which clear_page | kscrubd during the job | "
           "machine CPU µs/fault | zeroing the faults took from kscrubd | task + that zeroing | fault/wsec |",
           "|---|---|---|---|---|---|---|---|---|"]
    for (kernel, threads), (r, per) in rows:
        task = sum(per[g] for g in TASK)
        kscrubd = per["kscrubd clear_page"] + per["kscrubd, other kernel"]
        ahead = per["zeroing ahead (charged)"]
        out.append(f"| {kernel} | {threads} | {task:.2f} | {per['clear_page in the fault']:.2f} | {kscrubd:.2f} | "
                   f"{task + kscrubd:.2f} | {ahead:.2f} | {task + ahead:.2f} | {r.fault_wsec:,.0f} |")
    return "\n".join(out)


def detail(rows) -> str:
    out = ["| µs per fault | " + " | ".join(f"{k} {t}" for (k, t), _ in rows) + " |",
           "|---|" + "---|" * len(rows)]
    for g in GROUPS:
        out.append(f"| {g} | " + " | ".join(f"{per[g]:.2f}" for _, (_r, per) in rows) + " |")
    return "\n".join(out)


def plot(rows, path: str) -> None:
    """Two stacked bars per configuration: the job's machine CPU time (its
    window of the ledger) and the faults' own cost (the task's time and the
    zeroing kscrubd did for the pages it took, whenever it did it)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    labels = [f"{k}\n{t} thread{'s' if t > 1 else ''}" for (k, t), _ in rows]
    views = ((axes[0], GROUPS[:-1], "the job's machine CPU time (ledger)"),
             (axes[1], TASK + ["zeroing ahead (charged)"], "the faults' cost (--charge task)"))
    colours = {g: f"C{i}" for i, g in enumerate(GROUPS)}
    for ax, groups, title in views:
        bottom = [0.0] * len(rows)
        for g in groups:
            values = [per[g] for _, (_r, per) in rows]
            ax.bar(labels, values, bottom=bottom, label=g, color=colours[g])
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_title(title)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("CPU µs per fault (altix-8, pft -g 4 -r 3)")
    handles = {h.get_label(): h for ax in axes for h in ax.get_legend_handles_labels()[0]}
    axes[1].legend([handles[g] for g in GROUPS], GROUPS, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="Markdown tables (docs/time.md)")
    ap.add_argument("--plot", metavar="FILE.png", help="stacked bars of the groups")
    ap.add_argument("-g", type=int, default=4, help="gigabytes per repetition (the seed's: 4)")
    ap.add_argument("-r", type=int, default=3, help="repetitions (the seed's: 3)")
    args = ap.parse_args(argv)
    rows = [((k, t), breakdown(k, t, args.g, args.r)) for k, t in CONFIGS]
    print(markdown(rows))
    print()
    print(detail(rows))
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
