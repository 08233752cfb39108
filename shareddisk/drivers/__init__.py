"""Storage drivers: ``image`` (volumes on a data device) and ``exec`` (user scripts).

See shareddisk/drivers/base.py for the interface and the operation arguments.
"""

from shareddisk.drivers.base import KINDS, Driver, make_driver

__all__ = ["KINDS", "Driver", "make_driver"]
