"""The compiled model (vmemu/native.py) is the Python model run as C: the
same bytes come out both ways, a compiled module never runs against other
sources, and scripts/test.sh's install did compile it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from bisect import bisect_right

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import cli
from make_golden import CASES, GOLDEN

from vmemu import native
from vmemu.kernel.sched import after

PYTHON = {"VMEMU_NATIVE": "0"}


def test_the_install_compiled_the_model():
    """scripts/test.sh installs with a C compiler and mypy: the model runs compiled."""
    if os.environ.get("VMEMU_NATIVE", "1") == "0":
        assert native.status() == "Python (VMEMU_NATIVE=0)"
        return
    assert native.status() == "compiled (mypyc)"
    for path in native.MODULES:
        module = sys.modules.get(native.module_name(path)) or __import__(native.module_name(path), fromlist=["_"])
        assert not module.__file__.endswith(".py"), module.__file__


def test_version_says_how_the_model_runs():
    assert cli("--version", env=PYTHON).stdout.splitlines()[1] == "model: Python (VMEMU_NATIVE=0)"


# pft rows that take every path of the model: one thread and several, both
# kernels, scrubd and the BTE, lines touched and pft -z, NUMA, the ledger
ROWS = [
    ["--profile", "altix-8", "--kernel", "stock", "-b", "96M", "-r", "2", "-f", "1,2,4,8", "--format", "csv"],
    ["--profile", "altix-8", "--kernel", "prezero", "-b", "64M", "-r", "3", "-f", "1,3", "-c", "4", "--ledger"],
    ["--profile", "altix-8", "--kernel", "prezero", "--bte", "-b", "64M", "-r", "2", "-f", "2", "--format", "json"],
    ["--profile", "x86-64", "--kernel", "stock", "-b", "32M", "-r", "2", "-f", "1,2", "-z"],
    ["--profile", "altix-512", "--kernel", "stock", "-b", "256M", "-f", "16", "--ledger"],
]


@pytest.mark.parametrize("row", ROWS, ids=["altix-8 stock 1-8 threads", "altix-8 prezero -c 4 ledger",
                                         "altix-8 prezero bte", "x86-64 stock -z", "altix-512 16 threads"])
def test_compiled_and_python_rows_are_the_same_bytes(row):
    compiled, python = cli("pft", *row, "-j", "1"), cli("pft", *row, "-j", "1", env=PYTHON)
    assert compiled.stdout and compiled.stdout == python.stdout


@pytest.mark.slow
def test_the_python_model_reproduces_the_golden_file():
    """Every golden case run as Python, in a process of its own (the compiled
    one is tests/test_golden_virtual_time.py's)."""
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from vmemu import native
        assert native.status().startswith("Python"), native.status()
        from make_golden import CASES, canonical
        print(json.dumps({{name: canonical(CASES[name]()) for name in CASES}}))
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                       env={**os.environ, **PYTHON})
    assert p.returncode == 0, p.stderr
    got, want = json.loads(p.stdout), json.loads(GOLDEN.read_text())
    for name in CASES:
        assert json.loads(got[name]) == want[name], f"{name}: the Python model differs from the golden run"


def test_a_compiled_module_never_runs_against_an_edited_source(tmp_path):
    """A copy of the package whose compiled files are older than one source:
    every model module loads from its .py (all or none), and --version says
    why; a compiled file the build did not record never loads; with one
    compiled module gone, none runs compiled."""
    root = os.path.dirname(os.path.dirname(native.__file__))
    if not os.path.exists(os.path.join(root, "vmemu", native.MANIFEST)):    # VMEMU_NATIVE=0 here is fine
        pytest.fail("needs the compiled model: pip install -e . with a C compiler")
    copy = tmp_path / "root"
    shutil.copytree(os.path.join(root, "vmemu"), copy / "vmemu", ignore=shutil.ignore_patterns("__pycache__"))
    for name in os.listdir(root):
        if name.endswith(".so"):              # mypyc's runtime library beside the package
            shutil.copy(os.path.join(root, name), copy / name)
    # a compiled file the build did not record (a module dropped from MODULES) is never loaded
    compiled_fault = next((copy / "vmemu" / "mm").glob("fault.*.so"))
    shutil.copy(compiled_fault, compiled_fault.with_name(compiled_fault.name.replace("fault.", "vmstat.", 1)))
    fault = copy / "vmemu" / "mm" / "fault.py"
    fault.write_text(fault.read_text() + "\n# edited after the build\n")
    script = ("import vmemu.native as n, vmemu.mm.fault as f, vmemu.kernel.sched as s, vmemu.mm.vmstat; "
              "print(n.status()); print(f.__file__.endswith('.py'), s.__file__.endswith('.py'))")
    env = {k: v for k, v in os.environ.items() if k != "VMEMU_NATIVE"}

    def run() -> list[str]:
        """The copy's status, and whether fault and sched load from their .py."""
        p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                           cwd=copy, env={**env, "PYTHONPATH": str(copy)})
        assert p.returncode == 0, p.stderr
        return p.stdout.splitlines()

    assert run() == ["Python (compiled from other sources: pip install -e . compiles them again)", "True True"]
    fault.write_text(fault.read_text().replace("\n# edited after the build\n", ""))
    assert run() == ["compiled (mypyc)", "False False"]
    # one compiled module gone: none of them runs compiled (they expect each other's C classes)
    next((copy / "vmemu" / "kernel").glob("sched.*.so")).unlink()
    status, loaded = run()
    assert "a compiled module is missing" in status and loaded == "True True"


def test_the_compiled_modules_type_check():
    """mypyc compiles only what mypy accepts; a type error would leave the
    model as Python at the next install (setup.py says so, once)."""
    from mypy import api as mypy
    root = os.path.dirname(os.path.dirname(native.__file__))
    out, err, status = mypy.run(["--check-untyped-defs", "--config-file", os.path.join(root, "pyproject.toml"),
                                 *(os.path.join(root, p) for p in native.MODULES)])
    assert status == 0, out + err


@given(st.lists(st.integers(-5, 40), max_size=40).map(sorted), st.integers(-10, 50), st.integers(0, 45))
def test_a_calendars_search_is_bisect_right(times, t, lo):
    """sched.after, the loop that runs compiled (as Python it is bisect_right itself)."""
    lo = min(lo, len(times))
    assert after(times, t, lo) == bisect_right(times, t, lo)
