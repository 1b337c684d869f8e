"""Where a sweep's points run: processes on this host (pft's row pool), or
a Dask distributed cluster (--scheduler).  Either is a context manager
that gives (index, outcome) as points complete: a JobResult, the point's
JobError, or a PointError.  Leaving it early stops or cancels the rest.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

CONNECT_TIMEOUT_S = 10
WORKERS_TIMEOUT_S = 60
SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")


class PointError(Exception):
    """A point that did not run for a reason of the host, not of pft (its workers died)."""


def local(specs: list[dict], jobs: int | None):
    """The points in up to ``jobs`` processes here (default one per host CPU),
    as many as host memory holds (pft's default_jobs: HostMemoryError when
    one point alone cannot fit)."""
    from ..pft.rows import completed_rows, default_jobs
    return completed_rows(specs, default_jobs(specs, jobs))


def scheduler(text: str) -> str:
    """--scheduler: tcp://HOST:PORT (a bare HOST:PORT is tcp, as dask reads it)."""
    import argparse
    address = text if "://" in text else f"tcp://{text}"
    parts = urlsplit(address)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in SCHEMES or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a scheduler's address, like tcp://HOST:PORT")
    return address


def check_dask(prog: str) -> None:
    """--scheduler needs the cluster extra: checked before anything runs."""
    from importlib.util import find_spec
    from ..cli import UsageError
    if find_spec("distributed") is None:
        raise UsageError(f"{prog}: --scheduler needs dask and distributed: pip install 'vmemu[cluster]'")


def quiet_dask() -> None:
    """Nothing of dask's reaches the user's terminal: its loggers (and those of
    the event loop under it) go nowhere, its warnings (a version mismatch
    between client and workers, a slow event loop) are not shown.  The
    sweep says itself, in one line, what went wrong."""
    import logging
    import warnings
    import distributed  # noqa: F401  (its import sets up the loggers this replaces)
    warnings.filterwarnings("ignore")
    for name in ("distributed", "tornado", "asyncio", "bokeh"):
        log = logging.getLogger(name)
        log.handlers[:] = [logging.NullHandler()]
        log.propagate = False


class ClusterRows:
    """The points as tasks of a Dask cluster.  A worker lost mid-sweep:
    the scheduler runs its points again on another worker (a point whose
    workers die each time it runs is a PointError)."""

    def __init__(self, address: str, specs: list[dict]):
        from ..pft.rows import row_outcome
        self.client = connect(address)
        run = uuid.uuid4().hex[:12]        # two sweeps on one cluster share no task
        keys = [f"vmemu-sweep-{run}-{i}" for i in range(len(specs))]
        try:
            self.futures = self.client.map(row_outcome, specs, key=keys, pure=False)
        except BaseException:
            self.client.close()
            raise
        self.index = {f.key: i for i, f in enumerate(self.futures)}
        self.finished = False

    def __enter__(self):
        return iter(self)

    def __iter__(self):
        from distributed import as_completed
        for f in as_completed(self.futures, loop=self.client.loop):
            outcome = self.outcome(f)
            f.release()                     # its result is ours now: the cluster may forget it
            yield self.index[f.key], outcome
        self.finished = True

    def outcome(self, f):
        from distributed import KilledWorker
        from ..cli import CommandError
        point = self.index[f.key] + 1
        if f.status == "finished":
            return f.result()
        if f.status != "error":
            raise CommandError(f"the cluster dropped point {point} ({f.status}): has its scheduler gone?")
        e = f.exception()
        if isinstance(e, KilledWorker):
            return PointError("every worker that ran it died while running it")
        raise CommandError(f"a worker could not run point {point}: {type(e).__name__}: {e} "
                           "(is this vmemu installed on every worker?)")

    def __exit__(self, *exc) -> None:
        try:
            if not self.finished:
                self.client.cancel(self.futures)
            self.client.close(timeout=CONNECT_TIMEOUT_S)
        except Exception:                   # noqa: BLE001  (a cluster gone already: nothing to close)
            pass


def connect(address: str):
    """A client of the scheduler at address, once it has a worker."""
    from ..cli import CommandError
    quiet_dask()
    from distributed import Client
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError):
        raise CommandError(f"--scheduler {address}: no scheduler answered in {CONNECT_TIMEOUT_S} s") from None
    try:
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
    except (OSError, TimeoutError):
        client.close()
        raise CommandError(f"--scheduler {address}: no worker joined in {WORKERS_TIMEOUT_S} s") from None
    return client
