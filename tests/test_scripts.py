import pytest
"""The shell scripts users run: demo.sh and pft.sh run clean against a real mount."""

import os

from conftest import mounting, sh

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_demo_runs_clean():
    with mounting("x86-64") as mp:
        r = sh(f"sh {ROOT}/scripts/demo.sh {mp}", timeout=300)
        assert r.returncode == 0, r.stderr
        assert "MemZero:" in r.stdout and "fault/wsec" in r.stdout
        assert "scrub_start: refused (EINVAL)" in r.stdout
        assert r.stderr == ""


@pytest.mark.slow
def test_pft_script_prints_the_eight_rows():
    with mounting("altix-8", "--backing", "none", "--speed", "50") as mp:
        r = sh(f"PFT_BYTES=32M sh {ROOT}/scripts/pft.sh {mp}", timeout=600)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        rows = [line for line in lines if line.strip() and line.split()[0].isdigit()]
        assert len(rows) == 8 and [int(row.split()[2]) for row in rows] == [1, 2, 4, 8] * 2
        with open(f"{mp}/proc/sys/vm/scrub_start") as f:
            assert f.read() == "99\n"
