"""Dispatching the outbox: claim due rows, plan each recipient's messages, deliver, record.

Rows are claimed a recipient at a time with one UPDATE that pushes their next attempt a lease
ahead, so two dispatchers never take the same row. For each recipient, their preferences
decide what goes (`plan`):

- in their quiet hours (local night, 21:00 to 07:00 unless they chose otherwise) nothing goes;
  the rows are `held` until the night ends;
- with `digest` on, what is not urgent waits for one message at 08:00 local on a working day
  (Monday to Friday, not a public holiday of the reader's country);
- past their `daily_cap` of messages today, one overflow summary carries the rest; after that,
  rows wait for the next day.

Before planning, dispatch asks the case office (an injected callable, once per claimed batch)
which rows are no longer wanted: a notice whose item was finished or moved, or whose case
stopped, is recorded `obsolete` with the reason and is neither sent nor carried in a digest or
summary, nor counted towards a cap.

Every message sent or tried leaves a receipt in `deliveries` with each channel's result. A
message that keeps failing leaves its rows `failed` after `max_attempts`, with the reason;
other recipients are not held up by it.

Deliveries run in a thread pool of `concurrency`, and each outcome is recorded as soon as it
is known: whatever completed while one record was being committed goes into the next commit.
A message starts only when one of the `concurrency` slots is free, and its rows are marked
`sending` in the same commit that records the outcomes that freed the slots, before it goes
out. Delivery is at least once: a dispatcher that dies leaves at most `concurrency` messages
delivered (perhaps) but not recorded; their rows come due again when the lease lapses and go
again, and as they are still marked `sending`, that send counts as a possible duplicate (in
the row's and the receipt's `resent`, and the report's).
"""

from collections import defaultdict
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from queue import SimpleQueue
from typing import Any
from zoneinfo import ZoneInfo

