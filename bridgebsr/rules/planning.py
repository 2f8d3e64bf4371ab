"""Keeping a case's dates true: forecast, critical path, current stage, gates opening."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from bridgebsr.errors import IllegalTransition, InvalidInput
from bridgebsr.rules import lifecycle
from bridgebsr.rules.calendars import WorkCalendar
from bridgebsr.rules.lifecycle import Change
from bridgebsr.rules.rows import CaseRow, GateRow, MilestoneRow, Node
from bridgebsr.rules.schedule import Item, Link, Slot, replan, schedule
from models import CLOSED_CASE, FINISHED_MILESTONE, DayKind, GateStatus, Template


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
    """The scheduler's view of every milestone and gate: with `actual`, its actual dates and
    the agreed dates set by hand that the forecast keeps to (`Item.not_before`: an ad-hoc
    item's agreed start, from the day it was added; `Item.due_not_before`: an agreed due
    date moved off the original baseline by a reschedule or a rebaseline)."""
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
            m.planned_start if actual and m.adhoc else None,
            _moved_due(m) if actual else None,
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
            None,
            _moved_due(g) if actual else None,
        )
        for g in plan.gates
    )
    return out


def _moved_due(node: Node) -> date | None:
    """The agreed due date when it is no longer the original baseline's."""
    return node.planned_due if node.planned_due != node.baseline_due else None


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


# --- the agreed plan: reschedule and rebaseline ---------------------------------------------


@dataclass(frozen=True)
class Moved:
    """An item whose agreed dates moved, with the dates agreed before."""

    node: Node
    start: date
    due: date


def reschedule(plan: Plan, milestone: MilestoneRow, due: date, today: date) -> list[Moved]:
    """Agree a new due date for one open milestone; its dependents move by the plan's rule.

    The milestone's agreed start stays (a later due date gives the work more time), unless
    the new due date comes before it: then it starts on its due date. Every open item
    downstream of it is placed again after its predecessors as they now fall (`replan`,
    both ways: earlier too); everything else keeps its agreed dates. Finished items, and
    what follows only through them, keep theirs. Returns every item whose agreed dates moved
    (the milestone first)."""
    what = f"milestone {milestone.key} of {plan.case.key}"
    if is_finished(milestone):
        raise IllegalTransition(
            f"cannot reschedule {what}: it is {milestone.status.value}; only open items move"
        )
    if due < plan.case.start_date:
        raise InvalidInput(
            f"--due {due} is before case {plan.case.key} started ({plan.case.start_date})"
        )
    if due == milestone.planned_due:
        raise InvalidInput(f"{what} is already due on {due}; give another --due")
    moving = _downstream(plan, milestone.key)
    fixed = {
        n.key: Slot(n.planned_start, n.planned_due) for n in plan.nodes() if n.key not in moving
    }
    fixed[milestone.key] = Slot(min(milestone.planned_start, due), due)
    slots = replan(items(plan, actual=False), plan.case.start_date, fixed)
    moved = _agree(plan, {key: slots[key] for key in (milestone.key, *moving)}, today)
    moved.sort(key=lambda m: m.node is not milestone)
    return moved


def rebaseline(plan: Plan, today: date) -> list[Moved]:
    """Make the forecast the agreed plan of every open item (finished ones keep the plan
    that was in force when they were due) and the forecast date the case's target; returns
    the items whose agreed dates moved. Reforecast first so that the forecast is today's. The
    forecast keeps to agreed dates set by hand (`items`), so a rescheduled item keeps its
    agreed due date unless its work is now forecast to end later."""
    slots = {
        n.key: Slot(n.forecast_start, n.forecast_due) for n in plan.nodes() if not is_finished(n)
    }
    moved = _agree(plan, slots, today)
    plan.case.target_date = plan.case.forecast_date
    return moved


def agree_forecast(plan: Plan, keys: set[str], today: date) -> list[Moved]:
    """Make the forecast the agreed plan of these open items (a template upgrade's new
    durations and links); returns the items whose agreed dates moved."""
    slots = {
        n.key: Slot(n.forecast_start, n.forecast_due)
        for n in plan.nodes()
        if n.key in keys and not is_finished(n)
    }
    return _agree(plan, slots, today)


def downstream(plan: Plan, key: str) -> set[str]:
    """Keys of the open items that follow `key`, directly or through other open items."""
    return _downstream(plan, key)


def _downstream(plan: Plan, key: str) -> set[str]:
    """Keys of the open items that follow `key`, directly or through other open items."""
    after: dict[str, list[Node]] = {}
    for node in plan.nodes():
        for link in node.depends_on:
            after.setdefault(link["key"], []).append(node)
    found: set[str] = set()
    todo = [key]
    while todo:
        for node in after.get(todo.pop(), ()):
            if node.key not in found and not is_finished(node):
                found.add(node.key)
                todo.append(node.key)
    return found


def _agree(plan: Plan, slots: dict[str, Slot], today: date) -> list[Moved]:
    """Set these items' agreed dates; a milestone no longer late is no longer marked
    overdue (its ladder restarts from the new date)."""
    moved = []
    for node in plan.nodes():
        slot = slots.get(node.key)
        if slot is None or (node.planned_start, node.planned_due) == (slot.start, slot.due):
            continue
        moved.append(Moved(node, node.planned_start, node.planned_due))
        node.planned_start, node.planned_due = slot.start, slot.due
        if isinstance(node, MilestoneRow) and node.overdue_on is not None and slot.due >= today:
            node.overdue_on = None
    return moved


def edit_case(
    case: CaseRow,
    *,
    title: str | None = None,
    target: date | None = None,
    partner: tuple[int, str] | None = None,
    partner_before: str = "",
) -> Change:
    """Change a case's title, target date or lead partner (`partner`: its id and code),
    refused on a closed case, for a target before the start, or when nothing changes. Only
    these move: the owners of its items stay as they are (a new lead partner counts from
    now on: the case's own calendar and day, and whose people hold its roles)."""
    if case.status in CLOSED_CASE:
        raise IllegalTransition(f"cannot edit case {case.key}: it is {case.status.value}")
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    if title is not None and title != case.title:
        before["title"], after["title"] = case.title, title
        case.title = title
    if target is not None and target != case.target_date:
        if target < case.start_date:
            raise InvalidInput(
                f"--target {target} is before case {case.key} started ({case.start_date}); "
                "give a later date"
            )
        before["target"], after["target"] = case.target_date.isoformat(), target.isoformat()
        case.target_date = target
    if partner is not None and partner[0] != case.lead_partner_id:
        before["partner"], after["partner"] = partner_before, partner[1]
        case.lead_partner_id = partner[0]
    if not after:
        raise InvalidInput(
            f"nothing to change on case {case.key}: give a new --title, --target or --partner"
        )
    return Change("case.edit", None, before, after)


def due_in_force(original: date, changes: Sequence[tuple[date, date]]) -> date:
    """The agreed due date an item is measured against (its SLA): the one in force on the
    day it fell due. `changes` are its agreed dates' moves, oldest first, as (day made, new
    due). A move made on or before the day the item was due replaces that date; one made
    after it was already late does not excuse the lateness. With no moves, the original."""
    due = original
    for made, new in changes:
        if made > due:  # the item fell due under `due` before this move
            return due
        due = new
    return due
