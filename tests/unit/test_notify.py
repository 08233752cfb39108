"""Tests for shareddisk.notify: systemd's readiness protocol without systemd.

``run`` sends READY=1 once the node has joined, so a unit with Type=notify
starts its dependants only then.  The test plays systemd: it binds a unix
datagram socket and names it in NOTIFY_SOCKET.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from pathlib import Path

import pytest

from shareddisk.notify import sd_notify

_SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes with the NUL


@pytest.fixture
def listener(tmp_path: Path):
    """A bound datagram socket and its path (in tmp_path unless that is too long)."""
    directory = str(tmp_path)
    short = None
    if len(os.path.join(directory, "notify.sock").encode()) > _SUN_PATH_MAX:
        short = tempfile.TemporaryDirectory(prefix="sdn")
        directory = short.name
    path = os.path.join(directory, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)  # only a guard against hanging; never reached when it works
    try:
        yield sock, path
    finally:
        sock.close()
        if short is not None:
            short.cleanup()


def test_ready_is_sent_to_the_socket_in_the_environment(listener) -> None:
    sock, path = listener
    assert sd_notify("READY=1", {"NOTIFY_SOCKET": path}) is True
    assert sock.recv(4096) == b"READY=1"


def test_each_message_is_one_datagram(listener) -> None:
    sock, path = listener
    env = {"NOTIFY_SOCKET": path}
    sd_notify("READY=1\nSTATUS=joined", env)
    sd_notify("STOPPING=1", env)
    assert sock.recv(4096) == b"READY=1\nSTATUS=joined"
    assert sock.recv(4096) == b"STOPPING=1"


def test_os_environ_is_used_by_default(listener, monkeypatch) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert sd_notify("READY=1") is True
    assert sock.recv(4096) == b"READY=1"


def test_abstract_namespace_socket() -> None:
    """systemd may pass '@name': the Linux abstract namespace, no file at all."""
    name = f"shareddisk-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert sd_notify("READY=1", {"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(4096) == b"READY=1"


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""}, {"OTHER": "/x"}])
def test_without_notify_socket_nothing_is_sent(env) -> None:
    assert sd_notify("READY=1", env) is False


def test_not_under_systemd_by_default(monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False


def test_a_vanished_notify_socket_is_not_fatal(tmp_path: Path) -> None:
    assert sd_notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}) is False


# --- STATUS= -------------------------------------------------------------------------------


def _view(states: dict[int, str], writable: int = 2, disks: int = 2) -> dict:
    return {"node_id": 1, "quorum": {"disks": disks, "writable": writable,
                                     "needed": disks // 2 + 1, "ok": writable > disks // 2},
            "nodes": [{"id": i, "name": f"n{i}", "state": s, "incarnation": 3}
                      for i, s in states.items()]}


def test_status_line_names_this_node_the_members_and_quorum() -> None:
    from shareddisk.notify import status_line
    assert status_line(_view({1: "alive", 2: "alive", 3: "dead", 4: "left"})) == \
        ("node 1 (n1) alive, incarnation 3; 2 of 4 nodes alive, dead 3, left 4; "
         "quorum: 2 of 2 disks writable")
    assert status_line(_view({1: "alive"}, writable=1, disks=3)).endswith(
        "; NO QUORUM: 1 of 3 disks writable, need 2")


def test_status_is_sent_only_when_it_changes(listener) -> None:
    from shareddisk.notify import StatusNotifier
    sock, path = listener
    notifier = StatusNotifier({"NOTIFY_SOCKET": path})
    notifier.from_view(_view({1: "alive", 2: "alive"}))
    notifier.from_view(_view({1: "alive", 2: "alive"}))
    notifier.from_view(_view({1: "alive", 2: "suspect"}))
    assert sock.recv(4096).decode().startswith("STATUS=node 1 (n1) alive")
    assert ", suspect 2;" in sock.recv(4096).decode()
    sock.settimeout(0.05)
    with pytest.raises(socket.timeout):
        sock.recv(4096)  # the repeated line was not sent again


def test_status_notifier_is_quiet_without_systemd() -> None:
    from shareddisk.notify import StatusNotifier
    notifier = StatusNotifier({})
    notifier.from_view(_view({1: "alive"}))
    assert not notifier.enabled and notifier.last is None
