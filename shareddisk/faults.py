"""A fault-injecting device: the disk misbehaving on purpose.

Self-fencing, quorum and failover are only as good as their behaviour when
the disk fails, and real disks fail in more ways than "raises an error".
:class:`FaultyDevice` wraps any :class:`~shareddisk.blockdevice.BlockDevice` and,
following its current :class:`FaultRules`, injects:

``error``    the I/O raises DeviceError like a real EIO (``op`` read, write or both);
``latency``  the I/O sleeps ``seconds`` on the injected clock first, every time;
``stall``    one long hang: sleep ``seconds`` once (``count`` defaults to 1), or
             with ``until`` every I/O waits until that monotonic time;
``torn``     a write of more than ``sectors`` sectors writes only the first
             ``sectors`` of them, then raises (or returns as if all went well
             with ``silent``); sectors are atomic, as on real disks;
``lost``     the write reports success; the sectors in the rule's range are not written;
``stale``    a read returns the sectors in range as this device wrote them at
             a snapshot time: ``at`` (monotonic), ``lag`` seconds ago, or, with
             neither, the moment the rule first fired (a frozen view);
``loss``     the whole disk is gone: every read, write and flush fails
             (``op``, ``offset`` and ``length`` are ignored).

Every rule may also have ``offset`` and ``length`` (bytes: the rule applies
to I/O overlapping that range; default the whole device), ``probability``
(0..1, drawn from a seeded ``random.Random`` so a simulation seed replays the
same faults) and ``count`` (fire at most that many times). Rules fire in
order; delays add up; an error or loss wins over torn/lost/stale; the first
fired torn/lost rule of a write (or stale rule of a read) decides it.
Counters are kept per (position, rule), so changing a rule re-arms it.

Stale reads know only what went through this wrapper: the first small write
to a sector (at most ``HISTORY_MAX_WRITE`` bytes) reads its previous content
once; later writes keep their own copies, ``HISTORY_VERSIONS`` per sector.
A snapshot older than the history returns the oldest version kept; sectors
never written here read through. Bulk writes (larger) drop the history of
their sectors, so ``init`` on a faulty device does not copy the whole area.

Across processes
----------------
With ``SHAREDDISK_FAULTS=/path/faults.json`` in the environment,
:func:`shareddisk.device.open_device` wraps every device it opens in a
FaultyDevice whose rules come from that file, so a test can make a running
daemon's disk fail by rewriting the file. The file is checked with one
``os.stat`` at most every ``RECHECK_SECONDS`` and re-read when it changed
(inode, mtime or size); write it atomically (temp file + ``os.replace``, as
:func:`write_rules_file` does). A missing file means no faults; an unreadable
or invalid one is logged and the previous rules stay. The format::

    {
      "devices": {
        "/abs/or/relative/path/to/disk1.img": {
          "seed": 7,
          "faults": [
            {"kind": "loss"},
            {"kind": "error", "op": "write", "offset": 4096, "length": 512,
             "probability": 0.5, "count": 3},
            {"kind": "latency", "seconds": 0.02},
            {"kind": "stall", "seconds": 2.0, "op": "write"},
            {"kind": "stall", "until": 12345.6},
            {"kind": "torn", "sectors": 1, "silent": true},
            {"kind": "lost", "offset": 4096, "length": 65536},
            {"kind": "stale", "lag": 1.5}
          ]
        }
      }
    }

Devices are matched by the path the process opened, or by realpath. ``op``
is ``"read"``, ``"write"`` or ``"both"`` (the default for error, latency and
stall; torn and lost are write faults, stale a read fault). Monotonic times
(``until``, ``at``) are values of the injected clock (``SystemClock``:
CLOCK_BOOTTIME, ``time.clock_gettime(time.CLOCK_BOOTTIME)``), which on Linux
are the same in every process of the host.
"""

from __future__ import annotations

import errno
import json
import math
import os
import random
import tempfile
import threading
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, Self

from shareddisk.blockdevice import BlockDevice, BytesLike, errno_text
from shareddisk.clock import Clock, SystemClock
from shareddisk.errors import DeviceError, UsageError
from shareddisk.loggers import logger

