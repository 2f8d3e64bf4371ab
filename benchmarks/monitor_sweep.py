"""The monitor sweep over a large portfolio against one hand-written INSERT ... SELECT.

    python -m benchmarks.monitor_sweep [--cases 100000] [--db sqlite postgresql] [--json OUT]

The store comes from the generator of `benchmarks.monitor_scale` (about 11 milestones per
case, a two-year backlog never monitored before), built in a child process and copied: one
copy for ours, one for the floor. Every sweep runs as of `monitor_scale.NOW`.

- ours: `bridgebsr.monitor.sweep.run_monitor` (no Prefect), in a child process of its own so that
  its peak RSS is the sweep's. It decides which reminders, overdue notices and escalation
  steps are due, writes them to the outbox once per recipient, and also stamps milestones
  late and gates expired with their audit events, times out gates and counts the portfolio.
  Then a second sweep at the same date, in a fresh child, which must write nothing.
- floor: one `INSERT ... SELECT ... ON CONFLICT (dedupe_key) DO NOTHING` per backend that
  writes the same outbox rows (see `FLOOR_SQL`), run twice like ours. It reads five small
  reference tables made before the clock starts (temporary tables on the floor's own
  connection), because working days need public holidays SQL does not know:
  `floor_ladder` (each template's ladder, one row per step and role told, plus the `expired`
  notice of a gate past its deadline), `floor_looks` (what a gate's notices say to look at:
  its template's evidence), `floor_people` (each contact's working calendar and
  local date), and `floor_days` / `floor_workdays` (per calendar, every day's count of
  working days, and the working day of each count).

What the floor computes, rule by rule as ours does:
- items: open milestones (planned, in progress, blocked) and open gates with a deadline, of
  active cases, due by the same horizon as ours (the earliest reminder offset in calendar
  days plus a fortnight); past the deadline only gates whose timeout outcome is `escalate`;
- recipients of a step: `owner` is a milestone's owner (else the case owner), or a gate's
  approvers by role who have not voted in the current round; `case-owner` is the case owner;
  any other role is its holders at the case's lead partner, else the contacts whose `leads`
  name the case's pilot kind (never every holder of the role);
- a late gate gets one urgent `expired` notice on today's date to its approvers and the
  roles of the urgent steps; otherwise a step falls on its due date moved by its offset in
  the recipient's working days (rolled forward to a working day), it is reached when that is
  on or before the recipient's local date, and each recipient gets only the latest step
  reached (largest offset);
- rows: the same dedupe key, columns and JSON payload as ours.

What ours does that the floor does not: it prunes a row's steps first with the item's own
calendar (a step more than a fortnight away there is skipped), which changes nothing unless
two calendars differ by more than two weeks of holidays; and it first decides the gates that
time out to approve or reject, through the use case, which may close their case (a rejected
SME acceptance cancels the request), so it writes no reminder for that case where the floor
still does. The run compares every outbox row of ours and the floor (all the columns the
monitor writes, the payload as JSON) and fails on any difference outside the cases ours
decided a gate in; the first row's name gives how many rows those account for.

Targets: the first sweep at most 2x the floor's, a second sweep at the same date (nothing new
to write) at most 1x the floor's second run (the same query finding every row already
there), and the peak RSS of the sweep's process under 300 MB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Date,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    func,
    insert,
    select,
    text,
)
from sqlmodel import col

from benchmarks import scratch_pg
from benchmarks.common import (
    BACKENDS,
    Result,
    backends,
    in_child,
    peak_rss_mb,
    result,
    within_target,
    write_json,
)
from bridgebsr.bootstrap import build_runtime
from bridgebsr.rules.calendars import WorkCalendar, calendar_for, subdivision_of
from bridgebsr.settings import Settings
from bridgebsr.store import case_rows as case_store
from models import (
    CASE_OWNER,
    NODE_OWNER,
    OPEN_MILESTONE,
    Case,
    CaseEvent,
    CaseStatus,
    Contact,
    Gate,
    GateStatus,
    Milestone,
    Notification,
    Partner,
    Template,
)

NAME = "monitor-sweep"
FIRST_TARGET = 2.0  # ours at most twice the floor
SECOND_TARGET = 1.0  # a sweep with nothing new to write at most the floor's
RSS_BUDGET_MB = 300.0
EXPIRED_STEP = "expired"  # bridgebsr.rules.ladder.EXPIRED_RULE

# ---------------------------------------------------------------------------------------------
# The floor

_REFERENCE = MetaData()
FLOOR_LADDER = Table(
    "floor_ladder",
    _REFERENCE,
    Column("pilot", String(60), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("expired", Integer, primary_key=True),  # 1: the notice of a gate past its deadline
    Column("pos", Integer, primary_key=True),  # the step's place in the ladder
    Column("role", String(60), primary_key=True),
    Column("step", String(60), nullable=False),
    Column("shift", Integer, nullable=False),  # working days after the due date
    Column("urgent", Boolean, nullable=False),
    prefixes=["TEMPORARY"],
    sqlite_with_rowid=False,
)
FLOOR_LOOKS = Table(  # what a gate's notices say to look at (its template's evidence)
    "floor_looks",
    _REFERENCE,
    Column("pilot", String(60), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("gate", String(60), primary_key=True),
    Column("look", Text, nullable=False),
    prefixes=["TEMPORARY"],
    sqlite_with_rowid=False,
)
FLOOR_PEOPLE = Table(
    "floor_people",
    _REFERENCE,
    Column("id", Integer, primary_key=True),
    Column("cal", String(20), nullable=False),
    Column("today", Date, nullable=False),
    prefixes=["TEMPORARY"],
    sqlite_with_rowid=False,
)
FLOOR_DAYS = Table(
    "floor_days",
    _REFERENCE,
    Column("cal", String(20), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("n_before", Integer, nullable=False),  # working days before `day` in the window
    Column("n_incl", Integer, nullable=False),  # ... up to and including `day`
    prefixes=["TEMPORARY"],
    sqlite_with_rowid=False,
)
FLOOR_WORKDAYS = Table(
    "floor_workdays",
    _REFERENCE,
    Column("cal", String(20), primary_key=True),
    Column("n", Integer, primary_key=True),
    Column("day", Date, nullable=False),
    prefixes=["TEMPORARY"],
    sqlite_with_rowid=False,
)

_OPEN = ", ".join(f"'{s.value}'" for s in sorted(OPEN_MILESTONE))
# Working-day arithmetic on the counts: with n(d) the working days up to and including d, the
# day `k` working days after `due` (k > 0) is the working day w with n(w) = n(due) + k; for
# k <= 0 it is the one with n(w) = n(due - 1 day) + k + 1 (for k = 0: `due` rolled forward).
FLOOR_SQL = """
INSERT INTO notifications ({columns})
WITH items AS MATERIALIZED (
    SELECT 'milestone' AS kind, m.id AS item_id, m.planned_due AS due, 1 AS round,
           COALESCE(m.owner_id, c.owner_id) AS node_owner, NULL AS approver_role, 0 AS expired,
           c.id AS case_id, c.kind AS pilot, c.template_version AS version,
           c.owner_id AS case_owner, c.lead_partner_id AS lead
    FROM milestones m JOIN cases c ON c.id = m.case_id
    WHERE c.status = 'active' AND m.status IN ({open_milestone}) AND m.planned_due <= :horizon
    UNION ALL
    SELECT 'gate', g.id, g.deadline, g.round, NULL, g.approver_role,
           CASE WHEN g.deadline < :today THEN 1 ELSE 0 END,
           c.id, c.kind, c.template_version, c.owner_id, c.lead_partner_id
    FROM gates g JOIN cases c ON c.id = g.case_id
    WHERE c.status = 'active' AND g.status = 'open' AND g.deadline IS NOT NULL
      AND g.deadline <= :horizon AND (g.deadline >= :today OR g.on_timeout = 'escalate')
),
steps AS MATERIALIZED (
    SELECT i.kind, i.item_id, i.due, i.round, i.node_owner, i.approver_role, i.expired,
           i.case_id, i.case_owner, i.lead, i.pilot, l.pos, l.role, l.step, l.shift, l.urgent
    FROM items i
    JOIN floor_ladder l ON l.pilot = i.pilot AND l.version = i.version AND l.expired = i.expired
),
holders AS MATERIALIZED (
    SELECT r.role, pa.id AS lead, k.pilot, p.id AS person
    FROM (SELECT DISTINCT role FROM contacts) r
    CROSS JOIN partners pa
    CROSS JOIN (SELECT DISTINCT pilot FROM floor_ladder) k
    JOIN contacts p ON (p.role = r.role AND p.partner_id = pa.id)
       OR (NOT EXISTS (SELECT 1 FROM contacts q WHERE q.role = r.role AND q.partner_id = pa.id)
           AND ',' || p.leads || ',' LIKE '%,' || k.pilot || ',%')
),
told AS (
    SELECT s.*, CASE s.role WHEN '{node_owner}' THEN s.node_owner
                            WHEN '{case_owner}' THEN s.case_owner ELSE h.person END AS person
    FROM steps s
    LEFT JOIN holders h ON s.role NOT IN ('{node_owner}', '{case_owner}')
                       AND h.role = s.role AND h.lead = s.lead AND h.pilot = s.pilot
    WHERE s.kind = 'milestone' OR s.role <> '{node_owner}'
    UNION ALL
    SELECT s.*, p.id FROM steps s JOIN contacts p ON p.role = s.approver_role
    WHERE s.kind = 'gate' AND s.role = '{node_owner}'
      AND NOT EXISTS (SELECT 1 FROM gate_decisions d
                      WHERE d.gate_id = s.item_id AND d.round = s.round AND d.approver_id = p.id)
),
reached AS (
    SELECT t.kind, t.item_id, t.due, t.round, t.case_id, t.person, t.step, t.shift, t.urgent,
           CASE WHEN t.expired = 1 THEN :today ELSE w.day END AS fire_on,
           ROW_NUMBER() OVER (PARTITION BY t.kind, t.item_id, t.person
                              ORDER BY t.shift DESC, t.pos DESC) AS latest
    FROM told t
    JOIN floor_people fp ON fp.id = t.person
    JOIN floor_days d ON d.cal = fp.cal AND d.day = t.due
    JOIN floor_workdays w ON w.cal = fp.cal AND w.n = CASE WHEN t.shift > 0
        THEN d.n_incl + t.shift ELSE d.n_before + t.shift + 1 END
    WHERE t.expired = 1 OR w.day <= fp.today
)
SELECT CASE WHEN r.kind = 'milestone' THEN 'm:' || c.key || '/' || m.key
            ELSE 'g:' || c.key || '/' || g.key || '/r' || r.round END
           || '/' || r.step || '/' || p.email,
       r.case_id, COALESCE(m.key, g.key), r.step, r.person, r.urgent, :pending, r.due,
       r.fire_on,
       CASE WHEN lk.look IS NULL THEN {payload} ELSE {with_look} END,
       :now{defaults}
