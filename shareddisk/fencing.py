"""Fence actions: what a node does to itself when it must stop at once.

``exit`` (the default, for labs and tests) raises ``Fenced``; the daemon
turns it into exit code 6 without writing anything more.  ``reboot`` and
``off`` use the kernel's magic SysRq trigger, as SBD does: no sync, no
shutdown scripts, because a node that lost its disks must not wait on them.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Protocol

from shareddisk.errors import Fenced

log = logging.getLogger("shareddisk.fence")
SYSRQ_TRIGGER = "/proc/sysrq-trigger"


class FenceAction(Protocol):
    name: str

    def __call__(self, reason: str, power_off: bool = False) -> None:
        """Stop this node; must not return normally."""


class ExitFence:
    """Leave the process at once (the process supervisor decides what next)."""

    name = "exit"

    def __call__(self, reason: str, power_off: bool = False) -> None:
        raise Fenced(f"node fenced: {reason}")


class SysrqFence:
    """Reboot (or power off) the host through /proc/sysrq-trigger; needs root."""

    name = "reboot"

    def __init__(self, trigger: str = SYSRQ_TRIGGER,
                 opener: Callable[[str], int] = lambda p: os.open(p, os.O_WRONLY)):
        self.trigger = trigger
        self.opener = opener

    def __call__(self, reason: str, power_off: bool = False) -> None:
        log.critical("fence=%s reason=%r", "off" if power_off else "reboot", reason)
        try:
            fd = self.opener(self.trigger)
            try:
                os.write(fd, b"o" if power_off else b"b")
            finally:
                os.close(fd)
        except OSError as exc:
            raise Fenced(f"node fenced: {reason} (sysrq {self.trigger} failed: {exc}; "
                         f"exiting instead)") from None
        raise Fenced(f"node fenced: {reason} (sysrq sent)")


FENCE_ACTIONS: dict[str, Callable[[], FenceAction]] = {"exit": ExitFence, "reboot": SysrqFence}
