"""What the partners' door shows one person on *My items*, read-only (a case's page is
`office.casepage`).

Scope is `rules.access` (as SQL: `store.access`); due dates are the ladder's columns
(`store.due`) and "3 days left" is the agenda's wording (`office.agenda.Entry`). A deputy
also sees the items and gates of whom they stand in for now (`store.absences.standing_in`).
My items takes a few statements whatever the portfolio's size: owned milestones, gates to
vote on with their votes, the cases the person leads or is on with their next steps, and
one pinned-template look-up per template version.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import String, and_, exists, func, literal, null, or_, select
from sqlalchemy import case as sql_case
from sqlmodel import Session, col

from bridgebsr.office.agenda import Entry
from bridgebsr.rules.people import Away, Person
from bridgebsr.store import case_rows
from bridgebsr.store.absences import standing_in
from bridgebsr.store.access import decidable, visible
from bridgebsr.store.due import GATE_DUE, MILESTONE_DUE
from bridgebsr.store.people import link_holder
from models import (
    OPEN_MILESTONE,
    Case,
    CaseStatus,
    Decision,
    Gate,
    GateDecision,
    GateStatus,
    Milestone,
    MilestoneStatus,
    TeamMember,
)

SHOWN = (CaseStatus.ACTIVE, CaseStatus.ON_HOLD)


@dataclass
class MyItems:
    """One person's page: what they own, the gates they may vote on, the cases they are on;
    each list the first `limit` of its total."""

    due: list[dict[str, Any]] = field(default_factory=list)  # open, due soon or late
    done: list[dict[str, Any]] = field(default_factory=list)  # finished recently
    gates: list[dict[str, Any]] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)
    due_total: int = 0
    done_total: int = 0
    gates_total: int = 0
    cases_total: int = 0


def my_items(
    *,
    session: Session,
    person: Person,
    today: date,
    within: int = 14,
    recent: int = 14,
    limit: int = 50,
    now: datetime | None = None,
) -> MyItems:
    """`person`'s milestones of active cases due by `today + within` (late ones included,
    earliest first) and those finished in the last `recent` days (latest first), with the
    milestones of whom they stand in for at `now` (default: noon UTC of `today`), each
    marked `for` that person's address; the open gates they may still vote on, themselves
    or for whom they stand in for (earliest deadline first, `for` as above), with the
    template's evidence text; and the cases they own, lead (their pilot kinds) or are on the
    team of (newest first), with stage and next step. At most `limit` of each, with each
    list's total."""
    mine = MyItems()
    horizon, since = today + timedelta(days=within), today - timedelta(days=recent)
    at = now or datetime.combine(today, time(12), UTC)
    standing = standing_in(session.connection(), person.id, at)
    covered = {a.contact_id: a.email for a in standing}
    owners = [person.id, *sorted(covered)]
    for done, rows, total in _owned(session, owners, horizon, since, limit):
        items = [_item(r, person, today, covered) for r in rows]
        if done:
            mine.done, mine.done_total = items, total
        else:
            mine.due, mine.due_total = items, total
    voters = [person, *absent_people(session, standing)]
    mine.gates, mine.gates_total = _gates(session, voters, today, limit)
    mine.cases, mine.cases_total = _cases(session, person, limit)
    return mine


def absent_people(session: Session, standing: list[Away]) -> list[Person]:
    """The people away in `standing`, in its order (one statement each: a deputy covers one
    or two people)."""
    conn = session.connection()
    found = [link_holder(conn, a.contact_id) for a in standing]
    return [held[0] for held in found if held is not None]


