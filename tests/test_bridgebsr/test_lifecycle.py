"""The lifecycle rules: each allowed change, each refusal, and that nothing slips between."""

from enum import StrEnum
from itertools import product
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridgebsr.errors import IllegalTransition
from bridgebsr.rules.lifecycle import (
    CASE_ACTIONS,
    GATE_ACTIONS,
    MILESTONE_ACTIONS,
    Change,
    allowed_pairs,
    case_change,
    milestone_change,
    next_status,
    require_case_active,
)
from models import CaseStatus, GateStatus, MilestoneStatus

CS, MS, GS = CaseStatus, MilestoneStatus, GateStatus

# The rules written out by hand, (action, from) -> to, from DESIGN.md's statuses.
CASE_RULES = {
    ("activate", CS.DRAFT): CS.ACTIVE,
    ("hold", CS.ACTIVE): CS.ON_HOLD,
    ("resume", CS.ON_HOLD): CS.ACTIVE,
    ("close", CS.ACTIVE): CS.COMPLETED,
    ("cancel", CS.DRAFT): CS.CANCELLED,
    ("cancel", CS.ACTIVE): CS.CANCELLED,
    ("cancel", CS.ON_HOLD): CS.CANCELLED,
}
MILESTONE_RULES = {
    ("start", MS.PLANNED): MS.IN_PROGRESS,
    ("complete", MS.PLANNED): MS.DONE,
    ("complete", MS.IN_PROGRESS): MS.DONE,
    ("waive", MS.PLANNED): MS.WAIVED,
    ("waive", MS.IN_PROGRESS): MS.WAIVED,
    ("waive", MS.BLOCKED): MS.WAIVED,
    ("block", MS.PLANNED): MS.BLOCKED,
    ("block", MS.IN_PROGRESS): MS.BLOCKED,
    ("unblock", MS.BLOCKED): MS.PLANNED,
    ("reopen", MS.IN_PROGRESS): MS.PLANNED,
    ("reopen", MS.DONE): MS.PLANNED,
    ("reopen", MS.WAIVED): MS.PLANNED,
}
GATE_RULES = {
    ("open", GS.PENDING): GS.OPEN,
    ("approve", GS.OPEN): GS.APPROVED,
    ("reject", GS.OPEN): GS.REJECTED,
    ("reopen", GS.OPEN): GS.PENDING,
    ("reopen", GS.APPROVED): GS.PENDING,
    ("reopen", GS.REJECTED): GS.PENDING,
}


def _every_pair(
    actions: dict[str, Any], statuses: type[StrEnum], rules: dict[tuple[str, Any], Any]
) -> list[Any]:
    return [
        pytest.param(action, status, rules.get((action, status)), id=f"{action}-{status.value}")
        for action, status in product(sorted(actions), statuses)
    ]


def test_the_declared_tables_are_the_rules_written_out() -> None:
    for actions, rules in (
        (CASE_ACTIONS, CASE_RULES),
        (MILESTONE_ACTIONS, MILESTONE_RULES),
        (GATE_ACTIONS, GATE_RULES),
    ):
        declared = {(action, old): new for action, (froms, new) in actions.items() for old in froms}
        assert declared == rules


