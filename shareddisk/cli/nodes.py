"""Commands of a node: run (the daemon), status, message."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from shareddisk.cli.common import (INTERVAL_SECONDS, WAIT_SECONDS, WINDOW_SECONDS, emit, fail,
                                   json_option, rendered, setup_logging)
from shareddisk.errors import EXIT_CONFLICT
from shareddisk.loggers import logger


@click.command()
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
    setup_logging(verbose)
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


@click.command()
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
            emit(as_json, report, rendered("status_text"))
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


@click.command()
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
            emit(as_json, data, "")
        fail(f"{text}: NOT acknowledged before the timeout", EXIT_CONFLICT)
    if wait:
        text += ": acknowledged"
    emit(as_json, data, text)