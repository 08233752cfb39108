"""Tests for shareddisk.oprequest: the op request and outcome texts, typed.

The texts are read by other processes and other versions: the ones earlier
versions wrote must parse to the same values, and what is written now must be
the same bytes they wrote.
"""

from __future__ import annotations

import json

import pytest

from shareddisk.operations import outcome
from shareddisk.oprequest import OpOutcome, OpRequest

# As the CLI and the simulation wrote them before this module (json.dumps, sort_keys).
OLD_REQUEST = '{"args": {"name": "v1", "size": 4194304}, "id": "3f2a9c1b7d4e", "kind": "create-volume"}'
OLD_COMMITTED = '{"kind": "create-volume", "op_id": 7, "request": "3f2a9c1b7d4e", "status": "committed"}'
OLD_FAILED = '{"error": "no space left", "request": "3f2a9c1b7d4e", "status": "failed"}'
OLD_BAD = '{"kind": null, "op_id": null, "request": "", "status": "bad request"}'


def test_an_old_request_parses_and_is_written_back_byte_for_byte() -> None:
    request = OpRequest.from_json(OLD_REQUEST)
    assert request == OpRequest("3f2a9c1b7d4e", "create-volume", {"name": "v1", "size": 4 << 20})
    assert request.to_json() == OLD_REQUEST


@pytest.mark.parametrize("text", [OLD_COMMITTED, OLD_FAILED, OLD_BAD])
def test_old_outcomes_parse_and_are_written_back_byte_for_byte(text: str) -> None:
    assert OpOutcome.from_json(text).to_json() == text


def test_the_owner_writes_the_outcome_text_it_always_wrote() -> None:
    class Op:
        op_id, kind = 7, "create-volume"

    assert outcome(Op(), "3f2a9c1b7d4e", "committed") == OLD_COMMITTED  # type: ignore[arg-type]
    assert outcome(None, "", "bad request") == OLD_BAD
    assert OpOutcome("3f2a9c1b7d4e", "failed", error="no space left").to_json() == OLD_FAILED


@pytest.mark.parametrize("text", [
    "", "not json", "[1, 2]", '{"id": "a", "kind": "create-volume"}',  # no args
    '{"id": "", "kind": "create-volume", "args": {}}',  # empty id
    '{"id": "a", "kind": "format-disk", "args": {}}',  # unknown kind
    '{"id": "a", "kind": "create-volume", "args": [1]}',  # args not an object
    '{"id": true, "kind": "create-volume", "args": {}}',
    '{"id": "a", "kind": "create-volume", "args": {}, "extra": 1}',
])
def test_a_damaged_or_foreign_request_is_refused_as_a_whole(text: str) -> None:
    with pytest.raises(ValueError):
        OpRequest.from_json(text)


@pytest.mark.parametrize("text", [
    None, "", "{}", '{"request": "a"}', '{"request": 5, "status": "committed"}',
    '{"request": "a", "status": "committed", "op_id": "7"}',
    '{"request": "a", "status": "committed", "surprise": 1}',
])
def test_a_damaged_outcome_is_refused(text: object) -> None:
    with pytest.raises(ValueError):
        OpOutcome.from_json(text)


def test_a_command_waits_only_for_its_own_parsable_outcome() -> None:
    mine = {"last_op": OLD_COMMITTED}
    assert OpOutcome.answering(mine, "3f2a9c1b7d4e") == OpOutcome(
        "3f2a9c1b7d4e", "committed", 7, "create-volume")
    assert OpOutcome.answering(mine, "another") is None
    assert OpOutcome.answering({}, "3f2a9c1b7d4e") is None
    assert OpOutcome.answering({"last_op": "{broken"}, "3f2a9c1b7d4e") is None


def test_a_request_keeps_its_args_as_given() -> None:
    args = {"name": "v1", "new_name": "v2"}
    text = OpRequest("q1", "rename-volume", args).to_json()
    assert json.loads(text) == {"id": "q1", "kind": "rename-volume", "args": args}
