"""The monitor: one set-based pass over the portfolio as of `now`.

It marks milestones newly late and gates newly expired (once each, with audit events),
applies gate timeout outcomes, and writes each escalation-ladder step to the outbox once per
recipient (a unique dedupe key makes reruns and concurrent monitors harmless). It reads a
handful of result sets whatever the portfolio size; only gates that time out to approve or
reject take a transaction of their own, through the same use case as every other change.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from bridgebsr import store
from bridgebsr.calendars import WorkCalendar, calendar_for, subdivision_of
from bridgebsr.errors import BridgeError
from bridgebsr.progress import Actor, time_out_gate
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

MONITOR_ACTOR = "bridgebsr-monitor"
EXPIRED_RULE = "expired"
HOLIDAY_SLACK = 14  # days a recipient's ladder step may come before the item's calendar says
_CHUNK = 500
_DECIDED = {TimeoutOutcome.APPROVE: "approved", TimeoutOutcome.REJECT: "rejected"}


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
    due: date
    days_late: int
    next_step: str


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
    run: str | None = None  # the Prefect flow run of this pass, if a flow ran it

    def pilots(self) -> list[str]:
        """Every pilot kind the pass saw, sorted."""
        seen = set(self.active_cases) | {item.pilot for item in self.late}
        return sorted(seen | set(self.open_gates) | set(self.notifications_by_pilot))

    def summary(self) -> dict[str, Any]:
        """Counts for scripts and the CLI's --json."""
        late = Counter(item.pilot for item in self.late)
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
            "pilots": {
                pilot: {
                    "active_cases": self.active_cases.get(pilot, 0),
                    "late_items": late[pilot],
                    "open_gates": self.open_gates[pilot],
                    "notifications": self.notifications_by_pilot[pilot],
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


@dataclass(frozen=True)
class _Candidate:
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
                col(Partner.code),
                col(Partner.country),
                col(Partner.region),
            ).join(Partner, col(Partner.id) == col(Contact.partner_id))
        ).all()
        self.people: dict[int, _Person] = {}
        self.by_role: dict[str, list[_Person]] = defaultdict(list)
        for cid, email, name, role, pid, country, zone, code, p_country, region in rows:
            sub = subdivision_of(country, region) if p_country == country else None
            person = _Person(cid, email, name, role, pid, code, zone, calendar_for(country, sub))
            self.people[cid] = person
            self.by_role[role].append(person)
        partners = session.execute(
            select(col(Partner.id), col(Partner.country), col(Partner.region))
        ).all()
        self._regions = {pid: (country, region) for pid, country, region in partners}
        self._role_cache: dict[tuple[str, int], list[_Person]] = {}

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

    def role(self, role: str, lead_partner_id: int) -> list[_Person]:
        """Holders of a role at the case's lead partner, else everywhere in the directory."""
        key = (role, lead_partner_id)
        if key not in self._role_cache:
            holders = self.by_role.get(role, [])
            local = [p for p in holders if p.partner_id == lead_partner_id]
            self._role_cache[key] = local or holders
        return self._role_cache[key]


@lru_cache(maxsize=200_000)
def _shift(calendar: WorkCalendar, due: date, offset: int) -> date:
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
    if not dry_run:
        _pass(writer, report, actor)
        return report
    # A dry run is the real pass inside one transaction that is rolled back at the end, so
    # what it reports is exactly what the pass would do (gate timeouts included).
    with writer.connect() as conn:
        outer = conn.begin()
        try:
            _pass(conn, report, actor)
        finally:
            outer.rollback()
    return report


def _session(bind: Engine | Connection) -> Session:
    # Inside a dry run's outer transaction each commit only releases a savepoint.
    return Session(bind, expire_on_commit=False, join_transaction_mode="create_savepoint")


def _pass(bind: Engine | Connection, report: MonitorReport, actor: Actor) -> None:
    _apply_timeouts(bind, report, actor)
    today = report.today
    with _session(bind) as session:
        directory = _Directory(session)
        templates = _templates(session)
        _mark_overdue(session, report, actor)
        _mark_expired(session, report, actor)
        candidates = _candidates(session, today, templates)
        voted = _voted(session, [c for c in candidates if c.item_kind == "gate"])
        rows = _ladder_rows(candidates, templates, directory, voted, report)
        _write_outbox(session, rows, report)
        _count(session, report)
        session.commit()


def _apply_timeouts(bind: Engine | Connection, report: MonitorReport, actor: Actor) -> None:
    """Decide gates past their deadline whose template says approve or reject (a dry run
    only reports them)."""
    with _session(bind) as session:
        due = session.execute(
            select(col(Case.key), col(Gate.key), col(Gate.on_timeout))
            .join(Case, col(Case.id) == Gate.case_id)
            .where(
                col(Case.status) == CaseStatus.ACTIVE,
                col(Gate.status) == GateStatus.OPEN,
                col(Gate.deadline) < report.today,
                col(Gate.on_timeout).in_([TimeoutOutcome.APPROVE, TimeoutOutcome.REJECT]),
            )
            .order_by(col(Case.key), col(Gate.key))
        ).all()
    for case_key, gate_key, outcome in due:
        try:
            with _session(bind) as session:
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


