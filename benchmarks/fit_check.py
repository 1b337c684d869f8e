#!/usr/bin/env python3
"""How well altix-8's fitted values are determined by the seed's table.

Runs the seed's 9 rows with each fitted value of the profile at 80% and
120% (and once as shipped), then prints:
- the sensitivity table: each figure's ratio to the seed's, per change;
- leave-one-row-out cross-validation: the model linearised in the log of
  the fitted values (central differences of the runs above), the values
  re-fitted by least squares to 8 rows' 16 figures, the 9th row predicted,
  for each row; the worst predicted ratio.

    python benchmarks/fit_check.py [--profile altix-8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vmemu import pft  # noqa: E402
from vmemu.profiles import load_profile  # noqa: E402

COLUMNS = ("fault_wsec", "flt_cpu_s")


def fitted(name: str) -> list[tuple[str, str, float]]:
    """(section, key, value) of every value whose source says fitted."""
    prof = load_profile(name)
    out = []
    for full, source in sorted(prof.sources.items()):
        section, _, key = full.partition(".")
        if source.startswith("fitted") and section in ("memory", "cost", "bte"):
            out.append((section, key, prof.section(section)[key]))
    return out


def figures(profile: str) -> tuple[list[float], list[float], list[str]]:
    """Ours and the seed's figures (fault/wsec, flt/cpu/s of each row), and their names."""
    ours, seed, names = [], [], []
    for row, r in pft.compare_seed(profile, seed=0, backing="none"):
        for col in COLUMNS:
            ours.append(getattr(r, col))
            seed.append(float(row[col]))
            names.append(f"{row['kernel']}/{row['threads']} {col}")
    return ours, seed, names


def with_value(base: str, section: str, key: str, value, tmp: Path) -> str:
    path = tmp / f"{key}-{value}.toml"
    text = value if not isinstance(value, float) else repr(value)
    path.write_text(f'inherit = "{base}"\n[{section}]\n{key} = {{ value = {text}, source = "fit_check" }}\n')
    return str(path)


def scaled(value, factor):
    return type(value)(round(value * factor, 4)) if isinstance(value, float) else int(round(value * factor))


def lstsq(a: list[list[float]], b: list[float]) -> list[float]:
    """Least squares by the normal equations (a few unknowns)."""
    n = len(a[0])
    m = [[sum(r[i] * r[j] for r in a) for j in range(n)] + [sum(r[i] * y for r, y in zip(a, b))] for i in range(n)]
    for i in range(n):                       # Gauss-Jordan with partial pivoting
        p = max(range(i, n), key=lambda k: abs(m[k][i]))
        m[i], m[p] = m[p], m[i]
        if abs(m[i][i]) < 1e-12:
            continue
        for k in range(n):
            if k != i:
                f = m[k][i] / m[i][i]
                m[k] = [x - f * y for x, y in zip(m[k], m[i])]
    return [m[i][n] / m[i][i] if abs(m[i][i]) > 1e-12 else 0.0 for i in range(n)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="altix-8")
    ap.add_argument("--json")
    args = ap.parse_args()
    params = fitted(args.profile)
    base, seed, names = figures(args.profile)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for section, key, value in params:
            for f in (0.8, 1.2):
                path = with_value(args.profile, section, key, scaled(value, f), Path(tmp))
                runs[key, f] = figures(path)[0]
                print(f"ran {key} x{f}", file=sys.stderr)
    print("| figure | shipped | " + " | ".join(f"{k} -20% | {k} +20%" for _, k, _ in params) + " |")
    print("|---" * (2 + 2 * len(params)) + "|")
    for i, name in enumerate(names):
        cells = [f"{runs[k, f][i] / seed[i]:.3f}" for _, k, _ in params for f in (0.8, 1.2)]
        print(f"| {name} | {base[i] / seed[i]:.3f} | " + " | ".join(cells) + " |")
    # linearised model: d log(figure) / d log(value), central differences
    jac = [[(math.log(runs[k, 1.2][i]) - math.log(runs[k, 0.8][i])) / math.log(1.5) for _, k, _ in params]
           for i in range(len(names))]
    resid = [math.log(s) - math.log(b) for s, b in zip(seed, base)]
    worst = (1.0, "")
    print("\nleave-one-row-out (linearised): the row's predicted ratios ours/seed")
    for row in range(len(names) // 2):
        keep = [i for i in range(len(names)) if i // 2 != row]
        step = lstsq([jac[i] for i in keep], [resid[i] for i in keep])
        for i in (2 * row, 2 * row + 1):
            pred = math.exp(math.log(base[i]) + sum(j * d for j, d in zip(jac[i], step))) / seed[i]
            print(f"  {names[i]}: {pred:.3f}")
            if abs(math.log(pred)) > abs(math.log(worst[0])):
                worst = (pred, names[i])
    print(f"worst predicted ratio: {worst[0]:.3f} ({worst[1]})")
    if args.json:
        Path(args.json).write_text(json.dumps({"names": names, "seed": seed, "base": base,
                                               "runs": {f"{k} x{f}": v for (k, f), v in runs.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
