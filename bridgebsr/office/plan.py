"""Use cases on a case's agreed plan and its own facts: reschedule a milestone, rebaseline a
case, edit its title, target or lead partner.

Three plans are kept: the original (each item's `baseline_*`, set at open), the agreed plan in
force (`planned_*`, moved here) and the forecast (`forecast_*`, moved by progress). Each move
of an item's agreed dates is a `plan_changes` row, so a figure can ask which plan was in force
on a day; each rebaseline is a `baselines` row.
"""

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert
from sqlmodel import Session, SQLModel, col, select

from bridgebsr.errors import InvalidInput, NotFound
from bridgebsr.office.progress import Actor, _begin, _commit, _milestone
from bridgebsr.rules import planning
from bridgebsr.rules.lifecycle import Change
from bridgebsr.rules.planning import Moved
from bridgebsr.rules.rows import CaseRow, MilestoneRow
from bridgebsr.store import case_rows as store
from bridgebsr.store.prepared import Prepared
from models import Baseline, Partner, PlanChange

RESCHEDULE = "reschedule"
REBASELINE = "rebaseline"


def reschedule_milestone(
    *,
    session: Session,
    case_key: str,
    milestone_key: str,
    due: date,
    reason: str,
    actor: Actor,
    now: datetime,
    expected_version: int | None = None,
) -> tuple[MilestoneRow, list[Moved]]:
    """Agree a new due date for one open milestone (`planning.reschedule`: its dependents
    move by the plan's rule), record each moved item's new agreed dates, one audit event
    naming them all, then reforecast. Returns the milestone and what moved."""
    reason = _reason(reason, "reschedule")
    work = _begin(session, case_key, f"reschedule milestone {milestone_key}", now, expected_version)
    milestone = _milestone(work, milestone_key)
    moved = planning.reschedule(work.plan, milestone, due, work.today)
    _plan_changes(work.loaded.conn, work.case, moved, RESCHEDULE, None, now)
    before, after = _dates(moved)
    change = Change(
        "milestone.reschedule",
        milestone.key,
        {"due": moved[0].due.isoformat(), "items": before},
        {"due": due.isoformat(), "items": after},
    )
    _commit(session, work, [change], _with(actor, reason), now, expected_version)
    return milestone, moved


def rebaseline_case(
    *,
    session: Session,
    case_key: str,
    reason: str,
    actor: Actor,
    now: datetime,
    expected_version: int | None = None,
) -> tuple[CaseRow, int, list[Moved]]:
    """Make today's forecast the agreed plan of every open item and the forecast date the
    case's target (`planning.rebaseline`), as rebaseline number n+1: a `baselines` row, a
    `plan_changes` row per moved item, one audit event. Returns the case, the number and
    what moved."""
    reason = _reason(reason, "rebaseline")
    work = _begin(session, case_key, "rebaseline", now, expected_version)
    case = work.case
    opened = planning.reforecast(work.plan, work.template, work.today)
    target = case.target_date
    moved = planning.rebaseline(work.plan, work.today)
    conn = work.loaded.conn
    number = (_LAST_BASELINE.first(conn, {"case_id": case.id}) or (None,))[0] or 0
    number += 1
    _ADD_BASELINE.run(
        conn,
        {
            "case_id": case.id,
            "number": number,
            "at": now,
            "actor": actor.email,
            "reason": reason,
            "source": actor.source,
            "target_date": case.target_date,
        },
    )
    _plan_changes(conn, case, moved, REBASELINE, number, now)
    before, after = _dates(moved)
    change = Change(
        "case.rebaseline",
        None,
        {"baseline": number - 1, "target": target.isoformat(), "items": before},
        {"baseline": number, "target": case.target_date.isoformat(), "items": after},
    )
    _commit(session, work, [*opened, change], _with(actor, reason), now, expected_version)
    return case, number, moved


def edit_case(
    *,
    session: Session,
    case_key: str,
    actor: Actor,
    now: datetime,
    title: str | None = None,
    target: date | None = None,
    partner_code: str | None = None,
    expected_version: int | None = None,
) -> tuple[CaseRow, Change]:
    """Change a case's title, target date or lead partner, with one audit event naming old
    and new (`planning.edit_case`). Nothing else is derived again: items keep their owners
    and dates; a new lead partner counts from now on."""
    if title is not None and not title.strip():
        raise InvalidInput("--title is empty; give the case's new title")
    loaded = store.load_case(session, case_key)
    case = loaded.case
    store.check_version(case, expected_version)  # a stale view is refused before any rule
    partner = None
    before_code = ""
    if partner_code is not None:
        code = partner_code.strip().upper()
        found = session.exec(select(Partner).where(col(Partner.code) == code)).first()
        if found is None:
            raise NotFound(f"no partner {partner_code}; see `bridgebsr partners list`")
        assert found.id is not None
        partner = (found.id, found.code)
        old = session.get(Partner, case.lead_partner_id)
        before_code = old.code if old else ""
    change = planning.edit_case(
        case,
        title=title.strip() if title is not None else None,
        target=target,
        partner=partner,
        partner_before=before_code,
    )
    store.save_case(loaded, now=now, expected_version=expected_version)
    store.record(
        loaded.conn,
        case.id,
        [change],
        actor=actor.email,
        now=now,
        source=actor.source,
        source_ref=actor.source_ref,
        comment=actor.comment,
    )
    session.commit()
    return case, change


def _reason(reason: str, doing: str) -> str:
    if not reason.strip():
        raise InvalidInput(f"say why: --reason 'why the plan is to {doing}'")
    return reason.strip()


def _with(actor: Actor, reason: str) -> Actor:
    """The actor with the reason as the audit event's comment."""
    return Actor(actor.email, actor.source, actor.source_ref, reason)


def _dates(moved: Sequence[Moved]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each moved item's agreed dates before and after, by key."""
    before = {m.node.key: {"start": m.start.isoformat(), "due": m.due.isoformat()} for m in moved}
    after = {
        m.node.key: {
            "start": m.node.planned_start.isoformat(),
            "due": m.node.planned_due.isoformat(),
        }
        for m in moved
    }
    return before, after


def _plan_changes(
    conn: Connection,
    case: CaseRow,
    moved: Sequence[Moved],
    why: str,
    baseline: int | None,
    now: datetime,
) -> None:
    if not moved:
        return
    _ADD_PLAN_CHANGE.many(
        conn,
        [
            {
                "case_id": case.id,
                "item_kind": "milestone" if isinstance(m.node, MilestoneRow) else "gate",
                "item_key": m.node.key,
                "at": now,
                "start": m.node.planned_start,
                "due": m.node.planned_due,
                "why": why,
                "baseline": baseline,
            }
            for m in moved
        ],
    )


_BASELINES = SQLModel.metadata.tables[str(Baseline.__tablename__)]
_PLAN_CHANGES = SQLModel.metadata.tables[str(PlanChange.__tablename__)]
_LAST_BASELINE = Prepared(
    select(func.max(_BASELINES.c.number)).where(_BASELINES.c.case_id == bindparam("case_id"))
)
_ADD_BASELINE = Prepared(
    insert(_BASELINES),
    ("case_id", "number", "at", "actor", "reason", "source", "target_date"),
)
_ADD_PLAN_CHANGE = Prepared(
    insert(_PLAN_CHANGES),
    ("case_id", "item_kind", "item_key", "at", "start", "due", "why", "baseline"),
)
