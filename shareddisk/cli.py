"""The ``shareddisk`` command: parse, call one library function, print.

Each command parses its arguments, calls one function of shareddisk/porcelain/
(or of the library) and prints the result as a table (default) or JSON
(``--json``).  Every ShareddiskError becomes one line on stderr and the exit
code its class names (README.md).
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, NoReturn

import click

from shareddisk import __version__
from shareddisk.area import DEFAULT_LOG_SIZE, DEFAULT_RESOURCES
from shareddisk.clock import SystemClock
from shareddisk.errors import EXIT_CONFLICT, EXIT_DAMAGE, ShareddiskError, UsageError
from shareddisk.loggers import logger
from shareddisk.params import Seconds, parse_size
from shareddisk.timeouts import MAX_INTERVAL, MIN_INTERVAL
from shareddisk.writekeys import key_text, parse_version

# Commands import what only they need inside their bodies (their porcelain,
# render, rich, progress bars): every command starts in the time of its own
# imports (`attr set` has a 120 ms budget with the interpreter,
# docs/BENCHMARKS.md; tests/unit/test_startup.py keeps the list short).

MAX_WAIT = 86_400.0  # a day: the longest --timeout or --window a command accepts
WAIT_SECONDS = Seconds(0.0, MAX_WAIT, open_low=True)
WINDOW_SECONDS = Seconds(0.0, MAX_WAIT)  # 0: one look at the slots
INTERVAL_SECONDS = Seconds(MIN_INTERVAL, MAX_INTERVAL)


class SizeText(click.ParamType):
    """A size (bytes, or 64M, 1G ...) that is a positive multiple of ``multiple``;
    returns the text itself (the command parses it with parse_size)."""

    name = "size"

    def __init__(self, multiple: int = 1):
        self.multiple = multiple

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        try:
            size = parse_size(str(value))
        except UsageError as exc:
            self.fail(str(exc), param, ctx)
        if size <= 0:
            self.fail(f"{value!r}: a size must be positive", param, ctx)
        if size % self.multiple:
            self.fail(f"{value!r} ({size} bytes) is not a multiple of {self.multiple} bytes",
                      param, ctx)
        return str(value)


class VersionText(click.ParamType):
    """A record version as tables show it (G.N) or as --json gives it (a number)."""

    name = "version"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_version(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _Group(click.Group):
    """Turns library errors into one stderr line and the documented exit code."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            _fail("interrupted", 130)
        except click.ClickException as exc:
            hint = ""
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                hint = f" (see: {exc.ctx.command_path} --help)"
            _fail(exc.format_message() + hint, exc.exit_code)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ShareddiskError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)


def _fail(message: str, code: int) -> NoReturn:
    # One line, whatever the message holds (a name read from a damaged disk, say).
    from shareddisk import render
    click.echo(f"shareddisk: error: {render.printable(message, keep_newlines=False)}", err=True)
    sys.exit(code)


def terminal_bar(description: str, **options: Any) -> Any:
    """shareddisk.progress.terminal_bar, imported by the commands that draw a bar."""
    from shareddisk.progress import terminal_bar as bar
    return bar(description, **options)


def _emit(as_json: bool, data: Any, text: str | Callable[[Any, bool], str]) -> None:
    """Print ``data`` as JSON, or ``text`` for people.

    ``text`` may be a function of (data, whether stdout is a terminal) (the
    rich tables of render.py), called only without ``--json``: JSON output
    never imports rich.  Text never carries a control character from the
    data (a node or resource name, an attribute value) to the terminal:
    functions get the data with them escaped, strings are escaped whole.
    """
    tty = sys.stdout.isatty()
    if as_json:
        # Indented for a person at a terminal; compact (and C-encoded, ~10x
        # faster: `dump --json` of 2,048 slots is 1.2 MB) for a pipe or file.
        # (JSON escapes control characters itself.)
        click.echo(json.dumps(data, indent=2 if tty else None, default=str))
        return
    if isinstance(text, str) and text.isprintable():
        click.echo(text)  # nothing to escape (render.printable's common case)
        return
    from shareddisk import render  # text only: --json never imports it
    if callable(text):
        text = text(render.printable_data(data), tty)
    else:
        text = render.printable(text)
    click.echo(text)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="shareddisk")
