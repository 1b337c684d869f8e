"""The emulated /proc and /sys files, as a table of small file objects.

``build_tree(kernel)`` returns ``{path: File or Dir}`` with paths relative to
the mount point ("proc/buddyinfo").  Each file has one render function
(LXCFS style) that turns the model into the kernel's text; the FUSE adapter
only looks paths up in the table and calls ``read``/``write``.  The file
types are vmemu/fs/base.py; sys/devices/system/{cpu,node} is
fs/topology.py, proc/cpuinfo fs/cpuinfo.py, sys/kernel/mm/prezero
fs/prezero.py, debugfs fs/debugfs.py, the sysctls fs/sysctl.py.  Formats follow the
kernel's (docs/interfaces.md lists every file).
"""

from __future__ import annotations

import errno

from ..kernel.sched import NSEC_PER_SEC, USER_HZ
from ..lib.cmdline import memparse
from ..lib.kstrtox import kstrtoull
from ..mm.mmzone import NOT_ZEROED, ZEROED
from ..mm.vmstat import VMSTAT_NUMA
from . import topology
from .base import Dir, File, Handle, kb
from .cpuinfo import cpuinfo
from .debugfs import fail_page_alloc_files
from .prezero import files as prezero_files
from .sysctl import SysctlFile


class FaultFile(File):
    """proc/vmemu/fault: write a job, read the pft title and the last row."""

    def __init__(self, kernel):
        super().__init__(kernel.fault_text, mode=0o644)

    def write(self, kernel, h: Handle, data: bytes, offset: int) -> int:
        # Every write is one job, whatever its offset, as every write to a
        # sysfs attribute is one store; the whole write is consumed, so no
        # part of it comes again.
        kernel.fault(parse_fault(bytes(data), kernel.machine))
        return len(data)


# ---------------------------------------------------------------------------
# proc/vmemu/fault words

FAULT_KEYS = ("pages", "bytes", "threads", "rep", "cachelines")
# A job holds the model for its whole run (writes wait for it): bound its work
# to 8x the machine's memory, each repetition counting as at least 64 pages
# (a task is started and ended per repetition), so that no job holds it for
# more than a minute or two (x86-64: bytes=1G threads=2 rep=5, 1.3 M faults, took 28 s).
MAX_JOB_FACTOR = 8
MIN_REP_PAGES = 64


def parse_fault(data: bytes, machine) -> dict:
    """`N` (pages) or `key=value` words -> {nbytes, threads, rep, cachelines}.

    Numbers as the kernel reads them: counts with kstrtoull, ``bytes=`` with
    memparse (a K, M, G or T suffix), both base 0 (``0x10`` hex, ``010``
    octal).  EINVAL for a malformed job, ERANGE for a number beyond 64
    bits, and pft.check_job's answer for a job the machine cannot run."""
    from ..pft import check_job
    try:
        words = data.decode("ascii").split()
    except UnicodeDecodeError:
        raise OSError(errno.EINVAL, "fault: not ASCII") from None
    if len(words) == 1 and "=" not in words[0]:
        words = [f"pages={words[0]}"]
    values = _fault_words(words)
    if ("pages" in values) == ("bytes" in values):
        raise OSError(errno.EINVAL, "fault: give pages= or bytes= (one of them)")
    nbytes = values["bytes"] if "bytes" in values else values["pages"] * machine.page_size
    job = {"nbytes": nbytes,
           "threads": values.get("threads", 1), "rep": values.get("rep", 1),
           "cachelines": values.get("cachelines", 1)}
    check_job(machine.profile, **job)
    pages = job["nbytes"] // machine.page_size
    if max(pages, MIN_REP_PAGES) * job["rep"] > machine.total_pages * MAX_JOB_FACTOR:
        raise OSError(errno.EINVAL, f"fault: at most {MAX_JOB_FACTOR} x the machine's {machine.total_pages} "
                                    f"pages per job (a repetition counts as at least {MIN_REP_PAGES} pages)")
    return job


def _fault_words(words: list[str]) -> dict[str, int]:
    values: dict[str, int] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or key not in FAULT_KEYS or key in values:
            raise OSError(errno.EINVAL, f"fault: bad word {word!r} (use N or {', '.join(k + '=' for k in FAULT_KEYS)})")
        try:
            values[key] = memparse(value) if key == "bytes" else kstrtoull(value.encode())
        except OSError as e:
            raise OSError(e.errno, f"fault: {word!r}: {e.strerror}") from None
    return values


# ---------------------------------------------------------------------------
# Render functions, one per file.

def buddyinfo(m) -> str:
    # Stock one-line layout (the V6 two-line one breaks node_exporter): counts of
    # both kinds summed per order.  Populated zones only, like the kernel.
    lines = []
    for z in m.zones:
        if not z.present_pages:
            continue
        counts = [a + b for a, b in zip(z.nr_free(NOT_ZEROED), z.nr_free(ZEROED))]
        lines.append(f"Node {z.node}, zone {z.name:>8} " + "".join(f"{c:6d} " for c in counts) + "\n")
    return "".join(lines)


