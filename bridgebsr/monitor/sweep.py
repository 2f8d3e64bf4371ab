"""The monitor: one set-based pass over the portfolio as of `now`.

It marks milestones newly late and gates newly expired (once each, with audit events),
applies gate timeout outcomes, and writes each escalation-ladder step to the outbox once per
recipient (a unique dedupe key makes reruns harmless). It works in set-based statements (a
handful of result sets, then the outbox a few thousand rows per statement, looking up first
which keys are new, so a rerun writes and builds nothing); only gates that time out to approve
or reject take a transaction of their own, through the same use case as every other change.

Passes may overlap (two schedulers, a manual run beside the scheduled one): each transaction
of a pass runs alone among the monitors' transactions (SQLite: BEGIN IMMEDIATE; PostgreSQL: a
transaction-scoped advisory lock per schema), so a later pass sees what an earlier one wrote
and does not write it again, and a gate another pass decided meanwhile is skipped.
"""

from __future__ import annotations

import gc
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import Enum
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    Connection,
    Engine,
    Text,
    and_,
    bindparam,
    cast,
    column,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from bridgebsr.errors import BridgeError
from bridgebsr.office.progress import Actor, time_out_gate
from bridgebsr.rules.calendars import WorkCalendar, calendar_for, subdivision_of
from bridgebsr.rules.roles import case_role_holders, led_kinds
from bridgebsr.store import case_rows as store
from models import (
    CASE_OWNER,
    NODE_OWNER,
    OPEN_MILESTONE,
    Case,
    CaseEvent,
    CaseStatus,
    Contact,
    Gate,
    GateDecision,
    GateStatus,
    LadderStep,
    Milestone,
    Notification,
    NotificationStatus,
    Partner,
    Source,
    Template,
    TimeoutOutcome,
)
from notifications.steps import EXPIRED_STEP, step_label

MONITOR_ACTOR = "bridgebsr-monitor"
# The dates an item's ladder counts from, and its lateness: a milestone's planned due date, a
# gate's deadline (the outbox keeps the one a notice was written for, `due_on`).
MILESTONE_DUE = col(Milestone.planned_due)
GATE_DUE = col(Gate.deadline)
EXPIRED_RULE = EXPIRED_STEP
HOLIDAY_SLACK = 14  # days a recipient's ladder step may come before the item's calendar says
_CHUNK = 500
_MISSING = object()
_OUTBOX_CHUNK = 5000  # rows built and inserted at a time
# The outbox columns that differ from row to row (the others are the same for a whole pass).
_ROW_COLUMNS = (
    "dedupe_key",
    "case_id",
    "subject",
    "rule",
    "recipient_id",
    "urgent",
    "due_on",
    "fire_on",
    "payload",
)
_DECIDED = {TimeoutOutcome.APPROVE: "approved", TimeoutOutcome.REJECT: "rejected"}
_PASS_LOCK = 0x6272_6D6F  # PostgreSQL advisory lock class of the monitor's transactions


@dataclass(frozen=True)
class Signal:
    """Something operators may automate on: an item newly late, a gate expired, an escalation."""

    event: str
    case_key: str
    pilot: str
    country: str
    subject: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class LateItem:
    """One late milestone or expired gate, for the monitor's table."""

    case_key: str
    pilot: str
    item: str
    item_kind: str
    title: str
    owner: str
    partner: str
    due: date  # what lateness counts from: a milestone's planned due date, a gate's deadline
    days_late: int
    next_step: str  # the next ladder step as people say it, and its day; "-": none left


@dataclass
class MonitorReport:
    """What one pass found and did."""

    now: datetime
    today: date
    dry_run: bool
    notifications: int = 0
    newly_overdue: int = 0
    newly_expired: int = 0
    timed_out: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    late: list[LateItem] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    active_cases: dict[str, int] = field(default_factory=dict)
    open_gates: Counter[str] = field(default_factory=Counter)
    notifications_by_pilot: Counter[str] = field(default_factory=Counter)
    # (pilot, case, role): a step reached for the case's items tells a role no one holds for it
    unheld: set[tuple[str, str, str]] = field(default_factory=set)
    run: str | None = None  # the Prefect flow run of this pass, if a flow ran it

    def pilots(self) -> list[str]:
        """Every pilot kind the pass saw, sorted."""
        seen = set(self.active_cases) | {item.pilot for item in self.late}
        seen |= {kind for kind, _, _ in self.unheld}
        return sorted(seen | set(self.open_gates) | set(self.notifications_by_pilot))

    def unheld_roles(self, pilot: str | None = None) -> list[dict[str, str]]:
        """Each case and role no one holds for it (of one pilot, or all), by case: the
        notices of that role's steps went to no one."""
        return [
            {"case": case, "role": role}
            for kind, case, role in sorted(self.unheld, key=lambda u: (u[1], u[2]))
            if pilot in (None, kind)
        ]

    def summary(self) -> dict[str, Any]:
        """Counts for scripts and the CLI's --json."""
        late = Counter(item.pilot for item in self.late)
        unheld = Counter(kind for kind, _, _ in self.unheld)
        return {
            "as_of": self.now.isoformat(),
            "today": self.today.isoformat(),
            "dry_run": self.dry_run,
            "notifications": self.notifications,
            "newly_overdue": self.newly_overdue,
            "newly_expired": self.newly_expired,
            "timed_out": self.timed_out,
            "failures": self.failures,
            "late": len(self.late),
            "unheld_roles": self.unheld_roles(),
            "pilots": {
                pilot: {
                    "active_cases": self.active_cases.get(pilot, 0),
                    "late_items": late[pilot],
                    "open_gates": self.open_gates[pilot],
                    "notifications": self.notifications_by_pilot[pilot],
                    "unheld_roles": unheld[pilot],
                }
                for pilot in self.pilots()
            },
        }


