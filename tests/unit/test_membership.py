"""Tests for shareddisk.membership: observer-side peer states on a virtual clock.

Every transition is driven by hand-made slot tuples and explicit observer
times, so each deadline can be checked at the exact instant it falls due
(I = T = 1 s: suspect 3 s, dead 7 s, all exact in binary floating point).
The rules under test are the ones the safety argument needs: dead only
after the *peer's own* dead timeout, only by a reader whose reads are fresh
and reached a majority of disks late enough to show any renewal the peer
could still rely on, sticky for an incarnation, and merged across disks
where one may lag.
"""

from __future__ import annotations

import pytest

from shareddisk.format import heartbeat
from shareddisk.membership import Membership, Peer, PeerState, Transition
from shareddisk.timeouts import Timeouts

NODES = 4
T0 = 1000.0
S = heartbeat.SlotState
TIMEOUTS = Timeouts.from_interval(1.0)  # suspect 3, dead 7


def raw(node_id: int, state: int = S.ALIVE, incarnation: int = 1, counter: int = 1,
        **changes) -> tuple:
    """The raw tuple SlotScanner would hold for a slot with these values."""
    values = dict(heartbeat.empty(node_id), state=state, incarnation=incarnation,
                  counter=counter, interval_ms=1000, io_timeout_ms=1000, name=f"n{node_id}")
    values.update(changes)
    return heartbeat.CODEC.raw.unpack_from(heartbeat.CODEC.encode(values, 512))


def scan(**slots: tuple | None) -> list[tuple | None]:
    """A whole region: ``n2=raw(2, ...)``; unnamed slots are empty."""
    out: list[tuple | None] = []
    for node_id in range(1, NODES + 1):
        key = f"n{node_id}"
        out.append(slots[key] if key in slots else raw(node_id, S.EMPTY, 0, 0, interval_ms=0,
                                                        io_timeout_ms=0, name=""))
    return out


def membership(self_id: int | None = 1) -> Membership:
    return Membership(self_id, TIMEOUTS)


def at(m: Membership, now: float, view: list[tuple | None]) -> list[Transition]:
    """One read completing at ``now``, then an evaluation at the same instant."""
    m.observe(view, now)
    return m.evaluate(now)


def hold(m: Membership, view: list, start: float, end: float, step: float = 0.5) -> dict:
    """Keep reading the same bytes from start to end; the state at each time."""
    states = {}
    now = start
    while now <= end:
        at(m, now, view)
        states[now] = m.peers[2].state
        now += step
    return states


def test_empty_slots_are_empty_and_produce_no_transitions() -> None:
    m = membership()
    assert at(m, T0, scan()) == []
    assert {p.state for p in m.peers.values()} == {PeerState.EMPTY}
    assert 1 not in m.peers  # the observer's own slot is never judged
    assert m.alive_ids() == [] and m.dead_ids() == []


def test_full_life_cycle_at_exact_deadlines() -> None:
    m = membership()
    at(m, T0, scan())
    assert at(m, T0 + 1, scan(n2=raw(2, S.JOINING, 1, 1))) == [
        Transition(2, PeerState.EMPTY, PeerState.JOINING, 1)]
    assert at(m, T0 + 2, scan(n2=raw(2, S.ALIVE, 1, 2))) == [
        Transition(2, PeerState.JOINING, PeerState.ALIVE, 1)]
    assert m.alive_ids() == [2]
    # Last change seen by the read completing at T0 + 2: suspect at +3, dead at +7.
    states = hold(m, scan(n2=raw(2, S.ALIVE, 1, 2)), T0 + 2.5, T0 + 10)
    assert all(states[t] is PeerState.ALIVE for t in states if t < T0 + 5)
    assert states[T0 + 5] is PeerState.SUSPECT
    assert all(states[t] is PeerState.SUSPECT for t in states if T0 + 5 <= t < T0 + 9)
    assert states[T0 + 8.5] is PeerState.SUSPECT  # not before dead
    assert states[T0 + 9] is PeerState.DEAD
    assert m.dead_ids() == [2] and m.alive_ids() == []


def test_transitions_are_reported_once() -> None:
    m = membership()
    changes = []
    now = T0
    while now <= T0 + 8:
        changes += at(m, now, scan(n2=raw(2, counter=1)))
        now += 0.5
    assert changes == [Transition(2, PeerState.EMPTY, PeerState.ALIVE, 1),
                       Transition(2, PeerState.ALIVE, PeerState.SUSPECT, 1),
                       Transition(2, PeerState.SUSPECT, PeerState.DEAD, 1)]


def test_a_moving_counter_keeps_a_peer_alive() -> None:
    m = membership()
    for k in range(40):
        at(m, T0 + k, scan(n2=raw(2, counter=k + 1)))
        assert m.peers[2].state is PeerState.ALIVE


