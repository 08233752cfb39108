"""The library's module loggers, made when a module first logs.

``import logging`` brings traceback, linecache, tokenize, string and weakref
with it: about 18 million instructions, 4 ms of a 100 ms command on the
development machine, which ``attr set`` and ``status`` paid at start-up
without logging a line (issue 17, docs/BENCHMARKS.md).  A module says
``log = logger("shareddisk.leases")`` and calls ``log.warning(...)`` as
usual; the first call imports logging and makes the real logger.

That first call also gives the library's top logger, ``shareddisk``, a
NullHandler, as a library should: with no handler anywhere Python prints
warnings on stderr itself (``logging.lastResort``), and a command's library
lines stay quiet unless ``-v`` asks for them (the daemon and ``-v`` add
real handlers: shareddisk/logfmt.py).
"""

from __future__ import annotations

from typing import Any

LIBRARY = "shareddisk"


class Logger:
    """Stands for ``logging.getLogger(name)`` until it is first used."""

    __slots__ = ("name", "_real")

    def __init__(self, name: str):
        self.name = name
        self._real: Any = None

    def __getattr__(self, attr: str) -> Any:
        # Only for what the slots do not hold: debug, info, warning, isEnabledFor...
        real = self._real
        if real is None:
            real = self._real = _make(self.name)
        return getattr(real, attr)


def logger(name: str) -> Logger:
    return Logger(name)


def _make(name: str) -> Any:
    import logging
    library = logging.getLogger(LIBRARY)
    if not any(isinstance(h, logging.NullHandler) for h in library.handlers):
        library.addHandler(logging.NullHandler())
    return logging.getLogger(name)


__all__ = ["Logger", "logger"]
