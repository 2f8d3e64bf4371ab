"""The monitor at scale: task runs and wall time of monitor-milestones over 100,000 cases.

Builds a small and a big case store: the consortium, one real case per pilot kind opened
through the use case, then set-based clones of those cases with start dates spread over the
previous two years. Runs the monitor pass without Prefect on a copy of the big store (the
floor), then the `monitor-milestones` flow against a real Prefect server on the small store
and on another copy of the big store, and compares task-run counts and wall times.

    .venv/bin/python -m benchmarks.monitor_scale [--cases 100000] [--small 10] [--db sqlite]

Exits 1 when the flow's task-run count differs between the small and the big store (or a
flow run fails).
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import io
import json
import os
import platform
import pstats
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from enum import StrEnum
from importlib.metadata import version
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.events.worker import EventsWorker
from prefect.exceptions import MissingResult
from prefect.logging.handlers import APILogWorker
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    PREFECT_HOME,
    PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW,
    PREFECT_SERVER_ANALYTICS_ENABLED,
    temporary_settings,
)
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy import Table as SATable
from sqlmodel import col

from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.demo import DATA, SLIPS, load_consortium
from bridgebsr.monitor.sweep import MONITOR_ACTOR, run_monitor
from bridgebsr.office.cases import open_case
from bridgebsr.rules.roles import case_role_holders, led_kinds
from bridgebsr.settings import Settings
from bridgebsr.store import migrate
from bridgebsr.store.db import write_session
from flows import common
from flows.monitor import monitor_milestones
from models import (
    CASE_OWNER,
    OPEN_MILESTONE,
    Case,
    CaseEvent,
    CaseStatus,
    Contact,
    Gate,
    GateStatus,
    KeySequence,
    Milestone,
    MilestoneStatus,
    Notification,
    Partner,
    Source,
    TimeoutOutcome,
)

NOW = datetime(2026, 11, 26, 11, tzinfo=UTC)  # every pass, floor and flow, runs as of this
SEED_START = date(2026, 11, 30)  # a Monday; clones start whole weeks earlier (same weekday)
WEEKS = 104  # clones start up to two years before the seeds
RNG_SEED = 20261126
CASES_PER_CHUNK = 5_000
ON_TRACK = 0.70  # finished everything due up to 1-3 days ago
BEHIND = 0.24  # finished what was due up to 4-45 days ago; the rest stalled mid-plan
WAIVED_NDA = 0.3  # share of finished SME confidentiality agreements waived, not signed
PG_ADMIN_URL = os.environ.get(
    "BRIDGEBSR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BENCHMARKS = Path(__file__).parent
RESULTS = BENCHMARKS / "results"
BIN = Path(sys.executable).parent

err = Console(stderr=True, log_path=False)
out = Console(width=max(Console().width, 112))


@dataclass(frozen=True)
class Pilot:
    """One pilot kind: its share of the portfolio and who owns its seed case."""

    kind: str
    share: float
    title: str
    owner: str
    partner: str | None
    rotate_owners: bool  # clones spread over every case owner of the consortium


PILOTS = (
    Pilot(
        "shared-sme-service",
        0.94,
        "SME support request",
        "henrik.oberg@ostersjo-vita.example",
        None,
        True,
    ),
    Pilot(
        "ip-integration",
        0.03,
        "Transregional IP integration model",
        "karin.astrom@mva.example",
        "MVA",
        False,
    ),
    Pilot(
        "life-science-foundation",
        0.03,
        "Top of Europe Life Science Foundation",
        "katrin.schaefer@bioconvalley.example",
        "BCV",
        False,
    ),
)


# ---------------------------------------------------------------------------------------------
# Case stores


@dataclass
class Store:
    """One case store: a SQLite file or a PostgreSQL schema."""

    name: str
    url: str
    home: Path
    schema: str | None = None


@dataclass
class StoreCounts:
    """What a store holds before any pass."""

    cases: int = 0
    active_cases: int = 0
    milestones: int = 0
    finished_milestones: int = 0
    open_milestones: int = 0
    late_milestones: int = 0
    due_within_7_days: int = 0
    gates: int = 0
    open_gates: int = 0
    gates_past_deadline: int = 0
    case_events: int = 0


@dataclass(frozen=True)
class _Person:
    id: int
    email: str
    role: str
    partner_id: int
    country: str
    leads: str  # the pilot kinds they lead


@dataclass(frozen=True)
class _Item:
    """A seed milestone or gate shifted by whole weeks, with its static columns."""

    static: tuple[Any, ...]  # from key to depends_on, in table column order
    owner_role: str | None
    start: date
    due: date
    dates: tuple[Any, ...]  # baseline_*, planned_*, forecast_* (start, due each), as written
    critical: bool
    on_timeout: str | None
    waivable: bool


@dataclass(frozen=True)
class _Shifted:
    start: date
    target: date
    forecast: date
    milestones: tuple[_Item, ...]
    gates: tuple[_Item, ...]


@dataclass
class _Seed:
    pilot: Pilot
    prefix: str
    row: dict[str, Any]
    owner: _Person
    weeks: list[_Shifted] = field(default_factory=list)


_CASE_COLS = (
    "id key kind template_version title lead_partner_id owner_id country status current_stage "
    "start_date target_date forecast_date baseline_target opened_at closed_at updated_at version"
).split()
_MILESTONE_STATIC = "key seq title stage owner_role duration days strict depends_on".split()
_MILESTONE_COLS = [
    "id",
    "case_id",
    *_MILESTONE_STATIC,
    "owner_id",
    *"baseline_start baseline_due planned_start planned_due forecast_start forecast_due".split(),
    *"critical adhoc round status started_on finished_on overdue_on".split(),
]
_GATE_STATIC = (
    "key seq title stage approver_role required deadline_days days on_timeout rework_stage "
    "depends_on"
).split()
_GATE_COLS = [
    "id",
    "case_id",
    *_GATE_STATIC,
    *"baseline_start baseline_due planned_start planned_due forecast_start forecast_due".split(),
    "critical",
    *"status round opened_on deadline decided_on expired_on".split(),
]
_EVENT_COLS = "id case_id at actor kind subject before after source source_ref comment".split()


def _plain(value: Any) -> Any:
    """A column value as the DB-API driver takes it: enums as values, JSON as text."""
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


class _Writer:
    """Bulk inserts through the raw driver: executemany on SQLite, COPY on PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self.dialect = engine.dialect.name
        self._proxy = engine.raw_connection()
        self._conn = cast(Any, self._proxy.driver_connection)
        self._days: dict[date, str] = {}
        if self.dialect == "sqlite":
            # isolation_level is None (bridgebsr.store.db emits BEGIN itself): one transaction here.
            self._conn.execute("PRAGMA synchronous=OFF")
            self._conn.execute("PRAGMA cache_size=-262144")
            self._conn.execute("BEGIN")

    def day(self, value: date | None) -> Any:
        """A date as the driver writes it (SQLAlchemy's ISO text on SQLite)."""
        if value is None or self.dialect != "sqlite":
            return value
        text_ = self._days.get(value)
        if text_ is None:
            text_ = self._days[value] = value.isoformat()
        return text_

    def stamp(self, value: datetime | None) -> Any:
        """A naive UTC timestamp as SQLAlchemy stores it."""
        if value is None:
            return None
        naive = value.astimezone(UTC).replace(tzinfo=None)
        return naive if self.dialect != "sqlite" else f"{naive:%Y-%m-%d %H:%M:%S.%f}"

    def write(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """Append rows (ids included) to a table; cases and milestones get empty `fields`."""
        if not rows:
            return
        if table in ("cases", "milestones") and "fields" not in columns:
            columns, rows = [*columns, "fields"], [(*row, "{}") for row in rows]
        names = ", ".join(columns)
        if self.dialect == "sqlite":
            marks = ", ".join("?" for _ in columns)
            self._conn.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
            return
        with self._conn.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def finish(self) -> None:
        """Commit; on PostgreSQL move the id sequences past the ids written here."""
        if self.dialect == "sqlite":
            self._conn.execute("COMMIT")
        else:
            with self._conn.cursor() as cur:
                for table in ("cases", "milestones", "gates", "case_events"):
                    cur.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
            self._conn.commit()
        self._proxy.close()


def _next_id(engine: Engine, table: SATable) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()) + 1


