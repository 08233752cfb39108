"""Progress of long work: a callback for library code, a terminal bar for the CLI.

Library functions that can take a while (``create_area`` writing the regions,
``verify_area`` reading them) accept ``progress: Progress | None`` and call
it as ``progress(done, total)``: first with ``done == 0``, then with ``done``
strictly increasing, last with ``done == total``.  They count through a
``Tally`` and never import ``rich``.

The CLI passes a ``TerminalBar``: it draws a ``rich`` progress bar on stderr
(so stdout and ``--json`` stay clean), only when stderr is a terminal, and
only once the work has lasted ``delay`` seconds: short work shows nothing.
``rich`` is imported when a bar is first drawn.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Callable, Iterator, TextIO

Progress = Callable[[int, int], None]
"""``progress(done, total)``: ``done`` units of ``total`` are finished."""

DELAY = 0.5  # seconds of work before a bar appears


class Tally:
    """Counts finished work for a ``Progress`` callback (or for nobody when it is None)."""

    __slots__ = ("total", "done", "_progress")

    def __init__(self, progress: Progress | None, total: int):
        self.total, self.done, self._progress = total, 0, progress
        if progress is not None:
            progress(0, total)

    def to(self, done: int) -> None:
        """``done`` units are finished (a smaller or equal count than before reports nothing)."""
        done = min(done, self.total)
        if done > self.done:
            self.done = done
            if self._progress is not None:
                self._progress(done, self.total)

    def add(self, n: int) -> None:
        self.to(self.done + n)


class TerminalBar:
    """A ``Progress`` callback that draws a rich bar once the work has lasted ``delay`` s.

    ``unit`` is "bytes" (sizes shown in KiB/MiB) or a word shown after the
    counts ("records", "seeds").  ``note(text)`` sets a short text shown
    after the bar (e.g. how many seeds failed so far).
    """

    def __init__(self, description: str, stream: TextIO, *, unit: str = "",
                 delay: float = DELAY, transient: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        self.description, self.stream, self.unit = description, stream, unit
        self.delay, self.transient, self.clock = delay, transient, clock
        self._began: float | None = None
        self._bar: Any = None
        self._task: Any = None
        self._note = ""

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if self._began is None:
            self._began = now
        if self._bar is None:
            if now - self._began < self.delay or done >= total:
                return  # short so far, or finished before it mattered
            self._start(total)
        self._bar.update(self._task, completed=done, total=total, note=self._note)

    def note(self, text: str) -> None:
        self._note = text
        if self._bar is not None:
            self._bar.update(self._task, note=text)

    def _start(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn,
                                   Progress as RichProgress, TextColumn, TimeRemainingColumn)
        counts: list[Any] = [DownloadColumn(binary_units=True)] if self.unit == "bytes" else \
            [MofNCompleteColumn(), TextColumn(self.unit, markup=False)]
        console = Console(file=self.stream, highlight=False, emoji=False, markup=False)
        self._bar = RichProgress(
            TextColumn("{task.description}", markup=False), BarColumn(), *counts,
            TextColumn("{task.fields[note]}", markup=False), TimeRemainingColumn(),
            console=console, transient=self.transient)
        # A long device path would leave no room for the bar: keep its end.
        room = max(12, console.width // 3)
        description = self.description if len(self.description) <= room else \
            "…" + self.description[-(room - 1):]
        self._task = self._bar.add_task(description, total=total, note=self._note)
        self._bar.start()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


@contextlib.contextmanager
def terminal_bar(description: str, *, stream: TextIO | None = None, unit: str = "",
                 delay: float = DELAY, transient: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> Iterator[TerminalBar | None]:
    """A ``TerminalBar`` on ``stream`` (default stderr) if it is a terminal, else None."""
    stream = sys.stderr if stream is None else stream
    if not stream.isatty():
        yield None
        return
    bar = TerminalBar(description, stream, unit=unit, delay=delay, transient=transient,
                      clock=clock)
    try:
        yield bar
    finally:
        bar.close()


__all__ = ["DELAY", "Progress", "Tally", "TerminalBar", "terminal_bar"]
