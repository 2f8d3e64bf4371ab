"""The outbox's one writer: a notice's dedupe key, its payload as stored, and `enqueue`
writing each notice once (on SQLite and PostgreSQL)."""

import json
from dataclasses import replace
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Text, cast, insert
from sqlmodel import col, select

from bridgebsr.store.db import read_session
from models import NoticePayload, Notification, NotificationStatus, OutboxNotice
from notifications import enqueue as enqueue_module
from notifications.outbox import dedupe_key, enqueue
from tests.test_notifications.conftest import Outbox

_slug = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
_day = st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31))
_payloads = st.builds(
    NoticePayload,
    case=st.from_regex(r"[A-Z]{2,4}-20[0-9]{2}-[0-9]{4}", fullmatch=True),
    case_title=st.text(max_size=40),
    pilot=_slug,
    country=st.sampled_from(["DK", "SE", "DE", "PL"]),
    item=_slug,
    item_kind=st.sampled_from(["milestone", "gate"]),
    item_title=st.text(max_size=40),
    due=_day,
    days_late=st.integers(0, 400),
    step=_slug,
    offset=st.integers(-250, 250),
    round=st.integers(1, 5),
    baseline=st.none() | _day,
    run=st.none() | st.uuids().map(str),
)


def _notice(payload: NoticePayload, email: str = "a@example.org") -> OutboxNotice:
    return OutboxNotice(
        case_id=1, recipient_id=1, recipient=email, urgent=False, fire_on=payload.due,
        payload=payload,
    )  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(_payloads)
def test_a_payload_is_stored_as_its_json_and_reads_back_the_same(payload: NoticePayload) -> None:
    stored = json.loads(json.dumps(payload.as_json()))
    assert NoticePayload.read(stored) == payload
    assert stored["due"] == payload.due.isoformat()
    assert ("run" in stored) == (payload.run is not None)


@settings(max_examples=200, deadline=None)
@given(_payloads, _payloads, st.emails(), st.emails())
def test_the_dedupe_key_names_item_round_step_and_recipient(
    a: NoticePayload, b: NoticePayload, one: str, other: str
) -> None:
    key = dedupe_key(_notice(a, one))
    kind = "g" if a.item_kind == "gate" else "m"
    # A gate's round always; a milestone's only after rework; a due date only when moved.
    scope = f"{kind}:{a.case}/{a.item}"
    if a.item_kind == "gate" or a.round > 1:
        scope += f"/r{a.round}"
    if a.baseline is not None and a.baseline != a.due:
        scope += f"@{a.due.isoformat()}"
    assert key == f"{scope}/{a.step}/{one}"
    # What the notice says besides its item, step and round does not make it another notice.
    same = replace(a, days_late=b.days_late, item_title=b.item_title)
    assert dedupe_key(_notice(same, one)) == key
    if one != other:
        assert dedupe_key(_notice(a, other)) != key
    if b.round != a.round:
        assert dedupe_key(_notice(replace(a, round=b.round), one)) != key
    # A milestone moved to another date is another notice; moved back, the same again.
    moved = replace(a, baseline=a.due, due=b.due)
    if b.due != a.due:
        assert dedupe_key(_notice(moved, one)) != dedupe_key(_notice(replace(a, baseline=a.due)))
    assert dedupe_key(_notice(replace(moved, due=a.due), one)) == dedupe_key(
        _notice(replace(a, baseline=a.due), one)
    )


def _stored(box: Outbox) -> list[Notification]:
    with read_session(box.engine) as session:
        return list(session.exec(select(Notification).order_by(col(Notification.id))))


def _next_step_of(row: Notification) -> OutboxNotice:
    """A notice of a later step than `row`'s, for the same recipient and item."""
    payload = replace(NoticePayload.read(row.payload), step="late-99", offset=99)
    return OutboxNotice(
        case_id=row.case_id,
        recipient_id=row.recipient_id,
        recipient=row.dedupe_key.rsplit("/", 1)[1],
        urgent=True,
        fire_on=row.fire_on + timedelta(days=1),
        payload=payload,
    )


