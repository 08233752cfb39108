"""Commands on the area itself: init, dump, verify, repair, upgrade."""

from __future__ import annotations

import json
import sys

import click

from shareddisk.area import DEFAULT_LOG_SIZE, DEFAULT_RESOURCES
from shareddisk.cli.common import (INTERVAL_SECONDS, SizeText, emit, fail, json_option,
                                   rendered, terminal_bar)
from shareddisk.clock import SystemClock
from shareddisk.errors import EXIT_DAMAGE
from shareddisk.params import parse_size


@click.command()
@click.argument("devices", nargs=-1, required=True)
@click.option("--nodes", type=click.IntRange(1), required=True, help="Heartbeat slots (node ids 1..N).")
@click.option("--resources", type=click.IntRange(0), default=DEFAULT_RESOURCES, show_default=True,
              help="Resource records and leases.")
@click.option("--log-disks", default="log0", show_default=True,
              help="Comma-separated names of the log disks to carve from the area ('' for none).")
@click.option("--log-size", type=click.IntRange(1), default=DEFAULT_LOG_SIZE, show_default=True,
              help="Entries (sectors) per log disk.")
@click.option("--sector-size", type=click.Choice(["512", "4096"]), default=None,
              help="Record size; default: the device's logical sector size.")
@click.option("--interval", type=INTERVAL_SECONDS, default=1.0, show_default=True,
              help="Heartbeat interval in seconds (0.05..60); timeouts derive from it.")
@click.option("--cluster-name", default="cluster", show_default=True)
@click.option("--size", "size_text", type=SizeText(512), default=None,
              help="Create missing file images of this size (bytes, or 64M, 1G ...).")
@click.option("--force", is_flag=True, help="Overwrite a device that already holds data.")
@click.option("--ignore-live-nodes", is_flag=True,
              help="With --force: do not watch for (and refuse) nodes still writing "
                   "heartbeats on the old area.")
@json_option
def init(devices: tuple[str, ...], nodes: int, resources: int, log_disks: str, log_size: int,
         sector_size: str | None, interval: float, cluster_name: str, size_text: str | None,
         force: bool, ignore_live_nodes: bool, as_json: bool) -> None:
    """Create an empty area on each of DEVICES (file images or block devices).

    Several devices become the disks of one cluster (one cluster uuid); a
    node given all of them keeps quorum while it can write a majority.
    Every device is checked before anything is written to any of them.
    """
    from shareddisk.porcelain.initialize import init as init_areas
    data = init_areas(devices, nodes=nodes, resources=resources,
                      log_disks=[n.strip() for n in log_disks.split(",") if n.strip()],
                      log_size=log_size, sector_size=int(sector_size) if sector_size else None,
                      interval=interval, cluster_name=cluster_name,
                      size=parse_size(size_text) if size_text is not None else None,
                      force=force, ignore_live_nodes=ignore_live_nodes, bar=terminal_bar)
    emit(as_json, data,
          f"{', '.join(devices)}: created area {data['cluster_uuid']}: {nodes} nodes, "
          f"{resources} resources, log disks {', '.join(data['log_disks']) or 'none'}; "
          f"{data['area_size']} bytes in {data['sector_size']}-byte records")


@click.command()
@click.argument("device")
@click.option("--region", default=None,
              help="Only this region: superblock, heartbeat, mailbox, lease, resource, log:NAME.")
@click.option("--index", type=click.IntRange(0), default=None, help="Only this record of --region.")
@click.option("--hex", "as_hex", is_flag=True,
              help="Annotated hex of the record given by --region and --index "
                   "(for the resource region, --index counts chunk records).")
@json_option
def dump(device: str, region: str | None, index: int | None, as_hex: bool, as_json: bool) -> None:
    """Decode every region of DEVICE (exit 3 after printing if a record is damaged)."""
    from shareddisk.porcelain import examine
    if as_hex:
        record = examine.hex_record(device, region, index)
        if as_json:
            click.echo(json.dumps(record.to_json(), indent=2))
        else:
            from shareddisk import render
            click.echo(render.printable(render.hex_view(record.codec, record.data, record.offset,
                                                        f"{device}: {record.title}")))
        return
    data = examine.dump(device, region, index)
    emit(as_json, data, rendered("dump_text"))
    if data.get("damaged_records"):
        sys.exit(EXIT_DAMAGE)


@click.command()
@click.argument("device")
@json_option
def verify(device: str, as_json: bool) -> None:
    """Check every record of DEVICE (disks comma separated); exit 0 when clean, 3 damaged."""
    from shareddisk.porcelain import examine
    with terminal_bar(f"verify {device}", unit="records") as bar:
        report = examine.verify(device, progress=bar)
    emit(as_json, report, rendered("verify_text", tty=False))
    if report.get("problem"):  # several disks: name each one that is not clean
        fail(report["problem"], report["exit_code"])
    if not report["clean"]:
        sys.exit(EXIT_DAMAGE)



@click.command()
@click.argument("device")
@click.option("--dry-run", is_flag=True, help="Show what would be rewritten; write nothing.")
@json_option
def repair(device: str, dry_run: bool, as_json: bool) -> None:
    """Mend damage that can be proven safe to mend (see docs/OPERATIONS.md).

    Exit 0 when nothing damaged is left, 3 when some damage was left alone.
    """
    from shareddisk import render
    from shareddisk.device import open_device
    from shareddisk.repair import repair_area
    with open_device(device, writable=not dry_run, exclusive=True) as dev:  # as the real run
        report = repair_area(dev, clock=SystemClock(), dry_run=dry_run)
    data = report.to_json()
    rows = [(a["region"], a["index"], a["offset"], a["action"], a["why"]) for a in data["actions"]]
    emit(as_json, data, render.table(("region", "index", "offset", "action", "why"), rows)
          if rows else f"{device}: nothing to repair")
    if report.remaining:
        sys.exit(EXIT_DAMAGE)


@click.command()
@click.argument("devices", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Show what would be written; write nothing.")
@click.option("--ignore-live-nodes", is_flag=True,
              help="Skip the watch for nodes that still heartbeat (only when sure none runs).")
@json_option
def upgrade(devices: tuple[str, ...], dry_run: bool, ignore_live_nodes: bool,
            as_json: bool) -> None:
    """Convert a format version 1 cluster on DEVICES to format version 2, offline.

    Give every device of the cluster, the FIRST being the disk that held the
    resources, leases and logs in version 1 (its init's first device); disks
    are numbered in the order given.  Stop every node first (refused, exit 5,
    while a heartbeat moves).  Running it again completes a run that stopped
    part-way; once every device is version 2 it writes nothing.
    """
    from shareddisk.porcelain.upgrade import describe, upgrade as upgrade_areas
    data = upgrade_areas(devices, dry_run=dry_run, ignore_live_nodes=ignore_live_nodes)
    emit(as_json, data, describe(data))