@click.option("-v", "--verbose", is_flag=True,
              help="Show the library's log lines on stderr (`run` always shows them).")
def main(verbose: bool) -> None:
    """Shared-disk quorum and failover toolkit.

    DEVICE is the cluster's disks, comma-separated in any order
    (/dev/sdb,/dev/sdc,/dev/sdd); one of them is enough on a host whose
    daemon runs (its list names the others).
    """
    # A command says what went wrong in its one error line; the library's log
    # lines (a failed disk write, a renewal that failed) stay silent unless
    # asked for (shareddisk/loggers.py gives them a NullHandler).
    if verbose:
        _setup_logging(verbose=False)


@main.command()
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
    _emit(as_json, data,
          f"{', '.join(devices)}: created area {data['cluster_uuid']}: {nodes} nodes, "
          f"{resources} resources, log disks {', '.join(data['log_disks']) or 'none'}; "
          f"{data['area_size']} bytes in {data['sector_size']}-byte records")


@main.command()
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
    _emit(as_json, data, _lazy("dump_text"))
    if data.get("damaged_records"):
        sys.exit(EXIT_DAMAGE)


@main.command()
@click.argument("device")
@json_option
def verify(device: str, as_json: bool) -> None:
    """Check every record of DEVICE (disks comma separated); exit 0 when clean, 3 damaged."""
    from shareddisk.porcelain import examine
    with terminal_bar(f"verify {device}", unit="records") as bar:
        report = examine.verify(device, progress=bar)
    _emit(as_json, report, _lazy("verify_text", tty=False))
    if report.get("problem"):  # several disks: name each one that is not clean
        _fail(report["problem"], report["exit_code"])
    if not report["clean"]:
        sys.exit(EXIT_DAMAGE)


def _lazy(name: str, *, tty: bool = True) -> Callable[[Any, bool], str]:
    """render.NAME (given the terminal flag when ``tty``), imported only when the
    text is printed: --json never imports render."""
    def text(data: Any, is_tty: bool) -> str:
        from shareddisk import render
        function = getattr(render, name)
        return function(data, is_tty) if tty else function(data)
    return text


def _setup_logging(verbose: bool) -> None:
    from shareddisk.logfmt import setup  # logfmt, with journald priorities (logfmt.py)
    setup(verbose)


@main.command()
@click.argument("devices", nargs=-1, required=True)
@click.option("--node-id", type=click.IntRange(1), required=True,
              help="This node's id (1..node count).")
@click.option("--name", default="", help="Node name shown to peers (default: node<ID>).")
@click.option("--interval", type=INTERVAL_SECONDS, default=None,
              help="Heartbeat interval in seconds (default: the area's, set at init).")
@click.option("--fence", "fence_name", type=click.Choice(["exit", "reboot"]), default="exit",
              show_default=True, help="What to do when this node must fence itself.")
@click.option("--state-dir", type=click.Path(), default=None,
              help="Where the local copy of the resource records lives "
                   "(default: /var/lib/shareddisk/<cluster-uuid>/node<ID>).")
@click.option("--metrics-address", default=None, metavar="HOST:PORT",
              help="Serve Prometheus metrics here (e.g. 127.0.0.1:9464).")
@click.option("--watchdog", "watchdog_path", default=None, metavar="DEVICE|none",
              envvar="SHAREDDISK_WATCHDOG",
              help="Hardware watchdog to arm (default: /dev/watchdog when it exists; also "
                   "$SHAREDDISK_WATCHDOG); 'none' runs unwatched (docs/OPERATIONS.md).")
@click.option("--watchdog-timeout", type=click.IntRange(1, 65535), default=None,
              metavar="SECONDS", help="Watchdog timeout to ask for (default: 2 x interval + "
                                      "io timeout, rounded up; the driver may grant more).")
