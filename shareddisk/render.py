"""Text for people: tables and the annotated hex view.

Everything here formats the same dicts that ``--json`` prints, so the table
and the JSON can never disagree about what is on the disk.

``status`` and ``dump`` print tables: on a terminal drawn by ``rich``
(imported only then: ``--json`` never pays for it) with coloured states at
the terminal's width; piped, the same tables as plain text, one line per
row with an ASCII rule, so scripts and tests see stable output.
"""

from __future__ import annotations

import io
import json
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple, Sequence

from shareddisk.writekeys import key_text

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from shareddisk.format.record import RecordCodec

HEX_WIDTH = 16


def _escape(ch: str) -> str:
    n = ord(ch)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def _unsafe(ch: str, keep_newlines: bool) -> bool:
    if ch == "\n":
        return not keep_newlines
    if ch == "\t":
        return False
    # Cc: C0/C1 controls (ESC starts terminal sequences); Cf: format characters
    # such as the bidirectional overrides, which reorder what a reader sees.
    return unicodedata.category(ch) in ("Cc", "Cf")


def printable(text: str, keep_newlines: bool = True) -> str:
    """``text`` with every control or format character written as ``\\xNN``/``\\uNNNN``,
    so that nothing read from a disk or given as a name can drive the terminal."""
    if text.isprintable():
        return text  # the common case, in C
    return "".join(_escape(ch) if _unsafe(ch, keep_newlines) else ch for ch in text)