def _templates(session: Session) -> dict[tuple[str, int], Template]:
    pairs = session.execute(
        select(col(Case.kind), col(Case.template_version))
        .where(col(Case.status) == CaseStatus.ACTIVE)
        .distinct()
    ).all()
    return {
        (kind, version): store.pinned_template(session, kind, version) for kind, version in pairs
    }


def _active_case_ids() -> Any:
    return select(col(Case.id)).where(col(Case.status) == CaseStatus.ACTIVE).scalar_subquery()


def _returning(session: Session, statement: Any) -> list[Any]:
    return list(session.execute(statement).all())


def _mark_overdue(session: Session, report: MonitorReport, actor: Actor) -> None:
    """Stamp milestones late for the first time, in one statement, and audit each once."""
    marked = _returning(
        session,
        update(Milestone)
        .where(
            col(Milestone.overdue_on).is_(None),
            col(Milestone.status).in_(list(OPEN_MILESTONE)),
            col(Milestone.planned_due) < report.today,
            col(Milestone.case_id).in_(_active_case_ids()),
        )
        .values(overdue_on=report.today)
        .returning(col(Milestone.case_id), col(Milestone.key), col(Milestone.planned_due))
        .execution_options(synchronize_session=False),
    )
    report.newly_overdue = len(marked)
    events = [
        _event(
            report,
            actor,
            case_id,
            "milestone.overdue",
            key,
            {"planned_due": due.isoformat(), "overdue_on": report.today.isoformat()},
        )
        for case_id, key, due in marked
    ]
    _insert_events(session, events)
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
    marked = _returning(
        session,
        update(Gate)
        .where(
            col(Gate.expired_on).is_(None),
            col(Gate.status) == GateStatus.OPEN,
            col(Gate.deadline) < report.today,
            col(Gate.on_timeout) == TimeoutOutcome.ESCALATE,
            col(Gate.case_id).in_(_active_case_ids()),
        )
        .values(expired_on=report.today)
        .returning(col(Gate.case_id), col(Gate.key), col(Gate.deadline), col(Gate.round))
        .execution_options(synchronize_session=False),
    )
    report.newly_expired += len(marked)
    after = {"outcome": TimeoutOutcome.ESCALATE.value}
    events = [
        _event(
            report,
            actor,
            case_id,
            "gate.expired",
            key,
            {"deadline": deadline.isoformat(), "round": rnd, **after},
        )
        for case_id, key, deadline, rnd in marked
    ]
    _insert_events(session, events)
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


def _event(
    report: MonitorReport,
    actor: Actor,
    case_id: int,
    kind: str,
    subject: str,
    after: dict[str, Any],
) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "at": report.now,
        "actor": actor.email,
        "kind": kind,
        "subject": subject,
        "before": None,
        "after": after,
        "source": actor.source,
        "source_ref": actor.source_ref,
        "comment": "",
    }


def _insert_events(session: Session, events: list[dict[str, Any]]) -> None:
    for chunk in _chunks(events):
        session.execute(insert(CaseEvent), chunk)


def _case_facts(session: Session, ids: set[int]) -> dict[int, tuple[str, str, str]]:
    facts: dict[int, tuple[str, str, str]] = {}
    for chunk in _chunks(sorted(ids)):
        rows = session.execute(
            select(col(Case.id), col(Case.key), col(Case.kind), col(Case.country)).where(
                col(Case.id).in_(chunk)
            )
        ).all()
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
    milestones = session.execute(
        select(
            col(Milestone.id),
            col(Milestone.key),
            col(Milestone.title),
            col(Milestone.planned_due),
            col(Milestone.owner_id),
            *case_cols,
        )
        .join(Case, col(Case.id) == col(Milestone.case_id))
        .where(
            col(Case.status) == CaseStatus.ACTIVE,
            col(Milestone.status).in_(list(OPEN_MILESTONE)),
            col(Milestone.planned_due) <= horizon,
        )
    ).all()
    gates = session.execute(
        select(
            col(Gate.id),
            col(Gate.key),
            col(Gate.title),
            col(Gate.deadline),
            col(Gate.round),
            col(Gate.approver_role),
            *case_cols,
        )
        .join(Case, col(Case.id) == col(Gate.case_id))
        .where(
            col(Case.status) == CaseStatus.ACTIVE,
            col(Gate.status) == GateStatus.OPEN,
            col(Gate.deadline).is_not(None),
            col(Gate.deadline) <= horizon,
            # Past the deadline only `escalate` gates wait on; the others are decided by now.
            or_(col(Gate.deadline) >= today, col(Gate.on_timeout) == TimeoutOutcome.ESCALATE),
        )
    ).all()
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
        rows = session.execute(
            select(
                col(GateDecision.gate_id), col(GateDecision.round), col(GateDecision.approver_id)
            ).where(col(GateDecision.gate_id).in_(chunk))
        ).all()
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
            people = directory.role(role, c.lead_partner_id)
        found.update((p.id, p) for p in people)
    return list(found.values())


