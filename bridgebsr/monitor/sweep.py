"""The monitor: one set-based pass over the portfolio as of `now`.

It marks milestones newly late and gates newly expired (once each, with audit events),
applies gate timeout outcomes (`marks`), works out which escalation-ladder step each recipient
of each open item has reached (`planner`, over the pure `ladder` rules), and hands those
picks to the post office as typed notices (`notifications.outbox.enqueue`), which writes each
once per recipient and says which went in: a rerun writes and announces nothing.

Passes may overlap (two schedulers, a manual run beside the scheduled one): each transaction
of a pass runs alone among the monitors' transactions (see `marks`), so a later pass sees what
an earlier one wrote and does not write it again.
"""

from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import date, datetime
from itertools import islice
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, select
from sqlmodel import Session, col

from bridgebsr.errors import BridgeError
from bridgebsr.monitor import marks
from bridgebsr.monitor.candidates import Candidate, candidates, templates, voted
from bridgebsr.monitor.planner import Dues, Pick, Planner
from bridgebsr.monitor.report import MonitorReport, PassContext, Signal
from bridgebsr.office.progress import Actor
from bridgebsr.rules.ladder import Ladder, horizon
from bridgebsr.store import case_rows as store
from bridgebsr.store.people import load_directory
from bridgebsr.store.team import active_teams
from models import (
    Case,
    CaseStatus,
    Gate,
    GateStatus,
    NoticePayload,
    OutboxNotice,
    Source,
)
from notifications.enqueue import enqueue_keyed, item_scope, step_key

MONITOR_ACTOR = "bridgebsr-monitor"
PLAN_CHUNK = 250  # candidates planned and their notices enqueued at a time


def run_monitor(
    engine: Engine,
    *,
    now: datetime,
    zone: str,
    dry_run: bool = False,
    source: Source = Source.CLI,
    source_ref: str | None = None,
    channels: Collection[str] = (),
) -> MonitorReport:
    """One pass as of `now`; `dry_run` reports what would happen and changes nothing.
    `channels` names the team channels that get one post per event (`Runtime.channels`)."""
    if now.tzinfo is None:
        raise BridgeError("the monitor needs an aware `now` (with a time zone)")
    today = store.local_date(now, zone)
    actor = Actor(MONITOR_ACTOR, source=source, source_ref=source_ref, comment="gate deadline")
    run = source_ref if source is Source.FLOW else None
    ctx = PassContext(now=now, today=today, actor=actor, run=run, channels=frozenset(channels))
    report = MonitorReport(now=now, today=today, dry_run=dry_run, run=run)
    writer = engine.execution_options(sqlite_immediate=True)
    if not dry_run:
        _pass(writer, ctx, report)
        return report
    # A dry run is the real pass inside one transaction that is rolled back at the end, so
    # what it reports is exactly what the pass would do (gate timeouts included).
    with writer.connect() as conn:
        outer = conn.begin()
        try:
            _pass(conn, ctx, report)
        finally:
            outer.rollback()
    return report


def _pass(bind: Engine | Connection, ctx: PassContext, report: MonitorReport) -> None:
    marks.apply_timeouts(bind, ctx, report)
    with marks.session(bind) as s:
        marks.alone(s)
        directory = load_directory(s.connection())
        pinned = templates(s)
        ladders = {key: Ladder.of(t) for key, t in pinned.items()}
        looks = {key: {g.key: g.evidence.strip() for g in t.gates} for key, t in pinned.items()}
        marks.mark_overdue(s, ctx, report)
        marks.mark_expired(s, ctx, report)
        found = candidates(s, ctx.today, horizon(ctx.today, ladders.values()))
        teams = active_teams(s.connection())
        planner = Planner(ladders, directory, set(), ctx, report, teams)
        escalated: Escalated = {}
        # A slice of candidates at a time, from their rows to the outbox: what a slice makes
        # is gone before the next one starts, so memory stays flat.
        while chunk := list(islice(found, PLAN_CHUNK)):
            planner.voted |= voted(s, [c for c in chunk if c.item_kind == "gate"])
            drafts = Drafts(ctx, looks)
            stored = enqueue_keyed(
                s.connection(),
                drafts.keyed(planner.dues(chunk)),
                drafts.notice,
                now=ctx.now,
                channels=ctx.channels,
            )
            _announce(stored, report, escalated)
        _escalations(escalated, report)
        _count(s, report)
        s.commit()


Draft = tuple[Candidate, Pick]  # a notice to be: about what, for whom, at which step


