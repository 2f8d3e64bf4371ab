"""`bridgebsr partners` and `contacts` commands."""

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from bridgebsr.bootstrap import Runtime
from bridgebsr.cli._common import (
    JSON_OPTION,
    AsOf,
    change_text,
    emit_json,
    emit_table,
    parse_day,
    parse_when,
    runtime,
    say,
    who,
)
from bridgebsr.errors import InvalidInput
from bridgebsr.office import directory, people
from bridgebsr.office.progress import Actor
from bridgebsr.rules.texts import email_key
from bridgebsr.store.db import read_session, write_session
from models import Source

partners_app = typer.Typer(help="Import and list partner organisations.", no_args_is_help=True)
contacts_app = typer.Typer(
    help="Import, list, add and change contacts; record absences.", no_args_is_help=True
)

DryRun = Annotated[bool, typer.Option("--dry-run", help="Report what would change; write nothing.")]
FileArg = Annotated[Path, typer.Argument(help="A .csv (comma or semicolon) or .xlsx file.")]
By = Annotated[
    str | None,
    typer.Option("--by", help="Who makes the change, for the directory's history (default: you)."),
]


def _importer(rt: Runtime, by: str | None) -> Actor:
    return Actor(who(rt, by).email, Source.IMPORT)


@partners_app.command("import")
def import_partners(file: FileArg, dry_run: DryRun = False, by: By = None) -> None:
    """Create or update partners from FILE (code, name, kind, country, region, timezone)."""
    rt = runtime()
    with write_session(rt.engine) as session:
        report = directory.import_partners(
            session=session, path=file, dry_run=dry_run, actor=_importer(rt, by)
        )
    _print_report(report)


@contacts_app.command("import")
def import_contacts(file: FileArg, dry_run: DryRun = False, by: By = None) -> None:
    """Create or update contacts from FILE (email, name, partner, role, country; optional
    timezone, channels, delivery, quiet_hours, daily_cap, leads: the pilot kinds they lead)."""
    rt = runtime()
    with write_session(rt.engine) as session:
        report = directory.import_contacts(
            session=session,
            path=file,
            roles=rt.catalog.roles(),
            kinds=set(rt.catalog.templates),
            dry_run=dry_run,
            actor=_importer(rt, by),
        )
    _print_report(report)


def _print_report(report: directory.ImportReport) -> None:
    say(report.summary())
    for key in report.created:
        say(f"  + {key}")
    for key in report.updated:
        say(f"  ~ {key}")


@partners_app.command("list")
def list_partners(as_json: bool = JSON_OPTION) -> None:
    """List partners."""
    rt = runtime()
    with read_session(rt.engine) as session:
        rows = directory.list_partners(session=session)
    if as_json:
        emit_json(rows)
    else:
        emit_table(
            f"{len(rows)} partner(s)",
            rows,
            ("code", "name", "kind", "country", "region", "timezone"),
        )


@contacts_app.command("list")
def list_contacts(as_json: bool = JSON_OPTION) -> None:
    """List contacts."""
    rt = runtime()
    with read_session(rt.engine) as session:
        rows = directory.list_contacts(session=session)
    if as_json:
        emit_json(rows)
    else:
        emit_table(
            f"{len(rows)} contact(s)",
            rows,
            ("email", "name", "partner", "role", "country", "timezone"),
        )


def _option(flag: str, parse: Callable[[str], Any], value: str) -> Any:
    try:
        return parse(value)
    except ValueError as exc:
        raise InvalidInput(f"{flag}: {exc}") from None


