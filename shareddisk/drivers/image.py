"""The ``image`` driver: volumes carved from a data device, mapped by a volume table.

A storage group is the set of volumes on one data device — a file image or a
block device named by the resource attribute ``data_devices`` (a list with
one path; more than one is refused as not supported yet).  The device starts
with a volume table (shareddisk/format/volume.py; docs/FORMAT.md)::

    byte 0                      VOLUME_TABLE header (uuid, sector size, slots,
                                data_offset, capacity)
    (1 + i) * sector_size       VOLUME entry of slot i (state, name, offset, size)
    data_offset (1 MiB aligned) the data area, up to capacity (1 MiB aligned)

Volume extents are 1 MiB aligned and placed first fit; a new volume takes
the lowest free slot.  ``volume_slots`` (default 64) sets the slot count of
a new table; a blank device gets its table from the first step,
``format-table``, of the first operation.  ``prepare`` refuses a device
that is neither blank in its first 64 KiB nor holds a volume table (a
filesystem, an LVM label, a shareddisk area ...), so the driver never
formats over data.

Steps (each writes whole sectors with bytes fixed by ``params``; every
entry step first checks that the slot holds what the operation expects, so a
step replayed against a table that changed meanwhile stops with a
ConflictError instead of damaging another volume):

    create-volume   [format-table] claim zero activate
    delete-volume   mark-deleting scrub release
    resize-volume   grow:   zero-tail set-size      shrink: set-size scrub-tail
    rename-volume   rename

``claim`` writes the entry as ``creating``, ``zero`` zeroes the extent in
1 MiB writes, ``activate`` marks it ``active``; ``mark-deleting`` /
``scrub`` / ``release`` undo that in reverse.  A grow only extends into free
space right after the extent (else prepare refuses it); its tail is zeroed
before the size changes, so the volume never shows stale bytes.
``format-table`` writes every entry (free), flushes, then the header: a
header on disk means its entries are durable, so a replayed format-table
that finds its own header writes nothing, and a device holding entries but
no header (a format interrupted) still counts as blank.  Every step ends
with a flush, so a step logged DONE is on the disk.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from shareddisk.clock import Clock, SystemClock
from shareddisk.device import BlockDevice, open_device
from shareddisk.drivers.base import KINDS, check_args
from shareddisk.errors import (
    BadLayout,
    ConflictError,
    DeviceError,
    DeviceTooSmall,
    FormatError,
    SectorSizeMismatch,
    ShareddiskError,
    SignatureFound,
    UsageError,
)
from shareddisk.format import volume as fmt
from shareddisk.format.record import MAGIC, SECTOR_SIZES, Kind, is_blank
from shareddisk.format.volume import MIB, VolumeState
from shareddisk.signatures import HEAD_BYTES, detect_signatures

DEFAULT_SLOTS = 64
MAX_SLOTS = 4096
_KIND_OFFSET = 6  # the record kind field (shareddisk/format/record.py)

Opener = Callable[..., BlockDevice]


class Table(NamedTuple):
    """A volume table header: the geometry every entry write depends on."""

    uuid: bytes
    sector_size: int
    slots: int
    data_offset: int
    capacity: int

    def to_params(self) -> dict[str, Any]:
        return {"uuid": self.uuid.hex(), "sector_size": self.sector_size, "slots": self.slots,
                "data_offset": self.data_offset, "capacity": self.capacity}

    @classmethod
    def from_params(cls, p: Any) -> Table:
        try:
            table = cls(bytes.fromhex(p["uuid"]), int(p["sector_size"]), int(p["slots"]),
                        int(p["data_offset"]), int(p["capacity"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"bad volume table in operation params: {exc!r}") from None
        if len(table.uuid) != fmt.UUID_BYTES:
            raise UsageError("bad volume table in operation params: uuid is not 16 bytes")
        return table

    def header(self) -> dict[str, Any]:
        return dict(device_uuid=self.uuid, sector_size=self.sector_size,
                    slot_count=self.slots, data_offset=self.data_offset,
                    capacity=self.capacity)


class Volume(NamedTuple):
    """One used entry of the table."""

    slot: int
    state: VolumeState
    name: str
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "slot": self.slot, "state": self.state.name.lower(),
                "offset": self.offset, "size": self.size}


@dataclass
class Contents:
    """What a data device holds: its table (None when blank) and its volumes by slot."""

    table: Table | None
    volumes: dict[int, Volume]

    def by_name(self, name: str) -> Volume | None:
        return next((v for v in self.volumes.values() if v.name == name), None)

    def sorted(self) -> list[Volume]:
        return sorted(self.volumes.values(), key=lambda v: v.offset)


def _overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    return a_start < b_end and b_start < a_end


# --- reading the table ---------------------------------------------------------


def read_contents(dev: BlockDevice) -> Contents:
    """Decode the volume table of ``dev``; refuse anything that is not ours.

    Blank (the first 64 KiB all zero, or only the entries of an interrupted
    format-table) gives ``Contents(None, {})``.  Damaged records raise a
    FormatError; foreign data a ConflictError (SignatureFound when known).
    """
    ss = dev.sector_size
    head_len = min(HEAD_BYTES, dev.size // ss * ss)
    if head_len < ss:
        raise DeviceTooSmall(f"{dev.path}: {dev.size} bytes is too small for a volume table",
                             needed=2 * MIB, available=dev.size)
    head = dev.read(0, head_len)
    if is_blank(head) or _interrupted_format(dev, head):
        return Contents(None, {})
    if head[:4] != MAGIC or int.from_bytes(head[_KIND_OFFSET:_KIND_OFFSET + 2], "little") \
            != Kind.VOLUME_TABLE:
        found = detect_signatures(head, b"", dev.size)
        if found:
            raise SignatureFound(
                f"{dev.path}: holds {found[0].description}; refusing to use it as a data "
                "device (wipe it first if it is really unused)", [s.name for s in found])
        first = next(i for i, b in enumerate(head) if b)
        raise ConflictError(f"{dev.path}: holds data that is not a volume table (first "
                            f"non-zero byte at offset {first}); refusing to use it as a data "
                            "device (wipe it first if it is really unused)")
    table = _decode_header(dev, head)
    raw = dev.read(table.sector_size, table.slots * table.sector_size)
    volumes: dict[int, Volume] = {}
    for slot in range(table.slots):
        where = (f"{dev.path}: volume table entry {slot} at byte "
                 f"{fmt.entry_offset(slot, table.sector_size)}")
        vol = _decode_entry(table, raw, slot, where)
        if vol is None:
            continue
        for other in volumes.values():
            if other.name == vol.name:
                raise BadLayout(f"{where}: name {vol.name!r} is also used by slot {other.slot}")
            if _overlaps(vol.offset, vol.end, other.offset, other.end):
                raise BadLayout(f"{where}: extent overlaps volume {other.name!r} "
                                f"(slot {other.slot})")
        volumes[slot] = vol
    return Contents(table, volumes)


def _interrupted_format(dev: BlockDevice, head: bytes) -> bool:
    """Sector 0 blank, then only free entries: a format-table that did not finish.

    Entries in use behind a blank header are a damaged table, not a blank
    device: refuse, rather than format over the map of existing volumes.
    """
    ss = dev.sector_size
    if not is_blank(head[:ss]):
        return False
    for table_ss in SECTOR_SIZES:
        if table_ss % ss or len(head) < 2 * table_ss or not is_blank(head[:table_ss]):
            continue
        try:
            fmt.CODEC.check_frame(head, table_ss)
        except FormatError:
            continue
        for at in range(table_ss, len(head) - table_ss + 1, table_ss):
            if is_blank(head[at:at + table_ss]):
                continue
            where = f"{dev.path}: volume table entry at byte {at}"
            try:
                e = fmt.CODEC.decode(head, at, where)
            except FormatError:
                return False  # something else follows: let the caller refuse it
            if e["state"] != VolumeState.FREE:
                raise BadLayout(f"{where} holds volume {e['name']!r} but the volume table "
                                "header at byte 0 is blank: the table is damaged; refusing "
                                "to format over it")
        return True
    return False


def _decode_header(dev: BlockDevice, head: bytes) -> Table:
    where = f"{dev.path}: volume table header at byte 0"
    h = fmt.TABLE_CODEC.decode(head, 0, where)
    table = Table(h["device_uuid"], h["sector_size"], h["slot_count"], h["data_offset"],
                  h["capacity"])
    if table.sector_size not in SECTOR_SIZES:
        raise BadLayout(f"{where}: sector size {table.sector_size} is not 512 or 4096")
    if table.sector_size % dev.sector_size:
        raise SectorSizeMismatch(f"{where}: table sector size {table.sector_size} is smaller "
                                 f"than the device's {dev.sector_size}")
    if not 1 <= table.slots <= MAX_SLOTS:
        raise BadLayout(f"{where}: slot count {table.slots} is not within 1..{MAX_SLOTS}")
    if table.data_offset % MIB or table.data_offset < (1 + table.slots) * table.sector_size:
        raise BadLayout(f"{where}: data_offset {table.data_offset} is not 1 MiB aligned "
                        "after the entries")
    if table.capacity % MIB or table.capacity < table.data_offset:
        raise BadLayout(f"{where}: capacity {table.capacity} is not 1 MiB aligned "
                        f"at or after data_offset {table.data_offset}")
    if table.capacity > dev.size:
        raise DeviceError(f"{dev.path}: the device has {dev.size} bytes, fewer than the "
                          f"{table.capacity} its volume table was made for")
    return table


def _decode_entry(table: Table, raw: bytes, slot: int, where: str) -> Volume | None:
    e = fmt.CODEC.decode(raw, slot * table.sector_size, where)
    if e["table_uuid"] != table.uuid:
        raise BadLayout(f"{where}: belongs to table {e['table_uuid'].hex()}, not "
                        f"{table.uuid.hex()} (a stale entry)")
    if e["slot"] != slot:
        raise BadLayout(f"{where}: holds the entry of slot {e['slot']} (a misdirected write)")
    if e["state"] not in VolumeState._value2member_map_:
        raise BadLayout(f"{where}: unknown state {e['state']}")
    state = VolumeState(e["state"])
    if state is VolumeState.FREE:
        if e["name"] or e["offset"] or e["size"]:
            raise BadLayout(f"{where}: a free entry with a name, offset or size")
        return None
    vol = Volume(slot, state, e["name"], e["offset"], e["size"])
    if not vol.name:
        raise BadLayout(f"{where}: a {state.name.lower()} entry without a name")
    if vol.offset % MIB or vol.size % MIB or vol.size == 0 or vol.offset < table.data_offset \
            or vol.end > table.capacity:
        raise BadLayout(f"{where}: extent [{vol.offset}, {vol.end}) is not 1 MiB aligned "
                        f"inside the data area [{table.data_offset}, {table.capacity})")
    return vol


# --- the driver ------------------------------------------------------------------


class ImageDriver:
    """Volumes on one data device; see the module docstring."""

    name = "image"

    def __init__(self, devices: list[str], *, slots: int = DEFAULT_SLOTS,
                 clock: Clock | None = None, opener: Opener = open_device,
                 new_uuid: Callable[[], uuidlib.UUID] = uuidlib.uuid4) -> None:
        if not devices:
            raise UsageError("image driver: no data device (set the data_devices attribute)")
        if len(devices) > 1:
            raise UsageError(f"image driver: {len(devices)} data devices given; more than one "
                             "data device per storage group is not supported yet")
        if not 1 <= slots <= MAX_SLOTS:
            raise UsageError(f"image driver: volume_slots {slots} is not within 1..{MAX_SLOTS}")
        self.devices = list(devices)
        self.path = devices[0]
        self.slots = slots
        self.clock = clock or SystemClock()
        self.opener = opener
        self.new_uuid = new_uuid  # a runtime's (shareddisk/runtime.py): each table's id
        self.last_error: str | None = None

    @classmethod
    def from_attributes(cls, attributes: dict, *, clock: Clock | None = None,
                        opener: Opener = open_device,
                        new_uuid: Callable[[], uuidlib.UUID] = uuidlib.uuid4) -> ImageDriver:
        devices = attributes.get("data_devices")
        if isinstance(devices, str):
            devices = [d for d in devices.split(",") if d]
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise UsageError("image driver: data_devices must be a list of device paths")
        slots = attributes.get("volume_slots", DEFAULT_SLOTS)
        try:
            slots = int(slots)
        except (TypeError, ValueError):
            raise UsageError(f"image driver: bad volume_slots {slots!r}") from None
        return cls(devices, slots=slots, clock=clock, opener=opener, new_uuid=new_uuid)

    def _open(self, writable: bool) -> BlockDevice:
        return self.opener(self.path, writable=writable)

    # -- operations: prepare ------------------------------------------------------

    def prepare(self, kind: str, args: dict) -> dict:
        args = check_args(kind, args)
        with self._open(writable=False) as dev:
            contents = read_contents(dev)
            table = contents.table
            params: dict[str, Any] = {"format_table": table is None}
            if table is None:
                table = self._new_table(dev)
        params["table"] = table.to_params()
        name = args["name"]
        current = contents.by_name(name)
        where = f"{self.path}: volume {name!r}"
        if kind == "create-volume":
            if current is not None:
                raise ConflictError(f"{where} already exists ({current.state.name.lower()}, "
                                    f"{current.size} bytes at offset {current.offset})")
            slot = next((s for s in range(table.slots) if s not in contents.volumes), None)
            if slot is None:
                raise ConflictError(f"{self.path}: the volume table is full "
                                    f"({table.slots} slots)")
            offset = _first_fit(table, contents, args["size"])
            if offset is None:
                raise ConflictError(f"{self.path}: no space for volume {name!r} of "
                                    f"{args['size']} bytes (largest free extent: "
                                    f"{_largest_free(table, contents)} bytes)")
            return dict(params, name=name, size=args["size"], slot=slot, offset=offset)
        if current is None:
            raise UsageError(f"{where}: no such volume")
        if current.state is not VolumeState.ACTIVE:
            raise ConflictError(f"{where} is {current.state.name.lower()}: an interrupted "
                                "operation must be finished first")
        params.update(name=name, slot=current.slot, offset=current.offset)
        if kind == "delete-volume":
            return dict(params, size=current.size)
        if kind == "rename-volume":
            new = args["new_name"]
            if contents.by_name(new) is not None:
                raise ConflictError(f"{self.path}: volume {new!r} already exists")
            return dict(params, size=current.size, new_name=new)
        assert kind == "resize-volume"
        size = args["size"]
        if size == current.size:
            raise UsageError(f"{where} already has {size} bytes")
        if size > current.size:
            limit = _free_after(table, contents, current)
            if current.offset + size > limit:
                raise ConflictError(f"{where}: cannot grow to {size} bytes: only "
                                    f"{limit - current.end} bytes are free right after it")
        return dict(params, old_size=current.size, size=size)

    def _new_table(self, dev: BlockDevice) -> Table:
        ss = dev.sector_size
        data_offset = fmt.data_offset_for(self.slots, ss)
        capacity = dev.size // MIB * MIB
        if capacity < data_offset + MIB:
            raise DeviceTooSmall(f"{dev.path}: {dev.size} bytes cannot hold a volume table "
                                 f"of {self.slots} slots and one 1 MiB volume "
                                 f"(needs {data_offset + MIB} bytes)",
                                 needed=data_offset + MIB, available=dev.size)
        return Table(self.new_uuid().bytes, ss, self.slots, data_offset, capacity)

    # -- operations: steps and apply ----------------------------------------------

    def steps(self, kind: str, params: dict) -> list[str]:
        first = ["format-table"] if params.get("format_table") else []
        if kind == "create-volume":
            return first + ["claim", "zero", "activate"]
        if kind == "delete-volume":
            return first + ["mark-deleting", "scrub", "release"]
        if kind == "resize-volume":
            try:
                grow = int(params["size"]) > int(params["old_size"])
            except (KeyError, TypeError, ValueError) as exc:
                raise UsageError(f"bad resize-volume params: {exc!r}") from None
            return first + (["zero-tail", "set-size"] if grow else ["set-size", "scrub-tail"])
        if kind == "rename-volume":
            return first + ["rename"]
        raise UsageError(f"unknown operation {kind!r} (choose from {', '.join(KINDS)})")

    def apply(self, kind: str, params: dict, step: str) -> None:
        if step not in self.steps(kind, params):
            raise UsageError(f"{kind} has no step {step!r}")
        table = Table.from_params(params.get("table"))
        with self._open(writable=True) as dev:
            if step == "format-table":
                self._format_table(dev, table)
            else:
                contents = self._expect_table(dev, table)
                _Step(self.path, dev, table, contents, params).run(step)
            dev.flush()

    def _expect_table(self, dev: BlockDevice, table: Table) -> Contents:
        contents = read_contents(dev)
        if contents.table != table:
            found = contents.table.uuid.hex() if contents.table else "no table"
            raise ConflictError(f"{self.path}: holds volume table {found}, the operation was "
                                f"prepared for table {table.uuid.hex()}")
        return contents

    def _format_table(self, dev: BlockDevice, table: Table) -> None:
        contents = read_contents(dev)
        if contents.table == table:
            return  # done before: the header is written last, after a flush
        if contents.table is not None:
            raise ConflictError(f"{self.path}: already holds volume table "
                                f"{contents.table.uuid.hex()}; the operation expected a blank "
                                f"device for table {table.uuid.hex()}")
        if table.sector_size % dev.sector_size or table.capacity > dev.size:
            raise DeviceError(f"{self.path}: the device (sector size {dev.sector_size}, "
                              f"{dev.size} bytes) does not fit table {table.uuid.hex()}")
        ss = table.sector_size
        for slot in range(table.slots):
            dev.write(fmt.entry_offset(slot, ss),
                      fmt.CODEC.encode(fmt.free_entry(table.uuid, slot), ss))
        dev.flush()
        dev.write(0, fmt.TABLE_CODEC.encode(table.header(), ss))

    # -- the resource side ----------------------------------------------------------

    def online(self) -> dict:
        """The definition, read through a writable open: operations will need to write."""
        return self._definition(writable=True)

    def offline(self) -> None:
        """Nothing to undo: the image driver sets up no mappings."""

    def monitor(self) -> bool:
        try:
            self.describe()
        except ShareddiskError as exc:
            self.last_error = str(exc)
            return False
        self.last_error = None
        return True

    def describe(self) -> dict:
        return self._definition(writable=False)

    def _definition(self, writable: bool) -> dict:
        with self._open(writable=writable) as dev:
            contents = read_contents(dev)
        return {"driver": self.name, "devices": list(self.devices),
                "table": contents.table.to_params() if contents.table else None,
                "volumes": [v.to_json() for v in contents.sorted()]}


# --- allocation ------------------------------------------------------------------


def _gaps(table: Table, contents: Contents) -> list[tuple[int, int]]:
    """Free extents [start, end) of the data area, in order."""
    gaps, at = [], table.data_offset
    for vol in contents.sorted():
        if vol.offset > at:
            gaps.append((at, vol.offset))
        at = max(at, vol.end)
    if table.capacity > at:
        gaps.append((at, table.capacity))
    return gaps


def _first_fit(table: Table, contents: Contents, size: int) -> int | None:
    return next((start for start, end in _gaps(table, contents) if end - start >= size), None)


def _largest_free(table: Table, contents: Contents) -> int:
    return max((end - start for start, end in _gaps(table, contents)), default=0)


def _free_after(table: Table, contents: Contents, vol: Volume) -> int:
    """Where the free space right after ``vol`` ends."""
    later = [v.offset for v in contents.volumes.values() if v.offset >= vol.end]
    return min(later, default=table.capacity)


# --- one step ----------------------------------------------------------------------


class _Step:
    """One entry or data step of an operation, with the checks that keep it safe."""

    def __init__(self, path: str, dev: BlockDevice, table: Table, contents: Contents,
                 params: dict) -> None:
        self.path, self.dev, self.table, self.contents = path, dev, table, contents
        try:
            self.name = str(params["name"])
            self.slot = int(params["slot"])
            self.offset = int(params["offset"])
            self.size = int(params["size"])
            self.old_size = int(params.get("old_size", self.size))
            self.new_name = str(params.get("new_name", self.name))
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"bad operation params: {exc!r}") from None
        if not 0 <= self.slot < table.slots:
            raise UsageError(f"bad operation params: slot {self.slot} is not in the table")
        self.current = contents.volumes.get(self.slot)

    def run(self, step: str) -> None:
        getattr(self, step.replace("-", "_"))()

    # -- checks --

    def _refuse(self, what: str) -> ConflictError:
        found = self.current
        held = (f"{found.name!r} ({found.state.name.lower()}, {found.size} bytes at "
                f"{found.offset})" if found else "nothing")
        return ConflictError(f"{self.path}: volume table slot {self.slot} holds {held}; "
                             f"step {what} expected volume {self.name!r}")

    def _expect(self, what: str, states: tuple[VolumeState, ...], sizes: tuple[int, ...],
                names: tuple[str, ...] | None = None, free_ok: bool = False) -> None:
        cur = self.current
        if cur is None:
            if free_ok:
                return
            raise self._refuse(what)
        if (cur.state not in states or cur.size not in sizes or cur.offset != self.offset
                or cur.name not in (names or (self.name,))):
            raise self._refuse(what)

    def _check_free(self, what: str, start: int, end: int) -> None:
        """[start, end) must not touch another slot's extent, and must be in the data area."""
        if start < self.table.data_offset or end > self.table.capacity:
            raise ConflictError(f"{self.path}: step {what}: [{start}, {end}) is outside the "
                                "data area")
        for vol in self.contents.volumes.values():
            if vol.slot != self.slot and _overlaps(start, end, vol.offset, vol.end):
                raise ConflictError(f"{self.path}: step {what}: [{start}, {end}) overlaps "
                                    f"volume {vol.name!r} (slot {vol.slot})")

    # -- writes --

    def _write_entry(self, state: VolumeState, size: int, name: str | None = None) -> None:
        ss = self.table.sector_size
        values = fmt.entry(self.table.uuid, self.slot, state, name or self.name,
                           self.offset, size)
        self.dev.write(fmt.entry_offset(self.slot, ss), fmt.CODEC.encode(values, ss))

    def _write_free(self) -> None:
        ss = self.table.sector_size
        self.dev.write(fmt.entry_offset(self.slot, ss),
                       fmt.CODEC.encode(fmt.free_entry(self.table.uuid, self.slot), ss))

    def _zero(self, start: int, end: int) -> None:
        zeros = bytes(MIB)
        for at in range(start, end, MIB):
            self.dev.write(at, zeros)

    # -- create --

    def claim(self) -> None:
        self._expect("claim", (VolumeState.CREATING,), (self.size,), free_ok=True)
        other = self.contents.by_name(self.name)
        if other is not None and other.slot != self.slot:
            raise ConflictError(f"{self.path}: volume {self.name!r} already exists "
                                f"(slot {other.slot})")
        self._check_free("claim", self.offset, self.offset + self.size)
        self._write_entry(VolumeState.CREATING, self.size)

    def zero(self) -> None:
        self._expect("zero", (VolumeState.CREATING,), (self.size,))
        self._zero(self.offset, self.offset + self.size)

    def activate(self) -> None:
        self._expect("activate", (VolumeState.CREATING, VolumeState.ACTIVE), (self.size,))
        self._write_entry(VolumeState.ACTIVE, self.size)

    # -- delete --

    def mark_deleting(self) -> None:
        self._expect("mark-deleting", (VolumeState.ACTIVE, VolumeState.DELETING), (self.size,))
        self._write_entry(VolumeState.DELETING, self.size)

    def scrub(self) -> None:
        self._expect("scrub", (VolumeState.DELETING,), (self.size,))
        self._zero(self.offset, self.offset + self.size)

    def release(self) -> None:
        self._expect("release", (VolumeState.DELETING,), (self.size,), free_ok=True)
        self._write_free()

    # -- resize --

    def zero_tail(self) -> None:
        """Grow, first step: zero the space the volume will take (not yet in its entry)."""
        self._expect("zero-tail", (VolumeState.ACTIVE,), (self.old_size,))
        self._check_free("zero-tail", self.offset + self.old_size, self.offset + self.size)
        self._zero(self.offset + self.old_size, self.offset + self.size)

    def set_size(self) -> None:
        self._expect("set-size", (VolumeState.ACTIVE,), (self.old_size, self.size))
        self._check_free("set-size", self.offset, self.offset + max(self.size, self.old_size))
        self._write_entry(VolumeState.ACTIVE, self.size)

    def scrub_tail(self) -> None:
        """Shrink, second step: zero what the volume gave up (only once its entry is smaller)."""
        self._expect("scrub-tail", (VolumeState.ACTIVE,), (self.size,))
        self._check_free("scrub-tail", self.offset + self.size, self.offset + self.old_size)
        self._zero(self.offset + self.size, self.offset + self.old_size)

    # -- rename --

    def rename(self) -> None:
        self._expect("rename", (VolumeState.ACTIVE,), (self.size,), (self.name, self.new_name))
        other = self.contents.by_name(self.new_name)
        if other is not None and other.slot != self.slot:
            raise ConflictError(f"{self.path}: volume {self.new_name!r} already exists "
                                f"(slot {other.slot})")
        self._write_entry(VolumeState.ACTIVE, self.size, self.new_name)
