"""Read-only views of the portfolio: case lists, one case in full, the portfolio and a
pilot's status (where gates stand: `office.gate_views`)."""

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import and_, exists, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, func, select

from bridgebsr.errors import NotFound
from bridgebsr.rules import lifecycle
from bridgebsr.rules.texts import email_key
from bridgebsr.store import case_rows as store
from bridgebsr.store.evidence import evidence_of
from models import (
    FINISHED_MILESTONE,
    Baseline,
    Case,
    CaseEvent,
    CaseStatus,
    Contact,
    Gate,
    GateDecision,
    GateStatus,
    Milestone,
    Partner,
)


def _overdue_clause(today: date) -> Any:
    return _open_milestone(col(Milestone.planned_due) < today)


def _open_milestone(*where: Any) -> Any:
    """Whether the case has an open milestone that matches `where`."""
    return exists().where(
        col(Milestone.case_id) == Case.id,
        col(Milestone.status).not_in(list(FINISHED_MILESTONE)),
        *where,
    )


def _waiting_gate(*where: Any) -> Any:
    """Whether the case has a gate pending or open that matches `where`."""
    waiting = [GateStatus.PENDING, GateStatus.OPEN]
    return exists().where(col(Gate.case_id) == Case.id, col(Gate.status).in_(waiting), *where)


