"""The no-stale-write check on crafted stamps: it must flag an old owner's
block that landed after a newer generation's first write, and only that.
(No QEMU needed: these run in every tier.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from lab_support.stamps import BLOCK, Checker, Stamp  # noqa: E402


def feed(checker: Checker, reads: list[list[tuple[int, int, Stamp]]]) -> None:
    """reads[r] = the (node, block, stamp) a read r showed for the first time;
    every later read shows them again, as the real reads do."""
    shown: list[tuple[int, int, Stamp]] = []
    for r, new in enumerate(reads):
        shown += new
        for node, block, stamp in shown:
            checker.observe(r, float(r), node, block, stamp.pack())


def test_stamp_round_trip_and_damage():
    s = Stamp(7, 2, 41, 12.5)
    data = s.pack()
    assert len(data) == BLOCK
    assert Stamp.unpack(data) == s
    assert Stamp.unpack(bytes(BLOCK)) is None
    bad = bytearray(data)
    bad[10] ^= 1
    with pytest.raises(ValueError, match="checksum"):
        Stamp.unpack(bytes(bad))
    with pytest.raises(ValueError):
        Stamp.unpack(b"x" + bytes(BLOCK - 1))


def test_clean_failover_passes():
    c = Checker()
    feed(c, [[(1, 0, Stamp(1, 1, 1))], [(1, 1, Stamp(1, 1, 2))], [], [],
             [(2, 0, Stamp(2, 2, 1))], [(2, 1, Stamp(2, 2, 2))], [(2, 2, Stamp(2, 2, 3))]])
    v = c.verdict()
    assert v.ok, v.lines()
    assert sorted(c.first_writes()) == [1, 2]
    assert c.first_writes()[2].stamp.node == 2


def test_old_owner_writing_after_the_new_generation_is_flagged():
    c = Checker()
    feed(c, [[(1, 0, Stamp(1, 1, 1))], [], [(2, 0, Stamp(2, 2, 1))], [], [],
             [(1, 1, Stamp(1, 1, 2))]])  # node 1, generation 1, three reads later
    v = c.verdict()
    assert not v.ok
    assert len(v.stale) == 1
    old, new = v.stale[0]
    assert (old.stamp.node, old.stamp.generation, old.stamp.seq) == (1, 1, 2)
    assert (new.stamp.node, new.stamp.generation) == (2, 2)
    assert "STALE WRITE: node 1 wrote 1 block(s) of generation 1" in v.lines()[0]


def test_writes_too_close_to_order_are_not_judged():
    # First seen by the read right after the newer generation's first write:
    # the old block may have landed first (the earlier read looked at its
    # region before the new block landed), so it is not called stale.
    c = Checker()
    feed(c, [[(1, 0, Stamp(1, 1, 1))], [(2, 0, Stamp(2, 2, 1))], [(1, 1, Stamp(1, 1, 2))]])
    assert c.verdict().ok
    # Two reads later it is certain.
    c = Checker()
    feed(c, [[(1, 0, Stamp(1, 1, 1))], [(2, 0, Stamp(2, 2, 1))], [], [(1, 1, Stamp(1, 1, 2))]])
    assert len(c.verdict().stale) == 1


def test_same_node_newer_generation_is_not_stale_but_an_older_one_is():
    # The owner regains the resource (generation 3) after node 2's generation 2:
    # its generation-3 blocks are fine, a generation-1 block after that is not.
    c = Checker()
    feed(c, [[(1, 0, Stamp(1, 1, 1))], [], [(2, 0, Stamp(2, 2, 1))], [], [],
             [(1, 1, Stamp(3, 1, 1))], [], [], [(1, 2, Stamp(1, 1, 9))]])
    v = c.verdict()
    assert [(o.stamp.generation, n.stamp.generation) for o, n in v.stale] == [(1, 2)]


def test_two_writers_of_one_generation_and_damage_are_flagged():
    c = Checker()
    feed(c, [[(1, 0, Stamp(4, 1, 1))], [(2, 0, Stamp(4, 2, 1))]])
    v = c.verdict()
    assert len(v.shared) == 1 and not v.ok
    c = Checker()
    c.observe(0, 0.0, 1, 0, b"garbage" + bytes(BLOCK - 7))
    assert not c.verdict().ok
    c = Checker()
    c.observe(0, 0.0, 1, 0, Stamp(1, 1, 1).pack())
    c.observe(1, 1.0, 1, 0, Stamp(1, 1, 2).pack())  # a block rewritten: regions are append-only
    assert c.verdict().damaged
