"""The seed's experiment: its table (data/seed-pft-8way.csv) and our rows beside it."""

from __future__ import annotations

from .job import JobResult
from .rows import run_rows

SEED_CSV = "seed-pft-8way.csv"

# A table's kernel names, as (pft --kernel, --prezeroed): the seed's rows
# without the patch, with it, and its all-zeroed row (the patched kernel
# with every free block zeroed before the run).
KERNELS = {"stock": ("stock", False), "prezero": ("prezero", False), "prezero-allzeroed": ("prezero", True)}


def seed_text() -> str:
    """The seed's table as shipped in the package (data/seed-pft-8way.csv)."""
    from importlib.resources import files
    return files("vmemu.data").joinpath(SEED_CSV).read_text()


def seed_rows() -> list[dict]:
    """The seed's table, one dict of its cells (text) per row."""
    import csv
    return list(csv.DictReader(line for line in seed_text().splitlines() if not line.startswith("#")))


def seed_row_spec(row: dict, profile="altix-8", seed: int = 0, backing: str | None = "none",
                  overrides: dict | None = None) -> dict:
    """The pft row spec (run_row) of a table row: its kernel name through
    KERNELS, its size, threads, repetitions and cache lines (default 1)."""
    kernel, prezeroed = KERNELS[row["kernel"]]
    cachelines = row.get("cachelines")
    return {"machine": dict(profile=profile, seed=seed, kernel=kernel, prezeroed=prezeroed, backing=backing,
                            overrides=overrides),
            "job": dict(nbytes=int(row["gb"]) << 30, threads=int(row["threads"]), rep=int(row["rep"]),
                        cachelines=1 if cachelines in (None, "") else int(cachelines))}


def compare_seed(profile="altix-8", seed: int = 0, backing: str | None = "none",
                 overrides: dict | None = None, progress=None, jobs: int | None = None
                 ) -> list[tuple[dict, JobResult]]:
    """Every seed row next to ours."""
    rows = seed_rows()
    specs = [seed_row_spec(row, profile, seed, backing, overrides) for row in rows]
    return list(zip(rows, run_rows(specs, jobs, progress)))
