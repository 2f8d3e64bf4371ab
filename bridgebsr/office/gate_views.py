"""Where gates stand, as the gate flows and the pilot lead's decision form read them: one gate
with its votes and refused form submissions in the current round (`gate_view`), every gate
waiting for decisions (`waiting_gates`), and what to look at before deciding each."""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from sqlmodel import Session, col, select

from bridgebsr.errors import NotFound
from bridgebsr.store import case_rows as store
from models import Case, CaseEvent, CaseStatus, Decision, Gate, GateDecision, GateStatus, Source


@dataclass(frozen=True)
class GateView:
    """Where one gate stands, as a waiting flow run needs to know it."""

    case_key: str
    gate_key: str
    title: str
    pilot: str
    country: str
    case_status: CaseStatus
    status: GateStatus
    round: int
    required: int
    approver_role: str
    approvals: int
    votes: int
    refused: int
    deadline: date | None
    to_look_at: str = ""  # the gate's template `evidence`: what to look at before deciding

    @property
    def waiting(self) -> bool:
        """Open for decisions on an active case."""
        return self.case_status is CaseStatus.ACTIVE and self.status is GateStatus.OPEN


def gate_view(*, session: Session, case_key: str, gate_key: str) -> GateView:
    """One gate with its votes and refused submissions in the current round."""
    case = store.case_by_key(session, case_key)
    gate = session.exec(
        select(Gate).where(Gate.case_id == case.id, Gate.key == gate_key.strip())
    ).first()
    if gate is None:
        raise NotFound(f"case {case.key} has no gate '{gate_key}'")
    decisions = session.exec(
        select(GateDecision.decision).where(
            GateDecision.gate_id == gate.id, GateDecision.round == gate.round
        )
    ).all()
    refusals = session.exec(
        select(CaseEvent.after).where(
            CaseEvent.case_id == case.id,
            CaseEvent.kind == "gate.refused",
            CaseEvent.source == Source.FLOW,  # the form's refusals, not the web's
            CaseEvent.subject == gate.key,
        )
    ).all()
    look = _to_look_at(session, case).get(gate.key, "")
    return replace(_gate_view(case, gate, decisions, refusals), to_look_at=look)


def _gate_view(
    case: Case, gate: Gate, decisions: Sequence[Any], refusals: Sequence[Any]
) -> GateView:
    """A gate's view from its votes and refused submissions (all rounds' refusals)."""
    return GateView(
        case_key=case.key,
        gate_key=gate.key,
        title=gate.title,
        pilot=case.kind,
        country=case.country,
        case_status=case.status,
        status=gate.status,
        round=gate.round,
        required=gate.required,
        approver_role=gate.approver_role,
        approvals=sum(1 for d in decisions if d is Decision.APPROVE),
        votes=len(decisions),
        refused=sum(1 for after in refusals if after and after.get("round") == gate.round),
        deadline=gate.deadline,
    )


def waiting_gates(*, session: Session) -> list[GateView]:
    """Every open gate of an active case, by case key (three queries, however many gates)."""
    rows = session.exec(
        select(Case, Gate)
        .join(Case, col(Case.id) == Gate.case_id)
        .where(Case.status == CaseStatus.ACTIVE, Gate.status == GateStatus.OPEN)
        .order_by(col(Case.key), col(Gate.seq))
    ).all()
    if not rows:
        return []
    ids = [gate.id for _, gate in rows]
    votes: dict[tuple[int, int], list[Any]] = {}
    for gate_id, rnd, decision in session.exec(
        select(GateDecision.gate_id, GateDecision.round, GateDecision.decision).where(
            col(GateDecision.gate_id).in_(ids)
        )
    ):
        votes.setdefault((gate_id, rnd), []).append(decision)
    refused: dict[tuple[int, str], list[Any]] = {}
    for case_id, subject, after in session.exec(
        select(CaseEvent.case_id, CaseEvent.subject, CaseEvent.after).where(
            col(CaseEvent.case_id).in_({case.id for case, _ in rows}),
            CaseEvent.kind == "gate.refused",
            CaseEvent.source == Source.FLOW,
        )
    ):
        refused.setdefault((case_id, subject or ""), []).append(after)
    looks: dict[tuple[str, int], dict[str, str]] = {}
    views = []
    for case, gate in rows:
        assert gate.id is not None and case.id is not None
        decisions = votes.get((gate.id, gate.round), [])
        look = looks.get((case.kind, case.template_version))
        if look is None:
            look = looks[(case.kind, case.template_version)] = _to_look_at(session, case)
        view = _gate_view(case, gate, decisions, refused.get((case.id, gate.key), []))
        views.append(replace(view, to_look_at=look.get(gate.key, "")))
    return views


def _to_look_at(session: Session, case: Case) -> dict[str, str]:
    """What to look at before deciding each gate of a case's pinned template, by gate."""
    template = store.pinned_template(session, case.kind, case.template_version)
    return {g.key: g.evidence.strip() for g in template.gates}
