"""The seed's pft table, reproduced on the altix-8 profile (docs/model.md),
through `vmemu validate --seed --csv` as a user checks it (its rows in
parallel, one worker process per host CPU).

The target: every row within 15% on fault/wsec and on flt/cpu/s, from the
one profile.  Today all 18 figures are within 11% (the worst: prezero 1
thread, 1.11); a second test holds a 12% line so the fit cannot slip back
unnoticed.
"""

import csv
import io

import pytest

from conftest import cli
from vmemu.pft import validate

pytestmark = pytest.mark.slow      # a minute of emulation: not in the quick loop

ROWS = [("stock", t) for t in "1248"] + [("prezero", t) for t in "1248"] + [("prezero-allzeroed", "1")]


@pytest.fixture(scope="module")
def rows():
    p = cli("validate", "--seed", "--profile", "altix-8", "--csv", timeout=900)
    assert p.returncode == 0, p.stderr         # exit 0: every checked figure within the 15% default
    return list(csv.DictReader(io.StringIO(p.stdout)))


def ratios(rows):
    for r in rows:
        for column in validate.DEFAULT_CHECKED:
            yield f"{r['kernel']}/{r['threads']} {column}", float(r[f"{column}_ratio"])


def ours(rows) -> dict:
    return {(r["kernel"], int(r["threads"])): float(r["fault_wsec_ours"]) for r in rows}


def test_all_nine_rows_present(rows):
    assert [(r["kernel"], r["threads"]) for r in rows] == ROWS
    for r in rows:             # each row faulted the seed's pages: fault/wsec x wall (printed to the ms)
        pages = int(r["gb"]) * 2**30 * int(r["rep"]) // 16384
        rate = float(r["fault_wsec_ours"])
        assert abs(rate * float(r["wall_s_ours"]) - pages) <= rate * 0.0005 + 1, r


def test_every_figure_within_15_percent(rows):
    low, high = validate.band(0.15)
    bad = {name: x for name, x in ratios(rows) if not low <= x <= high}
    assert not bad, bad
    assert all(r["within"] == "yes" for r in rows)


def test_every_figure_within_12_percent_as_fitted(rows):
    low, high = validate.band(0.12)
    bad = {name: x for name, x in ratios(rows) if not low <= x <= high}
    assert not bad, bad


def test_the_shape_of_the_seed(rows):
    by = ours(rows)
    stock = [by["stock", t] for t in (1, 2, 4, 8)]
    assert stock == sorted(stock) and stock[3] < 4 * stock[0]          # sublinear scaling
    flat = [by["prezero", t] for t in (1, 2, 4)]
    assert max(flat) / min(flat) < 1.15                                  # the flat rows
    assert by["prezero", 8] < min(flat)                                  # 8 threads fall back
    assert by["prezero-allzeroed", 1] > 7 * by["stock", 1]               # "factor 8"