import holidays
from sqlalchemy import (
    BindParameter,
    Connection,
    Engine,
    and_,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlmodel import Session, col

from models import Contact, Delivery, Notification, NotificationStatus, Partner
from notifications.post import ChannelResult, PostOffice
from notifications.render import Message, Notice, render, render_bundle

QUIET_FROM, QUIET_UNTIL = time(21, 0), time(7, 0)  # the default local night
DIGEST_AT = time(8, 0)  # local time of the daily digest, Monday to Friday
LEASE = timedelta(minutes=10)
FIRST_RETRY = timedelta(minutes=2)
LONGEST_RETRY = timedelta(hours=6)
# Why a row is held: the reader's quiet hours, their morning digest, their daily cap.
QUIET, DIGEST, CAP = "quiet_hours", "digest", "cap"
_WAITING = (NotificationStatus.PENDING, NotificationStatus.HELD)


@dataclass
class DispatchReport:
    """What one dispatch pass did, in outbox rows (and in messages)."""

    sent: int = 0
    held: int = 0
    retrying: int = 0
    failed: int = 0
    messages: int = 0
    digests: int = 0
    summaries: int = 0
    resent: int = 0  # rows sent again after an attempt whose outcome was never recorded
    obsolete: int = 0  # rows dropped unsent: the case office no longer wants them
    errors: list[str] = field(default_factory=list)
    bundles: list[dict[str, Any]] = field(default_factory=list)  # digests and summaries
    # Held rows by why (QUIET, DIGEST, CAP): how many, and the earliest and latest they wait for.
    waiting: dict[str, tuple[int, datetime, datetime]] = field(default_factory=dict)
    disk_full: str = ""  # where the local log ran out of room, if it did

    def merge(self, other: "DispatchReport") -> None:
        """Add another pass's counts (another worker's, say) to these."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors
        self.bundles += other.bundles
        for why, (count, earliest, latest) in other.waiting.items():
            self._wait(why, count, earliest, latest)
        self.disk_full = self.disk_full or other.disk_full

    def note_holds(self, plan: "Plan") -> None:
        """Count a plan's held rows by why, with the times they wait until."""
        for nid, why in plan.why.items():
            self._wait(why, 1, plan.holds[nid], plan.holds[nid])

    def _wait(self, why: str, count: int, earliest: datetime, latest: datetime) -> None:
        had = self.waiting.get(why)
        if had is not None:
            count, earliest, latest = had[0] + count, min(had[1], earliest), max(had[2], latest)
        self.waiting[why] = (count, earliest, latest)

    def held_for(self) -> dict[str, dict[str, Any]]:
        """Held rows by why (quiet_hours, digest, cap): count, earliest and latest until."""
        return {
            why: {"count": n, "earliest": first.isoformat(), "latest": last.isoformat()}
            for why, (n, first, last) in sorted(self.waiting.items())
        }

    def summary(self) -> dict[str, Any]:
        """Counts for the CLI and the flow."""
        return {name: getattr(self, name) for name in _COUNTS}


_COUNTS = (
    *("sent", "held", "retrying", "failed", "messages", "digests", "summaries", "resent"),
    "obsolete",
)


@dataclass(frozen=True)
class Recipient:
    """A contact as dispatch sees them: address, tags and preferences."""

    id: int
    email: str
    partner: str
    zone: str
    channels: frozenset[str] = frozenset({"email", "chat"})
    digest: bool = False
    quiet: tuple[time, time] | None = (QUIET_FROM, QUIET_UNTIL)
    cap: int = 0
    country: str = ""  # whose public holidays have no digest ("" for none)


@dataclass(frozen=True)
class Row:
    """An outbox row as dispatch needs it."""

    id: int
    attempts: int
    urgent: bool
    created_at: datetime
    payload: dict[str, Any]
    delivered: frozenset[str] = frozenset()
    sending: bool = False  # an earlier attempt's outcome was never recorded


@dataclass(frozen=True)
class Outgoing:
    """One message planned for one recipient: a `notice`, a `digest` or an `overflow` summary,
    and the rows it carries."""

    kind: str
    rows: tuple[Row, ...]


@dataclass
class Plan:
    """What to send to one recipient now, and which rows wait until when."""

    messages: list[Outgoing] = field(default_factory=list)
    holds: dict[int, datetime] = field(default_factory=dict)
    why: dict[int, str] = field(default_factory=dict)  # each held row's reason: QUIET, ...

    def hold(self, ids: Iterable[int], until: datetime, why: str) -> None:
        """Rows `ids` wait until `until`, for `why` (QUIET, DIGEST or CAP)."""
        for nid in ids:
            self.holds[nid] = until
            self.why[nid] = why


def backoff(attempts: int) -> timedelta:
    """Wait before attempt `attempts + 1`: 2 min, 4, 8, ... at most 6 hours."""
    wait: timedelta = FIRST_RETRY * (2 ** max(attempts - 1, 0))
    return min(wait, LONGEST_RETRY)


def quiet_until(
    now: datetime, zone: str, quiet: tuple[time, time] | None = (QUIET_FROM, QUIET_UNTIL)
) -> datetime | None:
    """When the recipient's quiet hours end, if `now` falls in them (None otherwise).

    Quiet hours may run over midnight (21:00-07:00) or lie within one day (12:00-13:00)."""
    if quiet is None:
        return None
    start, end = quiet
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    clock = local.time()
    if start > end:  # over midnight
        if end <= clock < start:
            return None
        day = local.date() + timedelta(days=1 if clock >= start else 0)
    else:
        if not start <= clock < end:
            return None
        day = local.date()
    return datetime.combine(day, end, tzinfo=tz).astimezone(UTC)


def digest_time(created: datetime, zone: str, country: str = "") -> datetime:
    """The first digest (08:00 local on a working day: Monday to Friday, not a public holiday
    of `country`) at or after `created`."""
    tz = ZoneInfo(zone)
    local = created.astimezone(tz)
    day = local.date() if local.time() <= DIGEST_AT else local.date() + timedelta(days=1)
    days_off = _public_holidays(country)
    while day.weekday() >= 5 or day in days_off:
        day += timedelta(days=1)
    return datetime.combine(day, DIGEST_AT, tzinfo=tz).astimezone(UTC)


@lru_cache(maxsize=64)
def _public_holidays(country: str) -> Container[date]:
    """A country's public holidays (none for an empty or unknown code)."""
    try:
        return holidays.country_holidays(country) if country else frozenset()
    except NotImplementedError:
        return frozenset()


def local_midnight(now: datetime, zone: str, days: int = 0) -> datetime:
    """The start of the recipient's local day (`days` after today's), in UTC."""
    tz = ZoneInfo(zone)
    day = now.astimezone(tz).date() + timedelta(days=days)
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def plan(
    recipient: Recipient,
    rows: Sequence[Row],
    now: datetime,
    *,
    sent_today: int = 0,
    summary_sent: bool = False,
) -> Plan:
    """Decide, for one recipient, which messages go now and which rows wait (pure).

    `sent_today` counts the messages they already had today (their local day);
    `summary_sent` says whether today's overflow summary went already."""
    out = Plan()
    morning = quiet_until(now, recipient.zone, recipient.quiet)
    if morning is not None:
        out.hold((r.id for r in rows), morning, QUIET)
        return out
    ordered = sorted(rows, key=lambda r: (not r.urgent, r.id))
    urgent = [r for r in ordered if r.urgent or not recipient.digest]
    digest = [r for r in ordered if not r.urgent and recipient.digest]
    due_digest = []
    for r in digest:
        when = digest_time(r.created_at, recipient.zone, recipient.country)
        if when > now:
            out.hold((r.id,), when, DIGEST)
        else:
            due_digest.append(r)
    messages = [Outgoing("notice", (r,)) for r in urgent if r.urgent]
    if due_digest:
        messages.append(Outgoing("digest", tuple(due_digest)))
    messages += [Outgoing("notice", (r,)) for r in urgent if not r.urgent]
    if recipient.cap <= 0:
        out.messages = messages
        return out
    room = max(recipient.cap - sent_today, 0)
    out.messages, over = messages[:room], messages[room:]
    carried = tuple(r for m in over for r in m.rows)
    if not carried:
        return out
    if summary_sent:
        tomorrow = local_midnight(now, recipient.zone, days=1)
        out.hold((r.id for r in carried), tomorrow, CAP)
    else:
        out.messages.append(Outgoing("overflow", carried))
    return out


Links = Callable[[dict[str, Any]], str | None]
# Which of the claimed rows are no longer wanted as of `now`, each with why: the case office's
# rule, asked once per claimed batch.
Obsolete = Callable[[Sequence[int], datetime], Mapping[int, str]]
Work = tuple[Recipient, Outgoing, Message]  # a message planned for one recipient


@dataclass(frozen=True)
class RunLinks:
    """Prefect UI addresses for notices: a gate notice links to its gate's waiting run, any
    other to the monitor run that found it (plain data, so it travels to worker processes)."""

    ui: str
    gates: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def __call__(self, payload: dict[str, Any]) -> str | None:
        run = payload.get("run")
        if payload.get("item_kind") == "gate":
            run = self.gates.get((str(payload.get("case")), str(payload.get("item"))), run)
        return f"{self.ui.rstrip('/')}/runs/flow-run/{run}" if run else None


def dispatch(
    engine: Engine,
    *,
    now: datetime,
    post: PostOffice,
    max_attempts: int = 5,
    batch: int = 500,
    concurrency: int = 8,
    links: Links | None = None,
    obsolete: Obsolete | None = None,
) -> DispatchReport:
    """Deliver every waiting notice due by `now`, as each recipient's preferences say.

    `links` gives the Prefect UI address to follow a notice in (from its payload), if any;
    `obsolete` says which claimed rows are no longer wanted: they are recorded `obsolete` with
    the reason and never sent, nor carried in a digest or summary, nor counted to a cap."""
    now = now.astimezone(UTC)
    report = DispatchReport()
    width = max(concurrency, 1)
    # One connection records the whole pass (a transaction per record, SQLite's immediate),
    # so a record does not pay for a checkout from the pool, and its reset, every time.
    writer = engine.execution_options(sqlite_immediate=True)
    with ThreadPoolExecutor(max_workers=width) as pool, writer.connect() as recorder:
        # Once the local log is out of room, no more rows are taken: they would fail too.
        while post.full is None and (claimed := _claim(engine, now, batch)):
            recipients, rows = _load(engine, claimed)
            if obsolete is not None:
                rows = _drop(recorder, obsolete(claimed, now), rows, report)
            sent_today, summaries = _today(engine, now, recipients)
            work: list[Work] = []
            holds: dict[int, datetime] = {}
            for rid, recipient in recipients.items():
                p = plan(
                    recipient,
                    rows[rid],
                    now,
                    sent_today=sent_today.get(rid, 0),
                    summary_sent=rid in summaries,
                )
                holds |= p.holds
                report.note_holds(p)
                work += [(recipient, m, _message(m, recipient, now, links)) for m in p.messages]
            _deliver(recorder, now, max_attempts, pool, width, post, work, holds, report)
    return report


def _deliver(
    recorder: Connection,
    now: datetime,
    max_attempts: int,
    pool: ThreadPoolExecutor,
    width: int,
    post: PostOffice,
    work: Sequence[Work],
    holds: dict[int, datetime],
    report: DispatchReport,
) -> None:
    """Deliver the planned messages, at most `width` at a time, recording as they complete.

    Each commit records the outcomes that completed since the last one (with the holds, the
    first time) and marks the rows of the messages about to take the freed slots `sending`;
    only then do those messages go. So at any moment at most `width` messages are marked and
    not recorded: all a dispatcher killed then can have delivered without a record."""
    queue = list(reversed(work))
    finished: SimpleQueue[tuple[Work, list[ChannelResult]]] = SimpleQueue()

    def send(item: Work) -> None:
        sent = [ChannelResult("dispatch", False, "interrupted while delivering")]
        try:
            sent = _send(post, *item)
        finally:
            finished.put((item, sent))

    running = 0
    done: list[tuple[Work, list[ChannelResult]]] = []
    while True:
        starting = [queue.pop() for _ in range(min(width - running, len(queue)))]
        if done or holds or starting:
            _record(recorder, now, max_attempts, done, holds, starting, report)
            done, holds = [], {}
        for item in starting:
            pool.submit(send, item)
        running += len(starting)
        if not running:
            return
        done.append(finished.get())  # the first to complete, then all that completed since
        while not finished.empty():
            done.append(finished.get())
        running -= len(done)


def _due(now: datetime) -> Any:
    return and_(
        col(Notification.status).in_(_WAITING),
        or_(col(Notification.next_attempt_at).is_(None), col(Notification.next_attempt_at) <= now),
    )


def _claim(engine: Engine, now: datetime, batch: int) -> list[int]:
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


def _load(engine: Engine, ids: list[int]) -> tuple[dict[int, Recipient], dict[int, list[Row]]]:
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
                )
                .join(Contact, col(Contact.id) == Notification.recipient_id)
                .join(Partner, col(Partner.id) == Contact.partner_id)
                .where(col(Notification.id).in_(ids[start : start + 5000]))
            ).all()
            for nid, tries, urgent, created, payload, took, sending, contact, partner in found:
                assert contact.id is not None
                if contact.id not in recipients:
                    quiet = None
                    if contact.quiet_from is not None and contact.quiet_until is not None:
                        quiet = (contact.quiet_from, contact.quiet_until)
                    recipients[contact.id] = Recipient(
                        id=contact.id,
                        email=contact.email,
                        partner=partner,
                        zone=contact.timezone,
                        channels=frozenset(c for c in contact.channels.split(",") if c),
                        digest=contact.digest,
                        quiet=quiet,
                        cap=contact.daily_cap,
                        country=contact.country,
                    )
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


