"""The seed's experiment: its table (data/seed-pft-8way.csv) and our rows beside it."""

from __future__ import annotations

from .job import JobResult
from .rows import run_rows

SEED_CSV = "seed-pft-8way.csv"


def seed_rows() -> list[dict]:
    """The seed's table (data/seed-pft-8way.csv), one dict per row."""
    import csv
    from importlib.resources import files
    text = files("vmemu.data").joinpath(SEED_CSV).read_text()
    return list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))


def seed_row_spec(row: dict, profile="altix-8", seed: int = 0, backing: str | None = "none",
                  overrides: dict | None = None) -> dict:
    kernel = "stock" if row["kernel"] == "stock" else "prezero"
    return {"machine": dict(profile=profile, seed=seed, kernel=kernel,
                            prezeroed=row["kernel"] == "prezero-allzeroed", backing=backing,
                            overrides=overrides),
            "job": dict(nbytes=int(row["gb"]) << 30, threads=int(row["threads"]), rep=int(row["rep"]),
                        cachelines=1)}


def compare_seed(profile="altix-8", seed: int = 0, backing: str | None = "none",
                 overrides: dict | None = None, progress=None, jobs: int | None = None
                 ) -> list[tuple[dict, JobResult]]:
    """Every seed row next to ours."""
    rows = seed_rows()
    specs = [seed_row_spec(row, profile, seed, backing, overrides) for row in rows]
    return list(zip(rows, run_rows(specs, jobs, progress)))
