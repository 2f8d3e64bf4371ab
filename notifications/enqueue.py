"""Putting notices in the outbox: the one way rows get there.

Each notice is written once: its dedupe key (`dedupe_key`: the item, a gate's round, the
ladder step and the recipient) is unique in the outbox, so a second pass that reaches the
same step for the same person writes nothing. The keys not in the outbox yet are looked up
first, a few thousand at a time, so a pass that finds nothing new stores nothing; the rows
then go in with one INSERT ... ON CONFLICT DO NOTHING executemany per chunk (a key another
writer took meanwhile is skipped), and it says which went in.
"""

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from functools import lru_cache
from itertools import islice
from typing import Any

from sqlalchemy import JSON, Connection, Text, bindparam, cast, func, select
from sqlalchemy.dialects import postgresql, sqlite

from models import Notification, NotificationStatus, OutboxNotice

CHUNK = 5000  # notices looked up and inserted at a time
_OUTBOX = Notification.__table__  # type: ignore[attr-defined]


def dedupe_key(notice: OutboxNotice) -> str:
    """What makes a notice the same notice: its case and item (a gate's round; a
    milestone's rework round after the first), the due date its ladder counts from when that
    is not the item's original one, its ladder step and its recipient.

    A milestone in round 1 due on its original date keeps the key it always had
    (`m:CASE/ITEM/STEP/TO`), so rows already in the outbox keep meaning what they meant; a
    reopened one adds `/r2`, `/r3`, ..., a rescheduled one `@DUE`: its ladder restarts from
    the new date, and a step sent for a date is not sent again for that same date."""
    p = notice.payload
    if p.item_kind == "gate":
        scope = f"g:{p.case}/{p.item}/r{p.round}"
    else:
        scope = f"m:{p.case}/{p.item}/r{p.round}" if p.round > 1 else f"m:{p.case}/{p.item}"
    if p.baseline is not None and p.due != p.baseline:
        scope += f"@{p.due.isoformat()}"
    return f"{scope}/{p.step}/{notice.recipient}"


def enqueue(
    conn: Connection, notices: Iterable[OutboxNotice], *, now: datetime
) -> list[OutboxNotice]:
    """Put each notice whose dedupe key is new in the outbox, `pending` from `now`, in the
    caller's transaction; returns the notices that went in, in the order given (a notice
    repeating an earlier one's key is not written again)."""
    seen: set[str] = set()
    went_in: list[OutboxNotice] = []
    for chunk in _chunks(notices, CHUNK):
        keyed = [(dedupe_key(n), n) for n in chunk]
        new = _new_keys(conn, [key for key, _ in keyed])
        todo: dict[str, OutboxNotice] = {}
        for key, notice in keyed:
            if key in new and key not in seen:
                seen.add(key)
                todo[key] = notice
        if not todo:
            continue
        stored = _insert(conn, _rows(todo, now))
        went_in += [n for key, n in todo.items() if key in stored]
    return went_in


def _rows(todo: dict[str, OutboxNotice], now: datetime) -> list[dict[str, Any]]:
    """The outbox rows of `todo` (by dedupe key). Notices sharing a payload (the recipients
    of one step of one item) share its JSON form."""
    said: dict[int, dict[str, Any]] = {}
    out = []
    for key, notice in todo.items():
        payload = notice.payload
        as_json = said.get(id(payload))
        if as_json is None:
            as_json = said[id(payload)] = payload.as_json()
        out.append(
            {
                "dedupe_key": key,
                "case_id": notice.case_id,
                "subject": payload.item,
                "rule": payload.step,
                "recipient_id": notice.recipient_id,
                "urgent": notice.urgent,
                "status": NotificationStatus.PENDING,
                "due_on": payload.due,
                "fire_on": notice.fire_on,
                "payload": as_json,
                "created_at": now,
                "attempts": 0,
            }
        )
    return out


def _insert(conn: Connection, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert `rows`, skipping any whose key was taken meanwhile; the keys that went in.

    One executemany (SQLite's, or psycopg's pipeline), in a savepoint: when every row went
    in, as when nobody wrote the outbox since the look-up, that is all. Otherwise another
    writer took some of the keys: the savepoint is undone and the rows go again with
    RETURNING, which names the keys that went in."""
    statement = _insert_statement(conn.dialect.name)
    with conn.begin_nested() as savepoint:
        if conn.execute(statement, list(rows)).rowcount == len(rows):
            return {row["dedupe_key"] for row in rows}
        savepoint.rollback()
    returning = statement.returning(_OUTBOX.c.dedupe_key)
    return set(conn.execute(returning, list(rows)).scalars())


@lru_cache(maxsize=4)
def _insert_statement(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (dedupe_key) DO NOTHING, built once per backend."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(_OUTBOX).on_conflict_do_nothing(index_elements=[_OUTBOX.c.dedupe_key])
    # The rows an executemany inserted, summed by the driver, kept for `rowcount`.
    return statement.execution_options(preserve_rowcount=True)


def _new_keys(conn: Connection, keys: Sequence[str]) -> set[str]:
    """The keys among `keys` not in the outbox yet. They go to the database as one JSON
    array, which it unpacks, and only the new keys come back: on a pass that finds little
    new, next to nothing."""
    statement = _new_keys_statement(conn.dialect.name)
    return set(conn.execute(statement, {"keys": json.dumps(list(keys))}).scalars())


@lru_cache(maxsize=4)
def _new_keys_statement(dialect: str) -> Any:
    """The look-up of `_new_keys`, built once per backend."""
    column = _OUTBOX.c.dedupe_key
    if dialect == "postgresql":
        elements = func.json_array_elements_text(cast(bindparam("keys", type_=Text), JSON))
    else:
        elements = func.json_each(bindparam("keys", type_=Text))
    wanted = elements.table_valued("value")
    taken = select(column).where(column == wanted.c.value).exists()
    return select(wanted.c.value).where(~taken)


def _chunks(items: Iterable[OutboxNotice], size: int) -> Iterator[list[OutboxNotice]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
