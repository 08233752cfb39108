"""An operation request and its outcome, as they travel in a resource's attributes.

A command asks the owner of a resource to run a logged operation by writing
``op_request``; the owner answers in ``last_op``.  Both are JSON text in the
record, read by other processes and other versions, so each has one typed
form here, checked when parsed: a damaged or foreign text is refused as a
whole (ValueError) instead of failing later on a missing key.  The text
written is the one earlier versions wrote (keys sorted), so records already
on a disk parse, and old readers read new records.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from shareddisk.drivers.base import KINDS

REQUEST_KEY = "op_request"  # the attribute a command writes
OUTCOME_KEY = "last_op"  # the attribute the owner answers in


def new_request_id() -> str:
    """A short id a command waits for in ``last_op``."""
    return uuid.uuid4().hex[:12]


def _object(text: Any, what: str) -> dict[str, Any]:
    if not isinstance(text, str) or not text:
        raise ValueError(f"{what}: not a JSON text")
    data = json.loads(text)  # ValueError (JSONDecodeError) when it is not JSON
    if not isinstance(data, dict):
        raise ValueError(f"{what}: not a JSON object")
    return data


@dataclass(frozen=True)
class OpRequest:
    """``op_request``: run ``kind`` with ``args`` once, answering as request ``id``."""

    id: str
    kind: str
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError("op request: the id must be a non-empty string")
        if self.kind not in KINDS:
            raise ValueError(f"op request: unknown kind {self.kind!r}")
        if not isinstance(self.args, dict):
            raise ValueError("op request: args must be an object")

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "kind": self.kind, "args": self.args}, sort_keys=True)

    @classmethod
    def from_json(cls, text: Any) -> "OpRequest":
        """The request in ``text``; ValueError when it is not a whole, valid one."""
        data = _object(text, "op request")
        if set(data) != {"id", "kind", "args"}:
            raise ValueError(f"op request: keys {sorted(data)}, not args, id and kind")
        # Earlier writers always wrote a string id; a number is taken as its text.
        raw_id = data["id"]
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
            raise ValueError("op request: the id must be a string")
        return cls(str(raw_id), data["kind"], data["args"])


@dataclass(frozen=True)
class OpOutcome:
    """``last_op``: how request ``request`` ended.

    ``status`` is "committed", "failed" (with ``error``) or "bad request"
    (a request that did not parse: ``request`` is then empty).  ``op_id``
    and ``kind`` name the logged operation when there was one.
    """

    request: str
    status: str
    op_id: int | None = None
    kind: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.request, str):
            raise ValueError("op outcome: the request id must be a string")
        if not isinstance(self.status, str) or not self.status:
            raise ValueError("op outcome: no status")
        if self.op_id is not None and (isinstance(self.op_id, bool)
                                       or not isinstance(self.op_id, int)):
            raise ValueError("op outcome: op_id must be an integer")
        if self.kind is not None and not isinstance(self.kind, str):
            raise ValueError("op outcome: kind must be a string")
        if self.error is not None and not isinstance(self.error, str):
            raise ValueError("op outcome: error must be a string")

    @property
    def committed(self) -> bool:
        return self.status == "committed"

    def to_dict(self) -> dict[str, Any]:
        """The keys as written: op_id and kind (even null) unless the outcome is an
        error; error only when there is one (as earlier versions wrote them)."""
        out: dict[str, Any] = {"request": self.request, "status": self.status}
        if self.error is None or self.op_id is not None:
            out["op_id"] = self.op_id
        if self.error is None or self.kind is not None:
            out["kind"] = self.kind
        if self.error is not None:
            out["error"] = self.error
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: Any) -> "OpOutcome":
        """The outcome in ``text``; ValueError when it is not a whole, valid one."""
        data = _object(text, "op outcome")
        unknown = set(data) - {"request", "status", "op_id", "kind", "error"}
        if unknown or "request" not in data or "status" not in data:
            raise ValueError(f"op outcome: keys {sorted(data)}")
        return cls(data["request"], data["status"], data.get("op_id"), data.get("kind"),
                   data.get("error"))

    @classmethod
    def answering(cls, record_attributes: dict[str, Any], request_id: str) -> "OpOutcome | None":
        """The outcome of ``request_id`` in a record's attributes, None while there is
        none (no ``last_op`` yet, another request's, or one that does not parse)."""
        try:
            found = cls.from_json(record_attributes.get(OUTCOME_KEY))
        except ValueError:
            return None
        return found if found.request == request_id else None
