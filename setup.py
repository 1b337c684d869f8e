"""Compiles the model's hot modules with mypyc (vmemu/native.py says which
and why).  Everything else is in pyproject.toml.  A build that cannot
compile them (no C compiler, VMEMU_NATIVE=0) installs vmemu as Python."""

import importlib.util
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("vmemu_native", os.path.join(ROOT, "vmemu", "native.py"))
native = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(native)


class BuildNative(build_ext):
    """build_ext whose failure is a warning, and whose success is recorded
    (vmemu/native.sha256): the compiled modules are then used."""

    def run(self):
        manifest = os.path.join(self._package_dir(), native.MANIFEST)
        if os.path.exists(manifest):
            os.remove(manifest)               # stale until this build succeeds
        try:
            super().run()
        except Exception as e:                # noqa: BLE001 - any build failure leaves Python
            print(f"vmemu: the model is not compiled ({e}); it runs as Python", file=sys.stderr)
            return
        native.write_manifest(ROOT, self._package_dir())

    def _package_dir(self):
        return os.path.join(ROOT if self.inplace else self.build_lib, "vmemu")


def extensions():
    if os.environ.get("VMEMU_NATIVE", "1").strip() in ("0", "no", "off"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("vmemu: mypy is not installed; the model runs as Python", file=sys.stderr)
        return []
    try:
        return mypycify(list(native.MODULES), opt_level="3")
    except SystemExit:                        # mypy printed the type errors
        print("vmemu: the model is not compiled (mypy's errors above); it runs as Python", file=sys.stderr)
    except Exception as e:                    # noqa: BLE001 - any mypyc failure leaves Python
        print(f"vmemu: the model is not compiled (mypyc: {e}); it runs as Python", file=sys.stderr)
    return []


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildNative})