def _owned(
    session: Session, owners: list[int], horizon: date, since: date, limit: int
) -> list[tuple[bool, list[Any], int]]:
    """The milestones the contacts `owners` own of active cases, in one statement (one pass
    over their items): open ones due by `horizon` (earliest first) and done ones finished
    since `since` (latest first), the first `limit` of each with how many there are."""
    done = col(Milestone.status) == MilestoneStatus.DONE
    finished = sql_case((done, col(Milestone.finished_on)), else_=None)
    ranked = (
        select(
            col(Case.key),
            col(Case.title),
            col(Case.version),
            col(Milestone.key).label("item"),
            col(Milestone.title).label("item_title"),
            col(Milestone.status),
            MILESTONE_DUE.label("due"),
            col(Milestone.finished_on),
            col(Milestone.owner_id),
            done.label("done"),
            func.row_number()
            .over(
                partition_by=done,
                order_by=(finished.desc(), MILESTONE_DUE, col(Case.key), col(Milestone.seq)),
            )
            .label("n"),
            func.count().over(partition_by=done).label("total"),
        )
        .join(Case, col(Case.id) == col(Milestone.case_id))
        .where(
            col(Milestone.owner_id).in_(owners),
            col(Case.status) == CaseStatus.ACTIVE,
            or_(
                and_(col(Milestone.status).in_(list(OPEN_MILESTONE)), MILESTONE_DUE <= horizon),
                and_(done, col(Milestone.finished_on) >= since),
            ),
        )
        .subquery()
    )
    rows = session.execute(
        select(ranked).where(ranked.c.n <= limit).order_by(ranked.c.done, ranked.c.n)
    ).all()
    found: dict[bool, tuple[list[Any], int]] = {}
    for row in rows:
        shown, _ = found.setdefault(bool(row.done), ([], row.total))
        shown.append(row[:9])
    return [(flag, *found[flag]) for flag in found]


def _item(row: Any, person: Person, today: date, covered: dict[int, str]) -> dict[str, Any]:
    """A milestone as My items lists it; `for`: the address of the absent owner the person
    stands in for (None: their own)."""
    case, case_title, version, key, title, status, due, finished, owner = row
    on_behalf = covered.get(owner)
    who = (on_behalf or person.email,)
    entry = Entry("milestone", case, key, title, status.value, due, who, 0)
    shown = {**entry.row(today), "case_title": case_title, "version": version, "for": on_behalf}
    return shown | ({"finished_on": finished.isoformat()} if finished else {})