FROM reached r
JOIN contacts p ON p.id = r.person
JOIN cases c ON c.id = r.case_id
LEFT JOIN milestones m ON r.kind = 'milestone' AND m.id = r.item_id
LEFT JOIN gates g ON r.kind = 'gate' AND g.id = r.item_id
LEFT JOIN floor_looks lk ON lk.pilot = c.kind AND lk.version = c.template_version
                        AND lk.gate = g.key
WHERE r.latest = 1
ON CONFLICT (dedupe_key) DO NOTHING
"""
# The payload's members; a gate whose template names evidence adds `to_look_at`.
_PAYLOAD = """'case', c.key, 'case_title', c.title, 'pilot', c.kind,
           'country', c.country, 'item', COALESCE(m.key, g.key), 'item_kind', r.kind,
           'item_title', COALESCE(m.title, g.title), 'due', {due_text},
           'days_late', {days_late}, 'step', r.step, 'offset', r.shift, 'round', r.round"""
_DIALECT = {
    "sqlite": {
        "payload": "json_object({members})",
        "with_look": "json_object({members}, 'to_look_at', lk.look)",
        "due_text": "r.due",
        "days_late": "max(CAST(julianday(:today) - julianday(r.due) AS INTEGER), 0)",
    },
    "postgresql": {
        "payload": "json_build_object({members})",
        "with_look": "json_build_object({members}, 'to_look_at', lk.look)",
        "due_text": "to_char(r.due, 'YYYY-MM-DD')",
        "days_late": "GREATEST(CAST(:today AS date) - r.due, 0)",
    },
}
_WRITTEN = (
    "dedupe_key case_id subject rule recipient_id urgent status due_on fire_on payload created_at"
).split()


def _forms(dialect: str) -> dict[str, str]:
    """The backend's spelling of the payload, with and without what to look at."""
    forms = _DIALECT[dialect]
    members = _PAYLOAD.format(due_text=forms["due_text"], days_late=forms["days_late"])
    return {
        "payload": forms["payload"].format(members=members),
        "with_look": forms["with_look"].format(members=members),
    }


