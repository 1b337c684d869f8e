"""benchmarks/run_all.py in its tiny smoke mode: it runs and prints its table.

No timing is asserted here (CI machines are shared and noisy); the numbers
are for docs/performance.md, from a full run.
"""

from __future__ import annotations

import pytest
import json
import subprocess
import sys
from pathlib import Path

RUN_ALL = Path(__file__).parent.parent / "benchmarks" / "run_all.py"


@pytest.mark.slow
def test_run_all_smoke_prints_the_table(tmp_path):
    out = tmp_path / "rows.json"
    p = subprocess.run([sys.executable, str(RUN_ALL), "--smoke", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("machine: ")
    header = next(line for line in lines if line.strip().startswith("measure"))
    for column in ("ours", "baseline", "ratio", "target"):
        assert column in header
    for section in ("fault path", "zeroing: scrubd", "zeroing: --prezeroed", "control plane",
                    "scale: altix-512 pft", "growth: host us per fault", "rss: idle", "rss: peak",
                    "whole run: vmemu pft", "host s (wall / CPU)"):
        assert any(section in line for line in lines), f"no {section!r} row:\n{p.stdout}"
    rows = json.loads(out.read_text())["rows"]
    assert all(len(row) == 5 for row in rows)