__all__ = [
    "FAULTS_ENV",
    "Fault",
    "FaultRules",
    "FaultyDevice",
    "KINDS",
    "NO_FAULTS",
    "RulesFile",
    "wrap_from_env",
    "write_rules_file",
]

log = logger("shareddisk.faults")

FAULTS_ENV = "SHAREDDISK_FAULTS"
RECHECK_SECONDS = 0.05
"""How often (at most) a rules file is stat()ed; tests may set 0."""
HISTORY_VERSIONS = 64
"""Versions kept per written sector for stale reads (6.4 s of heartbeats at 0.1 s)."""
HISTORY_MAX_WRITE = 64 * 1024
"""Writes larger than this are bulk writes and are not kept for stale reads."""

KINDS = ("error", "latency", "stall", "torn", "lost", "stale", "loss")
OPS = ("read", "write", "both")
_WRITE_ONLY = ("torn", "lost")
_READ_ONLY = ("stale",)


@dataclass(frozen=True)
class Fault:
    """One rule; see the module docstring for what each field means per kind."""

    kind: str
    op: str = "both"
    offset: int = 0
    length: int | None = None
    probability: float = 1.0
    count: int | None = None
    seconds: float = 0.0
    until: float | None = None
    sectors: int = 1
    silent: bool = False
    at: float | None = None
    lag: float | None = None

    def __post_init__(self) -> None:
        def bad(why: str) -> UsageError:
            return UsageError(f"fault rule {self.kind!r}: {why}")

        if self.kind not in KINDS:
            raise UsageError(f"unknown fault kind {self.kind!r} (choose from {', '.join(KINDS)})")
        if self.op not in OPS:
            raise bad(f"op {self.op!r} is not one of {', '.join(OPS)}")
        if self.kind in _WRITE_ONLY and self.op == "read":
            raise bad("is a write fault; op 'read' makes no sense")
        if self.kind in _READ_ONLY and self.op == "write":
            raise bad("is a read fault; op 'write' makes no sense")
        if self.offset < 0 or (self.length is not None and self.length < 0):
            raise bad(f"offset {self.offset} / length {self.length} must not be negative")
        if not 0.0 <= self.probability <= 1.0:
            raise bad(f"probability {self.probability} is not within 0..1")
        if self.count is not None and self.count < 0:
            raise bad(f"count {self.count} is negative")
        if self.seconds < 0 or not math.isfinite(self.seconds):
            raise bad(f"seconds {self.seconds} must be finite and not negative")
        if self.kind == "latency" and self.seconds <= 0:
            raise bad("needs seconds > 0")
        if self.kind == "stall" and (self.seconds > 0) == (self.until is not None):
            raise bad("needs exactly one of seconds (> 0) and until")
        if self.sectors < 0:
            raise bad(f"sectors {self.sectors} is negative")
        if self.at is not None and self.lag is not None:
            raise bad("give at most one of at and lag")
        if self.lag is not None and self.lag < 0:
            raise bad(f"lag {self.lag} is negative")

    @property
    def limit(self) -> int | None:
        """How many times the rule may fire: a stall of ``seconds`` hangs once."""
        if self.count is None and self.kind == "stall" and self.until is None:
            return 1
        return self.count

    def applies(self, op: str, offset: int, length: int) -> bool:
        if self.kind == "loss":
            return True
        if self.op != "both" and self.op != op:
            return False
        if self.kind in _WRITE_ONLY and op != "write" or self.kind in _READ_ONLY and op != "read":
            return False
        return self.overlaps(offset, length)

    def overlaps(self, offset: int, length: int) -> bool:
        end = math.inf if self.length is None else self.offset + self.length
        return offset < end and self.offset < offset + max(length, 1)

    def sector_in_range(self, start: int, sector_size: int) -> bool:
        return self.overlaps(start, sector_size)

    def to_dict(self) -> dict[str, Any]:
        """Only the fields that differ from the defaults (kind always)."""
        defaults = Fault("error")
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "kind" and value != getattr(defaults, f.name):
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        if not isinstance(data, Mapping) or "kind" not in data:
            raise UsageError(f"fault rule {data!r}: an object with a 'kind' is needed")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"fault rule {data.get('kind')!r}: unknown keys {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:  # a value of the wrong type compared with a number
            raise UsageError(f"fault rule {data.get('kind')!r}: {exc}") from None


