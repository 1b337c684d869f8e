#!/usr/bin/env python3
"""The golden virtual-time results: fixed pft configurations whose every
observable figure (helpers.observe: the rows, machine.snapshot(), scrubd,
BTE and bus totals, load average, and a digest of real memory) must not
change when the host-side implementation does.

    python tests/make_golden.py          # rewrite tests/golden_virtual_time.json

Regenerate ONLY when the modelled semantics were changed on purpose or a
profile value (vmemu/profiles/*.toml) was refitted; never to make a
host-side optimisation pass.  tests/test_golden_virtual_time.py compares.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from helpers import observe, run_with_faults  # noqa: E402
GOLDEN = HERE / "golden_virtual_time.json"

MiB = 1 << 20


def pft_case(profile, kernel, threads, nbytes, rep=1, backing=None, cachelines=1, bzero=False,
             prezeroed=False):
    from vmemu import pft
    m = pft.prepare_machine(profile, 0, kernel, prezeroed=prezeroed, backing=backing)
    try:
        r = pft.run_job(m, nbytes, threads, rep, cachelines, bzero=bzero)
        # a second job on the same machine: state carried over from the first
        r2 = pft.run_job(m, nbytes // 2, threads, 1, cachelines, bzero=bzero)
        m.run_until_idle()
        return observe(m, [r, r2])
    finally:
        m.close()


def bte_case(seed=5):
    m, rows = run_with_faults(seed)
    try:
        return observe(m, [], rows)
    finally:
        m.close()


CASES = {
    "x86-64 stock 1 thread real 64M": lambda: pft_case("x86-64", "stock", 1, 64 * MiB, backing="real"),
    "x86-64 prezero 2 threads real 64M": lambda: pft_case("x86-64", "prezero", 2, 64 * MiB, backing="real"),
    "x86-64 prezeroed stock 1 thread real 32M c4": lambda: pft_case("x86-64", "stock", 1, 32 * MiB,
                                                                    backing="real", cachelines=4,
                                                                    prezeroed=True),
    **{f"altix-8 none {k} {t} threads 256M x2": (lambda k=k, t=t: pft_case("altix-8", k, t, 256 * MiB, 2, "none"))
       for k in ("stock", "prezero") for t in (1, 2, 8)},
    "altix-8 none prezero 4 threads 64M c3 bzero": lambda: pft_case("altix-8", "prezero", 4, 64 * MiB, 1, "none",
                                                                    cachelines=3, bzero=True),
    "altix bte errors and hangs seed 5": bte_case,
}


def canonical(data) -> str:
    """The byte-for-byte form that is stored and compared (tuples become lists)."""
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def collect(names=None) -> dict:
    return {name: json.loads(canonical(CASES[name]())) for name in (names or CASES)}


def migrated_expectations() -> None:
    """tests/data/state-v1.expect.json's figures after the first job of the
    migrated version 1 machine (its state before the job is the file's and
    does not change)."""
    from vmemu import pft
    from vmemu.state import load_state
    data = HERE / "data"
    expect = json.loads((data / "state-v1.expect.json").read_text())
    m = load_state(str(data / "state-v1.state"), poison=False)
    try:
        r = pft.run_job(m, 4 << 20, threads=2, rep=1, cachelines=1)
        expect["next_row"] = pft.format_2004(r)
        m.run_until_idle()
        expect["after"] = json.loads(json.dumps(m.snapshot()))
    finally:
        m.close()
    (data / "state-v1.expect.json").write_text(json.dumps(expect, sort_keys=True))


def main() -> int:
    data = collect()
    GOLDEN.write_text(canonical(data))
    migrated_expectations()
    print(f"wrote {GOLDEN} ({len(data)} cases, {os.path.getsize(GOLDEN):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
