"""The vmemu daemon: one Machine served over FUSE.

Threading: FUSE runs multi-threaded.  Every model call happens under
``Kernel.lock``.  Reads between two changes of the model render once:
every locked section ends a *generation*, and a file's text is served
again, without the lock, until the generation moves on (the clock
thread's tick is one, every write another).

Virtual time follows wall time x speed, idle or not.  While no job runs, a
background thread advances the machine every ~100 ms.  A fault job runs
in the scheduler, which calls the job's Pace between steps: it waits until
wall time catches up with virtual time (``--speed max``: it does not), and
at least every OPEN_S it lets the threads waiting for the model lock in
(readers see the machine as of that step; writers may change it, as on
the real kernel), so every file moves during a job.  One job at a time.
A job the host cannot keep pace with says so (the log, proc/vmemu/pace)
and runs as fast as it can; the row is the same whatever the pace.

With ``--state FILE`` the machine is saved there at a clean unmount and,
while it runs, checkpointed (Checkpoint): a SIGKILL or the host's OOM
killer loses at most one --checkpoint interval.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import random
import signal
import threading
import time

from .kernel.sched import NEVER
from .machine import Machine
from .mm.fail_page_alloc import FailPageAlloc
from .fs import procfs
from .mounts import run_files

log = logging.getLogger("vmemu.daemon")
TICK_S = 0.1


QUANTUM_NS = 2_000_000      # a job's pace is checked every 2 ms of virtual time
OPEN_S = 0.05              # and the model lock is opened at least this often (wall)
BEHIND_S = 0.1             # a job further behind its pace than this is reported
STOP_WAIT_S = 10           # at unmount, how long a checkpoint being written is waited for

# libfuse ends its loop on these: its handler marks the session ended, and
# only the main thread, waiting for the loop's end, wakes up to see it
# (libfuse's own workers block them).
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT}


def background_thread(target, name: str) -> threading.Thread:
    """A daemon thread that never takes STOP_SIGNALS: one taken here (a
    SIGTERM left pending while the daemon was stopped goes to whichever
    thread runs first) would end the session with no thread to notice."""
    def run():
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        target()
    return threading.Thread(target=run, name=name, daemon=True)


class Kernel:
    """The machine plus everything the files need: the model lock, the fault
    job runner and its pace, and a few task counters."""

    def __init__(self, machine: Machine, seed: int = 0, speed: float = 1.0):
        self.machine = machine
        self.speed = speed                 # virtual s per wall s; inf: jobs flat out
        self.lock = threading.Lock()       # the model
        self.job_lock = threading.Lock()   # one fault job at a time
        self._waiting = 0                  # threads waiting for the model lock
        self._count = threading.Lock()
        # The model's generation: one more after every locked section that may
        # have changed it.  A file's text rendered at generation g is served
        # again, without the lock, as long as the generation is still g.
        self.generation = 0
        self.rendered: dict[str, tuple[int, bytes]] = {}
        self.last_job = None
        self.pace: Pace | None = None      # the running job's
        self.last_behind_ms = 0            # how far the last job fell behind its pace
        self.last_pid = 1          # init; every task a job forks or a thread it starts takes a pid
        self.ctxt = 0
        # A machine restored by `vmemu mount --state` brings its own (saved) fail_page_alloc.
        fpa = machine.alloc.fail_page_alloc or FailPageAlloc(rng=random.Random(seed))
        fpa.printk = lambda s: log.info("%s", s.strip())
        self.fail_page_alloc = machine.alloc.fail_page_alloc = fpa
        self.tree = procfs.build_tree(self)
        self.checkpoint: Checkpoint | None = None     # --state with --checkpoint > 0
        self._stop = threading.Event()
        self._clock_thread: threading.Thread | None = None

    # -- model access: the only places that take the lock ---------------------

    @contextlib.contextmanager
    def model(self):
        """The model lock, counted while waited for (a running job opens it
        for whoever waits)."""
        with self._count:
            self._waiting += 1
        try:
            self.lock.acquire()
        finally:
            with self._count:
                self._waiting -= 1
        try:
            yield
        finally:
            self.lock.release()

    @property
    def someone_waiting(self) -> bool:
        """A reader or writer waits for the model lock (a job lets it in)."""
        return self._waiting > 0

    def render(self, f) -> bytes:
        if not f.model:
            return f.generate()
        # Unchanged model, same text: a tight cat loop renders once per clock
        # tick, not once per read (the generation and the entry are each read
        # once; an entry from an older generation is never served).
        hit = self.rendered.get(f.path)
        if hit is not None and hit[0] == self.generation:
            return hit[1]
        with self.model():
            text = f.generate()
            self.rendered[f.path] = (self.generation, text)
            return text

    def call(self, fn, *args):
        with self.model():
            try:
                return fn(*args)
            finally:
                self.generation += 1

    def open_window(self, seconds: float) -> None:
        """From a running job, between two steps: let the threads waiting
        for the model lock in, and wait ``seconds`` of wall time (pacing)."""
        self.generation += 1
        end = time.monotonic() + seconds
        self.lock.release()
        try:
            while True:
                left = end - time.monotonic()
                if left <= 0 and not self._waiting:
                    break
                time.sleep(min(max(left, 0.0005), 0.005))
                if left <= -0.02:             # waiters had 20 ms: the job goes on
                    break
        finally:
            self.lock.acquire()

    def fault(self, job: dict) -> None:
        """Run one pft job (proc/vmemu/fault write); JobError keeps its errno."""
        from . import pft
        self.check_job_memory(job)
        with self.job_lock, self.model():
            log.info("fault job start: %s", job)
            tl = self.machine.timeline
            self.pace = tl.pacer = Pace(self, self.machine.clock())
            tl.pace_at = self.machine.clock() + QUANTUM_NS
            try:
                t0 = time.monotonic()
                result = pft.run_job(self.machine, job["nbytes"], job["threads"], job["rep"],
                                     job["cachelines"])
                log.info("fault job %s: %s (%.2f s wall)", job, pft.format_2004(result).strip(),
                         time.monotonic() - t0)
                self.last_job = result
            finally:
                tl.pacer, tl.pace_at = None, NEVER
                self.last_behind_ms = int(self.pace.behind * 1000)
                self.pace = None
                self.last_pid += job["rep"] * job["threads"]
                self.ctxt += 2 * job["rep"] * job["threads"]
                self.generation += 1
                if self.checkpoint is not None:
                    self.checkpoint.job_done()

    def check_job_memory(self, job: dict) -> None:
        """ENOMEM for a job whose bookkeeping the host's available memory
        cannot hold (the machine itself was admitted at mount)."""
        from .mm.memory import HostMemoryError, fits, job_bytes
        pages = job["nbytes"] // self.machine.page_size
        try:
            fits(job_bytes(self.machine.profile, pages), f"a fault job of {pages} pages")
        except HostMemoryError as e:
            log.warning("fault job refused: %s", e)
            from .pft import JobError
            raise JobError(errno.ENOMEM, f"fault: {e}") from None

    def fault_text(self) -> str:
        from . import pft
        text = pft.TITLE_2004 + "\n"
        if self.last_job is not None:
            text += pft.format_2004(self.last_job) + "\n"
        return text

    def pace_text(self) -> str:
        """proc/vmemu/pace: the speed, whether a job runs, how far behind its pace."""
        pace = self.pace
        behind = self.last_behind_ms if pace is None else int(pace.behind * 1000)
        speed = "max" if self.speed == math.inf else f"{self.speed:g}"
        return f"speed {speed}\njob {'running' if pace else 'idle'}\nbehind_ms {behind}\n"

    # -- virtual time ---------------------------------------------------------

    def start_clock(self) -> None:
        self._clock_thread = background_thread(self._clock, "vmemu-clock")
        self._clock_thread.start()
        if self.checkpoint is not None:
            self.checkpoint.start()

    def stop_clock(self) -> None:
        """Stop the clock and the checkpoints; a checkpoint being written is
        waited for (STOP_WAIT_S at most), so the final save comes after it."""
        self._stop.set()
        if self.checkpoint is not None:
            self.checkpoint.stop()
        if self._clock_thread is not None:
            self._clock_thread.join(STOP_WAIT_S)

    def _clock(self) -> None:
        # --speed max runs jobs flat out; idle time still follows wall time
        speed = 1.0 if self.speed == math.inf else self.speed
        last = time.monotonic()
        while not self._stop.wait(TICK_S):
            now = time.monotonic()
            if self.pace is not None:         # a job runs: it keeps its own time
                last = now
                continue
            ns = int((now - last) * speed * 1e9)
            last = now
            if ns > 0:
                try:
                    self.call(self.machine.advance, ns)
                except Exception:
                    log.exception("advance failed")


class Pace:
    """A running job's pacer (Timeline.pacer): between two steps, every
    QUANTUM_NS of virtual time, it waits until wall time has caught up with
    virtual time x speed, and opens the model lock at least every OPEN_S."""

    def __init__(self, kernel: Kernel, t0: int):
        self.kernel = kernel
        self.virt0, self.wall0 = t0, time.monotonic()
        self.opened = self.wall0
        self.behind = 0.0                 # the most it fell behind, s of wall time
        self.reported = False

    def __call__(self, t: int) -> None:
        k = self.kernel
        k.machine.timeline.pace_at = t + QUANTUM_NS
        now = time.monotonic()
        wait = 0.0
        if k.speed != math.inf:
            wait = self.wall0 + (t - self.virt0) / (k.speed * 1e9) - now
            if -wait > self.behind:
                self.behind = -wait
                if self.behind > BEHIND_S and not self.reported:
                    self.reported = True
                    log.warning("fault job behind its pace (speed %g): the host cannot keep up; "
                                "it runs as fast as it can", k.speed)
        if wait > 0 or now - self.opened >= OPEN_S or k.someone_waiting:
            k.open_window(max(wait, 0.0))
            self.opened = time.monotonic()


class Checkpoint:
    """The machine saved to the --state file while the daemon runs: every
    ``interval`` s of wall time and after each fault job.

    A checkpoint never changes what the machine does or when: it is taken
    only when the machine is idle already (state.snapshot with settle=False:
    no pending events, scrubd asleep, no BTE transfer, no task on a CPU),
    never while a fault job runs, and a due one is tried again every TICK_S
    until then.  The model lock is held only while the state is copied;
    compressing and writing it (fsync, rename over the old file) happen on
    this thread without it, so readers wait for the copy alone.  A write
    that fails is one line in the log; the previous file stays, and the
    next interval tries again."""

    def __init__(self, kernel: Kernel, path: str, interval: float):
        self.kernel, self.path, self.interval = kernel, path, interval
        self.due = False                      # a job ended since the last checkpoint
        self.next = time.monotonic() + interval
        self.deferred = False                 # the due one found the machine busy (logged once)
        self.writing = threading.Lock()       # one writer of the file at a time (the final save too)
        self._stop = threading.Event()
        self._thread = background_thread(self._run, "vmemu-checkpoint")

    def start(self) -> None:
        log.info("checkpoints to %s every %g s and after each fault job", self.path, self.interval)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_WAIT_S)

    def job_done(self) -> None:
        self.due = True

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            if self.due or time.monotonic() >= self.next:
                try:
                    self.save()
                except Exception:             # a bug: logged, and the daemon goes on
                    log.exception("checkpoint to %s failed", self.path)
                    self.due, self.next = False, time.monotonic() + self.interval

    def save(self) -> bool:
        """One checkpoint, if the machine is idle now; True when written."""
        from .state import write_snapshot
        t0 = time.monotonic()
        snap, held = self._take()
        if snap is None:
            return False
        self.due, self.deferred, self.next = False, False, t0 + self.interval
        with self.writing:
            try:
                write_snapshot(snap, self.path)
            except OSError as e:
                log.warning("checkpoint to %s failed: %s; the previous file is kept", self.path,
                            e.strerror or e)
                return False
        log.info("checkpoint to %s: virtual time %.3f s; took %.3f s, the model lock held %.3f s of it",
                 self.path, snap.now / 1e9, time.monotonic() - t0, held)
        return True

    def _take(self) -> tuple:
        """(a snapshot of the machine, the seconds the model lock was held for
        it), or (None, 0) while the machine is busy."""
        from .state import StateBusy, snapshot
        k = self.kernel
        if k.pace is not None:                # a job runs: not even a wait on its lock
            return None, 0
        with k.model():
            if k.pace is not None:            # a job's open window: never in the middle of one
                return None, 0
            t0 = time.monotonic()
            try:
                return snapshot(k.machine, settle=False), time.monotonic() - t0
            except StateBusy as e:
                if not self.deferred:
                    log.info("checkpoint deferred until the machine is idle: %s", str(e).split(": ", 1)[-1])
                    self.deferred = True
                return None, 0


class SetupError(Exception):
    """A one-line reason the daemon cannot start."""


def load_fuse():
    """mfusepy bound to libfuse3 (it prefers libfuse2 when both exist)."""
    if not os.path.exists("/dev/fuse"):
        raise SetupError("/dev/fuse is missing: load the fuse module or run the container with --device /dev/fuse")
    os.environ["FUSE_LIBRARY_NAME"] = "fuse3"
    try:
        import mfusepy
    except (OSError, EnvironmentError, ImportError) as e:
        raise SetupError(f"libfuse3 not found ({e}): apt-get install fuse3 libfuse3-3") from None
    if mfusepy.fuse_version_major != 3:
        raise SetupError(f"mfusepy loaded libfuse {mfusepy.fuse_version_major}, need 3: apt-get install libfuse3-3")
    return mfusepy


def restore_or_boot(state_file: str | None, profile: str, seed: int, backing: str | None) -> Machine:
    """The machine saved in state_file (vmemu mount --state) if the file exists,
    else a freshly booted one.  A bad file is a SetupError: nothing is mounted."""
    if state_file and os.path.exists(state_file):
        from .mm.memory import HostMemoryError, check_host_memory
        from .profiles import load_profile
        from .state import StateError, load_state

        def admit(saved_profile, saved_backing) -> None:
            check_host_memory(saved_profile, saved_backing, hint="a saved machine keeps its backing")
        try:
            machine = load_state(state_file, profile_name=load_profile(profile).name, admit=admit)
        except StateError as e:
            raise SetupError(f"refusing --state {e}") from None
        except HostMemoryError as e:
            raise SetupError(f"refusing --state {state_file}: {e}") from None
        log.info("restored %s from %s", machine.profile.name, state_file)
        return machine
    machine = Machine(profile, seed=seed, backing=backing)
    machine.boot_wall_time = time.time()
    return machine


def save_on_exit(kernel: Kernel, state_file: str | None) -> str | None:
    """Save the machine to state_file after a clean unmount (not while a job
    holds it).  Returns why it could not, or None; the previous file is
    left as it was (save_state writes a new one and renames it over)."""
    if not state_file:
        return None
    from .state import StateError, save_state
    writing = kernel.checkpoint.writing if kernel.checkpoint is not None else threading.Lock()
    if not writing.acquire(timeout=5):
        return f"not saved to {state_file}: a checkpoint is still writing it"
    try:
        if not kernel.lock.acquire(timeout=5):
            return f"not saved to {state_file}: a fault job still holds the machine"
        try:
            save_state(kernel.machine, state_file)
            log.info("saved the machine to %s", state_file)
            return None
        except (StateError, OSError) as e:
            return f"not saved to {state_file}: {e.strerror if isinstance(e, OSError) and e.strerror else e}"
        finally:
            kernel.lock.release()
    finally:
        writing.release()


def extra_fuse_options() -> dict:
    """VMEMU_FUSE_OPTIONS="key=value,flag,...": FUSE mount options on top of
    the defaults, for benchmarks/control_plane.py to compare settings."""
    opts: dict = {}
    for item in filter(None, os.environ.get("VMEMU_FUSE_OPTIONS", "").split(",")):
        key, _, value = item.partition("=")
        opts[key.strip()] = value.strip() if value else True
    return opts


def serve(mountpoint: str, profile: str, seed: int = 0, backing: str | None = None,
          speed: float = 1.0, allow_other: bool = False, threads: str = "multi",
          state_file: str | None = None, checkpoint: float = 0) -> int:
    """Mount and serve until unmounted or signalled (SIGTERM/SIGINT: libfuse's
    own handlers unmount; no Python handler is installed for them).  Returns
    1 when the machine could not be saved to state_file at the end: the
    reason is printed, logged and left in the run files' "error" file for
    `vmemu umount` to report.  ``checkpoint``: with a state_file, also save
    the machine there every that many seconds and after each job (0: never)."""
    load_fuse()
    from .fs.fuse_ops import VmemuFUSE, VmemuOps
    machine = restore_or_boot(state_file, profile, seed, backing)
    kernel = Kernel(machine, seed, speed)
    if state_file and checkpoint > 0:
        kernel.checkpoint = Checkpoint(kernel, state_file, checkpoint)
    files = run_files(mountpoint)
    write_run_files(files, {"mountpoint": os.path.realpath(mountpoint), "profile": machine.profile.name,
                            "seed": seed, "backing": machine.backing, "speed": speed, "threads": threads,
                            "state_file": state_file, "checkpoint": checkpoint if state_file else 0})
    log.info("mounting %s on %s (seed %d, backing %s, speed %g, %s-threaded FUSE)",
             machine.profile.name, mountpoint, seed, machine.backing, speed, threads)
    for first, pages, address, size in machine.memory.mappings():
        log.info("host memory of pfns %d-%d: %#x, %d bytes", first, first + pages - 1, address, size)
    kernel.start_clock()
    error = None
    try:
        VmemuFUSE(VmemuOps(kernel), mountpoint, **fuse_options(threads, allow_other))
    except RuntimeError as e:
        # libfuse3 reports an exit by signal as an error code; the unmount is done.
        log.info("FUSE loop ended: %s", e)
    finally:
        kernel.stop_clock()
        error = save_on_exit(kernel, state_file)
        if error:
            log.error("%s", error)
            with open(files["error"], "w") as f:
                f.write(error + "\n")
        _remove(files["pid"])
        _remove(files["info"])
        machine.close()
    log.info("unmounted %s", mountpoint)
    return 1 if error else 0


def write_run_files(files: dict, info: dict) -> None:
    """The pid file, and the info file (JSON: the daemon's settings) that
    vmemu umount and status read; no error file from an earlier run."""
    _remove(files["error"])
    with open(files["pid"], "w") as f:
        f.write(f"{os.getpid()}\n")
    with open(files["info"], "w") as f:
        json.dump(dict(info, pid=os.getpid(), log=files["log"]), f)


def fuse_options(threads: str, allow_other: bool) -> dict:
    opts = dict(foreground=True, nothreads=(threads == "single"), default_permissions=True,
                fsname="vmemu", subtype="vmemu", direct_io=True,
                # libfuse 3.14 warns about its own default (UINT_MAX) at every
                # mount unless this is set; 10 is its documented default.
                max_idle_threads=10)
    if allow_other:
        opts["allow_other"] = True
    opts.update(extra_fuse_options())
    return opts


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
