"""Read-only views of the outbox: notices with their recipients, those not delivered yet, the
receipts of what was sent, and the team channels' posts."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from bridgebsr.rules.texts import email_key
from models import ChannelPost, Contact, Delivery, Notification, NotificationStatus


def notices(
    *,
    session: Session,
    statuses: Sequence[NotificationStatus] = (),
    limit: int | None = None,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """Outbox rows with their recipients (all, or those in `statuses`)."""
    query = select(Notification, Contact.email).join(
        Contact, col(Contact.id) == Notification.recipient_id
    )
    if statuses:
        query = query.where(col(Notification.status).in_(list(statuses)))
    order = col(Notification.id).desc() if newest_first else col(Notification.id)
    rows = session.exec(query.order_by(order).limit(limit)).all()
    return [_notice_row(n, email) for n, email in rows]


def _notice_row(n: Notification, email: str) -> dict[str, Any]:
    def stamp(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

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
        "next_attempt_at": stamp(n.next_attempt_at),
        "sent_at": stamp(n.sent_at),
        "via": ",".join(n.delivered or []),
        "error": n.last_error,
        # Marked while its message went out, the outcome not recorded yet (or never: the
        # dispatcher stopped); `resent` counts sends that followed such an unrecorded one.
        "sending": n.sending,
        "resent": n.resent,
    }


def channel_posts(
    *,
    session: Session,
    statuses: Sequence[NotificationStatus] = (),
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The team channels' posts (all, or those in `statuses`), newest first."""
    query = select(ChannelPost)
    if statuses:
        query = query.where(col(ChannelPost.status).in_(list(statuses)))
    rows = session.exec(query.order_by(col(ChannelPost.id).desc()).limit(limit)).all()
    return [
        {
            "id": p.id,
            "status": p.status.value,
            "channel": p.channel,
            "case": p.payload.get("case"),
            "item": p.payload.get("item"),
            "rule": p.rule,
            "urgent": p.urgent,
            "attempts": p.attempts,
            "next_attempt_at": p.next_attempt_at.isoformat() if p.next_attempt_at else None,
            "sent_at": p.sent_at.isoformat() if p.sent_at else None,
            "error": p.last_error,
        }
        for p in rows
    ]


def pending_notices(*, session: Session) -> list[dict[str, Any]]:
    """Outbox rows not yet delivered (pending or held), oldest first."""
    return notices(session=session, statuses=(NotificationStatus.PENDING, NotificationStatus.HELD))


def receipts(
    *, session: Session, email: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Messages sent or tried, newest first: to whom, what kind, and each channel's result."""
    query = select(Delivery, Contact.email).join(Contact, col(Contact.id) == Delivery.recipient_id)
    if email:
        query = query.where(col(Contact.email) == email_key(email))
    rows = session.exec(query.order_by(col(Delivery.id).desc()).limit(limit)).all()
    return [
        {
            "id": d.id,
            "at": d.at.isoformat(),
            "recipient": who,
            "kind": d.kind,
            "notices": d.notices,
            "resent": d.resent,
            "ok": d.ok,
            "channels": "; ".join(
                f"{c['channel']}: {'sent' if c['ok'] else c.get('detail') or 'failed'}"
                for c in d.channels
            ),
            "title": d.title,
        }
        for d, who in rows
    ]
