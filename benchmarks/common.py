"""Shared pieces of the benchmarks: the host's own fault rate, RSS, table printing."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).parent


def build_hostfault(folder: str) -> str | None:
    """hostfault.c compiled into folder, or None when no C compiler is available."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    exe = os.path.join(folder, "hostfault")
    subprocess.run([cc, "-O2", "-o", exe, str(HERE / "hostfault.c")], check=True)
    return exe


def host_fault_rate(nbytes: int = 1 << 30) -> float | None:
    """Real anonymous page faults per second of the host kernel (hostfault.c),
    or None when no C compiler is available."""
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_hostfault(tmp)
        if exe is None:
            return None
        out = subprocess.run([exe, str(nbytes)], capture_output=True, text=True, check=True).stdout
    return float(out.split()[1])


def rss_mib() -> float:
    """Peak RSS of this process (VmHWM: unlike ru_maxrss it is not inherited across exec)."""
    with open("/proc/self/status") as f:
        return int(f.read().split("VmHWM:")[1].split()[0]) / 1024


def table(rows: list[tuple], header: tuple) -> str:
    cols = list(zip(header, *rows))
    widths = [max(len(str(c)) for c in col) for col in cols]
    line = lambda r: "  ".join(str(c).rjust(w) for c, w in zip(r, widths))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def fmt(x: float) -> str:
    return f"{x:,.0f}"