def _today(
    engine: Engine, now: datetime, recipients: Mapping[int, Recipient]
) -> tuple[dict[int, int], set[int]]:
    """Messages each recipient had today (their local day) and who had today's summary."""
    counted = [rid for rid, r in recipients.items() if r.cap > 0]
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
        if _aware(at) >= local_midnight(now, recipients[rid].zone):
            sent[rid] += 1
            if kind == "overflow":
                summaries.add(rid)
    return sent, summaries


def _message(out: Outgoing, recipient: Recipient, now: datetime, links: Links | None) -> Message:
    def link(payload: dict[str, Any]) -> str | None:
        return links(payload) if links is not None else None

    if out.kind == "notice":
        payload = out.rows[0].payload
        return render(payload, link=link(payload))
    notices = [Notice(r.payload, link(r.payload), r.urgent) for r in out.rows]
    day = now.astimezone(ZoneInfo(recipient.zone)).date()
    return render_bundle(out.kind, notices, day=day, cap=recipient.cap)


def _send(
    post: PostOffice, recipient: Recipient, out: Outgoing, message: Message
) -> list[ChannelResult]:
    done = frozenset.intersection(*(r.delivered for r in out.rows))
    pilots = sorted({str(r.payload.get("pilot", "")) for r in out.rows})
    try:
        return post.deliver(
            to=recipient.email,
            tags=[recipient.email, recipient.partner, *pilots],
            message=message,
            done=done,
            allowed=recipient.channels,
        )
    except Exception as exc:  # one recipient's trouble must not stop the others
        return [ChannelResult("dispatch", False, f"{type(exc).__name__} while delivering")]


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


def _drop(
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


def _record(
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
