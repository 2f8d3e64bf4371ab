"""The lifecycle rules: every allowed status change, declared once, pure.

Use cases ask these rules for the next status, and `store.case_rows.save_case` checks every
status it writes against them (`store.db.check_status`); `store.db` says what its flush guard
adds and what it does not cover.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from bridgebsr.errors import IllegalTransition
from models import CaseStatus, GateStatus, MilestoneStatus

CASE_ACTIONS: dict[str, tuple[frozenset[CaseStatus], CaseStatus]] = {
    "activate": (frozenset({CaseStatus.DRAFT}), CaseStatus.ACTIVE),
    "hold": (frozenset({CaseStatus.ACTIVE}), CaseStatus.ON_HOLD),
    "resume": (frozenset({CaseStatus.ON_HOLD}), CaseStatus.ACTIVE),
    "close": (frozenset({CaseStatus.ACTIVE}), CaseStatus.COMPLETED),
    "cancel": (
        frozenset({CaseStatus.DRAFT, CaseStatus.ACTIVE, CaseStatus.ON_HOLD}),
        CaseStatus.CANCELLED,
    ),
}

MILESTONE_ACTIONS: dict[str, tuple[frozenset[MilestoneStatus], MilestoneStatus]] = {
    "start": (frozenset({MilestoneStatus.PLANNED}), MilestoneStatus.IN_PROGRESS),
    "complete": (
        frozenset({MilestoneStatus.PLANNED, MilestoneStatus.IN_PROGRESS}),
        MilestoneStatus.DONE,
    ),
    "waive": (
        frozenset({MilestoneStatus.PLANNED, MilestoneStatus.IN_PROGRESS, MilestoneStatus.BLOCKED}),
        MilestoneStatus.WAIVED,
    ),
    "block": (
        frozenset({MilestoneStatus.PLANNED, MilestoneStatus.IN_PROGRESS}),
        MilestoneStatus.BLOCKED,
    ),
    "unblock": (frozenset({MilestoneStatus.BLOCKED}), MilestoneStatus.PLANNED),
    "reopen": (
        frozenset({MilestoneStatus.IN_PROGRESS, MilestoneStatus.DONE, MilestoneStatus.WAIVED}),
        MilestoneStatus.PLANNED,
    ),
}

GATE_ACTIONS: dict[str, tuple[frozenset[GateStatus], GateStatus]] = {
    "open": (frozenset({GateStatus.PENDING}), GateStatus.OPEN),
    "approve": (frozenset({GateStatus.OPEN}), GateStatus.APPROVED),
    "reject": (frozenset({GateStatus.OPEN}), GateStatus.REJECTED),
    "reopen": (
        frozenset({GateStatus.OPEN, GateStatus.APPROVED, GateStatus.REJECTED}),
        GateStatus.PENDING,
    ),
}

ACTIVE_WORK = frozenset({CaseStatus.ACTIVE})
S = TypeVar("S", bound=StrEnum)


@dataclass(frozen=True)
class Change:
    """An audit event to persist: what kind, on which item, before and after."""

    kind: str
    subject: str | None
    before: dict[str, Any]
    after: dict[str, Any]


def next_status(
    actions: dict[str, tuple[frozenset[S], S]], action: str, current: S, what: str
) -> S:
    """The status `action` leads to from `current`, or a refusal naming what is allowed."""
    allowed, target = actions[action]
    if current not in allowed:
        froms = ", ".join(sorted(s.value for s in allowed))
        raise IllegalTransition(
            f"cannot {action} {what}: it is {current.value} (allowed only when {froms})"
        )
    return target


def allowed_pairs(actions: dict[str, tuple[frozenset[S], S]]) -> set[tuple[S, S]]:
    """Every (from, to) status pair some action allows."""
    return {(old, new) for allowed, new in actions.values() for old in allowed}


def case_change(action: str, key: str, current: CaseStatus) -> tuple[CaseStatus, Change]:
    """Hold, resume, close or cancel a case."""
    new = next_status(CASE_ACTIONS, action, current, f"case {key}")
    return new, Change(f"case.{action}", None, {"status": current.value}, {"status": new.value})


def require_case_active(key: str, status: CaseStatus, doing: str) -> None:
    """Refuse work on a case that is not active (on hold, completed, cancelled, draft)."""
    if status not in ACTIVE_WORK:
        hint = "; resume it first" if status is CaseStatus.ON_HOLD else ""
        raise IllegalTransition(f"cannot {doing}: case {key} is {status.value}{hint}")


def milestone_change(
    action: str, case_key: str, key: str, current: MilestoneStatus, open_predecessors: list[str]
) -> tuple[MilestoneStatus, Change]:
    """Start, complete or waive a milestone; strict predecessors must be finished first."""
    what = f"milestone {key} of {case_key}"
    new = next_status(MILESTONE_ACTIONS, action, current, what)
    if open_predecessors and action in {"start", "complete"}:
        raise IllegalTransition(
            f"cannot {action} {what}: predecessors not finished: {', '.join(open_predecessors)}"
        )
    return new, Change(f"milestone.{action}", key, {"status": current.value}, {"status": new.value})
