"""Use cases on a case's items: start, complete or waive milestones; decide gates.

A deputy may act for a person while that person is away (`rules.people.acting_for`): their
step on the absent person's milestone, or their vote on a gate as the absent approver, is
recorded with the deputy as actor and the event naming whom it was on behalf of."""

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, select
from sqlmodel import Session, SQLModel

from bridgebsr.errors import IllegalTransition, InvalidInput, NotFound
from bridgebsr.office import announce
from bridgebsr.office.permits import check_may_progress
from bridgebsr.rules import fields as field_rules
from bridgebsr.rules import lifecycle, planning
from bridgebsr.rules import progress as rules
from bridgebsr.rules.access import may_decide, whose_vote
from bridgebsr.rules.lifecycle import Change
from bridgebsr.rules.people import Away, Person, acting_for
from bridgebsr.rules.requests import case_leads
from bridgebsr.rules.rows import CaseRow, GateRow, MilestoneRow
from bridgebsr.store import absences
from bridgebsr.store import case_rows as store
from bridgebsr.store.evidence import add_evidence
from bridgebsr.store.people import load_directory
from bridgebsr.store.prepared import Prepared
from bridgebsr.store.team import load_teams
from models import (
    Decision,
    GateDecision,
    GateStatus,
    Source,
    Template,
    TimeoutOutcome,
)
from notifications.enqueue import enqueue


@dataclass(frozen=True)
class Actor:
    """Who makes a change, from where, with what note."""

    email: str
    source: Source = Source.CLI
    source_ref: str | None = None
    comment: str = ""


@dataclass
class _Work:
    loaded: store.Loaded
    today: date
    now: datetime

    @property
    def case(self) -> CaseRow:
        return self.loaded.case

    @property
    def plan(self) -> planning.Plan:
        return self.loaded.plan

    @property
    def template(self) -> Template:
        return self.loaded.template


def _begin(
    session: Session, key: str, doing: str, now: datetime, expected_version: int | None = None
) -> _Work:
    """Load a case for a change, refusing a stale view before any rule is asked."""
    loaded = store.load_case(session, key)
    store.check_version(loaded.case, expected_version)
    lifecycle.require_case_active(loaded.case.key, loaded.case.status, doing)
    return _Work(loaded, store.local_date(now, loaded.timezone), now)


def _commit(
    session: Session,
    work: _Work,
    changes: Sequence[Change],
    actor: Actor,
    now: datetime,
    expected_version: int | None,
) -> None:
    more = rules.settle(work.plan, work.template, work.today, changes)
    store.save_case(work.loaded, now=now, expected_version=expected_version)
    store.record(
        work.loaded.conn,
        work.case.id,
        [*changes, *more],
        actor=actor.email,
        now=now,
        source=actor.source,
        source_ref=actor.source_ref,
        comment=actor.comment,
    )
    session.commit()


def _milestone(work: _Work, key: str) -> MilestoneRow:
    for m in work.plan.milestones:
        if m.key == key.strip():
            return m
    known = ", ".join(m.key for m in work.plan.milestones)
    raise NotFound(f"case {work.case.key} has no milestone '{key}' (it has: {known})")


def _gate(work: _Work, key: str) -> GateRow:
    for g in work.plan.gates:
        if g.key == key.strip():
            return g
    known = ", ".join(g.key for g in work.plan.gates) or "none"
    raise NotFound(f"case {work.case.key} has no gate '{key}' (it has: {known})")


def _check_day(work: _Work, on: date | None) -> date:
    day = on or work.today
    if day > work.today:
        raise InvalidInput(f"--on {day} is in the future (today is {work.today}); give a past date")
    if day < work.case.start_date:
        raise InvalidInput(
            f"--on {day} is before case {work.case.key} started ({work.case.start_date})"
        )
    return day


