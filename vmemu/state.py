"""Save and restore an emulated machine (for ``vmemu mount --state FILE``).

File format::

    VMEMU-STATE <version> <body length> sha256:<hex digest of the body>\n
    <body: one JSON object>

The body is an explicit schema of named fields (below: every object's
fields are listed once, in the *_FIELDS tables), so the file does not
change when a private attribute of the model does.  Version 3.  Older
files are migrated on load: version 1 (the fields of vmemu before the
schema, _from_v1) and version 2 (before the memory-system model, _from_v2:
caches start empty, and the costs are the shipped profile's, or the file is
refused with one line when its profile is not shipped); anything newer is
refused with one line.

``save_state`` first lets the machine run until scrubd and the BTE are idle
(``run_until_idle``), and refuses when anything is still in flight afterwards
(pending events, a hung BTE transfer, a CPU owned by a task): in-flight state
is deliberately not part of the format, so a restore never has to rebuild a
half-done transfer or a daemon mid-pass.  Saving therefore moves the machine
forward in virtual time if scrubd had work left; with ``settle=False`` it
does not, and a machine that is not idle is refused with ``StateBusy`` (the
daemon's checkpoints: a checkpoint never changes what the machine does).

A save is two steps: ``snapshot`` copies what is saved (the only step that
needs the machine to stand still: the daemon holds its model lock for this
one), ``write_snapshot`` compresses, checksums and writes it atomically
(a temporary file, fsync, rename over the old file).

Everything else is saved: the profile (name and full parameter dicts, so the
restored machine has the layout it was saved with even if the profile file
changed since), the seed, virtual time (machine and every CPU), every counter
(allocator, zones, nodes, scrubd, BTE engines, fail_page_alloc when attached),
the free lists of both kinds per order in their exact order, the per-CPU
lists, the per-page state bytes (zlib), sysctls, scrub policy, load average,
the bookings of locks and memory buses that can still delay a request, and
the random generators' states, so a workload continued after a restore gives
exactly what it gives on the machine that was never saved.

Memory content is not saved.  On restore, every free ZEROED block and every
page on a zeroed per-CPU list reads as zero (a fresh mapping, left
untouched); everything else, including pages that were allocated at save
time, is poisoned.

``load_state`` builds a new Machine and returns it only once everything has
loaded and the allocator invariants hold; any problem raises ``StateError``
with a message naming it, and nothing half-loaded escapes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import zlib
from collections import defaultdict, deque

from .machine import Machine, check_invariants
from .mm.fail_page_alloc import FailPageAlloc
from .mm.mmzone import NOT_ZEROED, PCP_ZEROED, ZEROED, PerCpuPages
from .mm.scrubd import SLEEPING
from .profiles import Profile, load_profile, shipped_profiles

MAGIC = "VMEMU-STATE"
VERSION = 3
DEEP_CHECK_PAGES = 1 << 21     # walk every page state byte on load up to this many pages


class StateError(Exception):
    """A state file that cannot be saved or loaded; nothing was changed or returned."""


class StateBusy(StateError):
    """save_state(settle=False) of a machine that is not idle: try again later."""


# -- the schema: the saved fields of every object ------------------------------------

CPU_FIELDS = ("time", "user_ns", "system_ns", "kthread_ns", "charged_ns")
LOCK_FIELDS = ("acquired", "contended", "wait_ns", "bounces")
BUS_FIELDS = ("bytes", "busy_ns", "busy_by", "shared")
LOADAVG_FIELDS = ("avenrun", "next_sample", "samples")
BTE_FIELDS = ("refused", "notavail")
ENGINE_FIELDS = ("error_percent", "error_code", "hang_percent", "inject_errors", "inject_hangs",
                 "transfers", "completed", "bytes", "busy_ns", "errors", "timeouts", "retries")
FPA_FIELDS = ("probability", "interval", "times", "space", "verbose", "task_filter", "count",
              "min_order", "ignore_gfp_wait", "ignore_gfp_highmem", "calls", "failures")


def _fields(obj, names) -> dict:
    return {n: getattr(obj, n) for n in names}


def _set_fields(obj, names, saved: dict, what: str) -> None:
    """Exactly these fields, each of the type it has now (a number, a bool, a list)."""
    if set(saved) != set(names):
        extra, missing = sorted(set(saved) - set(names)), sorted(set(names) - set(saved))
        raise StateError(f"{what}: " + (f"unknown field {extra[0]}" if extra else f"missing field {missing[0]}"))
    for n in names:
        value, now = saved[n], getattr(obj, n)
        if type(value) is not type(now) and not (type(now) is float and type(value) is int):
            raise StateError(f"{what}.{n}: {type(value).__name__}, expected {type(now).__name__}")
        setattr(obj, n, list(value) if isinstance(value, list) else value)


def _rng_state(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _set_rng(rng: random.Random, state: list) -> None:
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))


# -- save --------------------------------------------------------------------------

def _why_busy(m: Machine) -> list[str]:
    why = []
    if len(m.events):
        why.append(f"{len(m.events)} pending events")
    for d in m.scrub.daemons:
        if d.state != SLEEPING or d.inflight or d.redo:
            why.append(f"{d.name} is {d.state} with {d.inflight} blocks in flight")
    if m.bte is not None:
        for e in m.bte.all_engines():
            if e.current is not None:
                why.append(f"BTE node {e.node} engine {e.index} has a transfer in flight"
                           + (" (hung)" if e.hung else ""))
    for c in m.cpus:
        if c.owner is not None:
            why.append(f"{c.name} is owned by {getattr(c.owner, 'name', c.owner)!r}")
    if m.timeline.running:
        why.append("the scheduler is running")
    return why


def _lock(lock) -> dict:
    return dict(_fields(lock, LOCK_FIELDS), bookings=lock.bookings(), takes=lock.takes())


def _zone(z) -> dict:
    return {
        "node": z.node, "name": z.name, "start": z.zone_start_pfn, "pages": z.spanned_pages,
        "free_pages": z.free_pages, "zero_pages": z.zero_pages,
        "pages_min": z.pages_min, "pages_low": z.pages_low, "pages_high": z.pages_high,
        "stat": z.stat, "lock": _lock(z.lock),
        # list order is the dict order of each free list: the head is the last entry
        "free_area": [[list(a.free_list) for a in z.free_area[kind]] for kind in (NOT_ZEROED, ZEROED)],
        "pageset": [[cpu, [[list(p.list), p.low, p.high, p.batch] for p in lists]]
                    for cpu, lists in z.pageset.items()],
        # "page_state" is added last by write_snapshot (compressed, outside the lock)
    }


def _dump(m: Machine) -> dict:
    p, fpa = m.profile, m.alloc.fail_page_alloc
    return {
        "profile": {"name": p.name, "description": p.description, "machine": p.machine,
                    "memory": p.memory, "cost": p.cost, "bte": p.bte, "sources": p.sources, "path": p.path},
        "memsys": m.memsys.state(),
        "seed": m.seed, "backing": m.backing, "now": m.now, "boot_wall_time": m.boot_wall_time,
        "rng": _rng_state(m.rng), "sysctl": m.sysctl, "scrub_policy": m.scrub_policy,
        "timeline": {"horizon": m.timeline.horizon, "next_tick": m.timeline.next_tick},
        "event_seq": m.events.seq,
        "loadavg": _fields(m.loadavg, LOADAVG_FIELDS),
        "cpus": [dict(_fields(c, CPU_FIELDS), ledgers={t: dict(l) for t, l in c.ledgers.items() if l})
                 for c in m.cpus],
        "charge_policy": m.charge_policy,
        "buses": [dict(_fields(b, BUS_FIELDS), series=b.bookings()) for b in m.buses],
        "cpu_stat": m.alloc.cpu_stat,
        "node_stat": [n.stat for n in m.nodes],
        "zones": [_zone(z) for z in m.zones],
        "scrubd": [{"stat": d.stat, "blocks": list(d.blocks.items()),
                    "unclaimed": [d.unclaimed_ns, d.unclaimed_pages]} for d in m.scrub.daemons],
        "zero_drivers": [[d.name, d.enabled] for d in m.zero_drivers],
        "bte": None if m.bte is None else dict(
            _fields(m.bte, BTE_FIELDS),
            engines=[dict(_fields(e, ENGINE_FIELDS), rng=_rng_state(e.rng)) for e in m.bte.all_engines()]),
        "fail_page_alloc": None if fpa is None else dict(_fields(fpa, FPA_FIELDS), rng=_rng_state(fpa.rng)),
    }


class Snapshot:
    """What is saved of a machine, copied: ``text`` the JSON body without the
    page state bytes, ``page_states`` a copy of each zone's."""

    def __init__(self, text: str, page_states: list[bytes], now: int):
        self.text, self.page_states, self.now = text, page_states, now


