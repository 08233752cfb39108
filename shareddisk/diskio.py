"""Per-disk I/O that a hung disk cannot block (the node's "servants").

A disk may hang for tens of seconds (SCSI timeouts, multipath queueing)
instead of failing fast.  If the heartbeat loop did its I/O in line, one hung
disk out of three would stall every round and fence a node that can still
write a majority.  So, as SBD gives each disk its own servant process, each
disk gets its own worker thread: a round hands every disk its request and
waits at most the I/O timeout; a disk whose previous request has not
finished gets no new one and counts as failed.

For the deterministic simulation (a virtual clock, no threads) the same
interface runs requests in line; a request that "took" longer than the I/O
timeout on the virtual clock counts as failed.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Callable

from shareddisk.clock import Clock
from shareddisk.errors import DeviceError


@dataclass
class Outcome:
    """How one disk's request ended."""

    ok: bool
    value: Any = None
    error: str | None = None
    seconds: float | None = None  # how long the I/O took, when it finished


class DiskWorker:
    """Runs one disk's requests, one at a time (a thread, or in line)."""

    def __init__(self, name: str, clock: Clock, threaded: bool):
        self.clock = clock
        self._pending: Future | None = None
        self._queue: queue.SimpleQueue | None = None
        if threaded:
            self._queue = queue.SimpleQueue()
            thread = threading.Thread(target=self._serve, name=f"disk:{name}", daemon=True)
            thread.start()

    def _serve(self) -> None:
        assert self._queue is not None
        while True:
            fn, future = self._queue.get()
            if fn is None:
                return
            began = self.clock.monotonic()
            try:
                result = fn()
            except BaseException as exc:  # handed to the waiting round
                future.seconds = self.clock.monotonic() - began
                future.set_exception(exc)
            else:
                future.seconds = self.clock.monotonic() - began
                future.set_result(result)

    @property
    def busy(self) -> bool:
        return self._pending is not None and not self._pending.done()

    def submit(self, fn: Callable[[], Any]) -> Future | None:
        """Start ``fn``; None when the previous request is still running."""
        if self.busy:
            return None
        future: Future = Future()
        if self._queue is None:
            began = self.clock.monotonic()
            try:
                result = fn()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
            future.took = self.clock.monotonic() - began  # type: ignore[attr-defined]
        else:
            self._queue.put((fn, future))
        self._pending = future
        return future

    def close(self) -> None:
        if self._queue is not None:
            self._queue.put((None, None))


def run_round(workers: list[DiskWorker], requests: list[Callable[[], Any]], clock: Clock,
              io_timeout: float) -> list[Outcome]:
    """Give each worker its request and collect the outcomes within ``io_timeout``."""
    started = clock.monotonic()
    futures = [w.submit(fn) for w, fn in zip(workers, requests)]
    out = []
    for future in futures:
        if future is None:
            out.append(Outcome(False, error="previous I/O still pending"))
            continue
        took = getattr(future, "took", None)
        try:
            if took is not None:  # ran in line on the caller's clock
                value = future.result()
                if took > io_timeout:
                    out.append(Outcome(False, error=f"I/O took {took:.3f} s > io timeout"))
                    continue
            else:
                remaining = max(0.0, io_timeout - (clock.monotonic() - started))
                value = future.result(timeout=remaining)
        except FutureTimeout:
            out.append(Outcome(False, error=f"no answer within the io timeout ({io_timeout:g} s)"))
            continue
        except DeviceError as exc:
            out.append(Outcome(False, error=str(exc)))
            continue
        out.append(Outcome(True, value, seconds=getattr(future, "seconds", took)))
    return out