def list_cases(
    *,
    session: Session,
    today: date,
    pilot: str | None = None,
    status: CaseStatus | None = None,
    partner: str | None = None,
    overdue: bool = False,
    owner: str | None = None,
    due_within: int | None = None,
) -> list[dict[str, Any]]:
    """Cases with their stage, owner, partner and dates, filtered as asked (`owner`: cases
    the person owns or owns an open milestone of; `due_within`: cases with an open item due
    within that many days, or late), each flagged `ready_to_close` when every milestone is
    done or waived and no gate is pending or open."""
    closable = lifecycle.CASE_ACTIONS["close"][0]
    ready = and_(col(Case.status).in_(list(closable)), ~_open_milestone(), ~_waiting_gate()).label(
        "ready"
    )
    query = (
        select(Case, Contact.email, Partner.code, ready)
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
    if overdue or due_within is not None:
        query = query.where(col(Case.status).in_([CaseStatus.ACTIVE, CaseStatus.ON_HOLD]))
    if overdue:
        query = query.where(_overdue_clause(today))
    if due_within is not None:
        horizon = today + timedelta(days=due_within)
        query = query.where(
            or_(
                _open_milestone(col(Milestone.planned_due) <= horizon),
                _waiting_gate(col(Gate.status) == GateStatus.OPEN, col(Gate.deadline) <= horizon),
            )
        )
    if owner:
        who = session.exec(select(Contact.id).where(Contact.email == email_key(owner))).first()
        if who is None:
            raise NotFound(f"--owner: no contact {owner}; see `bridgebsr contacts list`")
        query = query.where(
            or_(col(Case.owner_id) == who, _open_milestone(col(Milestone.owner_id) == who))
        )
    return [
        {**_case_row(case, email, code), "ready_to_close": bool(flag)}
        for case, email, code, flag in session.exec(query)
    ]


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
    """One case: its three plans per item (the original `baseline_*`, the agreed `planned_*`
    in force, the `forecast_*`) and its rebaselines, gates and decisions, the critical path,
    its history."""
    case = store.case_by_key(session, key)
    emails = dict(session.exec(select(Contact.id, Contact.email)).all())
    code = session.exec(select(Partner.code).where(Partner.id == case.lead_partner_id)).one()
    milestones, gates = store.milestones_of(session, case), store.gates_of(session, case)
    nodes: list[Milestone | Gate] = sorted(
        [*milestones, *gates], key=lambda n: (n.forecast_due, n.key)
    )
    decisions = _decisions(session, gates)
    template = store.pinned_template(session, case.kind, case.template_version)
    specs = template.field_specs()
    to_look_at = {g.key: g.evidence.strip() for g in template.gates}
    links = evidence_of(session.connection(), case.id) if case.id is not None else []
    return {
        **_case_row(case, emails[case.owner_id], code),
        "baseline_target": case.baseline_target.isoformat(),
        "template_version": case.template_version,
        "fields": [
            {"name": k, "label": spec.title(), "kind": spec.kind.value, "value": case.fields.get(k)}
            for k, spec in specs.items()
            if k in case.fields or spec in template.fields
        ],
        "baselines": _baselines(session, case),
        "milestones": [_milestone_row(m, emails, today) for m in milestones],
        "gates": [
            {
                **_gate_row(g, decisions.get(g.id, []), emails),
                "to_look_at": to_look_at.get(g.key, ""),
            }
            for g in gates
        ],
        "evidence": [
            {
                **e,
                "at": e["at"].isoformat(),
                "source": str(getattr(e["source"], "value", e["source"])),
            }
            for e in links
        ],
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
        "round": m.round,
        **_three_plans(m),
        "slip_days": (m.forecast_due - m.planned_due).days,
        "finished_on": m.finished_on.isoformat() if m.finished_on else None,
        "overdue": not finished and m.planned_due < today,
        "critical": m.critical,
        "fields": m.fields,
    }


def _three_plans(n: Milestone | Gate) -> dict[str, str]:
    """An item's original, agreed and forecast dates."""
    return {
        "baseline_start": n.baseline_start.isoformat(),
        "baseline_due": n.baseline_due.isoformat(),
        "planned_start": n.planned_start.isoformat(),
        "planned_due": n.planned_due.isoformat(),
        "forecast_start": n.forecast_start.isoformat(),
        "forecast_due": n.forecast_due.isoformat(),
    }


def _baselines(session: Session, case: Case) -> list[dict[str, Any]]:
    """The case's rebaselines, first to last (the original plan is number 0, not listed)."""
    found = session.exec(
        select(Baseline).where(Baseline.case_id == case.id).order_by(col(Baseline.number))
    ).all()
    return [
        {
            "number": b.number,
            "at": b.at.isoformat(),
            "who": b.actor,
            "why": b.reason,
            "source": b.source.value,
            "target": b.target_date.isoformat(),
        }
        for b in found
    ]


def _decisions(session: Session, gates: Sequence[Gate]) -> dict[Any, list[GateDecision]]:
    """The decisions on these gates, by gate id, in the order made (one statement)."""
    found: dict[Any, list[GateDecision]] = {}
    if gates:
        for d in session.exec(
            select(GateDecision)
            .where(col(GateDecision.gate_id).in_([g.id for g in gates]))
            .order_by(col(GateDecision.id))
        ):
            found.setdefault(d.gate_id, []).append(d)
    return found


def _gate_row(g: Gate, decisions: list[GateDecision], emails: dict[Any, str]) -> dict[str, Any]:
    return {
        "key": g.key,
        "title": g.title,
        "stage": g.stage,
        "status": g.status.value,
        "round": g.round,
        "approvers": f"{g.required} of role {g.approver_role}",
        "required": g.required,
        "approver_role": g.approver_role,
        **_three_plans(g),
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


def portfolio(*, session: Session, today: date) -> list[dict[str, Any]]:
    """Per pilot kind: cases by status, late cases, gates waiting, mean forecast slip."""
    rows: dict[str, dict[str, Any]] = {}
    for case in session.exec(select(Case)).all():
        row = rows.setdefault(
            case.kind,
            {"pilot": case.kind, **{s.value: 0 for s in CaseStatus}, "late": 0, "slip": []},
        )
        row[case.status.value] += 1
        if case.status is CaseStatus.ACTIVE:
            row["slip"].append((case.forecast_date - case.target_date).days)
    late = session.exec(
        select(Case.kind, func.count(func.distinct(Case.id)))
        .where(Case.status == CaseStatus.ACTIVE, _overdue_clause(today))
        .group_by(col(Case.kind))
    ).all()
    gates = session.exec(
        select(Case.kind, func.count(col(Gate.id)))
        .join(Case, col(Case.id) == Gate.case_id)
        .where(Case.status == CaseStatus.ACTIVE, Gate.status == GateStatus.OPEN)
        .group_by(col(Case.kind))
    ).all()
    for kind, n in late:
        rows[kind]["late"] = n
    out = []
    for kind in sorted(rows):
        row = rows[kind]
        slips = row.pop("slip")
        row["gates_waiting"] = dict(gates).get(kind, 0)
        row["mean_slip_days"] = round(sum(slips) / len(slips), 1) if slips else 0.0
        out.append(row)
    return out


def pilot_status(
    *, session: Session, pilot: str, limit: int = 20
) -> dict[str, list[dict[str, Any]]]:
    """One pilot at a glance: its active cases (stage and next milestone, latest forecast
    first) and its gates waiting for a decision, at most `limit` of each."""
    cases = session.execute(
        sa_select(
            col(Case.id),
            col(Case.key),
            col(Case.title),
            col(Case.current_stage),
            col(Case.forecast_date),
        )
        .where(col(Case.kind) == pilot, col(Case.status) == CaseStatus.ACTIVE)
        .order_by(col(Case.forecast_date).desc(), col(Case.key))
        .limit(limit)
    ).all()
    ids = [c[0] for c in cases]
    upcoming: dict[int, tuple[str, date]] = {}
    if ids:
        rows = session.exec(
            select(col(Milestone.case_id), col(Milestone.title), col(Milestone.forecast_due))
            .where(
                col(Milestone.case_id).in_(ids),
                col(Milestone.status).not_in(list(FINISHED_MILESTONE)),
            )
            .order_by(col(Milestone.forecast_due), col(Milestone.seq))
        ).all()
        for case_id, title, due in rows:
            upcoming.setdefault(case_id, (title, due))
    gates = session.execute(
        sa_select(
            col(Case.key),
            col(Gate.title),
            col(Gate.deadline),
            col(Gate.required),
            col(Gate.approver_role),
        )
        .join(Case, col(Case.id) == Gate.case_id)
        .where(
            col(Case.kind) == pilot,
            col(Case.status) == CaseStatus.ACTIVE,
            col(Gate.status) == GateStatus.OPEN,
        )
        .order_by(col(Gate.deadline), col(Case.key))
        .limit(limit)
    ).all()
    return {
        "cases": [
            {
                "case": key,
                "title": title,
                "stage": stage or "-",
                "forecast": forecast.isoformat(),
                "next": upcoming[cid][0] if cid in upcoming else "-",
                "next_due": upcoming[cid][1].isoformat() if cid in upcoming else "-",
            }
            for cid, key, title, stage, forecast in cases
        ],
        "gates": [
            {
                "case": key,
                "gate": title,
                "deadline": deadline.isoformat() if deadline else "-",
                "who": f"{required} of {role}",
            }
            for key, title, deadline, required, role in gates
        ],
    }
