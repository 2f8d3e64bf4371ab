"""Crashes: dispatchers and the monitor killed with SIGKILL mid-work.

- `bridgebsr notifications dispatch` works through an outbox (quick 300 notices, soak 2,000)
  to a webhook receiver that takes a few ms per POST, and is SIGKILLed at random points
  (quick 5 times, soak 20); each restart runs with `--as-of` moved past the claim lease, so
  rows claimed but not recorded are due again. This runs with one message in flight
  (`--concurrency 1`) and, under `make soak` only, with eight (the same per-kill checks;
  eight threads recording at once, without kills, are in test_concurrency_dispatch.py,
  which every run has). At the end every notice has been received at least once and every
  row is `sent` with one receipt; every duplicate is explained by a kill (a POST of the killed
  pass whose row it had not recorded yet, and that the store had marked
  `sending` before the POST); no kill leaves more such POSTs, nor more newly marked rows,
  than messages in flight; and the store counts every duplicate (each row's `resent` is at
  least its extra POSTs; all of them together at most the rows the kills left marked). With
  one in flight, duplicates are no more than kills; with eight, no more than eight per kill.
- The monitor (run_monitor over a few thousand cases built by benchmarks.monitor_scale) is
  SIGKILLed mid-pass (quick twice, soak 5 times over 20,000 cases): the pass is one
  transaction, so a killed one leaves no outbox row, and the next pass leaves the store
  exactly as a reference store whose pass was never killed: every table the same, the same
  outbox rows (dedupe keys unique, no step twice), audit events and stamps.
"""

import json
import random
import shutil
import sqlite3
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import SQLModel, col

from bridgebsr.monitor.sweep import run_monitor
from bridgebsr.store.db import make_engine
from models import Notification
from notifications.outbox import LEASE
from tests.reliability._outbox import (
    NOW,
    SOAK,
    ZONE,
    Box,
    Hit,
    OutboxRow,
    Receipt,
    Receiver,
    cli,
    fill_outbox,
    finish,
    kill,
    note,
    outbox,
    outputs,
    python_child,
    ready,
    receipts,
    sized,
    wait,
    write_config,
)

pytestmark = pytest.mark.slow

NOTICES = sized(300, 2_000)
KILLS = sized(5, 20)
POST_DELAY = 0.004  # seconds the receiver takes per POST
DELIVERING = 0.75  # share of kills aimed at delivery (the others at start-up and claim)
BATCH = 500  # dispatch's default claim size, which the CLI uses
MONITOR_CASES = sized(6_000, 20_000)
MONITOR_KILLS = sized(2, 5)


@dataclass
class Crashes:
    """What the killed and restarted dispatchers did, as the receiver and the store saw it."""

    box: Box
    concurrency: int
    kills: int = 0
    passes: list[dict[str, Any]] = field(default_factory=list)
    owed: list[int] = field(default_factory=list)  # per kill: POSTs whose row it left unsent
    marked: list[int] = field(default_factory=list)  # per kill: rows marked `sending` after it
    fresh: list[int] = field(default_factory=list)  # ... of them, not marked before it
    unmarked: list[str] = field(default_factory=list)  # POSTed, left unsent and not marked
    hits: list[Hit] = field(default_factory=list)
    rows: dict[str, OutboxRow] = field(default_factory=dict)
    slips: list[Receipt] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def tally(self) -> Counter[str]:
        return Counter(h.token for h in self.hits)

    @property
    def extra(self) -> int:
        """POSTs beyond the first of each notice."""
        return sum(n - 1 for n in self.tally.values())

    @property
    def duplicated(self) -> int:
        """Notices received more than once."""
        return sum(1 for n in self.tally.values() if n > 1)

    @property
    def counted(self) -> int:
        """Possible duplicates as the store counts them (`resent` over every row)."""
        return sum(r.resent for r in self.rows.values())


def _unsent(engine: Engine) -> set[str]:
    return {t for t, r in outbox(engine).items() if r.status != "sent"}


