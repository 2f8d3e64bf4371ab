"""Read-only views of the portfolio: case lists and one case in full."""

from datetime import date
from typing import Any

from sqlalchemy import and_, exists
from sqlmodel import Session, col, select

from bridgebsr import store
from models import (
    FINISHED_MILESTONE,
    Case,
    CaseEvent,
    CaseStatus,
    Contact,
    Gate,
    GateDecision,
    Milestone,
    Partner,
)


def _overdue_clause(today: date) -> Any:
    return exists().where(
        and_(
            col(Milestone.case_id) == Case.id,
            col(Milestone.planned_due) < today,
            col(Milestone.status).not_in(list(FINISHED_MILESTONE)),
        )
    )


def list_cases(
    *,
    session: Session,
    today: date,
    pilot: str | None = None,
    status: CaseStatus | None = None,
    partner: str | None = None,
    overdue: bool = False,
) -> list[dict[str, Any]]:
    """Cases with their stage, owner, partner and dates, filtered as asked."""
    query = (
        select(Case, Contact.email, Partner.code)
        .join(Contact, col(Contact.id) == Case.owner_id)
        .join(Partner, col(Partner.id) == Case.lead_partner_id)
        .order_by(col(Case.key))
    )
    if pilot:
        query = query.where(Case.kind == pilot)
    if status:
        query = query.where(Case.status == status)
    if partner:
        query = query.where(Partner.code == partner.strip().upper())
    if overdue:
        query = query.where(col(Case.status).in_([CaseStatus.ACTIVE, CaseStatus.ON_HOLD]))
        query = query.where(_overdue_clause(today))
    return [_case_row(case, owner, code) for case, owner, code in session.exec(query)]


def _case_row(case: Case, owner: str, partner: str) -> dict[str, Any]:
    return {
        "key": case.key,
        "kind": case.kind,
        "title": case.title,
        "status": case.status.value,
        "stage": case.current_stage,
        "owner": owner,
        "partner": partner,
        "country": case.country,
        "start": case.start_date.isoformat(),
        "target": case.target_date.isoformat(),
        "forecast": case.forecast_date.isoformat(),
        "slip_days": (case.forecast_date - case.target_date).days,
        "version": case.version,
    }


def show_case(*, session: Session, key: str, today: date) -> dict[str, Any]:
    """One case: planned vs forecast, gates and decisions, the critical path, its history."""
    case = store.case_by_key(session, key)
    owner = session.get(Contact, case.owner_id)
    partner = session.get(Partner, case.lead_partner_id)
    assert owner is not None and partner is not None
    milestones, gates = store.milestones_of(session, case), store.gates_of(session, case)
    emails = dict(session.exec(select(Contact.id, Contact.email)).all())
    nodes: list[Milestone | Gate] = sorted(
        [*milestones, *gates], key=lambda n: (n.forecast_due, n.key)
    )
    return {
        **_case_row(case, owner.email, partner.code),
        "template_version": case.template_version,
        "milestones": [_milestone_row(m, emails, today) for m in milestones],
        "gates": [_gate_row(session, g, emails) for g in gates],
        "critical_path": [n.key for n in nodes if n.critical],
        "events": _events(session, case),
    }


def _milestone_row(m: Milestone, emails: dict[Any, str], today: date) -> dict[str, Any]:
    finished = m.status in FINISHED_MILESTONE
    return {
        "key": m.key,
        "title": m.title,
        "stage": m.stage,
        "status": m.status.value,
        "owner": emails.get(m.owner_id) if m.owner_id else None,
        "owner_role": m.owner_role,
        "planned_due": m.planned_due.isoformat(),
        "forecast_due": m.forecast_due.isoformat(),
        "slip_days": (m.forecast_due - m.planned_due).days,
        "finished_on": m.finished_on.isoformat() if m.finished_on else None,
        "overdue": not finished and m.planned_due < today,
        "critical": m.critical,
    }


def _gate_row(session: Session, g: Gate, emails: dict[Any, str]) -> dict[str, Any]:
    decisions = session.exec(
        select(GateDecision).where(GateDecision.gate_id == g.id).order_by(col(GateDecision.id))
    ).all()
    return {
        "key": g.key,
        "title": g.title,
        "stage": g.stage,
        "status": g.status.value,
        "round": g.round,
        "approvers": f"{g.required} of role {g.approver_role}",
        "planned_due": g.planned_due.isoformat(),
        "forecast_due": g.forecast_due.isoformat(),
        "deadline": g.deadline.isoformat() if g.deadline else None,
        "critical": g.critical,
        "decisions": [
            {
                "round": d.round,
                "by": emails.get(d.approver_id),
                "decision": d.decision.value,
                "at": d.at.isoformat(),
                "comment": d.comment,
            }
            for d in decisions
        ],
    }


def _events(session: Session, case: Case) -> list[dict[str, Any]]:
    events = session.exec(
        select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(col(CaseEvent.id))
    ).all()
    return [
        {
            "at": e.at.isoformat(),
            "actor": e.actor,
            "kind": e.kind,
            "subject": e.subject,
            "before": e.before,
            "after": e.after,
            "source": e.source.value,
            "comment": e.comment,
        }
        for e in events
    ]