def snapshot(machine: Machine, settle: bool = True) -> Snapshot:
    """Copy the machine's state.  ``settle``: run it until idle first (virtual
    time moves on); otherwise a machine that is not idle is StateBusy."""
    if settle:
        machine.run_until_idle()
    why = _why_busy(machine)
    if why:
        if not settle:
            raise StateBusy("the machine is not idle: " + "; ".join(why))
        raise StateError("cannot save: the machine is not idle after run_until_idle: " + "; ".join(why))
    # json.dumps copies every list and dict the model goes on changing; the
    # page state bytes are copied raw and compressed later (most of the time
    # of a large machine's save: altix-512, 0.8 s of 0.9)
    return Snapshot(json.dumps(_dump(machine), separators=(",", ":")),
                    [bytes(z.page_state) for z in machine.zones], machine.now)


def encode(snap: Snapshot) -> bytes:
    """The file's bytes: header line and body."""
    state = json.loads(snap.text)
    for zone, page_state in zip(state["zones"], snap.page_states):
        zone["page_state"] = base64.b64encode(zlib.compress(page_state, 6)).decode()
    body = json.dumps(state, separators=(",", ":")).encode()
    return f"{MAGIC} {VERSION} {len(body)} sha256:{hashlib.sha256(body).hexdigest()}\n".encode() + body


