"""`bridgebsr ical`: a partner's or a person's milestones and gate deadlines as a calendar file."""

from pathlib import Path
from typing import Annotated

import typer

from bridgebsr.cli._common import AsOf, fail, parse_when, runtime, say
from bridgebsr.errors import BridgeError
from bridgebsr.exchange.files import write_bytes
from bridgebsr.store.db import read_session


def ical(
    out: Annotated[
        Path,
        typer.Option("--out", help="The .ics file to write (replaced whole, never half-written)."),
    ],
    partner: Annotated[
        str | None, typer.Option("--partner", help="A partner code: that partner's cases.")
    ] = None,
    contact: Annotated[
        str | None,
        typer.Option(
            "--contact", help="A contact's email: what they own or may approve, and their cases."
        ),
    ] = None,
    as_of: AsOf = None,
) -> None:
    """Write an iCalendar feed of milestones and gate deadlines for a partner or a person."""
    from bridgebsr.exchange import ical as ical_feed  # icalendar loads only for this command

    try:
        rt = runtime()
        now = parse_when(as_of, rt)
        with read_session(rt.engine) as session:
            feed = ical_feed.build(session=session, partner=partner, contact=contact, now=now)
        write_bytes(out, feed.to_ical())
        say(f"wrote {feed.events} event(s) for {feed.who} to {out}")
    except BridgeError as exc:  # one clear line, however the command is mounted
        fail(exc)
