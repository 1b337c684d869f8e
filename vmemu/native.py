"""The model's hot modules compiled by mypyc: the same source, run as C.

The install (``pip install -e .``, setup.py) compiles MODULES with mypyc
when it can: the scheduler and its calendars, the memory system, zones
and the allocator, the fault path and its series, kscrubd, pft's threads.
Nothing is written twice: the compiled module is
the Python module, with its annotations enforced and its classes laid out
as C structs, and the two compute the same bytes (tests/test_native.py
runs jobs both ways); docs/performance.md measures the difference.

The build records each source's hash in MANIFEST.  The compiled modules
are used only when every one of them was compiled from the sources
present; otherwise (a source edited since, a build that failed, no
compiler) or with ``VMEMU_NATIVE=0`` in the environment every one of them
runs as Python.  ``vmemu --version`` says which.

This file is read by setup.py on its own: it imports nothing of vmemu.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import os
import sys

# compiled together: calls between them are C calls (paths from the repository root)
MODULES = (
    "vmemu/kernel/sched.py",
    "vmemu/arch/memsys.py",
    "vmemu/mm/mmzone.py",
    "vmemu/mm/page_alloc.py",
    "vmemu/mm/deferred.py",
    "vmemu/mm/fault.py",
    "vmemu/mm/fault_batch.py",
    "vmemu/mm/scrubd.py",
    "vmemu/pft/task.py",
)
MANIFEST = "native.sha256"        # beside this file: "sha256  module" lines, of the sources compiled
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def module_name(path: str) -> str:
    return path[:-len(".py")].replace("/", ".")


def source_hashes(root: str) -> dict[str, str]:
    """sha256 of each of MODULES' sources under ``root`` (the repository root)."""
    out = {}
    for path in MODULES:
        with open(os.path.join(root, path), "rb") as f:
            out[module_name(path)] = hashlib.sha256(f.read()).hexdigest()
    return out


def write_manifest(root: str, package_dir: str) -> None:
    """After a successful build: the hashes of what was compiled."""
    with open(os.path.join(package_dir, MANIFEST), "w") as f:
        f.writelines(f"{digest}  {name}\n" for name, digest in sorted(source_hashes(root).items()))


def _why_not() -> str | None:
    """None when the compiled modules may be used, else why not."""
    if os.environ.get("VMEMU_NATIVE", "1").strip() in ("0", "no", "off"):
        return "VMEMU_NATIVE=0"
    try:
        with open(os.path.join(_PACKAGE, MANIFEST)) as f:
            built = {name: digest for digest, name in (line.split() for line in f)}
    except (OSError, ValueError):
        return "not compiled"
    root = os.path.dirname(_PACKAGE)
    if built != source_hashes(root):
        return "compiled from other sources: pip install -e . compiles them again"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]       # this Python's
    if not all(os.path.exists(os.path.join(root, path[:-len(".py")] + suffix)) for path in MODULES):
        return "not compiled for this Python, or a compiled module is missing: pip install -e . compiles them"
    return None


class _SourceFinder:
    """Loads vmemu's modules from their .py files, except the compiled ones
    allowed: a compiled file beside a source is used only when the build
    recorded it (a module dropped from MODULES may leave one behind)."""

    def __init__(self, compiled: set[str]):
        self.compiled = compiled

    def find_spec(self, name, path=None, target=None):
        if not name.startswith("vmemu.") or name in self.compiled:
            return None
        source = os.path.join(os.path.dirname(_PACKAGE), *name.split(".")) + ".py"
        if not os.path.isfile(source):
            return None                       # a package, or no such module: the usual finders
        spec = importlib.machinery.ModuleSpec(name, importlib.machinery.SourceFileLoader(name, source), origin=source)
        spec.has_location = True              # __file__ is the source
        return spec


_reason: str | None = None


def install() -> None:
    """At vmemu's import: MODULES run compiled only when every compiled one
    matches its source (all or none: a compiled module expects the others'
    C classes); every other module of vmemu runs from its source."""
    global _reason
    _reason = _why_not()
    compiled = {module_name(p) for p in MODULES} if _reason is None else set()
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _SourceFinder)]
    sys.meta_path.insert(0, _SourceFinder(compiled))


def status() -> str:
    """How the model runs: 'compiled (mypyc)' or 'Python (why)'."""
    sched = sys.modules.get("vmemu.kernel.sched")
    if sched is None:
        import vmemu.kernel.sched as sched
    if not (sched.__file__ or "").endswith(".py"):
        return "compiled (mypyc)"
    return f"Python ({_reason or 'not compiled'})"
