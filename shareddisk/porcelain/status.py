"""The ``status`` command: members, quorum and resources, from the best source.

With a daemon of this cluster on this host and no window asked for, the
answer is that daemon's view (shareddisk/view.py), at once.  Otherwise the
slots are read: once, or for ``window`` seconds, or for the suspect timeout
when a local daemon's view is stale (its loop is slow or stuck); with
``watch``, a new report every interval until the caller stops.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from shareddisk.clock import Clock, SystemClock
from shareddisk.porcelain.areas import Areas


def reports(devices: Sequence[str], *, window: float | None = None, watch: bool = False,
            clock: Clock | None = None,
            live: Callable[[Any], Any] | None = None) -> Iterator[dict[str, Any]]:
    """The status report of ``devices``; with ``watch``, one more every interval
    (endless: Ctrl-C, a KeyboardInterrupt, ends it).  ``live``, with ``watch``,
    is handed the StatusReader instead (a view redrawn in place)."""
    from shareddisk.status import StatusReader, local_view, view_report
    clock = clock or SystemClock()
    with Areas(devices, writable=False) as areas:
        note = None
        if window is None and not watch:
            view, note = local_view(areas, clock)
            if view is not None:
                yield view_report(view, areas)
                return
        reader = StatusReader(areas, clock)
        if window is None:
            # No daemon here: one read.  A daemon here without a fresh view (its
            # loop is slow or stuck): watch for the suspect timeout, as it would.
            window = reader.timeouts.suspect if note else 0.0
        reader.observe(window)
        if watch and live is not None:
            live(reader)
        while True:
            report = reader.report()
            if note:
                report["source"]["note"] = note
            yield report
            if not watch:
                return
            reader.observe(reader.timeouts.interval)