def test_allowed_pairs() -> None:
    assert allowed_pairs(CASE_ACTIONS) == {
        (CS.DRAFT, CS.ACTIVE),
        (CS.ACTIVE, CS.ON_HOLD),
        (CS.ON_HOLD, CS.ACTIVE),
        (CS.ACTIVE, CS.COMPLETED),
        (CS.DRAFT, CS.CANCELLED),
        (CS.ACTIVE, CS.CANCELLED),
        (CS.ON_HOLD, CS.CANCELLED),
    }
    assert allowed_pairs(GATE_ACTIONS) == {
        (GS.PENDING, GS.OPEN),
        (GS.OPEN, GS.APPROVED),
        (GS.OPEN, GS.REJECTED),
        (GS.OPEN, GS.PENDING),
        (GS.APPROVED, GS.PENDING),
        (GS.REJECTED, GS.PENDING),
    }
    assert allowed_pairs(MILESTONE_ACTIONS) == {
        (MS.PLANNED, MS.IN_PROGRESS),
        (MS.PLANNED, MS.DONE),
        (MS.IN_PROGRESS, MS.DONE),
        (MS.PLANNED, MS.WAIVED),
        (MS.IN_PROGRESS, MS.WAIVED),
        (MS.BLOCKED, MS.WAIVED),
        (MS.PLANNED, MS.BLOCKED),
        (MS.IN_PROGRESS, MS.BLOCKED),
        (MS.BLOCKED, MS.PLANNED),
        (MS.IN_PROGRESS, MS.PLANNED),
        (MS.DONE, MS.PLANNED),
        (MS.WAIVED, MS.PLANNED),
    }


@pytest.mark.parametrize(
    ("action", "status", "expected"), _every_pair(CASE_ACTIONS, CS, CASE_RULES)
)
def test_case_change(action: str, status: CaseStatus, expected: CaseStatus | None) -> None:
    if expected is None:
        with pytest.raises(IllegalTransition) as refused:
            case_change(action, "IP-2026-0001", status)
        message = str(refused.value)
        assert message.startswith(f"cannot {action} case IP-2026-0001: it is {status.value} (")
        return
    new, change = case_change(action, "IP-2026-0001", status)
    assert new is expected
    assert change == Change(
        f"case.{action}", None, {"status": status.value}, {"status": expected.value}
    )


@pytest.mark.parametrize(
    ("action", "status", "expected"), _every_pair(MILESTONE_ACTIONS, MS, MILESTONE_RULES)
)
def test_milestone_change(
    action: str, status: MilestoneStatus, expected: MilestoneStatus | None
) -> None:
    if expected is None:
        with pytest.raises(IllegalTransition) as refused:
            milestone_change(action, "SME-2026-0007", "nda", status, [])
        assert str(refused.value).startswith(
            f"cannot {action} milestone nda of SME-2026-0007: it is {status.value} ("
        )
        return
    new, change = milestone_change(action, "SME-2026-0007", "nda", status, [])
    assert new is expected
    assert change == Change(
        f"milestone.{action}", "nda", {"status": status.value}, {"status": expected.value}
    )


@pytest.mark.parametrize(
    ("action", "status", "expected"), _every_pair(GATE_ACTIONS, GS, GATE_RULES)
)
def test_gate_next_status(action: str, status: GateStatus, expected: GateStatus | None) -> None:
    if expected is None:
        with pytest.raises(IllegalTransition) as refused:
            next_status(GATE_ACTIONS, action, status, "gate council-approval")
        assert str(refused.value).startswith(
            f"cannot {action} gate council-approval: it is {status.value} ("
        )
        return
    assert next_status(GATE_ACTIONS, action, status, "gate council-approval") is expected


def test_a_refusal_says_which_statuses_allow_the_action() -> None:
    with pytest.raises(IllegalTransition) as refused:
        case_change("cancel", "IP-2026-0001", CS.COMPLETED)
    assert str(refused.value) == (
        "cannot cancel case IP-2026-0001: it is completed "
        "(allowed only when active, draft, on_hold)"
    )
    with pytest.raises(IllegalTransition) as refused:
        milestone_change("start", "IP-2026-0001", "kickoff", MS.DONE, [])
    assert str(refused.value) == (
        "cannot start milestone kickoff of IP-2026-0001: it is done (allowed only when planned)"
    )


@pytest.mark.parametrize("action", ["start", "complete"])
def test_start_and_complete_wait_for_open_predecessors(action: str) -> None:
    with pytest.raises(IllegalTransition) as refused:
        milestone_change(action, "SME-2026-0007", "match-proposal", MS.PLANNED, ["nda", "search"])
    assert str(refused.value) == (
        f"cannot {action} milestone match-proposal of SME-2026-0007: "
        "predecessors not finished: nda, search"
    )


