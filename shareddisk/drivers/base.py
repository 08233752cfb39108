"""The storage driver interface: what agents and the operation executor call.

A driver owns the storage behind one resource (a "storage group").  An
operation (create / delete / resize / rename volume) runs in three phases so
that a successor can finish it after a crash (shareddisk/operations.py):

1. ``prepare(kind, args)`` validates the request against the current state
   and fixes every decision (which slot, which offset, a new table's uuid)
   into a JSON-able ``params`` dict.  It writes nothing.
2. ``steps(kind, params)`` names the steps, as a pure function of its
   arguments: the successor recomputes nothing, it replays the logged list.
3. ``apply(kind, params, step)`` does one step.  Steps are idempotent: run
   again, or run after a crash at any point inside them, they leave the same
   bytes as one clean run.

``online`` / ``offline`` / ``monitor`` / ``describe`` serve the storage
resource agent.  Drivers: ``image`` (shareddisk/drivers/image.py, the
default) and ``exec`` (shareddisk/drivers/exec.py, user scripts).

Operation arguments (checked here, the same for every driver):

    create-volume  {"name": str, "size": int}
    delete-volume  {"name": str}
    resize-volume  {"name": str, "size": int}
    rename-volume  {"name": str, "new_name": str}

Names follow resource names (1-63 letters, digits, ``_ . -``, starting with
a letter or digit); sizes are bytes, a positive multiple of 1 MiB, never
rounded.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Protocol, runtime_checkable

from shareddisk.clock import Clock, SystemClock
from shareddisk.device import gated_opener, open_device
from shareddisk.errors import UsageError

KINDS = ("create-volume", "delete-volume", "resize-volume", "rename-volume")
MIB = 1 << 20
VOLUME_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_ARGS = {
    "create-volume": ("name", "size"),
    "delete-volume": ("name",),
    "resize-volume": ("name", "size"),
    "rename-volume": ("name", "new_name"),
}
DRIVERS = ("image", "exec")


@runtime_checkable
class Driver(Protocol):
    name: str
    """``"image"`` or ``"exec"``."""

    def prepare(self, kind: str, args: dict) -> dict:
        """Validate a request and fix every decision into JSON-able params; writes nothing.

        Raises UsageError (bad args), ConflictError (name exists, no space),
        DeviceError (device missing or unreadable).
        """

    def steps(self, kind: str, params: dict) -> list[str]:
        """Step names in order, a pure function of (kind, params)."""

    def apply(self, kind: str, params: dict, step: str) -> None:
        """Do one step, idempotently."""

    def online(self) -> dict:
        """Check the devices are present and readable; return the group definition."""

    def offline(self) -> None:
        """Release whatever online() set up."""

    def monitor(self) -> bool:
        """True while the storage is healthy."""

    def describe(self) -> dict:
        """The definition (driver, devices, volumes) for the local definition file."""


def check_volume_name(name: Any, what: str = "volume name") -> str:
    if not isinstance(name, str) or not VOLUME_NAME_RE.match(name):
        raise UsageError(f"bad {what} {name!r}: use 1-63 letters, digits, '_', '.', '-', "
                         "starting with a letter or digit")
    return name


def check_size(size: Any) -> int:
    """A volume size in bytes: a positive multiple of 1 MiB (refused, never rounded)."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise UsageError(f"bad volume size {size!r}: give a whole number of bytes")
    if size <= 0:
        raise UsageError(f"bad volume size {size}: it must be positive")
    if size % MIB:
        raise UsageError(f"volume size {size} bytes is not a multiple of 1 MiB "
                         f"({MIB} bytes); sizes are not rounded")
    return size


def check_args(kind: str, args: Any) -> dict:
    """The arguments of ``kind``, checked; unknown kinds or keys are usage errors."""
    if kind not in _ARGS:
        raise UsageError(f"unknown operation {kind!r} (choose from {', '.join(KINDS)})")
    if not isinstance(args, dict):
        raise UsageError(f"{kind}: arguments must be an object, not {type(args).__name__}")
    wanted = _ARGS[kind]
    missing = [k for k in wanted if k not in args]
    unknown = sorted(set(args) - set(wanted))
    if missing:
        raise UsageError(f"{kind}: missing argument {', '.join(missing)}")
    if unknown:
        raise UsageError(f"{kind}: unknown argument {', '.join(unknown)}")
    out = {"name": check_volume_name(args["name"])}
    if "size" in wanted:
        out["size"] = check_size(args["size"])
    if "new_name" in wanted:
        out["new_name"] = check_volume_name(args["new_name"], "new volume name")
        if out["new_name"] == out["name"]:
            raise UsageError(f"{kind}: volume {out['name']!r} already has that name")
    return out


