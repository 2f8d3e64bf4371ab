"""The pass's changes to cases: milestones newly late and gates newly expired are stamped
once each, in one set-based statement per kind with an audit event per row; gates past their
deadline that time out to approve or reject are decided one by one, through the same use case
as every other change.

Each transaction of a pass runs alone among the monitors' transactions (SQLite: BEGIN
IMMEDIATE, the pass's engine; PostgreSQL: a transaction-scoped advisory lock per schema), so
a later pass sees what an earlier one wrote, and a gate another pass decided meanwhile is
skipped.
"""

from collections.abc import Iterable, Sequence
from datetime import date
from itertools import islice
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update
from sqlmodel import Session, col

from bridgebsr.errors import BridgeError
from bridgebsr.monitor.report import MonitorReport, PassContext, Signal
from bridgebsr.office.progress import time_out_gate
from bridgebsr.rules.lifecycle import Change
from bridgebsr.store import case_rows as store
from bridgebsr.store.case_rows import RECORD, event_row
from bridgebsr.store.due import GATE_DUE, MILESTONE_DUE
from models import (
    OPEN_MILESTONE,
    Case,
    CaseStatus,
    Gate,
    GateStatus,
    Milestone,
    TimeoutOutcome,
)

CHUNK = 500  # ids looked up at a time
_EVENTS_CHUNK = 500  # audit events inserted at a time
_DECIDED = {TimeoutOutcome.APPROVE: "approved", TimeoutOutcome.REJECT: "rejected"}
_PASS_LOCK = 0x6272_6D6F  # PostgreSQL advisory lock class of the monitor's transactions


def session(bind: Engine | Connection) -> Session:
    """A session of the pass (inside a dry run's outer transaction each commit only releases
    a savepoint)."""
    return Session(bind, expire_on_commit=False, join_transaction_mode="create_savepoint")


def alone(s: Session) -> None:
    """Begin the session's transaction as the only monitor transaction in the store. SQLite's
    BEGIN IMMEDIATE (the pass's engine) already takes the write lock; on PostgreSQL the first
    statement takes an advisory lock, keyed by schema, held until commit or rollback."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(
            select(func.pg_advisory_xact_lock(_PASS_LOCK, func.hashtext(func.current_schema())))
        )


def rows(s: Session, statement: Any, params: dict[str, Any] | None = None) -> list[Any]:
    """A statement's rows, run in Core on the session's connection, as plain tuples: without
    the ORM's per-row work (none of these statements loads an entity), and, holding only
    plain values, left alone by the cycle collector once it has seen them."""
    return [tuple(row) for row in s.connection().execute(statement, params)]


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    """`items` a slice of `size` at a time."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def apply_timeouts(bind: Engine | Connection, ctx: PassContext, report: MonitorReport) -> None:
    """Decide gates past their deadline whose template says approve or reject (a dry run
    only reports them)."""
    with session(bind) as s:
        due = s.execute(
            select(col(Case.key), col(Gate.key), col(Gate.on_timeout))
            .join(Case, col(Case.id) == Gate.case_id)
            .where(*_timing_out(ctx.today))
            .order_by(col(Case.key), col(Gate.key))
        ).all()
    for case_key, gate_key, outcome in due:
        try:
            with session(bind) as s:
                alone(s)
                still = s.execute(
                    select(col(Gate.id))
                    .join(Case, col(Case.id) == Gate.case_id)
                    .where(
                        *_timing_out(ctx.today),
                        col(Case.key) == case_key,
                        col(Gate.key) == gate_key,
                    )
                ).first()
                if still is None:  # decided meanwhile (by an overlapping pass, say)
                    continue
                gate = time_out_gate(
                    session=s, case_key=case_key, gate_key=gate_key, actor=ctx.actor, now=ctx.now
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


def mark_overdue(s: Session, ctx: PassContext, report: MonitorReport) -> None:
    """Stamp milestones late for the first time, in one statement, and audit each once."""
    late = (
        col(Milestone.overdue_on).is_(None),
        col(Milestone.status).in_(list(OPEN_MILESTONE)),
        MILESTONE_DUE < ctx.today,
    )
    scope = store.lock_active_cases(s.connection(), col(Milestone.case_id), late)
    marked = rows(
        s,
        update(Milestone)
        .where(*late, scope)
        .values(overdue_on=ctx.today)
        .returning(col(Milestone.case_id), col(Milestone.key), col(Milestone.planned_due))
        .execution_options(synchronize_session=False),
    )
    report.newly_overdue = len(marked)
    today = ctx.today.isoformat()
    events = (
        (case_id, key, {"planned_due": due.isoformat(), "overdue_on": today})
        for case_id, key, due in marked
    )
    insert_events(s.connection(), ctx, "milestone.overdue", events)
    cases = _case_facts(s, {case_id for case_id, _, _ in marked})
    for case_id, key, due in marked:
        case_key, pilot, country = cases[case_id]
        report.signals.append(
            Signal(
                "bridgebsr.milestone.overdue",
                case_key,
                pilot,
                country,
                key,
                {"planned_due": due.isoformat(), "days_late": (ctx.today - due).days},
            )
        )


def mark_expired(s: Session, ctx: PassContext, report: MonitorReport) -> None:
    """Stamp open gates whose deadline passed (outcome `escalate`), once per round."""
    expired = (
        col(Gate.expired_on).is_(None),
        col(Gate.status) == GateStatus.OPEN,
        GATE_DUE < ctx.today,
        col(Gate.on_timeout) == TimeoutOutcome.ESCALATE,
    )
    scope = store.lock_active_cases(s.connection(), col(Gate.case_id), expired)
    marked = rows(
        s,
        update(Gate)
        .where(*expired, scope)
        .values(expired_on=ctx.today)
        .returning(col(Gate.case_id), col(Gate.key), col(Gate.deadline), col(Gate.round))
        .execution_options(synchronize_session=False),
    )
    report.newly_expired += len(marked)
    after = {"outcome": TimeoutOutcome.ESCALATE.value}
    events = (
        (case_id, key, {"deadline": deadline.isoformat(), "round": rnd, **after})
        for case_id, key, deadline, rnd in marked
    )
    insert_events(s.connection(), ctx, "gate.expired", events)
    cases = _case_facts(s, {case_id for case_id, *_ in marked})
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


def insert_events(
    conn: Connection,
    ctx: PassContext,
    kind: str,
    events: Iterable[tuple[int, str, dict[str, Any]]],
) -> None:
    """Audit events of one kind by the pass's actor, as (case id, subject, after): the rows
    every change records (`case_rows.event_row`), through the one audit insert (`RECORD`),
    a few hundred per driver call, each slice made as it goes in (a pass stamping many
    items never holds all their events at once)."""
    actor = ctx.actor
    it = iter(events)
    while chunk := list(islice(it, _EVENTS_CHUNK)):
        rows = [
            event_row(
                case_id,
                Change(kind, subject, {}, after),
                actor.email,
                ctx.now,
                actor.source,
                actor.source_ref,
                "",
            )
            for case_id, subject, after in chunk
        ]
        for row in rows:
            row["before"] = None  # a stamp sets what was not there: nothing before
        RECORD.many(conn, rows)


def _case_facts(s: Session, ids: set[int]) -> dict[int, tuple[str, str, str]]:
    facts: dict[int, tuple[str, str, str]] = {}
    for chunk in chunks(sorted(ids)):
        found = rows(
            s,
            select(col(Case.id), col(Case.key), col(Case.kind), col(Case.country)).where(
                col(Case.id).in_(chunk)
            ),
        )
        facts.update({cid: (key, kind, country) for cid, key, kind, country in found})
    return facts