@dataclass(frozen=True)
class _Person:
    id: int
    email: str
    name: str
    role: str
    partner_id: int
    partner_code: str
    timezone: str
    calendar: WorkCalendar


class _Candidate(NamedTuple):
    """An open milestone or gate near or past its due date, with its case's facts."""

    item_kind: str  # "milestone" | "gate"
    item_id: int
    key: str
    title: str
    due: date
    owner_id: int | None
    round: int
    approver_role: str | None
    case_id: int
    case_key: str
    case_title: str
    pilot: str
    template_version: int
    case_owner_id: int
    lead_partner_id: int
    country: str


@dataclass(frozen=True)
class _Ladder:
    """A template's ladder sorted by offset (each step with its roles as a tuple), and the
    notice a gate past its deadline gets instead: its approvers and the urgent steps' roles."""

    steps: tuple[tuple[LadderStep, tuple[str, ...]], ...]
    expired: LadderStep

    @classmethod
    def of(cls, template: Template) -> _Ladder:
        ordered = sorted(template.ladder, key=lambda s: s.offset)
        urgent_roles = [r for s in ordered if s.urgent for r in s.notify]
        return cls(
            steps=tuple((s, tuple(s.notify)) for s in ordered),
            expired=LadderStep(key=EXPIRED_RULE, offset=0, notify=[NODE_OWNER, *urgent_roles]),
        )


class _Directory:
    """Everyone who may be told, with the calendars and zones that time their messages."""

    def __init__(self, session: Session) -> None:
        rows = session.execute(
            select(
                col(Contact.id),
                col(Contact.email),
                col(Contact.name),
                col(Contact.role),
                col(Contact.partner_id),
                col(Contact.country),
                col(Contact.timezone),
                col(Contact.leads),
                col(Partner.code),
                col(Partner.country),
                col(Partner.region),
            )
            .join(Partner, col(Partner.id) == col(Contact.partner_id))
            .order_by(col(Contact.id))
        ).all()
        self.people: dict[int, _Person] = {}
        self.by_role: dict[str, list[_Person]] = defaultdict(list)
        self.leads: dict[str, list[_Person]] = defaultdict(list)  # by pilot kind
        for cid, email, name, role, pid, country, zone, leads, code, p_country, region in rows:
            sub = subdivision_of(country, region) if p_country == country else None
            person = _Person(cid, email, name, role, pid, code, zone, calendar_for(country, sub))
            self.people[cid] = person
            self.by_role[role].append(person)
            for kind in led_kinds(leads):
                self.leads[kind].append(person)
        partners = session.execute(
            select(col(Partner.id), col(Partner.country), col(Partner.region))
        ).all()
        self._regions = {pid: (country, region) for pid, country, region in partners}
        self._role_cache: dict[tuple[str, int, str], list[_Person]] = {}

    def case_calendar(self, c: _Candidate) -> WorkCalendar:
        """The calendar of the case's country (and its lead partner's state there)."""
        p_country, region = self._regions.get(c.lead_partner_id, (c.country, None))
        sub = subdivision_of(c.country, region) if p_country == c.country else None
        return calendar_for(c.country, sub)

    def item_calendar(self, c: _Candidate) -> WorkCalendar:
        """A milestone follows its owner's country; a gate the case's."""
        owner = self.people.get(c.owner_id) if c.owner_id is not None else None
        if c.item_kind == "milestone" and owner is not None:
            return owner.calendar
        return self.case_calendar(c)

    def role(self, role: str, c: _Candidate) -> list[_Person]:
        """Who holds a role for the candidate's case (roles.case_role_holders)."""
        key = (role, c.lead_partner_id, c.pilot)
        found = self._role_cache.get(key)
        if found is None:
            found = self._role_cache[key] = case_role_holders(
                self.by_role.get(role, []), c.lead_partner_id, self.leads.get(c.pilot, [])
            )
        return found


@lru_cache(maxsize=200_000)
def step_day(calendar: WorkCalendar, due: date, offset: int) -> date:
    """The working day a ladder step falls on (a due date on a weekend speaks on Monday)."""
    return calendar.roll_forward(calendar.add_working_days(due, offset))


