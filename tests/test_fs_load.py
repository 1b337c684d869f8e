"""scripts/stress.sh in CI: 16 shell clients for ~10 s, no error, no hang,
no memory growth of the daemon after a warm-up run."""

import pytest
import os
import re
import subprocess
import sys

from conftest import mounting, read

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stress(mp, clients, seconds):
    env = dict(os.environ, VMEMU=f"{sys.executable} -m vmemu.cli")
    # The timeout is the deadlock check: every client stops after `seconds`.
    p = subprocess.run([os.path.join(ROOT, "scripts/stress.sh"), str(clients), str(seconds), mp],
                       capture_output=True, text=True, env=env, timeout=seconds + 60)
    assert p.returncode == 0, p.stdout + p.stderr[-2000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", p.stdout)}, p.stdout


@pytest.mark.slow
def test_sixteen_clients(capsys):
    with mounting("x86-64", "--backing", "none") as mp:
        stress(mp, 16, 2)                              # warm-up: caches, thread pools, first jobs
        r, out = stress(mp, 16, 10)
        assert r["errors"] == 0 and r["clients"] == 16
        assert r["operations"] > 1000 and r["fault_jobs"] > 0
        assert r["growth_kb"] < 20 * 1024, out
        assert read(mp, "proc/meminfo").startswith("MemTotal:")
    with capsys.disabled():
        print("\n" + out.strip())