@pytest.mark.parametrize(
    ("action", "status", "expected"),
    [
        ("waive", MS.PLANNED, MS.WAIVED),
        ("block", MS.PLANNED, MS.BLOCKED),
        ("reopen", MS.DONE, MS.PLANNED),
    ],
)
def test_other_actions_ignore_open_predecessors(
    action: str, status: MilestoneStatus, expected: MilestoneStatus
) -> None:
    new, _ = milestone_change(action, "SME-2026-0007", "nda", status, ["triage-decision"])
    assert new is expected


def test_an_illegal_status_is_refused_before_open_predecessors() -> None:
    with pytest.raises(IllegalTransition, match="it is done"):
        milestone_change("complete", "SME-2026-0007", "nda", MS.DONE, ["triage-decision"])


def test_require_case_active() -> None:
    require_case_active("IP-2026-0001", CS.ACTIVE, "start kickoff")
    with pytest.raises(IllegalTransition) as refused:
        require_case_active("IP-2026-0001", CS.ON_HOLD, "start kickoff")
    assert str(refused.value) == (
        "cannot start kickoff: case IP-2026-0001 is on_hold; resume it first"
    )


@pytest.mark.parametrize("status", [CS.DRAFT, CS.COMPLETED, CS.CANCELLED])
def test_require_case_active_refuses_without_a_resume_hint(status: CaseStatus) -> None:
    with pytest.raises(IllegalTransition) as refused:
        require_case_active("IP-2026-0001", status, "approve council-approval")
    assert str(refused.value) == (
        f"cannot approve council-approval: case IP-2026-0001 is {status.value}"
    )


def _walk(start: Any, steps: list[str], change: Any) -> tuple[set[tuple[Any, Any]], set[Any]]:
    """Apply `steps` from `start`, skipping refusals; the pairs taken and statuses seen."""
    status, taken, seen = start, set(), {start}
    for action in steps:
        try:
            new = change(action, status)
        except IllegalTransition:
            continue
        taken.add((status, new))
        status = new
        seen.add(status)
    return taken, seen


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.sampled_from(sorted(CASE_ACTIONS)), max_size=30))
def test_random_case_actions_stay_within_the_declared_pairs(steps: list[str]) -> None:
    taken, seen = _walk(CS.DRAFT, steps, lambda a, s: case_change(a, "K", s)[0])
    assert taken <= allowed_pairs(CASE_ACTIONS)
    assert seen <= set(CS)
    # Once closed, a case stays closed.
    closed = [s for s in (CS.COMPLETED, CS.CANCELLED) if s in seen]
    assert len(closed) <= 1
    assert all(old not in closed for old, _ in taken)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.sampled_from(sorted(MILESTONE_ACTIONS)), max_size=30))
def test_random_milestone_actions_stay_within_the_declared_pairs(steps: list[str]) -> None:
    taken, _ = _walk(MS.PLANNED, steps, lambda a, s: milestone_change(a, "K", "m", s, [])[0])
    assert taken <= allowed_pairs(MILESTONE_ACTIONS)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.sampled_from(sorted(GATE_ACTIONS)), max_size=30))
def test_random_gate_actions_stay_within_the_declared_pairs(steps: list[str]) -> None:
    taken, _ = _walk(GS.PENDING, steps, lambda a, s: next_status(GATE_ACTIONS, a, s, "g"))
    assert taken <= allowed_pairs(GATE_ACTIONS)


@pytest.mark.parametrize("final", [CS.COMPLETED, CS.CANCELLED])
def test_a_closed_case_accepts_no_action(final: CaseStatus) -> None:
    for action in CASE_ACTIONS:
        with pytest.raises(IllegalTransition):
            case_change(action, "K", final)
