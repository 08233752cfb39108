"""Logged storage operations (`op`) and the log disks that record them (`log`)."""

from __future__ import annotations

import click

from shareddisk.cli.common import (WAIT_SECONDS, SizeText, emit, fail, json_option, node_option,
                                   rendered, terminal_bar)
from shareddisk.drivers.base import KINDS as OP_KINDS  # the owner's list
from shareddisk.errors import EXIT_CONFLICT
from shareddisk.params import parse_size
from shareddisk.writekeys import key_text


@click.command()
@click.argument("device")
@click.argument("resource_name")
@click.argument("kind", type=click.Choice(OP_KINDS))
@click.argument("args", nargs=-1)
@click.option("--size", type=SizeText(), default=None, help="Volume size (bytes, or 64M, 1G ...).")
@click.option("--timeout", type=WAIT_SECONDS, default=120.0, show_default=True,
              help="Seconds to wait for the operation to commit.")
@click.option("--no-wait", is_flag=True, help="Return once the owner has the request.")
@node_option
@json_option
def op(device: str, resource_name: str, kind: str, args: tuple[str, ...], size: str | None,
       timeout: float, no_wait: bool, node_id: int | None, as_json: bool) -> None:
    """Run a logged storage operation on RESOURCE_NAME (on its owner).

    Examples: create-volume NAME --size 64M; delete-volume NAME;
    resize-volume NAME --size 128M; rename-volume NAME NEW_NAME.
    """
    from shareddisk.porcelain import ops
    request = ops.request(kind, ops.arguments(kind, args,
                                              parse_size(size) if size is not None else None))
    # On a terminal (stderr), after half a second: the time waited out of
    # --timeout, and whether the owner has started (its log disk in use).
    result = ops.run(device, resource_name, request, timeout=timeout, wait=not no_wait,
                     node_id=node_id, bar=terminal_bar)
    if result is None:
        emit(as_json, {"request": request.id, "status": "submitted"},
              f"{resource_name}: {kind} submitted (request {request.id})")
        return
    text = (f"{resource_name}: {kind} {' '.join(args)}: {result.status}"
            + (f" (op {key_text(result.op_id)})" if result.op_id else "")
            + (f": {result.error}" if result.error else ""))
    if not result.committed:
        if as_json:  # the outcome for scripts; the failure itself on stderr
            emit(as_json, result.to_dict(), "")
        fail(text, EXIT_CONFLICT)
    emit(as_json, result.to_dict(), text)


@click.group("log")
def log_group() -> None:
    """Named log disks: operations and their progress."""


@log_group.command("show")
@click.argument("device")
@click.argument("name", required=False)
@json_option
def log_show(device: str, name: str | None, as_json: bool) -> None:
    """Operations recorded on every log disk (or on NAME)."""
    from shareddisk.oplog import log_report
    from shareddisk.porcelain.areas import opened
    with opened(device, writable=False) as area:
        report = log_report(area, name)
    emit(as_json, report, rendered("log_text", tty=False))