@dataclass(frozen=True)
class FaultRules:
    """The faults a device currently has; ``seed`` seeds the probability draws."""

    faults: tuple[Fault, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "faults", tuple(self.faults))

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "faults": [f.to_dict() for f in self.faults]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        if not isinstance(data, Mapping):
            raise UsageError(f"fault rules must be an object, not {type(data).__name__}")
        unknown = sorted(set(data) - {"seed", "faults"})
        if unknown:
            raise UsageError(f"fault rules: unknown keys {', '.join(unknown)}")
        faults = data.get("faults", [])
        if not isinstance(faults, list):
            raise UsageError("fault rules: 'faults' must be a list")
        seed = data.get("seed", 0)
        if not isinstance(seed, int):
            raise UsageError(f"fault rules: seed {seed!r} is not an integer")
        return cls(tuple(Fault.from_dict(f) for f in faults), seed)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Self:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise UsageError(f"fault rules: bad JSON: {exc}") from None


NO_FAULTS = FaultRules()


@dataclass
class _History:
    """Versions of one sector as written here: (monotonic time, bytes or None if unknown)."""

    versions: list[tuple[float, bytes | None]] = field(default_factory=list)

    def at(self, t: float) -> bytes | None:
        found = self.versions[0][1]  # older than the history: the oldest kept
        for when, data in self.versions:
            if when > t:
                break
            found = data
        return found


