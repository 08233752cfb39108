"""Daemon log lines in logfmt, with the syslog priority journald reads.

One line per event: ``ts=2026-12-02T12:42:40.412+00:00 level=INFO event=...``.
The timestamp is ISO 8601 with milliseconds and the UTC offset (no space, so
logfmt parsers take it as one value, and lines of several hosts order
correctly); a value holding a space or a quote is double-quoted with
backslash escapes, as logfmt parsers (Loki, Vector, Go's logfmt) expect.
The call sites write ``key=%r`` for free text; Python's repr quotes are
turned into logfmt quotes here, in one place.

Under systemd (``$JOURNAL_STREAM`` names our stderr) each line starts with
``<N>``, the sd-daemon(3) priority prefix, so journald files it at its level
and ``journalctl -p warning`` shows fences and failures alone.
"""

from __future__ import annotations

import ast
import datetime
import logging
import os
import re
import sys
from typing import TextIO

# sd-daemon(3): <2> crit, <3> err, <4> warning, <6> info, <7> debug
PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
              (logging.INFO, 6), (logging.DEBUG, 7))
_REPR_VALUE = re.compile(r"""(?<![\w"'])(\w+)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")
_NEEDS_QUOTES = re.compile(r'[\s"=\\]|^$')


def quote(value: str) -> str:
    """A logfmt value: bare when it can be, else double-quoted with escapes."""
    if not _NEEDS_QUOTES.search(value):
        return value
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def _requote(match: re.Match[str]) -> str:
    key, literal = match.groups()
    try:
        value = ast.literal_eval(literal)
    except (ValueError, SyntaxError):
        return match.group(0)
    return f"{key}={quote(value) if isinstance(value, str) else quote(str(value))}"


def priority(levelno: int) -> int:
    for level, prio in PRIORITIES:
        if levelno >= level:
            return prio
    return 7


class LogfmtFormatter(logging.Formatter):
    def __init__(self, journal: bool = False):
        super().__init__()
        self.journal = journal

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created).astimezone()
        return stamp.isoformat(timespec="milliseconds")

    def format(self, record: logging.LogRecord) -> str:
        message = _REPR_VALUE.sub(_requote, record.getMessage())
        if record.exc_info:
            message += " exception=" + quote(self.formatException(record.exc_info))
        line = f"ts={self.formatTime(record)} level={record.levelname} {message}"
        line = line.replace("\n", "\\n")  # one event, one line
        if not line.isprintable():  # a peer's name is read from the disk: no escapes to the tty
            line = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256
                           else f"\\u{ord(c):04x}" for c in line)
        return f"<{priority(record.levelno)}>{line}" if self.journal else line


def stderr_is_journal(environ: dict[str, str] | None = None, stream: TextIO | None = None) -> bool:
    """Is stderr the journal stream systemd connected ($JOURNAL_STREAM is "dev:inode")?"""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def setup(verbose: bool = False, stream: TextIO | None = None) -> logging.Handler:
    """Send the daemon's log to stderr in logfmt (with priorities under journald)."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LogfmtFormatter(journal=stderr_is_journal(stream=stream)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    return handler
