"""`resource` commands: add, remove, cleanup, list, move, stop, start."""

from __future__ import annotations

from typing import Any

import click

from shareddisk.cli.common import WAIT_SECONDS, emit, json_option, node_option, rendered
from shareddisk.clock import SystemClock
from shareddisk.writekeys import key_text


@click.group()
def resource() -> None:
    """Add, remove and list resources (lock-protected)."""


@resource.command("add")
@click.argument("device")
@click.argument("name")
@click.option("--type", "type_", required=True, help="Resource type, e.g. storage-group.")
@click.option("--failover-nodes", default="", help="Comma-separated node ids, in priority order.")
@click.option("--attr", "attrs", multiple=True, help="KEY=VALUE or KEY:TYPE=VALUE (str, int, bool, list).")
@node_option
@json_option
def resource_add(device: str, name: str, type_: str, failover_nodes: str, attrs: tuple[str, ...],
                 node_id: int | None, as_json: bool) -> None:
    """Create resource NAME."""
    from shareddisk.attributes import parse_assignment
    from shareddisk.porcelain import resources
    record = resources.add(device, name, type_,
                           failover=[n for n in failover_nodes.split(",") if n.strip()],
                           attributes=dict(parse_assignment(a) for a in attrs), node_id=node_id)
    emit(as_json, record.to_json(), rendered("record_text", tty=False))


@resource.command("remove")
@click.argument("device")
@click.argument("name")
@node_option
@json_option
def resource_remove(device: str, name: str, node_id: int | None, as_json: bool) -> None:
    """Remove resource NAME."""
    from shareddisk.porcelain import resources
    index = resources.remove(device, name, node_id=node_id)
    emit(as_json, {"removed": name, "index": index}, f"removed {name} (resource {index})")


@resource.command("cleanup")
@click.argument("device")
@click.argument("name")
@node_option
@json_option
def resource_cleanup(device: str, name: str, node_id: int | None, as_json: bool) -> None:
    """Forget the failure of NAME, so that it is tried again (like crm_resource --cleanup).

    Clears failed_on and failure, and turns a failed resource with no owner
    offline: its successor (the node it failed on too, when no other is
    eligible) brings it online at its next tick, without the backoff.
    """
    from shareddisk.porcelain import resources
    record, cleared = resources.cleanup(device, name, node_id=node_id)
    data = dict(record.to_json(), cleared=cleared)
    emit(as_json, data, f"{name}: cleared {', '.join(cleared)} "
          f"(version {key_text(record.version)})"
          if cleared else f"{name}: no failure to clear ({record.state.name.lower()})")


@resource.command("list")
@click.argument("device")
@json_option
def resource_list(device: str, as_json: bool) -> None:
    """Every resource with its state, owner and version."""
    from shareddisk.porcelain import resources
    records = resources.listing(device)

    def text(data: dict[str, Any], tty: bool) -> str:
        from shareddisk import render
        rows = [(r["index"], r["name"], r["type"], r["state"],
                 r["owner_host"]["name"] if r["owner_host"] else None, r["active_log_disk"],
                 ",".join(map(str, r["failover_nodes"])) or None,
                 key_text(r["version"]))
                for r in data["resources"]]
        return render.table(("index", "name", "type", "state", "owner", "active_log_disk",
                             "failover", "version"), rows) if rows else "no resources"

    emit(as_json, {"resources": records}, text)



@resource.command("move")
@click.argument("device")
@click.argument("name")
@click.option("--to", "to", type=click.IntRange(1), required=True, help="Node id to hand the resource to.")
@click.option("--timeout", type=WAIT_SECONDS, default=60.0, show_default=True)
@node_option
@json_option
def resource_move(device: str, name: str, to: int, timeout: float, node_id: int | None,
                  as_json: bool) -> None:
    """Hand NAME over to node --to gracefully (offline on its owner, online on --to).

    On the owner's host it moves NAME anywhere; on another host it pulls NAME
    to this host's node (--to this node), asking the owner through its mailbox.
    """
    from shareddisk.porcelain import moves
    moved = moves.move(device, name, to, node_id=node_id, clock=SystemClock(), timeout=timeout)
    assert moved.owner_host is not None
    emit(as_json, moved.to_json(), f"{name}: online on node {to} ({moved.owner_host.name})")


@resource.command("stop")
@click.argument("device")
@click.argument("name")
@click.option("--timeout", type=WAIT_SECONDS, default=60.0, show_default=True)
@node_option
@json_option
def resource_stop(device: str, name: str, timeout: float, node_id: int | None,
                  as_json: bool) -> None:
    """Take NAME offline on every node and keep it offline (from any host)."""
    from shareddisk.porcelain import moves
    record = moves.stop(device, name, node_id=node_id, clock=SystemClock(), timeout=timeout)
    emit(as_json, record.to_json(), f"{name}: stopped ({record.state.name.lower()})")


@resource.command("start")
@click.argument("device")
@click.argument("name")
@click.option("--to", "--on", "on", type=click.IntRange(1), default=None,
              help="Node id to bring it online on (default: its failover order); "
                   "--to as for move, --on kept for scripts.")
@click.option("--timeout", type=WAIT_SECONDS, default=60.0, show_default=True)
@node_option
@json_option
def resource_start(device: str, name: str, on: int | None, timeout: float, node_id: int | None,
                   as_json: bool) -> None:
    """Let a stopped NAME come online again (from any host)."""
    from shareddisk.porcelain import moves
    record = moves.start(device, name, on=on, node_id=node_id, clock=SystemClock(),
                         timeout=timeout)
    assert record.owner_host is not None
    emit(as_json, record.to_json(), f"{name}: online on node {record.owner_host.node_id} "
                                     f"({record.owner_host.name})")