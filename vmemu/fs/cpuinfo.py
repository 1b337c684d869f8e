"""proc/cpuinfo in the emulated architecture's own format, one record per
CPU from the profile's [cpu] and [cache] tables (vmemu/profiles).

ia64: show_cpuinfo of 2.6.10 (arch/ia64/kernel/setup.c): labels padded to
11 columns, the family as a name, no model name, MHz to six decimals.
x86_64: show_cpuinfo of arch/x86_64/kernel/setup.c as of 2.6.16, the first
layout with the dual-core lines (physical id, siblings, core id, cpu cores)
that lscpu, psutil and procps read; "name<tabs>: value".
"""

from __future__ import annotations

# 2.6.10's names for ia64 processor families; others print as numbers
IA64_FAMILIES = {0x07: "Itanium", 0x1f: "Itanium 2"}


def cpuinfo(m) -> str:
    render = ia64_record if m.profile.cpu["arch"] == "ia64" else x86_64_record
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


def tabs(name: str) -> str:
    """The kernel's literal tabs: names under 8 columns get two, others one."""
    return "\t\t" if len(name) < 8 else "\t"