def floor_statement(dialect: str) -> Any:
    """The floor's one statement for a backend, with every bound value typed as ours binds
    it (the outbox columns' own types), and the outbox's other columns at their defaults."""
    table = Notification.__table__  # type: ignore[attr-defined]
    extra = [
        c
        for c in table.columns
        if c.name not in _WRITTEN and not c.primary_key and c.default is not None
    ]
    sql = FLOOR_SQL.format(
        open_milestone=_OPEN,
        node_owner=NODE_OWNER,
        case_owner=CASE_OWNER,
        columns=", ".join([*_WRITTEN, *(c.name for c in extra)]),
        defaults="".join(f", :default_{c.name}" for c in extra),
        **_forms(dialect),
    )
    params = [
        bindparam("today", type_=Date()),
        bindparam("horizon", type_=Date()),
        bindparam("now", type_=table.c.created_at.type),
        bindparam("pending", type_=table.c.status.type),
    ]
    for c in extra:
        value = c.default.arg(None) if c.default.is_callable else c.default.arg
        params.append(bindparam(f"default_{c.name}", value, type_=c.type))
    return text(sql).bindparams(*params)


@dataclass(frozen=True)
class FloorRun:
    """One execution of the floor's statement."""

    seconds: float
    rows: int


def _calendar_key(country: str, subdivision: str | None) -> str:
    return f"{country}-{subdivision}" if subdivision else country


