"""Taking outbox rows to deliver, and reading what planning them needs.

Rows are claimed a recipient at a time with one UPDATE that pushes their next attempt a lease
ahead, so two dispatchers never take the same row; a row whose lease lapses (its dispatcher
died) comes due again.
"""

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select, update
from sqlmodel import Session, col

from models import Contact, Delivery, Notification, NotificationStatus, Partner
from notifications.preferences import Recipient, Row, local_midnight

LEASE = timedelta(minutes=10)
_WAITING = (NotificationStatus.PENDING, NotificationStatus.HELD)


def _due(now: datetime) -> Any:
    return and_(
        col(Notification.status).in_(_WAITING),
        or_(col(Notification.next_attempt_at).is_(None), col(Notification.next_attempt_at) <= now),
    )


def claim(engine: Engine, now: datetime, batch: int) -> list[int]:
    """Take every due row of the next recipients (about `batch` rows, a recipient whole).

    Another dispatcher may take the chosen recipients between the count and the UPDATE (on
    PostgreSQL, where the count does not lock); then choose again, until nothing is due."""
    while True:
        chosen, claimed = _try_claim(engine, now, batch)
        if claimed or not chosen:
            return claimed


def _try_claim(engine: Engine, now: datetime, batch: int) -> tuple[list[int], list[int]]:
    due = _due(now)
    recipient = col(Notification.recipient_id)
    with Session(engine.execution_options(sqlite_immediate=True)) as session:
        counts = session.execute(
            select(recipient, func.count()).where(due).group_by(recipient).order_by(recipient)
        ).all()
        chosen: list[int] = []
        total = 0
        for rid, n in counts:
            if chosen and total + n > batch:
                break
            chosen.append(int(rid))
            total += int(n)
        if not chosen:
            return [], []
        claimed = (
            session.execute(
                update(Notification)
                .where(recipient.in_(chosen), due)
                .values(next_attempt_at=now + LEASE)
                .returning(col(Notification.id))
                .execution_options(synchronize_session=False)
            )
            .scalars()
            .all()
        )
        session.commit()
    return chosen, sorted(int(i) for i in claimed)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def load(engine: Engine, ids: list[int]) -> tuple[dict[int, Recipient], dict[int, list[Row]]]:
    recipients: dict[int, Recipient] = {}
    rows: dict[int, list[Row]] = defaultdict(list)
    with Session(engine) as session:
        for start in range(0, len(ids), 5000):
            found = session.execute(
                select(
                    col(Notification.id),
                    col(Notification.attempts),
                    col(Notification.urgent),
                    col(Notification.created_at),
                    col(Notification.payload),
                    col(Notification.delivered),
                    col(Notification.sending),
                    Contact,
                    col(Partner.code),
                    col(Partner.country),
                    col(Partner.region),
                )
                .join(Contact, col(Contact.id) == Notification.recipient_id)
                .join(Partner, col(Partner.id) == Contact.partner_id)
                .where(col(Notification.id).in_(ids[start : start + 5000]))
            ).all()
            for nid, tries, urgent, created, payload, took, sending, contact, *org in found:
                assert contact.id is not None
                if contact.id not in recipients:
                    recipients[contact.id] = _recipient(contact, *org)
                rows[contact.id].append(
                    Row(
                        id=nid,
                        attempts=tries,
                        urgent=urgent,
                        created_at=_aware(created),
                        payload=payload,
                        delivered=frozenset(took or []),
                        sending=bool(sending),
                    )
                )
    return recipients, rows


def _recipient(contact: Contact, partner: str, country: str, region: str | None) -> Recipient:
    assert contact.id is not None
    return Recipient(
        id=contact.id,
        email=contact.email,
        partner=partner,
        zone=contact.timezone,
        channels=frozenset(c for c in contact.channels.split(",") if c),
        digest=contact.digest,
        quiet=contact.quiet,
        cap=contact.daily_cap,
        country=contact.country,
        partner_country=country,
        region=region,
        link_generation=contact.link_generation,
    )


def covered(
    engine: Engine,
    recipients: Mapping[int, Recipient],
    covers: Mapping[int, tuple[int, date]],
) -> dict[int, Recipient]:
    """`recipients` (by the id their rows are addressed to), each one away (`covers`: their
    deputy's id and their last day away) replaced by their deputy, reading for them."""
    wanted = {deputy for rid, (deputy, _) in covers.items() if rid in recipients}
    if not wanted:
        return dict(recipients)
    with Session(engine) as session:
        found = session.execute(
            select(Contact, col(Partner.code), col(Partner.country), col(Partner.region))
            .join(Partner, col(Partner.id) == Contact.partner_id)
            .where(col(Contact.id).in_(sorted(wanted)))
        ).all()
    deputies = {c.id: _recipient(c, *org) for c, *org in found}
    out = dict(recipients)
    for rid, (deputy, until) in covers.items():
        if rid in out and deputy in deputies:
            out[rid] = replace(deputies[deputy], for_whom=out[rid].email, away_until=until)
    return out


def sent_today(
    engine: Engine, now: datetime, recipients: Mapping[int, Recipient]
) -> tuple[dict[int, int], set[int]]:
    """Messages each recipient had today (their local day) and who had today's summary, by
    the contact id of whoever reads (`Recipient.id`: a deputy for someone away)."""
    readers = {r.id: r for r in recipients.values()}
    counted = [rid for rid, r in readers.items() if r.cap > 0]
    sent: dict[int, int] = defaultdict(int)
    summaries: set[int] = set()
    if not counted:
        return sent, summaries
    with Session(engine) as session:
        found = session.execute(
            select(col(Delivery.recipient_id), col(Delivery.at), col(Delivery.kind)).where(
                col(Delivery.recipient_id).in_(counted),
                col(Delivery.ok),
                col(Delivery.at) >= now - timedelta(days=2),
                col(Delivery.at) <= now,
            )
        ).all()
    for rid, at, kind in found:
        if _aware(at) >= local_midnight(now, readers[rid].zone):
            sent[rid] += 1
            if kind == "overflow":
                summaries.add(rid)
    return sent, summaries
