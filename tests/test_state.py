"""vmemu.state: save/restore round trips, determinism across a restore, and
refusal of every kind of bad file with its own message."""

import hashlib
import json
import random

import pytest

from helpers import tiny_machine
from vmemu import pft
from vmemu.arch.sn.bte import BTEFAIL_WERR
from vmemu.fs import procfs, topology
from vmemu.machine import check_invariants
from vmemu.mm.fail_page_alloc import FailPageAlloc
from vmemu.mm.gfp import GFP_HIGHUSER, GFP_KERNEL, GFP_ZERO
from vmemu.mm.mmzone import PCP_ZEROED, ZEROED
from vmemu.state import MAGIC, VERSION, StateError, load_state, save_state


def altix(seed=3):
    """Small Altix (2 nodes, BTE) with scrubd on and faults injected."""
    m = tiny_machine(page_size=16384, pages=512, max_order=8, nodes=2, base="altix-8", seed=seed)
    m.set_sysctl("scrub_stop", 2)
    for e in m.bte.all_engines():
        e.error_percent, e.error_code, e.hang_percent = 15, BTEFAIL_WERR, 5
    fpa = FailPageAlloc(rng=random.Random(seed))
    fpa.probability, fpa.times, fpa.min_order = 10, -1, 2
    fpa.ignore_gfp_wait = fpa.ignore_gfp_highmem = False
    m.alloc.fail_page_alloc = fpa
    return m


def workload(m, seed, steps=300):
    """Direct allocations and frees, fault jobs, sysctl writes and time; returns
    what it saw.  Keeps the pages it holds on m.held (freed on later calls)."""
    rng = random.Random(seed)
    held = getattr(m, "held", [])
    seen = []
    for i in range(steps):
        cpu = m.cpus[rng.randrange(len(m.cpus))]
        r = rng.random()
        if r < 0.4:
            order = rng.choice([0, 0, 1, 2, 4, 6])
            gfp = GFP_KERNEL | (GFP_ZERO if rng.random() < 0.5 else 0)
            pfn = m.alloc.alloc_pages(cpu, order, gfp)
            seen.append(pfn)
            if pfn is not None:
                held.append((pfn, order))
        elif r < 0.75 and held:
            pfn, order = held.pop(rng.randrange(len(held)))
            m.alloc.free_pages(cpu, pfn, order)
        elif r < 0.8:
            seen.append(pft.format_2004(pft.run_job(m, rng.randrange(2, 40) * m.page_size,
                                                    threads=rng.randrange(1, 3))))
        elif r < 0.85:
            m.set_sysctl("scrub_start", rng.choice([0, 3, 6, 99]))
        elif r < 0.9:
            m.set_scrub_policy(rng.choice(["order", "percentage"]))
        elif r < 0.95:
            m.alloc.drain_pages(cpu)
        else:
            m.advance(rng.randrange(10**10))
    m.held = held
    return seen


def free_lists(m):
    return [[[list(a.free_list) for a in z.free_area[k]] for k in (0, 1)] for z in m.zones]


def pcp_lists(m):
    return [[(cpu, [(list(p.list), p.low, p.high, p.batch) for p in lists]) for cpu, lists in z.pageset.items()]
            for z in m.zones]


def rendered(m):
    return {"vmstat": procfs.vmstat(m), "meminfo": procfs.meminfo(m), "buddyinfo": procfs.buddyinfo(m),
            "zeroinfo": procfs.zeroinfo(m), "zoneinfo": procfs.zoneinfo(m), "uptime": procfs.uptime(m),
            "loadavg": m.loadavg.text_fields(), "numastat": [topology.numastat(n) for n in m.nodes],
            "scrubd": m.scrub.totals(), "blocks": m.scrub.blocks_by_driver(), "bte": m.bte.totals(),
            "engines": [vars_of(e) for e in m.bte.all_engines()],
            "fpa": vars_of(m.alloc.fail_page_alloc)}


def vars_of(obj):
    return {k: v for k, v in vars(obj).items() if k not in ("m", "rng", "printk")}


def everything(m):
    return (m.snapshot(), rendered(m), dict(m.sysctl), m.scrub_policy, free_lists(m), pcp_lists(m),
            [bytes(z.page_state) for z in m.zones], m.now, m.seed, m.rng.getstate(),
            [e.rng.getstate() for e in m.bte.all_engines()], m.alloc.fail_page_alloc.rng.getstate())


@pytest.fixture
def saved(tmp_path):
    m = altix()
    workload(m, 1)
    path = str(tmp_path / "m.state")
    save_state(m, path)
    yield m, path
    m.close()


def test_round_trip_is_identical(saved):
    m, path = saved
    r = load_state(path)
    assert everything(r) == everything(m)
    assert r.profile.name == "altix-8" and r.profile.machine == m.profile.machine
    assert r.profile.cost == m.profile.cost and r.profile.bte == m.profile.bte
    assert [(c.time, c.user_ns, c.system_ns) for c in r.cpus] == [(c.time, c.user_ns, c.system_ns) for c in m.cpus]
    check_invariants(r)
    r.close()


