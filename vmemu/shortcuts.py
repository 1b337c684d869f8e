"""The one switch for every host-side shortcut.

A shortcut changes how the host runs the model, never what the model
computes: the same virtual times, counters, free lists and bytes come out
with it on or off (tests/test_shortcuts.py compares whole machines both
ways).  On by default; ``VMEMU_SHORTCUTS=0`` in the environment, or
``with shortcuts.off():``, turns every one of them off:

- fault series (vmemu.mm.fault_batch): a thread that runs alone takes its
  next equal faults in one step instead of one scheduler step each;
- solo steps (vmemu.pft.job): such a thread does not go back to the
  scheduler between faults;
- deferred memory (vmemu.mm.deferred): a faulted page's clear, zero check
  and touch are done later, in sorted runs;
- exit in runs (vmemu.mm.fault.FaultPath.exit_mmap): a chunk of pages per
  call to free_order0_run, not one.

With the switch off every fault is its own scheduler step and every byte
is written when the model says so: the reference the shortcuts are checked
against.
"""

from __future__ import annotations

import contextlib
import os

_enabled = os.environ.get("VMEMU_SHORTCUTS", "1").strip() not in ("0", "no", "off")


def enabled() -> bool:
    return _enabled


@contextlib.contextmanager
def off():
    """Every shortcut off inside the block (machines built inside it keep
    what they chose when they were built)."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before