def _people(engine: Engine) -> dict[str, _Person]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                col(Contact.id),
                col(Contact.email),
                col(Contact.role),
                col(Contact.partner_id),
                col(Contact.country),
                col(Contact.leads),
            ).order_by(col(Contact.id))
        ).all()
    return {
        email: _Person(cast(int, cid), email, role, pid, country, leads)
        for cid, email, role, pid, country, leads in rows
    }


def _case_owners() -> list[str]:
    """Every contact with the case-owner role in the shipped consortium."""
    with (DATA / "contacts.csv").open(encoding="utf-8") as fh:
        return [row["email"] for row in csv.DictReader(fh) if row["role"] == CASE_OWNER]


def _open_seeds(rt: Runtime, people: dict[str, _Person]) -> dict[str, _Seed]:
    """One real case per pilot kind, opened through the use case, starting on SEED_START."""
    opened = datetime.combine(SEED_START, clock(8), UTC)
    seeds: dict[str, _Seed] = {}
    for pilot in PILOTS:
        with write_session(rt.engine) as session:
            case = open_case(
                session=session,
                catalog=rt.catalog,
                kind=pilot.kind,
                title=f"{pilot.title} (seed)",
                owner_email=pilot.owner,
                partner_code=pilot.partner,
                start=SEED_START,
                now=opened,
                source=Source.IMPORT,
            )
            row = asdict(case)
        prefix = rt.catalog.get(pilot.kind).key_prefix
        seeds[pilot.kind] = _Seed(pilot, prefix, row, people[pilot.owner])
    return seeds


