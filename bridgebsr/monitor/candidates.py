"""What a pass looks at: the open milestones and gates of active cases near or past their due
date (`Candidate`s), the templates pinned by active cases, and the approvers who voted."""

from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any, NamedTuple

from sqlalchemy import or_, select
from sqlmodel import Session, col

from bridgebsr.monitor.marks import chunks, rows
from bridgebsr.store import case_rows as store
from bridgebsr.store.due import GATE_DUE, MILESTONE_DUE
from models import (
    OPEN_MILESTONE,
    Case,
    CaseStatus,
    Gate,
    GateDecision,
    GateStatus,
    ItemKind,
    Milestone,
    Template,
    TimeoutOutcome,
)

FETCH = 1000  # candidate rows fetched from the driver at a time (not one call per row)


class Candidate(NamedTuple):
    """An open milestone or gate near or past its due date, with its case's facts."""

    item_kind: ItemKind
    item_id: int
    key: str
    title: str
    due: date
    owner_id: int | None
    round: int
    baseline: date | None  # a milestone's original due date (None for a gate)
    approver_role: str | None
    case_id: int
    case_key: str
    case_title: str
    pilot: str
    template_version: int
    case_owner_id: int
    lead_partner_id: int
    country: str


def templates(s: Session) -> dict[tuple[str, int], Template]:
    """The template of every (kind, version) an active case is pinned to."""
    pairs = s.execute(
        select(col(Case.kind), col(Case.template_version))
        .where(col(Case.status) == CaseStatus.ACTIVE)
        .distinct()
    ).all()
    return {(kind, version): store.pinned_template(s, kind, version) for kind, version in pairs}


def candidates(s: Session, today: date, horizon: date) -> Iterator[Candidate]:
    """Open milestones and gates of active cases due by `horizon` (a gate past its deadline
    only when it waits on an escalation), the milestones first, each made as its row is read:
    a caller working through them a slice at a time never holds them all."""
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
    conn = s.connection()
    milestones: Any = conn.execute(
        select(
            col(Milestone.id),
            col(Milestone.key),
            col(Milestone.title),
            MILESTONE_DUE,
            col(Milestone.owner_id),
            col(Milestone.round),
            col(Milestone.baseline_due),
            *case_cols,
        )
        .join(Case, col(Case.id) == col(Milestone.case_id))
        .where(
            col(Case.status) == CaseStatus.ACTIVE,
            col(Milestone.status).in_(list(OPEN_MILESTONE)),
            MILESTONE_DUE <= horizon,
        )
    )
    for mid, key, title, due, owner, rnd, baseline, *case in _batched(milestones):
        yield Candidate("milestone", mid, key, title, due, owner, rnd, baseline, None, *case)
    gates: Any = conn.execute(
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
        )
    )
    for gid, key, title, deadline, rnd, role, *case in _batched(gates):
        yield Candidate("gate", gid, key, title, deadline, None, rnd, None, role, *case)


def _batched(result: Any) -> Iterator[Any]:
    """A result's rows, taken from the driver `FETCH` at a time rather than one call each."""
    for part in result.partitions(FETCH):
        yield from part


def voted(s: Session, gates: Sequence[Candidate]) -> set[tuple[int, int, int]]:
    """(gate, round, approver) triples already decided, so reminders skip those approvers."""
    found: set[tuple[int, int, int]] = set()
    for chunk in chunks([g.item_id for g in gates]):
        decided = rows(
            s,
            select(
                col(GateDecision.gate_id), col(GateDecision.round), col(GateDecision.approver_id)
            ).where(col(GateDecision.gate_id).in_(chunk)),
        )
        found.update((gid, rnd, aid) for gid, rnd, aid in decided)
    return found
