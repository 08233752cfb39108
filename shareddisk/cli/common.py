"""What every command module of the CLI shares: option types and options,
the one-line error, and printing a result as a table or as JSON.

Commands import what only they need inside their bodies (their porcelain,
render, rich, progress bars): every command starts in the time of its own
imports (`attr set` has a 120 ms budget with the interpreter,
docs/BENCHMARKS.md; tests/unit/test_startup.py keeps the list short).
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, NoReturn

import click

from shareddisk.errors import UsageError
from shareddisk.params import Seconds, parse_size
from shareddisk.timeouts import MAX_INTERVAL, MIN_INTERVAL
from shareddisk.writekeys import parse_version

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


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")

node_option = click.option(
    "--node-id", type=click.IntRange(1), default=None, envvar="SHAREDDISK_NODE_ID",
    help="Act as this node (default: $SHAREDDISK_NODE_ID, else the node whose daemon runs "
         "on this host).")


def fail(message: str, code: int) -> NoReturn:
    """One line on stderr, whatever the message holds (a name read from a damaged
    disk, say), and exit ``code``."""
    from shareddisk import render
    click.echo(f"shareddisk: error: {render.printable(message, keep_newlines=False)}", err=True)
    sys.exit(code)


def terminal_bar(description: str, **options: Any) -> Any:
    """shareddisk.progress.terminal_bar, imported by the commands that draw a bar."""
    from shareddisk.progress import terminal_bar as bar
    return bar(description, **options)


def emit(as_json: bool, data: Any, text: str | Callable[[Any, bool], str]) -> None:
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


def rendered(name: str, *, tty: bool = True) -> Callable[[Any, bool], str]:
    """render.NAME (given the terminal flag when ``tty``), imported only when the
    text is printed: --json never imports render."""
    def text(data: Any, is_tty: bool) -> str:
        from shareddisk import render
        function = getattr(render, name)
        return function(data, is_tty) if tty else function(data)
    return text


def setup_logging(verbose: bool) -> None:
    """The library's log lines on stderr: logfmt, with journald priorities (logfmt.py)."""
    from shareddisk.logfmt import setup
    setup(verbose)


def complete_device_paths(command: click.Command) -> None:
    """DEVICE / DEVICES arguments complete file paths in the shell (a click.Path
    that checks nothing: the command itself says what is wrong with a device)."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            complete_device_paths(sub)
    for param in command.params:
        if isinstance(param, click.Argument) and param.name in ("device", "devices"):
            param.type = click.Path()  # checks nothing: open_device does, exit 4