@contacts_app.command("prefs")
def contact_preferences(
    email: Annotated[str, typer.Argument(help="The contact's email address.")],
    channels: Annotated[
        str | None, typer.Option(help="Where notices may go: email, chat or 'email,chat'.")
    ] = None,
    digest: Annotated[
        bool | None,
        typer.Option(
            "--digest/--immediate",
            help="Gather what is not urgent into one message a day, or send each at once.",
        ),
    ] = None,
    quiet: Annotated[
        str | None, typer.Option(help="Quiet hours in the contact's zone: 21:00-07:00 or none.")
    ] = None,
    cap: Annotated[
        str | None, typer.Option(help="Messages a day at most, then one summary (0: no cap).")
    ] = None,
    by: By = None,
    as_of: AsOf = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a contact's notification preferences, or change them with the options."""
    changes: dict[str, Any] = {}
    if channels is not None:
        changes["channels"] = _option("--channels", directory.parse_channels, channels)
    if digest is not None:
        changes["digest"] = digest
    if quiet is not None:
        hours = _option("--quiet", directory.parse_quiet_hours, quiet)
        changes["quiet_from"], changes["quiet_until"] = hours or (None, None)
    if cap is not None:
        changes["daily_cap"] = _option("--cap", directory.parse_daily_cap, cap)
    rt = runtime()
    with write_session(rt.engine) as session:
        prefs = directory.set_preferences(
            session=session,
            email=email,
            changes=changes,
            now=parse_when(as_of, rt),
            actor=Actor(who(rt, by).email),
        )
    if as_json:
        emit_json(prefs)
    else:
        for name, value in prefs.items():
            say(f"{name:12} {value}")


# --- one person at a time: add, edit, away ---------------------------------------------------

Email = Annotated[str, typer.Argument(help="The contact's email address.")]
Leads = Annotated[
    str | None,
    typer.Option("--leads", help="The pilot kinds they lead, comma separated ('' for none)."),
]
Country = Annotated[
    str | None, typer.Option("--country", help="ISO country code (holidays, default zone).")
]
Zone = Annotated[
    str | None, typer.Option("--timezone", help="IANA zone (default: the country's main one).")
]


def _given(**options: str | None) -> dict[str, str]:
    return {name: value for name, value in options.items() if value is not None}


def _print_contact(data: dict[str, Any]) -> None:
    for name in people.SHOWN:
        say(f"{name:9} {data[name] if data[name] not in (None, '') else '-'}")


@contacts_app.command("add")
def add_contact(
    email: Email,
    name: Annotated[str, typer.Option("--name", help="Their name.")],
    partner: Annotated[str, typer.Option("--partner", help="Their partner's code.")],
    role: Annotated[str, typer.Option("--role", help="Their role (as the templates name it).")],
    country: Country = None,
    timezone: Zone = None,
    leads: Leads = None,
    by: By = None,
    as_of: AsOf = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Add one contact without a file (the checks of `contacts import`)."""
    rt = runtime()
    given = _given(
        email=email,
        name=name,
        partner=partner,
        role=role,
        country=country,
        timezone=timezone,
        leads=leads,
    )
    with write_session(rt.engine) as session:
        added = people.add_contact(
            session=session,
            given=given,
            roles=rt.catalog.roles(),
            kinds=set(rt.catalog.templates),
            now=parse_when(as_of, rt),
            actor=Actor(who(rt, by).email),
        )
    if as_json:
        emit_json({"added": added})
        return
    say(f"added contact {added['email']}")
    _print_contact(added)


@contacts_app.command("edit")
def edit_contact(
    email: Email,
    name: Annotated[str | None, typer.Option("--name", help="Their name.")] = None,
    partner: Annotated[str | None, typer.Option("--partner", help="Their partner's code.")] = None,
    role: Annotated[str | None, typer.Option("--role", help="Their role.")] = None,
    country: Country = None,
    timezone: Zone = None,
    leads: Leads = None,
    by: By = None,
    as_of: AsOf = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Change one contact: what the options give; prints each change, before -> after."""
    rt = runtime()
    given = _given(
        name=name, partner=partner, role=role, country=country, timezone=timezone, leads=leads
    )
    with write_session(rt.engine) as session:
        before, after = people.edit_contact(
            session=session,
            email=email,
            given=given,
            roles=rt.catalog.roles(),
            kinds=set(rt.catalog.templates),
            now=parse_when(as_of, rt),
            actor=Actor(who(rt, by).email),
        )
    if as_json:
        emit_json({"before": before, "after": after})
        return
    moved = [k for k in people.SHOWN if before[k] != after[k]]
    say(f"{after['email']}: " + (f"changed {', '.join(moved)}" if moved else "nothing changed"))
    for k in moved:
        say(f"  {k}: {before[k] or '-'} -> {after[k] or '-'}")


@contacts_app.command("revoke-links")
def revoke_links(email: Email, by: By = None, as_of: AsOf = None) -> None:
    """Invalidate every personal link and calendar feed of one person (a lost or forwarded
    notice), ending their web sessions; their next notice carries a new link."""
    rt = runtime()
    with write_session(rt.engine) as session:
        _, now = people.revoke_links(
            session=session,
            email=email,
            now=parse_when(as_of, rt),
            actor=Actor(who(rt, by).email),
        )
    say(f"{email_key(email)}: every earlier link revoked (link generation now {now})")


@contacts_app.command("away")
def away(
    email: Email,
    from_: Annotated[
        str | None, typer.Option("--from", help="First day away (their own date).")
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="Last day away (inclusive).")] = None,
    deputy: Annotated[
        str | None, typer.Option("--deputy", help="Who gets their notices and may act for them.")
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="List their absences.")] = False,
    cancel: Annotated[
        bool,
        typer.Option(
            "--cancel",
            help="Cancel the absence in force (or the one covering --from, or the next one).",
        ),
    ] = False,
    by: By = None,
    as_of: AsOf = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Record an absence with a deputy (--from, --to, --deputy), or --list or --cancel them."""
    rt = runtime()
    now = parse_when(as_of, rt)
    if list_ and cancel:
        raise InvalidInput("give --list or --cancel, not both")
    if list_:
        _list_absences(rt, email, as_json)
    elif cancel:
        on = parse_day(from_, "--from")
        _cancel_absence(rt, email, on, now, Actor(who(rt, by).email), as_json)
    else:
        _set_absence(rt, email, from_, to, deputy, now, Actor(who(rt, by).email), as_json)


def _list_absences(rt: Runtime, email: str, as_json: bool) -> None:
    with read_session(rt.engine) as session:
        rows = people.list_absences(session=session, email=email)
    if as_json:
        emit_json(rows)
    else:
        emit_table(f"{len(rows)} absence(s)", rows, ("email", "from", "to", "deputy"))


def _cancel_absence(
    rt: Runtime, email: str, on: date | None, now: datetime, actor: Actor, as_json: bool
) -> None:
    with write_session(rt.engine) as session:
        before, after = people.cancel_absence(
            session=session, email=email, now=now, on=on, actor=actor
        )
    if as_json:
        emit_json({"before": before, "after": after})
    elif after is None:
        say(f"cancelled: {before['email']} away {before['from']} to {before['to']}")
    else:
        say(f"{before['email']} is back: away {after['from']} to {after['to']}, not {before['to']}")


def _set_absence(
    rt: Runtime,
    email: str,
    from_: str | None,
    to: str | None,
    deputy: str | None,
    now: datetime,
    actor: Actor,
    as_json: bool,
) -> None:
    starts, ends = parse_day(from_, "--from"), parse_day(to, "--to")
    if starts is None or ends is None or not deputy:
        missing = [
            f for f, v in (("--from", starts), ("--to", ends), ("--deputy", deputy)) if not v
        ]
        raise InvalidInput(
            f"missing {', '.join(missing)}; give --from DAY --to DAY --deputy EMAIL "
            "(or --list, or --cancel)"
        )
    with write_session(rt.engine) as session:
        added = people.set_absence(
            session=session,
            email=email,
            starts=starts,
            ends=ends,
            deputy=deputy,
            now=now,
            actor=actor,
        )
    if as_json:
        emit_json(added)
    else:
        say(
            f"{added['email']} is away {added['from']} to {added['to']}; "
            f"{added['deputy']} gets their notices and may act for them"
        )


@contacts_app.command("history")
def history(email: Email, as_json: bool = JSON_OPTION) -> None:
    """A person's directory history, newest last: added, edited, imported, away, back,
    retired; who, when, from where, each changed field before -> after."""
    rt = runtime()
    with read_session(rt.engine) as session:
        rows = people.contact_history(session=session, email=email)
    if as_json:
        emit_json(rows)
        return
    shown = [
        {
            "at": row["at"],
            "kind": row["kind"],
            "by": row["actor"],
            "source": row["source"],
            "change": change_text(row["before"], row["after"]),
        }
        for row in rows
    ]
    emit_table(f"{len(rows)} change(s) of {email}", shown, ("at", "kind", "by", "source", "change"))
