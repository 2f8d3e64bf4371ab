"""The agenda: what is due within a few days or late across active cases, and whose it is.

Read-only and set-based: one query for the open milestones, one for the open gates, one for
the votes cast in their current rounds, and the directory snapshot (two statements). A gate's
deciders are those who may still vote on it: every holder of its approver role who has not
voted this round, as `office.progress.decide_gate` accepts votes and as the monitor tells a
gate's approvers. However many cases, five statements.
"""

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlmodel import Session, col

from bridgebsr.errors import NotFound
from bridgebsr.rules.people import Directory, Person
from bridgebsr.rules.texts import email_key
from bridgebsr.store.due import GATE_DUE, MILESTONE_DUE
from bridgebsr.store.people import load_directory
from models import (
    OPEN_MILESTONE,
    Case,
    CaseStatus,
    Contact,
    Gate,
    GateDecision,
    GateStatus,
    Milestone,
    Partner,
)


@dataclass(frozen=True)
class Entry:
    """One line of the agenda: an open milestone and its owner, or a gate waiting and who
    may still decide it."""

    kind: str  # milestone | gate
    case: str
    item: str
    title: str
    status: str
    due: date
    who: tuple[str, ...]
    needed: int  # approvals still needed (gates); 0 for milestones

    def row(self, today: date) -> dict[str, Any]:
        """The entry as a listing shows it, counted from `today`."""
        left = (self.due - today).days
        return {
            "kind": self.kind,
            "case": self.case,
            "item": self.item,
            "title": self.title,
            "status": self.status,
            "due": self.due.isoformat(),
            "days_left": max(left, 0),
            "days_late": max(-left, 0),
            "when": _when(left),
            "who": list(self.who),
            "needed": self.needed,
        }


def _when(left: int) -> str:
    if left == 0:
        return "due today"
    if left > 0:
        return f"{left} day{'s' if left != 1 else ''} left"
    return f"{-left} day{'s' if left != -1 else ''} late"


def agenda(
    *,
    session: Session,
    today: date,
    within: int = 14,
    owner: str | None = None,
    partner: str | None = None,
) -> list[dict[str, Any]]:
    """Open milestones due by `today + within` (late ones included) with their owners, and
    open gates with their deadline by then with who may decide them, of active cases, in due
    order (then case and item). `owner` keeps the items that person owns or may decide;
    `partner` the cases that partner leads."""
    conn = session.connection()
    directory = load_directory(conn)
    who = _contact(directory, owner) if owner else None
    code = _partner(directory, partner) if partner else None
    horizon = today + timedelta(days=within)
    entries = _milestones(session, horizon, code, who)
    entries += _gates(session, directory, horizon, code, who)
    entries.sort(key=lambda e: (e.due, e.case, e.kind != "milestone", e.item))
    return [e.row(today) for e in entries]


def _contact(directory: Directory, email: str) -> Person:
    found = directory.by_email.get(email_key(email))
    if found is None:
        raise NotFound(f"--owner: no contact {email}; see `bridgebsr contacts list`")
    return found


def _partner(directory: Directory, code: str) -> str:
    wanted = code.strip().upper()
    if wanted not in directory.orgs_by_code:
        raise NotFound(f"--partner: no partner {code}; see `bridgebsr partners list`")
    return wanted


def _of_cases(query: Select[Any], code: str | None) -> Select[Any]:
    """Only active cases (led by `code`, when given)."""
    query = query.where(col(Case.status) == CaseStatus.ACTIVE)
    if code is not None:
        query = query.join(Partner, col(Partner.id) == col(Case.lead_partner_id)).where(
            col(Partner.code) == code
        )
    return query


def _milestones(
    session: Session, horizon: date, code: str | None, who: Person | None
) -> list[Entry]:
    query = (
        select(
            col(Case.key),
            col(Milestone.key),
            col(Milestone.title),
            col(Milestone.status),
            MILESTONE_DUE,
            col(Contact.email),
        )
        .join(Case, col(Case.id) == col(Milestone.case_id))
        .outerjoin(Contact, col(Contact.id) == col(Milestone.owner_id))
        .where(col(Milestone.status).in_(list(OPEN_MILESTONE)), MILESTONE_DUE <= horizon)
    )
    if who is not None:
        query = query.where(col(Milestone.owner_id) == who.id)
    return [
        Entry("milestone", case, key, title, status.value, due, (email,) if email else (), 0)
        for case, key, title, status, due, email in session.execute(_of_cases(query, code))
    ]


def _gates(
    session: Session, directory: Directory, horizon: date, code: str | None, who: Person | None
) -> list[Entry]:
    query = (
        select(
            col(Gate.id),
            col(Gate.round),
            col(Gate.approver_role),
            col(Gate.required),
            col(Case.key),
            col(Gate.key),
            col(Gate.title),
            GATE_DUE,
        )
        .join(Case, col(Case.id) == col(Gate.case_id))
        .where(col(Gate.status) == GateStatus.OPEN, GATE_DUE <= horizon)
    )
    found = session.execute(_of_cases(query, code)).all()
    votes: dict[tuple[int, int], list[tuple[int, bool]]] = {}
    if found:
        decided = session.execute(
            select(
                col(GateDecision.gate_id),
                col(GateDecision.round),
                col(GateDecision.approver_id),
                col(GateDecision.decision),
            ).where(col(GateDecision.gate_id).in_([r[0] for r in found]))
        )
        for gate_id, rnd, approver, decision in decided:
            votes.setdefault((gate_id, rnd), []).append((approver, decision == "approve"))
    entries = []
    for gid, rnd, role, required, case, key, title, due in found:
        cast = votes.get((gid, rnd), [])
        voted = {approver for approver, _ in cast}
        approvals = sum(1 for _, yes in cast if yes)
        holders = [p for p in directory.by_role.get(role, []) if p.id not in voted]
        if who is not None and all(p.id != who.id for p in holders):
            continue
        emails = tuple(p.email for p in holders)
        needed = required - approvals
        entries.append(Entry("gate", case, key, title, GateStatus.OPEN.value, due, emails, needed))
    return entries
