"""Nothing lost, nothing leaked: random sequences of everything the
machine can be asked to do (allocations of every order with and without
__GFP_ZERO, frees, small fault jobs, drains, scrubd on both policies with
hostile sysctl values, virtual time, BTE errors and hangs, fail_page_alloc),
with the invariants checked after every step:

- check_invariants (conservation, list integrity, alignment, zeroed accounting);
- pages held + free (in flight included) + per-CPU == total, and every block
  scrubd has in flight is accounted for exactly once;
- every page handed out for __GFP_ZERO reads as zero (read here, from real memory);
- every block on a ZEROED list and every page on a zeroed per-CPU list is
  zero in real memory (so the zero guarantee does not rest only on the
  allocator's own verify, which clears what it catches);
- prezero_verify_fail stays 0.

Steps run: max_examples x stateful_step_count per machine class, at least
10^5 in all; VMEMU_STATEFUL_SCALE=N multiplies the examples for long runs.
The figure actually run is printed at the end and asserted by the last test.
"""

import os
import random
import shutil
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from helpers import tiny_machine
from vmemu import pft
from vmemu.machine import check_invariants
from vmemu.mm.fail_page_alloc import FailPageAlloc
from vmemu.mm.gfp import GFP_COLD, GFP_DMA, GFP_HIGHUSER, GFP_KERNEL, GFP_ZERO
from vmemu.mm.mmzone import PCP_ZEROED, PS_FREE, ZEROED
from vmemu.mm.page_alloc import PageAllocError
from vmemu.mm.scrubd import Kscrubd
from vmemu.state import StateError, load_state, save_state

pytestmark = pytest.mark.slow      # minutes of emulation: not in the quick loop

SCALE = max(1, int(os.environ.get("VMEMU_STATEFUL_SCALE", "1")))
STEPS = 100                      # stateful_step_count
# per class; hypothesis runs ~85 steps per example on average, so 3 x 450 x ~85 = 115,000:
# the 10^5 floor with room for the run-to-run spread (400 gave 98,000 to 109,000)
EXAMPLES = int(os.environ.get("VMEMU_STATEFUL_EXAMPLES", 450)) * SCALE
# the 10^5 floor holds for the default example count (a smaller one is for quick local runs)
TARGET = 0 if "VMEMU_STATEFUL_EXAMPLES" in os.environ else 100_000 * SCALE

# What ran, per class and in all (read by test_operation_count).
RAN = {"checks": 0, "steps": 0, "examples": 0, "faults": 0, "allocs": 0, "zero_allocs": 0, "frees": 0,
       "bte_errors": 0, "bte_timeouts": 0, "injected_alloc_fails": 0,
       "served_zeroed": 0, "scrubd_blocks": 0, "bte_completed": 0, "restores": 0,
       "classes": set()}

# Sysctl values: the interesting small ones, negatives, and past every int type.
SYSCTL_VALUES = st.one_of(st.integers(-3, 20), st.sampled_from([-2**31, 2**31 - 1, 2**63, -2**70, 999]),
                          st.integers(-10**12, 10**12))
# Virtual time steps: nothing, a tick, a load sample, past the BTE's 40 s timeout.
DELAYS = st.one_of(st.just(0), st.integers(1, 10**6), st.integers(10**6, 6 * 10**9),
                   st.sampled_from([40 * 10**9, 41 * 10**9, 90 * 10**9]))


def in_flight(m):
    """Every block scrubd has off the lists: (zone, pfn, order) from the redo
    queues, the BTE engines and the pending CPU-clear completions."""
    blocks = []
    for d in m.scrub.daemons:
        blocks += list(d.redo)
    if m.bte is not None:
        blocks += [e.current[1:] for e in m.bte.all_engines() if e.current is not None]
    for _t, _seq, fn, args in m.events.pending():
        if getattr(fn, "__name__", None) == "finish_block" and isinstance(getattr(fn, "__self__", None), Kscrubd):
            blocks.append(args[:3])
    return blocks


