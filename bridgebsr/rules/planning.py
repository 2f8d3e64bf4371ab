"""Keeping a case's dates true: forecast, critical path, current stage, gates opening."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from bridgebsr.rules import lifecycle
from bridgebsr.rules.calendars import WorkCalendar
from bridgebsr.rules.lifecycle import Change
from bridgebsr.rules.rows import CaseRow, GateRow, MilestoneRow, Node
from bridgebsr.rules.schedule import Item, Link, Slot, schedule
from models import FINISHED_MILESTONE, DayKind, GateStatus, Template


@dataclass(frozen=True)
class Plan:
    """A case's rows with the calendars that date them."""

    case: CaseRow
    milestones: Sequence[MilestoneRow]
    gates: Sequence[GateRow]
    calendars: dict[int | None, WorkCalendar]

    def nodes(self) -> list[Node]:
        """Milestones then gates, in template order."""
        return [*self.milestones, *self.gates]

    def calendar(self, node: Node) -> WorkCalendar:
        """A milestone follows its owner's country; a gate, and anything unowned, the case's."""
        owner = node.owner_id if isinstance(node, MilestoneRow) else None
        return self.calendars.get(owner) or self.calendars[None]


def is_finished(node: Node) -> bool:
    """Done or waived milestone; approved gate."""
    if isinstance(node, MilestoneRow):
        return node.status in FINISHED_MILESTONE
    return node.status is GateStatus.APPROVED


def finish_date(node: Node) -> date | None:
    """When a finished item finished."""
    return _finished_on(node) if isinstance(node, MilestoneRow) else _decided_on(node)


def _finished_on(milestone: MilestoneRow) -> date | None:
    return milestone.finished_on if is_finished(milestone) else None


def _decided_on(gate: GateRow) -> date | None:
    return gate.decided_on if is_finished(gate) else None


def items(plan: Plan, *, actual: bool) -> list[Item]:
    """The scheduler's view of every milestone and gate (with actual dates when `actual`)."""
    calendars = plan.calendars
    default = calendars[None]
    out = [
        Item(
            m.key,
            m.duration,
            m.days,
            calendars.get(m.owner_id) or default,
            _after(m.depends_on),
            m.started_on if actual else None,
            _finished_on(m) if actual else None,
        )
        for m in plan.milestones
    ]
    out.extend(
        Item(
            g.key,
            g.deadline_days,
            g.days,
            default,
            _after(g.depends_on),
            g.opened_on if actual else None,
            _decided_on(g) if actual else None,
        )
        for g in plan.gates
    )
    return out


def _after(depends_on: list[dict[str, Any]]) -> tuple[Link, ...]:
    return tuple(_link(d["key"], d["lag"], d["days"]) for d in depends_on)


@lru_cache(maxsize=4096)
def _link(key: str, lag: int, days: str) -> Link:
    """A dependency as the scheduler sees it; links are immutable, so each is built once."""
    return Link(key, int(lag), DayKind(days))


def baseline(plan: Plan) -> dict[str, Slot]:
    """Planned dates from the case start, ignoring progress."""
    return schedule(items(plan, actual=False), plan.case.start_date)


def reforecast(plan: Plan, template: Template, today: date) -> list[Change]:
    """Open gates whose predecessors finished, then move forecasts and the current stage."""
    changes = _open_ready_gates(plan, today)
    slots = schedule(items(plan, actual=True), plan.case.start_date, today)
    for node in plan.nodes():
        slot = slots[node.key]
        # Only what moved is written: an unchanged value is not set again.
        if node.forecast_start != slot.start:
            node.forecast_start = slot.start
        if node.forecast_due != slot.due:
            node.forecast_due = slot.due
        if node.critical != slot.critical:
            node.critical = slot.critical
    case = plan.case
    forecast = max(slot.due for slot in slots.values())
    if case.forecast_date != forecast:
        case.forecast_date = forecast
    stage = current_stage(plan, template)
    if case.current_stage != stage:
        case.current_stage = stage
    return changes


def current_stage(plan: Plan, template: Template) -> str | None:
    """The first stage, in template order, with unfinished work (None when all is finished)."""
    open_stages = {n.stage for n in plan.nodes() if not is_finished(n)}
    return next((s.key for s in template.stages if s.key in open_stages), None)


def open_predecessors(plan: Plan, node: Node) -> list[str]:
    """Keys of this item's predecessors that are not finished."""
    by_key = {n.key: n for n in plan.nodes()}
    return [d["key"] for d in node.depends_on if not is_finished(by_key[d["key"]])]


def _open_ready_gates(plan: Plan, today: date) -> list[Change]:
    changes = []
    for gate in plan.gates:
        if gate.status is GateStatus.PENDING and not open_predecessors(plan, gate):
            new = lifecycle.next_status(
                lifecycle.GATE_ACTIONS, "open", gate.status, f"gate {gate.key}"
            )
            gate.status = new
            gate.opened_on = today
            gate.deadline = plan.calendar(gate).add(today, gate.deadline_days, gate.days)
            changes.append(
                Change(
                    "gate.open",
                    gate.key,
                    {"status": GateStatus.PENDING.value},
                    {
                        "status": gate.status.value,
                        "deadline": gate.deadline.isoformat(),
                        "round": gate.round,
                    },
                )
            )
    return changes
