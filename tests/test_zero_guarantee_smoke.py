"""benchmarks/zero_guarantee.py --smoke: no dirty byte handed out, no page lost."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "zero_guarantee.py"


def test_smoke_run_hands_out_no_dirty_byte_and_loses_no_page():
    p = subprocess.run([sys.executable, str(SCRIPT), "--smoke"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["faults"] >= 20_000 and r["gfp_zero_pages"] >= r["faults"]
    assert r["dirty_bytes"] == 0 and r["sweep_dirty_bytes"] == 0 and r["verify_fail"] == 0
    assert r["pages_lost"] == 0 and r["invariants"] == "ok"
    # the run did exercise what it claims to
    assert r["bte_errors_injected"] > 0 and r["bte_hangs_injected"] > 0 and r["bte_completed"] > 0
    assert r["bte_errors_injected"] == r["bte_errors_seen"] == r["scrubd_redone_blocks"]
    assert r["bte_hangs_injected"] == r["bte_timeouts_seen"] == r["bte_retries_seen"]
    assert r["served_prezeroed"] > 0 and r["ok"] is True
