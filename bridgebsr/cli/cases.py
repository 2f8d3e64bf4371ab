"""`bridgebsr case`, `milestone` and `gate` commands: each parses, calls one use case, prints."""

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.markup import escape

from bridgebsr.cli._common import (
    JSON_OPTION,
    AsOf,
    By,
    IfVersion,
    bounded,
    change_text,
    checked_text,
    console,
    emit_json,
    emit_table,
    expected_version,
    known_kind,
    one_of,
    parse_day,
    parse_when,
    pilot_kinds,
    runtime,
    say,
    today,
    who,
)
from bridgebsr.cli.orchestration import sync_case_runs
from bridgebsr.office import cases as case_uc
from bridgebsr.office import gate_views, progress, queries
from bridgebsr.office.gate_views import GateView
from bridgebsr.rules.fields import parse_pairs
from bridgebsr.rules.roles import parse_assignments
from bridgebsr.rules.rows import GateRow
from bridgebsr.store.db import read_session, write_session
from models import Case, CaseStatus, Decision, GateStatus

case_app = typer.Typer(help="Open, list, show and change cases.", no_args_is_help=True)
milestone_app = typer.Typer(
    help="Start, complete or waive a case's milestones.", no_args_is_help=True
)
gate_app = typer.Typer(help="Approve or reject a case's gates.", no_args_is_help=True)

Fields = Annotated[
    list[str] | None,
    typer.Option("--field", help="NAME=VALUE of a field (repeat); see `templates show KIND`."),
]
Evidence = Annotated[
    list[str] | None,
    typer.Option("--evidence", help="An http(s) link to what shows it (repeat)."),
]
LIST_COLUMNS = ("key", "kind", "status", "stage", "owner", "partner", "target", "forecast", "title")


@case_app.command("open")
def open_(
    kind: Annotated[
        str, typer.Argument(help="The pilot kind (`templates list`).", autocompletion=pilot_kinds)
    ],
    title: Annotated[str, typer.Option("--title", help="What the case is about.")],
    owner: Annotated[str, typer.Option("--owner", help="Email of the case owner.")],
    partner: Annotated[str | None, typer.Option("--partner", help="Lead partner code.")] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="Start date (default today).")
    ] = None,
    team: Annotated[
        list[str] | None,
        typer.Option("--team", help="ROLE=EMAIL: who holds a role on this case (repeat)."),
    ] = None,
    field: Fields = None,
    as_of: AsOf = None,
) -> None:
    """Open a case of a pilot KIND; prints its key."""
    title = checked_text("--title", title.strip(), Case, "title")
    rt = runtime()
    now = parse_when(as_of, rt)
    with write_session(rt.engine) as session:
        case = case_uc.open_case(
            session=session,
            catalog=rt.catalog,
            kind=kind,
            title=title,
            owner_email=owner,
            partner_code=partner,
            start=parse_day(start, "--start"),
            now=now,
            team=parse_assignments(team or [], "--team"),
            fields=parse_pairs(field or [], "--field"),
        )
        say(case.key)
    sync_case_runs(rt, case.key)


@case_app.command("set")
def set_(
    key: str,
    values: Annotated[
        list[str], typer.Argument(help="NAME=VALUE of a field of the case (empty clears it).")
    ],
    by: By = None,
    as_of: AsOf = None,
    if_version: IfVersion = None,
) -> None:
    """Set field values of a case (see `templates show KIND` for its fields)."""
    rt = runtime()
    actor = who(rt, by)
    with write_session(rt.engine) as session:
        case = case_uc.set_fields(
            session=session,
            key=key,
            values=parse_pairs(values, "case set"),
            actor=actor.email,
            now=parse_when(as_of, rt),
            expected_version=expected_version(if_version),
        )
        say(f"{case.key} fields set (version {case.version})")
    actor.tell()


