"""The ``shareddisk`` command: parse, call one library function, print.

Each command parses its arguments, calls one function of shareddisk/porcelain/
(or of the library) and prints the result as a table (default) or JSON
(``--json``).  Every ShareddiskError becomes one line on stderr and the exit
code its class names (README.md).

The commands live in one module per group, as the porcelain does (areas,
nodes, resources, attrs, ops, host), and a command line imports only the
module of the command it names: `attr set` does not build the other thirty
commands' options first (a third of its start-up beyond the interpreter and
click, docs/BENCHMARKS.md).  COMMANDS says where each one is; help, shell
completion and the man pages load them all.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from shareddisk import __version__
from shareddisk.cli.common import complete_device_paths, fail, setup_logging
from shareddisk.errors import ShareddiskError
from shareddisk.params import parse_size

COMMANDS = {  # command name -> "module:object" below shareddisk.cli
    "init": "areas:init", "dump": "areas:dump", "verify": "areas:verify",
    "repair": "areas:repair", "upgrade": "areas:upgrade",
    "run": "nodes:run", "status": "nodes:status", "message": "nodes:message",
    "resource": "resources:resource", "attr": "attrs:attr",
    "op": "ops:op", "log": "ops:log_group",
    "install-units": "host:install_units", "watchdog": "host:watchdog_group",
}


def load(name: str) -> click.Command:
    """The command (or group) called ``name``, imported from its module."""
    module, _, attribute = COMMANDS[name].partition(":")
    command = getattr(importlib.import_module(f"shareddisk.cli.{module}"), attribute)
    if command.name != name:
        raise AssertionError(f"COMMANDS[{name!r}] names the command {command.name!r}")
    return command


class _Group(click.Group):
    """The top-level group: commands loaded when named, and library errors turned
    into one stderr line and the documented exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            command = load(cmd_name)
            complete_device_paths(command)
            self.add_command(command)
        return self.commands.get(cmd_name)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            fail("interrupted", 130)
        except click.ClickException as exc:
            hint = ""
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                hint = f" (see: {exc.ctx.command_path} --help)"
            fail(exc.format_message() + hint, exc.exit_code)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ShareddiskError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)


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
        setup_logging(verbose=False)


__all__ = ["main", "parse_size", "COMMANDS", "load"]
