"""Use cases on requests for a new due date: an owner asks (`ask_new_date`), a pilot lead of
the case or the coordinator answers (`answer_date_request`), and what waits for an answer
(`pending_requests`).

An accepted request is exactly a reschedule (`office.plan.reschedule_milestone`, with the
request's reason), in the same transaction as the answer. Asking and declining change no
date, so they leave the case's version as it is; each writes an audit event and a notice
(to the case's pilot leads when asked, to the asker when answered). Who may ask or answer,
and which dates, are `rules.requests`'.
"""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection
from sqlmodel import Session

from bridgebsr.errors import BridgeError, IllegalTransition, NotFound
from bridgebsr.office import announce
from bridgebsr.office.plan import reschedule_milestone
from bridgebsr.office.progress import Actor, _begin, _milestone, _standing_in
from bridgebsr.rules import requests as rules
from bridgebsr.rules.lifecycle import Change
from bridgebsr.rules.people import Person
from bridgebsr.rules.roles import Team
from bridgebsr.rules.rows import CaseRow, MilestoneRow
from bridgebsr.store import case_rows as store
from bridgebsr.store import requests as asked
from bridgebsr.store.people import load_directory
from bridgebsr.store.team import load_teams
from models import NoticePayload, Source
from models.notices import DATE_ANSWERED, DATE_ASKED, DATE_WITHDRAWN
from notifications.enqueue import enqueue

NOTE_REASON = 160  # characters of a reason a notice's headline quotes


@dataclass(frozen=True)
class DateAsk:
    """A request for a new due date as it stands after a use case."""

    id: int
    case_key: str
    item_key: str
    asked_by: str
    requested_due: date
    current_due: date
    reason: str
    status: str
    at: datetime
    source: Source
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str = ""
    told: tuple[str, ...] = ()  # who the use case's notice went to


def ask_new_date(
    *,
    session: Session,
    case_key: str,
    item_key: str,
    due: date,
    reason: str,
    actor: str,
    source: Source,
    now: datetime,
    expected_version: int | None = None,
    source_ref: str | None = None,
) -> DateAsk:
    """Ask for a new due date for an open milestone, with a reason: a waiting request, a
    `date.requested` event and a notice to the case's pilot leads (the coordinator when it
    has none)."""
    reason = rules.check_reason(reason)
    work = _begin(session, case_key, f"ask for a new date for {item_key}", now, expected_version)
    case, conn = work.case, work.loaded.conn
    milestone = _milestone(work, item_key)
    what = f"milestone {milestone.key} of {case.key}"
    rules.check_item(what, milestone.status)
    person = store.contact_by_email(conn, actor)
    team = load_teams(conn, [case.id]).get(case.id, {})
    covering = {a.contact_id for a in _standing_in(work, person.email)}
    holder = team.get(milestone.owner_role)
    rules.check_asker(what, person.email, person.id, milestone.owner_id, holder, covering)
    rules.check_due(what, due, milestone.planned_due, work.today)
    rules.check_none_waiting(what, asked.waiting_for_item(conn, case.id, milestone.key))
    number = asked.add(
        conn,
        case_id=case.id,
        item=milestone.key,
        asker_id=person.id,
        due=due,
        current=milestone.planned_due,
        reason=reason,
        now=now,
        source=source,
    )
    change = Change(
        "date.requested",
        milestone.key,
        {"due": milestone.planned_due.isoformat()},
        {"due": due.isoformat(), "request": number},
    )
    store.record(
        conn,
        case.id,
        [change],
        actor=person.email,
        now=now,
        source=source,
        source_ref=source_ref,
        comment=reason,
    )
    note = f"{person.email} asks to move {milestone.key} to {due}: {_short(reason)}"
    payload = _about(case, milestone, work.today, f"{DATE_ASKED}{number}", note)
    leads = _tell_leads(conn, case, payload, work.today, now, team)
    session.commit()
    return DateAsk(
        number,
        case.key,
        milestone.key,
        person.email,
        due,
        milestone.planned_due,
        reason,
        rules.PENDING,
        now,
        source,
        told=tuple(p.email for p in leads),
    )


