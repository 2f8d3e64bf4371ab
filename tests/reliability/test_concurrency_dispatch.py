"""Concurrency: dispatchers (and monitors) in parallel OS processes, and two writers racing on
one case with optimistic locking.

- N dispatcher processes (2 on SQLite, 4 on PostgreSQL), each with its own engine, released
  at once over M due notices (quick 1,000; soak 10,000) going to a loopback webhook receiver:
  each notice reaches its partner's hook exactly once, every row is `sent` on its first
  attempt, and there is one receipt per message.
- N processes (2 on SQLite, 4 on PostgreSQL), released at once over a store of cases whose
  ladders have steps due (quick about 830, soak about 10,000), each run one monitor pass at
  the same `now` and then dispatch, as overlapping schedulers would: all exit cleanly, the
  outbox holds each (recipient, item, step) once, each notice reaches its recipient's hook
  exactly once and is `sent`, and the audit trail has each monitor event once (one
  `milestone.overdue` per milestone found late, one `gate.expired` per gate).
- Two writer processes hold and resume one case (quick 100, soak 1,000 attempts each), each
  change carrying the version its writer read (`--if-version`): every attempt is applied or
  refused, none is lost (final version == 1 + applied) and the audit trail has exactly one
  event per applied change, no event for a refused one.
"""

import json
import re
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, text, update
from sqlmodel import col, select

from bridgebsr.bootstrap import build_runtime
from bridgebsr.demo import load_consortium
from bridgebsr.errors import StaleCase
from bridgebsr.monitor.sweep import MONITOR_ACTOR
from bridgebsr.office.cases import change_case, open_case
from bridgebsr.settings import Settings
from bridgebsr.store import migrate
from bridgebsr.store.case_rows import case_by_key
from bridgebsr.store.db import read_session, write_session
from models import CaseEvent, CaseStatus, Gate, Milestone, Notification
from notifications.outbox import LEASE, DispatchReport, dispatch
from notifications.post import PostOffice
from notifications.render import headline
from tests.conftest import backend_url
from tests.reliability._outbox import (
    ANCHOR_OWNER,
    NOW,
    Receiver,
    fill_outbox,
    finish,
    go,
    kill,
    ladder_store,
    note,
    outbox,
    python_child,
    ready,
    receipts,
    sized,
    write_config,
    write_routes,
)

pytestmark = pytest.mark.slow

NOTICES = sized(1_000, 10_000)
ATTEMPTS = sized(100, 1_000)  # per writer
BATCH = 100  # rows per claim: several claims per dispatcher, so they interleave
# About 0.7 due ladder steps a case (a role no one holds at the lead partner goes to the pilot's
# lead only): ~340 / ~4,000 notices.
LADDER_CASES = sized(500, 6_000)


@pytest.mark.parametrize(
    ("backend", "workers"),
    [("sqlite", 2), pytest.param("postgres", 4, marks=pytest.mark.postgres)],
)
def test_parallel_dispatchers_deliver_each_notice_exactly_once(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, workers: int
) -> None:
    url = backend_url(request, tmp_path, backend)
    box = fill_outbox(url, tmp_path / "home", NOTICES)
    with Receiver() as rx, (tmp_path / "workers.stderr").open("w") as stderr:
        config = write_config(tmp_path / "apprise.yml", rx.port, box.partners())
        children = [
            python_child(
                ["dispatch", url, str(config), str(tmp_path / "home"), NOW.isoformat(), str(BATCH)],
                stderr,
            )
            for _ in range(workers)
        ]
        try:
            for child in children:
                ready(child, "dispatcher")
            started = time.perf_counter()
            go(*children)
            reports = [finish(child, "dispatcher") for child in children]
            seconds = time.perf_counter() - started
        finally:
            for child in children:
                kill(child)
        hits = rx.received()

    # The receiver: each notice exactly once, at its partner's hook, every answer 200.
    per_token = Counter(h.token for h in hits)
    assert len(hits) == box.size, f"{len(hits)} POSTs for {box.size} notices"
    assert set(per_token) == set(box.path_of)
    assert [t for t, n in per_token.items() if n != 1] == []
    assert all(h.path == box.path_of[h.token] and h.status == 200 for h in hits)
    # The workers: together they sent each row once (how the rows fell to each varies).
    assert sum(r["sent"] for r in reports) == box.size, reports
    assert sum(r["messages"] for r in reports) == box.size, reports
    assert all(r["retrying"] == r["failed"] == r["held"] == 0 for r in reports), reports
    if backend == "sqlite":  # claims queue on the write lock: each dispatcher gets its turns
        assert len([r for r in reports if r["sent"]]) >= 2, reports
    # The outbox: every row sent on its first attempt, one receipt per message.
    engine = box.engine()
    try:
        rows, slips = outbox(engine), receipts(engine)
    finally:
        engine.dispose()
    assert Counter(r.status for r in rows.values()) == {"sent": box.size}
    assert {r.attempts for r in rows.values()} == {1}
    assert len(slips) == box.size and all(s.ok and s.notices == 1 for s in slips)
    assert sorted(r.delivery_id or 0 for r in rows.values()) == sorted(s.id for s in slips)
    assert Counter(s.title.split(":", 1)[0] for s in slips) == Counter(dict.fromkeys(rows, 1))
    shares = sorted(r["sent"] for r in reports)
    note(f"{backend}: {box.size} notices, {workers} dispatchers sent {shares}, {seconds:.1f} s")