def _ladders(conn: Connection) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
    """Every active case's pinned ladder as rows, how many calendar days ahead the earliest
    reminder may look (as ours: working days to calendar days, plus 16 days), and each
    pinned gate's evidence, where its template names any."""
    from sqlmodel import Session

    rows: list[dict[str, Any]] = []
    earliest = 0
    with Session(conn) as session:
        pairs = session.execute(
            select(col(Case.kind), col(Case.template_version))
            .where(col(Case.status) == CaseStatus.ACTIVE)
            .distinct()
        ).all()
        templates: dict[tuple[str, int], Template] = {
            (kind, version): case_store.pinned_template(session, kind, version)
            for kind, version in pairs
        }
    looks = [
        {"pilot": kind, "version": version, "gate": gate.key, "look": gate.evidence.strip()}
        for (kind, version), template in sorted(templates.items())
        for gate in template.gates
        if gate.evidence.strip()
    ]
    for (kind, version), template in sorted(templates.items()):
        ladder = sorted(template.ladder, key=lambda s: s.offset)
        urgent_roles = [r for s in ladder if s.urgent for r in s.notify]
        earliest = min([earliest, *(s.offset for s in ladder)])
        for pos, step in enumerate(ladder):
            for role in dict.fromkeys(step.notify):
                rows.append(
                    _ladder_row(kind, version, 0, pos, role, step.key, step.offset, step.urgent)
                )
        for role in dict.fromkeys([NODE_OWNER, *urgent_roles]):
            rows.append(_ladder_row(kind, version, 1, 0, role, EXPIRED_STEP, 0, True))
    return rows, -earliest * 7 // 5 + 16, looks


