"""How recorded progress moves a case: one step on a `Plan` in, the audit changes out.

Pure (no database): the milestone commands (`office.progress`) apply one step and settle it
in a transaction each; `case import` replays a file's steps on a case it opens with the same
`step`, then settles once (`settle`).
"""

from collections.abc import Sequence
from datetime import date, datetime

from bridgebsr.errors import IllegalTransition, InvalidInput
from bridgebsr.rules import lifecycle, planning
from bridgebsr.rules.lifecycle import Change
from bridgebsr.rules.rows import GateRow, MilestoneRow
from models import GateStatus, MilestoneStatus, Template, TimeoutOutcome


def step(plan: planning.Plan, milestone: MilestoneRow, action: str, day: date) -> Change:
    """Start, complete or waive `milestone` on `day`: the lifecycle rules (a strict milestone
    starts or completes only after its predecessors finished, and not before the day they
    did), then its status and dates; the change notes the day (and days late on finishing)."""
    blocking = planning.open_predecessors(plan, milestone) if milestone.strict else []
    new, change = lifecycle.milestone_change(
        action, plan.case.key, milestone.key, milestone.status, blocking
    )
    check_order(plan, milestone, action, day)
    milestone.status = new
    if new in {MilestoneStatus.IN_PROGRESS, MilestoneStatus.DONE}:
        milestone.started_on = milestone.started_on or day
    if new in {MilestoneStatus.DONE, MilestoneStatus.WAIVED}:
        milestone.finished_on = day
        late = (day - milestone.planned_due).days
        change.after.update({"finished_on": day.isoformat(), "days_late": max(late, 0)})
    else:
        change.after["started_on"] = day.isoformat()
    return change


def check_order(plan: planning.Plan, milestone: MilestoneRow, action: str, day: date) -> None:
    """A backdated change may not put a milestone before its own start or its predecessors."""
    what = f"{milestone.key} of {plan.case.key}"
    if milestone.started_on is not None and day < milestone.started_on:
        raise InvalidInput(f"--on {day} is before {what} started ({milestone.started_on})")
    if not milestone.strict or action == "waive":
        return
    by_key = {n.key: n for n in plan.nodes()}
    for link in milestone.depends_on:
        finished = planning.finish_date(by_key[link["key"]])
        if finished is not None and day < finished:
            raise InvalidInput(
                f"--on {day} is before predecessor {link['key']} of {what} finished ({finished})"
            )


def settle(
    plan: planning.Plan, template: Template, today: date, changes: Sequence[Change]
) -> list[Change]:
    """Reforecast after `changes` (`planning.reforecast`): the gates that opened, as changes
    of their own; the last of `changes` notes the case forecast before and after when it
    moved."""
    case = plan.case
    before = case.forecast_date
    more = planning.reforecast(plan, template, today)
    if case.forecast_date != before and changes:
        last = changes[-1]
        last.after["case_forecast"] = case.forecast_date.isoformat()
        last.before["case_forecast"] = before.isoformat()
    return more


def next_gate(action: str, gate: GateRow) -> GateStatus:
    """The status a gate action leads to (refused when the gate's status does not allow it)."""
    return lifecycle.next_status(lifecycle.GATE_ACTIONS, action, gate.status, f"gate {gate.key}")


def check_decision(plan: planning.Plan, gate: GateRow, decision: str) -> None:
    """Refuse a decision on a gate still waiting for its predecessors, or not open."""
    what = f"gate {gate.key} of {plan.case.key}"
    if gate.status is GateStatus.PENDING:
        waiting = ", ".join(planning.open_predecessors(plan, gate))
        raise IllegalTransition(f"cannot {decision} {what}: still waiting for {waiting}")
    lifecycle.next_status(lifecycle.GATE_ACTIONS, decision, gate.status, what)


def approve(gate: GateRow, approvals: int, today: date) -> list[Change]:
    """One more approval: the gate passes when `approvals` reach the required count."""
    votes = {"approvals": approvals, "required": gate.required, "round": gate.round}
    if approvals < gate.required:
        return [
            Change(
                "gate.vote",
                gate.key,
                {"status": gate.status.value},
                {"status": gate.status.value, "decision": "approve", **votes},
            )
        ]
    gate.status = next_gate("approve", gate)
    gate.decided_on = today
    return [
        Change(
            "gate.approve",
            gate.key,
            {"status": GateStatus.OPEN.value},
            {"status": gate.status.value, **votes},
        )
    ]


def reject(
    plan: planning.Plan, template: Template, gate: GateRow, today: date, now: datetime
) -> list[Change]:
    """A rejection: the case goes back to the gate's rework stage, or is cancelled."""
    gate.status = next_gate("reject", gate)
    gate.decided_on = today
    changes = [
        Change(
            "gate.reject",
            gate.key,
            {"status": GateStatus.OPEN.value},
            {"status": gate.status.value, "round": gate.round},
        )
    ]
    if gate.rework_stage is None:
        case = plan.case
        new, cancel = lifecycle.case_change("cancel", case.key, case.status)
        case.status, case.closed_at = new, now
        cancel.after["because"] = f"gate {gate.key} rejected"
        return [*changes, cancel]
    return changes + _rework(plan, template, gate, gate.rework_stage)


def _rework(plan: planning.Plan, template: Template, gate: GateRow, stage: str) -> list[Change]:
    """Send the case back: reopen finished milestones from `stage` up to the gate's stage,
    each in a new round (its ladder fires again)."""
    first, last = template.stage_index(stage), template.stage_index(gate.stage)
    changes = []
    for m in plan.milestones:
        in_range = first <= template.stage_index(m.stage) <= last
        if in_range and m.status in {MilestoneStatus.DONE, MilestoneStatus.WAIVED}:
            old = m.status
            m.status = lifecycle.next_status(lifecycle.MILESTONE_ACTIONS, "reopen", m.status, m.key)
            m.started_on = m.finished_on = m.overdue_on = None
            m.round += 1  # its escalation ladder speaks again, for the new round
            changes.append(
                Change(
                    "milestone.reopen",
                    m.key,
                    {"status": old.value, "round": m.round - 1},
                    {
                        "status": m.status.value,
                        "round": m.round,
                        "because": f"gate {gate.key} rejected",
                    },
                )
            )
    gate.status = next_gate("reopen", gate)
    gate.round += 1
    gate.opened_on = gate.deadline = gate.decided_on = gate.expired_on = None
    changes.append(
        Change(
            "gate.reopen",
            gate.key,
            {"status": GateStatus.REJECTED.value},
            {"status": gate.status.value, "round": gate.round, "rework": stage},
        )
    )
    return changes


def time_out(
    plan: planning.Plan, template: Template, gate: GateRow, today: date, now: datetime
) -> list[Change]:
    """An open gate past its deadline: marked expired, then its timeout outcome applied
    (approve, or reject as `reject` does)."""
    assert gate.deadline is not None
    gate.expired_on = today
    outcome = gate.on_timeout
    expired = Change(
        "gate.expired",
        gate.key,
        {"status": gate.status.value},
        {"deadline": gate.deadline.isoformat(), "round": gate.round, "outcome": outcome.value},
    )
    if outcome is not TimeoutOutcome.APPROVE:
        return [expired, *reject(plan, template, gate, today, now)]
    gate.status = next_gate("approve", gate)
    gate.decided_on = today
    approved = Change(
        "gate.approve",
        gate.key,
        {"status": GateStatus.OPEN.value},
        {"status": gate.status.value, "round": gate.round, "because": "deadline passed"},
    )
    return [expired, approved]