class WholeMachine(RuleBasedStateMachine):
    base = "x86-64"
    page_size = 4096
    pages = 64
    max_order = 5

    @initialize(seed=st.integers(0, 2**32))
    def boot(self, seed):
        # the seed drives the BTE's and fail_page_alloc's random draws
        self.m = tiny_machine(page_size=self.page_size, pages=self.pages, max_order=self.max_order,
                              nodes=2, cpus_per_node=2, base=self.base, seed=seed)
        self.tmp = tempfile.mkdtemp(prefix="vmemu-stateful-")
        self.ncpu = len(self.m.cpus)
        self.last_now = 0
        self.last_cpu_time = [0] * self.ncpu
        self.held: list[tuple[int, int]] = []
        self.total = sum(z.spanned_pages for z in self.m.zones)
        RAN["examples"] += 1
        RAN["classes"].add(type(self).__name__)

    def teardown(self):
        m = getattr(self, "m", None)
        if m is None:
            return
        shutil.rmtree(self.tmp, ignore_errors=True)
        if m.bte is not None:
            t = m.bte.totals()
            RAN["bte_errors"] += sum(v for k, v in t.items() if k.startswith("errors_"))
            RAN["bte_timeouts"] += t["timeouts"]
        c = m.counters()
        RAN["injected_alloc_fails"] += c["prezero_alloc_injected_fail"]
        RAN["served_zeroed"] += c["prezero_alloc_zeroed"]
        RAN["scrubd_blocks"] += sum(sum(v) for v in m.scrub.blocks_by_driver().values())
        if m.bte is not None:
            RAN["bte_completed"] += m.bte.totals()["completed"]
        m.close()

    # -- the allocator, directly ---------------------------------------------------

    @rule(cpu=st.integers(0, 3), order=st.integers(0, 6), zero=st.booleans(), cold=st.booleans(),
          dma=st.booleans(), kernel=st.booleans())
    def alloc(self, cpu, order, zero, cold, dma, kernel):
        order %= self.max_order
        gfp = (GFP_KERNEL if kernel else GFP_HIGHUSER) | (GFP_ZERO if zero else 0) \
            | (GFP_COLD if cold else 0) | (GFP_DMA if dma else 0)
        RAN["allocs"] += 1
        pfn = self.m.alloc.alloc_pages(self.m.cpus[cpu % self.ncpu], order, gfp)
        if pfn is None:
            return
        if zero:
            RAN["zero_allocs"] += 1
            assert self.m.memory.read(pfn, 1 << order) == bytes(self.page_size << order), \
                f"__GFP_ZERO block {pfn} order {order} handed out dirty"
        # the user writes to its pages, so any reuse without clearing would show
        self.m.memory.fill(pfn, 1 << order, 0x5A)
        self.held.append((pfn, order))

    @precondition(lambda self: self.held)
    @rule(cpu=st.integers(0, 3), pick=st.integers(0, 10**6))
    def free(self, cpu, pick):
        pfn, order = self.held.pop(pick % len(self.held))
        RAN["frees"] += 1
        self.m.alloc.free_pages(self.m.cpus[cpu % self.ncpu], pfn, order)

    @precondition(lambda self: self.held)
    @rule(pick=st.integers(0, 10**6), how=st.integers(0, 2))
    def bad_free_is_refused(self, pick, how):
        pfn, order = self.held[pick % len(self.held)]
        bad = [(pfn, order + 1), (pfn + 1, 0) if order else (pfn, 1), (pfn, -1)][how]
        before = self.m.snapshot()
        with pytest.raises(PageAllocError):
            self.m.alloc.free_pages(self.m.cpus[0], *bad)
        assert self.m.snapshot() == before

    @rule(cpu=st.integers(0, 3))
    def drain(self, cpu):
        self.m.alloc.drain_pages(self.m.cpus[cpu % self.ncpu])

    @rule()
    def prezero_all(self):
        self.m.prezero_all()

    # -- fault jobs ----------------------------------------------------------------

    @rule(pages=st.integers(1, 48), threads=st.integers(1, 4), rep=st.integers(1, 2),
          cachelines=st.integers(0, 3))
    def fault_job(self, pages, threads, rep, cachelines):
        threads = min(threads, self.ncpu, pages)
        before = self.m.counters()["pgfault"]
        try:
            pft.run_job(self.m, pages * self.page_size, threads=threads, rep=rep, cachelines=cachelines)
        except pft.JobError as e:
            assert "out of memory" in str(e)
        RAN["faults"] += self.m.counters()["pgfault"] - before

    # -- scrubd and time ---------------------------------------------------------------

    @rule(policy=st.sampled_from(["order", "percentage"]))
    def scrub_policy(self, policy):
        self.m.set_scrub_policy(policy)

    @rule(name=st.sampled_from(["scrub_start", "scrub_stop", "scrub_load"]), value=SYSCTL_VALUES)
    def sysctl(self, name, value):
        self.m.set_sysctl(name, value)

    @rule(ns=DELAYS)
    def advance(self, ns):
        self.m.advance(ns)

    @rule()
    def run_until_idle(self):
        self.m.run_until_idle()

    @rule(policy=st.sampled_from(["order", "percentage"]), stop=st.integers(-2, 8))
    def scrub_to_completion(self, policy, stop):
        """Liveness: with hangs switched off and no load gate, a wake-all write
        makes scrubd finish its work, and nothing stays in flight."""
        m = self.m
        if m.bte is not None:
            for e in m.bte.all_engines():
                e.inject_hangs = e.hang_percent = 0
        m.set_scrub_policy(policy)
        m.set_sysctl("scrub_load", 999)
        m.set_sysctl("scrub_stop", stop)
        m.set_sysctl("scrub_start", 0)
        m.run_until_idle()
        assert not m.scrub.busy() and not len(m.events), "scrubd did not finish"
        assert all(z.scrub_inflight == 0 for z in m.zones)
        for zone in m.zones:
            d = m.scrub.daemons[zone.node]
            pick = d.pick_order if policy == "order" else d.pick_order_v8
            assert pick(zone) is None, f"scrubd went to sleep with work left in zone {zone.node}"

    @rule(dice=st.integers(0, 19))
    def save_and_restore(self, dice):
        """Carry on with a restored copy: the state file keeps everything the
        invariants look at (memory content aside: held pages come back poisoned).
        Only one pick in 20 goes ahead: a restore costs ~10 ms (fresh memory)."""
        if dice:
            return
        path = os.path.join(self.tmp, "m.state")
        try:
            save_state(self.m, path, sync=False)
        except StateError as e:
            assert "not idle" in str(e) and not os.path.exists(path)
            return
        r = load_state(path, profile_name=self.m.profile.name)
        os.unlink(path)
        assert r.snapshot() == self.m.snapshot()
        self.m.close()
        self.m = r
        RAN["restores"] += 1

    # -- fault injection -----------------------------------------------------------------

    @precondition(lambda self: self.m.bte is not None)
    @rule(engine=st.integers(0, 3), errors=st.integers(0, 3), hangs=st.integers(0, 2),
          error_percent=st.integers(0, 100), hang_percent=st.sampled_from([0, 0, 5, 30, 100]),
          code=st.integers(1, 8), enabled=st.booleans())
    def bte_faults(self, engine, errors, hangs, error_percent, hang_percent, code, enabled):
        engines = self.m.bte.all_engines()
        e = engines[engine % len(engines)]
        e.inject_errors, e.inject_hangs = errors, hangs
        e.error_percent, e.hang_percent, e.error_code = error_percent, hang_percent, code
        self.m.bte.enabled = enabled

    @rule(on=st.booleans(), probability=st.integers(0, 100), interval=st.integers(1, 3),
          times=st.sampled_from([-1, 0, 1, 5]), min_order=st.integers(0, 3),
          ignore=st.booleans())
    def fail_page_alloc(self, on, probability, interval, times, min_order, ignore):
        if not on:
            self.m.alloc.fail_page_alloc = None
            return
        f = FailPageAlloc(rng=random.Random(self.m.seed + probability))
        f.probability, f.interval, f.times, f.min_order = probability, interval, times, min_order
        f.ignore_gfp_wait = f.ignore_gfp_highmem = ignore
        self.m.alloc.fail_page_alloc = f

    # -- after every step --------------------------------------------------------------------

    @invariant()
    def nothing_lost_nothing_leaked(self):
        RAN["checks"] += 1          # after boot and after every step
        m = self.m
        # time only runs forward, and a CPU is never busier than the time that passed
        assert m.now >= self.last_now
        self.last_now = m.now
        for cpu, before in zip(m.cpus, self.last_cpu_time):
            assert cpu.time >= before, f"cpu{cpu.id} went back in time"
            assert cpu.user_ns + cpu.system_ns <= cpu.time, f"cpu{cpu.id} busier than its time"
        self.last_cpu_time = [c.time for c in m.cpus]
        check_invariants(m)
        assert m.counters()["prezero_verify_fail"] == 0
        # conservation: held + free (with scrubd's in-flight blocks) + per-CPU
        held = sum(1 << o for _, o in self.held)
        assert held + sum(z.free_pages + z.pcp_pages() for z in m.zones) == self.total
        for pfn, order in self.held:
            zone = m.alloc.page_zone(pfn)
            assert zone.page_state[pfn - zone.zone_start_pfn] == order + 1, f"held block {pfn} lost its state"
        # every in-flight block is counted once, by its zone and its daemon, and is nobody's page
        blocks = in_flight(m)
        for zone in m.zones:
            mine = [(p, o) for z, p, o in blocks if z is zone]
            assert sum(1 << o for _, o in mine) == zone.scrub_inflight, f"zone {zone.node} in-flight pages"
            for p, o in mine:
                idx = p - zone.zone_start_pfn
                assert zone.page_state[idx: idx + (1 << o)].count(PS_FREE) == 1 << o
                for kind in (0, 1):
                    assert p not in zone.free_area[kind][o].free_list
        assert len({(z.node, p) for z, p, _ in blocks}) == len(blocks), "a block is in flight twice"
        for d in m.scrub.daemons:
            assert d.inflight == sum(1 for z, _, _ in blocks if z.node == d.node.id)
        # the zeroed lists really are zero
        for zone in m.zones:
            for order, area in enumerate(zone.free_area[ZEROED]):
                for pfn in area.free_list:
                    assert m.memory.is_zero(pfn, 1 << order), f"ZEROED block {pfn} order {order} is dirty"
            for lists in zone.pageset.values():
                for pfn in lists[PCP_ZEROED].list:
                    assert m.memory.is_zero(pfn, 1), f"page {pfn} on a zeroed per-CPU list is dirty"


