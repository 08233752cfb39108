"""Write keys (shareddisk/writekeys.py): never reused, above every older
generation, shared by this host's processes, shown and read back as G.N."""

from __future__ import annotations

import errno
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shareddisk import writekeys
from shareddisk.errors import DeviceError
from shareddisk.writekeys import GENERATION_SHIFT, WriteKeys, floor, key_text, parse_version


@pytest.fixture(params=["memory", "files"])
def keys(request, tmp_path) -> WriteKeys:
    return WriteKeys() if request.param == "memory" else WriteKeys(tmp_path / "keys")


def test_a_tried_key_is_never_offered_again_in_its_generation(keys) -> None:
    first = keys.above("resource-0", 3, stored=0)
    assert first == floor(3) + 1
    keys.attempt("resource-0", 3, first)
    # the write failed and a majority read still shows nothing newer
    assert keys.above("resource-0", 3, stored=0) == first + 1
    assert keys.above("resource-0", 3, stored=first + 5) == first + 6  # a read shows more
    assert keys.above("resource-1", 3, stored=0) == first  # another record: its own mark


def test_a_new_generation_starts_above_everything_an_older_one_could_try(keys) -> None:
    keys.attempt("resource-0", 3, floor(3) + 1000)
    assert keys.above("resource-0", 4, stored=floor(3) + 7) == floor(4) + 1
    keys.attempt("resource-0", 4, floor(4) + 1)
    keys.attempt("resource-0", 3, floor(3) + 2000)  # a stale writer: its mark is not kept
    assert keys.last("resource-0", 4) == floor(4) + 1
    assert keys.last("resource-0", 3) is None


def test_two_processes_of_one_host_share_the_marks(tmp_path) -> None:
    """A command borrowing its daemon's lease (session.py) opens its own store."""
    daemon, command = WriteKeys(tmp_path / "keys"), WriteKeys(tmp_path / "keys")
    daemon.attempt("resource-0", 2, floor(2) + 4)
    assert command.above("resource-0", 2, stored=floor(2) + 1) == floor(2) + 5
    command.attempt("resource-0", 2, floor(2) + 5)
    assert daemon.above("resource-0", 2, stored=0) == floor(2) + 6


def test_a_damaged_mark_is_an_error_not_a_fresh_start(tmp_path) -> None:
    store = WriteKeys(tmp_path / "keys")
    store.attempt("resource-0", 2, floor(2) + 4)
    (tmp_path / "keys" / "resource-0").write_text("garbage\n")
    with pytest.raises(DeviceError, match="resource-0: not a write key mark"):
        store.above("resource-0", 2, stored=0)


def test_a_mark_that_cannot_be_kept_or_read_stops_the_write(tmp_path, monkeypatch) -> None:
    (tmp_path / "keys" / "resource-0" / "in-the-way").mkdir(parents=True)
    store = WriteKeys(tmp_path / "keys")
    with pytest.raises(DeviceError, match="cannot read the write key tried last"):
        store.above("resource-0", 2, stored=0)

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writekeys.os, "replace", full)
    with pytest.raises(DeviceError, match="resource-1: cannot record the write key .*"
                                          "nothing written"):
        store.attempt("resource-1", 2, floor(2) + 1)
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["resource-0"]


@given(st.integers(0, (1 << 32) - 1), st.integers(1, (1 << GENERATION_SHIFT) - 1))
def test_a_version_reads_back_as_it_is_shown(generation: int, count: int) -> None:
    key = floor(generation) + count
    assert parse_version(key_text(key)) == key
    assert parse_version(str(key)) == key
    assert key_text(key) == (f"{generation}.{count}" if generation else str(count))


@pytest.mark.parametrize("text", ["", ".", "1.", ".1", "1.0", "2.-1", "-3", "x", "1.2.3",
                                  "\u00b2", "\u0661.\u0661", "1 .2", "99999999999999999999999.1",
                                  str(1 << 64)])
def test_what_no_version_can_be_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_version(text)


def test_the_run_directory_root_a_user_and_the_override(monkeypatch, tmp_path) -> None:
    from shareddisk.statefile import RUN_ROOT, run_dir
    monkeypatch.delenv("SHAREDDISK_RUN_DIR")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert str(run_dir()) == RUN_ROOT
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert run_dir() == str(tmp_path / "shareddisk")  # a user's own tmpfs: /run/user/UID
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert str(run_dir()) == RUN_ROOT  # nowhere better: a refused write names the variable
    monkeypatch.setenv("SHAREDDISK_RUN_DIR", str(tmp_path / "mine"))
    assert run_dir() == str(tmp_path / "mine")