class Drafts:
    """Each pick as a notice for the outbox, made only when the outbox does not have it yet
    (`enqueue_keyed`): its dedupe key comes from the candidate and the pick, so a pass that
    finds every notice already there makes none. The recipients of one step of one item get
    the same payload, made once; a gate's notice says what to look at before deciding (its
    template's `evidence`, from `looks`: (kind, version) -> gate -> text)."""

    def __init__(
        self, ctx: PassContext, looks: Mapping[tuple[str, int], Mapping[str, str]] | None = None
    ) -> None:
        self.ctx = ctx
        self.looks = looks
        self._payloads: dict[tuple[str, int, str], NoticePayload] = {}

    def keyed(self, dues: Dues) -> Iterator[tuple[str, Draft]]:
        """Each pick with its notice's dedupe key (`notifications.enqueue.dedupe_key`)."""
        for c, picks in dues:
            baseline = _baseline(c)
            scope = item_scope(c.case_key, c.key, c.item_kind, c.round, c.due, baseline)
            for pick in picks:
                yield step_key(scope, pick.step.key, pick.person.email), (c, pick)

    def notice(self, draft: Draft) -> OutboxNotice:
        """The notice of a pick."""
        c, pick = draft
        at = (c.item_kind, c.item_id, pick.step.key)
        payload = self._payloads.get(at)
        if payload is None:
            look = None
            if c.item_kind == "gate" and self.looks:
                look = self.looks.get((c.pilot, c.template_version), {}).get(c.key) or None
            payload = self._payloads[at] = _payload(c, pick, self.ctx, look)
        return OutboxNotice(
            case_id=c.case_id,
            recipient_id=pick.person.id,
            recipient=pick.person.email,
            urgent=pick.urgent,
            fire_on=pick.fire_on,
            payload=payload,
        )


def _baseline(c: Candidate) -> date | None:
    """Only a moved item names its original due date: the payload of one on its original
    plan is as it always was (and its dedupe key too)."""
    return c.baseline if c.baseline != c.due else None


def _payload(c: Candidate, pick: Pick, ctx: PassContext, look: str | None = None) -> NoticePayload:
    """What a notice about candidate `c` says at the step `pick` reached."""
    return NoticePayload(
        case=c.case_key,
        case_title=c.case_title,
        pilot=c.pilot,
        country=c.country,
        item=c.key,
        item_kind=c.item_kind,
        item_title=c.title,
        due=c.due,
        days_late=max((ctx.today - c.due).days, 0),
        step=pick.step.key,
        offset=pick.step.offset,
        round=c.round,
        baseline=_baseline(c),
        run=ctx.run,
        to_look_at=look,
    )


# Each item's step with urgent notices: its escalation signal, whose payload names who was told.
Escalated = dict[tuple[str, str, str], Signal]


def _announce(stored: Sequence[OutboxNotice], report: MonitorReport, escalated: Escalated) -> None:
    """Count the notices that went in; each urgent one joins its item's step's escalation,
    with its recipient."""
    report.notifications += len(stored)
    report.notifications_by_pilot.update(n.payload.pilot for n in stored)
    for n in stored:
        if n.urgent:
            p = n.payload
            signal = escalated.get((p.case, p.item, p.step))
            if signal is None:
                said: dict[str, Any] = {
                    "step": p.step,
                    "item_kind": p.item_kind,
                    "due": p.due.isoformat(),
                    "days_late": p.days_late,
                    "recipients": [],
                }
                signal = Signal(
                    "bridgebsr.case.escalated", p.case, p.pilot, p.country, p.item, said
                )
                escalated[(p.case, p.item, p.step)] = signal
            signal.payload["recipients"].append(n.recipient_id)


def _escalations(escalated: Escalated, report: MonitorReport) -> None:
    """One escalation signal per item's step with urgent notices, naming their recipients,
    in the order of case, item and step."""
    report.signals += [escalated[step] for step in sorted(escalated)]


def _count(s: Session, report: MonitorReport) -> None:
    active = s.execute(
        select(col(Case.kind), func.count())
        .where(col(Case.status) == CaseStatus.ACTIVE)
        .group_by(col(Case.kind))
    ).all()
    report.active_cases = {kind: int(n) for kind, n in active}
    gates = s.execute(
        select(col(Case.kind), func.count())
        .select_from(Gate)
        .join(Case, and_(col(Case.id) == col(Gate.case_id), col(Case.status) == CaseStatus.ACTIVE))
        .where(col(Gate.status) == GateStatus.OPEN)
        .group_by(col(Case.kind))
    ).all()
    report.open_gates = Counter({kind: int(n) for kind, n in gates})
    report.late.sort(key=lambda item: (-item.days_late, item.case_key, item.item))
