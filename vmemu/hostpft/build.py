"""The host programs' C sources, built on demand with the system compiler.

A program is built once per source text and compiler flags: the binary
lives in the cache directory ($XDG_CACHE_HOME/vmemu, else ~/.cache/vmemu)
under a name that carries the hash of both, so an edited source is rebuilt
and concurrent builds (parallel tests) never see a half-written binary
(each compiles to a file of its own and renames it into place).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from importlib import resources

CFLAGS = ["-O2", "-pthread", "-Wall"]
COMPILERS = ("cc", "gcc")


class BuildError(Exception):
    """A program that could not be built; the message is one line."""


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "vmemu")


def compiler() -> str:
    """The system C compiler: $CC if set, else cc or gcc on PATH."""
    wanted = os.environ.get("CC")
    for name in [wanted] if wanted else COMPILERS:
        path = shutil.which(name)
        if path:
            return path
    tried = f"$CC ({wanted})" if wanted else " or ".join(COMPILERS)
    raise BuildError(f"no C compiler found ({tried} on PATH) to build the host programs: install gcc "
                     "(apt-get install gcc)")


def source(package: str, name: str) -> bytes:
    """The C source ``name`` shipped in ``package`` (package data)."""
    return resources.files(package).joinpath(name).read_bytes()


def binary(package: str, name: str) -> str:
    """The path of the built program of ``package``'s C file ``name``
    (pft.c), compiling it first when the cache has no build of this source."""
    text = source(package, name)
    key = hashlib.sha256(text + " ".join(CFLAGS).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir(), f"{name.removesuffix('.c')}-{key}")
    if os.access(path, os.X_OK):
        return path
    _compile(text, name, path)
    return path


def _compile(text: bytes, name: str, path: str) -> None:
    cc = compiler()
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as tmp:
            src, out = os.path.join(tmp, name), os.path.join(tmp, "a.out")
            with open(src, "wb") as f:
                f.write(text)
            p = subprocess.run([cc, *CFLAGS, "-o", out, src], capture_output=True, text=True)
            if p.returncode:
                errors = [line for line in p.stderr.splitlines() if "error" in line] or p.stderr.splitlines()
                raise BuildError(f"{cc} could not build {name}: {errors[0] if errors else 'no message'}")
            os.replace(out, path)
    except OSError as e:
        raise BuildError(f"cannot build {name} in {folder}: {e.strerror}") from None
