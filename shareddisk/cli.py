"""The ``shareddisk`` command: a thin layer over the library.

Each command parses its arguments, calls one library function and prints the
result as a table (default) or JSON (``--json``).  Every ShareddiskError
becomes one line on stderr and the exit code its class names (README.md).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, NoReturn

import click

from shareddisk import render
from shareddisk.area import DEFAULT_LOG_SIZE, DEFAULT_RESOURCES, Geometry, compute_layout
from shareddisk.create import create_area
from shareddisk.device import open_device
from shareddisk.errors import EXIT_DAMAGE, DeviceTooSmall, ShareddiskError, UsageError
from shareddisk.inspect import dump_area, record_bytes, verify_area

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """'1048576', '64M', '1GiB' -> bytes (binary units)."""
    m = _SIZE_RE.match(text)
    if not m:
        raise UsageError(f"bad size {text!r}: use bytes or a number with K, M, G or T")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


class _Group(click.Group):
    """Turns library errors into one stderr line and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ShareddiskError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"shareddisk: error: {message}", err=True)
    sys.exit(code)


def _emit(as_json: bool, data: Any, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shareddisk")
def main() -> None:
    """Shared-disk quorum and failover toolkit."""


@main.command()
@click.argument("device")
@click.option("--nodes", type=click.IntRange(1), required=True, help="Heartbeat slots (node ids 1..N).")
@click.option("--resources", type=click.IntRange(0), default=DEFAULT_RESOURCES, show_default=True,
              help="Resource records and leases.")
@click.option("--log-disks", default="log0", show_default=True,
              help="Comma-separated names of the log disks to carve from the area ('' for none).")
@click.option("--log-size", type=click.IntRange(1), default=DEFAULT_LOG_SIZE, show_default=True,
              help="Entries (sectors) per log disk.")
@click.option("--sector-size", type=click.Choice(["512", "4096"]), default=None,
              help="Record size; default: the device's logical sector size.")
@click.option("--interval", type=float, default=1.0, show_default=True,
              help="Heartbeat interval in seconds (0.05..60); timeouts derive from it.")
@click.option("--cluster-name", default="cluster", show_default=True)
@click.option("--size", "size_text", default=None,
              help="Create a missing file image of this size (bytes, or 64M, 1G ...).")
@click.option("--force", is_flag=True, help="Overwrite a device that already holds data.")
@json_option
def init(device: str, nodes: int, resources: int, log_disks: str, log_size: int,
         sector_size: str | None, interval: float, cluster_name: str, size_text: str | None,
         force: bool, as_json: bool) -> None:
    """Create an empty area on DEVICE (a file image or block device)."""
    names = tuple(n.strip() for n in log_disks.split(",") if n.strip())
    size = parse_size(size_text) if size_text is not None else None
    geometry = Geometry(sector_size=int(sector_size or 512), node_count=nodes,
                        resource_count=resources, log_disks=names, log_size=log_size,
                        interval_ms=round(interval * 1000))
    needed = compute_layout(geometry).area_size  # validates before anything is created
    if size is not None and size < needed:
        raise DeviceTooSmall(f"{device}: --size {size} is too small, the area needs {needed} "
                             f"bytes", needed=needed, available=size)
    with open_device(device, create_size=size) as dev:
        if sector_size is None and dev.sector_size > 512:
            geometry = Geometry(**{**geometry.__dict__, "sector_size": dev.sector_size})
        if size is not None and dev.size < size:
            raise UsageError(f"{device}: exists with {dev.size} bytes; --size {size} only "
                             f"creates a missing image")
        created = create_area(dev, geometry, cluster_name=cluster_name, force=force)
    layout = created.layout
    data = {"device": device, "cluster_uuid": created.cluster_uuid, "area_size": layout.area_size,
            "sector_size": layout.sector_size, "nodes": nodes, "resources": resources,
            "log_disks": list(names), "backup_superblock_offset": created.backup_offset}
    _emit(as_json, data,
          f"{device}: created area {created.cluster_uuid}: {nodes} nodes, {resources} resources, "
          f"log disks {', '.join(names) or 'none'}; {layout.area_size} bytes in "
          f"{layout.sector_size}-byte records")


@main.command()
@click.argument("device")
@click.option("--region", default=None,
              help="Only this region: superblock, heartbeat, mailbox, lease, resource, log:NAME.")
@click.option("--index", type=click.IntRange(0), default=None, help="Only this record of --region.")
@click.option("--hex", "as_hex", is_flag=True,
              help="Annotated hex of the record given by --region and --index.")
@json_option
def dump(device: str, region: str | None, index: int | None, as_hex: bool, as_json: bool) -> None:
    """Decode every region of DEVICE (exit 3 after printing if a record is damaged)."""
    with open_device(device, writable=False) as dev:
        if as_hex:
            if region is None:
                raise UsageError("--hex needs --region (and --index for a single record)")
            index = 0 if index is None else index
            codec, offset, buf = record_bytes(dev, region, index)
            title = f"{region} record {index}" if region != "superblock" else \
                ("primary superblock" if index == 0 else "backup superblock")
            if as_json:
                data = {"region": region, "index": index, "offset": offset, "hex": buf.hex(),
                        "fields": [{"name": f.name, "offset": f.offset, "size": f.size,
                                    "type": f.type} for f in codec.fields]}
                click.echo(json.dumps(data, indent=2))
            else:
                click.echo(render.hex_view(codec, buf, offset, f"{device}: {title}"))
            return
        data = dump_area(dev, region, index)
    _emit(as_json, data, render.dump_text(data))
    if data.get("damaged_records"):
        sys.exit(EXIT_DAMAGE)


@main.command()
@click.argument("device")
@json_option
def verify(device: str, as_json: bool) -> None:
    """Check every record of DEVICE; exit 0 when clean, 3 when damaged."""
    with open_device(device, writable=False) as dev:
        report = verify_area(dev).to_json()
    _emit(as_json, report, render.verify_text(report))
    if not report["clean"]:
        sys.exit(EXIT_DAMAGE)


__all__ = ["main", "parse_size"]