@click.option("-v", "--verbose", is_flag=True)
def run(devices: tuple[str, ...], node_id: int, name: str, interval: float | None,
        fence_name: str, state_dir: str | None, metrics_address: str | None,
        watchdog_path: str | None, watchdog_timeout: int | None, verbose: bool) -> None:
    """Run the node daemon on DEVICES (one or more areas of one cluster)."""
    from shareddisk.notify import sd_notify
    from shareddisk.porcelain import serve
    _setup_logging(verbose)
    stop = {"now": False}

    def on_term(signum: int, frame: object) -> None:
        if not stop["now"]:  # systemd shows "deactivating" at once, not after the hand-over
            sd_notify("STOPPING=1\nSTATUS=stopping: handing resources over, then leaving")
        stop["now"] = True

    def on_hup(signum: int, frame: object) -> None:
        # SIGHUP's default would kill the daemon without writing `left` (peers would
        # wait out the dead timeout): it is ignored, and said so.
        logger("shareddisk.daemon").warning(
            "event=sighup action=ignored reason=%r", "options are read at start; restart "
            "the daemon (systemctl restart) to change them")

    import signal  # the daemon's: a command's start-up does without it (issue 17)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_hup)
    serve.run(devices, node_id, should_stop=lambda: stop["now"], name=name, interval=interval,
              fence_name=fence_name, state_dir=state_dir, metrics_address=metrics_address,
              watchdog_path=watchdog_path, watchdog_timeout=watchdog_timeout)


@main.command()
@click.argument("devices", nargs=-1, required=True)
@click.option("--window", type=WINDOW_SECONDS, default=None,
              help="Watch the slots this many seconds and judge by what moved (e.g. the "
                   "suspect timeout, 2 x interval + io timeout).  Default: answer at once, "
                   "from the view of this host's daemon when one runs, else from one read.")
@click.option("--watch", is_flag=True,
              help="Keep watching: a live view refreshed every interval on a terminal, a new "
                   "report every interval otherwise (Ctrl-C stops, exit 0).")
@json_option
def status(devices: tuple[str, ...], window: float | None, watch: bool, as_json: bool) -> None:
    """Members with state, incarnation and age, and quorum.

    With a daemon of this cluster on this host, the answer is that daemon's
    view (every node's state and age as it sees them); without one, what one
    read of the slots proves (a slot that says alive shows as unknown): give
    --window or --watch to judge liveness by watching.
    """
    from shareddisk.porcelain.status import reports
    live = _watch_live if watch and not as_json and sys.stdout.isatty() else None
    try:
        for n, report in enumerate(reports(devices, window=window, watch=watch, live=live)):
            if n and not as_json:
                click.echo()
            _emit(as_json, report, _lazy("status_text"))
    except KeyboardInterrupt:
        if not watch:
            raise
        # --watch runs until Ctrl-C: that is how it ends, not an error


def _watch_live(reader: Any) -> NoReturn:
    """``status --watch`` on a terminal: one view redrawn in place every interval."""
    from rich.live import Live

    from shareddisk import render
    footer = f"refreshed every {reader.timeouts.interval:g}s; Ctrl-C to stop"
    def view() -> Any:
        return render.status_renderable(render.printable_data(reader.report()), footer)

    with Live(view(), auto_refresh=False, console=render.console()) as live:
        while True:
            reader.observe(reader.timeouts.interval)
            live.update(view(), refresh=True)


@main.command()
@click.argument("devices", nargs=-1, required=True)
@click.argument("node", type=click.IntRange(1))
@click.argument("message", type=click.Choice(["test", "reset", "off", "clear"]))
@click.option("--wait", is_flag=True, help="Wait for the node to acknowledge.")
@click.option("--timeout", type=WAIT_SECONDS, default=None,
              help="Seconds to wait with --wait (default: the dead timeout).")
