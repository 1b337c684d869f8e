#!/usr/bin/env python3
"""The seed's pft table next to ours on one profile, with ratios, as text or
Markdown (docs/model.md is made with --markdown).

    python benchmarks/seed_table.py [--profile altix-8] [--markdown] [--params]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vmemu import pft  # noqa: E402
from vmemu.profiles import SECTIONS, load_profile  # noqa: E402


def markdown(pairs) -> str:
    out = ["| kernel | threads | seed fault/wsec | vmemu | ratio | seed flt/cpu/s | vmemu | ratio |"
           " seed sys s | vmemu sys s | seed wall s | vmemu wall s |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row, r in pairs:
        fw, fc = float(row["fault_wsec"]), float(row["flt_cpu_s"])
        out.append(f"| {row['kernel']} | {row['threads']} | {fw:,.0f} | {r.fault_wsec:,.0f} | "
                   f"{r.fault_wsec / fw:.2f} | {fc:,.0f} | {r.flt_cpu_s:,.0f} | {r.flt_cpu_s / fc:.2f} | "
                   f"{row['system_s']} | {r.system_ns / 1e9:.3f} | {row['wall_s']} | {r.wall_ns / 1e9:.3f} |")
    return "\n".join(out)


def params(profile) -> str:
    out = ["| parameter | value | source |", "|---|---|---|"]
    for section in SECTIONS:
        for key, value in profile.section(section).items():
            if not isinstance(value, dict):       # machine's [cpu] and [cache] tables have rows of their own
                out.append(f"| {section}.{key} | {value} | {profile.sources.get(f'{section}.{key}', '')} |")
    for name, leaf in profile.cache.items():
        value = ", ".join(f"{k} {v}" for k, v in leaf.items())
        out.append(f"| cache.{name} | {value} | {profile.sources.get(f'cache.{name}', '')} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", default="altix-8")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--params", action="store_true", help="print the profile's parameter table")
    args = ap.parse_args()
    profile = load_profile(args.profile)
    if args.params:
        print(params(profile))
        return
    pairs = pft.compare_seed(profile, progress=pft.Progress(sys.stderr))
    print(markdown(pairs) if args.markdown else pft.format_comparison(pairs))


if __name__ == "__main__":
    main()