def progress_milestone(
    *,
    session: Session,
    case_key: str,
    milestone_key: str,
    action: str,
    actor: Actor,
    now: datetime,
    on: date | None = None,
    expected_version: int | None = None,
    fields: Mapping[str, str] | None = None,
    evidence: Sequence[str] = (),
) -> MilestoneRow:
    """Start, complete or waive one milestone (`on` backdates it); dependents' forecasts move.
    A completion records the values of the fields the milestone captures (`fields`, name ->
    text, checked by `rules.fields`; a required one must be given unless the case holds it)
    on the milestone and the case, and `evidence` links to what shows it done."""
    work = _begin(session, case_key, f"{action} milestone {milestone_key}", now, expected_version)
    milestone = _milestone(work, milestone_key)
    if (fields or evidence) and action != "complete":
        raise InvalidInput("--field and --evidence go with `milestone complete`")
    links = [_link(text) for text in evidence]
    captured = _capture(work, milestone, fields or {}) if action == "complete" else None
    day = _check_day(work, on)
    change = rules.step(work.plan, milestone, action, day)
    standing_in = _standing_in(work, actor.email)
    covering = {a.contact_id for a in standing_in}
    check_may_progress(
        work.loaded.conn, work.case, milestone, action, actor.email, actor.source, covering
    )
    for away in standing_in:
        if away.contact_id == milestone.owner_id:
            _on_behalf(change, away)
    changes = [change]
    if captured:
        change.after["fields"] = captured
        milestone.fields = dict(captured)
        before, after = field_rules.changed(work.case.fields, captured)
        if after:
            work.case.fields = field_rules.merged(work.case.fields, captured)
            # Before the step: the case's forecast move is noted on the step's own event.
            changes.insert(0, Change("case.fields", milestone.key, before, after))
    _evidence(work, "milestone", milestone.key, milestone.round, links, actor)
    _commit(session, work, changes, actor, now, expected_version)
    return milestone


def _link(text: str) -> str:
    try:
        return field_rules.url(text)
    except ValueError as exc:
        raise InvalidInput(f"--evidence: {exc}") from None


def _capture(work: _Work, milestone: MilestoneRow, given: Mapping[str, str]) -> dict[str, Any]:
    """The captured values of a completion, checked; refused when a required one is missing
    (and the case holds none)."""
    checker = field_rules.captures(work.template, milestone.key)
    if given and not checker.specs:
        raise InvalidInput(
            f"--field: milestone {milestone.key} of {work.case.key} captures no fields; "
            f"set case fields with `bridgebsr case set {work.case.key} NAME=VALUE`"
        )
    values = {k: v for k, v in checker.values(given, "--field ").items() if v is not None}
    missing = checker.missing({**work.case.fields, **values})
    if missing:
        spec = checker.specs[missing[0]]
        raise InvalidInput(
            f"--field {spec.key}: completing {milestone.key} records {spec.title().lower()} "
            f"({spec.kind.value}); give --field {spec.key}=VALUE"
        )
    return values


def _evidence(
    work: _Work, item_kind: str, key: str, round_: int, links: Sequence[str], actor: Actor
) -> None:
    add_evidence(
        work.loaded.conn,
        [
            {
                "case_id": work.case.id,
                "item_kind": item_kind,
                "item_key": key,
                "round": round_,
                "url": link,
                "note": actor.comment,
                "added_by": actor.email,
                "at": work.now,
                "source": actor.source,
            }
            for link in links
        ],
    )


