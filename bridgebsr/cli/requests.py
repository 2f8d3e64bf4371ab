"""`milestone ask-date` and `requests list | accept | decline | withdraw`: asking for a new due
date, answering and withdrawing, each through one use case of `office.requests`."""

from typing import Annotated, Any

import typer

from bridgebsr.cli._common import (
    JSON_OPTION,
    AsOf,
    By,
    IfVersion,
    emit_json,
    emit_table,
    expected_version,
    parse_day,
    parse_when,
    runtime,
    say,
    who,
)
from bridgebsr.cli.orchestration import sync_case_runs
from bridgebsr.errors import InvalidInput
from bridgebsr.office import requests
from bridgebsr.office.requests import DateAsk
from bridgebsr.store.db import read_session, write_session
from models import Source

requests_app = typer.Typer(
    help="Requests for a new due date: list, accept, decline, withdraw.", no_args_is_help=True
)
LIST_COLUMNS = ("id", "case", "item", "asked_by", "current_due", "requested_due", "age_days")
Comment = Annotated[str, typer.Option("--comment", help="Why (required); kept on the audit trail.")]
Number = Annotated[int, typer.Argument(help="The request's number (`bridgebsr requests list`).")]


def ask_date(
    key: str,
    milestone: str,
    due: Annotated[str, typer.Option("--due", help="The due date asked for (ISO).")],
    reason: Annotated[str, typer.Option("--reason", help="Why the item needs a new date.")],
    by: By = None,
    as_of: AsOf = None,
    if_version: IfVersion = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Ask the pilot lead for a new due date for an open milestone you own, with a reason."""
    day = parse_day(due, "--due")
    if day is None:
        raise InvalidInput("--due is empty; give the due date asked for (2026-05-01)")
    rt = runtime()
    actor = who(rt, by)
    with write_session(rt.engine) as session:
        asked = requests.ask_new_date(
            session=session,
            case_key=key,
            item_key=milestone,
            due=day,
            reason=reason,
            actor=actor.email,
            source=Source.CLI,
            now=parse_when(as_of, rt),
            expected_version=expected_version(if_version),
        )
    if as_json:
        emit_json(_shown(asked))
    else:
        told = ", ".join(asked.told) or "no one (the case has no pilot lead)"
        say(f"request #{asked.id}: {asked.case_key} {asked.item_key} to {asked.requested_due}")
        say(f"  waiting for an answer from {told}")


@requests_app.command("list")
def list_requests(
    by: Annotated[
        str | None, typer.Option("--by", help="Only the requests this person answers.")
    ] = None,
    as_of: AsOf = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """The requests for a new date waiting for an answer, oldest first."""
    rt = runtime()
    with read_session(rt.engine) as session:
        rows = requests.pending_requests(session=session, for_actor=by, now=parse_when(as_of, rt))
    if as_json:
        emit_json(rows)
        return
    emit_table("Requests for a new date", rows, (*LIST_COLUMNS, "reason"))


@requests_app.command("accept")
def accept(
    number: Number,
    by: By = None,
    comment: Annotated[str, typer.Option("--comment", help="A note for the asker.")] = "",
    as_of: AsOf = None,
    if_version: IfVersion = None,
) -> None:
    """Accept a request: the item is rescheduled to the date asked for, with its reason."""
    _answer(number, True, by, comment, as_of, if_version)


@requests_app.command("decline")
def decline(
    number: Number,
    comment: Comment = "",
    by: By = None,
    as_of: AsOf = None,
    if_version: IfVersion = None,
) -> None:
    """Decline a request, saying why; the agreed date stands."""
    _answer(number, False, by, comment, as_of, if_version)


@requests_app.command("withdraw")
def withdraw(
    number: Number,
    by: By = None,
    comment: Annotated[str, typer.Option("--comment", help="A note for the pilot lead.")] = "",
    as_of: AsOf = None,
) -> None:
    """Withdraw your own request before it is answered; the agreed date stands."""
    rt = runtime()
    actor = who(rt, by)
    with write_session(rt.engine) as session:
        done = requests.withdraw_date_request(
            session=session,
            request_id=number,
            actor=actor.email,
            comment=comment,
            source=Source.CLI,
            now=parse_when(as_of, rt),
        )
    say(f"request #{done.id} withdrawn: {done.case_key} {done.item_key}")
    say(f"  the agreed date of {done.item_key} stands; the pilot lead is told")


def _answer(
    number: int, accept: bool, by: str | None, comment: str, as_of: str | None, version: int | None
) -> None:
    rt = runtime()
    actor = who(rt, by)
    with write_session(rt.engine) as session:
        done = requests.answer_date_request(
            session=session,
            request_id=number,
            accept=accept,
            actor=actor.email,
            comment=comment,
            source=Source.CLI,
            now=parse_when(as_of, rt),
            expected_version=expected_version(version),
        )
    say(f"request #{done.id} {done.status}: {done.case_key} {done.item_key}")
    if accept:
        say(f"  {done.item_key} now due {done.requested_due}; {done.asked_by} is told")
        sync_case_runs(rt, done.case_key)
    else:
        say(f"  the agreed date of {done.item_key} stands; {done.asked_by} is told")


def _shown(asked: DateAsk) -> dict[str, Any]:
    return {
        "id": asked.id,
        "case": asked.case_key,
        "item": asked.item_key,
        "asked_by": asked.asked_by,
        "current_due": asked.current_due,
        "requested_due": asked.requested_due,
        "reason": asked.reason,
        "status": asked.status,
        "told": list(asked.told),
    }