def test_zeroed_memory_is_zero_and_the_rest_poisoned_after_restore(saved):
    m, path = saved
    r = load_state(path)
    zero = set()
    for z in r.zones:
        for order, area in enumerate(z.free_area[ZEROED]):
            zero.update(p for pfn in area.free_list for p in range(pfn, pfn + (1 << order)))
        for lists in z.pageset.values():
            zero.update(lists[PCP_ZEROED].list)
    assert zero and len(zero) < r.total_pages
    poison = b"\xaa" * r.page_size
    for z in r.zones:
        for pfn in range(z.zone_start_pfn, z.end_pfn):
            assert r.memory.read(pfn, 1) == (bytes(r.page_size) if pfn in zero else poison), pfn
    r.close()


def test_continued_workload_is_the_same_as_without_the_restore(tmp_path):
    a = altix(seed=9)
    never = altix(seed=9)
    workload(a, 5)
    workload(never, 5)
    path = str(tmp_path / "a.state")
    save_state(a, path)                 # lets a run until idle first
    never.run_until_idle()
    b = load_state(path)
    b.held = list(a.held)
    assert everything(b) == everything(never)
    outs = [workload(x, 6, steps=400) for x in (a, b, never)]
    assert outs[0] == outs[1] == outs[2]
    for x in (a, b):
        x.run_until_idle()
    never.run_until_idle()
    assert everything(a) == everything(b) == everything(never)
    assert never.counters()["prezero_alloc_zeroed"] > 0 and never.bte.totals()["completed"] > 0
    for x in (a, b, never):
        assert x.counters()["prezero_verify_fail"] == 0
        x.close()


def test_save_refuses_a_machine_that_cannot_get_idle(tmp_path):
    m = altix()
    for e in m.bte.all_engines():
        e.hang_percent = 100            # every transfer hangs, every retry too
    m.set_sysctl("scrub_start", 0)
    path = tmp_path / "hung.state"
    with pytest.raises(StateError, match="not idle.*hung"):
        save_state(m, str(path))
    assert not path.exists() and not list(tmp_path.iterdir())


def test_save_is_atomic_and_keeps_the_old_file_on_refusal(saved, tmp_path):
    m, path = saved
    before = open(path, "rb").read()
    m.bte.all_engines()[0].hang_percent = 100
    m.set_sysctl("scrub_start", 0)
    workload(m, 2, steps=50)
    with pytest.raises(StateError):
        save_state(m, path)
    assert open(path, "rb").read() == before


# -- refusals: each its own message -------------------------------------------------

def refused(path, **kw):
    with pytest.raises(StateError) as e:
        load_state(str(path), **kw)
    return str(e.value)


def test_corrupt_byte_is_refused(saved, tmp_path):
    _, path = saved
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01
    bad = tmp_path / "flip"
    bad.write_bytes(bytes(data))
    assert "SHA-256" in refused(bad)


def test_truncated_is_refused(saved, tmp_path):
    _, path = saved
    data = open(path, "rb").read()
    bad = tmp_path / "trunc"
    bad.write_bytes(data[:len(data) - 100])
    assert "truncated" in refused(bad)
    bad.write_bytes(data[:10])          # inside the header line
    assert "truncated" in refused(bad)


def test_empty_is_refused(tmp_path):
    bad = tmp_path / "empty"
    bad.write_bytes(b"")
    assert "empty" in refused(bad)


def test_foreign_magic_is_refused(tmp_path):
    bad = tmp_path / "foreign"
    bad.write_bytes(b'{"not": "a state"}\n')
    assert "not a vmemu state file" in refused(bad)


def test_future_version_is_refused(saved, tmp_path):
    _, path = saved
    data = open(path, "rb").read()
    bad = tmp_path / "future"
    bad.write_bytes(data.replace(f"{MAGIC} {VERSION} ".encode(), f"{MAGIC} {VERSION + 1} ".encode(), 1))
    assert "newer" in refused(bad)


def test_wrong_profile_is_refused(saved):
    _, path = saved
    msg = refused(path, profile_name="x86-64")
    assert "altix-8" in msg and "x86-64" in msg
    load_state(path, profile_name="altix-8").close()


def test_missing_file_is_refused(tmp_path):
    assert "cannot read" in refused(tmp_path / "nothing")


def test_checksum_valid_but_inconsistent_body_is_refused(saved, tmp_path):
    """A hand-edited body with a recomputed checksum: caught by the invariants."""
    import hashlib
    _, path = saved
    body = json.loads(open(path, "rb").read().split(b"\n", 1)[1])
    body["zones"][0]["free_pages"] += 1
    raw = json.dumps(body).encode()
    bad = tmp_path / "edited"
    bad.write_bytes(f"{MAGIC} {VERSION} {len(raw)} sha256:{hashlib.sha256(raw).hexdigest()}\n".encode() + raw)
    assert "inconsistent" in refused(bad)