@case_app.command("list")
def list_(
    pilot: Annotated[
        str | None,
        typer.Option("--pilot", help="Only this pilot kind.", autocompletion=pilot_kinds),
    ] = None,
    status: Annotated[
        CaseStatus | None,
        typer.Option("--status", help="Only this status.", parser=one_of("--status", CaseStatus)),
    ] = None,
    partner: Annotated[
        str | None, typer.Option("--partner", help="Only this lead partner.")
    ] = None,
    overdue: Annotated[
        bool, typer.Option("--overdue", help="Only cases with late milestones.")
    ] = False,
    owner: Annotated[
        str | None,
        typer.Option("--owner", help="Only cases this person owns or owns an open item of."),
    ] = None,
    due_within: Annotated[
        int | None,
        typer.Option("--due-within", help="Only cases with an open item due within N days."),
    ] = None,
    as_of: AsOf = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """List cases; `ready` flags those whose items are all finished (ready to close)."""
    if due_within is not None:
        due_within = bounded(due_within, "--due-within", 0, 3660)
    rt = runtime()
    if pilot is not None:
        pilot = known_kind(rt, pilot)
    with read_session(rt.engine) as session:
        rows = queries.list_cases(
            session=session,
            today=today(rt, parse_when(as_of, rt)),
            pilot=pilot,
            status=status,
            partner=partner,
            overdue=overdue,
            owner=owner,
            due_within=due_within,
        )
    if as_json:
        emit_json(rows)
    else:
        shown = [{**r, "ready": "READY" if r["ready_to_close"] else ""} for r in rows]
        emit_table(f"{len(rows)} case(s)", shown, (*LIST_COLUMNS[:-1], "ready", "title"))


@case_app.command("show")
def show(key: str, as_of: AsOf = None, as_json: bool = JSON_OPTION) -> None:
    """Show one case: milestones planned vs forecast, gates, critical path, history."""
    rt = runtime()
    with read_session(rt.engine) as session:
        data = queries.show_case(session=session, key=key, today=today(rt, parse_when(as_of, rt)))
    if as_json:
        emit_json(data)
        return
    _print_case(data)


def _print_case(data: dict[str, Any]) -> None:
    console.print(
        f"[bold]{data['key']}[/bold] {escape(data['title'])}  "
        f"({data['kind']} v{data['template_version']})",
        markup=True,
    )
    say(
        f"status {data['status']} · stage {data['stage'] or '-'} · owner {data['owner']} · "
        f"partner {data['partner']} · version {data['version']}"
    )
    say(
        f"start {data['start']} · target {data['target']} (originally "
        f"{data['baseline_target']}) · forecast {data['forecast']} ({data['slip_days']:+d} days)"
    )
    for f in data["fields"]:
        say(f"{f['label']} ({f['name']}): {'-' if f['value'] is None else f['value']}")
    for b in data["baselines"]:
        say(
            f"baseline {b['number']}: {b['at'][:10]} by {b['who']}, "
            f"target {b['target']}: {b['why']}"
        )
    for m in data["milestones"]:
        m["late"] = "LATE" if m["overdue"] else ""
        m["path"] = "*" if m["critical"] else ""
    emit_table(
        "Milestones: original (baseline), agreed (planned) and forecast due; * critical path",
        data["milestones"],
        (
            "key",
            "status",
            "owner",
            "baseline_due",
            "planned_due",
            "forecast_due",
            "slip_days",
            "late",
            "path",
        ),
    )
    for g in data["gates"]:
        g["votes"] = ", ".join(
            f"{d['by']}: {d['decision']}" for d in g["decisions"] if d["round"] == g["round"]
        )
    emit_table(
        "Gates",
        data["gates"],
        ("key", "status", "round", "approvers", "deadline", "planned_due", "forecast_due", "votes"),
    )
    for g in data["gates"]:
        if g["to_look_at"]:
            say(f"gate {g['key']}, to look at before deciding: {g['to_look_at']}")
    if data["evidence"]:
        emit_table(
            "Evidence",
            data["evidence"],
            ("item_kind", "item_key", "round", "url", "added_by", "at"),
        )
    say("critical path: " + " → ".join(data["critical_path"]))
    history = [
        {
            **e,
            "at": datetime.fromisoformat(e["at"]).astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
            "change": change_text(e["before"], e["after"]),
            "comment": e["comment"] or "",
        }
        for e in data["events"]
    ]
    emit_table(
        f"History: {len(history)} change(s), oldest first; times in UTC",
        history,
        ("at", "kind", "subject", "actor", "source", "change", "comment"),
    )


def _change_case(action: str) -> Any:
    def command(
        key: str,
        reason: Annotated[str, typer.Option("--reason", help="Why; kept on the audit trail.")],
        by: By = None,
        as_of: AsOf = None,
        if_version: IfVersion = None,
    ) -> None:
        rt = runtime()
        actor = who(rt, by)
        with write_session(rt.engine) as session:
            case = case_uc.change_case(
                session=session,
                key=key,
                action=action,
                reason=reason,
                actor=actor.email,
                now=parse_when(as_of, rt),
                expected_version=expected_version(if_version),
            )
            say(f"{case.key} is {case.status.value} (version {case.version})")
        actor.tell()
        sync_case_runs(rt, key)

    command.__doc__ = f"{action.capitalize()} a case, with a reason."
    return command


for _action in ("hold", "resume", "close", "cancel"):
    case_app.command(_action)(_change_case(_action))


def _milestone_command(action: str) -> Any:
    def command(
        key: str,
        milestone: str,
        by: By = None,
        note: Annotated[str, typer.Option("--note", help="A note for the audit trail.")] = "",
        on: Annotated[
            str | None, typer.Option("--on", help="When it happened (default today).")
        ] = None,
        as_of: AsOf = None,
        if_version: IfVersion = None,
        field: Fields = None,
        evidence: Evidence = None,
    ) -> None:
        rt = runtime()
        actor = who(rt, by)
        with write_session(rt.engine) as session:
            m = progress.progress_milestone(
                session=session,
                case_key=key,
                milestone_key=milestone,
                action=action,
                actor=progress.Actor(actor.email, comment=note),
                now=parse_when(as_of, rt),
                on=parse_day(on, "--on"),
                expected_version=expected_version(if_version),
                fields=parse_pairs(field or [], "--field"),
                evidence=evidence or [],
            )
            say(f"{key.upper()} {m.key} is {m.status.value}; forecast due {m.forecast_due}")
        actor.tell()
        sync_case_runs(rt, key)

    command.__doc__ = f"{action.capitalize()} a milestone of a case."
    return command


for _action in ("start", "complete", "waive"):
    milestone_app.command(_action)(_milestone_command(_action))


def _gate_command(decision: Decision) -> Any:
    def command(
        key: str,
        gate: str,
        by: Annotated[str, typer.Option("--by", help="Approver's email.")],
        comment: Annotated[str, typer.Option("--comment", help="Reasoning, kept.")] = "",
        as_of: AsOf = None,
        if_version: IfVersion = None,
        evidence: Evidence = None,
    ) -> None:
        rt = runtime()
        actor = who(rt, by)
        with write_session(rt.engine) as session:
            g = progress.decide_gate(
                session=session,
                case_key=key,
                gate_key=gate,
                decision=decision,
                actor=progress.Actor(actor.email, comment=comment),
                now=parse_when(as_of, rt),
                expected_version=expected_version(if_version),
                evidence=evidence or [],
            )
        with read_session(rt.engine) as session:
            view = gate_views.gate_view(session=session, case_key=key, gate_key=g.key)
        say(f"{view.case_key} gate {g.key}: {gate_outcome(g, view)}")
        sync_case_runs(rt, key)

    command.__doc__ = f"{decision.value.capitalize()} a gate of a case as one of its approvers."
    return command


def gate_outcome(decided: GateRow, now: GateView) -> str:
    """What a decision did to a gate, in words: the votes still needed, passed, or what the
    rejection set off (`decided`: the gate as the decision left it; `now`: its votes)."""
    if decided.status is GateStatus.OPEN:
        left = now.required - now.approvals
        return (
            f"vote {now.approvals} of {now.required} recorded; "
            f"waiting for {left} more {_people(left, now.approver_role)}"
        )
    if decided.status is GateStatus.APPROVED:
        return f"passed with {now.approvals} of {now.required} approvals"
    if decided.status is GateStatus.REJECTED:
        return f"rejected; case {now.case_key} is {now.case_status.value}"
    return (
        f"rejected in round {decided.round - 1}; the case goes back to stage "
        f"{decided.rework_stage} for rework, and the gate opens again for round "
        f"{decided.round} when that work is done"
    )


def _people(count: int, role: str) -> str:
    """A role as people: 'council member', or pluralised, 'council members'."""
    words = role.replace("-", " ").replace("_", " ")
    if count == 1:
        return words
    if words.endswith(("s", "x", "z", "ch", "sh")):
        return words + "es"
    if words.endswith("y") and words[-2:-1] not in set("aeiou"):
        return words[:-1] + "ies"
    return words + "s"


gate_app.command("approve")(_gate_command(Decision.APPROVE))
gate_app.command("reject")(_gate_command(Decision.REJECT))
