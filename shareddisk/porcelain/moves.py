"""Where a resource runs: the commands resource move, stop and start, from any host.

(Which node a resource goes to on failover is the cluster manager's choice,
``manager.successor``; these are the operator's requests.)

A resource's record is written by the holder of its lease, its owner.  On
the owner's host a command borrows the owner's identity and writes the
record itself (``move_to``, ``target_state``); the owner's cluster manager
acts at its next tick.  From another host a command cannot write the record
(the owner holds the lease), so it asks through the owner's mailbox
(shareddisk/messages.py): PULL hands the resource to the asking node, STOP
takes it offline and keeps it offline (``target_state=stopped``).  The owner
acknowledges in its heartbeat slot and serves the request at its next tick.

A stopped resource has no owner and a free lease, so starting it is a plain
record write from any host: ``target_state`` goes, optionally ``move_to``
names where it should come up, and the cluster managers bring it online as
for any ownerless resource.

Each command takes a device path (or an opened area), waits until the
record shows the result, and raises ConflictError (exit 5) naming what did
not happen when it does not within ``timeout``.
"""

from __future__ import annotations

from typing import Callable

from shareddisk.area import Area
from shareddisk.attributes import STOPPED, ResourceRecord, find, stopped
from shareddisk.clock import Clock
from shareddisk.errors import ConflictError, UsageError
from shareddisk.format.resource import ResourceState
from shareddisk.messages import send_message, wait_for_ack
from shareddisk.porcelain import resources
from shareddisk.porcelain.areas import Where, acting_node, check_node, opened
from shareddisk.replicas import members_of, readable_member
from shareddisk.session import Session
from shareddisk.view import local_daemons

POLL = 0.05  # seconds between looks at the record while waiting


def _owner_here(area: Area, record: ResourceRecord, node_id: int | None) -> bool:
    """Does the owner's daemon run on this host (so a command can act as the owner)?"""
    owner = record.owner_host
    return owner is not None and (node_id == owner.node_id or
                                  owner.node_id in local_daemons(readable_member(area)))


def _ask(area: Area, record: ResourceRecord, message: str, sender: int, clock: Clock) -> None:
    """Send a PULL or STOP to the owner and wait for its acknowledgement."""
    assert record.owner_host is not None
    owner = record.owner_host.node_id
    sent = send_message(members_of(area), owner, message, clock=clock, sender_id=sender,
                        resource=record.index)
    if not wait_for_ack(members_of(area), owner, sent.seq, clock=clock):
        raise ConflictError(f"{area.device.path}: {record.name}: node {owner} (the owner) did "
                            f"not acknowledge the {message} request; if it is dead, its "
                            f"successor takes the resource over: ask again then")


def wait_for(area: Area, name: str, done: Callable[[ResourceRecord], bool], what: str, *,
             clock: Clock, timeout: float) -> ResourceRecord:
    """Poll the record until ``done``; ConflictError naming ``what`` after ``timeout``."""
    deadline = clock.monotonic() + timeout
    while True:
        record = find(area, name)
        if done(record):
            return record
        if clock.monotonic() >= deadline:
            raise ConflictError(f"{area.device.path}: {name}: {what} did not happen within "
                                f"{timeout:g} s (state {record.state.name.lower()}, owner "
                                f"{record.owner_host.node_id if record.owner_host else 'none'})")
        clock.sleep(POLL)


def _online_on(to: int | None) -> Callable[[ResourceRecord], bool]:
    return lambda r: r.state is ResourceState.ONLINE and r.owner_host is not None and \
        (to is None or r.owner_host.node_id == to)