def _seed_items(engine: Engine, seeds: dict[str, _Seed], writer: _Writer) -> None:
    """Each seed's milestones and gates, shifted back by 0..WEEKS whole weeks."""
    m_table, g_table = Milestone.__table__, Gate.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        for seed in seeds.values():
            case_id = seed.row["id"]
            milestones = conn.execute(
                select(m_table).where(m_table.c.case_id == case_id).order_by(m_table.c.seq)
            ).mappings()
            m_rows = [dict(r) for r in milestones]
            gates = conn.execute(
                select(g_table).where(g_table.c.case_id == case_id).order_by(g_table.c.seq)
            ).mappings()
            g_rows = [dict(r) for r in gates]
            for week in range(WEEKS + 1):
                back = timedelta(days=7 * week)
                seed.weeks.append(
                    _Shifted(
                        start=seed.row["start_date"] - back,
                        target=seed.row["target_date"] - back,
                        forecast=seed.row["forecast_date"] - back,
                        milestones=tuple(
                            _item(r, _MILESTONE_STATIC, back, writer, r["owner_role"])
                            for r in m_rows
                        ),
                        gates=tuple(_item(r, _GATE_STATIC, back, writer, None) for r in g_rows),
                    )
                )


def _item(
    row: dict[str, Any], static: Sequence[str], back: timedelta, writer: _Writer, role: str | None
) -> _Item:
    ps, pd = row["planned_start"] - back, row["planned_due"] - back
    fs, fd = row["forecast_start"] - back, row["forecast_due"] - back
    timeout = row.get("on_timeout")
    return _Item(
        static=tuple(_plain(row[c]) for c in static),
        owner_role=role,
        start=ps,
        due=pd,
        dates=(writer.day(ps), writer.day(pd)) * 2 + (writer.day(fs), writer.day(fd)),
        critical=bool(row["critical"]),
        on_timeout=_plain(timeout) if timeout is not None else None,
        waivable=row["key"] == "nda",
    )