def test_suspect_recovers_when_the_counter_moves() -> None:
    m = membership()
    at(m, T0, scan(n2=raw(2, counter=1)))
    at(m, T0 + 1, scan(n2=raw(2, counter=2)))
    at(m, T0 + 4, scan(n2=raw(2, counter=2)))
    assert m.peers[2].state is PeerState.SUSPECT
    assert at(m, T0 + 5, scan(n2=raw(2, counter=3))) == [
        Transition(2, PeerState.SUSPECT, PeerState.ALIVE, 1)]


def test_a_slot_never_seen_changing_dies_after_dead_from_first_sight() -> None:
    """A node that was already dead when the observer started is found dead."""
    m = membership()
    states = hold(m, scan(n2=raw(2, counter=77)), T0, T0 + 8)
    assert states[T0 + 2.5] is PeerState.ALIVE
    assert states[T0 + 3] is PeerState.SUSPECT
    assert states[T0 + 6.5] is PeerState.SUSPECT
    assert states[T0 + 7] is PeerState.DEAD


def test_dead_is_sticky_for_the_incarnation_and_a_new_one_revives() -> None:
    m = membership()
    hold(m, scan(n2=raw(2, counter=5)), T0, T0 + 7)
    assert m.peers[2].state is PeerState.DEAD
    # The frozen node wakes and writes again: same incarnation, counter moves.
    for k in range(1, 6):
        assert at(m, T0 + 7 + k, scan(n2=raw(2, S.ALIVE, 1, 5 + k))) == []
        assert m.peers[2].state is PeerState.DEAD
    # A restart (new incarnation) is a new member.
    assert at(m, T0 + 13, scan(n2=raw(2, S.JOINING, 2, 1))) == [
        Transition(2, PeerState.DEAD, PeerState.JOINING, 2)]
    assert at(m, T0 + 14, scan(n2=raw(2, S.ALIVE, 2, 2))) == [
        Transition(2, PeerState.JOINING, PeerState.ALIVE, 2)]
    # ...which can die again, on its own clock.
    hold(m, scan(n2=raw(2, S.ALIVE, 2, 2)), T0 + 14.5, T0 + 21)
    assert m.peers[2].state is PeerState.DEAD
    assert m.peers[2].dead_incarnation == 2


@pytest.mark.parametrize("slot_state, peer_state", [(S.LEFT, PeerState.LEFT),
                                                    (S.FENCED, PeerState.FENCED)])
@pytest.mark.parametrize("from_suspect", [False, True])
def test_left_and_fenced_are_immediate(slot_state, peer_state, from_suspect) -> None:
    m = membership()
    at(m, T0, scan(n2=raw(2, counter=1)))
    at(m, T0 + 0.5, scan(n2=raw(2, counter=2)))
    now = T0 + 0.5
    if from_suspect:
        now = T0 + 4
        at(m, now, scan(n2=raw(2, counter=2)))
        assert m.peers[2].state is PeerState.SUSPECT
    old = m.peers[2].state
    # The very read that shows the new slot state decides; no waiting.
    assert at(m, now + 0.25, scan(n2=raw(2, slot_state, 1, 3))) == [
        Transition(2, old, peer_state, 1)]
    # And it stays so however long the slot sits unchanged.
    at(m, now + 100, scan(n2=raw(2, slot_state, 1, 3)))
    assert m.peers[2].state is peer_state


def test_unknown_slot_state_is_suspect() -> None:
    m = membership()
    at(m, T0, scan(n2=raw(2, state=9)))
    assert m.peers[2].state is PeerState.SUSPECT


def test_a_peers_own_published_interval_sets_its_deadlines() -> None:
    """Peer 2 runs at I = T = 2 s: suspect 6 s, dead 14 s (observer: 3 s, 7 s)."""
    m = membership()
    slow = raw(2, counter=1, interval_ms=2000, io_timeout_ms=2000)
    states = hold(m, scan(n2=slow), T0, T0 + 15)
    assert m.peers[2].timeouts == Timeouts(2.0, 2.0)
    assert states[T0 + 5.5] is PeerState.ALIVE      # the observer's suspect (3) is not used
    assert states[T0 + 6] is PeerState.SUSPECT
    assert states[T0 + 13.5] is PeerState.SUSPECT   # the observer's dead (7) is not used
    assert states[T0 + 14] is PeerState.DEAD


def test_a_shorter_published_interval_makes_a_peer_die_sooner() -> None:
    m = membership()
    fast = raw(2, counter=1, interval_ms=250, io_timeout_ms=250)  # dead = 1.75 s
    states = hold(m, scan(n2=fast), T0, T0 + 3, step=0.25)
    assert states[T0 + 0.5] is PeerState.ALIVE
    assert states[T0 + 0.75] is PeerState.SUSPECT
    assert states[T0 + 1.5] is PeerState.SUSPECT
    assert states[T0 + 1.75] is PeerState.DEAD