def answer_date_request(
    *,
    session: Session,
    request_id: int,
    accept: bool,
    actor: str,
    comment: str,
    source: Source,
    now: datetime,
    expected_version: int | None = None,
    source_ref: str | None = None,
) -> DateAsk:
    """Accept or decline a waiting request, as a pilot lead of its case or the coordinator:
    accepted, the item is rescheduled to the date asked for (with the request's reason) in
    the same transaction; either way a `date.accepted` or `date.declined` event, and a
    notice to the asker. Of two answers at once, one is recorded and the other refused."""
    conn = session.connection()
    row = asked.one(conn, request_id)
    if row is None:
        raise NotFound(f"no date request #{request_id}; see `bridgebsr requests list`")
    rules.check_pending(request_id, row["status"], row["decided_by"])
    comment = rules.check_comment(accept, comment)
    loaded = store.load_case(session, row["case_key"], for_update=False)
    case = loaded.case
    store.check_version(case, expected_version)
    person = store.contact_by_email(conn, actor)
    directory = load_directory(conn)
    team = load_teams(conn, [case.id]).get(case.id, {})
    leads = {p.id for p in rules.case_leads(directory, case.lead_partner_id, case.kind, team)}
    rules.check_answerer(person.email, person.id, person.role, leads, case.key)
    status = rules.ANSWERS[accept]
    _settle(session, row, status, person.email, now, comment, "answer")
    try:
        _record_answer(session, loaded, row, person, status, comment, source, source_ref, now)
        if accept:  # commits the answer, its event and notice with the reschedule
            reschedule_milestone(
                session=session,
                case_key=case.key,
                milestone_key=row["item_key"],
                due=row["requested_due"],
                reason=row["reason"],
                actor=Actor(person.email, source, source_ref),
                now=now,
                expected_version=expected_version,
            )
        else:
            session.commit()
    except BridgeError:
        session.rollback()
        raise
    return _shown(
        {**row, "status": status, "decided_by": person.email, "decided_at": now, "comment": comment}
    )


def withdraw_date_request(
    *,
    session: Session,
    request_id: int,
    actor: str,
    comment: str,
    source: Source,
    now: datetime,
    source_ref: str | None = None,
) -> DateAsk:
    """Withdraw a waiting request, as whoever asked: a `date.withdrawn` event and a notice
    to the case's pilot leads; the agreed date stands and the item may be asked for again.
    Of a withdrawal and an answer at once, one is recorded and the other refused."""
    conn = session.connection()
    row = asked.one(conn, request_id)
    if row is None:
        raise NotFound(f"no date request #{request_id}; see `bridgebsr requests list`")
    rules.check_pending(request_id, row["status"], row["decided_by"], "withdraw")
    person = store.contact_by_email(conn, actor)
    rules.check_withdrawer(request_id, person.email, row["asked_by"])
    loaded = store.load_case(session, row["case_key"], for_update=False)
    comment = comment.strip()
    status = rules.WITHDRAWN
    _settle(session, row, status, person.email, now, comment, "withdraw")
    _record_answer(session, loaded, row, person, status, comment, source, source_ref, now)
    session.commit()
    return _shown(
        {**row, "status": status, "decided_by": person.email, "decided_at": now, "comment": comment}
    )


def _settle(
    session: Session,
    row: dict[str, Any],
    status: str,
    by: str,
    now: datetime,
    comment: str,
    doing: str,
) -> None:
    """Mark the waiting request `row` `status` (an answer or a withdrawal); when another one
    came first, roll back and refuse with what happened to it."""
    number = row["id"]
    if asked.answer(session.connection(), number, status=status, by=by, now=now, comment=comment):
        return
    session.rollback()
    fresh = asked.one(session.connection(), number) or row
    rules.check_pending(number, fresh["status"], fresh["decided_by"], doing)
    raise IllegalTransition(f"request #{number} was answered meanwhile; see it again")