def test_x86_round_trip_without_bte_or_fail_page_alloc(tmp_path):
    m = tiny_machine(pages=128, max_order=6, nodes=2, seed=4)
    m.set_sysctl("scrub_stop", 0)
    m.set_sysctl("scrub_start", 1)
    held = [m.alloc.alloc_pages(m.cpus[i % 4], i % 3, GFP_HIGHUSER | GFP_ZERO) for i in range(20)]
    for i, pfn in enumerate(held[::2]):
        m.alloc.free_pages(m.cpus[0], pfn, (2 * i) % 3)
    pft.run_job(m, 64 * 4096, threads=2)
    path = str(tmp_path / "x.state")
    save_state(m, path)
    r = load_state(path, profile_name="x86-64")
    assert r.snapshot() == m.snapshot() and free_lists(r) == free_lists(m) and pcp_lists(r) == pcp_lists(m)
    assert r.bte is None and r.alloc.fail_page_alloc is None
    r.close()
    m.close()


# -- the schema ----------------------------------------------------------------------

DATA = __import__("pathlib").Path(__file__).parent / "data"


def test_version_1_file_is_migrated_and_the_machine_goes_on_the_same():
    """tests/data/state-v1.state was saved by vmemu before the explicit schema
    (fields by reflection); state-v1.expect.json holds what that machine
    showed, and the row its next job gives and the state after it under
    today's model (tests/make_golden.py writes those two with the golden file)."""
    expect = json.loads((DATA / "state-v1.expect.json").read_text())
    m = load_state(str(DATA / "state-v1.state"), poison=False)
    try:
        assert json.loads(json.dumps(m.snapshot())) == expect["snapshot"]
        assert (m.now, m.bte.totals(), m.scrub.totals()) == (expect["now"], expect["bte"], expect["scrub"])
        assert m.alloc.fail_page_alloc.calls == expect["fpa_calls"]
        r = pft.run_job(m, 4 << 20, threads=2, rep=1, cachelines=1)
        assert pft.format_2004(r) == expect["next_row"]
        m.run_until_idle()
        assert json.loads(json.dumps(m.snapshot())) == expect["after"]
    finally:
        m.close()


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["cpus"][0].update(shadow=1), "cpu: unknown field shadow"),
    (lambda s: s["loadavg"].pop("samples"), "loadavg: missing field samples"),
    (lambda s: s["zones"][0]["lock"].update(acquired="many"), "zone lock.acquired: str, expected int"),
    (lambda s: s["buses"][0].update(series=[[1, 2]]), "inconsistent state"),
])
def test_fields_outside_the_schema_are_refused(saved, tmp_path, edit, message):
    raw = open(saved[1], "rb").read().split(b"\n", 1)[1]
    body = json.loads(raw)
    edit(body)
    raw = json.dumps(body).encode()
    bad = tmp_path / "bad.state"
    bad.write_bytes(f"{MAGIC} {VERSION} {len(raw)} sha256:{hashlib.sha256(raw).hexdigest()}\n".encode() + raw)
    with pytest.raises(StateError, match=message):
        load_state(str(bad))


def _as_version_2(path, name=None):
    """Rewrite a saved file as version 2 wrote it: no caches, no [memory], each
    lock's line by its last taker; ``name`` renames the profile."""
    head, _, body = open(path, "rb").read().partition(b"\n")
    s = json.loads(body)
    del s["memsys"], s["profile"]["memory"]
    if name:
        s["profile"]["name"] = name
    for z in s["zones"]:
        takes = z["lock"].pop("takes")
        z["lock"]["last_cpu"] = takes[-1][1] if takes else None
    body = json.dumps(s).encode()
    with open(path, "wb") as f:
        f.write(f"{MAGIC} 2 {len(body)} sha256:{hashlib.sha256(body).hexdigest()}\n".encode() + body)


def test_version_2_file_is_migrated_with_empty_caches(tmp_path):
    m = altix()
    workload(m, 3, steps=50)
    path = str(tmp_path / "v2.state")
    save_state(m, path)
    _as_version_2(path)
    r = load_state(path)
    try:
        assert free_lists(r) == free_lists(m) and r.memsys.where == {}
        assert r.profile.memory == m.profile.memory
        assert [z.lock.last_cpu for z in r.zones] == [z.lock.last_cpu and r.cpus[z.lock.last_cpu.id]
                                                       for z in m.zones]
        pft.run_job(r, 4 << 20, threads=2)           # and it goes on
    finally:
        r.close()
        m.close()


def test_version_2_file_of_an_unshipped_profile_is_refused_with_one_line(tmp_path):
    m = altix()
    path = str(tmp_path / "v2.state")
    save_state(m, path)
    m.close()
    _as_version_2(path, name="my-altix")
    with pytest.raises(StateError) as e:
        load_state(path)
    assert "\n" not in str(e.value) and "predate" in str(e.value) and "my-altix" in str(e.value)
