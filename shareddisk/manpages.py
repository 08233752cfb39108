"""Man pages written from the click commands themselves, so they cannot drift.

One page per command: ``shareddisk(1)`` lists the commands, and
``shareddisk-run(1)``, ``shareddisk-resource-add(1)``... give a command's
usage, description and options, as ``--help`` does.  ``shareddisk
install-units`` writes them to ``share/man/man1`` (they are generated there,
from the installed version, rather than shipped pre-built: a page built from
a CLI other than the one installed would tell the wrong options).
"""

from __future__ import annotations

import datetime
import re
from typing import Iterator

import click

SEE_ALSO = "systemctl(1), crm_resource(8), sbd(8)"


def _escape(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line
                     for line in text.splitlines())


def _paragraphs(text: str) -> str:
    out = []
    for para in re.split(r"\n\s*\n", click.unstyle(text or "").strip()):
        if para.strip():
            out.append(_escape(" ".join(line.strip() for line in para.splitlines())))
    return "\n.PP\n".join(out)


def subcommands(group: click.Group) -> Iterator[tuple[str, click.Command]]:
    """The commands of ``group`` by name, hidden ones left out (asked of the group,
    which may load them: the CLI imports a command's module when it is named)."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is not None and not command.hidden:
            yield name, command


def walk(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command below ``group``, with its path of names (groups too)."""
    for name, command in subcommands(group):
        path = (*prefix, name)
        yield path, command
        if isinstance(command, click.Group):
            yield from walk(command, path)


def page(prog: str, path: tuple[str, ...], command: click.Command, version: str,
         date: str) -> str:
    """One roff page for ``prog PATH...``."""
    title = "-".join((prog, *path))
    ctx = click.Context(command, info_name=" ".join((prog, *path)))
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines = [f'.TH "{title.upper()}" "1" "{date}" "{prog} {version}" "{prog} manual"',
             ".SH NAME", f"{_escape(title)} \\- {_escape(command.get_short_help_str(80))}",
             ".SH SYNOPSIS", f".B {_escape(' '.join((prog, *path)))}", _escape(usage)]
    if command.help:
        lines += [".SH DESCRIPTION", _paragraphs(command.help)]
    options = [p for p in command.get_params(ctx) if isinstance(p, click.Option)]
    if options:
        lines.append(".SH OPTIONS")
        for option in options:
            record = option.get_help_record(ctx)
            if record is None:
                continue
            lines += [".TP", f"\\fB{_escape(record[0])}\\fR", _escape(record[1]) or "\\&"]
    if isinstance(command, click.Group):
        lines.append(".SH COMMANDS")
        for name, sub in subcommands(command):
            lines += [".TP", f"\\fB{_escape(name)}\\fR",
                      f"{_escape(sub.get_short_help_str(80))} See "
                      f"\\fB{_escape('-'.join((prog, *path, name)))}\\fR(1)."]
    lines += [".SH EXIT STATUS",
              "0 success, 2 usage error, 3 on\\-disk damage or format error, 4 device or "
              "I/O error, 5 conflict (lock held, owner guard, stale version), 6 quorum lost "
              "or node fenced.",
              ".SH SEE ALSO", _escape(SEE_ALSO)]
    return "\n".join(lines) + "\n"


def all_pages(main: click.Group, version: str, prog: str = "shareddisk",
              date: str | None = None) -> dict[str, str]:
    """File name (``shareddisk-run.1``) -> roff text, for the group and every command."""
    date = date or datetime.date.today().isoformat()
    pages = {f"{prog}.1": page(prog, (), main, version, date)}
    for path, command in walk(main):
        pages[f"{'-'.join((prog, *path))}.1"] = page(prog, path, command, version, date)
    return pages
