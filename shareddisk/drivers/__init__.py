"""Storage drivers: ``image`` (volumes on a data device) and ``exec`` (user scripts).

See shareddisk/drivers/base.py for the interface and the operation arguments;
:func:`make_driver` picks the driver a resource's attributes ask for (it sits
here, above base, image and exec, since it knows all of them).
"""

from __future__ import annotations

from typing import Callable

from shareddisk.clock import Clock, SystemClock
from shareddisk.device import gated_opener, open_device
from shareddisk.drivers.base import KINDS, Driver
from shareddisk.errors import UsageError

__all__ = ["DRIVERS", "KINDS", "Driver", "make_driver"]

DRIVERS = ("image", "exec")


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
        from shareddisk.drivers.image import ImageDriver  # late: imported when used

        return ImageDriver.from_attributes(attributes, clock=clock,
                                           opener=gated_opener(open_device, write_check))
    if kind == "exec":
        from shareddisk.drivers.exec import ExecDriver

        return ExecDriver.from_attributes(attributes, clock=clock, resource=resource)
    raise UsageError(f"unknown driver {kind!r} (choose from {', '.join(DRIVERS)})")
