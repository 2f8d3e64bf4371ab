"""`bridgebsr ical`: a partner's or a person's milestones and gate deadlines as a calendar file."""

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from bridgebsr.cli._common import AS_OF_HELP, fail, parse_when, runtime
from bridgebsr.db import read_session
from bridgebsr.errors import BridgeError, InvalidInput


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
    as_of: Annotated[str | None, typer.Option("--as-of", help=AS_OF_HELP)] = None,
) -> None:
    """Write an iCalendar feed of milestones and gate deadlines for a partner or a person."""
    from bridgebsr import ical as ical_feed  # icalendar loads only for this command

    try:
        rt = runtime()
        now = parse_when(as_of, rt)
        with read_session(rt.engine) as session:
            feed = ical_feed.build(session=session, partner=partner, contact=contact, now=now)
        write_atomically(out, feed.to_ical())
        typer.echo(f"wrote {feed.events} event(s) for {feed.who} to {out}")
    except BridgeError as exc:  # one clear line, however the command is mounted
        fail(exc)


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, then swap it in."""
    folder = path.parent
    if not folder.is_dir():
        raise InvalidInput(f"--out {path}: folder {folder} does not exist; create it first")
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise InvalidInput(f"--out {path}: cannot write in {folder} ({_why(exc)})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, _mode(path))  # mkstemp makes 0600; a calendar is an ordinary file
        os.replace(temp, path)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise InvalidInput(f"--out {path}: cannot write it ({_why(exc)})") from None
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _mode(path: Path) -> int:
    """The replaced file's permissions, else what the umask gives a new file."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)
