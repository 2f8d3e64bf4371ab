"""Writing the channels' posts: one per channel and event, beside the notices of that event.

An event is what a notice tells, whoever reads it: its dedupe key without the recipient (an
item, a gate's round, the due date its ladder counts from, the ladder step). `enqueue` hands
over the notices that went into the outbox; each channel that hears of their event
(`channels.hearing`: all, the case's pilot kind, a recipient's partner) gets one post, keyed
`CHANNEL|EVENT` and unique in `channel_posts`, so the five council members' notices of one
gate make one post, and a second pass writes none. The posts go in with one statement per
chunk, as the notices do (`json_insert`), in the caller's transaction.
"""

import json
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import JSON, Boolean, Connection, Date, Integer, Text, select
from sqlmodel import col

from models import ChannelPost, Contact, OutboxNotice, Partner
from notifications.channels import hearing, wants_partners
from notifications.json_insert import insert_from_json

CHUNK = 5000  # posts inserted at a time
_POSTS = ChannelPost.__table__  # type: ignore[attr-defined]
_PER_ROW: tuple[tuple[str, Any], ...] = (
    ("dedupe_key", Text),
    ("channel", Text),
    ("case_id", Integer),
    ("rule", Text),
    ("urgent", Boolean),
    ("fire_on", Date),
    ("payload", JSON),
)


def event_key(notice_key: str, recipient: str) -> str:
    """The event a notice tells: its dedupe key without the recipient."""
    return notice_key.removesuffix(f"/{recipient}")


def post_key(channel: str, event: str) -> str:
    """A channel's post of an event: unique in `channel_posts`."""
    return f"{channel}|{event}"


def enqueue_posts(
    conn: Connection,
    notices: Sequence[tuple[str, OutboxNotice]],
    subscribed: Collection[str],
    *,
    now: datetime,
) -> set[str]:
    """Post the events of `notices` (each with its dedupe key) to the channels among
    `subscribed` that hear of them, `pending` from `now`, in the caller's transaction: one
    post per channel and event (urgent if any of its notices is, on the earliest day one
    fell). The keys of the posts that went in."""
    partners = (
        _partners(conn, {n.recipient_id for _, n in notices}) if wants_partners(subscribed) else {}
    )
    posts: dict[str, list[Any]] = {}
    for key, notice in notices:
        event = event_key(key, notice.recipient)
        payload = notice.payload
        reached = [partners[notice.recipient_id]] if notice.recipient_id in partners else []
        for channel in hearing(subscribed, pilot=payload.pilot, partners=reached):
            pk = post_key(channel, event)
            had = posts.get(pk)
            if had is not None:
                had[4] = had[4] or notice.urgent
                had[5] = min(had[5], notice.fire_on)
                continue
            posts[pk] = [pk, channel, notice.case_id, payload.step, notice.urgent]
            posts[pk] += [notice.fire_on, payload]
    went_in: set[str] = set()
    statement = insert_from_json(conn.dialect.name, _POSTS, _PER_ROW)
    for chunk in _chunks(posts.values(), CHUNK):
        went_in |= set(conn.execute(statement, {"rows": _rows(chunk), "now": now}).scalars())
    return went_in


def _rows(chunk: list[list[Any]]) -> str:
    """The posts as one JSON array of arrays, in `_PER_ROW`'s order; posts of one payload
    share its JSON."""
    said: dict[int, str] = {}
    out = []
    for key, channel, case_id, rule, urgent, fire_on, payload in chunk:
        as_json = said.get(id(payload))
        if as_json is None:
            as_json = said[id(payload)] = json.dumps(payload.as_json())
        out.append((key, channel, case_id, rule, urgent, fire_on.isoformat(), as_json))
    return json.dumps(out)


def _partners(conn: Connection, ids: Collection[int]) -> dict[int, str]:
    """Each recipient's partner code, by contact id."""
    found = conn.execute(
        select(col(Contact.id), col(Partner.code))
        .join(Partner, col(Partner.id) == col(Contact.partner_id))
        .where(col(Contact.id).in_(sorted(ids)))
    )
    return {int(cid or 0): str(code) for cid, code in found}


def _chunks(items: Collection[list[Any]], size: int) -> Iterator[list[list[Any]]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