def printable_data(data: Any) -> Any:
    """``data`` (JSON-like) with printable() applied to every string in it, newlines too:
    a value shown on one line of a table stays on that line."""
    if isinstance(data, str):
        return printable(data, keep_newlines=False)
    if isinstance(data, dict):
        return {printable_data(k): printable_data(v) for k, v in data.items()}
    if isinstance(data, list):
        return [printable_data(v) for v in data]
    if isinstance(data, tuple):
        return tuple(printable_data(v) for v in data)
    return data


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain aligned table without a rule (verify, log, repair ...); None shows as '-'."""
    return _plain([Table(headers, list(rows), ruled=False)])


def _field_value(kind: str, raw: bytes) -> str:
    if kind.startswith(("uint", "int")):
        value = int.from_bytes(raw, "little", signed=not kind.startswith("u"))
        return f"{value} (0x{value:x})" if value > 9 else str(value)
    if kind.startswith("utf8"):
        text = raw.rstrip(b"\0").decode("utf-8", errors="replace")
        return repr(text)
    if raw.count(0) == len(raw):
        return "(all zero)"
    return raw[:8].hex() + ("..." if len(raw) > 8 else "")


def hex_view(codec: RecordCodec, buf: bytes, offset: int, title: str) -> str:
    """Every field of one record beside its bytes, then the padding."""
    lines = [f"{title} at offset {offset} (0x{offset:x}): {len(buf)} bytes, "
             f"{codec.size} meaningful"]
    for f in codec.fields:
        raw = buf[f.offset:f.offset + f.size]
        label = f"{f.name} <{f.type}>"
        for i in range(0, max(f.size, 1), HEX_WIDTH):
            part = raw[i:i + HEX_WIDTH]
            left = f"  +0x{f.offset + i:04x}  {part.hex(' '):<{3 * HEX_WIDTH}}"
            if i == 0:
                lines.append(f"{left}  {label:<32} {_field_value(f.type, raw)}")
            elif f.type.startswith("bytes") and part.count(0) == len(part) \
                    and raw[i:].count(0) == len(raw) - i:
                lines.append(f"  +0x{f.offset + i:04x}  ... {len(raw) - i} more zero bytes")
                break
            else:
                lines.append(left.rstrip())
    pad = buf[codec.size:]
    if pad:
        state = "all zero" if pad.count(0) == len(pad) else \
            f"NON-ZERO ({len(pad) - pad.count(0)} bytes)"
        lines.append(f"  +0x{codec.size:04x}  padding: {len(pad)} bytes, {state}")
    return "\n".join(lines)


# --- tables for status and dump ---------------------------------------------------
#
# The views below are lists of parts, built without rich: plain lines (str),
# coloured lines and cells (Styled), lines of several colours (lists of
# Styled) and tables (Table).  Piped, they are laid out here as plain text
# (fast, and no rich import).  On a terminal rich draws them: a rich Table
# with coloured states that fits the terminal's width, except for tables
# longer than RICH_TABLE_ROWS, which keep the plain layout with its colours
# (a rich Table costs about 1 ms a row: 2 s for 2,048 nodes).

RICH_TABLE_ROWS = 300
_GAP = "  "

# Colours of states on a terminal (members, slots, resources).
_STATE_STYLES = {
    "alive": "green", "joining": "cyan", "suspect": "yellow", "dead": "bold red",
    "fenced": "red", "left": "dim", "empty": "dim", "unknown": "yellow",
    "online": "green", "offline": "dim", "failed": "bold red",
}
_DAMAGED = "bold red"


class Styled(NamedTuple):
    """A line or cell with a rich style (colour on a terminal only)."""

    text: str
    style: str | None


@dataclass
class Table:
    """Upper-case headers over a rule, no borders, None shown as '-'.

    The first column starts each line (``line.split()[0]`` is its value);
    columns named in ``right`` (numbers) are right-aligned.
    """

    headers: Sequence[str]
    rows: list[Sequence[Any]]
    right: Iterable[str] = ()
    row_styles: Sequence[str | None] = ()
    ruled: bool = True  # a rule under the headers

    def cells(self) -> list[list[Styled]]:
        out = []
        for n, row in enumerate(self.rows):
            default = self.row_styles[n] if n < len(self.row_styles) else None
            out.append([v if isinstance(v, Styled) else
                        Styled("-" if v is None else str(v), default) for v in row])
        return out

    def justify(self) -> list[str]:
        right = set(self.right)
        return ["right" if i and h in right else "left" for i, h in enumerate(self.headers)]

    def lines(self, rule: str) -> list[list[Styled]]:
        """Header, rule and rows as padded segments (shared by plain and big coloured tables)."""
        cells = self.cells()
        heads = [h.upper() for h in self.headers]
        widths = [max([len(h)] + [len(row[i].text) for row in cells]) for i, h in enumerate(heads)]
        just = self.justify()

        def line(row: list[Styled]) -> list[Styled]:
            segs = []
            for i, (cell, w) in enumerate(zip(row, widths)):
                if i:
                    segs.append(Styled(_GAP, None))
                text = cell.text.rjust(w) if just[i] == "right" else cell.text.ljust(w)
                segs.append(Styled(text, cell.style))
            return segs

        ruler = [Styled(rule * (sum(widths) + len(_GAP) * (len(widths) - 1)), None)]
        return [line([Styled(h, "bold") for h in heads]), *([ruler] if self.ruled else []),
                *(line(row) for row in cells)]


def _styled(value: Any) -> Any:
    """A state coloured by its value (alive green, dead red ...); else the value itself."""
    if isinstance(value, str) and value in _STATE_STYLES:
        return Styled(value, _STATE_STYLES[value])
    return value


def _segments(part: str | Styled | list[Styled]) -> list[Styled]:
    """A line as its segments."""
    if isinstance(part, str):
        return [Styled(part, None)]
    return [part] if isinstance(part, Styled) else part


def _plain(parts: list[Any]) -> str:
    lines: list[str] = []
    for part in parts:
        rows = part.lines("-") if isinstance(part, Table) else [_segments(part)]
        lines += ["".join(seg.text for seg in row).rstrip() for row in rows]
    return "\n".join(lines)


def console(file: Any = None, width: int | None = None) -> Console:
    """A rich Console on a terminal (``file``, default stdout) for our views.

    Markup, emoji codes and highlighting are off: device paths, names and
    messages are printed exactly as they are.
    """
    from rich.console import Console
    return Console(file=file, width=width, force_terminal=True, highlight=False, emoji=False,
                   markup=False)


def _rich(part: Any, wrap: bool) -> Any:
    """One part as a rich renderable; lines are cut with an ellipsis unless ``wrap``."""
    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    def line(segments: list[Styled]) -> Text:
        return Text.assemble(*((seg.text, seg.style or "") for seg in segments))

    if not isinstance(part, Table) or len(part.rows) > RICH_TABLE_ROWS:
        rows = part.lines("─") if isinstance(part, Table) else [_segments(part)]
        text = Text("\n").join(line(row) for row in rows)
        if isinstance(part, Table) or not wrap:
            text.no_wrap, text.overflow = True, "ellipsis"
        return text
    t = RichTable(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True,
                  header_style="bold", padding=(0, 1))
    for h, just in zip(part.headers, part.justify()):
        t.add_column(h.upper(), justify=just)
    for row in part.cells():
        t.add_row(*(Text(c.text, style=c.style or "") for c in row))
    return t


def _render(parts: list[Any], tty: bool) -> str:
    """The parts as text: plain when not ``tty``; else drawn by rich at the terminal's width."""
    if not tty:
        return _plain(parts)
    buf = io.StringIO()
    import shutil
    out = console(buf, shutil.get_terminal_size().columns)
    for part in parts:
        out.print(_rich(part, wrap=True), soft_wrap=not isinstance(part, Table))
    return buf.getvalue().rstrip("\n")


