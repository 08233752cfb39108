"""The daemon's log lines: logfmt with ISO 8601 time, and journald priorities."""

from __future__ import annotations

import datetime
import io
import logging
import os
import re
from pathlib import Path

import pytest

from shareddisk.logfmt import LogfmtFormatter, quote, setup, stderr_is_journal

# An independent logfmt reader (the grammar of go-logfmt): key=bare or key="escaped".
_PAIR = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^\s"]*))(?:\s+|$)')


def parse_logfmt(line: str) -> dict[str, str]:
    out, pos = {}, 0
    while pos < len(line):
        m = _PAIR.match(line, pos)
        assert m is not None, f"not logfmt at {pos}: {line[pos:]!r}"
        key, quoted, bare = m.groups()
        if quoted is not None:
            bare = re.sub(r"\\(.)", lambda e: {"n": "\n", "t": "\t", "r": "\r"}.get(
                e.group(1), e.group(1)), quoted)
        out[key] = bare
        pos = m.end()
    return out


def record(msg: str, *args: object, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("shareddisk.node", level, __file__, 1, msg, args, None)


def test_a_line_is_logfmt_with_an_iso_8601_timestamp_and_quoted_free_text() -> None:
    reason = 'lease of "sg1" lost\nat gen 4 \\ it\'s gone'
    line = LogfmtFormatter().format(record("event=fence node=%d reason=%r path=%s", 2, reason,
                                           "/dev/sdb"))
    fields = parse_logfmt(line)
    assert fields["reason"] == reason  # spaces, both quotes, backslash and newline survive
    assert fields["event"] == "fence" and fields["node"] == "2" and fields["path"] == "/dev/sdb"
    assert fields["level"] == "INFO"
    stamp = datetime.datetime.fromisoformat(fields["ts"])
    assert stamp.utcoffset() is not None  # an offset, so hosts' lines order correctly
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", fields["ts"])
    assert "\n" not in line


def test_simple_values_stay_bare_and_odd_ones_are_quoted() -> None:
    assert quote("sg1") == "sg1"
    assert quote("a b") == '"a b"'
    assert quote("") == '""'
    assert quote('x="y"') == '"x=\\"y\\""'
    line = LogfmtFormatter().format(record("event=x error=%r", "simple"))
    assert line.endswith(" event=x error=simple")


@pytest.mark.parametrize("level, prefix", [(logging.CRITICAL, "<2>"), (logging.ERROR, "<3>"),
                                           (logging.WARNING, "<4>"), (logging.INFO, "<6>"),
                                           (logging.DEBUG, "<7>")])
def test_journal_lines_start_with_the_sd_daemon_priority(level: int, prefix: str) -> None:
    line = LogfmtFormatter(journal=True).format(record("event=fence node=1", level=level))
    assert line.startswith(prefix + "ts=")
    assert not LogfmtFormatter().format(record("event=x", level=level)).startswith("<")


def test_journal_stream_must_name_our_stderr(tmp_path: Path) -> None:
    with open(tmp_path / "a", "w") as a, open(tmp_path / "b", "w") as b:
        st = os.fstat(a.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert stderr_is_journal(env, a)
        assert not stderr_is_journal(env, b)  # inherited by a child whose stderr is elsewhere
        assert not stderr_is_journal({}, a)
        assert not stderr_is_journal({"JOURNAL_STREAM": "junk"}, a)


def test_setup_under_journald_prefixes_warnings_so_journalctl_p_can_filter(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    with open(tmp_path / "journal", "w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        try:
            handler = setup(stream=stream)
            logging.getLogger("shareddisk.node").critical("event=fence node=%d reason=%r", 3,
                                                          "cannot renew")
            logging.getLogger("shareddisk.node").info("event=peer node=1 peer=2 to=alive")
            handler.flush()
        finally:
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
    lines = (tmp_path / "journal").read_text().splitlines()
    assert lines[0].startswith("<2>ts=") and 'reason="cannot renew"' in lines[0]
    assert lines[1].startswith("<6>ts=")


def test_without_journald_setup_writes_plain_logfmt() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    try:
        setup(stream=out)
        logging.getLogger("shareddisk.x").warning("event=y a=%r", "b c")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert parse_logfmt(out.getvalue().strip())["a"] == "b c"
