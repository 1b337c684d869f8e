"""Virtual-time results are independent of the host-side implementation.

Each case of tests/make_golden.py (fixed pft runs on x86-64 with real memory,
altix-8 metadata-only with 1, 2 and 8 threads, an Altix run with BTE errors
and hangs injected) must reproduce tests/golden_virtual_time.json byte for
byte: JobResults, machine.snapshot(), scrubd/BTE/bus totals, the per-CPU
lists and a digest of real memory.  A failure means an optimisation changed
what is modelled.  Regenerate the file (python tests/make_golden.py) only
after a deliberate semantic change or a refit of a profile value.
"""

from __future__ import annotations

import json

import pytest

from make_golden import CASES, GOLDEN, canonical


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


# the real-backing cases (a few seconds each) run in the full suite only
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if " real " in n else n for n in CASES])
def test_case_matches_golden(golden, name):
    assert name in golden, f"{name!r} missing from {GOLDEN.name}: run tests/make_golden.py"
    got = canonical(CASES[name]())
    want = canonical(golden[name])
    if got != want:
        # a readable pointer to the first difference before the full comparison
        g, w = json.loads(got), golden[name]
        for key in sorted(set(g) | set(w)):
            assert g.get(key) == w.get(key), f"{name}: {key} differs from the golden run"
    assert got == want


def test_golden_file_has_no_stale_cases(golden):
    assert sorted(golden) == sorted(CASES)