def _leased(engine: Engine, now: datetime) -> int:
    """Rows the pass run as of `now` claimed and left unsent (leased until now + LEASE)."""
    until = now + LEASE
    return sum(
        1
        for r in outbox(engine).values()
        if r.status != "sent"
        and r.next_attempt_at is not None
        and r.next_attempt_at.replace(tzinfo=UTC) == until
    )


def _marked(engine: Engine) -> set[str]:
    """Rows marked `sending`: their message went (or was about to) and was not recorded."""
    return {t for t, r in outbox(engine).items() if r.sending}


def _crash(tmp_path_factory: pytest.TempPathFactory, concurrency: int) -> Crashes:
    """Dispatch passes (`concurrency` messages in flight) killed at random points until KILLS
    kills landed, then one pass to the end; the receiver's and the store's account of it."""
    tmp = tmp_path_factory.mktemp(f"crashes-{concurrency}")
    url = f"sqlite:///{tmp / 'cases.db'}"
    home = tmp / "home"
    box = fill_outbox(url, home, NOTICES)
    run = Crashes(box, concurrency)
    rng = random.Random(20261126 + concurrency)
    flags = ["--concurrency", str(concurrency), "--json"]
    was_marked: set[str] = set()
    engine = make_engine(url)
    now = NOW
    started = time.perf_counter()
    try:
        with Receiver() as rx:
            rx.delay = POST_DELAY
            config = write_config(tmp / "apprise.yml", rx.port, box.partners())
            for n in range(1, 4 * KILLS + 1):
                if run.kills == KILLS:
                    break
                out = tmp / f"pass{n}"
                before = rx.count()
                args = ["notifications", "dispatch", "--as-of", now.isoformat(), *flags]
                process = cli(args, home=home, url=url, config=config, out=out)
                # A random point: in start-up, claim or planning (up to the first POST), or
                # after a random number of this pass's deliveries, short of what is left.
                remaining = len(_unsent(engine))
                if n == 1 or rng.random() < DELIVERING:
                    aim = "delivery"
                    target = before + rng.randint(1, max(1, min(BATCH * 6 // 5, remaining - 20)))
                    deadline = time.monotonic() + 120
                else:
                    aim, target = "start", before + 1
                    deadline = time.monotonic() + rng.uniform(0.2, 2.5)
                try:
                    while (
                        rx.count() < target
                        and process.poll() is None
                        and time.monotonic() < deadline
                    ):
                        time.sleep(0.002)
                finally:
                    killed = kill(process)
                rx.settle()  # POSTs the killed pass had sent in full still count
                posted = {h.token for h in rx.received(since=before)}
                entry: dict[str, Any] = {
                    "pass": n,
                    "aim": aim,
                    "left": remaining,
                    "killed": killed,
                    "posts": len(posted),
                }
                if killed:
                    run.kills += 1
                    owed, marked = posted & _unsent(engine), _marked(engine)
                    run.owed.append(len(owed))
                    run.marked.append(len(marked))
                    run.fresh.append(len(marked - was_marked))
                    run.unmarked += sorted(owed - marked)
                    was_marked = marked
                    entry |= {
                        "owed": run.owed[-1],
                        "marked": run.marked[-1],
                        "leased": _leased(engine, now),
                    }
                else:
                    stdout, stderr = outputs(out)
                    assert process.returncode == 0, (stdout, stderr)
                    entry["sent"] = json.loads(stdout)["sent"]
                run.passes.append(entry)
                now += LEASE + timedelta(minutes=1)  # the killed pass's claim has lapsed
            # One pass to the end, never killed.
            out = tmp / "pass-final"
            args = ["notifications", "dispatch", "--as-of", now.isoformat(), *flags]
            process = cli(args, home=home, url=url, config=config, out=out)
            try:
                process.wait(600)
            finally:
                kill(process)
            stdout, stderr = outputs(out)
            assert process.returncode == 0, (stdout, stderr)
            summary = json.loads(stdout)
            counts = {k: summary[k] for k in ("sent", "held", "retrying", "failed", "resent")}
            run.passes.append({"pass": "final", "killed": False, **counts})
            run.hits = rx.received()
        run.rows, run.slips = outbox(engine), receipts(engine)
    finally:
        engine.dispose()
    run.seconds = time.perf_counter() - started
    note(
        f"dispatch ({concurrency} in flight) killed {run.kills} times over {box.size} notices "
        f"in {run.seconds:.1f} s: {run.duplicated} notices received twice or more, "
        f"{run.extra} extra POSTs (per kill {run.owed}), {run.counted} counted by the store "
        f"(marked per kill {run.marked}); passes {run.passes}"
    )
    return run


@pytest.fixture(scope="module")
def one_in_flight(tmp_path_factory: pytest.TempPathFactory) -> Crashes:
    return _crash(tmp_path_factory, 1)


@pytest.fixture(scope="module")
def eight_in_flight(tmp_path_factory: pytest.TempPathFactory) -> Crashes:
    return _crash(tmp_path_factory, 8)


# The second dispatch crash run (about a third of this module's time) is left to `make soak`.
soak_only = pytest.mark.skipif(not SOAK, reason="eight in flight runs under BRIDGEBSR_SOAK=1")


@pytest.mark.parametrize("run", ["one_in_flight", pytest.param("eight_in_flight", marks=soak_only)])
def test_killed_dispatchers_lose_no_notice_and_every_duplicate_is_a_kills(
    run: str, request: pytest.FixtureRequest
) -> None:
    crashes: Crashes = request.getfixturevalue(run)
    box = crashes.box
    assert crashes.kills == KILLS, crashes.passes
    # Every notice reached its partner's hook at least once.
    assert set(crashes.tally) == set(box.path_of)
    assert all(h.path == box.path_of[h.token] and h.status == 200 for h in crashes.hits)
    # Every row is sent, on the attempt that was recorded, with one receipt each.
    assert Counter(r.status for r in crashes.rows.values()) == {"sent": box.size}
    assert {r.attempts for r in crashes.rows.values()} == {1}
    assert len(crashes.slips) == box.size and all(s.ok for s in crashes.slips)
    assert sorted(r.delivery_id or 0 for r in crashes.rows.values()) == sorted(
        s.id for s in crashes.slips
    )
    final = crashes.passes[-1]
    assert final["retrying"] == final["failed"] == final["held"] == 0, final
    # Each duplicate is a POST a killed pass made before recording it: no other duplicates.
    assert crashes.extra == sum(crashes.owed)
    # ... of a row the store had marked `sending` before the POST; a kill leaves no more
    # delivered-but-unrecorded messages, nor newly marked rows, than messages in flight; at
    # most one more copy per kill.
    assert crashes.unmarked == []
    assert max(crashes.owed) <= crashes.concurrency, crashes.owed
    assert max(crashes.fresh) <= crashes.concurrency, crashes.fresh
    assert max(crashes.tally.values()) <= 1 + crashes.kills
    # The store counts every duplicate: each notice's extra POSTs, at most what the kills left
    # marked; the receipt of its recorded send says so; no row is left marked.
    assert all(crashes.rows[t].resent >= n - 1 for t, n in crashes.tally.items())
    assert crashes.extra <= crashes.counted <= sum(crashes.marked)
    assert {r.delivery_id for r in crashes.rows.values() if r.resent} == {
        s.id for s in crashes.slips if s.resent
    }
    assert not any(r.sending for r in crashes.rows.values())


def test_duplicates_are_no_more_than_the_kills(one_in_flight: Crashes) -> None:
    """With one message in flight, a kill can leave at most one delivered but unrecorded."""
    crashes = one_in_flight
    assert crashes.extra <= crashes.counted <= crashes.kills, (crashes.extra, crashes.owed)


@soak_only
def test_with_eight_in_flight_a_kill_duplicates_at_most_eight_and_the_store_counts_them(
    eight_in_flight: Crashes,
) -> None:
    crashes = eight_in_flight
    assert crashes.extra <= crashes.counted <= 8 * crashes.kills, (crashes.extra, crashes.owed)
    assert all(owed <= 8 for owed in crashes.owed), crashes.owed


# --- the monitor ---------------------------------------------------------------------------------


def _dump(path: Path) -> dict[str, Counter[tuple[Any, ...]]]:
    """Every table's rows (without their surrogate ids) as a multiset, read raw for speed."""
    with closing(sqlite3.connect(path)) as db:
        dump = {}
        for table in SQLModel.metadata.sorted_tables:
            columns = [c.name for c in table.columns if c.name != "id"]
            listed = ", ".join(f'"{c}"' for c in columns)
            dump[table.name] = Counter(db.execute(f'SELECT {listed} FROM "{table.name}"'))
        return dump


def _outbox_size(url: str) -> tuple[int, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return (
                int(conn.execute(select(func.count()).select_from(Notification)).scalar_one()),
                int(
                    conn.execute(
                        select(func.count(func.distinct(col(Notification.dedupe_key))))
                    ).scalar_one()
                ),
            )
    finally:
        engine.dispose()


def _restore(base: Path, victim: Path) -> None:
    for extra in ("-wal", "-shm"):
        Path(f"{victim}{extra}").unlink(missing_ok=True)
    shutil.copy(base, victim)


def test_a_monitor_killed_mid_pass_leaves_the_next_pass_the_same_work(tmp_path: Path) -> None:
    from benchmarks.monitor_scale import NOW as MONITOR_NOW
    from benchmarks.monitor_scale import Store, build_store

    base, reference, victim = (tmp_path / f"{n}.db" for n in ("base", "reference", "victim"))
    build_store(Store("base", f"sqlite:///{base}", tmp_path / "home"), MONITOR_CASES)
    shutil.copy(base, reference)
    shutil.copy(base, victim)
    ref_url, url = f"sqlite:///{reference}", f"sqlite:///{victim}"

    engine = make_engine(ref_url)
    try:
        started = time.perf_counter()
        report = run_monitor(engine, now=MONITOR_NOW, zone=ZONE)
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    expected = _dump(reference)
    assert report.notifications > 1000 and _outbox_size(ref_url) == (report.notifications,) * 2

    rng = random.Random(7)
    kills, finished, delays = 0, 0, []
    with (tmp_path / "monitor.stderr").open("w") as stderr:
        while kills < MONITOR_KILLS and finished < 4 * MONITOR_KILLS:
            process = python_child(["monitor", url, MONITOR_NOW.isoformat()], stderr)
            try:
                ready(process, "monitor")
                delay = rng.uniform(0.05, 0.9) * seconds
                wait(process, delay)
            finally:
                killed = kill(process)
            left = _outbox_size(url)[0]
            # The pass is one transaction: a kill leaves all of its outbox or none.
            assert left in {0, report.notifications}, left
            if killed and not left:
                kills += 1
                delays.append(round(delay, 2))
            else:  # it finished (or committed) first: start again from the untouched store
                finished += 1
                _restore(base, victim)
        assert kills == MONITOR_KILLS, f"every pass finished before its kill ({finished})"

        process = python_child(["monitor", url, MONITOR_NOW.isoformat()], stderr)
        try:
            ready(process, "monitor")
            done = finish(process, "monitor")
        finally:
            kill(process)
    assert done["notifications"] == report.notifications
    count, distinct = _outbox_size(url)
    assert count == distinct == report.notifications  # no ladder step twice
    after = _dump(victim)
    differ = {  # per table: rows only after the killed-then-rerun pass, rows only in the reference
        t: (sum((c - expected[t]).values()), sum((expected[t] - c).values()))
        for t, c in after.items()
        if c != expected[t]
    }
    assert differ == {}
    note(
        f"monitor over {MONITOR_CASES} cases ({seconds:.2f} s a pass, "
        f"{report.notifications} notices) killed {kills} times after {delays} s; "
        f"{finished} passes finished before their kill; the next pass matched the reference"
    )
