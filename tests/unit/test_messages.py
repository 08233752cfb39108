"""Tests for shareddisk.messages and the node's mailbox handling (the poison pill).

A sender writes the target's mailbox on every disk with a sequence number
above any it finds; the target acts on its next step and acknowledges by
copying the number into its own heartbeat slot.  reset/off must make the
target fence, and it must say so on disk (FENCED, ack) before it goes.
Everything runs on memory devices and a FakeClock.
"""

from __future__ import annotations

import pytest

from helpers import SteppingClock, make_device
from shareddisk.area import Area, Geometry
from shareddisk.clock import FakeClock
from shareddisk.device import MemoryDevice
from shareddisk.errors import DeviceError, Fenced, QuorumLost, UsageError
from shareddisk.format import heartbeat, mailbox
from shareddisk.membership import PeerState
from shareddisk.messages import Sent, acknowledged, send_message, wait_for_ack
from shareddisk.node import Node
from shareddisk.timeouts import Timeouts

NODES = 3
S = heartbeat.SlotState
T = Timeouts.from_interval(1.0)
GEOMETRY = Geometry(sector_size=512, node_count=NODES, resource_count=1, log_disks=())


class FlakyDevice(MemoryDevice):
    """A memory device whose writes can be made to fail."""

    fail_writes = False

    def write(self, offset, data) -> None:
        if self.fail_writes:
            raise DeviceError(f"{self.path}: write at offset {offset} failed: Input/output error")
        super().write(offset, data)


class Fence:
    """Records the fence call (with the order against stop hooks), then raises."""

    def __init__(self, order: list[str]):
        self.order = order
        self.power_off: bool | None = None

    def __call__(self, reason: str, power_off: bool = False) -> None:
        self.order.append("fence")
        self.power_off = power_off
        raise Fenced(f"node fenced: {reason}")


def make_devices(n: int = 1) -> list[FlakyDevice]:
    devs = []
    for i in range(n):
        devs.append(make_device(GEOMETRY, size=64 * 1024, cluster=5, device_type=FlakyDevice,
                                disk_index=i, disk_count=n))
    return devs


def areas_of(devs) -> list[Area]:
    return [Area.open(d) for d in devs]


def mailbox_of(dev: MemoryDevice, target: int) -> dict:
    return mailbox.CODEC.decode(Area.open(dev).read_record("mailbox", target - 1))


def slot_of(dev: MemoryDevice, node_id: int) -> dict:
    return heartbeat.CODEC.decode(Area.open(dev).read_record("heartbeat", node_id - 1))


def put_mailbox(dev: MemoryDevice, target: int, **values) -> None:
    area = Area.open(dev)
    dev.write(area.regions["mailbox"].record_offset(target - 1),
              mailbox.CODEC.encode(dict(mailbox.empty(target), **values), 512))


def running_node(devs, node_id: int, clock: FakeClock, order: list[str] | None = None) -> Node:
    order = order if order is not None else []
    node = Node(areas_of(devs), node_id, clock=clock, fence=Fence(order))
    node.stop_hooks.append(lambda reason: order.append("stop"))
    node.start()
    node.step()
    return node


# -- sending ---------------------------------------------------------------


def test_seq_is_one_above_the_highest_on_any_disk_and_every_disk_is_written() -> None:
    devs = make_devices(3)
    put_mailbox(devs[0], 2, message=mailbox.Message.TEST, seq=5)
    put_mailbox(devs[1], 2, message=mailbox.Message.CLEAR, seq=3)
    clock = FakeClock()
    sent = send_message(areas_of(devs), 2, "reset", clock=clock, sender_id=3)
    assert sent == Sent(target=2, message="reset", seq=6, disks_written=3)
    for dev in devs:
        box = mailbox_of(dev, 2)
        assert (box["node_id"], box["message"], box["seq"], box["sender_id"]) == \
            (2, mailbox.Message.RESET, 6, 3)
        assert box["sent_ns"] == int(clock.wall() * 1e9)
    # Other nodes' mailboxes are untouched.
    assert mailbox_of(devs[0], 1)["seq"] == 0 and mailbox_of(devs[0], 3)["seq"] == 0


def test_successive_messages_count_up() -> None:
    devs = make_devices(2)
    clock = FakeClock()
    seqs = [send_message(areas_of(devs), 1, m, clock=clock).seq
            for m in ("test", "clear", "TEST", "Off")]
    assert seqs == [1, 2, 3, 4]
    assert mailbox_of(devs[1], 1)["message"] == mailbox.Message.OFF