class FaultyDevice:
    """A BlockDevice that delegates to ``inner`` and injects the current rules' faults."""

    def __init__(self, inner: BlockDevice, rules: FaultRules | Callable[[], FaultRules],
                 clock: Clock | None = None, *, rng: random.Random | None = None) -> None:
        self.inner = inner
        self._rules = rules
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random(self.rules.seed)
        self._lock = threading.Lock()
        self._fired: dict[tuple[int, Fault], int] = {}
        self._first_fired: dict[tuple[int, Fault], float] = {}
        self._history: dict[int, _History] = {}  # sector offset -> versions

    # -- the BlockDevice attributes, delegated --------------------------------

    @property
    def path(self) -> str:
        return self.inner.path

    @property
    def sector_size(self) -> int:
        return self.inner.sector_size

    @property
    def size(self) -> int:
        return self.inner.size

    @property
    def io_mode(self) -> str:
        return self.inner.io_mode

    @property
    def writable(self) -> bool:
        return self.inner.writable

    def __getattr__(self, name: str) -> Any:
        """Anything else (``closed``, a MemoryDevice's ``data``) comes from the inner device."""
        if name == "inner":  # not set yet: avoid recursing during __init__
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def rules(self) -> FaultRules:
        return self._rules() if callable(self._rules) else self._rules

    @rules.setter
    def rules(self, rules: FaultRules | Callable[[], FaultRules]) -> None:
        self._rules = rules

    def fired(self, index: int, fault: Fault) -> int:
        """How many times rule ``index`` (with this content) has fired."""
        return self._fired.get((index, fault), 0)

    # -- I/O --------------------------------------------------------------------

    def read(self, offset: int, length: int) -> bytes:
        fired = self._decide("read", offset, length)
        if not fired:
            return self.inner.read(offset, length)
        self._delay(fired)
        self._raise_if_failed(fired, "read", offset, length)
        stale = next((f for f in fired if f[1].kind == "stale"), None)
        data = self.inner.read(offset, length)
        if stale is None:
            return data
        return self._stale(stale, offset, data)

    def write(self, offset: int, data: BytesLike) -> None:
        with memoryview(data) as view, view.cast("B") as src:
            payload = bytes(src)
        length = len(payload)
        fired = self._decide("write", offset, length)
        if fired:
            self._delay(fired)
            self._raise_if_failed(fired, "write", offset, length)
        change = next((f for f in fired if f[1].kind in _WRITE_ONLY), None)
        if change is None:
            self._record_and_write(offset, payload)
        elif change[1].kind == "lost":
            self._write_lost(change[1], offset, payload)
        else:
            self._write_torn(change[1], offset, payload)

    def flush(self) -> None:
        if any(f.kind == "loss" for f in self.rules.faults) and not self._closed_inner():
            raise DeviceError(f"{self.path}: flush failed: {_EIO} (injected fault: disk lost)")
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FaultyDevice {self.inner!r} faults={len(self.rules.faults)}>"

    # -- pieces -----------------------------------------------------------------

    def _closed_inner(self) -> bool:
        return bool(getattr(self.inner, "closed", False))

    def _valid(self, offset: int, length: int) -> bool:
        """Bad requests go straight to the inner device, which raises the real error."""
        s = self.sector_size
        return (not self._closed_inner() and offset >= 0 and length >= 0
                and offset % s == 0 and length % s == 0 and offset + length <= self.size)

    def _decide(self, op: str, offset: int, length: int) -> list[tuple[int, Fault]]:
        """The rules that fire for this I/O (counts and random draws taken under the lock)."""
        rules = self.rules
        if not rules.faults or not self._valid(offset, length) or length == 0:
            return []
        if op == "write" and not self.writable:
            return []
        fired = []
        with self._lock:
            now = self.clock.monotonic()
            for index, fault in enumerate(rules.faults):
                if not fault.applies(op, offset, length):
                    continue
                key = (index, fault)
                limit = fault.limit
                if limit is not None and self._fired.get(key, 0) >= limit:
                    continue
                if fault.probability < 1.0 and self.rng.random() >= fault.probability:
                    continue
                self._fired[key] = self._fired.get(key, 0) + 1
                self._first_fired.setdefault(key, now)
                fired.append(key)
        return fired

    def _delay(self, fired: list[tuple[int, Fault]]) -> None:
        for _, fault in fired:
            if fault.kind == "latency" or fault.kind == "stall" and fault.until is None:
                self.clock.sleep(fault.seconds)
            elif fault.kind == "stall":
                assert fault.until is not None
                self.clock.sleep(max(0.0, fault.until - self.clock.monotonic()))

    def _raise_if_failed(self, fired: list[tuple[int, Fault]], op: str, offset: int,
                         length: int) -> None:
        for _, fault in fired:
            if fault.kind in ("loss", "error"):
                what = "disk lost" if fault.kind == "loss" else f"{op} error"
                raise DeviceError(f"{self.path}: {op} at offset {offset} length {length} "
                                  f"failed: {_EIO} (injected fault: {what})")

    def _stale(self, key: tuple[int, Fault], offset: int, current: bytes) -> bytes:
        fault = key[1]
        if fault.at is not None:
            snapshot = fault.at
        elif fault.lag is not None:
            snapshot = self.clock.monotonic() - fault.lag
        else:
            snapshot = self._first_fired[key]
        s = self.sector_size
        out = bytearray(current)
        with self._lock:
            for start in range(offset, offset + len(current), s):
                history = self._history.get(start)
                if history is None or not fault.sector_in_range(start, s):
                    continue
                old = history.at(snapshot)
                if old is not None:
                    out[start - offset:start - offset + s] = old
        return bytes(out)

    def _record_and_write(self, offset: int, payload: bytes) -> None:
        """Write through, keeping the sectors' versions for stale reads."""
        if not payload or not self._valid(offset, len(payload)) or not self.writable:
            self.inner.write(offset, payload)
            return
        s = self.sector_size
        if len(payload) > HISTORY_MAX_WRITE:
            self.inner.write(offset, payload)
            with self._lock:
                for start in range(offset, offset + len(payload), s):
                    self._history.pop(start, None)
            return
        missing = [start for start in range(offset, offset + len(payload), s)
                   if start not in self._history]
        before = self._read_quietly(offset, len(payload)) if missing else None
        self.inner.write(offset, payload)
        now = self.clock.monotonic()
        with self._lock:
            for start in range(offset, offset + len(payload), s):
                history = self._history.get(start)
                if history is None:
                    old = None if before is None else before[start - offset:start - offset + s]
                    history = self._history[start] = _History([(-math.inf, old)])
                history.versions.append((now, payload[start - offset:start - offset + s]))
                del history.versions[:-HISTORY_VERSIONS]

    def _read_quietly(self, offset: int, length: int) -> bytes | None:
        try:
            return self.inner.read(offset, length)
        except DeviceError:
            return None  # unknown: stale reads of these sectors read through

    def _write_lost(self, fault: Fault, offset: int, payload: bytes) -> None:
        """Write only the runs of sectors outside the rule's range; report success."""
        s = self.sector_size
        run_start: int | None = None
        for start in range(offset, offset + len(payload) + s, s):
            keep = start < offset + len(payload) and not fault.sector_in_range(start, s)
            if keep and run_start is None:
                run_start = start
            elif not keep and run_start is not None:
                self._record_and_write(run_start, payload[run_start - offset:start - offset])
                run_start = None

    def _write_torn(self, fault: Fault, offset: int, payload: bytes) -> None:
        total = len(payload) // self.sector_size
        if fault.sectors >= total:
            self._record_and_write(offset, payload)  # nothing to tear
            return
        if fault.sectors:
            self._record_and_write(offset, payload[:fault.sectors * self.sector_size])
        if not fault.silent:
            raise DeviceError(f"{self.path}: write at offset {offset} length {len(payload)} "
                              f"failed after {fault.sectors} of {total} sectors: {_EIO} "
                              f"(injected fault: torn write)")