@pytest.mark.parametrize("interval_ms, io_timeout_ms, expected", [
    (0, 0, TIMEOUTS),                   # nothing published: the observer's defaults
    (2000, 0, Timeouts(2.0, 2.0)),      # T unset means T = I
    (10, 10, TIMEOUTS),                 # out of range: not trusted
    (1000, 60_000, TIMEOUTS),           # T > 10 I: not trusted
])
def test_published_timing_fallbacks(interval_ms, io_timeout_ms, expected) -> None:
    m = membership()
    at(m, T0, scan(n2=raw(2, interval_ms=interval_ms, io_timeout_ms=io_timeout_ms)))
    peer = m.peers[2]
    assert (peer.timeouts or m.default_timeouts) == expected


def test_a_reader_whose_reads_are_stale_never_declares_dead() -> None:
    m = membership()
    at(m, T0, scan(n2=raw(2, counter=1)))
    at(m, T0 + 1, scan(n2=raw(2, counter=2)))
    # No read completes any more (our own disks hang): time alone passes.
    for later in (T0 + 8, T0 + 9, T0 + 100, T0 + 10_000):
        m.evaluate(later)
        assert m.peers[2].state is PeerState.SUSPECT
    assert m.dead_ids() == []
    # The first fresh read that still shows no change is what makes it dead.
    assert at(m, T0 + 10_001, scan(n2=raw(2, counter=2))) == [
        Transition(2, PeerState.SUSPECT, PeerState.DEAD, 1)]


def test_reads_just_fresh_enough_still_declare_dead() -> None:
    """Fresh means within I + T (the peer's) + I (ours) of the last read."""
    m = membership()
    at(m, T0, scan(n2=raw(2, counter=1)))
    at(m, T0 + 5.5, scan(n2=raw(2, counter=1)))  # begun late enough to show a renewal
    m.evaluate(T0 + 8.5)  # last read 3 s ago: exactly the limit
    assert m.peers[2].state is PeerState.DEAD


def test_merge_of_two_disks_where_one_lags() -> None:
    m = membership()
    # Disk A has the newest write, disk B an older copy of the same slot.
    at(m, T0, scan(n2=raw(2, S.ALIVE, 1, 5)))
    m.observe(scan(n2=raw(2, S.JOINING, 1, 4)), T0)
    m.evaluate(T0)
    peer = m.peers[2]
    assert (peer.incarnation, peer.counter, peer.state) == (1, 5, PeerState.ALIVE)
    # A keeps moving, B keeps lagging: alive, and B never rolls the view back.
    for k in range(1, 10):
        m.observe(scan(n2=raw(2, S.ALIVE, 1, 5 + k)), T0 + k)
        m.observe(scan(n2=raw(2, S.ALIVE, 1, 4 + k)), T0 + k)
        m.evaluate(T0 + k)
        assert (peer.counter, peer.state) == (5 + k, PeerState.ALIVE)
    # A becomes unreadable; a write that landed only on B still counts.
    at(m, T0 + 10, scan(n2=raw(2, S.ALIVE, 1, 15)))
    assert peer.last_change == T0 + 10
    # B alone, stuck on an old value, does not keep the peer alive.
    hold_b = scan(n2=raw(2, S.ALIVE, 1, 15))
    for k in range(1, 8):
        at(m, T0 + 10 + k, hold_b)
    assert peer.state is PeerState.DEAD


def test_reads_of_a_minority_of_disks_never_declare_dead() -> None:
    """Seed 8228 of the campaign on ae2b25e, as a rule.

    The peer cannot write disk 1 but renews on disks 0 and 2 (a majority);
    the observer can read only disk 1.  A still counter there is no evidence:
    the peer renews where the observer cannot look.
    """
    m = Membership(1, TIMEOUTS, disk_count=3)
    for disk in range(3):
        m.observe(scan(n2=raw(2, counter=5)), T0, disk=disk)
    m.evaluate(T0)
    stuck = scan(n2=raw(2, counter=5))
    for k in range(1, 30):
        at_disk = T0 + k
        m.observe(stuck, at_disk, disk=1)
        m.evaluate(at_disk)
        assert m.peers[2].state is not PeerState.DEAD
    # A read of a second disk (begun after T0 + renew_fail + T) that shows the
    # same counter completes the majority: now the silence means it stopped.
    m.observe(stuck, T0 + 30, disk=0)
    assert m.evaluate(T0 + 30) == [Transition(2, PeerState.SUSPECT, PeerState.DEAD, 1)]