def test_enqueue_writes_a_new_notice_once_and_says_so(outbox: Outbox) -> None:
    before = _stored(outbox)
    notice = _next_step_of(before[0])
    with outbox.engine.begin() as conn:
        went_in = enqueue(conn, [notice, notice], now=outbox.now)
    assert went_in == [notice]
    with outbox.engine.begin() as conn:
        assert enqueue(conn, [notice], now=outbox.now) == []
    rows = _stored(outbox)
    assert len(rows) == len(before) + 1
    row = rows[-1]
    assert row.dedupe_key == dedupe_key(notice)
    assert (row.subject, row.rule, row.due_on) == (
        notice.payload.item,
        "late-99",
        notice.payload.due,
    )
    assert (row.status, row.attempts, row.urgent) == (NotificationStatus.PENDING, 0, True)
    assert (row.delivered, row.sending, row.resent) == ([], False, 0)
    assert row.payload == notice.payload.as_json()


def test_enqueue_skips_a_key_taken_after_it_looked(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that took a key between the look-up and the insert wins: the insert skips it."""
    before = _stored(outbox)
    taken = OutboxNotice(
        case_id=before[0].case_id,
        recipient_id=before[0].recipient_id,
        recipient=before[0].dedupe_key.rsplit("/", 1)[1],
        urgent=before[0].urgent,
        fire_on=before[0].fire_on,
        payload=NoticePayload.read(before[0].payload),
    )
    assert dedupe_key(taken) == before[0].dedupe_key
    fresh = _next_step_of(before[0])
    monkeypatch.setattr(enqueue_module, "_new_keys", lambda conn, keys: set(keys))
    with outbox.engine.begin() as conn:
        assert enqueue(conn, [taken, fresh], now=outbox.now) == [fresh]
    assert len(_stored(outbox)) == len(before) + 1


def _as_stored(box: Outbox, keys: list[str]) -> dict[str, tuple[str | None, ...]]:
    """Each row's every column but its id and key as the database holds it (as text)."""
    table = Notification.__table__  # type: ignore[attr-defined]
    columns = [c for c in table.columns if c.name not in ("id", "dedupe_key")]
    query = select(table.c.dedupe_key, *(cast(c, Text) for c in columns)).where(
        table.c.dedupe_key.in_(keys)
    )
    with box.engine.connect() as conn:
        return {key: tuple(values) for key, *values in conn.execute(query)}


def test_an_enqueued_row_is_stored_as_an_insert_of_its_values_stores_it(outbox: Outbox) -> None:
    """The rows travel to the database as one JSON document and the columns they share are
    bound once: what is stored is, to the byte, what a plain INSERT of the same values with
    the outbox's defaults stores (the payload's JSON text included)."""
    notice = _next_step_of(_stored(outbox)[0])
    payload = replace(notice.payload, item_title='Quotes " \\ and ünïcode ’', run="run-1")
    notice = replace(notice, payload=payload, urgent=False)
    twin = replace(notice, recipient="twin@example.org")  # another key, the same columns
    table = Notification.__table__  # type: ignore[attr-defined]
    with outbox.engine.begin() as conn:
        assert enqueue(conn, [notice], now=outbox.now) == [notice]
        conn.execute(
            insert(table).values(
                dedupe_key=dedupe_key(twin),
                case_id=twin.case_id,
                subject=payload.item,
                rule=payload.step,
                recipient_id=twin.recipient_id,
                urgent=twin.urgent,
                status=NotificationStatus.PENDING,
                due_on=payload.due,
                fire_on=twin.fire_on,
                payload=payload.as_json(),
                created_at=outbox.now,
            )
        )
    stored = _as_stored(outbox, [dedupe_key(notice), dedupe_key(twin)])
    assert stored[dedupe_key(notice)] == stored[dedupe_key(twin)]
    assert stored[dedupe_key(notice)][8] == json.dumps(payload.as_json())  # payload column


def test_the_look_up_of_new_keys_takes_any_text(outbox: Outbox) -> None:
    """Keys with quotes, backslashes, percent signs and placeholders' shapes come back as
    given; a key in the outbox does not."""
    taken = _stored(outbox)[0].dedupe_key
    odd = ["it's 100% new", 'back\\slash "quoted"', "%s %(keys)s ?", "ünïcode ’", ""]
    with outbox.engine.connect() as conn:
        assert enqueue_module._new_keys(conn, [*odd, taken]) == set(odd)
