"""The ``message`` command: a mailbox message to a node on every disk, and its
acknowledgement (shareddisk/messages.py)."""

from __future__ import annotations

from typing import Any, Sequence

from shareddisk.clock import Clock, SystemClock
from shareddisk.errors import UsageError
from shareddisk.messages import send_message, wait_for_ack
from shareddisk.porcelain.areas import Areas


def send(devices: Sequence[str], node: int, message: str, *, wait: bool = False,
         timeout: float | None = None, clock: Clock | None = None) -> dict[str, Any]:
    """Send ``message`` to ``node`` (a majority of ``devices`` must take it); with
    ``wait``, whether it acknowledged within ``timeout`` (default: the dead timeout)."""
    if timeout is not None and not wait:
        raise UsageError("--timeout applies to --wait only")
    clock = clock or SystemClock()
    with Areas(devices, writable=True) as areas:
        sent = send_message(areas, node, message, clock=clock)
        acked = wait_for_ack(areas, node, sent.seq, clock=clock, timeout=timeout) if wait else None
    return {"node": node, "message": sent.message, "seq": sent.seq, "acknowledged": acked}
