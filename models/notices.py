"""A notice for the outbox: what it says (`NoticePayload`, the row's JSON payload) and who
gets it when (`OutboxNotice`). The case office fills them; the post office keys, stores and
sends them (`notifications.enqueue`).

A pass makes tens of thousands of them, so both are slotted dataclasses (cheap to make, one
object each); pydantic gives the payload's JSON form and reads it back, checked
(`as_json`, `NoticePayload.read`).
"""

from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any, Literal

from pydantic import TypeAdapter

ItemKind = Literal["milestone", "gate"]

# Steps of notices that are not ladder steps: the case version or the retired contact follows.
HANDOVER = "handover-"  # an item changed hands: both sides are told
TAKEOVER = "takeover-"  # a successor is told what they took over from someone who left
DATE_ASKED = "date-asked-"  # a pilot lead is told an owner asks for a new due date (request id)
DATE_ANSWERED = "date-answered-"  # the owner is told the answer to their request (request id)
DATE_WITHDRAWN = "date-withdrawn-"  # the pilot leads are told a request was withdrawn (request id)
VOTE_ENTERED = "vote-entered"  # an approver is told a pilot lead entered a vote in their name


@dataclass(frozen=True, slots=True)
class NoticePayload:
    """What a notice says about an item and the ladder step it reached: the outbox row's
    `payload`, as `as_json` gives it."""

    case: str
    case_title: str
    pilot: str
    country: str
    item: str
    item_kind: ItemKind
    item_title: str
    due: date  # what the ladder counts from: a milestone's planned due date, a gate's deadline
    days_late: int
    step: str
    offset: int
    round: int  # a gate's round; a milestone's rework round (1 until rework reopens it)
    baseline: date | None = None  # a milestone's original due date (None: as `due`; gates)
    run: str | None = None  # the flow run that found it, if a flow did
    note: str | None = None  # what a notice that is no ladder step says (a handover, a request)
    to_look_at: str | None = None  # a gate's: what to look at before deciding (its evidence)

    def as_json(self) -> dict[str, Any]:
        """The payload as the outbox stores it (JSON types; no `run` when none)."""
        data: dict[str, Any] = _payload().dump_python(self, mode="json", exclude_none=True)
        return data

    @classmethod
    def read(cls, data: Any) -> "NoticePayload":
        """A stored payload, checked against the model."""
        return _payload().validate_python(data)


@cache
def _payload() -> TypeAdapter[NoticePayload]:
    """The payload's pydantic adapter, built on first use: commands that write no notice
    (most of the CLI) do not pay for building it."""
    return TypeAdapter(NoticePayload)


@dataclass(frozen=True, slots=True)
class OutboxNotice:
    """One notice to put in the outbox: about which case, for whom, on which day its step
    fell, whether it is urgent, and what it says (the recipients of one step of one item
    share its payload)."""

    case_id: int
    recipient_id: int
    recipient: str  # the recipient's address, part of the notice's dedupe key
    urgent: bool
    fire_on: date
    payload: NoticePayload
