"""pft on this host's own kernel.

``pft.c`` is the page fault test as a C program (built on demand by
``build``); ``run`` runs it and reads its output as pft's rows; ``cli`` is
the `vmemu hostpft` subcommand.  vmemu.calibrate builds its measuring
program with the same ``build``.
"""

# The names below, each from its module when first used: `vmemu` builds every
# subcommand's parser at start-up, and the compiler's and the runner's
# modules are imported only by a command that runs the program.
_FROM = {"BuildError": "build", "binary": "build", "HostError": "run", "HostResult": "run", "best_of": "run",
         "check_host_job": "run", "host_cpus": "run", "run_host_row": "run"}
__all__ = list(_FROM)


def __getattr__(name: str):
    if name not in _FROM:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module
    return getattr(import_module(f".{_FROM[name]}", __name__), name)