def run_monitor(
    engine: Engine,
    *,
    now: datetime,
    zone: str,
    dry_run: bool = False,
    source: Source = Source.CLI,
    source_ref: str | None = None,
) -> MonitorReport:
    """One pass as of `now`; `dry_run` reports what would happen and changes nothing."""
    if now.tzinfo is None:
        raise BridgeError("the monitor needs an aware `now` (with a time zone)")
    today = store.local_date(now, zone)
    report = MonitorReport(now=now, today=today, dry_run=dry_run)
    if source is Source.FLOW:
        report.run = source_ref
    actor = Actor(MONITOR_ACTOR, source=source, source_ref=source_ref, comment="gate deadline")
    writer = engine.execution_options(sqlite_immediate=True)
    with _collector_paused():
        if not dry_run:
            _pass(writer, report, actor)
            return report
        # A dry run is the real pass inside one transaction that is rolled back at the end,
        # so what it reports is exactly what the pass would do (gate timeouts included).
        with writer.connect() as conn:
            outer = conn.begin()
            try:
                _pass(conn, report, actor)
            finally:
                outer.rollback()
    return report


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector for the pass. A pass builds hundreds of thousands of
    small tuples that form no cycles, and each of the collector's rounds over them costs more
    than the work that made them; whatever the pass leaves behind is collected afterwards."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _session(bind: Engine | Connection) -> Session:
    # Inside a dry run's outer transaction each commit only releases a savepoint.
    return Session(bind, expire_on_commit=False, join_transaction_mode="create_savepoint")


def _alone(session: Session) -> None:
    """Begin the session's transaction as the only monitor transaction in the store. SQLite's
    BEGIN IMMEDIATE (the pass's engine) already takes the write lock; on PostgreSQL the first
    statement takes an advisory lock, keyed by schema, held until commit or rollback."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            select(func.pg_advisory_xact_lock(_PASS_LOCK, func.hashtext(func.current_schema())))
        )


def _pass(bind: Engine | Connection, report: MonitorReport, actor: Actor) -> None:
    _apply_timeouts(bind, report, actor)
    today = report.today
    with _session(bind) as session:
        _alone(session)
        directory = _Directory(session)
        templates = _templates(session)
        _mark_overdue(session, report, actor)
        _mark_expired(session, report, actor)
        candidates = _candidates(session, today, templates)
        voted = _voted(session, [c for c in candidates if c.item_kind == "gate"])
        dues = _Planner(templates, directory, voted, report).dues(candidates)
        del candidates
        _write_outbox(session, dues, report)
        _count(session, report)
        session.commit()


def _apply_timeouts(bind: Engine | Connection, report: MonitorReport, actor: Actor) -> None:
    """Decide gates past their deadline whose template says approve or reject (a dry run
    only reports them)."""
    with _session(bind) as session:
        due = session.execute(
            select(col(Case.key), col(Gate.key), col(Gate.on_timeout))
            .join(Case, col(Case.id) == Gate.case_id)
            .where(*_timing_out(report.today))
            .order_by(col(Case.key), col(Gate.key))
        ).all()
    for case_key, gate_key, outcome in due:
        try:
            with _session(bind) as session:
                _alone(session)
                still = session.execute(
                    select(col(Gate.id))
                    .join(Case, col(Case.id) == Gate.case_id)
                    .where(
                        *_timing_out(report.today),
                        col(Case.key) == case_key,
                        col(Gate.key) == gate_key,
                    )
                ).first()
                if still is None:  # decided meanwhile (by an overlapping pass, say)
                    continue
                gate = time_out_gate(
                    session=session,
                    case_key=case_key,
                    gate_key=gate_key,
                    actor=actor,
                    now=report.now,
                )
        except BridgeError as exc:  # one case failing must not stop the pass
            report.failures.append(f"{case_key} {gate_key}: {exc}")
            continue
        if gate is not None:
            report.newly_expired += 1
            report.timed_out.append(f"{case_key} {gate_key}: {_DECIDED[outcome]}")


def _timing_out(today: date) -> tuple[Any, ...]:
    """Where a gate of an active case is past its deadline with an approve or reject outcome."""
    return (
        col(Case.status) == CaseStatus.ACTIVE,
        col(Gate.status) == GateStatus.OPEN,
        GATE_DUE < today,
        col(Gate.on_timeout).in_([TimeoutOutcome.APPROVE, TimeoutOutcome.REJECT]),
    )


def _templates(session: Session) -> dict[tuple[str, int], Template]:
    pairs = session.execute(
        select(col(Case.kind), col(Case.template_version))
        .where(col(Case.status) == CaseStatus.ACTIVE)
        .distinct()
    ).all()
    return {
        (kind, version): store.pinned_template(session, kind, version) for kind, version in pairs
    }


def _rows(session: Session, statement: Any, params: dict[str, Any] | None = None) -> list[Any]:
    """A statement's rows, run in Core on the session's connection: the rows are plain
    tuples, without the ORM's per-row work (none of these statements loads an entity)."""
    return list(session.connection().execute(statement, params).all())


def _mark_overdue(session: Session, report: MonitorReport, actor: Actor) -> None:
    """Stamp milestones late for the first time, in one statement, and audit each once."""
    late = (
        col(Milestone.overdue_on).is_(None),
        col(Milestone.status).in_(list(OPEN_MILESTONE)),
        MILESTONE_DUE < report.today,
    )
    scope = store.lock_active_cases(session.connection(), col(Milestone.case_id), late)
    marked = _rows(
        session,
        update(Milestone)
        .where(*late, scope)
        .values(overdue_on=report.today)
        .returning(col(Milestone.case_id), col(Milestone.key), col(Milestone.planned_due))
        .execution_options(synchronize_session=False),
    )
    report.newly_overdue = len(marked)
    events = [
        (
            case_id,
            key,
            {"planned_due": due.isoformat(), "overdue_on": report.today.isoformat()},
        )
        for case_id, key, due in marked
    ]
    _insert_events(session, report, actor, "milestone.overdue", events)
    cases = _case_facts(session, {case_id for case_id, _, _ in marked})
    for case_id, key, due in marked:
        case_key, pilot, country = cases[case_id]
        report.signals.append(
            Signal(
                "bridgebsr.milestone.overdue",
                case_key,
                pilot,
                country,
                key,
                {"planned_due": due.isoformat(), "days_late": (report.today - due).days},
            )
        )