def write_snapshot(snap: Snapshot, path: str, sync: bool = True) -> None:
    """Write a snapshot to ``path`` atomically: a temporary file beside it,
    fsync'd (``sync=False`` skips that, for tests), renamed over it.  On
    any error the previous file is left as it was."""
    data = encode(snap)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_state(machine: Machine, path: str, sync: bool = True, settle: bool = True) -> None:
    """Write the machine's state to ``path`` atomically; ``settle``: run it
    until idle first, else refuse a busy machine (StateBusy)."""
    write_snapshot(snapshot(machine, settle), path, sync)


# -- load --------------------------------------------------------------------------

def _read(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise StateError(f"{path}: cannot read: {e.strerror}") from None
    if not data:
        raise StateError(f"{path}: empty file, not a vmemu state")
    line, nl, body = data.partition(b"\n")
    fields = line.split(b" ")
    if fields[0] != MAGIC.encode():
        raise StateError(f"{path}: not a vmemu state file (no {MAGIC} header)")
    if not nl or len(fields) != 4 or not fields[1].isdigit() or not fields[2].isdigit() \
            or not fields[3].startswith(b"sha256:"):
        if not nl:
            raise StateError(f"{path}: truncated: the header line is incomplete")
        raise StateError(f"{path}: malformed {MAGIC} header {line[:80]!r}")
    version, length = int(fields[1]), int(fields[2])
    if version > VERSION:
        raise StateError(f"{path}: state format version {version} is newer than this vmemu "
                         f"understands (version {VERSION})")
    if version not in MIGRATE and version != VERSION:
        raise StateError(f"{path}: state format version {version} is not supported (version {VERSION}; "
                         f"version {min(MIGRATE)} is migrated)")
    if len(body) < length:
        raise StateError(f"{path}: truncated: {len(body)} of {length} body bytes")
    if len(body) > length:
        raise StateError(f"{path}: corrupt: {len(body) - length} bytes after the body")
    if hashlib.sha256(body).hexdigest().encode() != fields[3][len(b"sha256:"):]:
        raise StateError(f"{path}: corrupt: SHA-256 of the body does not match the header")
    try:
        state = json.loads(body)
    except ValueError as e:
        raise StateError(f"{path}: corrupt: body is not JSON ({e})") from None
    try:
        return MIGRATE[version](state) if version in MIGRATE else state
    except StateError as e:
        raise StateError(f"{path}: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise StateError(f"{path}: inconsistent version {version} state: {type(e).__name__}: {e}") from None


def load_state(path: str, profile_name: str | None = None, poison: bool = True, admit=None) -> Machine:
    """A new Machine in the state saved in ``path``.  ``profile_name``, when
    given, must be the profile the state was saved with.  ``poison=False``
    leaves memory that is not zeroed reading as zero too (saves touching a
    large machine's memory at once; dirty pages are then harder to catch).
    ``admit(profile, backing)``, when given, is called before the machine is
    built, and may raise to refuse it (the daemon: one the host cannot hold)."""
    s = _read(path)
    try:
        saved = s["profile"]["name"]
        profile = _profile(s)
    except (KeyError, TypeError):
        raise StateError(f"{path}: inconsistent state: no profile") from None
    if profile_name is not None and profile_name != saved:
        raise StateError(f"{path}: saved with profile {saved!r}, not {profile_name!r}")
    if admit is not None:
        try:
            admit(profile, s.get("backing"))
        except (KeyError, TypeError, ValueError, ArithmeticError) as e:     # a doctored profile
            raise StateError(f"{path}: inconsistent state: {type(e).__name__}: {e}") from None
    m = None
    try:
        m = _build(s, profile, poison)
        check_invariants(m, deep=m.total_pages <= DEEP_CHECK_PAGES)
    except StateError as e:
        if m is not None:
            m.close()
        raise StateError(f"{path}: {e}") from None
    except Exception as e:       # whatever a doctored (checksum-valid) body breaks: refuse it
        if m is not None:
            m.close()
        raise StateError(f"{path}: inconsistent state: {type(e).__name__}: {e}") from None
    return m


def _profile(s: dict) -> Profile:
    p = s["profile"]
    return Profile(name=p["name"], description=p["description"], machine=p["machine"],
                   memory=p["memory"], cost=p["cost"], bte=p["bte"], sources=p["sources"], path=p["path"])


def _build(s: dict, profile: Profile, poison: bool) -> Machine:
    m = Machine(profile, seed=s["seed"], backing=s["backing"])
    try:
        _restore(m, s, poison)
    except BaseException:
        m.close()
        raise
    return m


def _restore(m: Machine, s: dict, poison: bool) -> None:
    m.now = s["now"]
    m.boot_wall_time = s["boot_wall_time"]
    _set_rng(m.rng, s["rng"])
    m.sysctl = dict(s["sysctl"])
    m.set_scrub_policy(s["scrub_policy"])
    m.timeline.horizon = s["timeline"]["horizon"]
    m.timeline.next_tick = s["timeline"]["next_tick"]
    m.events.seq = s["event_seq"]
    _set_fields(m.loadavg, LOADAVG_FIELDS, s["loadavg"], "loadavg")
    _same_len(m.cpus, s["cpus"], "CPUs")
    for c, saved in zip(m.cpus, s["cpus"]):
        saved = dict(saved)
        for task, acts in saved.pop("ledgers").items():
            c.ledgers[task] = defaultdict(int, {a: int(ns) for a, ns in acts.items()})
        c.owner = None                        # the ledger of no task: "kernel"
        _set_fields(c, CPU_FIELDS, saved, "cpu")
    m.set_charge_policy(s["charge_policy"])
    _same_len(m.buses, s["buses"], "memory buses")
    for b, saved in zip(m.buses, s["buses"]):
        saved = dict(saved)
        b.restore_bookings(saved.pop("series"))
        _set_fields(b, BUS_FIELDS, saved, "bus")
    _same_len(m.alloc.cpu_stat, s["cpu_stat"], "per-CPU counters")
    m.alloc.cpu_stat = [dict(st) for st in s["cpu_stat"]]
    _same_len(m.nodes, s["node_stat"], "nodes")
    for n, st in zip(m.nodes, s["node_stat"]):
        n.stat = dict(st)
    _same_len(m.zones, s["zones"], "zones")
    for z, saved in zip(m.zones, s["zones"]):
        _restore_zone(m, z, saved)
    _restore_daemons(m, s)
    m.memsys.restore(s["memsys"])
    if s["fail_page_alloc"] is not None:
        saved = dict(s["fail_page_alloc"])
        fpa = FailPageAlloc(rng=random.Random())
        _set_rng(fpa.rng, saved.pop("rng"))
        _set_fields(fpa, FPA_FIELDS, saved, "fail_page_alloc")
        m.alloc.fail_page_alloc = fpa
    if m.memory.real:
        _restore_memory(m, poison)


def _restore_daemons(m: Machine, s: dict) -> None:
    """scrubd's counters, the zero drivers' switches, the BTE engines."""
    _same_len(m.scrub.daemons, s["scrubd"], "scrub daemons")
    for d, saved in zip(m.scrub.daemons, s["scrubd"]):
        d.stat = dict(saved["stat"])
        d.blocks = {name: list(counts) for name, counts in saved["blocks"]}
        d.unclaimed_ns, d.unclaimed_pages = (int(x) for x in saved["unclaimed"])
    names = [[d.name, d.enabled] for d in m.zero_drivers]
    if [n for n, _ in names] != [n for n, _ in s["zero_drivers"]]:
        raise StateError(f"zero drivers differ: saved {s['zero_drivers']}, machine has {names}")
    for d, (_, enabled) in zip(m.zero_drivers, s["zero_drivers"]):
        d.enabled = enabled
    if (m.bte is None) != (s["bte"] is None):
        raise StateError("the saved machine and the profile disagree on the BTE")
    if m.bte is not None:
        saved = dict(s["bte"])
        engines = saved.pop("engines")
        _set_fields(m.bte, BTE_FIELDS, saved, "bte")
        _same_len(m.bte.all_engines(), engines, "BTE engines")
        for e, saved in zip(m.bte.all_engines(), engines):
            saved = dict(saved)
            _set_rng(e.rng, saved.pop("rng"))
            _set_fields(e, ENGINE_FIELDS, saved, "bte engine")


def _same_len(have, saved, what: str) -> None:
    if len(have) != len(saved):
        raise StateError(f"the profile gives {len(have)} {what}, the state has {len(saved)}")


def _restore_zone(m: Machine, z, saved: dict) -> None:
    if (saved["node"], saved["name"], saved["start"], saved["pages"]) != \
            (z.node, z.name, z.zone_start_pfn, z.spanned_pages):
        raise StateError(f"zone {saved['node']}/{saved['name']} does not match the profile's layout")
    z.free_pages, z.zero_pages = saved["free_pages"], saved["zero_pages"]
    z.pages_min, z.pages_low, z.pages_high = saved["pages_min"], saved["pages_low"], saved["pages_high"]
    z.stat = dict(saved["stat"])
    lock = dict(saved["lock"])
    z.lock.restore_bookings(lock.pop("bookings"))
    z.lock.restore_takes(lock.pop("takes"), m.cpus)
    _set_fields(z.lock, LOCK_FIELDS, lock, "zone lock")
    for kind in (NOT_ZEROED, ZEROED):
        _same_len(z.free_area[kind], saved["free_area"][kind], "orders")
        for area, pfns in zip(z.free_area[kind], saved["free_area"][kind]):
            area.free_list = dict.fromkeys(pfns)
            if area.nr_free != len(pfns):
                raise StateError(f"zone {z.node}/{z.name}: a block is twice on one free list")
    z.pageset = {}
    for cpu, lists in saved["pageset"]:
        pcps = []
        for pfns, low, high, batch in lists:
            pcp = PerCpuPages(low, high, batch)
            pcp.list = deque(pfns)
            pcps.append(pcp)
        z.pageset[cpu] = pcps
    state = zlib.decompress(base64.b64decode(saved["page_state"], validate=True))
    if len(state) != len(z.page_state):
        raise StateError(f"zone {z.node}/{z.name}: {len(state)} page state bytes, expected {len(z.page_state)}")
    z.page_state[:] = state


def _restore_memory(m: Machine, poison: bool) -> None:
    """A fresh anonymous mapping reads as zero: poison everything except the
    free ZEROED blocks and the zeroed per-CPU pages, which stay untouched
    (so a mostly prezeroed machine costs the host little memory on restore)."""
    if not poison:
        return
    zero = []
    for z in m.zones:
        for order, area in enumerate(z.free_area[ZEROED]):
            zero += [(pfn, 1 << order) for pfn in area.free_list]
        for lists in z.pageset.values():
            zero += [(pfn, 1) for pfn in lists[PCP_ZEROED].list]
    zero.sort()
    for n in m.nodes:
        pfn, end = n.node_start_pfn, n.node_start_pfn + n.node_spanned_pages
        for start, pages in zero:
            if start >= end:
                break
            if start < pfn:
                continue
            if start > pfn:
                m.memory.poison(pfn, start - pfn)
            pfn = start + pages
        if pfn < end:
            m.memory.poison(pfn, end - pfn)


# -- older versions ----------------------------------------------------------------

def _from_v1(s: dict) -> dict:
    """Version 1 (the model's attributes saved by reflection) as version 2."""
    def lock(old: dict) -> dict:
        last = old.get("last_cpu")
        return dict({k: old[k] for k in LOCK_FIELDS}, bookings=list(zip(old["_starts"], old["_ends"])),
                    last_cpu=None if last is None else last["cpu"])
    for z in s["zones"]:
        z["lock"] = lock(z["lock"])
    def bus(old: dict) -> dict:
        active = old["_active"]["tuples"] if isinstance(old["_active"], dict) else old["_active"]
        return dict({k: old[k] for k in BUS_FIELDS if k != "busy_by"}, busy_by={"unattributed": old["busy_ns"]},
                    series=[(start, 0, 1, end - start) for start, end in active])
    s["buses"] = [bus(b) for b in s["buses"]]
    s["cpus"] = [dict({k: c[k] for k in CPU_FIELDS if k != "charged_ns"}, charged_ns=0, ledgers={})
                 for c in s["cpus"]]
    s["charge_policy"] = "kthread"
    for d in s["scrubd"]:
        d["unclaimed"] = [0, 0]
    s["loadavg"] = {k: s["loadavg"][k] for k in LOADAVG_FIELDS}
    if s["bte"] is not None:
        s["bte"] = dict({k: s["bte"]["driver"][k] for k in BTE_FIELDS},
                        engines=[dict({k: e[k] for k in ENGINE_FIELDS}, rng=e["rng"]) for e in s["bte"]["engines"]])
    if s["fail_page_alloc"] is not None:
        f = s["fail_page_alloc"]
        s["fail_page_alloc"] = dict({k: f[k] for k in FPA_FIELDS}, rng=f["rng"])
    return s


def _from_v2(s: dict) -> dict:
    """Version 2 (before the memory-system model) as version 3: the caches
    start empty, a lock's line is its last taker's from time 0, and the
    profile's memory and costs are those of the shipped profile of its name
    (the old cost keys priced the old model)."""
    p = s["profile"]
    if p["name"] not in shipped_profiles():
        raise StateError(f"a version 2 state of profile {p['name']!r}: its costs predate the memory "
                         f"model and it is not a shipped profile; mount it afresh")
    fresh = load_profile(p["name"])
    p["memory"], p["cost"] = fresh.memory, fresh.cost
    p["sources"] = dict(p["sources"], **{k: v for k, v in fresh.sources.items()
                                         if k.startswith(("memory.", "cost."))})
    for z in s["zones"]:
        last = z["lock"].pop("last_cpu")
        z["lock"]["takes"] = [] if last is None else [[0, last]]
    s["memsys"] = None
    return s


MIGRATE = {1: lambda s: _from_v2(_from_v1(s)), 2: _from_v2}
