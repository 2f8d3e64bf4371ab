"""Keeping a case's dates true: forecast, critical path, current stage, gates opening."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from bridgebsr import lifecycle
from bridgebsr.calendars import WorkCalendar, calendar_for, subdivision_of
from bridgebsr.db import permit
from bridgebsr.lifecycle import Change
from bridgebsr.schedule import Item, Link, Slot, schedule
from models import (
    FINISHED_MILESTONE,
    Case,
    Contact,
    DayKind,
    Gate,
    GateStatus,
    Milestone,
    Partner,
    Template,
)


@dataclass(frozen=True)
class Plan:
    """A case's rows with the calendars that date them."""

    case: Case
    milestones: Sequence[Milestone]
    gates: Sequence[Gate]
    calendars: dict[int | None, WorkCalendar]

    def nodes(self) -> list[Milestone | Gate]:
        """Milestones then gates, in template order."""
        return [*self.milestones, *self.gates]

    def calendar(self, node: Milestone | Gate) -> WorkCalendar:
        """A milestone follows its owner's country; a gate, and anything unowned, the case's."""
        owner = node.owner_id if isinstance(node, Milestone) else None
        return self.calendars.get(owner) or self.calendars[None]


def calendars_for(
    session: Session, case: Case, owner_ids: set[int]
) -> dict[int | None, WorkCalendar]:
    """Working calendars of the case (key None) and of each owner, by contact id."""
    lead = session.get(Partner, case.lead_partner_id)
    calendars: dict[int | None, WorkCalendar] = {None: case_calendar(case, lead)}
    if owner_ids:
        rows = session.exec(
            select(Contact.id, Contact.country, Partner.country, Partner.region)
            .join(Partner, col(Partner.id) == Contact.partner_id)
            .where(col(Contact.id).in_(owner_ids))
        )
        for contact_id, country, partner_country, region in rows:
            calendars[contact_id] = owner_calendar(country, partner_country, region)
    return calendars


def case_calendar(case: Case, lead: Partner | None) -> WorkCalendar:
    """A case's calendar: its country's, with the lead partner's region when it is there."""
    region = lead.region if lead is not None and lead.country == case.country else None
    return calendar_for(case.country, subdivision_of(case.country, region))


def owner_calendar(country: str, partner_country: str, region: str | None) -> WorkCalendar:
    """An owner's calendar: their country's, with their partner's region when it is there."""
    return calendar_for(
        country, subdivision_of(country, region if partner_country == country else None)
    )


# Built once: a case's milestones with their owners' countries and regions.
_MILESTONES_WITH_OWNERS = (
    select(Milestone, Contact.country, Partner.country, Partner.region)
    .outerjoin(Contact, col(Contact.id) == Milestone.owner_id)
    .outerjoin(Partner, col(Partner.id) == Contact.partner_id)
    .where(col(Milestone.case_id) == bindparam("case_id"))
    .order_by(col(Milestone.seq))
)


def load_plan(session: Session, case: Case, lead: Partner, gates: Sequence[Gate]) -> Plan:
    """A case's plan from its gates: its milestones and their owners' calendars in one query."""
    calendars: dict[int | None, WorkCalendar] = {None: case_calendar(case, lead)}
    milestones = []
    for milestone, country, partner_country, region in session.exec(
        _MILESTONES_WITH_OWNERS, params={"case_id": case.id}
    ):
        milestones.append(milestone)
        if milestone.owner_id is not None and country is not None:
            calendars[milestone.owner_id] = owner_calendar(country, partner_country, region)
    return Plan(case, milestones, gates, calendars)


def is_finished(node: Milestone | Gate) -> bool:
    """Done or waived milestone; approved gate."""
    if isinstance(node, Milestone):
        return node.status in FINISHED_MILESTONE
    return node.status is GateStatus.APPROVED


def finish_date(node: Milestone | Gate) -> date | None:
    """When a finished item finished."""
    if not is_finished(node):
        return None
    return node.finished_on if isinstance(node, Milestone) else node.decided_on


def items(plan: Plan, *, actual: bool) -> list[Item]:
    """The scheduler's view of every milestone and gate (with actual dates when `actual`)."""
    out = []
    for node in plan.nodes():
        duration = node.duration if isinstance(node, Milestone) else node.deadline_days
        started = node.started_on if isinstance(node, Milestone) else node.opened_on
        out.append(
            Item(
                key=node.key,
                duration=duration,
                days=node.days,
                calendar=plan.calendar(node),
                after=tuple(
                    Link(d["key"], int(d["lag"]), DayKind(d["days"])) for d in node.depends_on
                ),
                started_on=started if actual else None,
                finished_on=finish_date(node) if actual else None,
            )
        )
    return out


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


def open_predecessors(plan: Plan, node: Milestone | Gate) -> list[str]:
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
            gate.status = permit(gate, new)
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
