"""`attr` commands: get, set, unset, list (lock-protected)."""

from __future__ import annotations

import json

import click

from shareddisk.cli.common import VersionText, emit, json_option, node_option, rendered
from shareddisk.writekeys import key_text


@click.group()
def attr() -> None:
    """Get, set, unset and list a resource's attributes (lock-protected)."""


@attr.command("get")
@click.argument("device")
@click.argument("resource_name")
@click.argument("key")
@click.option("--local", "local", is_flag=True,
              help="Read this host's synchronized copy (works while the disk is unreachable).")
@click.option("--state-dir", type=click.Path(), default=None,
              help="The daemon's --state-dir (with --local).")
@node_option
@json_option
def attr_get(device: str, resource_name: str, key: str, local: bool, state_dir: str | None,
             node_id: int | None, as_json: bool) -> None:
    """Print one attribute (or built-in field) of RESOURCE_NAME."""
    from shareddisk.porcelain import attrs
    out = attrs.get(device, resource_name, key, local=local, state_dir=state_dir,
                    node_id=node_id)
    value = out["value"]
    text = json.dumps(value) if not isinstance(value, str) else value
    if local:
        text += f"    (local copy, confirmed {out['age_seconds']:.1f}s ago)"
    emit(as_json, out, text)


@attr.command("set")
@click.argument("device")
@click.argument("resource_name")
@click.argument("assignments", nargs=-1, required=True)
@click.option("--expect-version", type=VersionText(), default=None,
              help="Only if the record is still at this version, G.N or the --json "
                   "number (else exit 5).")
@node_option
@json_option
def attr_set(device: str, resource_name: str, assignments: tuple[str, ...],
             expect_version: int | None, node_id: int | None, as_json: bool) -> None:
    """Set KEY=VALUE (or KEY:TYPE=VALUE) attributes of RESOURCE_NAME."""
    from shareddisk.porcelain import attrs
    record = attrs.set_values(device, resource_name, assignments,
                              expect_version=expect_version, node_id=node_id)
    emit(as_json, record.to_json(),
          f"{resource_name}: version {key_text(record.version)}")


@attr.command("unset")
@click.argument("device")
@click.argument("resource_name")
@click.argument("keys", nargs=-1, required=True)
@click.option("--expect-version", type=VersionText(), default=None,
              help="Only if the record is still at this version (see attr set).")
@node_option
@json_option
def attr_unset(device: str, resource_name: str, keys: tuple[str, ...],
               expect_version: int | None, node_id: int | None, as_json: bool) -> None:
    """Remove attributes KEYS of RESOURCE_NAME."""
    from shareddisk.porcelain import attrs
    record = attrs.unset_values(device, resource_name, keys, expect_version=expect_version,
                                node_id=node_id)
    emit(as_json, record.to_json(),
          f"{resource_name}: version {key_text(record.version)}")


@attr.command("list")
@click.argument("device")
@click.argument("resource_name")
@json_option
def attr_list(device: str, resource_name: str, as_json: bool) -> None:
    """Every attribute and built-in field of RESOURCE_NAME."""
    from shareddisk.porcelain import attrs
    emit(as_json, attrs.listing(device, resource_name), rendered("record_text", tty=False))