def test_a_damaged_mailbox_on_one_disk_does_not_lower_the_seq() -> None:
    devs = make_devices(3)
    put_mailbox(devs[1], 1, seq=9)
    offset = Area.open(devs[2]).regions["mailbox"].record_offset(0)
    devs[2].data[offset + 20] ^= 0xFF  # checksum no longer matches
    sent = send_message(areas_of(devs), 1, "test", clock=FakeClock())
    assert sent.seq == 10 and sent.disks_written == 3
    assert mailbox_of(devs[2], 1)["seq"] == 10  # rewritten whole


def test_one_failing_disk_of_three_is_tolerated_two_are_not() -> None:
    devs = make_devices(3)
    devs[0].fail_writes = True
    assert send_message(areas_of(devs), 1, "test", clock=FakeClock()).disks_written == 2
    devs[1].fail_writes = True
    with pytest.raises(QuorumLost, match="reached 1 of 3"):
        send_message(areas_of(devs), 1, "test", clock=FakeClock())


@pytest.mark.parametrize("target, message, match", [
    (1, "poke", "unknown message"),
    (1, "none", "cannot be sent"),
    (1, "", "unknown message"),
    (0, "test", "out of range"),
    (NODES + 1, "test", "out of range"),
    (-1, "reset", "out of range"),
])
def test_bad_requests_are_usage_errors_and_write_nothing(target, message, match) -> None:
    devs = make_devices(2)
    before = [bytes(d.data) for d in devs]
    with pytest.raises(UsageError, match=match):
        send_message(areas_of(devs), target, message, clock=FakeClock())
    assert [bytes(d.data) for d in devs] == before


# -- the target's side -------------------------------------------------------


@pytest.mark.parametrize("message", ["test", "clear"])
def test_test_and_clear_are_acknowledged_and_change_nothing_else(message: str) -> None:
    devs = make_devices(3)
    clock = FakeClock()
    order: list[str] = []
    node = running_node(devs, 2, clock, order)
    sent = send_message(areas_of(devs), 2, message, clock=clock, sender_id=1)
    assert not acknowledged(areas_of(devs), 2, sent.seq)
    clock.advance(T.interval)
    node.step()  # reads the message
    assert node.mailbox_ack == sent.seq
    clock.advance(T.interval)
    node.step()  # the heartbeat write carries the ack
    assert acknowledged(areas_of(devs), 2, sent.seq)
    for dev in devs:
        slot = slot_of(dev, 2)
        assert (slot["mailbox_ack"], slot["state"]) == (sent.seq, S.ALIVE)
    assert not node.fenced and order == []


@pytest.mark.parametrize("message, power_off", [("reset", False), ("off", True)])
def test_reset_and_off_fence_after_writing_fenced_and_the_ack(message, power_off) -> None:
    devs = make_devices(3)
    clock = FakeClock()
    order: list[str] = []
    node = running_node(devs, 2, clock, order)
    observer = running_node(devs, 1, clock)
    sent = send_message(areas_of(devs), 2, message, clock=clock, sender_id=1)
    clock.advance(T.interval)
    with pytest.raises(Fenced, match=f"{message} message from node 1"):
        node.step()
    assert order == ["stop", "fence"]
    assert node.fence_action.power_off is power_off
    for dev in devs:
        slot = slot_of(dev, 2)
        assert (slot["state"], slot["mailbox_ack"]) == (S.FENCED, sent.seq)
    assert acknowledged(areas_of(devs), 2, sent.seq)
    # Peers see it fenced at their next read, without waiting for a timeout.
    observer.step()
    assert observer.membership.peers[2].state is PeerState.FENCED
    # And the fenced node writes nothing more.
    after = [slot_of(d, 2) for d in devs]
    node.leave()
    assert [slot_of(d, 2) for d in devs] == after


def test_reset_writes_fenced_only_once_its_resources_are_stopped() -> None:
    # Finding 34 (seed 7097 of --variants): peers take a FENCED node's leases at
    # once, so a node that wrote FENCED before its stop hooks ran was still
    # online while a peer brought its resource up (two owners; a slow disk
    # made the window ~1 s).  The ack goes out after the stop hooks.
    devs = make_devices(3)
    clock = FakeClock()
    order: list[str] = []
    node = running_node(devs, 2, clock, order)
    on_disk_at_stop: list[list[int]] = []
    node.stop_hooks.append(lambda reason: on_disk_at_stop.append(
        [slot_of(d, 2)["state"] for d in devs]))
    sent = send_message(areas_of(devs), 2, "reset", clock=clock, sender_id=1)
    clock.advance(T.interval)
    with pytest.raises(Fenced):
        node.step()
    assert on_disk_at_stop == [[S.ALIVE] * 3]
    assert [(slot_of(d, 2)["state"], slot_of(d, 2)["mailbox_ack"]) for d in devs] == \
        [(S.FENCED, sent.seq)] * 3