def decide_gate(
    *,
    session: Session,
    case_key: str,
    gate_key: str,
    decision: Decision,
    actor: Actor,
    now: datetime,
    expected_version: int | None = None,
    evidence: Sequence[str] = (),
    entered_for: str | None = None,
) -> GateRow:
    """Record one approver's decision (with `evidence` links it rests on); N approvals pass
    the gate, one rejection sends it back.

    With `entered_for`, the actor, who must be a pilot lead of the case, enters the decision
    of the approver it names (the Prefect UI's form): the vote is that approver's, and its
    event names the lead as actor and the approver as whom it was on behalf of."""
    work = _begin(session, case_key, f"{decision.value} gate {gate_key}", now, expected_version)
    gate = _gate(work, gate_key)
    links = [_link(text) for text in evidence]
    deputy = store.contact_by_email(work.loaded.conn, actor.email)
    what = f"gate {gate.key} of {work.case.key}"
    if entered_for is not None:
        _check_lead(work, deputy, what)
        deputy = store.contact_by_email(work.loaded.conn, entered_for)
    rules.check_decision(work.plan, gate, decision.value)
    votes = _votes(work.loaded.conn, gate)
    team = load_teams(work.loaded.conn, [work.case.id]).get(work.case.id, {})

    def holds(person: Person) -> bool:
        """Whether `person` may vote on this gate: a holder of its approver role, or the
        case team's holder of it."""
        return may_decide(person, gate.approver_role, team)

    approver, away = _voter(work, deputy, votes, holds)
    if not holds(approver):
        raise IllegalTransition(
            f"{approver.email} cannot decide {what}: it needs a {gate.approver_role}, "
            f"and {approver.email} is {approver.role}"
        )
    if approver.id in votes:
        raise IllegalTransition(f"{approver.email} has already decided {what} (round {gate.round})")
    _DECIDE.run(
        work.loaded.conn,
        {
            "gate_id": gate.id,
            "round": gate.round,
            "approver_id": approver.id,
            "decision": decision,
            "comment": actor.comment,
            "at": now,
            "source": actor.source,
        },
    )
    votes[approver.id] = decision
    _evidence(work, "gate", gate.key, gate.round, links, actor)
    if decision is Decision.APPROVE:
        approvals = sum(v is Decision.APPROVE for v in votes.values())
        changes = rules.approve(gate, approvals, work.today)
    else:
        changes = _reject(work, gate)
    if away is not None:
        _on_behalf(changes[0], away)
    elif entered_for is not None:
        changes[0].after["on_behalf_of"] = approver.email
        vote = announce.vote_entered(work.case, gate, decision.value, actor.email, work.today)
        to = (approver.id, approver.email)
        enqueue(work.loaded.conn, [announce.notice(work.case.id, to, vote, work.today)], now=now)
    _commit(session, work, changes, actor, now, expected_version)
    return gate


def _check_lead(work: _Work, lead: Person, what: str) -> None:
    """Only a pilot lead of the case enters a decision for an approver."""
    case, conn = work.case, work.loaded.conn
    team = load_teams(conn, [case.id]).get(case.id)
    leads = case_leads(load_directory(conn), case.lead_partner_id, case.kind, team)
    if lead.id not in {p.id for p in leads}:
        named = ", ".join(p.email for p in leads) or "no one"
        raise IllegalTransition(
            f"{lead.email} cannot enter decisions on {what}: only a pilot lead of "
            f"{case.key} may ({named}); approvers vote with `bridgebsr gate approve|reject`"
        )


def _standing_in(work: _Work, email: str) -> list[Away]:
    """The absences in force now in which `email` is the deputy (none for an address that is
    no contact's)."""
    found = absences.for_deputy_address(work.loaded.conn, email, work.now.date())
    return acting_for(found, found[0].deputy_id, work.now) if found else []


def _voter(
    work: _Work, deputy: Person, votes: dict[int, Decision], holds: Callable[[Person], bool]
) -> tuple[Person, Away | None]:
    """Whose vote a decision by `deputy` is (`rules.access.whose_vote`, with `holds` and
    not voted yet), and the absence it is cast in; the deputy's own when no one may (the
    caller refuses it). Whom they stand in for is read only when their own vote is spent."""
    found: dict[int, Away] = {}

    def absent() -> Iterator[Person]:
        for away in absences.standing_in(work.loaded.conn, deputy.id, work.now):
            person = store.contact_by_email(work.loaded.conn, away.email)
            found[person.id] = away
            yield person

    voter = whose_vote(deputy, absent(), lambda p: holds(p) and p.id not in votes)
    if voter is None or voter is deputy:
        return deputy, None
    return voter, found[voter.id]


def _on_behalf(change: Change, away: Away) -> None:
    """Name on an event whom its actor acted for, and until when they are away."""
    change.after["on_behalf_of"] = away.email
    change.after["away_until"] = away.ends.isoformat()


def next_gate(action: str, gate: GateRow) -> GateStatus:
    """The status a gate action leads to (refused when the gate's status does not allow it)."""
    return rules.next_gate(action, gate)


_DECISIONS = SQLModel.metadata.tables[str(GateDecision.__tablename__)]
_DECIDE = Prepared(
    insert(_DECISIONS),
    ("gate_id", "round", "approver_id", "decision", "comment", "at", "source"),
)
_VOTES = Prepared(
    select(_DECISIONS.c.approver_id, _DECISIONS.c.decision).where(
        and_(_DECISIONS.c.gate_id == bindparam("gate_id"), _DECISIONS.c.round == bindparam("round"))
    )
)