_EIO = errno_text(OSError(errno.EIO, os.strerror(errno.EIO)))


# -- rules from a file, across processes ------------------------------------------


class RulesFile:
    """The rules for one device from a JSON rules file, re-read when the file changes.

    Called once per I/O, so it costs at most one ``os.stat`` every
    ``RECHECK_SECONDS`` and otherwise nothing.
    """

    def __init__(self, path: str, device_path: str, clock: Clock | None = None) -> None:
        self.path = path
        self.device_path = device_path
        self._device_real = os.path.realpath(device_path)
        self.clock = clock or SystemClock()
        self._checked: float | None = None
        self._key: tuple[int, int, int] | None = None
        self._rules = NO_FAULTS

    def __call__(self) -> FaultRules:
        now = self.clock.monotonic()
        if self._checked is not None and now - self._checked < RECHECK_SECONDS:
            return self._rules
        self._checked = now
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._set(None, NO_FAULTS)
            return self._rules
        except OSError as exc:
            log.warning("event=faults-unreadable file=%s error=%r", self.path, str(exc))
            return self._rules
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key != self._key:
            try:
                with open(self.path, encoding="utf-8") as f:
                    rules = self.select(json.load(f))
            except (OSError, ValueError, UsageError) as exc:
                # keep the old rules; _key stays old, so the next check retries
                log.warning("event=faults-invalid file=%s error=%r", self.path, str(exc))
                return self._rules
            self._set(key, rules)
        return self._rules

    def select(self, data: Any) -> FaultRules:
        """This device's rules from the whole file's content."""
        if not isinstance(data, dict) or not isinstance(data.get("devices", {}), dict):
            raise UsageError("a faults file is an object with a 'devices' object")
        devices = data.get("devices", {})
        unknown = sorted(set(data) - {"devices"})
        if unknown:
            raise UsageError(f"faults file: unknown keys {', '.join(unknown)}")
        for name, rules in devices.items():
            if name == self.device_path or os.path.realpath(name) == self._device_real:
                return FaultRules.from_dict(rules)
        return NO_FAULTS

    def _set(self, key: tuple[int, int, int] | None, rules: FaultRules) -> None:
        if rules != self._rules:
            log.info("event=faults-changed device=%s faults=%s", self.device_path,
                     ",".join(f.kind for f in rules.faults) or "none")
        self._key, self._rules = key, rules


def wrap_from_env(device: BlockDevice, path: str | None = None) -> BlockDevice:
    """``device`` wrapped with rules from the ``SHAREDDISK_FAULTS`` file (if that is set)."""
    path = path if path is not None else os.environ.get(FAULTS_ENV)
    if not path:
        return device
    return FaultyDevice(device, RulesFile(path, device.path))


def write_rules_file(path: str | os.PathLike[str],
                     devices: Mapping[str, FaultRules]) -> None:
    """Write a faults file atomically (temp file + rename): readers never see half of it."""
    path = os.fspath(path)
    content = json.dumps({"devices": {name: rules.to_dict() for name, rules in devices.items()}},
                         indent=2, sort_keys=True)
    fd, tmp = tempfile.mkstemp(prefix=".faults-", dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise

