"""Fuzz the volume table (shareddisk/format/volume.py) and the image driver on top of it.

* both record kinds round-trip, and the struct fast path agrees with construct;
* reading a table whose bytes were mutated raises only ShareddiskError, and a
  table that still reads is consistent (extents aligned, inside the data
  area, not overlapping; names unique);
* any sequence of operations keeps the table equal to a simple model and a
  new volume's bytes (or a grown tail) read as zeros.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shareddisk.clock import FakeClock
from shareddisk.crc import crc32c
from shareddisk.device import MemoryDevice
from shareddisk.drivers.image import ImageDriver, read_contents
from shareddisk.errors import ShareddiskError
from shareddisk.format import volume as fmt
from shareddisk.format.record import SECTOR_SIZES
from shareddisk.format.volume import MIB, VolumeState

SLOTS = 6
DEVICE = 12 * MIB


def budget(fraction: float) -> settings:
    return settings(max_examples=max(10, int(settings().max_examples * fraction)))


class SharedMemory(MemoryDevice):
    """A memory device that survives the driver's open/close per call."""

    def __call__(self, path: str, *, writable: bool = True) -> SharedMemory:
        return self

    def close(self) -> None:
        pass


def driver_on(dev: SharedMemory) -> ImageDriver:
    return ImageDriver(["<fuzz>"], slots=SLOTS, clock=FakeClock(), opener=dev)


def run(driver: ImageDriver, kind: str, args: dict) -> bool:
    """Run one operation to the end; False when prepare refused it."""
    try:
        params = driver.prepare(kind, args)
    except ShareddiskError:
        return False
    for step in driver.steps(kind, params):
        driver.apply(kind, params, step)
    return True


names = st.sampled_from(["a", "b", "c", "d"])
text = st.text(max_size=64).map(lambda s: s.encode()[:64].decode("utf-8", "ignore").rstrip("\0"))
u32, u64 = st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)


@budget(0.5)
@given(uuid=st.binary(min_size=16, max_size=16), ss=st.sampled_from(SECTOR_SIZES),
       header=st.tuples(u32, u32, u64, u64),
       entry=st.tuples(u32, st.integers(0, 255), st.integers(0, 255), st.integers(0, 65535),
                       u64, u64, text))
def test_both_records_round_trip(uuid, ss, header, entry):
    h = dict(device_uuid=uuid, sector_size=header[0], slot_count=header[1],
             data_offset=header[2], capacity=header[3])
    buf = fmt.TABLE_CODEC.encode(h, ss)
    assert len(buf) == ss
    assert fmt.TABLE_CODEC.decode(buf) == fmt.TABLE_CODEC.decode_reference(buf) == h
    e = dict(table_uuid=uuid, slot=entry[0], state=entry[1], flags=entry[2],
             reserved=entry[3], offset=entry[4], size=entry[5], name=entry[6])
    buf = fmt.CODEC.encode(e, ss)
    assert fmt.CODEC.decode(buf) == fmt.CODEC.decode_reference(buf) == e


def _populated() -> SharedMemory:
    dev = SharedMemory(DEVICE)
    driver = driver_on(dev)
    for name, size in (("a", 2 * MIB), ("b", MIB), ("c", 3 * MIB)):
        assert run(driver, "create-volume", {"name": name, "size": size})
    return dev


_TEMPLATE = bytes(_populated().data[:(1 + SLOTS) * 512])


def check_consistent(dev: MemoryDevice) -> dict[str, tuple[int, int]]:
    """The table's volumes as name -> (offset, size), after checking the invariants."""
    contents = read_contents(dev)
    if contents.table is None:
        return {}
    table = contents.table
    vols = contents.sorted()
    for vol in vols:
        assert vol.offset % MIB == 0 and vol.size % MIB == 0 and vol.size > 0
        assert table.data_offset <= vol.offset and vol.end <= table.capacity
    for left, right in zip(vols, vols[1:]):
        assert left.end <= right.offset
    assert len({v.name for v in vols}) == len(vols)
    return {v.name: (v.offset, v.size) for v in vols}


@budget(1.0)
@given(edits=st.lists(st.tuples(st.integers(0, len(_TEMPLATE) - 1), st.integers(0, 255)),
                      min_size=1, max_size=6),
       recrc=st.booleans())
def test_mutated_table_reads_consistently_or_raises_our_error(edits, recrc):
    dev = SharedMemory(DEVICE, data=_TEMPLATE)
    for offset, value in edits:
        dev.data[offset] = value
    if recrc:  # fix the checksums, so the mutated values reach the table checks
        for sector in range(1 + SLOTS):
            codec = fmt.TABLE_CODEC if sector == 0 else fmt.CODEC
            at = sector * 512
            if dev.data[at:at + 4] == b"SHDK":
                crc = crc32c(bytes(dev.data[at:at + codec.crc_offset]))
                dev.data[at + codec.crc_offset:at + codec.size] = crc.to_bytes(4, "little")
    try:
        check_consistent(dev)
    except ShareddiskError:
        pass


NAMES = ("a", "b", "c", "d")
operations = st.lists(st.tuples(
    st.sampled_from(["create-volume", "delete-volume", "resize-volume", "rename-volume"]),
    st.integers(0, 7),   # which name: for delete/resize/rename mostly an existing volume
    st.integers(1, 4),   # size in MiB, or which new name
), min_size=2, max_size=14)


@budget(0.5)
@given(ops=operations)
def test_operation_sequences_match_a_model(ops):
    dev = SharedMemory(DEVICE)
    dev.data[:] = b"\xee" * DEVICE
    dev.data[:64 * 1024] = bytes(64 * 1024)  # blank head, garbage data area
    driver = driver_on(dev)
    model: dict[str, int] = {}
    for kind, which, arg in ops:
        existing = sorted(model)
        if kind == "create-volume" or which >= 6 or not existing:
            name = NAMES[which % len(NAMES)]
        else:
            name = existing[which % len(existing)]
        size = (1 + arg % 2 if kind == "create-volume" else arg) * MIB
        new_name = NAMES[arg % len(NAMES)]
        args = {"create-volume": {"name": name, "size": size},
                "delete-volume": {"name": name},
                "resize-volume": {"name": name, "size": size},
                "rename-volume": {"name": name, "new_name": new_name}}[kind]
        before = check_consistent(dev)
        done = run(driver, kind, args)
        after = check_consistent(dev)
        if kind == "create-volume":
            if name in model:
                assert not done, f"created a second volume {name!r}"
            if done:
                model[name] = size
                offset = after[name][0]
                assert dev.data[offset:offset + size] == bytes(size)
        elif name not in model:
            assert not done, f"{kind} of a missing volume {name!r} ran"
        elif kind == "delete-volume":
            assert done
            del model[name]
        elif kind == "resize-volume":
            if done:
                old = model[name]
                model[name] = size
                offset = after[name][0]
                assert offset == before[name][0]
                if size > old:
                    assert dev.data[offset + old:offset + size] == bytes(size - old)
        elif done:
            assert new_name not in model
            model[new_name] = model.pop(name)
        assert {n: s for n, (_, s) in after.items()} == model
    assert all(v["state"] == VolumeState.ACTIVE.name.lower()
               for v in driver.describe()["volumes"])
