"""`bridgebsr reports weekly | list | fetch`: the weekly report, built, kept in the case store
and sent; any stored report file listed or fetched from any machine."""

from pathlib import Path
from typing import Annotated

import typer

from bridgebsr.cli._common import (
    JSON_OPTION,
    AsOf,
    bounded,
    emit_json,
    emit_table,
    parse_when,
    runtime,
    say,
    working,
)
from bridgebsr.exchange.files import write_bytes

reports_app = typer.Typer(
    help="Reports kept in the case store: the weekly report, built and sent; fetch a file.",
    no_args_is_help=True,
)
COLUMNS = ("id", "name", "scope", "filename", "size", "created_at", "link")


@reports_app.command("weekly")
def weekly_report(
    send: Annotated[
        bool,
        typer.Option("--send", help="Email it to whoever has not had this week's report yet."),
    ] = False,
    as_of: AsOf = None,
) -> None:
    """Build this week's report (whole portfolio and each partner's version, HTML and XLSX)
    into the case store, once a week, and with --send email it: the coordinator and the pilot
    leads get the whole portfolio, other contacts of a partner leading an open case theirs.
    Nobody is emailed in their quiet hours: a later run that week sends it to them."""
    from bridgebsr.office import weekly  # the post office (Apprise) loads only here
    from bridgebsr.reports.weekly import render  # and pandas and matplotlib

    rt = runtime()
    now = parse_when(as_of, rt)
    with working("building the weekly report"):
        done = weekly.weekly_report(rt, now=now, render=render, send=send)
    built = ", ".join(s or "whole portfolio" for s in done.built) or "nothing new"
    say(f"{done.name}: built {built}; {len(done.files)} file(s) stored; pruned {done.pruned}")
    for stored, link in done.links(rt.settings.public_url):
        if not stored.scope:  # the whole portfolio's; `reports list` shows every version's
            say(f"  {stored.id}  {stored.filename}  {link or ''}".rstrip())
    if send:
        ok = [s for s in done.sent if s.ok]
        failed = len(done.sent) - len(ok)
        say(
            f"sent to {len(ok)}, failed {failed}, had it already {len(done.already)}, "
            f"in their quiet hours {len(done.held)}"
        )
        for email, until in done.held:
            say(f"  {email}: their night ends {until:%Y-%m-%d %H:%M} UTC; the next run sends it")
        for miss in (s for s in done.sent if not s.ok):
            say(f"  not sent to {miss.email}: {miss.detail}", err=True)


@reports_app.command("list")
def list_reports(
    limit: Annotated[int, typer.Option("--limit", help="At most this many files.")] = 50,
    as_json: bool = JSON_OPTION,
) -> None:
    """The stored report files, newest first, with where the web app serves them."""
    from bridgebsr.office import weekly

    rt = runtime()
    public = rt.settings.public_url
    rows = [
        {
            "id": f.id,
            "name": f.name,
            "scope": f.scope or "all",
            "filename": f.filename,
            "size": f.size,
            "created_at": f.created_at.isoformat(),
            "link": weekly.link(public, f) or "",
        }
        for f in weekly.stored_list(rt, limit=bounded(limit, "--limit", 1))
    ]
    if as_json:
        emit_json(rows)
    else:
        emit_table("Stored reports", rows, COLUMNS)


@reports_app.command("fetch")
def fetch(
    report_id: Annotated[int, typer.Argument(help="The stored file's id (`reports list`).")],
    out: Annotated[Path, typer.Option("--out", help="The file to write (replaced whole).")],
) -> None:
    """Write one stored report file, as it was stored, to a file here."""
    from bridgebsr.office import weekly

    rt = runtime()
    stored, content = weekly.stored(rt, bounded(report_id, "ID", 1))
    write_bytes(out, content)
    say(f"wrote {stored.filename} ({stored.size} bytes, {stored.name}) to {out}")