class _Cloner:
    """Clones of the seed cases, each a few weeks along its plan as of NOW."""

    def __init__(
        self,
        engine: Engine,
        seeds: dict[str, _Seed],
        people: dict[str, _Person],
        writer: _Writer,
        today: date,
    ) -> None:
        self.seeds = seeds
        self.writer = writer
        self.today = today
        self.yesterday = today - timedelta(days=1)
        self.rng = random.Random(RNG_SEED)
        self.kinds = [p.kind for p in PILOTS]
        self.shares = [p.share for p in PILOTS]
        owners = [people[email] for email in _case_owners()]
        self.owners = owners
        self.partner_codes = _partner_codes(engine)
        self.by_role: dict[str, list[_Person]] = {}
        self.leads: dict[str, list[_Person]] = {}  # by pilot kind
        for person in people.values():  # ordered by id, as open_case picks them
            self.by_role.setdefault(person.role, []).append(person)
            for led in led_kinds(person.leads):
                self.leads.setdefault(led, []).append(person)
        self.role_owner: dict[tuple[str, int, str], int | None] = {}
        self.next_case = _next_id(engine, Case.__table__)  # type: ignore[attr-defined]
        self.next_milestone = _next_id(engine, Milestone.__table__)  # type: ignore[attr-defined]
        self.next_gate = _next_id(engine, Gate.__table__)  # type: ignore[attr-defined]
        self.next_event = _next_id(engine, CaseEvent.__table__)  # type: ignore[attr-defined]
        with engine.connect() as conn:
            rows = conn.execute(
                select(col(KeySequence.prefix), col(KeySequence.year), col(KeySequence.last))
            ).all()
        self.numbers: dict[tuple[str, int], int] = {(p, y): n for p, y, n in rows}

    def _owner_for(self, role: str, case_owner: _Person, lead: int, kind: str) -> int | None:
        """Who owns a role's milestones on a case: as `rules.opening` picks them, by the one
        rule (`roles.case_role_holders`)."""
        if role == CASE_OWNER:
            return case_owner.id
        key = (role, lead, kind)
        if key not in self.role_owner:
            holders = self.by_role.get(role, [])
            chosen = case_role_holders(holders, lead, self.leads.get(kind, []))
            self.role_owner[key] = chosen[0].id if chosen else None
        return self.role_owner[key]

    def clone(self, count: int) -> None:
        """Write `count` cases with their milestones, gates and opening events."""
        for first in range(0, count, CASES_PER_CHUNK):
            self._chunk(min(CASES_PER_CHUNK, count - first))
        self.writer.finish()

    def _chunk(self, count: int) -> None:
        cases: list[tuple[Any, ...]] = []
        milestones: list[tuple[Any, ...]] = []
        gates: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        rng, w, today, yesterday = self.rng, self.writer, self.today, self.yesterday
        for kind in rng.choices(self.kinds, self.shares, k=count):
            seed = self.seeds[kind]
            shifted = seed.weeks[rng.randrange(WEEKS + 1)]
            owner = rng.choice(self.owners) if seed.pilot.rotate_owners else seed.owner
            lead_partner = (
                owner.partner_id if seed.pilot.rotate_owners else seed.row["lead_partner_id"]
            )
            start, target = shifted.start, shifted.target
            draw = rng.random()
            on_track = draw < ON_TRACK
            if on_track:
                progress = today - timedelta(days=rng.randint(1, 3))
            elif draw < ON_TRACK + BEHIND:
                progress = today - timedelta(days=rng.randint(4, 45))
            else:  # stalled somewhere in its plan
                progress = start + timedelta(days=int((target - start).days * rng.random()))
            progress = min(progress, yesterday)
            case_id = self.next_case
            self.next_case += 1
            last_finish: date | None = None
            for m in shifted.milestones:
                started: Any = None
                finished: Any = None
                if m.due <= progress:
                    day = m.due + timedelta(days=SLIPS[rng.randrange(len(SLIPS))])
                    day = max(min(day, yesterday), m.start)
                    waived = m.waivable and rng.random() < WAIVED_NDA
                    status = MilestoneStatus.WAIVED if waived else MilestoneStatus.DONE
                    started, finished = w.day(m.start), w.day(day)
                    last_finish = day if last_finish is None else max(last_finish, day)
                elif m.start <= progress:  # its predecessors are finished
                    status = MilestoneStatus.IN_PROGRESS
                    started = w.day(m.start)
                else:
                    status = MilestoneStatus.PLANNED
                assert m.owner_role is not None
                milestones.append(
                    (
                        self.next_milestone,
                        case_id,
                        *m.static,
                        self._owner_for(m.owner_role, owner, lead_partner, kind),
                        *m.dates,
                        m.critical,
                        False,
                        1,
                        status.value,
                        started,
                        finished,
                        None,
                    )
                )
                self.next_milestone += 1
            rejected: date | None = None
            for g in shifted.gates:
                opened_on: Any = None
                deadline: Any = None
                decided: Any = None
                expired: Any = None
                if g.due <= progress or (on_track and g.start <= progress and g.due < today):
                    # Decided in time (a case on track had its gate decided by the deadline).
                    gate_status = GateStatus.APPROVED
                    opened_on, deadline = w.day(g.start), w.day(g.due)
                    decided = w.day(min(g.start + timedelta(days=2), g.due))
                elif g.start <= progress:
                    gate_status = GateStatus.OPEN
                    opened_on, deadline = w.day(g.start), w.day(g.due)
                    late_by = (today - g.due).days
                    if g.on_timeout != TimeoutOutcome.ESCALATE.value and late_by > 1:
                        # Yesterday's monitor timed this one out; today's times out the
                        # gates whose deadline was yesterday.
                        rejected = g.due + timedelta(days=1)
                        gate_status = GateStatus.REJECTED
                        decided = expired = w.day(rejected)
                else:
                    gate_status = GateStatus.PENDING
                gates.append(
                    (
                        self.next_gate,
                        case_id,
                        *g.static,
                        *g.dates,
                        g.critical,
                        gate_status.value,
                        1,
                        opened_on,
                        deadline,
                        decided,
                        expired,
                    )
                )
                self.next_gate += 1
            closed_at: datetime | None = None
            if rejected is not None:
                status_ = CaseStatus.CANCELLED
                closed_at = datetime.combine(rejected, clock(6), UTC)
            elif target <= progress:
                status_ = CaseStatus.COMPLETED
                closed_at = datetime.combine(last_finish or target, clock(15), UTC)
            else:
                status_ = CaseStatus.ACTIVE
            opened_at = datetime.combine(min(start, today), clock(8), UTC)
            touched = datetime.combine(max(min(progress, yesterday), start), clock(15), UTC)
            updated_at = closed_at or max(opened_at, touched)
            number = self.numbers.get((seed.prefix, start.year), 0) + 1
            self.numbers[(seed.prefix, start.year)] = number
            key = f"{seed.prefix}-{start.year}-{number:06d}"
            title = f"{seed.pilot.title} {number}"
            cases.append(
                (
                    case_id,
                    key,
                    kind,
                    seed.row["template_version"],
                    title,
                    lead_partner,
                    owner.id,
                    owner.country,
                    status_.value,
                    _plain(seed.row["current_stage"]),
                    w.day(start),
                    w.day(target),
                    w.day(shifted.forecast),
                    w.day(target),
                    w.stamp(opened_at),
                    w.stamp(closed_at),
                    w.stamp(updated_at),
                    1,
                )
            )
            after = {
                "key": key,
                "kind": kind,
                "template_version": seed.row["template_version"],
                "title": title,
                "owner": owner.email,
                "partner": self.partner_codes[lead_partner],
                "start": start.isoformat(),
                "target": target.isoformat(),
            }
            events.append(
                (
                    self.next_event,
                    case_id,
                    w.stamp(opened_at),
                    owner.email,
                    "case.open",
                    None,
                    "{}",
                    json.dumps(after),
                    Source.IMPORT.value,
                    None,
                    "",
                )
            )
            self.next_event += 1
        w.write("cases", _CASE_COLS, cases)
        w.write("milestones", _MILESTONE_COLS, milestones)
        w.write("gates", _GATE_COLS, gates)
        w.write("case_events", _EVENT_COLS, events)

    def save_numbers(self, engine: Engine) -> None:
        """Move the key sequences past the clones' numbers, so open_case keeps working."""
        table = KeySequence.__table__  # type: ignore[attr-defined]
        with engine.begin() as conn:
            conn.execute(table.delete())
            conn.execute(
                table.insert(),
                [{"prefix": p, "year": y, "last": n} for (p, y), n in sorted(self.numbers.items())],
            )