def _ladder_rows(
    candidates: Sequence[_Candidate],
    templates: dict[tuple[str, int], Template],
    directory: _Directory,
    voted: set[tuple[int, int, int]],
    report: MonitorReport,
) -> list[dict[str, Any]]:
    """The outbox rows the ladder asks for today: for each recipient, only the latest step
    reached in their working days fires."""
    rows: list[dict[str, Any]] = []
    slack = timedelta(days=HOLIDAY_SLACK)
    dates: dict[str, date] = {}

    def local_today(zone: str) -> date:
        if zone not in dates:
            dates[zone] = store.local_date(report.now, zone)
        return dates[zone]

    for c in candidates:
        template = templates[(c.pilot, c.template_version)]
        ladder = sorted(template.ladder, key=lambda s: s.offset)
        calendar = directory.item_calendar(c)
        reached = [s for s in ladder if _shift(calendar, c.due, s.offset) <= report.today]
        upcoming = [s for s in ladder if s not in reached]
        late = c.due < report.today
        if late:
            report.late.append(_late_item(c, directory, calendar, upcoming, report.today))
        if c.item_kind == "gate" and late:
            urgent_roles = [r for s in ladder if s.urgent for r in s.notify]
            step = LadderStep(key=EXPIRED_RULE, offset=0, notify=[NODE_OWNER, *urgent_roles])
            rows += [
                _row(c, step, True, person, report.today, report)
                for person in _recipients(c, step.notify, directory, voted)
            ]
            continue
        # Steps the item's calendar puts within reach; a recipient with fewer holidays than
        # that calendar reaches a step up to HOLIDAY_SLACK days sooner.
        near = [s for s in ladder if _shift(calendar, c.due, s.offset) <= report.today + slack]
        if near:
            rows += _personal_rows(c, near, directory, voted, report, local_today)
    return rows


def _personal_rows(
    c: _Candidate,
    steps: Sequence[LadderStep],
    directory: _Directory,
    voted: set[tuple[int, int, int]],
    report: MonitorReport,
    local_today: Callable[[str], date],
) -> list[dict[str, Any]]:
    """For each recipient, the latest step reached in their own working days and local date
    (steps sorted by offset)."""
    latest: dict[int, tuple[_Person, LadderStep, date]] = {}
    for step in steps:
        for person in _recipients(c, step.notify, directory, voted):
            fire_on = _shift(person.calendar, c.due, step.offset)
            if fire_on <= local_today(person.timezone):
                latest[person.id] = (person, step, fire_on)
    return [
        _row(c, step, step.urgent, person, fire_on, report)
        for person, step, fire_on in latest.values()
    ]


def _row(
    c: _Candidate,
    step: LadderStep,
    urgent: bool,
    person: _Person,
    fire_on: date,
    report: MonitorReport,
) -> dict[str, Any]:
    scope = (
        f"g:{c.case_key}/{c.key}/r{c.round}" if c.item_kind == "gate" else f"m:{c.case_key}/{c.key}"
    )
    return {
        "dedupe_key": f"{scope}/{step.key}/{person.email}",
        "case_id": c.case_id,
        "subject": c.key,
        "rule": step.key,
        "recipient_id": person.id,
        "urgent": urgent,
        "due_on": c.due,
        "fire_on": fire_on,
        "payload": {
            "case": c.case_key,
            "case_title": c.case_title,
            "pilot": c.pilot,
            "country": c.country,
            "item": c.key,
            "item_kind": c.item_kind,
            "item_title": c.title,
            "due": c.due.isoformat(),
            "days_late": max((report.today - c.due).days, 0),
            "step": step.key,
            "offset": step.offset,
            "round": c.round,
            **({"run": report.run} if report.run else {}),
        },
        "created_at": report.now,
        "status": NotificationStatus.PENDING,
        "attempts": 0,
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
        step = upcoming[0]
        nxt = f"{step.key} on {_shift(calendar, c.due, step.offset).isoformat()}"
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


def _partner_code(directory: _Directory, c: _Candidate) -> str:
    owner = directory.people.get(c.case_owner_id)
    return owner.partner_code if owner else ""


def _write_outbox(session: Session, rows: list[dict[str, Any]], report: MonitorReport) -> None:
    """Insert rows whose dedupe key is new; the keys that went in are the ones to announce."""
    dialect = session.get_bind().dialect.name
    build = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # One statement compiled once, executed many times in batches (insertmanyvalues);
    # RETURNING yields only the rows that went in.
    table = Notification.__table__  # type: ignore[attr-defined]
    statement = (
        build(table)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(table.c.dedupe_key)
    )
    connection = session.connection()
    fresh: set[str] = set()
    for chunk in _chunks(rows, 5000):
        fresh.update(connection.execute(statement, list(chunk)).scalars().all())
    report.notifications = len(fresh)
    escalated: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        if row["dedupe_key"] not in fresh:
            continue
        payload = row["payload"]
        report.notifications_by_pilot[payload["pilot"]] += 1
        if row["urgent"]:
            key = (payload["case"], payload["item"], payload["step"])
            entry = escalated.setdefault(key, {**payload, "recipients": []})
            entry["recipients"].append(row["recipient_id"])
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
