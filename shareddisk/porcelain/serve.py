"""The ``run`` command: the node daemon with what surrounds it on a host.

The hardware watchdog it arms (or why it runs unwatched), systemd's
notifications and watchdog, Prometheus metrics when asked for, and the view
file ``status`` answers from; everything closed again when the daemon ends.
Signals stay with the caller: it says when to stop through ``should_stop``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from shareddisk.area import Area, check_name
from shareddisk.clock import SystemClock
from shareddisk.format.heartbeat import NODE_NAME_BYTES
from shareddisk.porcelain.areas import Areas, check_node


def run(devices: Sequence[str], node_id: int, *, should_stop: Callable[[], bool],
        name: str = "", interval: float | None = None, fence_name: str = "exit",
        state_dir: str | Path | None = None, metrics_address: str | None = None,
        watchdog_path: str | None = None, watchdog_timeout: int | None = None) -> None:
    """Run node ``node_id``'s daemon on ``devices`` until ``should_stop()``."""
    from shareddisk.daemon import Daemon
    from shareddisk.fencing import FENCE_ACTIONS, WRITERS
    from shareddisk.notify import StatusNotifier, Watchdog, sd_notify
    from shareddisk.view import attach_view
    if name:
        check_name(name, "node name", NODE_NAME_BYTES)
    with Areas(devices, writable=True) as areas:
        check_node(areas[0], node_id, "--node-id")
        hw, unwatched = arm_watchdog(watchdog_path, watchdog_timeout, areas, interval)
        metrics = None
        try:
            daemon = Daemon(areas, node_id, clock=SystemClock(), name=name, interval=interval,
                            fence=FENCE_ACTIONS[fence_name](), state_dir=state_dir,
                            writers=WRITERS, watchdog=hw)
            watchdog = Watchdog()  # systemd WatchdogSec=: fed from the heartbeat loop
            if watchdog.enabled:
                daemon.node.after_step.append(watchdog.kick)
            if metrics_address:
                from shareddisk.metrics import Metrics  # imported only when asked for

                metrics = Metrics()
                metrics.attach(daemon)
                host, port = metrics.serve(metrics_address)
                logging.getLogger("shareddisk.metrics").info("event=metrics address=%s:%d",
                                                             host, port)
            # What `status` on this host answers from, and systemd's STATUS= line.
            view = attach_view(daemon, consumers=(StatusNotifier().from_view,))
        except BaseException:
            if hw is not None:
                hw.disarm()  # the daemon never started: nothing relies on the watchdog
            raise
        try:
            def ready() -> None:
                if unwatched:  # said once the daemon runs (a refused start says only why)
                    logging.getLogger("shareddisk.watchdog").warning(
                        "event=unwatched reason=%r", unwatched)
                sd_notify("READY=1")

            daemon.run(should_stop, on_ready=ready)
        finally:
            view.close()
            if metrics is not None:
                metrics.close()


def arm_watchdog(path: str | None, timeout: int | None, areas: list[Area],
                 interval: float | None) -> tuple[Any, str | None]:
    """Open the hardware watchdog ``run`` was given (or /dev/watchdog when present);
    (None, why) when running unwatched."""
    from shareddisk.watchdog import DEFAULT_DEVICE, HardwareWatchdog, check_device, default_timeout
    if path is None:
        path = DEFAULT_DEVICE if os.path.exists(DEFAULT_DEVICE) else None
        if path is None:
            return None, (f"no {DEFAULT_DEVICE}: a daemon that cannot act cannot fence this "
                          f"host (give --watchdog DEVICE, or --watchdog none to say so)")
    if path == "none":
        return None, "--watchdog none: a daemon that cannot act cannot fence this host"
    check_device(path)
    if timeout is None:
        i = interval if interval is not None else areas[0].superblock["interval_ms"] / 1000
        timeout = default_timeout(i, i)
    return HardwareWatchdog(path, timeout), None
