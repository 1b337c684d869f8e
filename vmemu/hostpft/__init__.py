"""pft on this host's own kernel.

``pft.c`` is the page fault test as a C program (built on demand by
``build``); ``run`` runs it and reads its output as pft's rows; ``cli`` is
the `vmemu hostpft` subcommand.  vmemu.calibrate builds its measuring
program with the same ``build``.
"""

from .build import BuildError, binary
from .run import HostError, HostResult, best_of, check_host_job, host_cpus, run_host_row

__all__ = ["BuildError", "binary", "HostError", "HostResult", "best_of", "check_host_job", "host_cpus",
           "run_host_row"]
