"""The ``op`` command: ask a resource's owner to run a logged operation, and wait.

The command writes an OpRequest into the record's ``op_request`` acting as
the owner (it borrows the owner's incarnation on the owner's host, or with
``--node-id``); the owner's cluster manager runs it at its next tick
(shareddisk/operations.py) and answers with an OpOutcome in ``last_op``.
"""

from __future__ import annotations

from typing import Any, Callable, ContextManager

from shareddisk.area import Area
from shareddisk.attributes import ResourceRecord, find
from shareddisk.clock import Clock, SystemClock
from shareddisk.errors import ConflictError, UsageError
from shareddisk.oprequest import REQUEST_KEY, OpOutcome, OpRequest, new_request_id
from shareddisk.porcelain import resources
from shareddisk.porcelain.areas import Where, opened
from shareddisk.porcelain.moves import wait_for

_POSITIONAL = {"create-volume": ("name",), "delete-volume": ("name",),
               "resize-volume": ("name",), "rename-volume": ("name", "new_name")}
_SIZED = ("create-volume", "resize-volume")

BarFactory = Callable[..., ContextManager[Any]]
"""progress.terminal_bar, or a stand-in: ``factory(description, unit=...)``."""


def arguments(kind: str, args: tuple[str, ...], size: int | None) -> dict[str, Any]:
    """The arguments of ``kind`` from the command line's words and ``--size`` (bytes),
    checked as the owner will check them: a refusal here writes nothing."""
    from shareddisk.drivers.base import check_args
    want = _POSITIONAL.get(kind)
    if want is None:
        return check_args(kind, {})  # says which kinds there are
    if len(args) != len(want):
        raise UsageError(f"{kind} takes {' '.join(w.upper() for w in want)} "
                         f"(got {len(args)} argument{'s' if len(args) != 1 else ''})")
    out: dict[str, Any] = dict(zip(want, args))
    if kind in _SIZED and size is None:
        raise UsageError(f"{kind} needs --size")
    if kind not in _SIZED and size is not None:
        raise UsageError(f"{kind} takes no --size")
    if size is not None:
        out["size"] = size
    return check_args(kind, out)


def _owner_node(area: Area, record: ResourceRecord) -> int:
    if record.owner_host is None or record.state.name != "ONLINE":
        raise ConflictError(f"{area.device.path}: resource {record.name!r} is not online "
                            f"(state {record.state.name.lower()}); it is changed by its owner")
    return record.owner_host.node_id


def submit(area: Area, name: str, request: OpRequest, *, node_id: int | None = None,
           clock: Clock | None = None) -> ResourceRecord:
    """Write ``request`` into ``name``'s record as its owner (or ``node_id``); the
    record before the write."""
    from shareddisk.session import Session
    record = find(area, name)
    changes = {REQUEST_KEY: request.to_json()}
    resources.check_update(area, name, changes)
    owner = _owner_node(area, record)  # refused when not online, whoever we act as
    with Session(area, node_id or owner, clock or SystemClock()) as session:
        resources.update_resource(session, name, changes, index=record.index)
    return record


def run(where: Where, name: str, request: OpRequest, *, timeout: float,
        wait: bool = True, node_id: int | None = None, clock: Clock | None = None,
        bar: BarFactory | None = None) -> OpOutcome | None:
    """``op``: submit ``request`` and wait up to ``timeout`` for its outcome (None
    with ``wait=False``).  ``bar`` draws the wait: the time waited, and whether
    the owner has started (its log disk in use)."""
    clock = clock or SystemClock()
    with opened(where, writable=True) as area:
        record = submit(area, name, request, node_id=node_id, clock=clock)
        if not wait:
            return None
        began = clock.monotonic()
        owner = record.owner_host.node_id if record.owner_host else "?"
        with _maybe(bar, f"{name}: {request.kind} on node {owner}") as shown:
            def finished(rec: ResourceRecord) -> bool:
                if shown is not None:
                    shown.note(f"running (log {rec.active_log_disk})" if rec.active_log_disk
                               else "waiting for the owner")
                    shown(min(int(clock.monotonic() - began), int(timeout)), max(1, int(timeout)))
                return OpOutcome.answering(rec.attributes, request.id) is not None

            done = wait_for(area, name, finished, f"request {request.id}", clock=clock,
                            timeout=timeout)
    found = OpOutcome.answering(done.attributes, request.id)
    assert found is not None
    return found


def _maybe(bar: BarFactory | None, description: str) -> ContextManager[Any]:
    import contextlib
    return bar(description, unit="s") if bar is not None else contextlib.nullcontext()


def request(kind: str, args: dict[str, Any]) -> OpRequest:
    """A new request of ``kind`` with checked ``args``."""
    return OpRequest(new_request_id(), kind, args)
