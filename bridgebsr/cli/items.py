"""`milestone add | remove` (items of one case only) and `agenda` (what is due, whose it is)."""

from typing import Annotated

import typer

from bridgebsr.cli._common import (
    JSON_OPTION,
    AsOf,
    By,
    IfVersion,
    bounded,
    checked_text,
    emit_json,
    emit_table,
    expected_version,
    one_of,
    parse_when,
    runtime,
    say,
    today,
    who,
)
from bridgebsr.cli.orchestration import sync_case_runs
from bridgebsr.office import agenda as agenda_uc
from bridgebsr.office import items
from bridgebsr.office.progress import Actor
from bridgebsr.store.db import read_session, write_session
from models import DayKind, Milestone

AGENDA_COLUMNS = ("due", "when", "case", "kind", "item", "title", "who")


def add_milestone(
    key: str,
    item_key: Annotated[str, typer.Option("--key", help="The new item's key, e.g. extra-review.")],
    title: Annotated[str, typer.Option("--title", help="What the item is.")],
    owner: Annotated[
        str, typer.Option("--owner", help="Who owns it: an email, or a role of the template.")
    ],
    duration: Annotated[int, typer.Option("--duration", help="How many days it takes.")],
    after: Annotated[
        str, typer.Option("--after", help="The item it follows: ITEM or ITEM+LAG (days).")
    ],
    stage: Annotated[
        str | None, typer.Option("--stage", help="Its stage (default: that of --after).")
    ] = None,
    days: Annotated[
        DayKind | None,
        typer.Option(
            "--days",
            help="Count days as working or calendar (default: template's).",
            parser=one_of("--days", DayKind),
        ),
    ] = None,
    by: By = None,
    note: Annotated[str, typer.Option("--note", help="A note for the audit trail.")] = "",
    as_of: AsOf = None,
    if_version: IfVersion = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Add a milestone to one case only, after one of its items; it is scheduled, monitored
    and reported like any other."""
    title = checked_text("--title", title.strip(), Milestone, "title")
    duration = bounded(duration, "--duration", 0, 2000)
    rt = runtime()
    actor = who(rt, by)
    with write_session(rt.engine) as session:
        added = items.add_milestone(
            session=session,
            case_key=key,
            key=item_key,
            title=title,
            owner=owner,
            duration=duration,
            after=after,
            stage=stage,
            days=days,
            actor=Actor(actor.email, comment=note),
            now=parse_when(as_of, rt),
            expected_version=expected_version(if_version),
        )
    m, case = added.milestone, added.case
    if as_json:
        emit_json(
            {
                "case": case.key,
                "item": m.key,
                "title": m.title,
                "stage": m.stage,
                "owner": added.owner,
                "owner_role": m.owner_role,
                "planned_start": m.planned_start.isoformat(),
                "planned_due": m.planned_due.isoformat(),
                "forecast_due": m.forecast_due.isoformat(),
                "case_forecast": case.forecast_date.isoformat(),
                "version": case.version,
            }
        )
    else:
        say(
            f"{case.key} {m.key} added: owner {added.owner}, planned {m.planned_start} to "
            f"{m.planned_due}; case forecast {case.forecast_date} (version {case.version})"
        )
    actor.tell()
    sync_case_runs(rt, case.key)


def remove_milestone(
    key: str,
    milestone: str,
    reason: Annotated[str, typer.Option("--reason", help="Why; kept on the audit trail.")],
    by: By = None,
    as_of: AsOf = None,
    if_version: IfVersion = None,
) -> None:
    """Remove an item added to this case, while it has not started and nothing depends on it."""
    rt = runtime()
    actor = who(rt, by)
    with write_session(rt.engine) as session:
        case = items.remove_milestone(
            session=session,
            case_key=key,
            milestone_key=milestone,
            reason=reason,
            actor=Actor(actor.email),
            now=parse_when(as_of, rt),
            expected_version=expected_version(if_version),
        )
    say(
        f"{case.key} {milestone.strip()} removed; case forecast {case.forecast_date} "
        f"(version {case.version})"
    )
    actor.tell()
    sync_case_runs(rt, case.key)


def agenda(
    owner: Annotated[
        str | None, typer.Option("--owner", help="Only what this person owns or may decide.")
    ] = None,
    partner: Annotated[
        str | None, typer.Option("--partner", help="Only cases this partner leads.")
    ] = None,
    within: Annotated[
        int, typer.Option("--within", help="Days ahead to look (late items always show).")
    ] = 14,
    as_of: AsOf = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """What is due within N days or late, and whose it is; gates waiting and who decides."""
    within = bounded(within, "--within", 0, 3660)
    rt = runtime()
    day = today(rt, parse_when(as_of, rt))
    with read_session(rt.engine) as session:
        rows = agenda_uc.agenda(
            session=session, today=day, within=within, owner=owner, partner=partner
        )
    if as_json:
        emit_json(rows)
        return
    shown = [{**r, "who": ", ".join(r["who"]) or "no one"} for r in rows]
    for r in shown:
        if r["kind"] == "gate":
            r["who"] = f"{r['needed']} more of: {r['who']}"
    emit_table(f"Agenda as of {day}: {len(rows)} item(s)", shown, AGENDA_COLUMNS)