def _move(area: Area, name: str, to: int, *, node_id: int | None, clock: Clock,
         timeout: float) -> ResourceRecord:
    """Hand ``name`` over to node ``to`` gracefully (offline on its owner, online on ``to``)."""
    check_node(area, to, "--to")
    record = find(area, name)
    if record.owner_host is not None and record.owner_host.node_id == to:
        raise UsageError(f"{name} is already on node {to}")
    if record.owner_host is None or record.state is not ResourceState.ONLINE:
        raise ConflictError(f"{area.device.path}: resource {name!r} is not online (state "
                            f"{record.state.name.lower()}); start it with `resource start "
                            f"--to {to}`")
    if _owner_here(area, record, node_id):
        resources.check_update(area, name, {"move_to": to})
        with Session(area, record.owner_host.node_id, clock) as session:
            resources.update_resource(session, name, {"move_to": to}, index=record.index)
    else:
        me = acting_node(area, node_id)
        if to != me:
            raise UsageError(f"{name} runs on node {record.owner_host.node_id}: from this host "
                             f"(node {me}) it can only be pulled here (--to {me}); run the "
                             f"command on node {record.owner_host.node_id}'s host to move it "
                             f"elsewhere")
        _ask(area, record, "pull", me, clock)
    return wait_for(area, name, _online_on(to), f"move to node {to}", clock=clock,
                    timeout=timeout)


def _stop(area: Area, name: str, *, node_id: int | None, clock: Clock,
         timeout: float) -> ResourceRecord:
    """Take ``name`` offline everywhere and keep it offline until ``start``."""
    record = find(area, name)
    resources.check_update(area, name, {"target_state": STOPPED})
    if record.owner_host is None:
        if not stopped(record):  # no owner: its lease is free (or its holder's to wait out)
            with Session(area, acting_node(area, node_id), clock) as session:
                resources.update_resource(session, name, {"target_state": STOPPED},
                                          index=record.index)
    elif _owner_here(area, record, node_id):
        with Session(area, record.owner_host.node_id, clock) as session:
            resources.update_resource(session, name, {"target_state": STOPPED}, index=record.index)
    else:
        _ask(area, record, "stop", acting_node(area, node_id), clock)
    return wait_for(area, name, lambda r: r.owner_host is None and stopped(r), "stop",
                    clock=clock, timeout=timeout)


def _start(area: Area, name: str, *, on: int | None, node_id: int | None, clock: Clock,
          timeout: float) -> ResourceRecord:
    """Let ``name`` come online again (on node ``on`` when given) after ``stop``."""
    if on is not None:
        check_node(area, on, "--to")
    record = find(area, name)
    if record.owner_host is not None and record.state is ResourceState.ONLINE:
        raise UsageError(f"{name} is already online on node {record.owner_host.node_id}; use "
                         f"`resource move {name} --to NODE` to place it elsewhere")
    if record.owner_host is not None and not stopped(record):
        raise ConflictError(f"{area.device.path}: resource {name!r} is being brought up by "
                            f"node {record.owner_host.node_id} (state "
                            f"{record.state.name.lower()}); wait for it, or stop it first")
    # Stopped, failed everywhere, or waiting for a successor: start it (again);
    # the failed_on mark goes too, so that node is tried again.
    unset = [k for k in ("target_state", "failed_on") if k in record.attributes]
    changes: dict[str, object] = {"move_to": on} if on is not None else {}
    resources.check_update(area, name, changes, unset)  # refused before we join as a node
    with Session(area, acting_node(area, node_id), clock) as session:
        resources.update_resource(session, name, changes, unset=unset, index=record.index)
    return wait_for(area, name, _online_on(on), "start", clock=clock, timeout=timeout)


def move(where: Where, name: str, to: int, *, node_id: int | None, clock: Clock,
         timeout: float) -> ResourceRecord:
    """``resource move``: ``name`` online on node ``to``; the record once it is."""
    with opened(where, writable=True) as area:
        return _move(area, name, to, node_id=node_id, clock=clock, timeout=timeout)


def stop(where: Where, name: str, *, node_id: int | None, clock: Clock,
         timeout: float) -> ResourceRecord:
    """``resource stop``: ``name`` offline everywhere; the record once it is."""
    with opened(where, writable=True) as area:
        return _stop(area, name, node_id=node_id, clock=clock, timeout=timeout)


def start(where: Where, name: str, *, on: int | None, node_id: int | None, clock: Clock,
          timeout: float) -> ResourceRecord:
    """``resource start``: ``name`` online again (on ``on``); the record once it is."""
    with opened(where, writable=True) as area:
        return _start(area, name, on=on, node_id=node_id, clock=clock, timeout=timeout)