def _group(parts: list[Any]) -> RenderableType:
    """The parts as one rich renderable (the live view)."""
    from rich.console import Group
    return Group(*(_rich(p, wrap=False) for p in parts))


# --- dump ---------------------------------------------------------------------

_COLUMNS: dict[str, tuple[str, ...]] = {
    "heartbeat": ("node_id", "name", "state", "incarnation", "counter", "mailbox_ack",
                  "wall_time"),
    "mailbox": ("node_id", "message", "sender_id", "seq", "sent"),
    "lease": ("resource_index", "owner_id", "owner_name", "owner_incarnation",
              "generation", "acquired"),
    "log": ("position", "seq", "entry_type", "op_id", "resource_index", "step",
            "step_count", "data_length"),
}
_NUMBERS = ("offset", "records", "bytes", "incarnation", "counter", "mailbox_ack", "seq", "generation", "owner_incarnation", "version", "op_id",
            "step", "step_count", "data_length", "position")


def _is_default(record: dict[str, Any], region: str) -> bool:
    if "damage" in record:
        return False
    if region == "heartbeat":
        return record["state"] == "empty"
    if region == "mailbox":
        return record["seq"] == 0
    if region == "lease":
        return record["generation"] == 0
    return False


def dump_text(dump: dict[str, Any], tty: bool = False) -> str:
    """``dump``: the superblock, the regions table, then each region's records in use."""
    return _render(_dump_parts(dump), tty)


def _dump_parts(dump: dict[str, Any]) -> list[Any]:
    sb = dump["superblock"]
    parts: list[Any] = [
        f"Device      {dump['device']} ({dump['io_mode']}, {dump['device_size']} bytes, "
        f"{dump['device_sector_size']}-byte logical sectors)",
        f"Cluster     {sb['cluster_name']}  {sb['cluster_uuid']}",
        f"Format      version {sb['format_version']}, sector size {sb['sector_size']}, "
        f"area {sb['area_size']} bytes, created {sb['created']}",
        f"Superblock  primary at {sb['primary']['offset']}: {sb['primary']['status']}; "
        f"backup at {sb['backup']['offset']}: {sb['backup']['status']} "
        f"(reading the {sb['source']})",
        f"Counts      {sb['node_count']} nodes, {sb['resource_count']} resources "
        f"({sb['resource_chunks']} sectors per copy), log disks: "
        f"{', '.join(sb['log_disks']) or 'none'}",
        f"Timing      interval {sb['interval_ms']} ms, io timeout {sb['io_timeout_ms']} ms",
        "",
        Table(("region", "offset", "records", "bytes"),
              [(r["name"], r["offset"], r["records"], r["length"]) for r in dump["regions"]],
              right=_NUMBERS),
    ]
    parts += [f"note: {note}" for note in dump.get("notes", [])]
    for region in dump:
        if region in ("heartbeat", "mailbox", "lease") or region.startswith("log:"):
            parts += ["", *_region_parts(region, dump[region])]
    if "resource" in dump:
        parts += ["", *_resource_parts(dump["resource"])]
    return parts


