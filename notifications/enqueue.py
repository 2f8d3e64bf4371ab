"""Putting notices in the outbox: the one way rows get there.

Each notice is written once: its dedupe key (`dedupe_key`: the item, a gate's round, the ladder
step and the recipient) is unique in the outbox, so a second pass that reaches the same step
for the same person writes nothing. The keys not in the outbox yet are looked up first, a few
thousand at a time, so a pass that finds nothing new stores nothing and makes no payload's
JSON; a caller that can say a notice's key before making it (`enqueue_keyed`) makes only the
notices whose key is new. The new rows then go in with one statement per chunk: they travel as
one JSON array, which the database unpacks, INSERT ... SELECT ... ON CONFLICT DO NOTHING (a key
another writer took meanwhile is skipped) RETURNING the keys that went in. The columns every
new row shares (`pending`, created `now`, the outbox's defaults) are bound once per statement,
not once per row.
"""

import json
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import date, datetime
from functools import lru_cache
from itertools import islice
from typing import Any, TypeVar

from sqlalchemy import JSON, Boolean, Connection, Date, Integer, Text, bindparam, cast, func, select

from models import Notification, OutboxNotice
from notifications.channel_posts import enqueue_posts, post_key
from notifications.json_insert import insert_from_json

Item = TypeVar("Item")
Source = TypeVar("Source")
CHUNK = 5000  # notices looked up and inserted at a time
_OUTBOX = Notification.__table__  # type: ignore[attr-defined]
# The columns of a new row that differ from row to row, in the order `_rows` gives them.
_PER_ROW: tuple[tuple[str, Any], ...] = (
    ("dedupe_key", Text),
    ("case_id", Integer),
    ("subject", Text),
    ("rule", Text),
    ("recipient_id", Integer),
    ("urgent", Boolean),
    ("due_on", Date),
    ("fire_on", Date),
    ("payload", JSON),
)


def dedupe_key(notice: OutboxNotice) -> str:
    """What makes a notice the same notice: its case and item (a gate's round; a
    milestone's rework round after the first), the due date its ladder counts from when that
    is not the item's original one, its ladder step and its recipient (`item_scope`,
    `step_key`)."""
    p = notice.payload
    scope = item_scope(p.case, p.item, p.item_kind, p.round, p.due, p.baseline)
    return step_key(scope, p.step, notice.recipient)


def item_scope(
    case: str, item: str, item_kind: str, rnd: int, due: date, baseline: date | None
) -> str:
    """The part of a dedupe key every notice about one item's ladder shares.

    A milestone in round 1 due on its original date keeps the key it always had
    (`m:CASE/ITEM/STEP/TO`), so rows already in the outbox keep meaning what they meant; a
    reopened one adds `/r2`, `/r3`, ..., a rescheduled one `@DUE` (`baseline`: its original
    due date, None when it is `due`): its ladder restarts from the new date, and a step sent
    for a date is not sent again for that same date."""
    if item_kind == "gate":
        scope = f"g:{case}/{item}/r{rnd}"
    else:
        scope = f"m:{case}/{item}/r{rnd}" if rnd > 1 else f"m:{case}/{item}"
    if baseline is not None and due != baseline:
        scope += f"@{due.isoformat()}"
    return scope


def step_key(scope: str, step: str, recipient: str) -> str:
    """The dedupe key of the notice of ladder step `step` of the item `scope` names
    (`item_scope`) to `recipient` (an address)."""
    return f"{scope}/{step}/{recipient}"


def renamed_key(key: str, case: str, old: str, new: str) -> str:
    """A dedupe key of a case's item `old` as `dedupe_key` makes it for the same notice
    of the item renamed `new` (a template upgrade), so a step sent is not sent again."""
    for kind in ("m", "g"):
        scope = f"{kind}:{case}/{old}"
        if key.startswith(scope) and key[len(scope) : len(scope) + 1] in ("/", "@"):
            return f"{kind}:{case}/{new}{key[len(scope) :]}"
    return key


def renamed_post_key(key: str, case: str, old: str, new: str) -> str:
    """A team channel's post key (`channel_posts.post_key`) of a case's item `old` renamed
    `new`: its event's key as `renamed_key` makes it, on the same channel."""
    channel, _, event = key.partition("|")
    return post_key(channel, renamed_key(event, case, old, new))


