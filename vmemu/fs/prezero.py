"""sys/kernel/mm/prezero/: scrubd, the zero drivers and the BTE engines.

The original series had no such directory (it added only the three sysctls
and the buddyinfo/meminfo lines); this is the emulator's own, laid out the
way a 2.6-era developer would have put it in sysfs next to
/sys/kernel/mm/transparent_hugepage:

    policy                              [order] percentage
    zero_drivers                        one "name enabled|disabled" line per driver, CPU last
    drivers/<name>/enabled              0/1, registered drivers only (the CPU cannot be disabled)
    scrubd/node<N>/<stat>               one kscrubd's state and counters
    bte/{notavail,refused}              the BTE zero driver's refusals
    bte/node<N>/engine<I>/<attr>        one engine's counters and fault injection

sysfs rules: one value per file, size 4096, stats 0444, controls 0644.  A
write is parsed before anything changes; a bad value is EINVAL (ERANGE for
a number beyond its type, as kstrto* says) and leaves the state as it was.
Every file is built from a table below: name -> how to show, and for
controls how to parse and store.
"""

from __future__ import annotations

from ..arch.sn.bte import BTE_RESULT_NAMES, INJECTABLE
from ..lib.kstrtox import einval, kstrtobool, kstrtouint
from ..machine import CHARGE_POLICIES
from ..mm.scrubd import POLICIES, RUNNING, SLEEPING, WAIT_CPU, WAIT_LOAD
from .base import SysfsAttr, text


# scrubd's states as single words (the model's are phrases; a sysfs value is one token)
STATE_WORDS = {SLEEPING: "sleeping", RUNNING: "running", WAIT_CPU: "waiting_cpu",
               WAIT_LOAD: "waiting_load"}


# -- parsers: bytes of one write -> value, or OSError ----------------------------

def parse_percent(s: bytes) -> int:
    v = kstrtouint(s)
    if v > 100:
        raise einval(f"{v} is not a percentage (0..100)")
    return v


def parse_bool(s: bytes) -> bool:
    # kstrtobool, as device_store_bool: 1/0, y/n, on/off; anything else EINVAL
    v = kstrtobool(s)
    if v is None:
        raise einval("not a boolean (0 or 1)")
    return v


def word(s: bytes) -> str:
    """The written word with one trailing newline dropped (sysfs_streq)."""
    text = s[:-1] if s.endswith(b"\n") else s
    try:
        return text.decode("ascii")
    except UnicodeDecodeError:
        raise einval("not ASCII") from None


def choice(options):
    def parse(s: bytes) -> str:
        w = word(s)
        if w not in options:
            raise einval(f"{w!r}: one of {', '.join(options)}")
        return w
    return parse


def parse_bte_error(s: bytes) -> int:
    """An injectable bte_result_t: its number (1..8) or its name (BTEFAIL_POISON)."""
    w = word(s)
    if w in BTE_RESULT_NAMES:
        code = BTE_RESULT_NAMES.index(w)
    else:
        code = kstrtouint(s)
    if code not in INJECTABLE:
        raise einval(f"{w!r}: a transfer can fail with codes {INJECTABLE.start}..{INJECTABLE.stop - 1} only")
    return code


# -- show helpers ----------------------------------------------------------------

def choose_one(options, current) -> str:
    """transparent_hugepage/enabled style: every option, the current one in brackets."""
    return " ".join(f"[{o}]" if o == current else o for o in options) + "\n"


def per_order_rows(rows) -> str:
    """`name` then one count per order; every row has the same number of columns."""
    return "".join(f"{name:<4}" + "".join(f" {c:6d}" for c in counts) + "\n" for name, counts in rows)


# -- the file object ---------------------------------------------------------------

def field(obj, name: str, parse, show=text) -> SysfsAttr:
    """A control that is one attribute of a model object."""
    return SysfsAttr(lambda: show(getattr(obj, name)), parse, lambda v: setattr(obj, name, v))


# -- the tables ------------------------------------------------------------------------

