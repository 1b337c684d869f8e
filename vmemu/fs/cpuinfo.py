"""proc/cpuinfo in the emulated architecture's own format, one record per
CPU from the profile's [cpu] and [cache] tables (vmemu/profiles).

ia64: show_cpuinfo of 2.6.10 (arch/ia64/kernel/setup.c): labels padded to
11 columns, the family as a name, no model name, MHz to six decimals.
x86_64: show_cpuinfo of arch/x86_64/kernel/setup.c as of 2.6.16, the first
layout with the dual-core lines (physical id, siblings, core id, cpu cores)
that lscpu, psutil and procps read; "name<tabs>: value".
i386: show_cpuinfo of arch/i386/kernel/cpu/proc.c of 2.6.10, in the same
"name<tabs>: value" form: the errata lines (fdiv_bug, hlt_bug, f00f_bug,
coma_bug), fpu, wp, flags and bogomips, and no TLB, address or power lines.
"""

from __future__ import annotations

from ..profiles import I386_BUGS

# 2.6.10's names for ia64 processor families; others print as numbers
IA64_FAMILIES = {0x07: "Itanium", 0x1f: "Itanium 2"}


def cpuinfo(m) -> str:
    render = {"ia64": ia64_record, "x86_64": x86_64_record, "i386": i386_record}[m.profile.cpu["arch"]]
    return "".join(render(m, c.id) for c in m.cpus)


def ia64_record(m, cpu: int) -> str:
    c = m.profile.cpu
    family = IA64_FAMILIES.get(c["family"], str(c["family"]))
    rows = [("processor", cpu), ("vendor", c["vendor"]), ("arch", "IA-64"), ("family", family),
            ("model", c["model"]), ("revision", c["stepping"]), ("archrev", c["archrev"]),
            ("features", c["features"]),
            ("cpu number", 0),               # the processor serial number: none
            ("cpu regs", c["cpu_regs"]),
            ("cpu MHz", f"{m.profile.machine['cpu_mhz']}.000000"), ("itc MHz", f"{c['itc_mhz']}.000000"),
            ("BogoMIPS", f"{c['bogomips']:.2f}")]
    return "".join(f"{name:<11}: {value}\n" for name, value in rows) + "\n"


def x86_64_record(m, cpu: int) -> str:
    c = m.profile.cpu
    cores = c["cores_per_package"]
    rows = [("processor", cpu), ("vendor_id", c["vendor"]), ("cpu family", c["family"]), ("model", c["model"]),
            ("model name", c["model_name"]), ("stepping", c["stepping"]),
            ("cpu MHz", f"{m.profile.machine['cpu_mhz']}.000"),
            ("cache size", f"{m.profile.caches[-1].size // 1024} KB")]      # the last level, as CPUID reports
    if cores > 1:
        rows += [("physical id", cpu // cores), ("siblings", cores), ("core id", cpu % cores), ("cpu cores", cores)]
    rows += [("fpu", "yes"), ("fpu_exception", "yes"), ("cpuid level", c["cpuid_level"]), ("wp", "yes"),
             ("flags", c["features"]), ("bogomips", f"{c['bogomips']:.2f}"),
             ("TLB size", f"{c['tlb_size']} 4K pages"), ("clflush size", m.cache_line),
             ("cache_alignment", m.cache_line), ("address sizes", c["address_sizes"])]
    text = "".join(f"{name}{tabs(name)}: {value}\n" for name, value in rows)
    return text + f"power management: {c['power_management']}\n\n"


def i386_record(m, cpu: int) -> str:
    """One CPU as show_cpuinfo of 2.6.10's arch/i386/kernel/cpu/proc.c
    prints it: the identification, cpu MHz only with a TSC, the last cache
    level as cache size (x86_cache_size, the L2), physical id and siblings
    only when a package holds several CPUs (2.6.10 prints them when
    smp_num_siblings > 1), the errata, fpu, wp, flags and bogomips.  The
    order and spelling are that file's in a BitKeeper-era tree between
    2.6.9 and 2.6.11 (github dmgerman/history-token) and in 2.6.12-rc2
    (torvalds/linux 1da177e4, which prints physical id and siblings on
    every SMP kernel)."""
    c = m.profile.cpu
    rows = [("processor", cpu), ("vendor_id", c["vendor"]), ("cpu family", c["family"]), ("model", c["model"]),
            ("model name", c["model_name"]), ("stepping", c["stepping"])]
    if "tsc" in c["features"].split():
        rows.append(("cpu MHz", f"{m.profile.machine['cpu_mhz']}.000"))
    rows.append(("cache size", f"{m.profile.caches[-1].size // 1024} KB"))
    cores = c["cores_per_package"]
    if cores > 1:
        rows += [("physical id", cpu // cores), ("siblings", cores)]
    bugs = c["bugs"].split()
    rows += [(f"{bug}_bug", "yes" if bug in bugs else "no") for bug in I386_BUGS]
    # every CPU a 2.6 profile describes has an on-chip FPU and honours CR0.WP (486 and later)
    rows += [("fpu", "yes"), ("fpu_exception", "yes"), ("cpuid level", c["cpuid_level"]), ("wp", "yes")]
    text = "".join(f"{name}{tabs(name)}: {value}\n" for name, value in rows)
    # the flags line is "flags\t\t:" and " name" per flag, so no flags leave no space
    flags = "".join(f" {flag}" for flag in c["features"].split())
    return text + f"flags{tabs('flags')}:{flags}\nbogomips{tabs('bogomips')}: {c['bogomips']:.2f}\n\n"


def tabs(name: str) -> str:
    """The kernel's literal tabs: names under 8 columns get two, others one."""
    return "\t\t" if len(name) < 8 else "\t"
