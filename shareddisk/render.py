"""Text for people: tables and the annotated hex view.

Everything here formats the same dicts that ``--json`` prints, so the table
and the JSON can never disagree about what is on the disk.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from shareddisk.format.record import RecordCodec

HEX_WIDTH = 16


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain aligned table; None shows as '-'."""
    text_rows = [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(v)) for w, v in zip(widths, row)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in text_rows]
    return "\n".join(lines)


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


# --- dump ---------------------------------------------------------------------

_COLUMNS: dict[str, tuple[str, ...]] = {
    "heartbeat": ("node_id", "name", "state", "incarnation", "counter",
                  "config_generation", "mailbox_ack", "wall_time"),
    "mailbox": ("node_id", "message", "sender_id", "seq", "sent"),
    "lease": ("resource_index", "owner_id", "owner_name", "owner_incarnation",
              "generation", "acquired"),
    "log": ("position", "seq", "entry_type", "op_id", "resource_index", "step",
            "step_count", "data_length"),
}


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


def dump_text(dump: dict[str, Any]) -> str:
    sb = dump["superblock"]
    out = [
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
        table(("region", "offset", "records", "bytes"),
              [(r["name"], r["offset"], r["records"], r["length"]) for r in dump["regions"]]),
    ]
    for note in dump.get("notes", []):
        out.append(f"note: {note}")
    for region in dump:
        if region in ("heartbeat", "mailbox", "lease") or region.startswith("log:"):
            out += ["", *_region_text(region, dump[region])]
    if "resource" in dump:
        out += ["", *_resources_text(dump["resource"])]
    return "\n".join(out)


def _region_text(region: str, records: list[dict[str, Any]]) -> list[str]:
    columns = _COLUMNS["log" if region.startswith("log:") else region]
    shown = [r for r in records if not _is_default(r, region)]
    hidden = len(records) - len(shown)
    title = f"{region}: {len(records)} records"
    if region.startswith("log:"):
        title = f"{region}: {len(records)} entries in use"
    elif hidden:
        title += f", {hidden} unused not shown"
    lines = [title]
    if shown:
        rows = []
        for r in shown:
            if "damage" in r:
                rows.append([r["index"], "DAMAGED: " + r["damage"]] + [""] * (len(columns) - 1))
            else:
                rows.append([r["index"]] + [r.get(c) for c in columns])
        lines.append(table(("index", *columns), rows))
    return lines


def _resources_text(resources: list[dict[str, Any]]) -> list[str]:
    used = [r for r in resources if r["version"] or r["damage"]]
    lines = [f"resource: {len(resources)} records, {len(resources) - len(used)} unused not shown"]
    rows = []
    for r in used:
        rec = r["record"] or {}
        copies = " ".join(f"{c['copy']}:{c['status']}" + (f"/v{c['version']}" if c["version"]
                                                           is not None else "")
                          for c in r["copies"])
        rows.append([r["index"], rec.get("name"), rec.get("type"), r["version"], r["current"],
                     copies, rec.get("owner_name") or None, rec.get("active_log_disk") or None,
                     "; ".join(r["damage"]) or None])
    if rows:
        lines.append(table(("index", "name", "type", "version", "current", "copies", "owner",
                            "active_log_disk", "damage"), rows))
    return lines


def verify_text(report: dict[str, Any]) -> str:
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


def status_text(report: dict[str, Any]) -> str:
    q = report["quorum"]
    t = report["timeouts"]
    lines = [
        f"Cluster  {report['cluster_name']}  {report['cluster_uuid']}",
        f"Disks    {q['readable']} of {q['disks']} readable (need {q['needed']}): "
        f"{'quorum' if q['ok'] else 'NO QUORUM'}",
        f"Timing   interval {t['interval']:g}s, suspect after {t['suspect']:g}s, "
        f"dead after {t['dead']:g}s; watched {report['watched_seconds']:g}s",
        f"Members  {report['alive']} alive",
        "",
    ]
    for d in report["devices"]:
        if not d["readable"]:
            lines.insert(2, f"         {d['path']}: {d['error']}")
    rows = [(n["id"], n["name"], n["state"], n["incarnation"], n["counter"], _age(n),
             ",".join(map(str, n["declared_dead_by"])) or None) for n in report["nodes"]]
    lines.append(table(("id", "name", "state", "incarnation", "counter", "counter changed",
                        "declared dead by"), rows) if rows else "no node has joined yet")
    resources = [r for r in report.get("resources", []) if "error" not in r]
    lines += [f"resources: {r['error']}" for r in report.get("resources", []) if "error" in r]
    if resources:
        rows = [(r["name"], r["type"], r["state"],
                 f"{r['owner_host']['name']} ({r['owner_id']})" if r["owner_host"] else None,
                 f"node {r['lease']['holder_id']} gen {r['lease']['generation']}" if r["lease"]
                 else None, r["active_log_disk"], r["version"]) for r in resources]
        lines += ["", table(("resource", "type", "state", "owner", "lease", "active_log_disk",
                             "version"), rows)]
    return "\n".join(lines)


def log_text(report: dict[str, Any]) -> str:
    """``log show``: each log disk, then its operations with their steps."""
    lines = []
    for disk in report["log_disks"]:
        head = disk["head"]
        lines.append(f"log:{disk['name']}  {disk['entries_in_use']} of {disk['capacity']} entries "
                     f"in use, head " + (f"seq {head['seq']} at position {head['position']}"
                                          if head else "none"))
        for d in disk["damaged"]:
            lines.append(f"  DAMAGED entry at position {d['position']} (offset {d['offset']}): "
                         f"{d['error']}")
        rows = []
        for op in disk["operations"]:
            steps = " ".join(f"{s['name'] or s['index']}:{s['state']}" for s in op["steps"])
            params = json.dumps(op["params"], sort_keys=True) if op["params"] else ""
            rows.append((op["op_id"], op["resource_index"], op["kind"] or "?", op["status"],
                         params if len(params) <= 48 else params[:45] + "...", steps or None))
        if rows:
            lines.append(table(("op", "resource", "kind", "status", "params", "steps"), rows))
        lines.append("")
    return "\n".join(lines).rstrip() or "no log disks"
