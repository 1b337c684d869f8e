"""A sweep's progress on stderr: points done of all, and the time left.

Only on a terminal: rich's bar where rich is installed (the `top` extra),
else one line rewritten in place.  Off a terminal nothing is drawn; the
lines a sweep has to say (a failed point) are printed either way.
"""

from __future__ import annotations

import time


def progress_bar(stream, total: int, done: int = 0):
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return Quiet(stream)
    try:
        import rich.progress  # noqa: F401
    except ImportError:
        return Counter(stream, total, done)
    return RichBar(stream, total, done)


class Quiet:
    """No bar: the notes alone."""

    def __init__(self, stream):
        self.stream = stream

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def advance(self, failed: bool = False) -> None:
        pass

    def note(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


class Counter(Quiet):
    """sweep: 12/40 points, 1 failed, 0:03:20 left -- one line, redrawn."""

    def __init__(self, stream, total: int, done: int = 0, clock=time.monotonic):
        super().__init__(stream)
        self.total, self.done, self.failed = total, done, 0
        self.ran, self.clock, self.start = 0, clock, clock()

    def __enter__(self):
        self.draw()
        return self

    def __exit__(self, *exc) -> None:
        self.stream.write("\n")
        self.stream.flush()

    def advance(self, failed: bool = False) -> None:
        self.done, self.ran, self.failed = self.done + 1, self.ran + 1, self.failed + failed
        self.draw()

    def note(self, line: str) -> None:
        self.stream.write("\r\x1b[K")            # the note takes the bar's line; the bar follows it
        super().note(line)
        self.draw()

    def line(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        left = "?"
        if self.ran:
            seconds = round((self.clock() - self.start) / self.ran * (self.total - self.done))
            left = f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        return f"sweep: {self.done}/{self.total} points{failed}, {left} left"

    def draw(self) -> None:
        self.stream.write("\r\x1b[K" + self.line())
        self.stream.flush()


class RichBar(Quiet):
    """rich's bar: points done of all, time so far, time left."""

    def __init__(self, stream, total: int, done: int = 0):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)
        super().__init__(stream)
        self.bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("points"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=Console(file=stream),
                            redirect_stdout=False, redirect_stderr=False)
        self.task = self.bar.add_task("sweep", total=total, completed=done)

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def advance(self, failed: bool = False) -> None:
        self.bar.advance(self.task)

    def note(self, line: str) -> None:
        self.bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