# --- the attributes each driver reads -------------------------------------------
#
# Declared here, for every driver, with the type the driver needs, so that the
# configuration commands (shareddisk/config.py) refuse a value no driver could
# use before it is written: the cluster manager of whichever node takes the
# resource over builds its driver from these attributes, and a record it
# cannot build a driver from would never come online anywhere.

MAX_EXEC_TIMEOUT = 86_400.0  # seconds: a day


def _device_list(value: Any) -> str | None:
    if not isinstance(value, list) or not value:
        return "a list of device paths (set it with data_devices:list=/dev/sdX)"
    for item in value:
        if not isinstance(item, str) or not item or "\0" in item or not item.isprintable():
            return f"a list of device paths; {item!r} is not a path"
    return None


def _slot_count(value: Any) -> str | None:
    from shareddisk.drivers.image import MAX_SLOTS  # late: image imports this module

    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SLOTS:
        return f"a whole number 1..{MAX_SLOTS} (set it with volume_slots:int=N)"
    return None


def _script(value: Any) -> str | None:
    if not isinstance(value, str) or not value or not value.isprintable():
        return "the path of an executable script"
    return None


def _seconds(value: Any) -> str | None:
    try:
        seconds = float(value) if not isinstance(value, (bool, list)) else float("nan")
    except (TypeError, ValueError):
        seconds = float("nan")
    if not 0 < seconds <= MAX_EXEC_TIMEOUT:  # NaN compares False
        return f"seconds, more than 0 and at most {MAX_EXEC_TIMEOUT:g}"
    return None


# driver -> attribute -> check (None when the value is fine, else what it must be)
DRIVER_ATTRIBUTES: dict[str, dict[str, Callable[[Any], str | None]]] = {
    "image": {"data_devices": _device_list, "volume_slots": _slot_count},
    "exec": {"exec_script": _script, "exec_timeout": _seconds},
}
REQUIRED_ATTRIBUTES = {"image": ("data_devices",), "exec": ("exec_script",)}


def _declared(key: str) -> tuple[str, Callable[[Any], str | None]] | None:
    """(driver, check) of an attribute some driver reads; None for free-form keys."""
    for driver, declared in DRIVER_ATTRIBUTES.items():
        if key in declared:
            return driver, declared[key]
    if key.startswith("exec_timeout_"):  # per action (shareddisk/drivers/exec.py)
        return "exec", _seconds
    return None


EXAMPLES = {"image": "data_devices:list=/dev/sdX", "exec": "exec_script=/path/to/script"}


def check_attributes(attributes: dict, *, complete: bool = True, what: str = "resource") -> None:
    """UsageError unless every attribute a driver reads has the type it declares,
    and (``complete``) the driver ``driver`` names can be built from them."""
    kind = attributes.get("driver", "image")
    if not isinstance(kind, str) or (kind and kind not in DRIVERS):
        raise UsageError(f"{what}: bad driver {kind!r} (choose from {', '.join(DRIVERS)})")
    kind = kind or "image"
    for key, value in attributes.items():
        declared = _declared(key)
        need = declared[1](value) if declared is not None else None
        if need is not None:
            raise UsageError(f"{what}: bad {key} {value!r}: the {declared[0]} driver needs {need}")
    if not complete:
        return
    missing = [k for k in REQUIRED_ATTRIBUTES[kind] if k not in attributes]
    if missing:
        raise UsageError(f"{what}: the {kind} driver needs the attribute {', '.join(missing)} "
                         f"(e.g. --attr {EXAMPLES[kind]})")
    try:
        make_driver(attributes)  # what the manager will do: builds, opens nothing
    except UsageError as exc:
        raise UsageError(f"{what}: {exc}") from None


def complete_attributes(attributes: dict) -> bool:
    """Can the manager build this record's driver (as check_attributes would let it)?"""
    try:
        check_attributes(attributes)
    except UsageError:
        return False
    return True


def make_driver(attributes: dict, *, clock: Clock | None = None, resource: str = "",
                write_check: Callable[[], None] | None = None) -> Driver:
    """The driver a resource's attributes ask for.

    ``driver`` = ``"image"`` (the default; needs ``data_devices``) or
    ``"exec"`` (needs ``exec_script``).  ``resource`` is the resource name,
    passed to exec scripts.  ``write_check`` gates every data device write
    of the image driver (shareddisk.device.WriteGate); exec scripts write
    on their own, checked only before each step.
    """
    kind = attributes.get("driver", "image") or "image"
    clock = clock or SystemClock()
    if kind == "image":
        from shareddisk.drivers.image import ImageDriver  # late: image imports this module

        return ImageDriver.from_attributes(attributes, clock=clock,
                                           opener=gated_opener(open_device, write_check))
    if kind == "exec":
        from shareddisk.drivers.exec import ExecDriver

        return ExecDriver.from_attributes(attributes, clock=clock, resource=resource)
    raise UsageError(f"unknown driver {kind!r} (choose from {', '.join(DRIVERS)})")