@json_option
def message(devices: tuple[str, ...], node: int, message: str, wait: bool,
            timeout: float | None, as_json: bool) -> None:
    """Send MESSAGE to node NODE's mailbox (on every one of DEVICES; a majority must take it)."""
    from shareddisk.porcelain.message import send
    data = send(devices, node, message, wait=wait, timeout=timeout)
    text = f"sent {data['message']} to node {node} (seq {data['seq']})"
    if wait and not data["acknowledged"]:
        if as_json:  # the outcome for scripts; the failure itself on stderr
            _emit(as_json, data, "")
        _fail(f"{text}: NOT acknowledged before the timeout", EXIT_CONFLICT)
    if wait:
        text += ": acknowledged"
    _emit(as_json, data, text)


@main.command()
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
    _emit(as_json, data, render.table(("region", "index", "offset", "action", "why"), rows)
          if rows else f"{device}: nothing to repair")
    if report.remaining:
        sys.exit(EXIT_DAMAGE)


@main.command()
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
    _emit(as_json, data, describe(data))


# --- resources and attributes -------------------------------------------------

node_option = click.option(
    "--node-id", type=click.IntRange(1), default=None, envvar="SHAREDDISK_NODE_ID",
    help="Act as this node (default: $SHAREDDISK_NODE_ID, else the node whose daemon runs "
         "on this host).")


@main.group()
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
    _emit(as_json, record.to_json(), _lazy("record_text", tty=False))


