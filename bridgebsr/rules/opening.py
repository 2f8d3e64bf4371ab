"""How a case opens: the one planner `case open` and `case import` both call.

Pure: a template, the directory snapshot, what the case is opened with, its key and the
moment in; the rows to write out (the case, its milestones and gates, dated from its start
and forecast as of today at its lead partner) with the audit events of its opening. The
store writes them (`bridgebsr.store.writer`); nothing here reads or writes a database.

`Planner` is the same rule for a batch: what a case's dates depend on (its template, the
calendar of every item, its start and today) is planned once by `dated` and copied into
every case that has it in common.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple

from bridgebsr.rules import planning
from bridgebsr.rules.calendars import WorkCalendar
from bridgebsr.rules.lifecycle import Change
from bridgebsr.rules.people import Directory, Person
from bridgebsr.rules.rows import CaseRow, GateRow, MilestoneRow, Organisation, clone
from models import CASE_OWNER, CaseStatus, GateSpec, MilestoneSpec, Template


@dataclass(frozen=True, slots=True)
class Opening:
    """What a case is opened with: its template, title, owner, lead partner and start, and
    `today` at the lead partner (what its forecast is as of). `target` keeps a given target
    date (default: the planned end); `note` adds to the `case.open` event's `after`; `team`
    names who holds which role on this case (before its lead partner and its pilot's leads);
    `fields` the case's field values, in their stored form (`rules.fields`)."""

    template: Template
    title: str
    owner: Person
    lead: Organisation
    start: date
    today: date
    target: date | None = None
    note: tuple[tuple[str, Any], ...] = ()
    team: tuple[tuple[str, int], ...] = ()  # (role, contact id): the case team it opens with
    fields: tuple[tuple[str, Any], ...] = ()  # (field, stored value) it opens with


class Event(NamedTuple):
    """An audit event to write with a new case: the change, who made it, from which source
    row (None: the writer's default)."""

    change: Change
    actor: str
    source_ref: str | None = None


@dataclass
class Planned:
    """A new case's rows (ids not given yet) and its audit events, in order."""

    plan: planning.Plan
    events: list[Event] = field(default_factory=list)
    team: tuple[tuple[str, int], ...] = ()  # (role, contact id) rows of its case team

    @property
    def case(self) -> CaseRow:
        """The case row."""
        return self.plan.case


@dataclass(frozen=True)
class Dated:
    """The rows a template opens with, dated and forecast (owners and case not filled in):
    what a case's dates depend on, shared by every case with the same calendars, start and
    today."""

    milestones: tuple[MilestoneRow, ...]
    gates: tuple[GateRow, ...]
    target: date
    forecast: date
    stage: str | None
    changes: tuple[Change, ...]  # the gates that open at once


def owners(directory: Directory, opening: Opening) -> list[int | None]:
    """Each milestone's owner: the case owner theirs, the first holder of each other role
    for this case (`Directory.role_holders`, its team first) the rest, or no one."""
    template, lead = opening.template, opening.lead.id
    team = dict(opening.team)
    by_role: dict[str, int | None] = {CASE_OWNER: opening.owner.id}
    for role in sorted({m.owner for m in template.milestones} - {CASE_OWNER}):
        chosen = directory.role_holders(role, lead, template.kind, team)
        by_role[role] = chosen[0].id if chosen else None
    return [by_role[m.owner] for m in template.milestones]


def calendars(
    directory: Directory, opening: Opening, owner_ids: Iterable[int | None]
) -> dict[int | None, WorkCalendar]:
    """The case's calendar (key None: its owner's country, the lead partner's region when it
    is there) and each milestone owner's, by contact id."""
    found: dict[int | None, WorkCalendar] = {
        None: directory.case_calendar(opening.owner.country, opening.lead.id)
    }
    for contact_id in owner_ids:
        if contact_id is not None and contact_id not in found:
            found[contact_id] = directory.people[contact_id].calendar
    return found


def rows_of(template: Template) -> tuple[list[MilestoneRow], list[GateRow]]:
    """The template's milestones and gates as rows, not dated yet (no owners, no case)."""
    milestones = [_milestone(i, spec, template) for i, spec in enumerate(template.milestones)]
    gates = [_gate(i, spec, template) for i, spec in enumerate(template.gates)]
    return milestones, gates


def dated(
    template: Template,
    milestones: Sequence[MilestoneRow],
    gates: Sequence[GateRow],
    cals: dict[int | None, WorkCalendar],
    start: date,
    today: date,
) -> Dated:
    """The template's rows (`rows_of`, with their owners) planned from `start`
    (`planning.baseline`), then forecast as of `today` (`planning.reforecast`: gates without
    predecessors open)."""
    case = CaseRow(
        0, "", template.kind, template.version, "", 0, 0, "", CaseStatus.ACTIVE, None,
        start, start, start, start, {}, datetime.min, None, datetime.min, 1,
    )  # fmt: skip
    plan = planning.Plan(case, milestones, gates, cals)
    planned = planning.baseline(plan)
    for node in plan.nodes():
        slot = planned[node.key]
        node.baseline_start = node.planned_start = node.forecast_start = slot.start
        node.baseline_due = node.planned_due = node.forecast_due = slot.due
    target = max(slot.due for slot in planned.values())
    case.target_date = case.forecast_date = case.baseline_target = target
    changes = planning.reforecast(plan, template, today)
    return Dated(
        tuple(milestones),
        tuple(gates),
        target,
        case.forecast_date,
        case.current_stage,
        tuple(changes),
    )


def open_case(
    directory: Directory, opening: Opening, key: str, now: datetime, *, source_ref: str | None
) -> Planned:
    """A new case as it opens (one case: `Planner.plan` with nothing to share)."""
    return Planner(directory, now, share=False).plan(opening, key, source_ref=source_ref)


class Planner:
    """Opens cases against one directory snapshot at one moment, planning what cases have in
    common once (unless `share` is false: one case, nothing to share)."""

    def __init__(self, directory: Directory, now: datetime, *, share: bool = True) -> None:
        self.directory, self.now, self.share = directory, now, share
        self._owners: dict[tuple[Any, ...], tuple[list[int | None], Any]] = {}
        self._dated: dict[tuple[Any, ...], Dated] = {}
        self._rows: dict[int, tuple[Template, list[MilestoneRow], list[GateRow]]] = {}

    def _owners_of(
        self, opening: Opening
    ) -> tuple[list[int | None], dict[int | None, WorkCalendar]]:
        at = (opening.template.kind, opening.owner.id, opening.lead.id, opening.team)
        found = self._owners.get(at)
        if found is None:
            ids = owners(self.directory, opening)
            found = self._owners[at] = (ids, calendars(self.directory, opening, ids))
        return found

    def _date(
        self,
        opening: Opening,
        ids: list[int | None],
        cals: dict[int | None, WorkCalendar],
    ) -> Dated:
        template = opening.template
        if not self.share:
            milestones, gates = rows_of(template)
        else:
            found = self._rows.get(id(template))
            if found is None:
                found = self._rows[id(template)] = (template, *rows_of(template))
            milestones = [clone(row) for row in found[1]]
            gates = [clone(row) for row in found[2]]
        for milestone, owner in zip(milestones, ids, strict=True):
            milestone.owner_id = owner
        return dated(template, milestones, gates, cals, opening.start, opening.today)

    def plan(self, opening: Opening, key: str, *, source_ref: str | None) -> Planned:
        """The case's rows and events: the `case.open` event, then the gates that opened."""
        template = opening.template
        ids, cals = self._owners_of(opening)
        shared = (
            id(template),
            id(cals[None]),
            *(id(cals[i]) for i in ids),
            opening.start,
            opening.today,
        )
        found = self._dated.get(shared)
        if found is None:
            found = self._date(opening, ids, cals)
            if self.share:
                self._dated[shared] = found
        target = opening.target or found.target
        case = CaseRow(
            id=0,  # given when the row is written
            key=key,
            kind=template.kind,
            template_version=template.version,
            title=opening.title,
            lead_partner_id=opening.lead.id,
            owner_id=opening.owner.id,
            country=opening.owner.country,
            status=CaseStatus.ACTIVE,
            current_stage=found.stage,
            start_date=opening.start,
            target_date=target,
            forecast_date=found.forecast,
            baseline_target=target,
            fields=dict(opening.fields),
            opened_at=self.now,
            closed_at=None,
            updated_at=self.now,
            version=1,
        )
        if self.share:  # rows of its own: the shared ones stay as they were planned
            milestones = [clone(row) for row in found.milestones]
            for milestone, owner in zip(milestones, ids, strict=True):
                milestone.owner_id = owner
            gates = [clone(row) for row in found.gates]
        else:
            milestones, gates = list(found.milestones), list(found.gates)
        opened = Change(
            "case.open",
            None,
            {},
            {
                "key": key,
                "kind": template.kind,
                "template_version": template.version,
                "title": opening.title,
                "owner": opening.owner.email,
                "partner": opening.lead.code,
                "start": opening.start.isoformat(),
                "target": target.isoformat(),
                **dict(opening.note),
            },
        )
        if opening.team:
            people = self.directory.people
            opened.after["team"] = {role: people[cid].email for role, cid in opening.team}
        actor = opening.owner.email
        events = [Event(opened, actor, source_ref)]
        if opening.fields:
            events.append(
                Event(Change("case.fields", None, {}, dict(opening.fields)), actor, source_ref)
            )
        events.extend(Event(_copied(c), actor, source_ref) for c in found.changes)
        return Planned(planning.Plan(case, milestones, gates, cals), events, opening.team)


def _copied(change: Change) -> Change:
    """A change of its own (a later note on it leaves the shared one as it was)."""
    return Change(change.kind, change.subject, dict(change.before), dict(change.after))


def links(spec: MilestoneSpec | GateSpec, template: Template) -> list[dict[str, object]]:
    """An item's finish-to-start links as its row keeps them."""
    return [
        {"key": d.key, "lag": d.lag, "days": (d.days or template.day_kind(spec)).value}
        for d in spec.after
    ]


_PLACEHOLDER = date.min  # every date is planned before a row leaves `dated`


def _milestone(seq: int, spec: MilestoneSpec, template: Template) -> MilestoneRow:
    return MilestoneRow(
        id=None,
        case_id=0,  # set when the case row is written
        key=spec.key,
        seq=seq,
        title=spec.title,
        stage=spec.stage,
        owner_role=spec.owner,
        owner_id=None,
        duration=spec.duration,
        days=template.day_kind(spec),
        strict=template.is_strict(spec),
        depends_on=links(spec, template),
        baseline_start=_PLACEHOLDER,
        baseline_due=_PLACEHOLDER,
        planned_start=_PLACEHOLDER,
        planned_due=_PLACEHOLDER,
        forecast_start=_PLACEHOLDER,
        forecast_due=_PLACEHOLDER,
    )


def _gate(seq: int, spec: GateSpec, template: Template) -> GateRow:
    return GateRow(
        id=None,
        case_id=0,  # set when the case row is written
        key=spec.key,
        seq=seq,
        title=spec.title,
        stage=spec.stage,
        approver_role=spec.approvers.role,
        required=spec.approvers.required,
        deadline_days=spec.deadline,
        days=template.day_kind(spec),
        on_timeout=spec.on_timeout,
        rework_stage=spec.on_reject.rework,
        depends_on=links(spec, template),
        baseline_start=_PLACEHOLDER,
        baseline_due=_PLACEHOLDER,
        planned_start=_PLACEHOLDER,
        planned_due=_PLACEHOLDER,
        forecast_start=_PLACEHOLDER,
        forecast_due=_PLACEHOLDER,
    )
