"""`bridgebsr notifications list | receipts | dispatch`: the outbox and its delivery."""

from typing import Annotated

import typer

from bridgebsr import queries
from bridgebsr.cli._common import (
    AS_OF_HELP,
    JSON_OPTION,
    bounded,
    emit_json,
    emit_table,
    parse_when,
    runtime,
)
from bridgebsr.db import read_session
from bridgebsr.errors import InvalidInput
from models import NotificationStatus

notifications_app = typer.Typer(help="The notification outbox.", no_args_is_help=True)
COLUMNS = (
    *("id", "status", "recipient", "case", "item", "rule"),
    *("urgent", "attempts", "sending", "resent", "via", "error"),
)
RECEIPT_COLUMNS = ("id", "at", "recipient", "kind", "notices", "resent", "ok", "channels")


@notifications_app.command("list")
def list_notices(
    status: Annotated[
        str | None, typer.Option("--status", help="pending, held, sent, failed or suppressed")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Newest first, at most this many.")] = 200,
    as_json: bool = JSON_OPTION,
) -> None:
    """List outbox rows, newest first. `sending`: the row's message went out and its outcome
    is not recorded yet (or never was: the dispatcher stopped); `resent`: sends of the row
    after such an unrecorded one (possible duplicates)."""
    limit = bounded(limit, "--limit")
    wanted: tuple[NotificationStatus, ...] = ()
    if status:
        try:
            wanted = (NotificationStatus(status.strip().lower()),)
        except ValueError:
            allowed = ", ".join(s.value for s in NotificationStatus)
            raise InvalidInput(f"--status '{status}' is not one of: {allowed}") from None
    rt = runtime()
    with read_session(rt.engine) as session:
        rows = queries.notices(session=session, statuses=wanted, limit=limit, newest_first=True)
    if as_json:
        emit_json(rows)
    else:
        emit_table("Notifications", rows, COLUMNS)


@notifications_app.command("receipts")
def list_receipts(
    recipient: Annotated[
        str | None, typer.Option("--recipient", help="Only messages to this address.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Newest first, at most this many.")] = 200,
    as_json: bool = JSON_OPTION,
) -> None:
    """Messages sent or tried (a notice, a digest or an overflow summary), with each
    channel's result. `resent` counts the notices of a message that an earlier attempt may
    have delivered already (a dispatcher stopped before recording that attempt's outcome)."""
    limit = bounded(limit, "--limit")
    rt = runtime()
    with read_session(rt.engine) as session:
        rows = queries.receipts(session=session, email=recipient, limit=limit)
    if as_json:
        emit_json(rows)
    else:
        emit_table("Deliveries", rows, RECEIPT_COLUMNS)


@notifications_app.command("dispatch")
def dispatch(
    as_of: Annotated[str | None, typer.Option("--as-of", help=AS_OF_HELP)] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=32,
            help="Processes delivering at once (default BRIDGEBSR_DISPATCH_WORKERS, 1).",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            min=1,
            max=64,
            help="Messages in flight at once, shared by the workers (default 8). A dispatcher "
            "stopped mid-pass may have sent at most this many without recording them; those "
            "go again and are counted as resent.",
        ),
    ] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Deliver every pending notice due by now (or --as-of), as each reader's preferences say
    (quiet hours, digest, daily cap), retrying failures with backoff."""
    from bridgebsr.delivery import CONCURRENCY, deliver  # Apprise loads only for this command

    rt = runtime()
    post = rt.post_office()
    report = deliver(
        rt, now=parse_when(as_of, rt), workers=workers, concurrency=concurrency or CONCURRENCY
    )
    if as_json:
        emit_json({**report.summary(), "channels": post.channels(), "errors": report.errors})
        return
    typer.echo(
        f"sent {report.sent} in {report.messages} message(s) ({report.digests} digest(s), "
        f"{report.summaries} overflow summary(ies)), held {report.held}, "
        f"retrying {report.retrying}, failed {report.failed} ({'; '.join(post.channels())})"
    )
    if report.resent:
        typer.echo(
            f"  {report.resent} resent after an attempt whose outcome was never recorded "
            "(possible duplicates)"
        )
    for line in report.errors[:20]:
        typer.echo(f"  {line}", err=True)