def _ladder_row(
    kind: str, version: int, expired: int, pos: int, role: str, step: str, shift: int, urgent: bool
) -> dict[str, Any]:
    return {
        "pilot": kind,
        "version": version,
        "expired": expired,
        "pos": pos,
        "role": role,
        "step": step,
        "shift": shift,
        "urgent": urgent,
    }


def prepare_floor(conn: Connection, now: datetime, zone: str) -> dict[str, Any]:
    """The floor's reference tables on its connection; returns the statement's parameters."""
    today = case_store.local_date(now, zone)
    ladder, ahead, looks = _ladders(conn)
    horizon = today + timedelta(days=ahead)
    max_shift = max((abs(r["shift"]) for r in ladder), default=0)
    people_rows = conn.execute(
        select(
            col(Contact.id),
            col(Contact.country),
            col(Contact.timezone),
            col(Partner.country),
            col(Partner.region),
        ).join(Partner, col(Partner.id) == col(Contact.partner_id))
    ).all()
    calendars: dict[str, WorkCalendar] = {}
    people: list[dict[str, Any]] = []
    for cid, country, zone_name, p_country, region in people_rows:
        sub = subdivision_of(country, region) if p_country == country else None
        key = _calendar_key(country, sub)
        calendars[key] = calendar_for(country, sub)
        people.append({"id": cid, "cal": key, "today": case_store.local_date(now, zone_name)})
    # The days every due date and every step may fall on, with room for the longest offset.
    earliest_due = conn.execute(
        select(func.min(col(Milestone.planned_due))).where(
            col(Milestone.status).in_(list(OPEN_MILESTONE))
        )
    ).scalar_one()
    earliest_deadline = conn.execute(
        select(func.min(col(Gate.deadline))).where(col(Gate.status) == GateStatus.OPEN)
    ).scalar_one()
    margin = timedelta(days=max_shift * 2 + 30)
    first = min(d for d in (earliest_due, earliest_deadline, today) if d is not None) - margin
    last = horizon + margin
    days: list[dict[str, Any]] = []
    workdays: list[dict[str, Any]] = []
    for key, calendar in sorted(calendars.items()):
        count = 0
        day = first
        while day <= last:
            before = count
            if calendar.is_working_day(day):
                count += 1
                workdays.append({"cal": key, "n": count, "day": day})
            days.append({"cal": key, "day": day, "n_before": before, "n_incl": count})
            day += timedelta(days=1)
    _REFERENCE.create_all(conn)
    for table, rows in (
        (FLOOR_LADDER, ladder),
        (FLOOR_LOOKS, looks),
        (FLOOR_PEOPLE, people),
        (FLOOR_DAYS, days),
        (FLOOR_WORKDAYS, workdays),
    ):
        conn.execute(insert(table), rows)
    if conn.dialect.name == "postgresql":
        for table in _REFERENCE.tables.values():
            conn.execute(text(f"ANALYZE {table.name}"))
    conn.commit()
    return {"today": today, "horizon": horizon, "now": now, "pending": "pending"}


def run_floor(engine: Engine, now: datetime, zone: str, times: int = 2) -> list[FloorRun]:
    """The floor's statement `times` times on one connection, each in its own transaction."""
    runs: list[FloorRun] = []
    writer = engine.execution_options(sqlite_immediate=True)
    with writer.connect() as conn:
        params = prepare_floor(conn, now, zone)
        statement = floor_statement(conn.dialect.name)
        for _ in range(times):
            started = time.perf_counter()
            rows = conn.execute(statement, params).rowcount
            conn.commit()
            runs.append(FloorRun(time.perf_counter() - started, int(rows)))
        _REFERENCE.drop_all(conn)
        conn.commit()
    return runs


