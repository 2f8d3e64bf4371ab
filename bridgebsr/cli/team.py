"""`case team`, `case reassign`, `milestone reassign` and `contacts retire`: who does what on
a case, and handing work over. Registered on the `case`, `milestone` and `contacts` apps by
`cli/__init__.py`."""

from typing import Annotated

import typer

from bridgebsr.cli._common import (
    JSON_OPTION,
    AsOf,
    By,
    IfVersion,
    emit_json,
    emit_table,
    expected_version,
    parse_when,
    runtime,
    say,
    who,
)
from bridgebsr.cli.orchestration import sync_case_runs
from bridgebsr.office import retire, team
from bridgebsr.office.progress import Actor
from bridgebsr.rules.roles import parse_assignments
from bridgebsr.store.db import read_session, write_session


def case_team(
    key: str,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="ROLE=EMAIL: name who holds a role on this case (repeat)."),
    ] = None,
    unset: Annotated[
        list[str] | None, typer.Option("--unset", help="ROLE: clear a role's holder (repeat).")
    ] = None,
    by: By = None,
    as_of: AsOf = None,
    if_version: IfVersion = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show who holds each role on a case (its team, else its lead partner, else the pilot's
    leads); with --set/--unset change its team, handing the role's open items over."""
    rt = runtime()
    if set_ or unset:
        actor = who(rt, by)
        with write_session(rt.engine) as session:
            work = team.set_team(
                session=session,
                key=key,
                sets=parse_assignments(set_ or [], "--set"),
                unsets=[r.strip() for r in unset or []],
                actor=Actor(actor.email),
                now=parse_when(as_of, rt),
                expected_version=expected_version(if_version),
            )
            handed = len(work.handed)
            say(
                f"{work.key}: team changed, {handed} open item(s) handed over "
                f"(version {work.loaded.case.version})"
            )
        actor.tell()
        sync_case_runs(rt, key)
    with read_session(rt.engine) as session:
        data = team.show_team(session=session, key=key)
    if as_json:
        emit_json(data)
    elif not (set_ or unset):
        emit_table(f"{data['case']} team", data["team"], ("role", "who", "source"))


def case_reassign(
    key: str,
    owner: Annotated[str, typer.Option("--owner", help="Email of the new case owner.")],
    by: By = None,
    as_of: AsOf = None,
    if_version: IfVersion = None,
) -> None:
    """Make someone else the case owner; the open items they held as case owner follow."""
    rt = runtime()
    actor = who(rt, by)
    with write_session(rt.engine) as session:
        work = team.reassign_case(
            session=session,
            key=key,
            owner=owner,
            actor=Actor(actor.email),
            now=parse_when(as_of, rt),
            expected_version=expected_version(if_version),
        )
        say(
            f"{work.key} is now owned by {owner.strip().lower()}; {len(work.handed)} open "
            f"item(s) followed (version {work.loaded.case.version})"
        )
    actor.tell()
    sync_case_runs(rt, key)


def milestone_reassign(
    key: str,
    milestone: str,
    to: Annotated[str, typer.Option("--to", help="Email of the new owner.")],
    by: By = None,
    as_of: AsOf = None,
    if_version: IfVersion = None,
) -> None:
    """Give an open milestone to someone else; both are told."""
    rt = runtime()
    actor = who(rt, by)
    with write_session(rt.engine) as session:
        m = team.reassign_milestone(
            session=session,
            key=key,
            milestone_key=milestone,
            to=to,
            actor=Actor(actor.email),
            now=parse_when(as_of, rt),
            expected_version=expected_version(if_version),
        )
        say(f"{key.strip().upper()} {m.key} handed over; forecast due {m.forecast_due}")
    actor.tell()
    sync_case_runs(rt, key)


def contacts_retire(
    email: str,
    successor: Annotated[
        str, typer.Option("--successor", help="Who takes over their items, roles and votes.")
    ],
    by: By = None,
    as_of: AsOf = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Retire a contact: hand everything they hold to a successor and stop their notices."""
    rt = runtime()
    actor = who(rt, by)
    with write_session(rt.engine) as session:
        done = retire.retire_contact(
            session=session,
            email_=email,
            successor=successor,
            actor=Actor(actor.email),
            now=parse_when(as_of, rt),
        )
    if as_json:
        emit_json(done.__dict__)
    else:
        say(done.summary())
    actor.tell()