def test_a_read_begun_before_a_late_renewal_could_land_proves_nothing() -> None:
    """Last change at c: a renewal may begin up to c + renew_fail and land T later
    (plus half an interval of slack for clock rates)."""
    m = membership()
    at(m, T0, scan(n2=raw(2, counter=1)))
    stuck = scan(n2=raw(2, counter=1))
    # A slow read, issued at c + 5.25 and done at c + 7.5: it may have missed
    # a renewal that began at c + 3.9 and landed at c + 4.9 on a slower clock.
    m.observe(stuck, T0 + 7.5, begun_at=T0 + 5.25)
    m.evaluate(T0 + 7.5)
    assert m.peers[2].state is PeerState.SUSPECT
    m.observe(stuck, T0 + 8, begun_at=T0 + 5.5)  # c + renew_fail + T + I/2: it would show
    m.evaluate(T0 + 8)
    assert m.peers[2].state is PeerState.DEAD


@pytest.mark.parametrize("writes, dies", [(0, True), (1, True), (3, False)])
def test_a_reader_of_one_disk_does_not_judge_a_peer_that_writes_three(writes, dies) -> None:
    """``status`` given one device of a three-disk cluster: the peer's slot says
    how many disks it writes, and one of three is not a majority of them."""
    m = Membership(None, TIMEOUTS, disk_count=1)
    stuck = scan(n2=raw(2, counter=5, disk_count=writes))
    for k in range(0, 20):
        at(m, T0 + k, stuck)
    assert (m.peers[2].state is PeerState.DEAD) is dies


def test_a_damaged_copy_is_no_evidence_of_silence() -> None:
    m = Membership(1, TIMEOUTS, disk_count=3)
    for disk in range(3):
        m.observe(scan(n2=raw(2, counter=5)), T0, disk=disk)
    for k in range(1, 10):
        m.observe(scan(n2=raw(2, counter=5)), T0 + k, disk=0)
        m.observe(scan(n2=None), T0 + k, disk=1)  # the peer's slot there does not decode
        m.evaluate(T0 + k)
    assert m.peers[2].state is PeerState.SUSPECT
    m.observe(scan(n2=raw(2, counter=5)), T0 + 10, disk=2)
    m.evaluate(T0 + 10)
    assert m.peers[2].state is PeerState.DEAD


def test_lagging_disk_read_first_does_not_mask_a_change() -> None:
    m = membership()
    at(m, T0, scan(n2=raw(2, counter=5)))
    m.observe(scan(n2=raw(2, counter=4)), T0 + 1)   # lagging disk first
    m.observe(scan(n2=raw(2, counter=6)), T0 + 1)   # then the current one
    assert m.peers[2].last_change == T0 + 1
    assert m.peers[2].counter == 6


def test_damaged_slots_are_skipped() -> None:
    m = membership()
    at(m, T0, scan(n2=raw(2, counter=1), n3=None))
    assert 3 not in m.peers
    at(m, T0 + 1, scan(n2=None))
    assert m.peers[2].counter == 1  # a damaged read changes nothing


def test_slot_fields_are_copied_into_the_peer() -> None:
    m = membership(self_id=None)  # a status reader judges every slot
    at(m, T0, scan(n1=raw(1), n3=raw(3, name="db-\u00e9", mailbox_ack=4,
                                 dead_map=heartbeat.dead_map([1, 4]))))
    assert 1 in m.peers
    peer = m.peers[3]
    assert (peer.name, peer.mailbox_ack) == ("db-\u00e9", 4)
    assert peer.declared_dead == frozenset({1, 4})
    assert m.peers[1].declared_dead == frozenset()
    # A later write clearing the map clears the verdicts.
    at(m, T0 + 1, scan(n3=raw(3, counter=2)))
    assert m.peers[3].declared_dead == frozenset()


def test_peer_age_uses_the_last_change_or_first_sight() -> None:
    p = Peer(2)
    assert p.age(T0) is None
    p.first_seen = T0
    assert p.age(T0 + 2) == 2
    p.last_change = T0 + 1
    assert p.age(T0 + 2) == 1
    assert p.age(T0) == 0  # never negative


def test_gone_and_live_states_follow_what_a_slot_says_of_its_writer() -> None:
    """One definition (heartbeat.RUNNING): gone is dead or a slot that says its
    writer does not run; suspect is neither live nor gone (its lease stays)."""
    assert {s for s in PeerState if s.gone} == {
        PeerState.DEAD, PeerState.EMPTY, PeerState.LEFT, PeerState.FENCED}
    assert {s for s in PeerState if s.live} == {PeerState.ALIVE, PeerState.JOINING}
    assert heartbeat.RUNNING == {heartbeat.SlotState.JOINING, heartbeat.SlotState.ALIVE}