def _partner_codes(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        rows = conn.execute(select(col(Partner.id), col(Partner.code))).all()
    return {cast(int, pid): code for pid, code in rows}


def build_store(store: Store, cases: int) -> tuple[StoreCounts, float]:
    """Migrate, load the consortium, open the seeds, clone them to `cases` cases."""
    started = time.perf_counter()
    rt = build_runtime(Settings(home=store.home, database_url=store.url))
    try:
        migrate.upgrade(rt.engine)
        load_consortium(rt)
        people = _people(rt.engine)
        seeds = _open_seeds(rt, people)
        writer = _Writer(rt.engine)
        _seed_items(rt.engine, seeds, writer)
        cloner = _Cloner(rt.engine, seeds, people, writer, NOW.date())
        cloner.clone(max(cases - len(seeds), 0))
        cloner.save_numbers(rt.engine)
        if rt.engine.dialect.name == "postgresql":
            with rt.engine.begin() as conn:  # what autovacuum does shortly after a bulk load
                conn.execute(text("ANALYZE"))
        seconds = time.perf_counter() - started
        counts = count_store(rt.engine, rt.settings.timezone)
    finally:
        if rt.engine.dialect.name == "sqlite":
            with rt.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        rt.engine.dispose()
    return counts, seconds


def count_store(engine: Engine, zone: str) -> StoreCounts:
    """Counts that describe the store before any pass."""
    from bridgebsr.store.case_rows import local_date

    today = local_date(NOW, zone)
    active = select(col(Case.id)).where(col(Case.status) == CaseStatus.ACTIVE)
    open_ms = [s.value for s in OPEN_MILESTONE]
    c = StoreCounts()
    with engine.connect() as conn:

        def n(statement: Any) -> int:
            return int(conn.execute(statement).scalar_one())

        def count(model: Any, *where: Any) -> int:
            return n(select(func.count()).select_from(model).where(*where))

        c.cases = count(Case)
        c.active_cases = count(Case, col(Case.status) == CaseStatus.ACTIVE)
        c.milestones = count(Milestone)
        c.finished_milestones = count(
            Milestone, col(Milestone.status).in_([MilestoneStatus.DONE, MilestoneStatus.WAIVED])
        )
        in_active = col(Milestone.case_id).in_(active)
        is_open = col(Milestone.status).in_(open_ms)
        c.open_milestones = count(Milestone, is_open, in_active)
        c.late_milestones = count(Milestone, is_open, in_active, col(Milestone.planned_due) < today)
        c.due_within_7_days = count(
            Milestone,
            is_open,
            in_active,
            col(Milestone.planned_due) >= today,
            col(Milestone.planned_due) <= today + timedelta(days=7),
        )
        c.gates = count(Gate)
        gate_open = (col(Gate.status) == GateStatus.OPEN, col(Gate.case_id).in_(active))
        c.open_gates = count(Gate, *gate_open)
        c.gates_past_deadline = count(Gate, *gate_open, col(Gate.deadline) < today)
        c.case_events = count(CaseEvent)
    return c


# ---------------------------------------------------------------------------------------------
# What a pass did, read back from the store


@dataclass(frozen=True)
class Effects:
    """Totals a pass changes; a pass's effects are the differences before and after it."""

    outbox_rows: int = 0
    audit_events: int = 0  # case events by the monitor's actor
    milestones_stamped_late: int = 0
    gates_stamped_expired: int = 0
    gates_decided: int = 0


def effects(url: str) -> Effects:
    """The store's totals now."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:

            def count(model: Any, *where: Any) -> int:
                statement = select(func.count()).select_from(model).where(*where)
                return int(conn.execute(statement).scalar_one())

            return Effects(
                outbox_rows=count(Notification),
                audit_events=count(CaseEvent, col(CaseEvent.actor) == MONITOR_ACTOR),
                milestones_stamped_late=count(Milestone, col(Milestone.overdue_on).is_not(None)),
                gates_stamped_expired=count(Gate, col(Gate.expired_on).is_not(None)),
                gates_decided=count(
                    Gate, col(Gate.status).in_([GateStatus.APPROVED, GateStatus.REJECTED])
                ),
            )
    finally:
        engine.dispose()


def _delta(after: Effects, before: Effects) -> dict[str, int]:
    return {k: getattr(after, k) - getattr(before, k) for k in asdict(after)}


# ---------------------------------------------------------------------------------------------
# Where the stores live


class Backend:
    """SQLite files in a temp dir, or fresh schemas on the PostgreSQL server."""

    def __init__(self, kind: str, root: Path) -> None:
        self.kind = kind
        self.root = root
        self.schemas: list[str] = []
        self._tag = uuid.uuid4().hex[:8]

    def new(self, name: str) -> Store:
        """An empty store."""
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        if self.kind == "sqlite":
            return Store(name, f"sqlite:///{home / 'cases.db'}", home)
        schema = f"bench_{self._tag}_{name}"
        admin = create_engine(PG_ADMIN_URL)
        try:
            with admin.begin() as conn:
                conn.execute(text(f"CREATE SCHEMA {schema}"))
        finally:
            admin.dispose()
        self.schemas.append(schema)
        return Store(name, f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}", home, schema)

    def copies(self, built: Store, names: Sequence[str], cases: int) -> list[Store]:
        """Stores holding the same data as `built`: file copies, or identical rebuilds."""
        stores = []
        for name in names:
            if self.kind == "sqlite":
                home = self.root / name
                home.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(built.home / "cases.db", home / "cases.db")
                stores.append(Store(name, f"sqlite:///{home / 'cases.db'}", home))
            else:
                store = self.new(name)
                build_store(store, cases)  # the same random seed: the same rows
                stores.append(store)
        return stores

    def drop(self) -> None:
        """Drop the PostgreSQL schemas made here."""
        if not self.schemas:
            return
        admin = create_engine(PG_ADMIN_URL)
        try:
            with admin.begin() as conn:
                for schema in self.schemas:
                    conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        finally:
            admin.dispose()


# ---------------------------------------------------------------------------------------------
# One pass: the floor (no Prefect) or the flow


@dataclass
class Pass:
    """One monitor pass over one store."""

    label: str
    store: str
    now: str
    seconds: float
    effects: dict[str, int]
    summary: dict[str, Any] | None
    signals: int | None = None
    task_runs: list[str] = field(default_factory=list)
    task_seconds: dict[str, float] = field(default_factory=dict)
    outside_tasks_seconds: float | None = None
    events_drain_seconds: float | None = None
    server_cpu_seconds: float | None = None
    server_busy_after_seconds: float | None = None
    server_dropped_messages: int | None = None
    state: str = "COMPLETED"
    flow_run_id: str | None = None
    note: str = ""


def _summary(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("notifications", "newly_overdue", "newly_expired", "late")
    return {k: summary[k] for k in keys} | {
        "timed_out": len(summary["timed_out"]),
        "failures": len(summary["failures"]),
    }


def floor_pass(store: Store, now: datetime, profile_to: Path | None = None) -> Pass:
    """run_monitor on a fresh engine, as the flow's task calls it, without Prefect."""
    before = effects(store.url)
    rt = build_runtime(Settings(home=store.home, database_url=store.url))
    profiler = cProfile.Profile() if profile_to else None
    try:
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        report = run_monitor(
            rt.engine,
            now=now,
            zone=rt.settings.timezone,
            dry_run=False,
            source=Source.FLOW,
            source_ref="benchmark-floor",
        )
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - started
    finally:
        rt.engine.dispose()
    if profiler and profile_to:
        profiler.dump_stats(str(profile_to))
    return Pass(
        "big: floor (no Prefect)",
        store.name,
        now.isoformat(),
        seconds,
        _delta(effects(store.url), before),
        _summary(report.summary()),
        signals=len(report.signals),
    )


def profile_report(path: Path, top: int = 25) -> str:
    """The top functions of a profile, by cumulative and by own time."""
    buffer = io.StringIO()
    stats = pstats.Stats(str(path), stream=buffer).strip_dirs()
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return buffer.getvalue()


def _interruptible() -> None:
    # A shell that starts us in the background ignores SIGINT; Prefect turns SIGTERM into it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


class PrefectServer:
    """`prefect server start` with its own PREFECT_HOME, as tests/test_flows/conftest.py does."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.log = home / "server.log"
        port = str(_free_port())
        self.api = f"http://127.0.0.1:{port}/api"
        env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_URL": self.api,
        }
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    *(str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1"),
                    *("--port", port, "--no-ui", "--analytics-off"),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_interruptible,
            )

    def wait(self, timeout: float = 180) -> None:
        """Until /api/health answers."""
        deadline = time.monotonic() + timeout
        while not _healthy(self.api):
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Prefect server did not start:\n{tail}")
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def cpu_seconds(self) -> float | None:
        """CPU time used so far by the server's process group (Linux /proc), else None."""
        total, found = 0, False
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == self.process.pid:  # process group: start_new_session
                total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
                found = True
        return total / os.sysconf("SC_CLK_TCK") if found else None

    def settle(self, timeout: float = 180) -> float:
        """Wait until the server uses under a tenth of a core; returns the seconds waited."""
        started = time.perf_counter()
        last = self.cpu_seconds()
        while last is not None and time.perf_counter() - started < timeout:
            time.sleep(1)
            now = self.cpu_seconds()
            if now is None or now - last < 0.1:
                break
            last = now
        return time.perf_counter() - started

    def dropped_messages(self) -> int:
        """Messages the server's in-memory broker dropped so far (a full subscription queue)."""
        with self.log.open(errors="replace") as fh:
            return sum("dropping message" in line for line in fh)

    @contextmanager
    def client_settings(self) -> Iterator[None]:
        """This process talks to the server (and nothing else)."""
        saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME")}
        os.environ.update({"PREFECT_API_URL": self.api, "PREFECT_HOME": str(self.home)})
        try:
            with temporary_settings(
                updates={
                    PREFECT_API_URL: self.api,
                    PREFECT_HOME: str(self.home),
                    PREFECT_SERVER_ANALYTICS_ENABLED: False,
                    PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
                    PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW: "ignore",
                }
            ):
                yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _span(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


def _runs(flow_run_id: UUID) -> tuple[list[str], dict[str, float], float | None]:
    """The flow run's task runs (names without the suffix), their run times, its own."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        flow_run = client.read_flow_run(flow_run_id)
    names = sorted(r.name.rsplit("-", 1)[0] for r in runs)
    seconds = {r.name.rsplit("-", 1)[0]: _span(r.start_time, r.end_time) or 0.0 for r in runs}
    return names, seconds, _span(flow_run.start_time, flow_run.end_time)


def flow_pass(store: Store, now: datetime, server: PrefectServer, label: str) -> Pass:
    """monitor-milestones (sync_gates=False) on one store; the flow finds it via BRIDGEBSR_*."""
    before = effects(store.url)
    cpu_before, dropped_before = server.cpu_seconds(), server.dropped_messages()
    os.environ["BRIDGEBSR_HOME"] = str(store.home)
    os.environ["BRIDGEBSR_DATABASE_URL"] = store.url
    common._RUNTIMES.clear()
    try:
        started = time.perf_counter()
        state = monitor_milestones(now=now, dry_run=False, sync_gates=False, return_state=True)
        seconds = time.perf_counter() - started
        # Events and logs leave through background workers: wait until they are delivered.
        drained = time.perf_counter()
        EventsWorker.drain_all()
        APILogWorker.drain_all()
        drain_seconds = time.perf_counter() - drained
    finally:
        for cached in common._RUNTIMES.values():
            cached.engine.dispose()
        common._RUNTIMES.clear()
    busy = server.settle()
    cpu_after = server.cpu_seconds()
    summary, note = None, ""
    if state.is_completed():
        try:
            result = state.result()
            assert isinstance(result, dict)
            summary = _summary(result)
        except MissingResult as exc:  # the final state came back from the API, without data
            note = f"flow result unavailable: {exc}"
    flow_run_id = state.state_details.flow_run_id
    names: list[str] = []
    task_seconds: dict[str, float] = {}
    run_seconds: float | None = None
    if flow_run_id is not None:
        names, task_seconds, run_seconds = _runs(UUID(str(flow_run_id)))
    return Pass(
        label,
        store.name,
        now.isoformat(),
        seconds,
        _delta(effects(store.url), before),
        summary,
        task_runs=names,
        task_seconds={k: round(v, 3) for k, v in sorted(task_seconds.items())},
        outside_tasks_seconds=(
            run_seconds - sum(task_seconds.values()) if run_seconds is not None else None
        ),
        events_drain_seconds=drain_seconds,
        server_cpu_seconds=(
            cpu_after - cpu_before if cpu_after is not None and cpu_before is not None else None
        ),
        server_busy_after_seconds=busy,
        server_dropped_messages=server.dropped_messages() - dropped_before,
        state=str(state.type.value),
        flow_run_id=str(flow_run_id) if flow_run_id else None,
        note=note,
    )


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Day:
    """The passes as of one `now`: the flow on the small store, the floor and the flow on big."""

    now: datetime
    small: Pass
    floor: Pass
    big: Pass

    def ratio(self) -> float:
        """Flow wall time over floor wall time on the big store."""
        return self.big.seconds / self.floor.seconds if self.floor.seconds else float("inf")

    def same_runs(self) -> bool:
        """The same task runs over 10 cases as over the big store."""
        return self.small.task_runs == self.big.task_runs

    def same_work(self) -> bool:
        """The floor and the flow changed the big store the same way."""
        if self.floor.effects != self.big.effects:
            return False
        return self.big.summary is None or self.floor.summary == self.big.summary

    def as_json(self) -> dict[str, Any]:
        """For results/monitor_scale.json."""
        total = self.big.seconds + (self.big.events_drain_seconds or 0)
        return {
            "now": self.now.isoformat(),
            "small": asdict(self.small),
            "floor": asdict(self.floor),
            "big": asdict(self.big),
            "ratio_flow_to_floor": round(self.ratio(), 3),
            "ratio_flow_with_drain_to_floor": round(total / self.floor.seconds, 3),
            "task_runs_equal": self.same_runs(),
            "floor_and_flow_did_the_same": self.same_work(),
        }


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def _table(day: Day, small: StoreCounts, big: StoreCounts) -> Table:
    table = Table(title=f"monitor-milestones as of {day.now.isoformat()}")
    table.add_column("")
    for p in (day.small, day.floor, day.big):
        table.add_column(p.label, justify="right")
    passes = (day.small, day.floor, day.big)

    def row(label: str, *values: Any) -> None:
        table.add_row(label, *(_fmt(v) for v in values))

    row("cases", small.cases, big.cases, big.cases)
    row("active cases", small.active_cases, big.active_cases, big.active_cases)
    row("milestones", small.milestones, big.milestones, big.milestones)
    row("gates", small.gates, big.gates, big.gates)
    for key, label in (
        ("outbox_rows", "outbox rows written"),
        ("milestones_stamped_late", "milestones newly late"),
        ("gates_stamped_expired", "gates newly expired"),
        ("gates_decided", "gates timed out (decided)"),
        ("audit_events", "audit events written"),
    ):
        row(label, *(p.effects[key] for p in passes))
    row("late items", *((p.summary or {}).get("late") for p in passes))
    row("signals (grouped per case into ≤1,000 events)", None, day.floor.signals, None)
    row("task runs", len(day.small.task_runs), None, len(day.big.task_runs))
    for name in sorted(set(day.small.task_seconds) | set(day.big.task_seconds)):
        row(f"  {name}, s", day.small.task_seconds.get(name), None, day.big.task_seconds.get(name))
    row(
        "  flow run outside tasks, s",
        day.small.outside_tasks_seconds,
        None,
        day.big.outside_tasks_seconds,
    )
    row("wall time, s", *(p.seconds for p in passes))
    row(
        "+ events/logs drain, s", day.small.events_drain_seconds, None, day.big.events_drain_seconds
    )
    row("Prefect server CPU, s", day.small.server_cpu_seconds, None, day.big.server_cpu_seconds)
    row(
        "server busy after drain, s",
        day.small.server_busy_after_seconds,
        None,
        day.big.server_busy_after_seconds,
    )
    row(
        "server dropped messages",
        day.small.server_dropped_messages,
        None,
        day.big.server_dropped_messages,
    )
    return table


def _report(day: Day, small: StoreCounts, big: StoreCounts) -> None:
    out.print(_table(day, small, big))
    total = day.big.seconds + (day.big.events_drain_seconds or 0)
    out.print(
        f"flow / floor on the big store: {day.big.seconds:.2f} s / {day.floor.seconds:.2f} s "
        f"= {day.ratio():.2f}x ({total / day.floor.seconds:.2f}x until events and logs are "
        "delivered)"
    )
    out.print(f"task runs: small {day.small.task_runs} / big {day.big.task_runs}")
    for p in (day.small, day.big):
        if p.note:
            out.print(f"[yellow]{p.label}: {p.note}[/yellow]")
    if not day.same_work():
        out.print(
            "[yellow]warning: the floor and the flow did not do the same work: "
            f"{day.floor.effects} {day.floor.summary} vs {day.big.effects} {day.big.summary}"
            "[/yellow]"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Build, run the floor and the flows, print and save the figures."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.monitor_scale")
    parser.add_argument("--cases", type=int, default=100_000, help="cases in the big store")
    parser.add_argument("--small", type=int, default=10, help="cases in the small store")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--next-day",
        action="store_true",
        help="then run floor and flows again as of the next day (the daily steady state)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile a floor pass (cProfile) on a third copy of the big store",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (SQLite files)")
    parser.add_argument("--output", type=Path, default=RESULTS / "monitor_scale.json")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="bridgebsr-bench-"))
    backend = Backend(args.db, root)
    results: dict[str, Any] = {
        "db": args.db,
        "cases": args.cases,
        "small": args.small,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "prefect": version("prefect"),
            "sqlalchemy": version("sqlalchemy"),
            "load_at_start": _load(),
        },
    }
    server = PrefectServer(root / "prefect-home")  # starts while the stores are built
    saved_env = {k: os.environ.get(k) for k in ("BRIDGEBSR_HOME", "BRIDGEBSR_DATABASE_URL")}
    try:
        err.log(f"building the small store ({args.small} cases, {args.db}) in {root}")
        small_store = backend.new("small")
        small, small_build = build_store(small_store, args.small)
        err.log(f"building the big store ({args.cases:,} cases)")
        big_store = backend.new("big_floor")
        big, big_build = build_store(big_store, args.cases)
        err.log(
            f"built {big.cases:,} cases, {big.milestones:,} milestones, {big.gates:,} gates "
            f"in {big_build:.1f} s"
        )
        names = ["big_flow", *(["big_profile"] if args.profile else [])]
        copies = backend.copies(big_store, names, args.cases)
        flow_store = copies[0]
        results["build"] = {
            "small": asdict(small) | {"seconds": round(small_build, 2)},
            "big": asdict(big) | {"seconds": round(big_build, 2)},
        }

        days: list[Day] = []
        server.wait()
        server.settle()
        for now in [NOW, *([NOW + timedelta(days=1)] if args.next_day else [])]:
            err.log(f"as of {now.isoformat()}: floor, run_monitor on the big store")
            floor = floor_pass(big_store, now)
            err.log(f"floor took {floor.seconds:.2f} s: {floor.effects}")
            with server.client_settings():
                err.log(f"flow on the small store (Prefect server at {server.api})")
                small_flow = flow_pass(small_store, now, server, "small: flow")
                err.log(f"flow on the big store ({small_flow.seconds:.2f} s on the small one)")
                big_flow = flow_pass(flow_store, now, server, "big: flow")
            err.log(f"big flow took {big_flow.seconds:.2f} s")
            days.append(Day(now, small_flow, floor, big_flow))

        profile_text = None
        if args.profile:
            path = root / "floor.prof"
            err.log("profiling a floor pass on a third copy")
            profiled = floor_pass(copies[1], NOW, profile_to=path)
            profile_text = profile_report(path)
            results["profile"] = {"seconds": round(profiled.seconds, 2), "top": profile_text}

        results["machine"]["load_at_end"] = _load()
        results["days"] = [day.as_json() for day in days]
        for day in days:
            _report(day, small, big)
        out.print(
            f"build: big store {big_build:.1f} s, small store {small_build:.1f} s "
            f"({args.db}; {os.cpu_count()} CPUs, load average "
            f"{results['machine']['load_at_start']} -> {results['machine']['load_at_end']})"
        )
        if profile_text:
            sys.stdout.write(profile_text)
            sys.stdout.flush()
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
        out.print(f"written {args.output}")
        failed = [p.label for d in days for p in (d.small, d.big) if p.state != "COMPLETED"]
        if failed:
            out.print(f"[red]flow runs that did not complete: {failed}[/red]")
            return 1
        if not all(day.same_runs() for day in days):
            out.print("[red]the task-run count grows with the portfolio[/red]")
            return 1
        return 0
    finally:
        server.stop()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        backend.drop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            err.log(f"kept {root}")


if __name__ == "__main__":
    sys.exit(main())
