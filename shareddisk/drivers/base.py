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
default) and ``exec`` (shareddisk/drivers/exec.py, user scripts);
``shareddisk.drivers.make_driver`` picks one from a resource's attributes.

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
from typing import Any, Protocol, runtime_checkable

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