def enqueue(
    conn: Connection,
    notices: Iterable[OutboxNotice],
    *,
    now: datetime,
    channels: Collection[str] = (),
) -> list[OutboxNotice]:
    """Put each notice whose dedupe key is new in the outbox, `pending` from `now`, in the
    caller's transaction; returns the notices that went in, in the order given (a notice
    repeating an earlier one's key is not written again).

    With `channels` (the names of the channels chat services joined, `channels.subscribed`),
    the events of the notices that went in are posted to the channels that hear of them, in
    the same transaction: one post per channel and event (`channel_posts`)."""
    return enqueue_keyed(
        conn, ((dedupe_key(n), n) for n in notices), _same, now=now, channels=channels
    )


def enqueue_keyed(
    conn: Connection,
    keyed: Iterable[tuple[str, Source]],
    make: Callable[[Source], OutboxNotice],
    *,
    now: datetime,
    channels: Collection[str] = (),
) -> list[OutboxNotice]:
    """`enqueue` for notices given before they are made: each as its dedupe key and what
    `make` makes it of, so that only the notices whose key is new are made (a pass that
    finds everything already there makes none). The key must be `dedupe_key` of the notice
    `make` makes."""
    seen: set[str] = set()
    went_in: list[OutboxNotice] = []
    for chunk in _chunks(keyed, CHUNK):
        new = _new_keys(conn, [key for key, _ in chunk])
        todo: dict[str, OutboxNotice] = {}
        for key, source in chunk:
            if key in new and key not in seen:
                seen.add(key)
                todo[key] = make(source)
        if not todo:
            continue
        stored = _insert(conn, todo, now)
        new_here = [(key, n) for key, n in todo.items() if key in stored]
        went_in += [n for _, n in new_here]
        if channels and new_here:
            enqueue_posts(conn, new_here, channels, now=now)
    return went_in


def _same(notice: OutboxNotice) -> OutboxNotice:
    return notice


def _rows(todo: dict[str, OutboxNotice]) -> str:
    """The new rows of `todo` (by dedupe key) as one JSON array of arrays, each with the
    values of `_PER_ROW` in order: dates as ISO text, the payload as its stored JSON text.
    Notices sharing a payload (the recipients of one step of one item) share its JSON."""
    said: dict[int, str] = {}
    out = []
    for key, notice in todo.items():
        payload = notice.payload
        as_json = said.get(id(payload))
        if as_json is None:
            as_json = said[id(payload)] = json.dumps(payload.as_json())
        due = payload.due.isoformat()
        out.append(
            (
                key,
                notice.case_id,
                payload.item,
                payload.step,
                notice.recipient_id,
                notice.urgent,
                due,
                notice.fire_on.isoformat(),
                as_json,
            )
        )
    return json.dumps(out)


def _insert(conn: Connection, todo: dict[str, OutboxNotice], now: datetime) -> set[str]:
    """Insert the rows of `todo`, skipping any whose key was taken meanwhile; the keys that
    went in."""
    statement = _insert_statement(conn.dialect.name)
    params = {"rows": _rows(todo), "now": now}
    return set(conn.execute(statement, params).scalars())


def _insert_statement(dialect: str) -> Any:
    """INSERT ... SELECT from the rows' JSON array ... ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING dedupe_key, built once per backend."""
    return insert_from_json(dialect, _OUTBOX, _PER_ROW)


def _new_keys(conn: Connection, keys: Sequence[str]) -> set[str]:
    """The keys among `keys` not in the outbox yet. They go to the database as one JSON
    array, which it unpacks, and only the new keys come back: on a pass that finds little
    new, next to nothing."""
    statement = _new_keys_statement(conn.dialect.name)
    return set(conn.execute(statement, {"keys": json.dumps(list(keys))}).scalars())


@lru_cache(maxsize=4)
def _new_keys_statement(dialect: str) -> Any:
    """The look-up of `_new_keys`, built once per backend. On PostgreSQL the array is written
    into the statement as a literal, so that each look-up is planned for the outbox as it is
    then: a plan made once and kept for the connection (a prepared statement) would, made
    while the outbox was near empty, go on reading all of it for every look-up as a first
    pass over a store never monitored before fills it."""
    key = _OUTBOX.c.dedupe_key
    if dialect == "postgresql":
        keys = bindparam("keys", type_=Text, literal_execute=True)
        elements = func.json_array_elements_text(cast(keys, JSON))
    else:
        elements = func.json_each(bindparam("keys", type_=Text))
    wanted = elements.table_valued("value")
    taken = select(key).where(key == wanted.c.value).exists()
    return select(wanted.c.value).where(~taken)


def _chunks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
