"""Sending mailbox messages (test, reset, off, clear; pull, stop) and waiting for the ack.

The sender writes the target's mailbox slot on every disk with a sequence
number one above the highest it finds; the target acts within one interval
and acknowledges by writing that number into its own heartbeat slot
(``mailbox_ack``), so every sector keeps one writer at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

from shareddisk.area import Area
from shareddisk.clock import Clock
from shareddisk.errors import DeviceError, FormatError, QuorumLost, UsageError
from shareddisk.format import heartbeat, mailbox
from shareddisk.timeouts import Timeouts


@dataclass(frozen=True)
class Sent:
    target: int
    message: str
    seq: int
    disks_written: int


def _check_target(area: Area, target: int) -> None:
    count = area.superblock["node_count"]
    if not 1 <= target <= count:
        raise UsageError(f"node id {target} out of range 1..{count}")


NODE_MESSAGES = ("test", "reset", "off", "clear")
RESOURCE_MESSAGES = ("pull", "stop")  # about one resource: give ``resource``


def send_message(areas: list[Area], target: int, message: str, *, clock: Clock,
                 sender_id: int = 0, resource: int | None = None) -> Sent:
    """Write ``message`` to ``target``'s mailbox on a majority of disks."""
    try:
        kind = mailbox.Message[message.upper()]
    except KeyError:
        raise UsageError(f"unknown message {message!r} "
                         f"({', '.join(NODE_MESSAGES + RESOURCE_MESSAGES)})") from None
    if kind is mailbox.Message.NONE:
        raise UsageError("message 'none' cannot be sent")
    if (resource is not None) != (kind.name.lower() in RESOURCE_MESSAGES):
        raise UsageError(f"message {kind.name.lower()!r}: a resource is given with "
                         f"{' and '.join(RESOURCE_MESSAGES)} and only with them")
    for area in areas:
        _check_target(area, target)
    seqs = [0]
    for area in areas:
        try:
            buf = area.read_record("mailbox", target - 1)
            seqs.append(mailbox.CODEC.decode(buf, 0, area.where("mailbox", target - 1))["seq"])
        except (DeviceError, FormatError):
            continue
    seq = max(seqs) + 1
    values = dict(mailbox.empty(target), message=kind, sender_id=sender_id, seq=seq,
                  sent_ns=int(clock.wall() * 1e9),
                  resource=0 if resource is None else resource + 1)
    written = 0
    for area in areas:
        try:
            area.device.write(area.regions["mailbox"].record_offset(target - 1),
                              mailbox.CODEC.encode(values, area.sector_size))
            area.device.flush()
            written += 1
        except DeviceError:
            continue
    if written < len(areas) // 2 + 1:
        raise QuorumLost(f"message to node {target} reached {written} of {len(areas)} disks")
    return Sent(target, kind.name.lower(), seq, written)


def acknowledged(areas: list[Area], target: int, seq: int) -> bool:
    """True once the target's slot shows ``seq`` acknowledged (or that it fenced)."""
    for area in areas:
        try:
            buf = area.read_record("heartbeat", target - 1)
            slot = heartbeat.CODEC.decode(buf, 0, area.where("heartbeat", target - 1))
        except (DeviceError, FormatError):
            continue
        if slot["mailbox_ack"] >= seq:
            return True
    return False


def _target_timeouts(areas: list[Area], target: int) -> Timeouts:
    """The timing the target publishes in its slot; the area's when it publishes none.

    A node may run with a longer ``--interval`` than the area's, and then it
    acts on a message later: waiting only the area's dead timeout would give
    up on it too early.
    """
    for area in areas:
        try:
            buf = area.read_record("heartbeat", target - 1)
            slot = heartbeat.CODEC.decode(buf, 0, area.where("heartbeat", target - 1))
            if slot["interval_ms"]:
                return Timeouts.from_interval(slot["interval_ms"] / 1000,
                                              slot["io_timeout_ms"] / 1000 or None,
                                              slot["watchdog_s"])
        except (DeviceError, FormatError, ValueError):
            continue
    return Timeouts.from_interval(areas[0].superblock["interval_ms"] / 1000)


def wait_for_ack(areas: list[Area], target: int, seq: int, *, clock: Clock,
                 timeout: float | None = None) -> bool:
    """Poll until acknowledged or ``timeout`` (default: the target's dead timeout)."""
    t = _target_timeouts(areas, target)
    deadline = clock.monotonic() + (timeout if timeout is not None else t.dead)
    while True:
        if acknowledged(areas, target, seq):
            return True
        if clock.monotonic() >= deadline:
            return False
        clock.sleep(t.ack_poll)
