"""`bridgebsr notifications list | receipts | dispatch | retry | test`: the outbox, its
delivery, and a test message on each channel."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from bridgebsr.cli._common import (
    AS_OF_HELP,
    JSON_OPTION,
    bounded,
    emit_json,
    emit_table,
    one_of,
    parse_when,
    runtime,
    say,
    today,
    who,
    working,
)
from bridgebsr.errors import InvalidInput
from bridgebsr.office import notices
from bridgebsr.store.db import read_session, write_session
from models import NotificationStatus

if TYPE_CHECKING:
    from bridgebsr.bootstrap import Runtime
    from notifications.outbox import DispatchReport

notifications_app = typer.Typer(help="The notification outbox.", no_args_is_help=True)
COLUMNS = (
    *("id", "status", "recipient", "case", "item", "rule"),
    *("urgent", "attempts", "sending", "resent", "via", "error"),
)
POST_COLUMNS = (
    *("id", "status", "channel", "case", "item", "rule"),
    *("urgent", "attempts", "sent_at", "error"),
)
RECEIPT_COLUMNS = ("id", "at", "recipient", "kind", "notices", "resent", "ok", "channels")
HELD_FOR = {"quiet_hours": "in quiet hours", "digest": "for a digest", "cap": "over the daily cap"}


@notifications_app.command("list")
def list_notices(
    status: Annotated[
        NotificationStatus | None,
        typer.Option(
            "--status", help="Only this status.", parser=one_of("--status", NotificationStatus)
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Newest first, at most this many.")] = 200,
    channels: Annotated[
        bool,
        typer.Option("--channels", help="The team channels' posts (one per event) instead."),
    ] = False,
    as_json: bool = JSON_OPTION,
) -> None:
    """List outbox rows, newest first. `sending`: the row's message went out and its outcome
    is not recorded yet (or never was: the dispatcher stopped); `resent`: sends of the row
    after such an unrecorded one (possible duplicates). With --channels, the posts of the
    team channels (chat services tagged channel:NAME) instead."""
    limit = bounded(limit, "--limit")
    wanted = (status,) if status else ()
    rt = runtime()
    with read_session(rt.engine) as session:
        if channels:
            rows = notices.channel_posts(session=session, statuses=wanted, limit=limit)
        else:
            rows = notices.notices(session=session, statuses=wanted, limit=limit, newest_first=True)
    if as_json:
        emit_json(rows)
    elif channels:
        emit_table("Channel posts", rows, POST_COLUMNS)
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
        rows = notices.receipts(session=session, email=recipient, limit=limit)
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
    from bridgebsr.office.delivery import (  # Apprise loads here only
        CONCURRENCY,
        deliver,
        post_office,
    )

    rt = runtime()
    post = post_office(rt)
    now = parse_when(as_of, rt)
    with working("delivering the notices due", quiet=as_json):
        report = deliver(rt, now=now, workers=workers, concurrency=concurrency or CONCURRENCY)
    if as_json:
        emit_json(
            {
                **report.summary(),
                "held_for": report.held_for(),
                "channels": post.channels(),
                "errors": report.errors,
                "channel_errors": report.channels.errors if report.channels else [],
            }
        )
        return
    typer.echo(
        f"sent {report.sent} in {report.messages} message(s) ({report.digests} digest(s), "
        f"{report.summaries} overflow summary(ies)), held {report.held}, "
        f"retrying {report.retrying}, failed {report.failed} ({'; '.join(post.channels())})"
    )
    if report.waiting:
        typer.echo(f"  held: {_held(report, rt)}")
    if report.obsolete:
        typer.echo(
            f"  {report.obsolete} obsolete, not sent: their item was finished or moved, or their "
            "case stopped (notifications list --status obsolete)"
        )
    if report.resent:
        typer.echo(
            f"  {report.resent} resent after an attempt whose outcome was never recorded "
            "(possible duplicates)"
        )
    if (posts := report.channels) is not None and any(posts.summary().values()):
        typer.echo(
            f"  channels: posted {posts.sent} in {posts.messages} message(s) "
            f"({posts.digests} digest(s)), held {posts.held}, retrying {posts.retrying}, "
            f"failed {posts.failed}, obsolete {posts.obsolete} (notifications list --channels)"
        )
    for line in [*report.errors, *(report.channels.errors if report.channels else [])][:20]:
        typer.echo(f"  {line}", err=True)


def _held(report: "DispatchReport", rt: "Runtime") -> str:
    """Why rows are held and until when (earliest and latest), in the configured zone."""

    def local(when: datetime) -> str:
        return when.astimezone(rt.settings.zone()).strftime("%Y-%m-%d %H:%M %Z")

    parts = []
    for why, (count, first, last) in sorted(report.waiting.items()):
        until = local(first) if first == last else f"{local(first)} to {local(last)}"
        parts.append(f"{count} {HELD_FOR[why]} until {until}")
    return "; ".join(parts)


@notifications_app.command("retry")
def retry(
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only notices last tried at or after this time (as --as-of)."),
    ] = None,
    recipient: Annotated[
        str | None, typer.Option("--recipient", help="Only notices to this address.")
    ] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help=AS_OF_HELP)] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Queue failed notices again: pending, attempts reset, due now (or --as-of), so the next
    dispatch sends them. Each case's audit trail records who did; `notifications list` shows
    the note beside the last error."""
    from bridgebsr.office.delivery import retry_failed

    rt = runtime()
    now = parse_when(as_of, rt)
    after = parse_when(since, rt, "--since") if since else None
    actor = who(rt, None)
    with write_session(rt.engine) as session:
        ids = retry_failed(
            session=session, now=now, actor=actor.email, since=after, recipient=recipient
        )
    if as_json:
        emit_json({"requeued": len(ids), "notices": ids})
    else:
        typer.echo(
            f"queued again {len(ids)} failed notice(s); `bridgebsr notifications dispatch` "
            "sends them"
        )
    actor.tell()


@notifications_app.command("test")
def test_message(
    to: Annotated[str, typer.Option("--to", help="The address to send the test message to.")],
    as_of: Annotated[str | None, typer.Option("--as-of", help=AS_OF_HELP)] = None,
    as_json: bool = JSON_OPTION,
) -> None:
    """Send one test message to --to on each channel: email (else the local log) and each
    chat service of the Apprise config tagged with that address or `all`; print each
    channel's result. Exits 1 when any failed."""
    from bridgebsr.office.doctor import send_test  # Apprise loads here only

    if not to.strip():
        raise InvalidInput("--to is empty; give an email address")
    rt = runtime(ready=False)
    results = send_test(rt, to=to.strip(), day=today(rt, parse_when(as_of, rt)))
    if as_json:
        emit_json([{"channel": r.channel, "ok": r.ok, "detail": r.detail} for r in results])
    else:
        for r in results:
            say(
                f"{'ok' if r.ok else 'failed':7} {r.channel}"
                + (f": {r.detail}" if r.detail else "")
            )
    if not all(r.ok for r in results):
        raise SystemExit(1)