def _mark_expired(session: Session, report: MonitorReport, actor: Actor) -> None:
    """Stamp open gates whose deadline passed (outcome `escalate`), once per round."""
    expired = (
        col(Gate.expired_on).is_(None),
        col(Gate.status) == GateStatus.OPEN,
        GATE_DUE < report.today,
        col(Gate.on_timeout) == TimeoutOutcome.ESCALATE,
    )
    scope = store.lock_active_cases(session.connection(), col(Gate.case_id), expired)
    marked = _rows(
        session,
        update(Gate)
        .where(*expired, scope)
        .values(expired_on=report.today)
        .returning(col(Gate.case_id), col(Gate.key), col(Gate.deadline), col(Gate.round))
        .execution_options(synchronize_session=False),
    )
    report.newly_expired += len(marked)
    after = {"outcome": TimeoutOutcome.ESCALATE.value}
    events = [
        (case_id, key, {"deadline": deadline.isoformat(), "round": rnd, **after})
        for case_id, key, deadline, rnd in marked
    ]
    _insert_events(session, report, actor, "gate.expired", events)
    cases = _case_facts(session, {case_id for case_id, *_ in marked})
    for case_id, key, deadline, rnd in marked:
        case_key, pilot, country = cases[case_id]
        report.signals.append(
            Signal(
                "bridgebsr.gate.expired",
                case_key,
                pilot,
                country,
                key,
                {"deadline": deadline.isoformat(), "round": rnd, **after},
            )
        )


def _insert_events(
    session: Session,
    report: MonitorReport,
    actor: Actor,
    kind: str,
    events: Sequence[tuple[int, str, dict[str, Any]]],
) -> None:
    """Audit events of one kind by the monitor, as (case id, subject, after), in bulk."""
    if not events:
        return
    writer = _Bulk(
        session.connection(),
        CaseEvent.__table__,  # type: ignore[attr-defined]
        ("case_id", "subject", "after"),
        {
            "at": report.now,
            "actor": actor.email,
            "kind": kind,
            "before": None,
            "source": actor.source,
            "source_ref": actor.source_ref,
            "comment": "",
        },
    )
    for chunk in _chunks(events, _OUTBOX_CHUNK):
        writer.insert(
            {
                "case_id": [case_id for case_id, _, _ in chunk],
                "subject": [subject for _, subject, _ in chunk],
                "after": [after for _, _, after in chunk],
            }
        )


def _case_facts(session: Session, ids: set[int]) -> dict[int, tuple[str, str, str]]:
    facts: dict[int, tuple[str, str, str]] = {}
    for chunk in _chunks(sorted(ids)):
        rows = _rows(
            session,
            select(col(Case.id), col(Case.key), col(Case.kind), col(Case.country)).where(
                col(Case.id).in_(chunk)
            ),
        )
        facts.update({cid: (key, kind, country) for cid, key, kind, country in rows})
    return facts