def test_a_message_older_than_the_nodes_start_is_ignored() -> None:
    """A reset sent to a previous incarnation must not kill the restarted node."""
    devs = make_devices(1)
    clock = FakeClock()
    old = send_message(areas_of(devs), 2, "reset", clock=clock)
    node = running_node(devs, 2, clock)
    assert node.mailbox_ack == old.seq
    for _ in range(3):
        clock.advance(T.interval)
        node.step()
    assert not node.fenced
    # A new message is still acted on.
    send_message(areas_of(devs), 2, "off", clock=clock)
    with pytest.raises(Fenced):
        node.step()


def test_the_highest_seq_on_any_disk_is_the_message_acted_on() -> None:
    devs = make_devices(3)
    clock = FakeClock()
    node = running_node(devs, 2, clock)
    put_mailbox(devs[1], 2, message=mailbox.Message.RESET, seq=7, sender_id=3)
    put_mailbox(devs[2], 2, message=mailbox.Message.TEST, seq=6, sender_id=1)
    with pytest.raises(Fenced, match="reset message from node 3"):
        node.step()


# -- waiting for the ack ---------------------------------------------------------


def test_wait_for_ack_times_out_on_the_fake_clock_when_nobody_runs() -> None:
    devs = make_devices(1)
    clock = FakeClock()
    sent = send_message(areas_of(devs), 3, "test", clock=clock)
    start = clock.monotonic()
    assert wait_for_ack(areas_of(devs), 3, sent.seq, clock=clock, timeout=2.5) is False
    waited = clock.monotonic() - start
    assert 2.5 <= waited <= 2.5 + T.interval
    # Without a timeout it waits for the dead timeout: by then the node is dead anyway.
    start = clock.monotonic()
    assert wait_for_ack(areas_of(devs), 3, sent.seq, clock=clock) is False
    assert T.dead <= clock.monotonic() - start <= T.dead + T.interval


def test_default_wait_is_the_targets_own_dead_timeout() -> None:
    """A node running at I = 2 s (dead 14 s) on a 1 s area is not given up at 7 s."""
    devs = make_devices(1)
    clock = FakeClock()
    node = Node(areas_of(devs), 2, clock=clock, interval=2.0, fence=Fence([]))
    node.start()  # then frozen: it never reads the message
    sent = send_message(areas_of(devs), 2, "test", clock=clock)
    start = clock.monotonic()
    assert wait_for_ack(areas_of(devs), 2, sent.seq, clock=clock) is False
    assert node.timeouts.dead == 14
    assert 14 <= clock.monotonic() - start <= 14 + T.interval


def test_wait_for_ack_returns_once_the_target_acknowledges() -> None:
    devs = make_devices(1)
    clock = SteppingClock(every=T.interval)
    node = running_node(devs, 3, clock)
    sent = send_message(areas_of(devs), 3, "test", clock=clock)
    clock.node, clock.next_step = node, clock.monotonic() + T.interval
    start = clock.monotonic()
    assert wait_for_ack(areas_of(devs), 3, sent.seq, clock=clock, timeout=10) is True
    assert clock.monotonic() - start < 10
    assert slot_of(devs[0], 3)["mailbox_ack"] == sent.seq


# -- resource requests (pull, stop) --------------------------------------------------


def test_pull_and_stop_carry_a_resource_and_only_they_do() -> None:
    devs = make_devices(1)
    clock = FakeClock()
    with pytest.raises(UsageError, match="a resource is given with pull and stop"):
        send_message(areas_of(devs), 2, "pull", clock=clock, sender_id=3)
    with pytest.raises(UsageError, match="a resource is given with pull and stop"):
        send_message(areas_of(devs), 2, "test", clock=clock, resource=0)
    assert mailbox_of(devs[0], 2)["seq"] == 0  # nothing written
    send_message(areas_of(devs), 2, "stop", clock=clock, sender_id=3, resource=0)
    box = mailbox_of(devs[0], 2)
    assert (box["message"], box["sender_id"], box["resource"]) == (mailbox.Message.STOP, 3, 1)


def test_a_node_hands_requests_to_its_hooks_and_acknowledges_them() -> None:
    devs = make_devices(1)
    clock = FakeClock()
    node = running_node(devs, 2, clock)
    seen: list[tuple] = []
    node.request_hooks.append(lambda *request: seen.append(request))
    sent = send_message(areas_of(devs), 2, "pull", clock=clock, sender_id=3, resource=0)
    clock.advance(T.interval)
    node.step()
    assert seen == [(mailbox.Message.PULL, 3, 0)]
    assert acknowledged(areas_of(devs), 2, sent.seq) and not node.fenced
    node.step()  # acted on once
    assert len(seen) == 1
