"""Storage drivers: ``image`` (volumes on a data device) and ``exec`` (user scripts).

See shareddisk/drivers/base.py for the interface and the operation arguments;
:func:`make_driver` picks the driver a resource's attributes ask for (it sits
here, above base, image and exec, since it knows all of them).
"""

from __future__ import annotations

from typing import Any, Callable

from shareddisk.clock import Clock, SystemClock
from shareddisk.device import gated_opener
from shareddisk.drivers.base import KINDS, Driver
from shareddisk.errors import UsageError
from shareddisk.runtime import REAL, Runtime

__all__ = ["DRIVERS", "KINDS", "Driver", "check_attributes", "complete_attributes", "make_driver"]

DRIVERS = ("image", "exec")


def make_driver(attributes: dict, *, clock: Clock | None = None, resource: str = "",
                write_check: Callable[[], None] | None = None, runtime: Runtime = REAL) -> Driver:
    """The driver a resource's attributes ask for.

    ``driver`` = ``"image"`` (the default; needs ``data_devices``) or
    ``"exec"`` (needs ``exec_script``).  ``resource`` is the resource name,
    passed to exec scripts.  ``write_check`` gates every data device write
    of the image driver (shareddisk.device.WriteGate); exec scripts write
    on their own, so it is checked before each script that may write starts.
    ``runtime`` opens the image driver's data devices and makes its table ids.
    """
    kind = attributes.get("driver", "image") or "image"
    clock = clock or SystemClock()
    if kind == "image":
        from shareddisk.drivers.image import ImageDriver  # late: imported when used

        return ImageDriver.from_attributes(attributes, clock=clock,
                                           opener=gated_opener(runtime.open_data, write_check),
                                           new_uuid=runtime.new_uuid)
    if kind == "exec":
        return runtime.exec_driver(attributes, clock=clock, resource=resource,
                                   write_check=write_check)
    raise UsageError(f"unknown driver {kind!r} (choose from {', '.join(DRIVERS)})")


# --- the attributes each driver reads -------------------------------------------
#
# Declared here, for every driver, with the type the driver needs, so that the
# configuration commands (shareddisk/porcelain/resources.py) refuse a value no driver could
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
    from shareddisk.drivers.image import MAX_SLOTS  # late: imported when used

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