# ---------------------------------------------------------------------------------------------
# Ours, in a child process


def _sweep(url: str, home: str, now: datetime) -> dict[str, Any]:
    """One `run_monitor` on a fresh engine; in a child process, so its peak RSS is the
    sweep's (plus the interpreter and the imports the sweep needs). The modules are imported
    before the clock starts, as in a worker that has run a pass before (the floor's holiday
    tables are made before its clock starts too)."""
    import holidays.countries  # noqa: F401 (every country's rules, imported on first use)

    from bridgebsr.monitor.sweep import run_monitor

    rt = build_runtime(Settings(home=Path(home), database_url=url))
    try:
        started = time.perf_counter()
        report = run_monitor(rt.engine, now=now, zone=rt.settings.timezone)
        seconds = time.perf_counter() - started
    finally:
        rt.engine.dispose()
    summary = report.summary()
    return {
        "seconds": seconds,
        "notifications": report.notifications,
        "newly_overdue": report.newly_overdue,
        "newly_expired": report.newly_expired,
        "late": summary["late"],
        "failures": summary["failures"],
        "peak_rss_mb": peak_rss_mb(),
    }


def _build(url: str, home: str, cases: int) -> dict[str, Any]:
    from benchmarks.monitor_scale import Store, build_store

    counts, seconds = build_store(Store("sweep", url, Path(home)), cases)
    return {"cases": counts.cases, "milestones": counts.milestones, "seconds": seconds}


# ---------------------------------------------------------------------------------------------
# Comparing the two outboxes


def outbox(url: str) -> dict[str, tuple[Any, ...]]:
    """Every outbox row by dedupe key, as the columns the monitor writes (typed)."""
    from sqlalchemy import create_engine

    table = Notification.__table__  # type: ignore[attr-defined]
    columns = [table.c[name] for name in _WRITTEN]
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(*columns, table.c.attempts, table.c.delivered)).all()
    finally:
        engine.dispose()
    return {row[0]: tuple(row[1:]) for row in rows}


def decided_cases(url: str) -> set[int]:
    """Cases in which the monitor decided a gate by its timeout (and so perhaps closed the
    case or sent it back): every change it made besides stamping items late or expired."""
    from sqlalchemy import create_engine

    from bridgebsr.monitor.sweep import MONITOR_ACTOR

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(col(CaseEvent.case_id))
                .where(
                    col(CaseEvent.actor) == MONITOR_ACTOR,
                    col(CaseEvent.kind).not_in(["milestone.overdue", "gate.expired"]),
                )
                .distinct()
            ).scalars()
            return set(rows)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Comparison:
    """How the two outboxes differ: rows of cases whose gates ours timed out first (so the
    floor, which does not, may see them differently), and any other difference."""

    explained: int
    unexplained: list[str]


def compare(
    ours: dict[str, tuple[Any, ...]], floor: dict[str, tuple[Any, ...]], decided: set[int]
) -> Comparison:
    """Every row only one side wrote, or that differs, must belong to a decided case."""
    only_ours = set(ours) - set(floor)
    only_floor = set(floor) - set(ours)
    changed = {k for k in set(ours) & set(floor) if ours[k] != floor[k]}
    explained = 0
    lines = []
    for label, keys in (
        ("only ours", only_ours),
        ("only the floor", only_floor),
        ("different", changed),
    ):
        left = sorted(k for k in keys if (ours.get(k) or floor[k])[0] not in decided)
        explained += len(keys) - len(left)
        if left:
            sample = "; ".join(f"{k} ours={ours.get(k)} floor={floor.get(k)}" for k in left[:3])
            lines.append(f"{len(left)} {label}, e.g. {sample}")
    return Comparison(explained, lines)


# ---------------------------------------------------------------------------------------------
# Where the stores live


