"""`milestone reschedule`, `case rebaseline` and `case edit`: new agreed dates and a case's own
facts, each through one use case of `office.plan`."""

from typing import Annotated, Any

import typer

from bridgebsr.cli._common import (
    JSON_OPTION,
    AsOf,
    By,
    IfVersion,
    checked_text,
    emit_json,
    expected_version,
    parse_day,
    parse_when,
    runtime,
    say,
    who,
)
from bridgebsr.cli.orchestration import sync_case_runs
from bridgebsr.errors import InvalidInput
from bridgebsr.office import plan
from bridgebsr.office.progress import Actor
from bridgebsr.rules.planning import Moved
from bridgebsr.store.db import write_session
from models import Case

Reason = Annotated[str, typer.Option("--reason", help="Why; kept on the audit trail.")]


def reschedule(
    key: str,
    milestone: str,
    due: Annotated[str, typer.Option("--due", help="The new agreed due date (ISO).")],
    reason: Reason,
    by: By = None,
    as_of: AsOf = None,
    if_version: IfVersion = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Agree a new due date for an open milestone; its dependents move with it."""
    day = parse_day(due, "--due")
    if day is None:
        raise InvalidInput("--due is empty; give the new due date (2026-05-01)")
    rt = runtime()
    actor = who(rt, by)
    with write_session(rt.engine) as session:
        m, moved = plan.reschedule_milestone(
            session=session,
            case_key=key,
            milestone_key=milestone,
            due=day,
            reason=reason,
            actor=Actor(actor.email),
            now=parse_when(as_of, rt),
            expected_version=expected_version(if_version),
        )
    if as_json:
        emit_json({"case": key.strip().upper(), "milestone": m.key, "moved": _moved(moved)})
    else:
        say(f"{key.strip().upper()} {m.key} now due {m.planned_due}; forecast {m.forecast_due}")
        for line in _lines(moved[1:]):
            say(f"  also moved: {line}")
    actor.tell()
    sync_case_runs(rt, key)


def rebaseline(
    key: str,
    reason: Reason,
    by: By = None,
    as_of: AsOf = None,
    if_version: IfVersion = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Make the case's current forecast its agreed plan (a new baseline), with a reason."""
    rt = runtime()
    actor = who(rt, by)
    with write_session(rt.engine) as session:
        case, number, moved = plan.rebaseline_case(
            session=session,
            case_key=key,
            reason=reason,
            actor=Actor(actor.email),
            now=parse_when(as_of, rt),
            expected_version=expected_version(if_version),
        )
    if as_json:
        emit_json(
            {
                "case": case.key,
                "baseline": number,
                "target": case.target_date.isoformat(),
                "version": case.version,
                "moved": _moved(moved),
            }
        )
    else:
        say(
            f"{case.key} baseline {number}: target {case.target_date}, "
            f"{len(moved)} item(s) moved (version {case.version})"
        )
    actor.tell()
    sync_case_runs(rt, key)


def edit(
    key: str,
    title: Annotated[str | None, typer.Option("--title", help="A new title.")] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="A new target date (ISO), not before start.")
    ] = None,
    partner: Annotated[
        str | None, typer.Option("--partner", help="A new lead partner's code.")
    ] = None,
    note: Annotated[str, typer.Option("--note", help="A note for the audit trail.")] = "",
    by: By = None,
    as_of: AsOf = None,
    if_version: IfVersion = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Change a case's title, target date or lead partner (audited; nothing else moves)."""
    if title is not None:
        title = checked_text("--title", title.strip(), Case, "title")
    rt = runtime()
    actor = who(rt, by)
    with write_session(rt.engine) as session:
        case, change = plan.edit_case(
            session=session,
            case_key=key,
            actor=Actor(actor.email, comment=note),
            now=parse_when(as_of, rt),
            title=title,
            target=parse_day(target, "--target"),
            partner_code=partner,
            expected_version=expected_version(if_version),
        )
    if as_json:
        emit_json(
            {
                "case": case.key,
                "before": change.before,
                "after": change.after,
                "version": case.version,
            }
        )
    else:
        moved = ", ".join(f"{k} {change.before[k]} -> {v}" for k, v in change.after.items())
        say(f"{case.key}: {moved} (version {case.version})")
    actor.tell()
    sync_case_runs(rt, key)


def _moved(moved: list[Moved]) -> list[dict[str, Any]]:
    return [
        {
            "item": m.node.key,
            "before": {"start": m.start.isoformat(), "due": m.due.isoformat()},
            "after": {
                "start": m.node.planned_start.isoformat(),
                "due": m.node.planned_due.isoformat(),
            },
        }
        for m in moved
    ]


def _lines(moved: list[Moved]) -> list[str]:
    return [f"{m.node.key} due {m.due} -> {m.node.planned_due}" for m in moved]