def _region_parts(region: str, records: list[dict[str, Any]]) -> list[Any]:
    columns = _COLUMNS["log" if region.startswith("log:") else region]
    shown = [r for r in records if not _is_default(r, region)]
    hidden = len(records) - len(shown)
    title = f"{region}: {len(records)} records"
    if region.startswith("log:"):
        title = f"{region}: {len(records)} entries in use"
    elif hidden:
        title += f", {hidden} unused not shown"
    parts: list[Any] = [title]
    if shown:
        rows, styles = [], []
        for r in shown:
            if "damage" in r:
                rows.append([r["index"], "DAMAGED", *[""] * (len(columns) - 1)])
            else:
                rows.append([r["index"], *[_styled(r[c]) if c == "state" else r.get(c)
                                           for c in columns]])
            styles.append(_DAMAGED if "damage" in r else None)
        parts.append(Table(("index", *columns), rows, right=_NUMBERS, row_styles=styles))
        parts += [Styled(f"DAMAGED: {r['damage']}", _DAMAGED) for r in shown if "damage" in r]
    return parts


def _resource_parts(resources: list[dict[str, Any]]) -> list[Any]:
    used = [r for r in resources if r["version"] or r["damage"]]
    parts: list[Any] = [f"resource: {len(resources)} records, "
                        f"{len(resources) - len(used)} unused not shown"]
    rows, styles = [], []
    for r in used:
        rec = r["record"] or {}
        copies = " ".join(f"{c['copy']}:{c['status']}"
                          + (f"/v{key_text(c['version'])}" if c["version"] is not None
                             else "")
                          for c in r["copies"])
        rows.append([r["index"], rec.get("name"), rec.get("type"), key_text(r["version"]),
                     r["current"],
                     copies, rec.get("owner_name") or None, rec.get("active_log_disk") or None,
                     "DAMAGED" if r["damage"] else None])
        styles.append(_DAMAGED if r["damage"] else None)
    if rows:
        parts.append(Table(("index", "name", "type", "version", "current", "copies", "owner",
                            "active_log_disk", "damage"), rows, right=_NUMBERS,
                           row_styles=styles))
    parts += [Styled(f"DAMAGED: resource {r['index']}: {d}", _DAMAGED)
              for r in used for d in r["damage"]]
    return parts


def verify_text(report: dict[str, Any]) -> str:
    if "disks" in report:  # several disks of a cluster: each one, then what is wrong
        return "\n".join(verify_text(d) if "error" not in d else
                         f"{d['device']}: not checked: {d['error']}" for d in report["disks"])
    damage = report["damage"]
    head = (f"{report['device']}: {report['records_checked']} records checked, "
            + ("clean" if not damage else f"{len(damage)} damaged"))
    lines = [head]
    if damage:
        lines.append(table(("region", "index", "offset", "expected_crc", "found_crc", "problem"),
                           [(d["region"], d["index"], d["offset"], d["expected_crc"],
                             d["found_crc"], d["problem"]) for d in damage]))
    lines += [f"note: {n}" for n in report["notes"]]
    return "\n".join(lines)


def _age(node: dict[str, Any]) -> str:
    if node["age"] is not None:
        return f"{node['age']:.1f}s ago"
    return f"not in {node['unchanged_for_at_least']:.1f}s"


def _source(report: dict[str, Any]) -> str:
    """Where the states come from: a local daemon's view, or this reader's own reads."""
    source = report.get("source") or {}
    if source.get("kind") == "daemon":
        return (f"as node {source['node_id']}'s daemon on this host sees it "
                f"({source['view_age']:.2f}s ago)")
    if report["watched_seconds"] == 0 or source.get("reads") == 1:
        text = "one read (unknown: the slot says alive; --window to watch)"
    else:
        text = f"watched {report['watched_seconds']:g}s"
    return text + (f"; {source['note']}" if source.get("note") else "")


def status_text(report: dict[str, Any], tty: bool = False) -> str:
    """``status``: quorum and timing, then members and resources as tables."""
    return _render(_status_parts(report), tty)


def status_renderable(report: dict[str, Any], footer: str = "") -> RenderableType:
    """The ``status`` view as one rich renderable, for the live view of ``--watch``."""
    return _group(_status_parts(report) + ([footer] if footer else []))