@contextmanager
def _stores(db: str, cases: int) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(ours' URL, the floor's URL, a home folder, the build's figures): two copies of one
    generated store."""
    with tempfile.TemporaryDirectory(prefix="bridgebsr-sweep-") as tmp:
        root = Path(tmp)
        if db == "sqlite":
            built_path = root / "built.db"
            built = in_child(_build, f"sqlite:///{built_path}", tmp, cases)
            for name in ("ours.db", "floor.db"):
                shutil.copyfile(built_path, root / name)
            built_path.unlink()
            yield f"sqlite:///{root / 'ours.db'}", f"sqlite:///{root / 'floor.db'}", tmp, built
            return
        with scratch_pg.scratch_databases("monitor") as databases:
            url = databases.create("built")
            built = in_child(_build, url, tmp, cases)
            template = databases.names[-1]
            ours = databases.create("ours", template=template)
            floor = databases.create("floor", template=template)
            yield ours, floor, tmp, built


def _warm(url: str) -> None:
    """Read the tables both sides read, so neither pays for a cold file cache."""
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            for table in ("cases", "milestones", "gates", "contacts", "notifications"):
                conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    finally:
        engine.dispose()


def run_backend(db: str, cases: int) -> list[Result]:
    """Build, run the floor twice and ours twice, compare the outboxes, give three rows."""
    from benchmarks.monitor_scale import NOW

    with _stores(db, cases) as (ours_url, floor_url, home, built):
        for url in (floor_url, ours_url):
            _warm(url)
        rt = build_runtime(Settings(home=Path(home), database_url=floor_url))
        try:
            floor_runs = run_floor(rt.engine, NOW, rt.settings.timezone)
        finally:
            rt.engine.dispose()
        first = in_child(_sweep, ours_url, home, NOW)
        second = in_child(_sweep, ours_url, home, NOW)
        mine, theirs = outbox(ours_url), outbox(floor_url)
        comparison = compare(mine, theirs, decided_cases(ours_url))
    label = BACKENDS[db]
    if comparison.unexplained:
        raise RuntimeError(f"{NAME} ({label}): ours and the floor differ: {comparison}")
    if first["notifications"] != len(mine) or floor_runs[0].rows != len(theirs):
        raise RuntimeError(
            f"{NAME} ({label}): rows counted (ours {first['notifications']}, floor "
            f"{floor_runs[0].rows}) are not the rows in the outbox ({len(mine)}, {len(theirs)})"
        )
    if second["notifications"] or floor_runs[1].rows:
        raise RuntimeError(f"{NAME} ({label}): a second sweep at the same date wrote rows")
    if first["failures"] or second["failures"]:
        raise RuntimeError(f"{NAME} ({label}): failures {first['failures']}")
    size = int(built["cases"])
    rss = max(first["peak_rss_mb"], second["peak_rss_mb"])
    return [
        result(
            f"{NAME} {label}: first sweep ({first['notifications']:,} rows; "
            f"floor {floor_runs[0].rows:,}, {comparison.explained} of cases timed out first)",
            size,
            first["seconds"],
            floor_runs[0].seconds,
            FIRST_TARGET,
            first["peak_rss_mb"],
        ),
        result(
            f"{NAME} {label}: second sweep, same date (0 rows)",
            size,
            second["seconds"],
            floor_runs[1].seconds,
            SECOND_TARGET,
            second["peak_rss_mb"],
        ),
        # Peak RSS against its budget: "ours" and "floor" are megabytes here.
        result(
            f"{NAME} {label}: peak RSS, MB (floor column: the {RSS_BUDGET_MB:.0f} MB budget)",
            size,
            rss,
            RSS_BUDGET_MB,
            1.0,
            rss,
        ),
    ]


def run(cases: int, dbs: Sequence[str] | None = None) -> list[Result]:
    """Every backend's rows."""
    results: list[Result] = []
    for db in dbs or backends(NAME):
        results += run_backend(db, cases)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.monitor_sweep")
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--db", nargs="+", choices=("sqlite", "postgresql"))
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args(argv)
    results = run(args.cases, args.db)
    sys.stdout.write(json.dumps(results, indent=2) + "\n")
    if args.json:
        write_json(args.json, results)
    return 0 if all(within_target(r) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
