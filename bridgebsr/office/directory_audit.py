"""Who changes the directory and how a change is recorded: the default actors, and the
directory events of one change written in its transaction (`store.directory_events`)."""

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session

from bridgebsr.office.progress import Actor
from bridgebsr.store.directory_events import Entry, record_all
from models import Source, utcnow

# Who changes the directory when a caller names nobody: the operator at the command line, and
# for a file, the operator importing it.
OPERATOR = Actor("cli", Source.CLI)
IMPORTER = Actor("cli", Source.IMPORT)


def record(
    session: Session,
    entries: Sequence[Entry],
    actor: Actor,
    now: datetime | None,
    source_ref: str | None = None,
) -> None:
    """The directory events of one change, on the session's transaction (committed with the
    change, undone with it); `now` None: the current time. The actor's own reference, if
    any, wins over `source_ref`."""
    record_all(
        session.connection(),
        entries,
        actor=actor.email,
        now=now or utcnow(),
        source=actor.source,
        source_ref=actor.source_ref or source_ref,
        comment=actor.comment,
    )
