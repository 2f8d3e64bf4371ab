"""Dispatching the outbox: claim due rows, plan each recipient's messages, deliver, record.

Rows are claimed a recipient at a time with one UPDATE that pushes their next attempt a lease
ahead, so two dispatchers never take the same row. For each recipient, their preferences
decide what goes (`plan`):

- in their quiet hours (local night, 21:00 to 07:00 unless they chose otherwise) nothing goes;
  the rows are `held` until the night ends;
- with `digest` on, what is not urgent waits for one message at 08:00 local on a working day
  (by the reader's working-day calendar the case office gives, else Monday to Friday, not a
  public holiday of the reader's country);
- past their `daily_cap` of messages today, one overflow summary carries the rest; after that,
  rows wait for the next day.

A recipient who is away (the case office says so through an injected callable, once per
claimed batch, by their own local date) is read for by their deputy: the rows stay addressed
to the absent person, the message goes to the deputy, under the deputy's preferences, with a
line saying for whom and until when, and the receipt names the deputy.

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

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from queue import SimpleQueue
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine

from notifications.claim import claim, covered, load, sent_today
from notifications.post import ChannelResult, PostOffice
from notifications.preferences import Outgoing, Recipient, plan
from notifications.record import Work, drop, record
from notifications.render import Cover, Message, Notice, render, render_bundle
from notifications.report import DispatchReport

Links = Callable[[dict[str, Any]], str | None]
# Which of the claimed rows are no longer wanted as of `now`, each with why: the case office's
# rule, asked once per claimed batch.
Obsolete = Callable[[Sequence[int], datetime], Mapping[int, str]]
# Who of the claimed rows' recipients (by contact id) is away as of `now`: each one's deputy's
# contact id and their last day away (the case office's rule, asked once per claimed batch).
Deputies = Callable[[Sequence[int], datetime], Mapping[int, tuple[int, date]]]
# The working days a recipient keeps, for their digest day (the case office's calendar rule);
# without it (or None for a recipient), Monday to Friday except their country's holidays.
WorkingDays = Callable[[Recipient], Callable[[date], bool] | None]


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
    deputies: Deputies | None = None,
    working_days: WorkingDays | None = None,
) -> DispatchReport:
    """Deliver every waiting notice due by `now`, as each recipient's preferences say.

    `links` gives the Prefect UI address to follow a notice in (from its payload), if any;
    `obsolete` says which claimed rows are no longer wanted: they are recorded `obsolete` with
    the reason and never sent, nor carried in a digest or summary, nor counted to a cap;
    `deputies` says who is away and who reads for them; `working_days` which days a
    recipient's digest may come on."""
    now = now.astimezone(UTC)
    report = DispatchReport()
    width = max(concurrency, 1)
    # One connection records the whole pass (a transaction per record, SQLite's immediate),
    # so a record does not pay for a checkout from the pool, and its reset, every time.
    writer = engine.execution_options(sqlite_immediate=True)
    with ThreadPoolExecutor(max_workers=width) as pool, writer.connect() as recorder:
        # Once the local log is out of room, no more rows are taken: they would fail too.
        while post.full is None and (claimed := claim(engine, now, batch)):
            recipients, rows = load(engine, claimed)
            if obsolete is not None:
                rows = drop(recorder, obsolete(claimed, now), rows, report)
            if deputies is not None:
                recipients = covered(engine, recipients, deputies(sorted(recipients), now))
            counted, summaries = sent_today(engine, now, recipients)
            work: list[Work] = []
            holds: dict[int, datetime] = {}
            for rid, recipient in recipients.items():
                p = plan(
                    recipient,
                    rows[rid],
                    now,
                    sent_today=counted.get(recipient.id, 0),
                    summary_sent=recipient.id in summaries,
                    working_day=working_days(recipient) if working_days is not None else None,
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
            record(recorder, now, max_attempts, done, holds, starting, report)
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


def _message(out: Outgoing, recipient: Recipient, now: datetime, links: Links | None) -> Message:
    def link(payload: dict[str, Any]) -> str | None:
        return links(payload) if links is not None else None

    cover = _cover(recipient)
    if out.kind == "notice":
        payload = out.rows[0].payload
        return render(payload, link=link(payload), cover=cover)
    notices = [Notice(r.payload, link(r.payload), r.urgent) for r in out.rows]
    day = now.astimezone(ZoneInfo(recipient.zone)).date()
    return render_bundle(out.kind, notices, day=day, cap=recipient.cap, cover=cover)


def _cover(recipient: Recipient) -> Cover | None:
    """Whom a deputy reads a message for (None for anyone reading their own)."""
    return Cover(recipient.for_whom, recipient.away_until) if recipient.for_whom else None


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