def _votes(conn: Connection, gate: GateRow) -> dict[int, Decision]:
    """Each approver's decision on the gate in its current round."""
    found = _VOTES.all(conn, {"gate_id": gate.id, "round": gate.round})
    return dict(found)


def _reject(work: _Work, gate: GateRow) -> list[Change]:
    return rules.reject(work.plan, work.template, gate, work.today, work.now)


def refuse_decision(
    *,
    session: Session,
    case_key: str,
    gate_key: str,
    actor: Actor,
    reason: str,
    now: datetime,
    entered_for: str | None = None,
) -> None:
    """Audit a decision that could not be recorded (unknown approver, wrong role, twice, not
    entered by a pilot lead); `entered_for`: the approver it was entered for."""
    refuse(
        session=session,
        case_key=case_key,
        item="gate",
        key=gate_key,
        actor=actor,
        reason=reason,
        now=now,
        entered_for=entered_for,
    )


def refuse(
    *,
    session: Session,
    case_key: str,
    item: str,
    key: str,
    actor: Actor,
    reason: str,
    now: datetime,
    action: str = "",
    entered_for: str | None = None,
) -> None:
    """Audit a change to a case's `item` ("gate" or "milestone") `key` that was refused (a
    vote twice or by someone who may not vote, a step on someone else's item), in its own
    transaction: one `<item>.refused` event naming the actor, the source, the reason and
    (`action`) what was asked; the one home of refusals, for the Prefect form and the web."""
    loaded = store.load_case(session, case_key, for_update=False)
    rows: Sequence[GateRow | MilestoneRow] = (
        loaded.plan.gates if item == "gate" else loaded.plan.milestones
    )
    found = next((r for r in rows if r.key == key.strip()), None)
    after: dict[str, Any] = {"reason": reason} | ({"action": action} if action else {})
    if isinstance(found, GateRow):
        after["round"] = found.round
    if entered_for:
        after["on_behalf_of"] = entered_for
    before = {"status": found.status.value} if found is not None else {}
    store.record(
        loaded.conn,
        loaded.case.id,
        [Change(f"{item}.refused", key.strip(), before, after)],
        actor=actor.email,
        now=now,
        source=actor.source,
        source_ref=actor.source_ref,
        comment=actor.comment,
    )
    session.commit()


def time_out_gate(
    *, session: Session, case_key: str, gate_key: str, actor: Actor, now: datetime
) -> GateRow | None:
    """Apply an open gate's timeout outcome once its deadline has passed (approve or reject).

    Returns None when there is nothing to do: the gate was decided (or its case held or
    closed) meanwhile, its deadline has not passed, or its outcome is `escalate` (the monitor
    notifies instead).
    """
    loaded = store.load_case(session, case_key)
    work = _Work(loaded, store.local_date(now, loaded.timezone), now)
    gate = _gate(work, gate_key)
    outcome = gate.on_timeout
    if (
        work.case.status not in lifecycle.ACTIVE_WORK
        or gate.status is not GateStatus.OPEN
        or gate.deadline is None
        or gate.deadline >= work.today
        or outcome is TimeoutOutcome.ESCALATE
    ):
        session.rollback()
        return None
    changes = rules.time_out(work.plan, work.template, gate, work.today, work.now)
    _commit(session, work, changes, actor, now, None)
    return gate


def reforecast_case(*, session: Session, case_key: str, actor: Actor, now: datetime) -> CaseRow:
    """Move forecasts to what `now` knows (late items push dependents); audit if they move."""
    work = _begin(session, case_key, "reforecast", now)
    before = work.case.forecast_date
    changes = planning.reforecast(work.plan, work.template, work.today)
    if work.case.forecast_date != before:
        changes.append(
            Change(
                "case.reforecast",
                None,
                {"forecast": before.isoformat()},
                {"forecast": work.case.forecast_date.isoformat()},
            )
        )
    # Forecasts that move without an event (an item's, not the case's) are saved unclaimed.
    store.save_case(work.loaded, now=now, expected_version=None, claim=bool(changes))
    if changes:
        store.record(
            work.loaded.conn,
            work.case.id,
            changes,
            actor=actor.email,
            now=now,
            source=actor.source,
            source_ref=actor.source_ref,
        )
    session.commit()
    return work.case