def _watchdog(label: str | None) -> Any:
    """The watchdog column: an unwatched node in yellow (a daemon that cannot act
    cannot fence that host)."""
    return Styled(label, "yellow") if label == "unwatched" else label


def _status_parts(report: dict[str, Any]) -> list[Any]:
    q = report["quorum"]
    t = report["timeouts"]
    parts: list[Any] = [
        f"Cluster  {report['cluster_name']}  {report['cluster_uuid']}",
        [Styled(f"Disks    {q['readable']} of {q['disks']} readable (need {q['needed']}): ",
                None), Styled("quorum", "green") if q["ok"] else Styled("NO QUORUM", "bold red")],
        *[Styled(f"         {d['path']}: {d['error']}", "red")
          for d in report["devices"] if not d["readable"]],
        *[Styled(f"         {d['path']}: {d['replicas']}", "yellow")
          for d in report["devices"] if d.get("replicas")],
        f"Timing   interval {t['interval']:g}s, suspect after {t['suspect']:g}s, "
        f"dead after {t['dead']:g}s; {_source(report)}",
        f"Members  {report['alive']} alive",
        "",
    ]
    rows = [(n["id"], n["name"], _styled(n["state"]), n["incarnation"], n["counter"], _age(n),
             ",".join(map(str, n["declared_dead_by"])) or None,
             _watchdog(n.get("watchdog"))) for n in report["nodes"]]
    parts.append(Table(("id", "name", "state", "incarnation", "counter", "counter changed",
                        "declared dead by", "watchdog"), rows, right=_NUMBERS)
                 if rows else "no node has joined yet")
    resources = [r for r in report.get("resources", []) if "error" not in r]
    parts += [Styled(f"resources: {r['error']}", "red")
              for r in report.get("resources", []) if "error" in r]
    if resources:
        rows = [(r["name"], r["type"], _styled(r["state"]),
                 f"{r['owner_host']['name']} ({r['owner_id']})" if r["owner_host"] else None,
                 f"node {r['lease']['holder_id']} gen {r['lease']['generation']}" if r["lease"]
                 else None, r["active_log_disk"], key_text(r["version"]), r.get("why"))
                for r in resources]
        parts += ["", Table(("resource", "type", "state", "owner", "lease", "active_log_disk",
                             "version", "why"), rows, right=_NUMBERS)]
    return parts


def record_text(r: dict[str, Any]) -> str:
    """A resource record (its JSON form) for ``resource add`` and ``attr list``."""
    owner = r["owner_host"]
    lines = [f"{r['name']} (resource {r['index']}, type {r['type']}, "
             f"version {key_text(r['version'])})",
             f"  state            {r['state']}",
             "  owner_host       " + ("-" if owner is None else
                                       f"{owner['name']} (node {owner['id']}, incarnation "
                                       f"{owner['incarnation']})"),
             f"  active_log_disk  {r['active_log_disk'] or '-'}",
             f"  failover_nodes   {','.join(map(str, r['failover_nodes'])) or '-'}"]
    lines += [f"  {k:<16} {v}" for k, v in r["attributes"].items()]
    return "\n".join(lines)


def log_text(report: dict[str, Any]) -> str:
    """``log show``: each log disk, then its operations with their steps."""
    lines = []
    for disk in report["log_disks"]:
        head = disk["head"]
        shown = f"seq {key_text(head['seq'])} at position {head['position']}" if head else "none"
        lines.append(f"log:{disk['name']}  {disk['entries_in_use']} of {disk['capacity']} entries "
                     f"in use, head {shown}")
        for d in disk["damaged"]:
            lines.append(f"  DAMAGED entry at position {d['position']} (offset {d['offset']}): "
                         f"{d['error']}")
        rows = []
        for op in disk["operations"]:
            steps = " ".join(f"{s['name'] or s['index']}:{s['state']}" for s in op["steps"])
            params = json.dumps(op["params"], sort_keys=True) if op["params"] else ""
            rows.append((key_text(op["op_id"]), op["resource_index"], op["kind"] or "?",
                         op["status"],
                         params if len(params) <= 48 else params[:45] + "...", steps or None))
        if rows:
            lines.append(table(("op", "resource", "kind", "status", "params", "steps"), rows))
        lines.append("")
    return "\n".join(lines).rstrip() or "no log disks"