@resource.command("remove")
@click.argument("device")
@click.argument("name")
@node_option
@json_option
def resource_remove(device: str, name: str, node_id: int | None, as_json: bool) -> None:
    """Remove resource NAME."""
    from shareddisk.porcelain import resources
    index = resources.remove(device, name, node_id=node_id)
    _emit(as_json, {"removed": name, "index": index}, f"removed {name} (resource {index})")


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
    _emit(as_json, data, f"{name}: cleared {', '.join(cleared)} "
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

    _emit(as_json, {"resources": records}, text)


@main.group()
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
    _emit(as_json, out, text)


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
    _emit(as_json, record.to_json(),
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
    _emit(as_json, record.to_json(),
          f"{resource_name}: version {key_text(record.version)}")


@attr.command("list")
@click.argument("device")
@click.argument("resource_name")
@json_option
def attr_list(device: str, resource_name: str, as_json: bool) -> None:
    """Every attribute and built-in field of RESOURCE_NAME."""
    from shareddisk.porcelain import attrs
    _emit(as_json, attrs.listing(device, resource_name), _lazy("record_text", tty=False))


# --- operations, logs, moves --------------------------------------------------

from shareddisk.drivers.base import KINDS as OP_KINDS  # noqa: E402  (the owner's list)


@main.command()
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
        _emit(as_json, {"request": request.id, "status": "submitted"},
              f"{resource_name}: {kind} submitted (request {request.id})")
        return
    text = (f"{resource_name}: {kind} {' '.join(args)}: {result.status}"
            + (f" (op {key_text(result.op_id)})" if result.op_id else "")
            + (f": {result.error}" if result.error else ""))
    if not result.committed:
        if as_json:  # the outcome for scripts; the failure itself on stderr
            _emit(as_json, result.to_dict(), "")
        _fail(text, EXIT_CONFLICT)
    _emit(as_json, result.to_dict(), text)


@main.group("log")
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
    _emit(as_json, report, _lazy("log_text", tty=False))


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
    _emit(as_json, moved.to_json(), f"{name}: online on node {to} ({moved.owner_host.name})")


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
    _emit(as_json, record.to_json(), f"{name}: stopped ({record.state.name.lower()})")


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
    _emit(as_json, record.to_json(), f"{name}: online on node {record.owner_host.node_id} "
                                     f"({record.owner_host.name})")


@main.command("install-units")
@click.option("--prefix", default="/", show_default=True, type=click.Path(file_okay=False),
              help="Install under this root (a package build root, a test directory).")
@click.option("--command", "command", default=None, metavar="PATH",
              help="The shareddisk command the unit and agents run (default: this one).")
@click.option("--dry-run", is_flag=True, help="Show what would be written; write nothing.")
@json_option
def install_units(prefix: str, command: str | None, dry_run: bool, as_json: bool) -> None:
    """Install the systemd unit and the Pacemaker agents shipped with this package.

    Writes shareddisk@.service to /etc/systemd/system, an example environment
    file to /etc/shareddisk (never over an existing one), the OCF agent to
    /usr/lib/ocf/resource.d/shareddisk, fence_shareddisk to /usr/sbin and
    the man pages to /usr/local/share/man/man1; the unit and agents name this installation's shareddisk command by its absolute path
    (so a pipx or venv install works under systemd and Pacemaker).  Then run
    `systemctl daemon-reload`.
    """
    from shareddisk import units
    from shareddisk.manpages import all_pages
    pages = all_pages(main, __version__, date=units.release_date())
    planned = units.plan(prefix, command, pages)
    if not dry_run:
        units.install(planned)
    data = {"dry_run": dry_run, "command": command or units.command_path(),
            "files": [p.to_json() for p in planned]}
    verb = {"install": "would install" if dry_run else "installed",
            "unchanged": "unchanged", "kept": "kept (exists)"}
    _emit(as_json, data, "\n".join(f"{verb[p.action]:<14} {p.target}" for p in planned))


def _complete_device_paths(group: click.Group) -> None:
    """DEVICE / DEVICES arguments complete file paths in the shell (a click.Path
    that checks nothing: the command itself says what is wrong with a device)."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            _complete_device_paths(command)
        for param in command.params:
            if isinstance(param, click.Argument) and param.name in ("device", "devices"):
                param.type = click.Path()  # checks nothing: open_device does, exit 4


_complete_device_paths(main)

__all__ = ["main", "parse_size"]


# --- the hardware watchdog -------------------------------------------------------


@main.group("watchdog")
def watchdog_group() -> None:
    """Hardware watchdog devices: list them, test that one resets the host."""


@watchdog_group.command("list")
@json_option
def watchdog_list(as_json: bool) -> None:
    """Watchdog devices with identity and timeouts (one in use is read from sysfs)."""
    from shareddisk.watchdog import describe, list_devices
    devices = [describe(path) for path in list_devices()]
    _emit(as_json, {"devices": devices}, "\n".join(
        f"{d['device']}: {d.get('identity', '?')}, timeout {d.get('timeout', '?')} s "
        f"(range {d.get('min_timeout', '?')}..{d.get('max_timeout', '?')} s), "
        f"{d.get('state', 'state unknown')}"
        + (", nowayout" if d.get("nowayout") == 1 else "") for d in devices)
        or "no watchdog device (/dev/watchdog*); load a driver (e.g. i6300esb, iTCO_wdt, "
           "or softdog as a last resort)")


@watchdog_group.command("test")
@click.argument("device", default="/dev/watchdog")
@click.option("--timeout", type=click.IntRange(1, 65535), default=5, show_default=True,
              help="Seconds until the reset.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (scripts).")
def watchdog_test(device: str, timeout: int, yes: bool) -> None:
    """Arm DEVICE and let it fire: THIS HOST RESETS (the lab's check of a watchdog)."""
    import time

    from shareddisk.errors import DeviceError
    from shareddisk.watchdog import HardwareWatchdog, check_device
    check_device(device)
    if not yes and not click.confirm(f"Arm {device} and let it reset this host in about "
                                     f"{timeout} s?", err=True):
        raise UsageError("watchdog test: not confirmed (give --yes in scripts)")
    hw = HardwareWatchdog(device, timeout)
    click.echo(f"{device} ({hw.identity.identity}) armed with {hw.timeout} s; not petting it "
               f"any more: the host should reset now", err=True)
    time.sleep(2 * hw.timeout + 5)  # holding it open: a driver without magic close stops on close
    raise DeviceError(f"watchdog {device}: the host did not reset within {2 * hw.timeout + 5} "
                      f"s of arming it ({hw.timeout} s)")