def zeroinfo(m) -> str:
    # The zeroed/unzeroed split, every row the same shape (pagetypeinfo style).
    head = f"{'Free blocks count per zero state at order':<43} " + \
        "".join(f"{o:6d} " for o in range(m.max_order)) + "\n"
    rows = []
    for z in m.zones:
        if not z.present_pages:
            continue
        for kind, name in ((ZEROED, "Zeroed"), (NOT_ZEROED, "NotZeroed")):
            rows.append(f"Node {z.node:4d}, zone {z.name:>8}, type {name:>12} " +
                        "".join(f"{c:6d} " for c in z.nr_free(kind)) + "\n")
    return head + "".join(rows)


def _meminfo_lines(m, zones) -> list[tuple[str, int]]:
    """(label, kB) in /proc/meminfo order; the emulator has no page cache,
    no swap and no slab, so those are 0.  Pages on per-CPU lists are neither
    free nor anything else, as in the kernel."""
    total = kb(m, sum(z.present_pages for z in zones))
    free = kb(m, sum(z.free_pages for z in zones))
    zero = kb(m, sum(z.zero_pages for z in zones))
    return [("MemTotal", total), ("MemFree", free), ("MemZero", zero), ("MemAvailable", free),
            ("Buffers", 0), ("Cached", 0), ("SwapCached", 0), ("Active", 0), ("Inactive", 0),
            ("Active(anon)", 0), ("Inactive(anon)", 0), ("Active(file)", 0), ("Inactive(file)", 0),
            ("Unevictable", 0), ("Mlocked", 0), ("SwapTotal", 0), ("SwapFree", 0), ("Dirty", 0),
            ("Writeback", 0), ("AnonPages", 0), ("Mapped", 0), ("Shmem", 0), ("KReclaimable", 0),
            ("Slab", 0), ("SReclaimable", 0), ("SUnreclaim", 0), ("KernelStack", 0),
            ("PageTables", 0), ("CommitLimit", total // 2), ("Committed_AS", 0)]


def meminfo(m) -> str:
    lines = [f"{label + ':':<16}{value:8d} kB\n" for label, value in _meminfo_lines(m, m.zones)]
    hp = ("HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp")
    lines += [f"{label + ':':<16}{0:8d}\n" for label in hp]
    lines.append(f"{'Hugepagesize:':<16}{0:8d} kB\n")
    return "".join(lines)


def vmstat(m) -> str:
    c = m.counters()
    out = [("nr_free_pages", m.free_pages()), ("nr_zero_pages", m.zero_pages())]
    for name, key in VMSTAT_NUMA.items():
        out.append((name, sum(n.stat.get(key, 0) for n in m.nodes)))
    per_zone: dict[str, int] = {}
    for z in m.zones:
        per_zone[z.name.lower()] = per_zone.get(z.name.lower(), 0) + z.stat.get("pgalloc", 0)
    out += [(f"pgalloc_{name}", v) for name, v in per_zone.items()]
    out += [("pgfree", c.get("pgfree", 0)), ("pgfault", c.get("pgfault", 0)),
            ("pgmajfault", c.get("pgmajfault", 0)), ("pswpin", 0), ("pswpout", 0)]
    # The emulator's own counters: the allocator's prezero_ ones, scrubd's and the BTE's
    # totals (lower case, like every vmstat name: bte_errors_btefail_poison).
    out += [(k, v) for k, v in c.items() if k.startswith("prezero_")]
    out += [(f"scrubd_{k}", v) for k, v in m.scrub.totals().items()]
    if m.bte is not None:
        out += [(f"bte_{k.lower()}", v) for k, v in m.bte.totals().items()]
    return "".join(f"{k} {v}\n" for k, v in out)


def zoneinfo(m) -> str:
    # Zone head and counters as the modern layout (mm/vmstat.c zoneinfo_show).
    # Pagesets as the first /proc/zoneinfo (2.6.13, Nikita Danilov's patch): a CPU
    # whose lists are all empty is skipped, then one "cpu: N pcp: I" block per
    # list (hot, cold, and the patch's zeroed list), with count/high/batch as
    # printed once pcp->low was removed.  Listing only CPUs in use keeps altix-8
    # (4 zones x 8 CPUs x 3 lists) within one 8191-byte read in normal use.
    out = []
    for node in m.nodes:
        for z in node.zones:
            out.append(f"Node {z.node}, zone {z.name:>8}")
            out.append(f"\n  pages free     {z.free_pages}"
                       f"\n        min      {z.pages_min}"
                       f"\n        low      {z.pages_low}"
                       f"\n        high     {z.pages_high}"
                       f"\n        spanned  {z.spanned_pages}"
                       f"\n        present  {z.present_pages}"
                       f"\n        managed  {z.present_pages}"
                       f"\n        protection: ({', '.join('0' for _ in node.zones)})")
            counters = [("nr_free_pages", z.free_pages), ("nr_zero_pages", z.zero_pages)]
            counters += [(k if k.startswith("prezero_") else f"nr_{k}", v) for k, v in z.stat.items()]
            out += [f"\n      {k:<12} {v}" for k, v in counters]
            out.append("\n  pagesets")
            for cpu in sorted(z.pageset):
                lists = z.pageset[cpu]
                if not any(p.count for p in lists):
                    continue
                for i, p in enumerate(lists):
                    out.append(f"\n    cpu: {cpu} pcp: {i}"
                               f"\n              count: {p.count}"
                               f"\n              high:  {p.high}"
                               f"\n              batch: {p.batch}")
            out.append(f"\n  start_pfn:           {z.zone_start_pfn}\n")
    return "".join(out)


def ledger_table(m) -> str:
    """Every CPU nanosecond since boot, by task and activity, idle included."""
    from ..kernel import ledger
    return ledger.table(ledger.since_boot(m))


def ticks(ns: int) -> int:
    return ns * USER_HZ // NSEC_PER_SEC


def stat(kernel) -> str:
    m = kernel.machine
    rows = []
    for c in m.cpus:
        rows.append((f"cpu{c.id}", ticks(c.user_ns), ticks(c.system_ns), ticks(m.idle_ns(c))))
    user, system, idle = (sum(r[i] for r in rows) for i in (1, 2, 3))
    lines = [f"cpu  {user} 0 {system} {idle} 0 0 0 0 0 0\n"]
    lines += [f"{name} {u} 0 {s} {i} 0 0 0 0 0 0\n" for name, u, s, i in rows]
    # The only interrupt the model has is the 1000 Hz timer on every CPU.
    intr = m.clock() // 1_000_000 * len(m.cpus)
    lines += [f"intr {intr}\n", f"ctxt {kernel.ctxt}\n", f"btime {int(m.boot_wall_time)}\n",
              f"processes {kernel.last_pid}\n", f"procs_running {m.nr_running() + 1}\n",   # + the reader
              "procs_blocked 0\n", "softirq 0 0 0 0 0 0 0 0 0 0 0\n"]
    return "".join(lines)


def loadavg(kernel) -> str:
    # The reader is running while it reads (a real kernel never shows "0/N"),
    # so it counts with the machine's own tasks; init makes the total one more.
    m = kernel.machine
    running = m.nr_running() + 1
    return " ".join(m.loadavg.text_fields()) + f" {running}/{1 + running} {kernel.last_pid}\n"


def uptime(m) -> str:
    idle = sum(m.idle_ns(c) for c in m.cpus)
    cs = lambda ns: f"{ns // NSEC_PER_SEC}.{ns % NSEC_PER_SEC // 10_000_000:02d}"
    return f"{cs(m.clock())} {cs(idle)}\n"


# ---------------------------------------------------------------------------
# The tree

def build_tree(kernel) -> dict:
    m = kernel.machine
    files: dict = {
        "proc/buddyinfo": File(lambda: buddyinfo(m)),
        "proc/meminfo": File(lambda: meminfo(m)),
        "proc/vmstat": File(lambda: vmstat(m)),
        "proc/zoneinfo": File(lambda: zoneinfo(m)),
        "proc/stat": File(lambda: stat(kernel)),
        "proc/loadavg": File(lambda: loadavg(kernel)),
        "proc/uptime": File(lambda: uptime(m)),
        "proc/cpuinfo": File(lambda: cpuinfo(m), model=False),
        "proc/vmemu/zeroinfo": File(lambda: zeroinfo(m)),
        "proc/vmemu/fault": FaultFile(kernel),
        "proc/vmemu/pace": File(kernel.pace_text, model=False),
        "proc/vmemu/ledger": File(lambda: ledger_table(m)),
    }
    for name in m.sysctl:
        files[f"proc/sys/vm/{name}"] = SysctlFile(m, name)
    files.update(topology.files(kernel))
    for name, f in fail_page_alloc_files(kernel.fail_page_alloc).items():
        files[f"sys/kernel/debug/fail_page_alloc/{name}"] = f
    for name, f in prezero_files(kernel).items():
        files[f"sys/kernel/mm/prezero/{name}"] = f

    # Directories: every parent of a file, plus the (for now empty) prezero one.
    # debugfs is 0700 in the kernel; everything else 0555.
    tree: dict = {"": Dir(), "sys/kernel/mm/prezero": Dir(), "sys/kernel/debug": Dir(0o700)}
    for path in ["sys/kernel/mm/prezero", *files]:
        if path.rpartition("/")[0] in tree:
            continue                          # its parent is there, and so are the parent's
        parts = path.split("/")
        for i in range(1, len(parts)):        # top-down: a directory after its parents
            parent = "/".join(parts[:i])
            if parent not in tree:
                tree[parent] = Dir()
    for path, f in files.items():
        f.path = path
        tree[path] = f
    return tree


def children(tree: dict) -> dict[str, list[str]]:
    """Directory path -> the paths of its entries, in table order (the
    tree's own strings: altix-512 has 37,000 entries)."""
    out: dict[str, list[str]] = {p: [] for p, f in tree.items() if f.is_dir}
    for path in tree:
        if path:
            out[path.rpartition("/")[0]].append(path)
    return out