def _horizon(today: date, templates: dict[tuple[str, int], Template]) -> date:
    """The latest due date any ladder could already speak about (earliest reminder offset)."""
    earliest = min((s.offset for t in templates.values() for s in t.ladder), default=0)
    ahead = max(-earliest, 0)
    # Working days to calendar days, with room for a fortnight of holidays.
    return today + timedelta(days=ahead * 7 // 5 + 16)


def _candidates(
    session: Session, today: date, templates: dict[tuple[str, int], Template]
) -> list[_Candidate]:
    horizon = _horizon(today, templates)
    case_cols = (
        col(Case.id),
        col(Case.key),
        col(Case.title),
        col(Case.kind),
        col(Case.template_version),
        col(Case.owner_id),
        col(Case.lead_partner_id),
        col(Case.country),
    )
    milestones = _rows(
        session,
        select(
            col(Milestone.id),
            col(Milestone.key),
            col(Milestone.title),
            MILESTONE_DUE,
            col(Milestone.owner_id),
            *case_cols,
        )
        .join(Case, col(Case.id) == col(Milestone.case_id))
        .where(
            col(Case.status) == CaseStatus.ACTIVE,
            col(Milestone.status).in_(list(OPEN_MILESTONE)),
            MILESTONE_DUE <= horizon,
        ),
    )
    gates = _rows(
        session,
        select(
            col(Gate.id),
            col(Gate.key),
            col(Gate.title),
            GATE_DUE,
            col(Gate.round),
            col(Gate.approver_role),
            *case_cols,
        )
        .join(Case, col(Case.id) == col(Gate.case_id))
        .where(
            col(Case.status) == CaseStatus.ACTIVE,
            col(Gate.status) == GateStatus.OPEN,
            GATE_DUE.is_not(None),
            GATE_DUE <= horizon,
            # Past the deadline only `escalate` gates wait on; the others are decided by now.
            or_(GATE_DUE >= today, col(Gate.on_timeout) == TimeoutOutcome.ESCALATE),
        ),
    )
    out = [
        _Candidate("milestone", mid, key, title, due, owner, 1, None, *case)
        for mid, key, title, due, owner, *case in milestones
    ]
    out += [
        _Candidate("gate", gid, key, title, deadline, None, rnd, role, *case)
        for gid, key, title, deadline, rnd, role, *case in gates
    ]
    return out


def _voted(session: Session, gates: Sequence[_Candidate]) -> set[tuple[int, int, int]]:
    """(gate, round, approver) triples already decided, so reminders skip those approvers."""
    voted: set[tuple[int, int, int]] = set()
    for chunk in _chunks([g.item_id for g in gates]):
        rows = _rows(
            session,
            select(
                col(GateDecision.gate_id), col(GateDecision.round), col(GateDecision.approver_id)
            ).where(col(GateDecision.gate_id).in_(chunk)),
        )
        voted.update((gid, rnd, aid) for gid, rnd, aid in rows)
    return voted


def _recipients(
    c: _Candidate,
    roles: Iterable[str],
    directory: _Directory,
    voted: set[tuple[int, int, int]],
) -> list[_Person]:
    found: dict[int, _Person] = {}
    for role in roles:
        if role == NODE_OWNER and c.item_kind == "gate":
            assert c.approver_role is not None
            people = [
                p
                for p in directory.by_role.get(c.approver_role, [])
                if (c.item_id, c.round, p.id) not in voted
            ]
        elif role == NODE_OWNER:
            owner = directory.people.get(c.owner_id or c.case_owner_id)
            people = [owner] if owner else []
        elif role == CASE_OWNER:
            owner = directory.people.get(c.case_owner_id)
            people = [owner] if owner else []
        else:
            people = directory.role(role, c)
        found.update((p.id, p) for p in people)
    return list(found.values())


class _Plan(NamedTuple):
    """Where one item's ladder stands by its own calendar."""

    upcoming: tuple[LadderStep, ...]
    near: tuple[tuple[LadderStep, tuple[str, ...]], ...]
    reached: frozenset[str]  # the roles of the steps reached, but an item's or case's owner


class _Pick(NamedTuple):
    """A recipient, the ladder step they get about an item, the day it fell on, and whether
    it is urgent: one outbox row to be."""

    person: _Person
    step: LadderStep
    fire_on: date
    urgent: bool


_Dues = list[tuple[_Candidate, list[_Pick]]]  # each candidate with its rows to be


class _Planner:
    """The ladder steps due today, candidate by candidate. A large portfolio repeats the same
    few ladders, calendars, due dates and people, so what depends only on those is worked
    out once: where a ladder stands by a calendar on a due date, and which step each
    recipient of a milestone gets (the same for every milestone with the same template,
    due date, owner, case owner and lead partner). A gate's recipients depend on its votes,
    so gates are worked out one by one."""

    def __init__(
        self,
        templates: dict[tuple[str, int], Template],
        directory: _Directory,
        voted: set[tuple[int, int, int]],
        report: MonitorReport,
    ) -> None:
        self.ladders = {key: _Ladder.of(t) for key, t in templates.items()}
        self.directory = directory
        self.voted = voted
        self.report = report
        self.today = report.today
        self._within_reach = report.today + timedelta(days=HOLIDAY_SLACK)
        self._plans: dict[tuple[int, WorkCalendar, date], _Plan] = {}
        self._picks: dict[tuple[Any, ...], tuple[list[_Pick], tuple[str, ...]]] = {}
        self._dates: dict[str, date] = {}

    def local_today(self, zone: str) -> date:
        """The date in a recipient's time zone."""
        if zone not in self._dates:
            self._dates[zone] = store.local_date(self.report.now, zone)
        return self._dates[zone]

    def plan(self, ladder: _Ladder, calendar: WorkCalendar, due: date) -> _Plan:
        """The steps the item's calendar has not reached by today, and the steps within
        reach (a recipient with fewer holidays than that calendar reaches a step up to
        HOLIDAY_SLACK days sooner)."""
        key = (id(ladder), calendar, due)
        found = self._plans.get(key)
        if found is None:
            days = [(pair, step_day(calendar, due, pair[0].offset)) for pair in ladder.steps]
            reached = {role for (_, roles), day in days if day <= self.today for role in roles}
            found = self._plans[key] = _Plan(
                upcoming=tuple(step for (step, _), day in days if day > self.today),
                near=tuple(pair for pair, day in days if day <= self._within_reach),
                reached=frozenset(reached - {NODE_OWNER, CASE_OWNER}),
            )
        return found

    def dues(self, candidates: Sequence[_Candidate]) -> _Dues:
        """The outbox rows the ladder asks for today: for each recipient, only the latest
        step reached in their working days fires; late items go to the report's list."""
        out: _Dues = []
        for c in candidates:
            ladder = self.ladders[(c.pilot, c.template_version)]
            calendar = self.directory.item_calendar(c)
            plan = self.plan(ladder, calendar, c.due)
            late = c.due < self.today
            if late:
                self.report.late.append(
                    _late_item(c, self.directory, calendar, plan.upcoming, self.today)
                )
            if c.item_kind == "gate" and late:
                expired = ladder.expired
                people = _recipients(c, expired.notify, self.directory, self.voted)
                self._note_unheld(c, self._unheld(c, expired.notify))
                out.append((c, [_Pick(person, expired, self.today, True) for person in people]))
            elif not plan.near:
                continue
            elif c.item_kind == "gate":
                self._note_unheld(c, self._unheld(c, plan.reached))
                out.append((c, self._latest(c, plan.near)))
            else:
                key = (id(ladder), calendar, c.due, c.owner_id, c.case_owner_id, c.lead_partner_id)
                found = self._picks.get(key)
                if found is None:
                    found = self._picks[key] = (
                        self._latest(c, plan.near),
                        self._unheld(c, plan.reached),
                    )
                picks, unheld = found
                self._note_unheld(c, unheld)
                if picks:
                    out.append((c, picks))
        return out

    def _unheld(self, c: _Candidate, roles: Iterable[str]) -> tuple[str, ...]:
        """The roles among `roles` no one holds for the candidate's case."""
        item_roles = (NODE_OWNER, CASE_OWNER)
        return tuple(r for r in roles if r not in item_roles and not self.directory.role(r, c))

    def _note_unheld(self, c: _Candidate, roles: tuple[str, ...]) -> None:
        """Report each (case, role) once a pass, however many of its items reached a step."""
        for role in roles:
            self.report.unheld.add((c.pilot, c.case_key, role))

    def _latest(
        self, c: _Candidate, steps: Sequence[tuple[LadderStep, tuple[str, ...]]]
    ) -> list[_Pick]:
        """For each recipient, the latest step reached in their own working days and local
        date (steps sorted by offset)."""
        latest: dict[int, _Pick] = {}
        for step, roles in steps:
            for person in _recipients(c, roles, self.directory, self.voted):
                fire_on = step_day(person.calendar, c.due, step.offset)
                if fire_on <= self.local_today(person.timezone):
                    latest[person.id] = _Pick(person, step, fire_on, step.urgent)
        return list(latest.values())


def _scope(c: _Candidate) -> str:
    """What a candidate's dedupe keys start with: its case and item (and a gate's round)."""
    if c.item_kind == "gate":
        return f"g:{c.case_key}/{c.key}/r{c.round}"
    return f"m:{c.case_key}/{c.key}"


def _payloads(rows: Sequence[_Row], report: MonitorReport) -> list[str]:
    """Each row's payload as JSON text, exactly as json.dumps (the JSON column's own
    encoder) gives the whole object: the item's part first, then the step's. Each part is
    encoded once (an item's rows come together, and steps repeat) and the two joined."""
    items: dict[tuple[str, int], str] = {}
    steps: dict[tuple[str, int, int], str] = {}
    run = {"run": report.run} if report.run else {}
    out = []
    for _, c, pick in rows:
        head = items.get((c.item_kind, c.item_id))
        if head is None:
            head = items[(c.item_kind, c.item_id)] = json.dumps(_item_part(c, report))[:-1]
        step = pick.step
        tail = steps.get((step.key, step.offset, c.round))
        if tail is None:
            part = {"step": step.key, "offset": step.offset, "round": c.round, **run}
            tail = steps[(step.key, step.offset, c.round)] = json.dumps(part)[1:]
        out.append(f"{head}, {tail}")
    return out


def _item_part(c: _Candidate, report: MonitorReport) -> dict[str, Any]:
    """What a payload says about the item (the step's part follows it)."""
    return {
        "case": c.case_key,
        "case_title": c.case_title,
        "pilot": c.pilot,
        "country": c.country,
        "item": c.key,
        "item_kind": c.item_kind,
        "item_title": c.title,
        "due": c.due.isoformat(),
        "days_late": max((report.today - c.due).days, 0),
    }


def _late_item(
    c: _Candidate,
    directory: _Directory,
    calendar: WorkCalendar,
    upcoming: Sequence[LadderStep],
    today: date,
) -> LateItem:
    owner = directory.people.get(c.owner_id or c.case_owner_id)
    if c.item_kind == "gate":
        who = f"{c.approver_role} (approvers)"
    else:
        who = owner.email if owner else "-"
    nxt = "-"
    if upcoming and c.item_kind == "milestone":  # a late gate's notice is its expiry
        nxt = _next_step(c, directory, calendar, upcoming[0])
    partner = owner.partner_code if owner and c.item_kind == "milestone" else ""
    return LateItem(
        case_key=c.case_key,
        pilot=c.pilot,
        item=c.key,
        item_kind=c.item_kind,
        title=c.title,
        owner=who,
        partner=partner or _partner_code(directory, c),
        due=c.due,
        days_late=(today - c.due).days,
        next_step=nxt,
    )


def _next_step(
    c: _Candidate, directory: _Directory, calendar: WorkCalendar, step: LadderStep
) -> str:
    """A late item's next ladder step as people say it, and the day the first of the people
    it tells reaches it in their own working days (the item's, when it tells no one)."""
    told = _recipients(c, step.notify, directory, set())
    days = [step_day(person.calendar, c.due, step.offset) for person in told]
    on = min(days) if days else step_day(calendar, c.due, step.offset)
    return f"{step_label(step.key, step.offset, step.notify)}, on {on.isoformat()}"


def _partner_code(directory: _Directory, c: _Candidate) -> str:
    owner = directory.people.get(c.case_owner_id)
    return owner.partner_code if owner else ""


_Row = tuple[str, _Candidate, _Pick]  # an outbox row to be, with its dedupe key


def _write_outbox(session: Session, dues: _Dues, report: MonitorReport) -> None:
    """Insert the rows whose dedupe key is new; the keys that went in are the ones to announce.

    Chunk by chunk, so memory stays flat: the chunk's keys not in the outbox yet are looked
    up first, so a pass that finds nothing new builds and sends no row."""
    writer = _Bulk(
        session.connection(),
        Notification.__table__,  # type: ignore[attr-defined]
        _ROW_COLUMNS,
        {"created_at": report.now, "status": NotificationStatus.PENDING, "attempts": 0},
        unique="dedupe_key",
        encoded={"payload"},
    )
    seen: set[str] = set()
    escalated: dict[tuple[str, str, str], dict[str, Any]] = {}
    for chunk in _chunks(dues, _OUTBOX_CHUNK // 2):  # about two rows a candidate
        rows: list[_Row] = []
        for c, picks in chunk:
            scope = _scope(c)
            rows += [(f"{scope}/{p.step.key}/{p.person.email}", c, p) for p in picks]
        new = _new_keys(session, [key for key, _, _ in rows])
        todo: list[_Row] = []
        for row in rows:
            if row[0] in new and row[0] not in seen:
                seen.add(row[0])
                todo.append(row)
        if not todo:
            continue
        fresh = set(writer.insert(_outbox_columns(todo, report)))
        _announce([row for row in todo if row[0] in fresh], report, escalated)
    for (case_key, item, _step), payload in sorted(escalated.items()):
        report.signals.append(
            Signal(
                "bridgebsr.case.escalated",
                case_key,
                payload["pilot"],
                payload["country"],
                item,
                {k: payload[k] for k in ("step", "item_kind", "due", "days_late", "recipients")},
            )
        )


def _announce(
    rows: Sequence[_Row],
    report: MonitorReport,
    escalated: dict[tuple[str, str, str], dict[str, Any]],
) -> None:
    """Count the rows that went in; each urgent one joins its step's escalation signal."""
    report.notifications += len(rows)
    report.notifications_by_pilot.update(c.pilot for _, c, _ in rows)
    for _, c, pick in rows:
        if pick.urgent:
            _escalate(c, pick, report, escalated)


def _escalate(
    c: _Candidate,
    pick: _Pick,
    report: MonitorReport,
    escalated: dict[tuple[str, str, str], dict[str, Any]],
) -> None:
    """Add an urgent row's recipient to its step's escalation signal."""
    key = (c.case_key, c.key, pick.step.key)
    entry = escalated.get(key)
    if entry is None:
        entry = escalated[key] = {
            "pilot": c.pilot,
            "country": c.country,
            "step": pick.step.key,
            "item_kind": c.item_kind,
            "due": c.due.isoformat(),
            "days_late": max((report.today - c.due).days, 0),
            "recipients": [],
        }
    entry["recipients"].append(pick.person.id)


def _outbox_columns(rows: Sequence[_Row], report: MonitorReport) -> dict[str, list[Any]]:
    return {
        "dedupe_key": [key for key, _, _ in rows],
        "case_id": [c.case_id for _, c, _ in rows],
        "subject": [c.key for _, c, _ in rows],
        "rule": [p.step.key for _, _, p in rows],
        "recipient_id": [p.person.id for _, _, p in rows],
        "urgent": [p.urgent for _, _, p in rows],
        "due_on": [c.due for _, c, _ in rows],
        "fire_on": [p.fire_on for _, _, p in rows],
        "payload": _payloads(rows, report),
    }


def _new_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """The keys among `keys` not in the outbox yet. Each chunk goes to the database as one
    JSON array, which it unpacks, and only the new keys come back: on a pass that finds
    little new, next to nothing."""
    found: set[str] = set()
    statement = _new_keys_statement(session.get_bind().dialect.name)
    for chunk in _chunks(keys, _OUTBOX_CHUNK):
        found.update(key for (key,) in _rows(session, statement, {"keys": json.dumps(chunk)}))
    return found


@lru_cache(maxsize=4)
def _new_keys_statement(dialect: str) -> Any:
    """The look-up of `_new_keys`, built once per backend."""
    column = col(Notification.dedupe_key)
    if dialect == "postgresql":
        elements = func.json_array_elements_text(cast(bindparam("keys", type_=Text), JSON))
    else:
        elements = func.json_each(bindparam("keys", type_=Text))
    wanted = elements.table_valued("value")
    taken = select(column).where(column == wanted.c.value).exists()
    return select(wanted.c.value).where(~taken)


class _Bulk:
    """Rows into one table in bulk, given as one list per column, stored exactly as an ORM
    insert stores them (each value converted by its column's own type; columns the caller
    does not vary set once, the others at their defaults). On PostgreSQL one INSERT ...
    SELECT FROM json_to_recordset(...) per call, on SQLite one executemany.

    The columns in `encoded` are JSON columns whose values arrive as JSON text already (as
    their type would encode them), stored as given.

    With `unique`, a row whose value there is taken is skipped, and a call returns the values
    that went in: PostgreSQL returns them. On SQLite the pass's transaction holds the write
    lock (it began with BEGIN IMMEDIATE, or its first UPDATE took it), so nobody adds a key
    between the caller's look-up of the new keys and the insert; the row count confirms it."""

    def __init__(
        self,
        connection: Connection,
        table: Any,
        varying: Sequence[str],
        fixed: dict[str, Any],
        unique: str | None = None,
        encoded: Collection[str] = (),
    ) -> None:
        self.connection = connection
        self.varying = list(varying)
        self.unique = unique
        self.encoded = encoded
        dialect = connection.dialect
        self.postgres = dialect.name == "postgresql"
        fixed = dict(fixed)
        for c in table.columns:  # the rest at their defaults, as an ORM insert sets them
            if c.name not in self.varying and c.name not in fixed and c.default is not None:
                fixed[c.name] = c.default.arg(None) if c.default.is_callable else c.default.arg
        names = [c.name for c in table.columns if c.name in self.varying or c.name in fixed]
        if self.postgres:
            self._statement = self._recordset(table, names, fixed)
            return
        statement = sqlite.insert(table)
        if unique:
            statement = statement.on_conflict_do_nothing(index_elements=[unique])
        compiled = statement.compile(dialect=dialect, column_keys=names)
        self._sql = str(compiled)
        self._order = list(compiled.positiontup or [])
        self._convert = {
            name: _Bulk._converter(
                None
                if name in encoded
                else table.c[name].type.dialect_impl(dialect).bind_processor(dialect),
                _repeats(table.c[name].type),
            )
            for name in names
        }
        self._fixed = {name: self._convert[name]([value])[0] for name, value in fixed.items()}

    @staticmethod
    def _converter(
        process: Callable[[Any], Any] | None, repeats: bool
    ) -> Callable[[list[Any]], list[Any]]:
        if process is None:
            return lambda values: values
        if not repeats:
            return lambda values: [process(value) for value in values]
        seen: dict[Any, Any] = {}

        def convert(values: list[Any]) -> list[Any]:
            # Dates, flags and statuses repeat: each distinct value is converted once.
            out = []
            for value in values:
                done = seen.get(value, _MISSING)
                if done is _MISSING:
                    done = seen[value] = process(value)
                out.append(done)
            return out

        return convert

    def _recordset(self, table: Any, names: Sequence[str], fixed: dict[str, Any]) -> Any:
        # The rows arrive as one JSON document (PostgreSQL parses it in C; a JSON column's
        # value keeps the text json.dumps gave it, as when it is bound on its own).
        rows = (
            func.json_to_recordset(cast(bindparam("rows", type_=Text), JSON))
            .table_valued(
                *(
                    column(name, Text() if name in self.encoded else table.c[name].type)
                    for name in self.varying
                )
            )
            .render_derived(with_types=True)
        )

        def value(name: str) -> Any:
            if name not in self.varying:
                return bindparam(f"fixed_{name}", fixed[name], type_=table.c[name].type)
            if name in self.encoded:  # JSON text: the cast keeps it as given
                return cast(rows.c[name], table.c[name].type)
            return rows.c[name]

        values = [value(name) for name in names]
        statement = postgresql.insert(table).from_select(list(names), select(*values))
        if not self.unique:
            return statement
        return statement.on_conflict_do_nothing(index_elements=[self.unique]).returning(
            table.c[self.unique]
        )

    def insert(self, columns: dict[str, list[Any]]) -> list[Any]:
        """Insert rows given as one list per varying column; with `unique`, returns the
        values of that column that went in."""
        if self.postgres:
            lists = [columns[name] for name in self.varying]
            rows = [dict(zip(self.varying, row, strict=True)) for row in zip(*lists, strict=True)]
            document = json.dumps(rows, default=_json_value)
            result = self.connection.execute(self._statement, {"rows": document})
            return list(result.scalars()) if self.unique else []
        count = len(columns[self.varying[0]])
        converted = [
            self._convert[name](columns[name]) if name in columns else [self._fixed[name]] * count
            for name in self._order
        ]
        inserted = self.connection.exec_driver_sql(
            self._sql, list(zip(*converted, strict=True))
        ).rowcount
        if not self.unique:
            return []
        if inserted != count:
            raise BridgeError(f"the outbox changed under the monitor ({inserted} of {count} new)")
        return columns[self.unique]


def _json_value(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a column value")


def _repeats(type_: Any) -> bool:
    """Whether a column type's values come from a small set (flags, dates, statuses)."""
    try:
        python_type = type_.python_type
    except NotImplementedError:
        return False
    return python_type in (bool, date) or issubclass(python_type, Enum)


def _count(session: Session, report: MonitorReport) -> None:
    active = session.execute(
        select(col(Case.kind), func.count())
        .where(col(Case.status) == CaseStatus.ACTIVE)
        .group_by(col(Case.kind))
    ).all()
    report.active_cases = {kind: int(n) for kind, n in active}
    gates = session.execute(
        select(col(Case.kind), func.count())
        .select_from(Gate)
        .join(Case, and_(col(Case.id) == col(Gate.case_id), col(Case.status) == CaseStatus.ACTIVE))
        .where(col(Gate.status) == GateStatus.OPEN)
        .group_by(col(Case.kind))
    ).all()
    report.open_gates = Counter({kind: int(n) for kind, n in gates})
    report.late.sort(key=lambda item: (-item.days_late, item.case_key, item.item))


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
