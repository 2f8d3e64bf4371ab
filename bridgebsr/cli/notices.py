"""`bridgebsr notifications list | dispatch`: the outbox and its delivery."""

from typing import Annotated, Any

import typer
from sqlmodel import col, select

from bridgebsr.cli._common import (
    AS_OF_HELP,
    JSON_OPTION,
    emit_json,
    emit_table,
    parse_when,
    runtime,
)
from bridgebsr.db import read_session
from bridgebsr.errors import InvalidInput
from models import Contact, Notification, NotificationStatus
from notifications.outbox import dispatch as dispatch_outbox

notifications_app = typer.Typer(help="The notification outbox.", no_args_is_help=True)
COLUMNS = ("id", "status", "recipient", "case", "item", "rule", "urgent", "attempts", "error")


@notifications_app.command("list")
def list_notices(
    status: Annotated[
        str | None, typer.Option("--status", help="pending, held, sent, failed or suppressed")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Newest first, at most this many.")] = 200,
    as_json: bool = JSON_OPTION,
) -> None:
    """List outbox rows, newest first."""
    rt = runtime()
    query = (
        select(Notification, col(Contact.email))
        .join(Contact, col(Contact.id) == Notification.recipient_id)
        .order_by(col(Notification.id).desc())
        .limit(limit)
    )
    if status:
        try:
            wanted = NotificationStatus(status.strip().lower())
        except ValueError:
            allowed = ", ".join(s.value for s in NotificationStatus)
            raise InvalidInput(f"--status '{status}' is not one of: {allowed}") from None
        query = query.where(col(Notification.status) == wanted)
    with read_session(rt.engine) as session:
        rows = [_row(n, email) for n, email in session.execute(query).all()]
    if as_json:
        emit_json(rows)
    else:
        emit_table("Notifications", rows, COLUMNS)


def _row(n: Notification, email: str) -> dict[str, Any]:
    return {
        "id": n.id,
        "status": n.status.value,
        "recipient": email,
        "case": n.payload.get("case"),
        "item": n.subject,
        "rule": n.rule,
        "urgent": n.urgent,
        "due": n.due_on.isoformat() if n.due_on else None,
        "attempts": n.attempts,
        "next_attempt_at": n.next_attempt_at.isoformat() if n.next_attempt_at else None,
        "sent_at": n.sent_at.isoformat() if n.sent_at else None,
        "error": n.last_error,
    }


@notifications_app.command("dispatch")
def dispatch(
    as_of: Annotated[str | None, typer.Option("--as-of", help=AS_OF_HELP)] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Deliver every pending notice due by now (or --as-of), retrying failures with backoff."""
    rt = runtime()
    post = rt.post_office()
    report = dispatch_outbox(rt.engine, now=parse_when(as_of, rt), post=post)
    if as_json:
        emit_json({**report.summary(), "channels": post.channels(), "errors": report.errors})
        return
    typer.echo(
        f"sent {report.sent}, retrying {report.retrying}, failed {report.failed} "
        f"({'; '.join(post.channels())})"
    )
    for line in report.errors[:20]:
        typer.echo(f"  {line}", err=True)