# scrubd/node<N>/<name>: show(daemon, machine)
SCRUBD_FILES = {
    # a state the model gains later still reads as one token
    "state": lambda d, m: STATE_WORDS.get(d.state, d.state.replace(" ", "_")) + "\n",
    "wakeups": lambda d, m: d.stat["wakeups"],
    "runs": lambda d, m: d.stat["runs"],
    "passes": lambda d, m: d.stat["passes"],
    "load_gate_refusals": lambda d, m: d.stat["load_gate_refusals"],
    "load_waits": lambda d, m: d.stat["load_waits"],
    "redone_blocks": lambda d, m: d.stat["redone_blocks"],
    "blocks_inflight": lambda d, m: d.inflight,
    "cpu_ms": lambda d, m: d.stat["cpu_ns"] // 1_000_000,
    "blocks_zeroed": lambda d, m: per_order_rows(
        (name, d.blocks.get(name, [0] * m.max_order)) for name in driver_names(m)),
    "pages_zeroed": lambda d, m: d.pages_zeroed(),
}

# bte/node<N>/engine<I>/<name>: read-only, show(engine)
ENGINE_STATS = {
    "busy": lambda e: e.busy,
    "hung": lambda e: e.hung,
    "transfers": lambda e: e.transfers,
    "completed": lambda e: e.completed,
    "bytes": lambda e: e.bytes,
    "busy_ms": lambda e: e.busy_ns // 1_000_000,
    "timeouts": lambda e: e.timeouts,
    "retries": lambda e: e.retries,
    "errors": lambda e: "".join(f"{BTE_RESULT_NAMES[c]} {e.errors[c]}\n" for c in INJECTABLE),
}

# bte/node<N>/engine<I>/<name>: controls, the engine attribute of that name
ENGINE_CONTROLS = {
    "error_percent": (parse_percent, text),
    "error_code": (parse_bte_error, lambda c: choose_one([BTE_RESULT_NAMES[i] for i in INJECTABLE],
                                                         BTE_RESULT_NAMES[c])),
    "hang_percent": (parse_percent, text),
    "inject_errors": (kstrtouint, text),
    "inject_hangs": (kstrtouint, text),
}


def driver_names(m) -> list[str]:
    """Zero drivers in the order scrubd offers them a block; the CPU is the fallback."""
    return [d.name for d in m.zero_drivers] + ["cpu"]


def zero_drivers(m) -> str:
    rows = [(d.name, d.enabled) for d in m.zero_drivers] + [("cpu", True)]
    return "".join(f"{name} {'enabled' if on else 'disabled'}\n" for name, on in rows)


def files(kernel) -> dict:
    """Path below sys/kernel/mm/prezero/ -> SysfsAttr."""
    m = kernel.machine
    out = {
        "policy": SysfsAttr(lambda: choose_one(POLICIES, m.scrub_policy), choice(POLICIES),
                            m.set_scrub_policy),
        "zero_drivers": SysfsAttr(lambda: zero_drivers(m)),
        "charge": SysfsAttr(lambda: choose_one(CHARGE_POLICIES, m.charge_policy), choice(CHARGE_POLICIES),
                            m.set_charge_policy),
    }
    for drv in m.zero_drivers:
        out[f"drivers/{drv.name}/enabled"] = field(drv, "enabled", parse_bool)
    for d in m.scrub.daemons:
        for name, show in SCRUBD_FILES.items():
            out[f"scrubd/node{d.node.id}/{name}"] = SysfsAttr(lambda d=d, show=show: show(d, m))
    if m.bte is not None:
        out["bte/notavail"] = SysfsAttr(lambda: m.bte.notavail)
        out["bte/refused"] = SysfsAttr(lambda: m.bte.refused)
        for node in m.bte.engines:
            for e in node:
                base = f"bte/node{e.node}/engine{e.index}"
                for name, show in ENGINE_STATS.items():
                    out[f"{base}/{name}"] = SysfsAttr(lambda e=e, show=show: show(e))
                for name, (parse, show) in ENGINE_CONTROLS.items():
                    out[f"{base}/{name}"] = field(e, name, parse, show)
    return out
