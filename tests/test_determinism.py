"""Same profile, same seed, same operations: identical counters and times."""

import random

from vmemu.machine import Machine
from vmemu.mm.gfp import GFP_HIGHUSER, GFP_ZERO
from vmemu import pft


def workload(seed):
    m = Machine("x86-64", seed=seed, backing="none")
    rng = random.Random(seed)
    held = []
    for _ in range(3000):
        cpu = m.cpus[rng.randrange(len(m.cpus))]
        if held and rng.random() < 0.45:
            pfn, order = held.pop(rng.randrange(len(held)))
            m.alloc.free_pages(cpu, pfn, order)
        else:
            order = rng.choice([0, 0, 0, 1, 3, 5])
            pfn = m.alloc.alloc_pages(cpu, order, GFP_HIGHUSER | (GFP_ZERO if rng.random() < 0.5 else 0))
            if pfn is not None:
                held.append((pfn, order))
    r = pft.run_job(m, 64 << 20, threads=2, rep=2)
    return m.snapshot(), r


def test_same_seed_same_everything():
    a, ra = workload(7)
    b, rb = workload(7)
    assert a == b
    assert ra == rb
    assert pft.format_2004(ra) == pft.format_2004(rb)


def test_different_workload_differs():
    a, _ = workload(7)
    b, _ = workload(8)
    assert a != b      # the check above is able to fail


def test_real_and_metadata_backing_give_the_same_virtual_times():
    rows = []
    for backing in ("real", "none"):
        m = Machine("x86-64", seed=1, backing=backing)
        rows.append(pft.format_2004(pft.run_job(m, 32 << 20, threads=2, rep=2)))
        m.close()
    assert rows[0] == rows[1]