# --- monitors and dispatchers together ------------------------------------------------------------

_STEP = re.compile(r"^- step: (\S+)$", re.MULTILINE)


@pytest.mark.parametrize(
    ("backend", "workers"),
    [("sqlite", 2), pytest.param("postgres", 4, marks=pytest.mark.postgres)],
)
def test_parallel_monitors_and_dispatchers_send_each_step_once(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, workers: int
) -> None:
    url = backend_url(request, tmp_path, backend)
    home = tmp_path / "home"
    email_of = ladder_store(url, home, LADDER_CASES)
    hook_of = {cid: f"/to/{cid}" for cid in email_of}  # each contact's own hook
    with Receiver() as rx, (tmp_path / "workers.stderr").open("w") as stderr:
        routes = {email: hook_of[cid] for cid, email in email_of.items()}
        config = write_routes(tmp_path / "apprise.yml", rx.port, routes)
        args = ["cycle", url, str(config), str(home), NOW.isoformat(), str(BATCH)]
        children = [python_child(args, stderr) for _ in range(workers)]
        try:
            for child in children:
                ready(child, "monitor and dispatcher")
            started = time.perf_counter()
            go(*children)
            outputs = [child.communicate(timeout=600)[0] for child in children]
            seconds = time.perf_counter() - started
        finally:
            for child in children:
                kill(child)
        rx.settle()
        hits = rx.received()
    errors = (tmp_path / "workers.stderr").read_text(errors="replace")
    # Every process ended cleanly: no unique violation, deadlock or any other error.
    assert [c.returncode for c in children] == [0] * workers, errors[-3000:]
    assert "Traceback" not in errors, errors[-3000:]
    reports = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    passes, sends = [r["monitor"] for r in reports], [r["dispatch"] for r in reports]
    assert [p["failures"] for p in passes] == [[]] * workers, passes
    assert all(d["errors"] == [] for d in sends), sends

    engine = build_runtime(Settings(home=home, database_url=url)).engine
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    col(Notification.dedupe_key),
                    col(Notification.recipient_id),
                    col(Notification.case_id),
                    col(Notification.rule),
                    col(Notification.status),
                    col(Notification.attempts),
                    col(Notification.payload),
                )
            ).all()
            events = conn.execute(
                select(
                    col(CaseEvent.case_id),
                    col(CaseEvent.kind),
                    col(CaseEvent.subject),
                    col(CaseEvent.after),
                    col(CaseEvent.at),
                ).where(col(CaseEvent.actor) == MONITOR_ACTOR)
            ).all()
            overdue = conn.execute(
                select(col(Milestone.case_id), col(Milestone.key)).where(
                    col(Milestone.overdue_on) == NOW.date()
                )
            ).all()
            expired = conn.execute(
                select(col(Gate.case_id), col(Gate.key)).where(col(Gate.expired_on) == NOW.date())
            ).all()
        slips = receipts(engine)
    finally:
        engine.dispose()

    # The outbox: each (recipient, item, step) once, and the passes together wrote each once.
    steps = Counter(
        (r.recipient_id, r.case_id, r.payload["item_kind"], r.payload["item"])
        + (r.payload["round"], r.rule)
        for r in rows
    )
    assert [k for k, n in steps.items() if n != 1] == []
    assert len({r.dedupe_key for r in rows}) == len(rows) >= LADDER_CASES // 2
    assert sum(p["notifications"] for p in passes) == len(rows), passes
    # The receiver: each notice exactly once, at its recipient's hook, every answer 200.
    got = Counter((h.path, h.title, tuple(_STEP.findall(h.message))) for h in hits)
    owed = Counter(
        (hook_of[r.recipient_id], headline(r.payload), (r.payload["step"],)) for r in rows
    )
    assert len(hits) == len(rows), f"{len(hits)} POSTs for {len(rows)} notices"
    assert all(h.status == 200 for h in hits)
    assert got == owed, (got - owed, owed - got)
    # Every row sent on its first attempt, one receipt per message.
    assert Counter(str(r.status) for r in rows) == {"sent": len(rows)}
    assert {r.attempts for r in rows} == {1}
    assert sum(d["sent"] for d in sends) == sum(d["messages"] for d in sends) == len(rows), sends
    assert len(slips) == len(rows) and all(s.ok and s.notices == 1 for s in slips)
    # The audit trail: each monitor event of this pass once; one `milestone.overdue` per
    # milestone found late and one `gate.expired` per gate that expired, as the passes said.
    ours = [e for e in events if _aware(e.at) == NOW]
    audited = Counter(
        (e.case_id, e.kind, e.subject, json.dumps(e.after, sort_keys=True)) for e in ours
    )
    assert [k for k, n in audited.items() if n != 1] == []
    late = Counter((e.case_id, e.subject) for e in ours if e.kind == "milestone.overdue")
    assert late == Counter(dict.fromkeys(((c, k) for c, k in overdue), 1))
    gone = Counter((e.case_id, e.subject) for e in ours if e.kind == "gate.expired")
    assert gone == Counter(dict.fromkeys(((c, k) for c, k in expired), 1))
    assert sum(p["newly_overdue"] for p in passes) == len(overdue) > 0, passes
    assert sum(p["newly_expired"] for p in passes) == len(expired), passes
    shares = [(p["notifications"], d["sent"]) for p, d in zip(passes, sends, strict=True)]
    kinds = dict(sorted(Counter(e.kind for e in ours).items()))
    note(
        f"{backend}: {LADDER_CASES} cases, {workers} monitor+dispatch processes: "
        f"(written, sent) {shares} of {len(rows)} notices; events {kinds}; {seconds:.1f} s"
    )


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