def _record_answer(
    session: Session,
    loaded: store.Loaded,
    row: dict[str, Any],
    person: Person,
    status: str,
    comment: str,
    source: Source,
    source_ref: str | None,
    now: datetime,
) -> None:
    """The answer's audit event and the asker's notice, or for a withdrawal the pilot
    leads' (the caller commits)."""
    case, conn = loaded.case, loaded.conn
    today = store.local_date(now, loaded.timezone)
    milestone = next((m for m in loaded.plan.milestones if m.key == row["item_key"]), None)
    if status == rules.ACCEPTED:
        rules.check_still_ahead(row["id"], row["requested_due"], today)
    change = Change(
        f"date.{status}",
        row["item_key"],
        {"request": row["id"], "status": rules.PENDING},
        {
            "request": row["id"],
            "status": status,
            "due": row["requested_due"].isoformat(),
            "asked_by": row["asked_by"],
        },
    )
    store.record(
        conn,
        case.id,
        [change],
        actor=person.email,
        now=now,
        source=source,
        source_ref=source_ref,
        comment=comment,
    )
    if milestone is None:
        return
    said = f": {_short(comment)}" if comment else ""
    if status == rules.WITHDRAWN:
        note = f"{person.email} withdrew the request to move {milestone.key}{said}"
        payload = _about(case, milestone, today, f"{DATE_WITHDRAWN}{row['id']}", note)
        _tell_leads(conn, case, payload, today, now)
        return
    note = f"{person.email} {status} moving {milestone.key} to {row['requested_due']}{said}"
    due = row["requested_due"] if status == rules.ACCEPTED else milestone.planned_due
    payload = _about(case, milestone, today, f"{DATE_ANSWERED}{row['id']}", note, due)
    asker = store.contact_by_email(conn, row["asked_by"])
    enqueue(conn, [announce.notice(case.id, (asker.id, asker.email), payload, today)], now=now)


def pending_requests(
    *,
    session: Session,
    for_actor: str | None = None,
    now: datetime | None = None,
    partner: str | None = None,
) -> list[dict[str, Any]]:
    """The requests waiting for an answer, oldest first: case, item, who asked, the agreed
    and the asked-for due date, the reason, when (and with `now`, how many days ago), the
    case's version and lead partner, and who may answer. With `for_actor`, only those that
    person answers (the cases they lead; every one for the coordinator); with `partner`
    (a code), only the cases that partner leads."""
    conn = session.connection()
    rows = asked.waiting(conn)
    if partner is not None:
        rows = [r for r in rows if r["partner"] == partner.strip().upper()]
    if not rows:
        return []
    directory = load_directory(conn)
    teams = load_teams(conn, asked.of_cases(rows))
    me = store.contact_by_email(conn, for_actor) if for_actor else None
    found = []
    for row in rows:
        team = teams.get(row["case_id"])
        leads = rules.case_leads(directory, row["lead_partner_id"], row["case_kind"], team)
        if me is not None and not rules.may_answer(me.id, me.role, {p.id for p in leads}):
            continue
        found.append(_listed(row, leads, now))
    return found


def _listed(row: dict[str, Any], leads: list[Person], now: datetime | None) -> dict[str, Any]:
    asked_at: datetime = row["at"]
    return {
        "id": row["id"],
        "case": row["case_key"],
        "case_version": row["case_version"],
        "partner": row["partner"],
        "item": row["item_key"],
        "title": row["item_title"] or "",
        "asked_by": row["asked_by"],
        "current_due": row["current_due"],
        "requested_due": row["requested_due"],
        "reason": row["reason"],
        "asked_at": asked_at,
        "age_days": (now - asked_at).days if now is not None else None,
        "leads": [p.email for p in leads],
    }


def _shown(row: dict[str, Any]) -> DateAsk:
    return DateAsk(
        row["id"],
        row["case_key"],
        row["item_key"],
        row["asked_by"],
        row["requested_due"],
        row["current_due"],
        row["reason"],
        row["status"],
        row["at"],
        row["source"],
        row["decided_by"],
        row["decided_at"],
        row["comment"],
        (row["asked_by"],),
    )


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= NOTE_REASON else line[: NOTE_REASON - 1] + "…"


def _tell_leads(
    conn: Connection,
    case: CaseRow,
    payload: NoticePayload,
    day: date,
    now: datetime,
    team: Team | None = None,
) -> list[Person]:
    """Put a notice of `payload` to each who hears of a case's requests for a new date in
    the outbox: its pilot leads, else the coordinator (`team`: the case's, when the caller
    has it). Whom it told."""
    directory = load_directory(conn)
    if team is None:
        team = load_teams(conn, [case.id]).get(case.id, {})
    leads = rules.case_leads(directory, case.lead_partner_id, case.kind, team)
    leads = leads or directory.by_role.get(rules.COORDINATOR, [])
    enqueue(conn, [announce.notice(case.id, (p.id, p.email), payload, day) for p in leads], now=now)
    return leads


def _about(
    case: CaseRow,
    milestone: MilestoneRow,
    today: date,
    step: str,
    note: str,
    due: date | None = None,
) -> NoticePayload:
    return announce.about(
        case,
        item=milestone.key,
        title=milestone.title,
        due=due or milestone.planned_due,
        today=today,
        step=step,
        note=note,
        round_=milestone.round,
    )