class WholeMachineAltix16K(WholeMachine):
    """16 KiB pages with the BTE: orders 2..6 go to the engines."""
    base = "altix-8"
    page_size = 16384
    pages = 256
    max_order = 7


class WholeMachineAltix4K(WholeMachine):
    """The BTE with 4 KiB pages: only orders >= 4 (64 KiB) are long enough."""
    base = "altix-8"
    page_size = 4096
    pages = 256
    max_order = 7


STATEFUL = settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
                    suppress_health_check=list(HealthCheck))

TestWholeMachine4K = WholeMachine.TestCase
TestWholeMachine4K.settings = STATEFUL
TestWholeMachineAltix16K = WholeMachineAltix16K.TestCase
TestWholeMachineAltix16K.settings = STATEFUL
TestWholeMachineAltix4K = WholeMachineAltix4K.TestCase
TestWholeMachineAltix4K.settings = STATEFUL


def test_operation_count():
    """Runs last (pytest keeps file order): the step total, when every class ran."""
    if len(RAN["classes"]) < 3:
        pytest.skip("only part of the file ran")
    RAN["steps"] = RAN["checks"] - RAN["examples"]
    summary = {k: (len(v) if isinstance(v, set) else v) for k, v in RAN.items()}
    print(f"\nstateful whole-machine run: {summary}", file=sys.stderr)
    assert RAN["steps"] >= TARGET, f"only {RAN['steps']} steps ran, wanted {TARGET}"