# --- optimistic locking ------------------------------------------------------------------------


def _open_case(url: str, home: Path) -> str:
    rt = build_runtime(Settings(home=home, database_url=url))
    try:
        migrate.upgrade(rt.engine)
        load_consortium(rt)
        with write_session(rt.engine) as session:
            case = open_case(
                session=session,
                catalog=rt.catalog,
                kind="ip-integration",
                title="Two writers",
                owner_email=ANCHOR_OWNER,
                start=(NOW - timedelta(days=30)).date(),
                now=NOW - timedelta(days=30),
            )
            assert case.version == 1
            return case.key
    finally:
        rt.engine.dispose()


def test_two_writers_with_if_version_lose_no_change(db_url: str, tmp_path: Path) -> None:
    key = _open_case(db_url, tmp_path / "home")
    with (tmp_path / "writers.stderr").open("w") as stderr:
        writers = [
            python_child(["writer", db_url, key, str(ATTEMPTS), name, str(seed)], stderr)
            for seed, name in enumerate(("alice", "bob"))
        ]
        try:
            for writer in writers:
                ready(writer, "writer")
            started = time.perf_counter()
            go(*writers)
            results = [finish(writer, "writer") for writer in writers]
            seconds = time.perf_counter() - started
        finally:
            for writer in writers:
                kill(writer)

    applied: dict[tuple[str, int], int] = {
        (r["name"], int(a)): v for r in results for a, v in r["applied"].items()
    }
    stale = sum(len(r["stale"]) for r in results)
    illegal = sum(len(r["illegal"]) for r in results)
    # Every attempt is accounted for: applied or refused.
    assert len(applied) + stale + illegal == 2 * ATTEMPTS
    # A refusal by the lifecycle rules only ever comes from a stale view: the case had moved
    # on since the writer read it (a current writer's hold/resume is always legal).
    assert [r["current"] for r in results] == [[], []]
    # None lost: the versions the applied changes produced are exactly 2 .. 1 + applied.
    assert sorted(applied.values()) == list(range(2, 2 + len(applied)))

    engine = build_runtime(Settings(home=tmp_path / "home", database_url=db_url)).engine
    try:
        with read_session(engine) as session:
            case = case_by_key(session, key)
            events = list(
                session.exec(
                    select(CaseEvent)
                    .where(CaseEvent.case_id == case.id, col(CaseEvent.kind).like("case.%"))
                    .order_by(col(CaseEvent.id))
                )
            )
    finally:
        engine.dispose()
    assert case.version == 1 + len(applied)
    changes = [e for e in events if e.kind != "case.open"]
    # Exactly one audit event per applied change, none for a refused one.
    assert len(changes) == len(applied)
    logged = Counter(_who(e) for e in changes)
    assert logged == Counter(dict.fromkeys(applied, 1))
    # In the order the versions were taken, holds and resumes alternate from active.
    in_order = [e.kind for e in sorted(changes, key=lambda e: applied[_who(e)])]
    assert in_order == ["case.hold", "case.resume"] * (len(applied) // 2) + ["case.hold"] * (
        len(applied) % 2
    )
    assert case.status is (CaseStatus.ON_HOLD if len(applied) % 2 else CaseStatus.ACTIVE)
    backend = db_url.split(":", 1)[0]
    note(
        f"{backend}: {2 * ATTEMPTS} attempts: {len(applied)} applied, {stale} refused as stale, "
        f"{illegal} refused by the lifecycle rules on a stale view, {seconds:.1f} s"
    )


