"""Recording a dispatch pass in the outbox: receipts, outcomes, holds, `sending` marks,
rows dropped as obsolete, and failed rows queued again."""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, Connection, bindparam, func, insert, literal, select, update

from models import Delivery, Notification, NotificationStatus
from notifications.post import ChannelResult
from notifications.preferences import Outgoing, Recipient, Row, backoff
from notifications.render import Message
from notifications.report import DispatchReport

Work = tuple[Recipient, Outgoing, Message]  # a message planned for one recipient

_OUTBOX = Notification.__table__  # type: ignore[attr-defined]
_RECEIPTS = Delivery.__table__  # type: ignore[attr-defined]
# Set-based statements in Core: a record runs after every few messages, so it stays lean.
_ADD_RECEIPTS = insert(_RECEIPTS).returning(_RECEIPTS.c.id, sort_by_parameter_order=True)
_SET_OUTCOME = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("row"))
    .values(
        {
            name: bindparam(name)
            for name in (
                *("attempts", "delivery_id", "delivered", "last_error", "sending"),
                *("status", "sent_at", "next_attempt_at"),
            )
        }
    )
)
_ROWS: BindParameter[list[int]] = bindparam("rows", expanding=True)
_MARK = update(_OUTBOX).where(_OUTBOX.c.id.in_(_ROWS)).values(sending=True)
_COUNT_RESENT = update(_OUTBOX).where(_OUTBOX.c.id.in_(_ROWS)).values(resent=_OUTBOX.c.resent + 1)
_SET_HOLD = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("row"))
    .values(status=NotificationStatus.HELD, next_attempt_at=bindparam("until"))
)


_SET_OBSOLETE = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("row"))
    .values(status=NotificationStatus.OBSOLETE, last_error=bindparam("why"), next_attempt_at=None)
)


def drop(
    conn: Connection,
    dropped: Mapping[int, str],
    rows: Mapping[int, list[Row]],
    report: DispatchReport,
) -> dict[int, list[Row]]:
    """Record the `dropped` rows `obsolete` with why, in one transaction; the others remain,
    per recipient, to be planned."""
    if dropped:
        with conn.begin():
            conn.execute(_SET_OBSOLETE, [{"row": nid, "why": why} for nid, why in dropped.items()])
        report.obsolete += len(dropped)
    return {rid: [r for r in found if r.id not in dropped] for rid, found in rows.items()}


def record(
    conn: Connection,
    now: datetime,
    max_attempts: int,
    done: Sequence[tuple[Work, list[ChannelResult]]],
    holds: Mapping[int, datetime],
    starting: Sequence[Work],
    report: DispatchReport,
) -> None:
    """In one transaction: the receipts and outcomes of the messages `done`, the `holds`, and
    the `sending` marks of the messages `starting` (which go once this commits). `conn` is
    the pass's recording connection (SQLite: immediate transactions)."""
    with conn.begin():
        if done:
            receipts = (
                conn.execute(
                    _ADD_RECEIPTS,
                    [
                        {
                            "recipient_id": recipient.id,
                            "at": now,
                            "kind": out.kind,
                            "notices": len(out.rows),
                            "ok": all(r.ok for r in sent),
                            "title": message.title[:300],
                            "channels": [
                                {"channel": r.channel, "ok": r.ok, "detail": r.detail} for r in sent
                            ],
                            "resent": sum(r.sending for r in out.rows),
                        }
                        for (recipient, out, message), sent in done
                    ],
                )
                .scalars()
                .all()
            )
            updates: list[dict[str, Any]] = []
            for receipt, ((recipient, out, _), sent) in zip(receipts, done, strict=True):
                updates += _outcome(receipt, out, sent, now, max_attempts, report)
                if out.kind != "notice":
                    report.bundles.append(
                        {
                            "recipient": recipient.email,
                            "kind": out.kind,
                            "notices": len(out.rows),
                            "ok": all(r.ok for r in sent),
                        }
                    )
            conn.execute(_SET_OUTCOME, updates)
        if holds:
            conn.execute(_SET_HOLD, [{"row": nid, "until": when} for nid, when in holds.items()])
            report.held += len(holds)
        rows = [r for _, out, _ in starting for r in out.rows]
        first = [r.id for r in rows if not r.sending]
        again = [r.id for r in rows if r.sending]  # an earlier attempt was never recorded
        if first:
            conn.execute(_MARK, {"rows": first})
        if again:
            conn.execute(_COUNT_RESENT, {"rows": again})
            report.resent += len(again)


def _outcome(
    receipt: int,
    out: Outgoing,
    sent: list[ChannelResult],
    now: datetime,
    max_attempts: int,
    report: DispatchReport,
) -> list[dict[str, Any]]:
    ok = all(r.ok for r in sent)
    error = (
        None if ok else "; ".join(f"{r.channel}: {r.detail or 'failed'}" for r in sent if not r.ok)
    )
    took = {r.channel for r in sent if r.ok}
    if ok:
        report.messages += 1
        report.digests += out.kind == "digest"
        report.summaries += out.kind == "overflow"
    else:
        report.errors.append(f"{out.kind} to recipient of notice {out.rows[0].id}: {error}")
    values = []
    for row in out.rows:
        attempts = row.attempts + 1
        entry: dict[str, Any] = {
            "row": row.id,
            "attempts": attempts,
            "delivery_id": receipt,
            "delivered": sorted(row.delivered | took),
            "last_error": error,
            "sending": False,
        }
        if ok:
            entry |= {"status": NotificationStatus.SENT, "sent_at": now, "next_attempt_at": None}
            report.sent += 1
        elif attempts >= max_attempts:
            entry |= {"status": NotificationStatus.FAILED, "sent_at": None, "next_attempt_at": None}
            report.failed += 1
        else:
            entry |= {
                "status": NotificationStatus.PENDING,
                "sent_at": None,
                "next_attempt_at": now + backoff(attempts),
            }
            report.retrying += 1
        values.append(entry)
    return values


def requeue_failed(
    conn: Connection,
    *,
    now: datetime,
    by: str,
    since: datetime | None = None,
    recipient: int | None = None,
) -> list[tuple[int, int]]:
    """Put `failed` rows back to `pending`, due at `now` with no attempts spent, their last
    error kept behind a note of who did it (rows last tried at or after `since`, for
    `recipient`, if given). Runs in the caller's transaction; (row id, case id) of each."""
    table = _OUTBOX
    chosen = [table.c.status == NotificationStatus.FAILED]
    if since is not None:
        tried = select(_RECEIPTS.c.id).where(_RECEIPTS.c.at >= since)
        chosen.append(table.c.delivery_id.in_(tried))
    if recipient is not None:
        chosen.append(table.c.recipient_id == recipient)
    note = f"queued again by {by} at {now:%Y-%m-%d %H:%M} UTC; before: "
    return [
        (int(nid), int(case_id))
        for nid, case_id in conn.execute(
            update(table)
            .where(*chosen)
            .values(
                status=NotificationStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                last_error=literal(note) + func.coalesce(table.c.last_error, ""),
            )
            .returning(table.c.id, table.c.case_id)
        )
    ]
