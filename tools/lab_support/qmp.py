"""A small QMP client (QEMU's JSON monitor): commands, and events stamped
with the host's monotonic clock as they arrive."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path


class QMPError(Exception):
    pass


class QMP:
    def __init__(self, path: Path, timeout: float = 10.0):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self._file = self.sock.makefile("rb")
        self.events: list[tuple[float, dict]] = []
        self._replies: list[dict] = []
        self._cond = threading.Condition()
        self._closed = False
        greeting = json.loads(self._file.readline())
        if "QMP" not in greeting:
            raise QMPError(f"{path}: not a QMP greeting: {greeting}")
        self.sock.settimeout(None)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.execute("qmp_capabilities")

    def _read(self) -> None:
        try:
            for line in self._file:
                msg = json.loads(line)
                with self._cond:
                    if "event" in msg:
                        self.events.append((time.monotonic(), msg))
                    else:
                        self._replies.append(msg)
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def execute(self, command: str, timeout: float = 30.0, **arguments) -> object:
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        with self._cond:
            self._replies.clear()
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        end = time.monotonic() + timeout
        with self._cond:
            while not self._replies:
                if self._closed:
                    if command == "quit":
                        return None
                    raise QMPError(f"{self.path}: connection closed during {command}")
                left = end - time.monotonic()
                if left <= 0:
                    raise QMPError(f"{self.path}: no reply to {command} in {timeout:g} s")
                self._cond.wait(left)
            reply = self._replies.pop(0)
        if "error" in reply:
            raise QMPError(f"{command}: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return")

    def hmp(self, line: str) -> str:
        return str(self.execute("human-monitor-command", **{"command-line": line}))

    def wait_event(self, name: str, timeout: float, since: float = 0.0) -> tuple[float, dict] | None:
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, ev in self.events:
                    if ev["event"] == name and t >= since:
                        return t, ev
                left = end - time.monotonic()
                if left <= 0 or self._closed:
                    return None
                self._cond.wait(left)

    def close(self) -> None:
        """Really close: the reader's file object keeps the socket open otherwise,
        and QEMU serves one QMP client at a time."""
        for step in (lambda: self.sock.shutdown(socket.SHUT_RDWR), self._file.close,
                     self.sock.close):
            try:
                step()
            except OSError:
                pass