def _who(event: CaseEvent) -> tuple[str, int]:
    return event.actor.split("@")[0], int(event.comment.split("#")[1])


def test_a_stale_version_is_refused_as_stale_even_when_the_change_no_longer_applies(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'cases.db'}"
    key = _open_case(url, tmp_path / "home")
    engine = build_runtime(Settings(home=tmp_path / "home", database_url=url)).engine
    try:
        kwargs: dict[str, Any] = {"key": key, "reason": "r", "actor": "a@x.example", "now": NOW}
        with write_session(engine) as session:  # someone holds the case: version 2
            change_case(session=session, action="hold", expected_version=1, **kwargs)
        # A second reader, who saw version 1 (active), holds it too.
        with pytest.raises(StaleCase), write_session(engine) as session:
            change_case(session=session, action="hold", expected_version=1, **kwargs)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_dispatcher_that_loses_a_claim_race_goes_on_with_the_next_recipients(
    pg_url: str, tmp_path: Path
) -> None:
    box = fill_outbox(pg_url, tmp_path / "home", 60)  # two notices for each of 30 contacts
    engine = box.engine()
    post = PostOffice(email_url=None, apprise_config=None, local_log=tmp_path / "local.log")
    result: dict[str, DispatchReport] = {}
    try:
        with engine.connect() as conn:
            first = conn.execute(select(func.min(col(Notification.recipient_id)))).scalar_one()
        taken = box.size // 30
        with engine.connect() as rival, engine.connect() as watch:
            claim = rival.begin()  # another dispatcher's claim of the first recipient, uncommitted
            rival.execute(
                update(Notification)
                .where(col(Notification.recipient_id) == first)
                .values(next_attempt_at=NOW + LEASE)
            )
            worker = threading.Thread(
                target=lambda: result.update(report=dispatch(engine, now=NOW, post=post, batch=1))
            )
            worker.start()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # until our UPDATE waits for the rival's locks
                waiting = watch.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE 'UPDATE notifications%'"
                    )
                ).scalar_one()
                watch.rollback()
                if waiting:
                    break
                time.sleep(0.02)
            else:
                claim.rollback()
                worker.join(30)
                pytest.fail("the dispatcher never reached its claim UPDATE")
            claim.commit()
            worker.join(60)
    finally:
        engine.dispose()
    # The rival has the first recipient's rows; ours go on to everybody else's.
    assert result["report"].sent == box.size - taken
