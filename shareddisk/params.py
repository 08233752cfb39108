"""Command-line values that click does not parse itself: sizes and durations.

They are checked at parse time, before a command opens anything, so a bad
value is a usage error (exit 2) naming the option.
"""

from __future__ import annotations

import math
import re
from typing import Any

import click

from shareddisk.errors import UsageError

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """'1048576', '64M', '1GiB' -> bytes (binary units)."""
    m = _SIZE_RE.match(text)
    if not m:
        raise UsageError(f"bad size {text!r}: use bytes or a number with K, M, G or T")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


class Seconds(click.ParamType):
    """A duration in seconds: finite and within ``low..high`` (``low`` excluded
    when ``open_low``).  NaN, infinities and absurd values are usage errors at
    parse time, before a command opens anything."""

    name = "seconds"

    def __init__(self, low: float, high: float, *, open_low: bool = False):
        self.low, self.high, self.open_low = low, high, open_low

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        if isinstance(value, float) and math.isfinite(value):
            seconds = value
        else:
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not a number of seconds", param, ctx)
        too_low = seconds <= self.low if self.open_low else seconds < self.low
        if not math.isfinite(seconds) or too_low or seconds > self.high:
            bound = f"more than {self.low:g}" if self.open_low else f"at least {self.low:g}"
            self.fail(f"{value!r}: give seconds, {bound} and at most {self.high:g}", param, ctx)
        return seconds