def _gates(
    session: Session, voters: list[Person], today: date, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """The open gates of active cases that the first of `voters` (the reader) or one of the
    others (the people they stand in for) may vote on and has not this round; a gate's `for`
    is whose vote it would be when not the reader's own, in `rules.access.whose_vote`'s order
    (here as SQL)."""

    def may_still(voter: Person) -> Any:
        voted = exists().where(
            col(GateDecision.gate_id) == col(Gate.id),
            col(GateDecision.round) == col(Gate.round),
            col(GateDecision.approver_id) == voter.id,
        )
        return and_(decidable(voter), ~voted)

    person, *absent = voters
    on_behalf = (
        sql_case(
            (may_still(person), null()),
            *((may_still(v), literal(v.email, String)) for v in absent),
            else_=null(),
        )
        if absent
        else null()
    )
    found = session.execute(
        select(
            col(Gate.id),
            col(Gate.round),
            col(Gate.required),
            col(Gate.key),
            col(Gate.title),
            GATE_DUE,
            col(Case.key),
            col(Case.title),
            col(Case.kind),
            col(Case.template_version),
            col(Case.version),
            on_behalf,
            func.count().over(),
        )
        .join(Case, col(Case.id) == col(Gate.case_id))
        .where(
            col(Gate.status) == GateStatus.OPEN,
            col(Case.status) == CaseStatus.ACTIVE,
            or_(*(may_still(v) for v in voters)),
        )
        .order_by(GATE_DUE, col(Case.key), col(Gate.seq))
        .limit(limit)
    ).all()
    if not found:
        return [], 0
    approvals: dict[tuple[int, int], int] = {}
    for gate_id, rnd in session.execute(
        select(col(GateDecision.gate_id), col(GateDecision.round)).where(
            col(GateDecision.gate_id).in_([r[0] for r in found]),
            col(GateDecision.decision) == Decision.APPROVE,
        )
    ):
        approvals[(gate_id, rnd)] = approvals.get((gate_id, rnd), 0) + 1
    texts = _evidence_texts(session, {(r[8], r[9]) for r in found})
    rows = []
    for gid, rnd, required, key, title, due, case, case_title, kind, tv, version, who, _ in found:
        yes = approvals.get((gid, rnd), 0)
        entry = Entry("gate", case, key, title, "open", due, (who or person.email,), required - yes)
        rows.append(
            {
                **entry.row(today),
                "case_title": case_title,
                "version": version,
                "round": rnd,
                "approvals": yes,
                "required": required,
                "evidence": texts.get((kind, tv), {}).get(key, ""),
                "for": who,
            }
        )
    return rows, found[0][-1]


def _evidence_texts(session: Session, pins: set[tuple[str, int]]) -> dict[Any, dict[str, str]]:
    """Each pinned template's gates' evidence texts, by (kind, version) and gate key."""
    found = {}
    for kind, version in pins:
        template = case_rows.pinned_template(session, kind, version)
        found[(kind, version)] = {g.key: g.evidence for g in template.gates}
    return found


def _cases(session: Session, person: Person, limit: int) -> tuple[list[dict[str, Any]], int]:
    led = col(Case.kind).in_(list(person.leads)) if person.leads else None
    on_team = (
        select(col(TeamMember.case_id)).where(col(TeamMember.contact_id) == person.id)
    ).scalar_subquery()
    mine = or_(col(Case.owner_id) == person.id, col(Case.id).in_(on_team))
    if led is not None:
        mine = or_(mine, led)
    listed = session.execute(
        select(
            func.count().over(),
            col(Case.id),
            col(Case.key),
            col(Case.title),
            col(Case.kind),
            col(Case.status),
            col(Case.current_stage),
            col(Case.forecast_date),
            col(Case.target_date),
            col(Case.owner_id),
        )
        .where(col(Case.status).in_(list(SHOWN)), mine)
        .order_by(col(Case.key).desc())
        .limit(limit)
    ).all()
    total = listed[0][0] if listed else 0
    cases = [row[1:] for row in listed]
    upcoming: dict[int, tuple[date, int, str, str]] = {}  # each case's next open item
    if cases:
        # Every item of these cases by the case index, open ones picked here: asking for the
        # open ones (or an order) makes SQLite walk the status (or due date) index instead.
        for case_id, seq, key, title, due, status in session.execute(
            select(
                col(Milestone.case_id),
                col(Milestone.seq),
                col(Milestone.key),
                col(Milestone.title),
                col(Milestone.forecast_due),
                col(Milestone.status),
            ).where(col(Milestone.case_id).in_([c[0] for c in cases]))
        ):
            if status not in OPEN_MILESTONE:
                continue
            found = upcoming.get(case_id)
            if found is None or (due, seq) < found[:2]:
                upcoming[case_id] = (due, seq, key, title)
    rows = []
    for cid, key, title, kind, status, stage, forecast, target, owner in cases:
        step = upcoming.get(cid)
        rows.append(
            {
                "key": key,
                "title": title,
                "kind": kind,
                "status": status.value,
                "stage": stage or "-",
                "forecast": forecast.isoformat(),
                "slip_days": (forecast - target).days,
                "next": step[3] if step else "-",
                "next_due": step[0].isoformat() if step else "-",
                "role": "owner"
                if owner == person.id
                else "lead"
                if kind in person.leads
                else "team",
            }
        )
    return rows, total


def visible_case_keys(session: Session, person: Person) -> list[str]:
    """Every case key `person` sees, for the scope's tests."""
    return list(
        session.execute(select(col(Case.key)).where(visible(person)).order_by(col(Case.key)))
        .scalars()
        .all()
    )
