"""Portfolio KPIs as pandas DataFrames, from the case store and its audit trail.

`load` (with the detail frames it reads at their first use) is the only code that touches
the database: a handful of set-based SELECTs of the columns the KPIs need. Dates travel as
day numbers, times as epoch seconds and statuses as small codes, read straight off the
driver's cursor into numpy arrays, so nothing is parsed or wrapped row by row (SQLite and
PostgreSQL, the two stores the project runs on). What every table by group needs is read
first: the cases, the milestones not done counted per case in the database, and the two
days of each done milestone (its slip in working days needs the holidays). The rows of every
milestone, gate and audit event, which only the other views need, are read when one of them
first asks (see `load`). Every `build_*` function takes the `Frames` and returns a new
DataFrame, changing nothing, vectorised with pandas and numpy (working days from
per-calendar tables built with `numpy.is_busday` and moved with `numpy.busday_offset`, on
the holidays `bridgebsr.calendars` uses, from `holidays`). Derived tables that several
builds share are computed once per `Frames`.

Dimensions (`by`): `pilot` is the case's kind, `partner` the code of its lead partner,
`country` the case's country (its owner's country when it was opened). Any non-empty
combination of the three may be asked for. Tables by these dimensions have one row per group
that has cases, so they line up (counts 0, medians and percentages NaN where nothing was
measured).

Rules, decided once here:

- Open cases are `draft`, `active` and `on_hold`; closed ones `completed` and `cancelled`.
  Holding a case does not stop its clock: its milestones still become overdue and breached
  (as `bridgebsr case list --overdue` counts them).
- Working days are Monday to Friday minus public holidays, counted as
  `WorkCalendar.working_days_between` does: the days in (start, end], negative when end is
  before start. A milestone is counted in its own calendar, the one the planner schedules it
  in: its owner's country (and state, when the owner works at a partner in that country),
  else the case's. Cases, stages, gates and the SME figures use the case's calendar (its
  country and the lead partner's state). Days stamped from audit-event times are taken in the
  lead partner's time zone, as the use cases stamp them.
- Slip of a milestone: working days from its planned due date to the day it was done, signed
  (done early is negative). On time: done on or before the planned due date. Medians and p90s
  interpolate linearly (numpy's default).
- Waived milestones count as finished (for stages, forecasts and breaches) but are left out
  of done, on time, on-time % and slips: nothing was delivered.
- Cancelled cases count in the case counts, the SME request counts, the gate decisions and
  the SLA breaches (what happened before the cancellation still happened), and are left out
  of the milestone KPIs, slips, overdue, stage cycle times and forecasts.
- Overdue now: an open milestone (planned, in progress, blocked) of an open case whose planned
  due date is before `as_of` (due today is not overdue yet).
- SLA breach, after the fact: a milestone is breached when it was still unfinished after its
  planned due date: it was finished (done or waived) after that date, or it is still open and
  the date is before `as_of`, or it was open when its case was closed after that date. The
  planned due date is fixed when a case opens, so a milestone once late stays breached
  whatever happens next: done now, reopened by a rejected gate, or its case cancelled. A
  breach belongs to the month of its first late day (the day after the due date): late in
  March and done in April is a March breach. The recorded finish date is the fact: a
  completion entered late but dated (`--on`) on or before the due date is no breach.
- Stages: the audit trail has no "stage changed" event; the current stage is by definition
  the first stage, in template order, with unfinished work (`planning.current_stage`). So a
  stage is left on the latest finish (milestone done or waived, gate approved) among its
  items and those of every earlier stage, once all are finished, and entered when the stage
  before it was left (the first stage on the case's start date). Rework after a rejected gate
  counts in the stages it reopened.
- Gates: one row per gate round, so rounds sent back for rework still count: the current
  round from the gate's row, the earlier ones from the audit trail (`gate.open` to the
  `gate.reject` of the same round). Decision time runs from the day the gate opened to the
  day it was decided.
- SME service type: the shared-sme-service template has no field for it; triage is the
  milestone `triage-decision`. The type is read from the note on its latest completion
  (`bridgebsr milestone complete KEY triage-decision --note "financing: seed round"`): the
  first of `ip`, `financing`, `eu-programme`, `partnering` named in the note, reading from
  the left (see SERVICE_TYPES for the words each is known by). A request not yet
  triaged is `untriaged`; one triaged with no recognisable note is `unspecified`.
- Forecast: every open case is rescheduled as of `as_of` with the planner's own rules
  (`bridgebsr.schedule`: actual starts and finishes count, nothing unfinished is due before
  `as_of`, finish-to-start links with lags, each item in its own calendar), vectorised over
  all cases of a template version. The stored `forecast_date` is only as fresh as the last
  change to a case; this one is as of `as_of`.

`load` reads the store as it stands: `as_of` is the day the report speaks for and is expected
not to be before the latest change recorded.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager, suppress
from copy import copy
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from functools import lru_cache
from itertools import chain
from pathlib import Path
from threading import Lock, Thread
from typing import Any, Final, NamedTuple, Protocol, TypeVar, cast

import holidays
import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import (
    BigInteger,
    Connection,
    Date,
    Dialect,
    Engine,
    Integer,
    String,
    func,
    literal,
    select,
)
from sqlalchemy import case as sql_case
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from bridgebsr.errors import InvalidInput, StaleCase
from bridgebsr.rules.calendars import subdivision_of
from models import (
    Case,
    CaseEvent,
    CaseStatus,
    Contact,
    DayKind,
    Gate,
    GateSpec,
    GateStatus,
    Milestone,
    MilestoneSpec,
    MilestoneStatus,
    Partner,
    Template,
    TemplateVersion,
)

PILOT: Final = "pilot"
PARTNER: Final = "partner"
COUNTRY: Final = "country"
CASE_DIMENSIONS: Final = (PILOT, PARTNER, COUNTRY)
SERVICE_TYPE: Final = "service_type"

SME_KIND: Final = "shared-sme-service"
TRIAGE_MILESTONE: Final = "triage-decision"
UNTRIAGED: Final = "untriaged"
UNSPECIFIED: Final = "unspecified"
# Service types of the shared SME service, each with the words a triage note may use for it.
SERVICE_TYPES: Final = (
    ("ip", r"\bip\b|\bipr\b|intellectual[- ]property|patent|licen[cs]"),
    ("financing", r"financ|funding|investor|investment|capital|\bloan"),
    ("eu-programme", r"\beu\b|horizon|interreg|eurostars"),
    ("partnering", r"partner"),
)

OPEN_CASE: Final = (CaseStatus.DRAFT, CaseStatus.ACTIVE, CaseStatus.ON_HOLD)
FINISHED: Final = (MilestoneStatus.DONE, MilestoneStatus.WAIVED)
GATE_EVENTS: Final = ("gate.open", "gate.approve", "gate.reject")
OUTCOMES: Final = ("approved", "rejected", "waiting", "closed")
BREACH_STATES: Final = ("finished late", "open", "open when case closed")

DayArray = npt.NDArray[np.datetime64]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
_E = TypeVar("_E", bound=StrEnum)
_T = TypeVar("_T")
_NAT: Final = np.datetime64("NaT", "D")
# Stands for NULL in integer columns: no id, day (1969-12-31) or second in the store is -1,
# and small integers cost the driver no allocation (None would not fit an int64 array).
_NULL: Final = -1
_UNIX_JULIAN_DAY: Final = 2440587.5
_CHUNK_ROWS: Final = 100_000


@dataclass(frozen=True)
class Frames:
    """The case store as DataFrames, as `load` reads it. Days are naive day timestamps.

    Read by `load`, in one snapshot:

    - `cases`, indexed by case id: key, pilot, template_version, partner (lead partner code),
      country, status, current_stage, calendar (the case's working calendar: "DK", "DE-MV"),
      timezone (the lead partner's), start_date, target_date, forecast_date (as stored),
      closed_at (UTC), closed_on (its day in the lead partner's time zone), tpl (position of
      the case's template in `templates`).
    - `milestone_counts`: the milestones of each case, in the rows of `cases` (same index,
      same order): `milestones`, `done` and `waived` (with a finish date), `done_on_time`,
      `due_unfinished` (not finished, planned due before `as_of`: overdue now while the case
      is open).
    - `slips`: one row per done milestone (with a finish date), in no particular order:
      case_id, slip_working_days (planned due date to the finish, in the milestone's own
      calendar, signed).
    - `templates`: the pinned template of every (kind, version) in the store.

    Read at their first use (see `load`), or with the rest when `load` is asked for `full`:

    - `milestones`: case_id, seq, key, stage, stage_order, status, calendar (the owner's, else
      the case's; the same categories as the cases'), planned_due, started_on, finished_on.
    - `gates`: case_id, seq, key, stage, stage_order, status, round, opened_on, deadline,
      decided_on (all of the current round).
    - `events`: the audit trail of the gates sent back for rework (round above 1), for their
      earlier rounds: one row per `gate.open`, `gate.approve` and `gate.reject` in the order
      written: case_id, kind, gate, round, at (UTC), deadline (set on opening).
    - `notes`: the note on every completion of a `triage-decision` milestone, in the order
      written: case_id, note (the SME figures read those of SME requests).
    """

    as_of: date
    cases: pd.DataFrame
    milestone_counts: pd.DataFrame
    slips: pd.DataFrame
    templates: Mapping[tuple[str, int], Template]
    _details: _Details = field(repr=False, compare=False)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def milestones(self) -> pd.DataFrame:
        return self._details.get().milestones

    @property
    def gates(self) -> pd.DataFrame:
        return self._details.get().gates

    @property
    def events(self) -> pd.DataFrame:
        return self._details.get().events

    @property
    def notes(self) -> pd.DataFrame:
        return self._details.get().notes


class _DetailFrames(NamedTuple):
    """The rows of every milestone, gate and audit event the views read."""

    milestones: pd.DataFrame
    gates: pd.DataFrame
    events: pd.DataFrame
    notes: pd.DataFrame
    positions: Mapping[str, IntArray]  # the row of each milestone's and gate's case in `cases`


class _Details:
    """The detail frames of a `Frames`: read at the first call of `get` (once), or given."""

    def __init__(self, read: Callable[[], _DetailFrames]) -> None:
        self._read: Callable[[], _DetailFrames] | None = read
        self._frames: _DetailFrames | None = None
        self._lock = Lock()

    @classmethod
    def given(cls, frames: _DetailFrames) -> _Details:
        details = cls(lambda: frames)
        details.get()
        return details

    def get(self) -> _DetailFrames:
        with self._lock:
            if self._frames is None:
                assert self._read is not None
                self._frames = self._read()
                self._read = None  # what the read needed can go
            return self._frames

    def __getstate__(self) -> dict[str, Any]:
        return {"frames": self.get()}  # a read to come cannot be pickled: read now

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._read, self._frames, self._lock = None, state["frames"], Lock()


def only_cases(frames: Frames, rows: Any) -> Frames:
    """The frames of the cases at `rows` (a mask over `frames.cases`), and nothing of the
    others; detail frames not read yet are cut the same way when they are."""
    keep = np.asarray(rows, dtype=bool)
    cases = frames.cases[keep]
    slips = frames.slips
    details = frames._details
    return Frames(
        as_of=frames.as_of,
        cases=cases,
        milestone_counts=frames.milestone_counts[keep],
        slips=slips[_rows_of(cases.index, slips["case_id"]) >= 0].reset_index(drop=True),
        templates=frames.templates,
        _details=_Details(lambda: _cut(details.get(), cases.index)),
    )


def _cut(details: _DetailFrames, ids: pd.Index) -> _DetailFrames:
    """The detail rows of the cases `ids` (in that order) only."""

    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[_rows_of(ids, frame["case_id"]) >= 0].reset_index(drop=True)

    milestones, gates = keep(details.milestones), keep(details.gates)
    return _DetailFrames(
        milestones=milestones,
        gates=gates,
        events=keep(details.events),
        notes=keep(details.notes),
        positions={
            "milestones": _rows_of(ids, milestones["case_id"]),
            "gates": _rows_of(ids, gates["case_id"]),
        },
    )


# --- load: the only part that reads the database ---------------------------------------------


def load(source: Session | Connection | Engine, *, as_of: date, full: bool = False) -> Frames:
    """Read the columns the KPIs need with a few set-based SELECTs.

    Given an engine on a SQLite file or PostgreSQL, the rows come through Arrow (ADBC), column
    by column in C, in one read-only snapshot: the cases; the milestones not done, counted
    per case by a GROUP BY in the database; and the done milestones as their case, owner,
    planned and finished days only, for their slips in working days (holidays are known
    here, not in the database) and the counts of done and on time. That is all the case and
    milestone tables by group need. The milestone, gate and audit rows the other views need
    are read at the first use of `milestones`, `gates`, `events` or `notes`, in a snapshot
    of their own that must find every case at the version read here (else `StaleCase`: load
    again); cases opened since are left out. With `full` (every view is wanted), they are
    read now, in the same snapshot, and the counts and slips are made from them.

    Given a session or a connection, everything comes through it at once, so the load sees
    what that transaction sees.
    """
    if isinstance(source, Engine):
        with _reader(source) as read:
            return _load(read, as_of, later=None if full else source)
    conn = source.connection() if isinstance(source, Session) else source
    return _load(_CursorReader(conn), as_of, later=None)


def _load(read: _Reader, as_of: date, later: Engine | None) -> Frames:
    """Everything but the detail frames; those too unless `later` is the engine to read
    them from at their first use."""
    sql = _Sql(read.dialect.name, dates_as_read=read.arrow)
    # The largest fetch first: an Arrow reader makes it beside everything else.
    if later is None:
        rows = read.integers_soon(_milestone_query(sql), MILESTONE_COLUMNS)
    else:
        rows = read.integers_soon(_done_query(sql), DONE_COLUMNS)
    raw_templates = read.records(
        select(
            col(TemplateVersion.kind),
            col(TemplateVersion.version),
            sql_cast(col(TemplateVersion.body), String),
        ).order_by(col(TemplateVersion.kind), col(TemplateVersion.version)),
        ["kind", "version", "body"],
    )
    templates = {
        (str(kind), int(version)): Template.model_validate_json(body)
        for kind, version, body in raw_templates.itertuples(index=False)
    }
    shapes = _Shapes(templates)
    partners = read.records(
        select(
            col(Partner.id),
            col(Partner.code),
            col(Partner.country),
            sql.text(col(Partner.region)),
            sql.text(col(Partner.timezone)),
        ),
        ["partner_id", "partner", "partner_country", "region", "timezone"],
    ).set_index("partner_id")
    for column in ("region", "timezone"):
        partners[column] = _optional(partners[column])
    contacts = read.records(
        select(col(Contact.id), col(Contact.country), sql.key(col(Contact.partner_id))),
        ["contact_id", "country", "partner_id"],
    ).set_index("contact_id")
    raw_cases = read.records(_case_query(sql), CASE_COLUMNS)
    if later is not None:  # counted by the database while the cases are made here
        counted = read.integers_soon(_others_query(as_of), OTHER_COLUMNS, beside=False)
    # Each contact's calendar: their country, and their partner's state if in that country.
    where = partners.reindex(contacts["partner_id"].to_numpy())
    contact_calendars = _calendars(
        contacts["country"], where["partner_country"].to_numpy(), where["region"].to_numpy()
    )
    cases = _read_cases(raw_cases, partners, shapes)
    names = sorted(set(contact_calendars) | set(cases["calendar"].cat.categories))
    calendars = pd.CategoricalDtype(names)
    cases["calendar"] = pd.Categorical(cases["calendar"], dtype=calendars)
    context = _Context(
        cases=cases,
        shapes=shapes,
        owners=contacts.index,
        owner_calendars=np.asarray(
            pd.Categorical(contact_calendars, dtype=calendars).codes, dtype=np.int64
        ),
        versions=raw_cases.set_index("case_id")["version"].reindex(cases.index).to_numpy(),
    )
    # Every build counts working days: the table is made while the milestones still come.
    workdays = _workdays_of(cases, as_of)
    workdays.prepare()
    if later is None:
        details = _read_details(read, sql, rows(), context)
        counts, slips, slip_rows = _counted(details, cases, as_of, workdays)
        source = _Details.given(details)
    else:
        counts, slips, slip_rows = _read_delivery(rows(), counted(), as_of, context, workdays)
        engine = later
        source = _Details(lambda: _read_later(engine, context))
    return Frames(
        as_of=as_of,
        cases=cases,
        milestone_counts=counts,
        slips=slips,
        templates=templates,
        _details=source,
        _memo={"workdays": workdays, "positions.slips": slip_rows},
    )


@dataclass(frozen=True)
class _Context:
    """What the rows of milestones and gates are read against: the first part of a load."""

    cases: pd.DataFrame
    shapes: _Shapes
    owners: pd.Index  # contact ids
    owner_calendars: IntArray  # the calendar code of each contact in `owners`
    versions: IntArray  # the version of each case, in the rows of `cases`

    def calendars(self, owner_ids: Any, positions: IntArray) -> IntArray:
        """The calendar code of each item: its owner's, else (no owner) its case's."""
        case = _codes(self.cases["calendar"])[positions]
        owner = np.append(self.owner_calendars, -1)[_rows_of(self.owners, owner_ids)]
        return np.where(owner >= 0, owner, case)


class _Reader(Protocol):
    """Runs the load's SELECTs (Core statements) and hands back their rows as columns."""

    @property
    def dialect(self) -> Dialect: ...

    @property
    def arrow(self) -> bool:
        """Whether rows come through Arrow, which parses ISO dates itself (see `_Sql`)."""
        ...

    def integers(self, query: Any, columns: Sequence[str]) -> pd.DataFrame:
        """Rows of integers (no NULLs: the SELECT turns them into _NULL) as int64 columns."""
        ...

    def records(self, query: Any, columns: Sequence[str]) -> pd.DataFrame:
        """Rows of mixed values; text as Python strings (no NULLs: the SELECT turns them into
        empty strings or _NULL)."""
        ...

    def integers_soon(
        self, query: Any, columns: Sequence[str], *, beside: bool = True
    ) -> Callable[[], pd.DataFrame]:
        """`integers`, possibly fetched while the caller works on: call the result for the
        rows. `beside`: beside what the other calls ask for (on a second connection), else
        after what was asked for before, on the first."""
        ...


class _CursorReader:
    """Reads through a SQLAlchemy connection, inside its transaction."""

    arrow = False

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @property
    def dialect(self) -> Dialect:
        return self.conn.dialect

    def integers(self, query: Any, columns: Sequence[str]) -> pd.DataFrame:
        result = self.conn.execute(query)
        cursor = result.cursor
        width = len(columns)
        parts = [np.empty((0, width), dtype=np.int64)]
        try:
            while chunk := cursor.fetchmany(_CHUNK_ROWS):
                flat = np.fromiter(
                    chain.from_iterable(chunk), dtype=np.int64, count=len(chunk) * width
                )
                parts.append(flat.reshape(-1, width))
        finally:
            result.close()
        return pd.DataFrame(np.concatenate(parts), columns=list(columns))

    def records(self, query: Any, columns: Sequence[str]) -> pd.DataFrame:
        result = self.conn.execute(query)
        try:
            rows = result.cursor.fetchall()
        finally:
            result.close()
        frame = pd.DataFrame.from_records(rows, columns=list(columns), coerce_float=False)
        return frame.astype({c: object for c in frame.columns if frame[c].dtype != np.int64})

    def integers_soon(
        self, query: Any, columns: Sequence[str], *, beside: bool = True
    ) -> Callable[[], pd.DataFrame]:
        rows = self.integers(query, columns)
        return lambda: rows


class _ArrowTables:
    """A reader whose rows arrive as Arrow tables: the driver builds the columns in C, and
    they become numpy arrays without a Python object per value. Statements are sent as SQL
    with their parameters inline (they hold only codes, names and dates the load writes)."""

    arrow = True

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    def _table(self, statement: str) -> Any:
        """The rows of a SELECT, on the first connection."""
        raise NotImplementedError

    def _table_soon(self, statement: str, *, beside: bool) -> Callable[[], Any]:
        """The rows of a SELECT, fetched meanwhile: on the second connection, or on the first
        after what it was asked for before."""
        raise NotImplementedError

    def _sql(self, query: Any) -> str:
        return str(query.compile(dialect=self._dialect, compile_kwargs={"literal_binds": True}))

    def integers(self, query: Any, columns: Sequence[str]) -> pd.DataFrame:
        return _integer_frame(self._table(self._sql(query)), columns)

    def records(self, query: Any, columns: Sequence[str]) -> pd.DataFrame:
        return _record_frame(self._table(self._sql(query)), columns)

    def integers_soon(
        self, query: Any, columns: Sequence[str], *, beside: bool = True
    ) -> Callable[[], pd.DataFrame]:
        table = self._table_soon(self._sql(query), beside=beside)
        return lambda: _integer_frame(table(), columns)


class _PostgresReader(_ArrowTables):
    """ADBC on PostgreSQL: two connections on one exported snapshot, each answering in a
    thread of its own in the order asked (the driver does not hold the GIL meanwhile)."""

    def __init__(self, dialect: Dialect, first: Any, second: Any) -> None:
        super().__init__(dialect)
        self.connections = (first, second)
        self.pools = (ThreadPoolExecutor(1), ThreadPoolExecutor(1))

    @staticmethod
    def _fetch(conn: Any, statement: str) -> Any:
        with conn.cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetch_arrow_table()

    def _ask(self, which: int, statement: str) -> Callable[[], Any]:
        return self.pools[which].submit(self._fetch, self.connections[which], statement).result

    def _table(self, statement: str) -> Any:
        return self._ask(0, statement)()

    def _table_soon(self, statement: str, *, beside: bool) -> Callable[[], Any]:
        return self._ask(1 if beside else 0, statement)

    def close(self) -> None:
        for pool in self.pools:
            pool.shutdown(wait=True)
        for conn in self.connections:
            conn.rollback()
            conn.close()


class _Child:
    """`bridgebsr.arrow_fetch` in a child process on a SQLite file (see its protocol)."""

    def __init__(self, path: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bridgebsr.reports.arrow_fetch", path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            # numpy (loaded by pyarrow) would start a BLAS thread per core, for nothing here.
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        )
        self.pool = ThreadPoolExecutor(1)  # reads answers in the order they were asked for

    def line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode("utf-8").rstrip("\n")
        if not line or line.startswith("error "):
            raise InvalidInput(
                f"the store could not be read through Arrow: {line[6:] or 'no answer'}; "
                "check that the case store file is readable and writable"
            )
        return line

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode("utf-8") + b"\n")
        self.process.stdin.flush()

    def ask(self, statement: str) -> Callable[[], Any]:
        """Send a SELECT; call the result for its rows (an Arrow table)."""
        self.send(json.dumps(statement))
        return self.pool.submit(self._answer).result

    def _answer(self) -> Any:
        import pyarrow as pa

        size = int(self.line().removeprefix("ok "))
        assert self.process.stdout is not None
        payload = self.process.stdout.read(size)
        return pa.ipc.open_stream(pa.py_buffer(payload)).read_all()

    def close(self) -> None:
        """End the child: its input closes and it exits by itself. Nobody waits for that
        here (an interpreter with pyarrow loaded takes a while to go); the reader's thread
        collects it after any answer still coming in."""
        with suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        self.pool.submit(self._collect)
        self.pool.shutdown(wait=False)

    def _collect(self) -> None:
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class _ProcessReader(_ArrowTables):
    """Two `bridgebsr.arrow_fetch` children on the SQLite file, their read transactions begun
    while writers wait behind a BEGIN IMMEDIATE, so both read one snapshot; each answers in the
    order asked, the second what is fetched beside the rest."""

    def __init__(self, dialect: Dialect, path: str) -> None:
        super().__init__(dialect)
        self.path = path
        self.first, self.second = _Child(path), _Child(path)

    def start(self) -> bool:
        """Whether both children began their reads (False: they cannot read Arrow here)."""
        try:
            if self.first.line() != "ready" or self.second.line() != "ready":
                return False
            with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as fence:
                fence.execute("BEGIN IMMEDIATE")  # no writer commits until both have begun
                try:
                    for child in (self.first, self.second):
                        child.send("pin")
                    return self.first.line() == "pinned" and self.second.line() == "pinned"
                finally:
                    fence.execute("ROLLBACK")
        except (InvalidInput, OSError, sqlite3.Error):
            return False

    def _table(self, statement: str) -> Any:
        return self.first.ask(statement)()

    def _table_soon(self, statement: str, *, beside: bool) -> Callable[[], Any]:
        return (self.second if beside else self.first).ask(statement)

    def close(self) -> None:
        self.first.close()
        self.second.close()


def _integer_frame(table: Any, columns: Sequence[str]) -> pd.DataFrame:
    arrays = {name: _arrow_integers(table.column(i)) for i, name in enumerate(columns)}
    return pd.DataFrame(arrays, copy=False)  # fresh arrays: no copy into one block


def _record_frame(table: Any, columns: Sequence[str]) -> pd.DataFrame:
    out = {}
    for i, name in enumerate(columns):
        values = table.column(i).to_numpy(zero_copy_only=False)
        integral = np.issubdtype(values.dtype, np.integer)
        out[name] = pd.Series(values, dtype=np.int64 if integral else object)
    return pd.DataFrame(out, copy=False)


def _arrow_integers(column: Any) -> IntArray:
    """An Arrow column of integers (of any width), dates or ISO date text (empty or NULL:
    _NULL) as int64, dates as days since 1970-01-01."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = pc.cast(pc.if_else(pc.equal(column, ""), None, column), pa.date32())
    if pa.types.is_date32(column.type):
        column = pc.cast(column, pa.int32())
    if column.null_count:
        column = pc.fill_null(pc.cast(column, pa.int64()), _NULL)
    return np.asarray(column.to_numpy(), dtype=np.int64)


@contextmanager
def _reader(engine: Engine) -> Iterator[_Reader]:
    """The fastest reader the engine's database allows, each in one read-only snapshot.

    - PostgreSQL: ADBC, two connections on one exported snapshot.
    - A SQLite file: ADBC in two child processes on one snapshot (`bridgebsr.arrow_fetch`).
      The driver carries its own copy of SQLite, and two copies in one process release each
      other's file locks.
    - Otherwise (an in-memory database, no driver): the engine's connection.
    """
    # The first holiday lookup in a process imports every country `holidays` knows, which
    # takes as long as connecting: in a thread meanwhile, and while the first rows come.
    if "holidays.countries" not in sys.modules:
        Thread(target=_import_holidays, daemon=True).start()
    url = engine.url
    backend = url.get_backend_name()
    arrow: _PostgresReader | _ProcessReader | None = None
    if backend == "postgresql":
        with suppress(ImportError):
            arrow = _PostgresReader(engine.dialect, *_postgres_pair(url))
    elif backend == "sqlite" and url.database and url.database != ":memory:":
        arrow = _ProcessReader(engine.dialect, str(Path(url.database).resolve()))
        if not arrow.start():
            arrow.close()
            arrow = None
    if arrow is not None:
        try:
            yield arrow
        finally:
            arrow.close()
        return
    with engine.connect() as conn:
        yield _CursorReader(conn)


def _import_holidays() -> None:
    import holidays.countries  # noqa: F401


def _postgres_pair(url: Any) -> tuple[Any, Any]:
    """Two ADBC connections whose read transactions share one exported snapshot."""
    import adbc_driver_postgresql.dbapi as adbc_postgresql

    target = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with ThreadPoolExecutor(1) as pool:  # each connection reads the server's types first
        connecting = pool.submit(adbc_postgresql.connect, target)
        try:
            first = adbc_postgresql.connect(target)
        except BaseException:
            with suppress(Exception):
                connecting.result().close()
            raise
        try:
            second = connecting.result()
        except BaseException:
            first.close()
            raise
    with first.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute("SELECT pg_export_snapshot()")
        snapshot = cursor.fetchone()[0]
    with second.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
    return first, second


class _Sql:
    """Expressions that hand dates, times and statuses over as plain integers.

    With `dates_as_read` on PostgreSQL, a day is selected as stored (a date) and the reader
    turns it into a day number: Arrow converts a column of dates in C far faster than the
    server does row by row. SQLite keeps dates as ISO text, and its own `julianday` costs no
    more than handing the text over, so the day numbers come from the query there and the
    reading process parses nothing.
    """

    def __init__(self, dialect: str, *, dates_as_read: bool = False) -> None:
        self.sqlite = dialect == "sqlite"
        self.dates_as_read = dates_as_read and not self.sqlite

    def day(self, column: Any, *, in_sql: bool = False) -> ColumnElement[Any]:
        """Days since 1970-01-01 (NULL as _NULL); `in_sql` for `records`, which does not
        convert."""
        if self.dates_as_read and not in_sql:
            return cast(ColumnElement[Any], column)
        if self.sqlite:
            days = sql_cast(func.julianday(column) - _UNIX_JULIAN_DAY, Integer)
        else:
            days = sql_cast(sql_cast(column, Date) - literal(date(1970, 1, 1)), Integer)
        return func.coalesce(days, _NULL)

    def seconds(self, column: Any) -> ColumnElement[Any]:
        """Seconds since 1970-01-01 UTC (NULL as _NULL); SQLite keeps UTC times naive."""
        if self.sqlite:
            seconds = sql_cast(func.strftime("%s", column), BigInteger)
        else:
            seconds = sql_cast(func.floor(func.date_part("epoch", column)), BigInteger)
        return func.coalesce(seconds, _NULL)

    @staticmethod
    def code(column: Any, values: Sequence[str]) -> ColumnElement[Any]:
        """A text column as its position in `values` (-1 for anything else)."""
        if not values:
            return literal(-1)
        return sql_case({v: i for i, v in enumerate(values)}, value=column, else_=-1)

    @staticmethod
    def key(column: Any) -> ColumnElement[Any]:
        """An optional id (NULL as _NULL)."""
        return func.coalesce(column, _NULL)

    @staticmethod
    def text(column: Any) -> ColumnElement[Any]:
        """Optional text (NULL as an empty string)."""
        return func.coalesce(column, "")


def _optional(texts: pd.Series[Any]) -> npt.NDArray[np.object_]:
    """Optional text as the SELECT gave it (empty for NULL) back to None for NULL."""
    values = texts.to_numpy(dtype=object, copy=True)
    values[values == ""] = None
    return values


def _days(values: pd.Series[Any] | IntArray) -> pd.Series[Any]:
    """Day numbers (with _NULL) as naive day timestamps (NaT)."""
    numbers = np.asarray(values, dtype=np.int64)
    out = np.where(numbers == _NULL, _NAT, numbers.astype("datetime64[D]"))
    index = values.index if isinstance(values, pd.Series) else None
    return pd.Series(out.astype("datetime64[s]"), index=index)


def _utc(values: pd.Series[Any]) -> pd.Series[Any]:
    """Epoch seconds (with _NULL) as UTC timestamps (NaT)."""
    seconds = values.where(values != _NULL)
    return pd.to_datetime(seconds, unit="s", utc=True)


def _categorical(codes: Any, categories: Sequence[str] | pd.CategoricalDtype) -> pd.Categorical:
    """Values from their codes (-1: missing)."""
    dtype = (
        categories
        if isinstance(categories, pd.CategoricalDtype)
        else pd.CategoricalDtype(list(categories))
    )
    return pd.Categorical.from_codes(np.asarray(codes, dtype=np.int64), dtype=dtype)


def _decode(codes: pd.Series[Any] | IntArray, enum: type[_E]) -> pd.Categorical:
    return _categorical(codes, [m.value for m in enum])


def _rows_of(index: pd.Index, ids: Any) -> IntArray:
    """Position of each id in `index` (-1 when absent)."""
    values = np.asarray(ids)
    keys = index.to_numpy()
    if values.dtype.kind in "iu" and keys.dtype.kind in "iu" and len(keys):
        low, high = int(keys.min()), int(keys.max())
        if low >= 0 and high < 4 * len(keys) + 1024:  # ids as a store hands them out: a table
            table = np.full(high + 2, -1, dtype=np.int64)  # the last: any id out of range
            table[keys] = np.arange(len(keys))
            if np.count_nonzero(table >= 0) == len(keys):  # no id twice
                if not len(values) or (values.min() >= 0 and values.max() <= high):
                    return cast(IntArray, table[values])
                return table[np.where((values >= 0) & (values <= high), values, high + 1)]
    return np.asarray(index.get_indexer(pd.Index(values)), dtype=np.int64)


@lru_cache(maxsize=1024)
def _calendar_code(country: str, region: str | None) -> str:
    """The working calendar of a country and region: "DK", "DE-MV" (as `calendars_for`)."""
    sub = subdivision_of(country, region)
    return f"{country}-{sub}" if sub else country


def _pairs(first: Any, second: Any) -> tuple[IntArray, list[tuple[Any, Any]]]:
    """A code per row for its (first, second) pair, and the distinct pairs by code."""
    a, first_values = pd.factorize(np.asarray(first), use_na_sentinel=False)
    b, second_values = pd.factorize(np.asarray(second), use_na_sentinel=False)
    width = max(len(second_values), 1)
    codes, combined = pd.factorize(np.asarray(a, dtype=np.int64) * width + b)
    pairs = [(first_values[c // width], second_values[c % width]) for c in combined]
    return np.asarray(codes, dtype=np.int64), pairs


def _calendars(countries: Any, partner_countries: Any, regions: Any) -> list[str]:
    """Calendar codes: the partner's region counts only where it is in the same country."""
    country = np.asarray(countries, dtype=object)
    region = np.array(regions, dtype=object)
    region[country != np.asarray(partner_countries, dtype=object)] = None
    codes, pairs = _pairs(country, region)
    names = [_calendar_code(str(c), r if isinstance(r, str) else None) for c, r in pairs]
    return [names[i] for i in codes]


def _case_calendars(countries: pd.Series[Any], partners: pd.DataFrame, lead: IntArray) -> Any:
    """`_calendars` of the cases (their country, `lead` the row of their lead partner in
    `partners`), as a categorical: worked out once per (country, lead partner)."""
    codes, pairs = _pairs(_codes(countries), lead)
    country = _or_missing(countries.cat.categories, np.nan)
    partner_country = _or_missing(partners["partner_country"], np.nan)
    region = _or_missing(partners["region"])
    found = _calendars(
        [country[c] for c, _ in pairs],
        [partner_country[p] for _, p in pairs],
        [region[p] for _, p in pairs],
    )
    unique = sorted(set(found))
    where = np.array([unique.index(name) for name in found], dtype=np.int64)
    return pd.Categorical.from_codes(where[codes], dtype=pd.CategoricalDtype(unique))


def _picked(values: pd.Series[Any], rows: IntArray, default: str | None = None) -> Any:
    """The values at `rows` (-1: `default`, else missing), as a categorical of those seen."""
    table = pd.Categorical(_or_missing(values, default))
    picked = pd.Categorical.from_codes(np.asarray(table.codes)[rows], dtype=table.dtype)
    return picked.remove_unused_categories()


def _or_missing(values: Any, missing: Any = None) -> npt.NDArray[np.object_]:
    """The values, then `missing`: where position -1 (not found) points."""
    out = np.empty(len(values) + 1, dtype=object)
    out[:-1] = np.asarray(values, dtype=object)
    out[-1] = missing
    return out


CASE_COLUMNS: Final = (
    *("case_id", "key", PILOT, "template_version", "lead_partner_id", COUNTRY, "status"),
    *("current_stage", "start_date", "target_date", "forecast_date", "closed_at", "version"),
)


def _case_query(sql: _Sql) -> Any:
    return select(
        col(Case.id),
        col(Case.key),
        col(Case.kind),
        col(Case.template_version),
        col(Case.lead_partner_id),
        col(Case.country),
        sql.code(col(Case.status), [s.value for s in CaseStatus]),
        sql.text(col(Case.current_stage)),
        sql.day(col(Case.start_date), in_sql=True),
        sql.day(col(Case.target_date), in_sql=True),
        sql.day(col(Case.forecast_date), in_sql=True),
        sql.seconds(col(Case.closed_at)),
        col(Case.version),
    )


def _read_cases(raw: pd.DataFrame, partners: pd.DataFrame, shapes: _Shapes) -> pd.DataFrame:
    raw = raw.set_index("case_id").sort_index()
    lead = _rows_of(partners.index, raw["lead_partner_id"].to_numpy())
    out = pd.DataFrame(index=raw.index)
    out["key"] = raw["key"].astype(object)
    out[PILOT] = raw[PILOT].astype("category")
    out["template_version"] = raw["template_version"].astype("int64")
    out[PARTNER] = _picked(partners["partner"], lead)
    out[COUNTRY] = raw[COUNTRY].astype("category")
    out["status"] = _decode(raw["status"].to_numpy(), CaseStatus)
    out["current_stage"] = _optional(raw["current_stage"])
    out["calendar"] = _case_calendars(out[COUNTRY], partners, lead)
    out["timezone"] = _picked(partners["timezone"].fillna("UTC"), lead, "UTC")
    for column in ("start_date", "target_date", "forecast_date"):
        out[column] = _days(raw[column])
    out["closed_at"] = _utc(raw["closed_at"].astype("int64"))
    out["closed_on"] = _local_days(out["closed_at"], out["timezone"])
    out["tpl"] = shapes.rows(out[PILOT], out["template_version"])
    return out


MILESTONE_COLUMNS: Final = (
    *("case_id", "seq", "status", "owner_id"),
    *("planned_due", "started_on", "finished_on"),
)


def _milestone_query(sql: _Sql) -> Any:
    return select(
        col(Milestone.case_id),
        col(Milestone.seq),
        sql.code(col(Milestone.status), [s.value for s in MilestoneStatus]),
        sql.key(col(Milestone.owner_id)),
        sql.day(col(Milestone.planned_due)),
        sql.day(col(Milestone.started_on)),
        sql.day(col(Milestone.finished_on)),
    )


DONE_COLUMNS: Final = ("case_id", "owner_id", "planned_due", "finished_on")


def _done_query(sql: _Sql) -> Any:
    """The milestones marked done: their slips, and how many were on time (those with a
    finish date, as `_measure_delivery` counts them done)."""
    return select(
        col(Milestone.case_id),
        sql.key(col(Milestone.owner_id)),
        sql.day(col(Milestone.planned_due)),
        sql.day(col(Milestone.finished_on)),
    ).where(col(Milestone.status) == MilestoneStatus.DONE.value)


OTHER_COLUMNS: Final = ("case_id", "others", "waived", "due_unfinished")
_NOT_DONE: Final = [s.value for s in MilestoneStatus if s is not MilestoneStatus.DONE]


def _others_query(as_of: date) -> Any:
    """The milestones of each case in any other status, counted in the database: all, waived
    (with a finish date), and the others with a planned due date before `as_of`. (Few:
    found through the index on status.)"""
    status, finish = col(Milestone.status), col(Milestone.finished_on)
    waived = (status == MilestoneStatus.WAIVED.value) & finish.is_not(None)

    def count(where: ColumnElement[bool]) -> ColumnElement[Any]:
        return func.sum(sql_case((where, 1), else_=0))

    return (
        select(
            col(Milestone.case_id),
            func.count(),
            count(waived),
            count(~waived & (col(Milestone.planned_due) < as_of)),
        )
        .where(status.in_(_NOT_DONE))
        .group_by(col(Milestone.case_id))
    )


def _read_delivery(
    done: pd.DataFrame, others: pd.DataFrame, as_of: date, context: _Context, work: _Workdays
) -> tuple[pd.DataFrame, pd.DataFrame, IntArray]:
    """`milestone_counts` and `slips` from the milestones marked done and the counts of the
    others, and the row of each slip's case."""
    cases = context.cases
    n = len(cases)
    positions = _rows_of(cases.index, done["case_id"])
    keep = positions >= 0
    if not keep.all():
        done, positions = done[keep], positions[keep]
    due, finish = done["planned_due"].to_numpy(), done["finished_on"].to_numpy()
    finished = finish != _NULL  # done with no finish date: counted as not finished
    late_open = ~finished & (due != _NULL) & (due < (as_of - date(1970, 1, 1)).days)
    at = _rows_of(cases.index, others["case_id"])
    known = at >= 0

    def marked_done(rows: BoolArray) -> IntArray:
        """The milestones marked done, per case, at `rows`."""
        return np.bincount(positions[rows], minlength=n).astype(np.int64)

    def counted(column: str) -> IntArray:
        """A count of the other milestones, per case."""
        out = np.zeros(n, dtype=np.int64)
        out[at[known]] = others[column].to_numpy()[known]
        return out

    every = np.ones(len(positions), dtype=bool)
    counts = pd.DataFrame(
        {
            "milestones": marked_done(every) + counted("others"),
            "done": marked_done(finished),
            "waived": counted("waived"),
            "done_on_time": marked_done(finished & (finish <= due)),
            "due_unfinished": marked_done(late_open) + counted("due_unfinished"),
        },
        index=cases.index,
    )
    if not finished.all():
        done, positions = done[finished], positions[finished]
        due, finish = due[finished], finish[finished]
    calendars = context.calendars(done["owner_id"].to_numpy(), positions)
    slips = _slip_frame(
        done["case_id"].to_numpy(),
        due.astype("datetime64[D]"),
        finish.astype("datetime64[D]"),
        calendars,
        work,
    )
    return counts, slips, positions


def _slip_frame(
    case_ids: Any, due: DayArray, finish: DayArray, calendars: IntArray, work: _Workdays
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "case_id": np.asarray(case_ids, dtype=np.int64),
            "slip_working_days": work.between(due, finish, calendars),
        },
        copy=False,
    )


def _counted(
    details: _DetailFrames, cases: pd.DataFrame, as_of: date, work: _Workdays
) -> tuple[pd.DataFrame, pd.DataFrame, IntArray]:
    """`milestone_counts` and `slips` (with the rows of their cases) from the milestone rows,
    as `_read_delivery` has them from the database."""
    m = details.milestones
    positions = details.positions["milestones"]
    status = m["status"]
    due, finish = _day_array(m["planned_due"]), _day_array(m["finished_on"])
    has_finish = ~np.isnat(finish)
    done = (status == MilestoneStatus.DONE.value).to_numpy() & has_finish
    waived = (status == MilestoneStatus.WAIVED.value).to_numpy() & has_finish
    flags = {
        "milestones": np.ones(len(m), dtype=bool),
        "done": done,
        "waived": waived,
        "done_on_time": done & (finish <= due),
        "due_unfinished": ~(done | waived) & (due < np.datetime64(as_of, "D")),
    }
    counts = pd.DataFrame(
        {
            name: np.bincount(positions[rows], minlength=len(cases)).astype(np.int64)
            for name, rows in flags.items()
        },
        index=cases.index,
    )
    calendars = _codes(m["calendar"])[done]
    slips = _slip_frame(m["case_id"].to_numpy()[done], due[done], finish[done], calendars, work)
    return counts, slips, positions[done]


def _read_details(
    read: _Reader, sql: _Sql, milestone_rows: pd.DataFrame, context: _Context
) -> _DetailFrames:
    """The detail frames of the cases in `context` (rows of others left out)."""
    milestones, milestone_positions = _read_milestones(milestone_rows, context)
    gates, gate_positions = _read_gates(read, sql, context)
    return _DetailFrames(
        milestones=milestones,
        gates=gates,
        events=_read_gate_events(read, sql, context),
        notes=_read_notes(read, sql, context),
        positions={"milestones": milestone_positions, "gates": gate_positions},
    )


def _read_later(engine: Engine, context: _Context) -> _DetailFrames:
    """The detail frames, read after the rest in a snapshot of their own. Every case of
    `context` must still be at the version read then: milestone and gate rows are only ever
    added with a new case (left out here), and every change to one, and every gate event or
    triage note, comes with a claim of the next version of its case; so the rows read are
    those the first snapshot held."""
    with _reader(engine) as read:
        sql = _Sql(read.dialect.name, dates_as_read=read.arrow)
        rows = read.integers_soon(_milestone_query(sql), MILESTONE_COLUMNS)
        now = read.integers(select(col(Case.id), col(Case.version)), ["case_id", "version"])
        known = context.cases.index
        at = _rows_of(pd.Index(now["case_id"].to_numpy()), known.to_numpy())
        versions = np.where(at >= 0, now["version"].to_numpy()[np.maximum(at, 0)], -1)
        moved = np.flatnonzero(versions != context.versions)
        if len(moved):
            first = context.cases["key"].iloc[moved[0]]
            raise StaleCase(
                f"the case store changed after the KPIs were loaded ({len(moved)} case(s), "
                f"{first} first); load them again"
            )
        return _read_details(read, sql, rows(), context)


def _read_milestones(raw: pd.DataFrame, context: _Context) -> tuple[pd.DataFrame, IntArray]:
    cases, shapes = context.cases, context.shapes
    positions = _rows_of(cases.index, raw["case_id"])
    keep = positions >= 0
    if not keep.all():
        raw, positions = raw[keep].reset_index(drop=True), positions[keep]
    calendar = context.calendars(raw["owner_id"].to_numpy(), positions)
    tpl = cases["tpl"].to_numpy()[positions]
    seq = raw["seq"].to_numpy()
    out = pd.DataFrame({"case_id": raw["case_id"], "seq": seq})
    out["key"] = shapes.keys("milestones", tpl, seq)
    out["stage"] = shapes.stages("milestones", tpl, seq)
    out["stage_order"] = shapes.stage_order("milestones", tpl, seq)
    out["status"] = _decode(raw["status"].to_numpy(), MilestoneStatus)
    out["calendar"] = _categorical(calendar, cast(pd.CategoricalDtype, cases["calendar"].dtype))
    for column in ("planned_due", "started_on", "finished_on"):
        out[column] = _days(raw[column].to_numpy())
    return out, positions


def _read_gates(read: _Reader, sql: _Sql, context: _Context) -> tuple[pd.DataFrame, IntArray]:
    cases, shapes = context.cases, context.shapes
    raw = read.integers(
        select(
            col(Gate.case_id),
            col(Gate.seq),
            sql.code(col(Gate.status), [s.value for s in GateStatus]),
            col(Gate.round),
            sql.day(col(Gate.opened_on)),
            sql.day(col(Gate.deadline)),
            sql.day(col(Gate.decided_on)),
        ),
        ["case_id", "seq", "status", "round", "opened_on", "deadline", "decided_on"],
    )
    positions = _rows_of(cases.index, raw["case_id"])
    keep = positions >= 0
    if not keep.all():
        raw, positions = raw[keep].reset_index(drop=True), positions[keep]
    tpl = cases["tpl"].to_numpy()[positions]
    seq = raw["seq"].to_numpy()
    out = pd.DataFrame({"case_id": raw["case_id"], "seq": seq})
    out["key"] = shapes.keys("gates", tpl, seq)
    out["stage"] = shapes.stages("gates", tpl, seq)
    out["stage_order"] = shapes.stage_order("gates", tpl, seq)
    out["status"] = _decode(raw["status"].to_numpy(), GateStatus)
    out["round"] = raw["round"].to_numpy()
    for column in ("opened_on", "deadline", "decided_on"):
        out[column] = _days(raw[column].to_numpy())
    return out, positions


def _of_known_cases(raw: pd.DataFrame, context: _Context) -> pd.DataFrame:
    """The rows of `raw` whose case is one of `context`'s."""
    keep = _rows_of(context.cases.index, raw["case_id"]) >= 0
    return raw if keep.all() else raw[keep].reset_index(drop=True)


def _read_gate_events(read: _Reader, sql: _Sql, context: _Context) -> pd.DataFrame:
    after: Any = col(CaseEvent.after)
    gates = list(context.shapes.key_type.categories)
    raw = read.integers(
        select(
            col(CaseEvent.id),
            col(CaseEvent.case_id),
            sql.code(col(CaseEvent.kind), GATE_EVENTS),
            sql.code(col(CaseEvent.subject), gates),
            sql.key(after["round"].as_integer()),
            sql.seconds(col(CaseEvent.at)),
            sql.day(after["deadline"].as_string()),
        )
        .join(
            Gate,
            (col(Gate.case_id) == col(CaseEvent.case_id))
            & (col(Gate.key) == col(CaseEvent.subject)),
        )
        .where(col(CaseEvent.kind).in_(GATE_EVENTS), col(Gate.round) > 1),
        ["id", "case_id", "kind", "gate", "round", "at", "deadline"],
    ).sort_values("id", kind="stable", ignore_index=True)  # sorted here: no scan in id order
    raw = _of_known_cases(raw, context)
    return pd.DataFrame(
        {
            "case_id": raw["case_id"],
            "kind": _categorical(raw["kind"], GATE_EVENTS),
            "gate": _categorical(raw["gate"], gates),
            "round": raw["round"],
            "at": _utc(raw["at"]),
            "deadline": _days(raw["deadline"]),
        }
    )


def _read_notes(read: _Reader, sql: _Sql, context: _Context) -> pd.DataFrame:
    raw = read.records(
        select(col(CaseEvent.id), col(CaseEvent.case_id), sql.text(col(CaseEvent.comment))).where(
            col(CaseEvent.kind) == "milestone.complete",
            col(CaseEvent.subject) == TRIAGE_MILESTONE,
        ),
        ["id", "case_id", "note"],
    ).sort_values("id", kind="stable", ignore_index=True)  # sorted here: no scan in id order
    raw = _of_known_cases(raw, context)
    return pd.DataFrame(
        {"case_id": raw["case_id"].astype("int64"), "note": raw["note"].fillna("").astype(object)}
    )


class _Shapes:
    """Keys, stages and stage order of every template's milestones and gates, by seq.

    Rows are made from their pinned template in order (seq is the position in it), so the
    load reads seq instead of a key and a stage string per row.
    """

    def __init__(self, templates: Mapping[tuple[str, int], Template]) -> None:
        self.order = {key: i for i, key in enumerate(templates)}
        keys = sorted({n.key for t in templates.values() for n in t.nodes()})
        stages = sorted({s.key for t in templates.values() for s in t.stages})
        self.key_type = pd.CategoricalDtype(keys)
        self.stage_type = pd.CategoricalDtype(stages)
        self._tables: dict[tuple[str, str], IntArray] = {}
        for part in ("milestones", "gates"):
            nodes: list[Sequence[MilestoneSpec | GateSpec]] = [
                t.milestones if part == "milestones" else t.gates for t in templates.values()
            ]
            # One row per template plus a last row of -1 for cases whose template is unknown.
            shape = (len(nodes) + 1, max((len(n) for n in nodes), default=0) + 1)
            key, stage, order = (np.full(shape, -1, dtype=np.int64) for _ in range(3))
            for row, (template, specs) in enumerate(zip(templates.values(), nodes, strict=True)):
                for seq, spec in enumerate(specs):
                    key[row, seq] = keys.index(spec.key)
                    stage[row, seq] = stages.index(spec.stage)
                    order[row, seq] = template.stage_index(spec.stage)
            self._tables |= {(part, "key"): key, (part, "stage"): stage, (part, "order"): order}

    def rows(self, kinds: pd.Series[Any], versions: pd.Series[Any]) -> IntArray:
        """Each case's template row (-1 when its template is not in the store)."""
        codes, pairs = _pairs(_codes(kinds), versions)
        names = [str(k) for k in kinds.cat.categories] + [str(np.nan)]
        found = [self.order.get((names[k], int(v)), -1) for k, v in pairs]
        return np.array(found + [-1], dtype=np.int64)[codes]

    def _take(self, part: str, what: str, tpl: IntArray, seq: IntArray) -> IntArray:
        table = self._tables[(part, what)]
        row = np.where(tpl < 0, table.shape[0] - 1, tpl)
        column = np.where((seq < 0) | (seq >= table.shape[1]), table.shape[1] - 1, seq)
        return table[row, column]

    def keys(self, part: str, tpl: IntArray, seq: IntArray) -> pd.Categorical:
        """Item keys by template row and seq."""
        codes = self._take(part, "key", tpl, seq)
        return pd.Categorical.from_codes(codes, dtype=self.key_type)

    def stages(self, part: str, tpl: IntArray, seq: IntArray) -> pd.Categorical:
        """Item stages by template row and seq."""
        codes = self._take(part, "stage", tpl, seq)
        return pd.Categorical.from_codes(codes, dtype=self.stage_type)

    def stage_order(self, part: str, tpl: IntArray, seq: IntArray) -> IntArray:
        """Position of each item's stage in its template (-1 when unknown)."""
        return self._take(part, "order", tpl, seq)


# --- working days, vectorised ----------------------------------------------------------------


@lru_cache(maxsize=256)
def _busdaycalendar(code: str, first_year: int, last_year: int) -> np.busdaycalendar:
    """Monday to Friday minus the public holidays of a calendar code ("DK", "DE-MV")."""
    country, _, subdivision = code.partition("-")
    days = holidays.country_holidays(
        country, subdiv=subdivision or None, years=range(first_year, last_year + 1)
    )
    return np.busdaycalendar(
        weekmask="1111100", holidays=np.array(sorted(days), dtype="datetime64[D]")
    )


class _Workdays:
    """Working-day arithmetic over arrays of days and calendar codes, vectorised.

    `calendars` are codes into `names` (-1: none, the result is missing). Spans are counted
    from a table of working days so far, one row per calendar (a few hundred kilobytes for
    decades of days); moving dates uses numpy's business-day functions, one call per calendar.
    """

    def __init__(self, names: Sequence[str], first: date, last: date) -> None:
        self.names = list(names)
        # Whole decades with room after, so that successive builds share the holiday arrays.
        self.first_year = first.year // 10 * 10 - 10
        self.last_year = last.year // 10 * 10 + 19
        self._table: tuple[np.datetime64, npt.NDArray[np.int32]] | None = None

    def prepare(self) -> None:
        """Make the table of working days now rather than at the first count."""
        self._counts()

    def _counts(self) -> tuple[np.datetime64, npt.NDArray[np.int32]]:
        """The first day of the table, and per calendar the working days from it to each day."""
        if self._table is None:
            base = np.datetime64(f"{self.first_year}-01-01", "D")
            days = np.arange(base, np.datetime64(f"{self.last_year + 1}-01-01", "D"))
            table = np.zeros((max(len(self.names), 1), len(days)), dtype=np.int32)
            for code, name in enumerate(self.names):
                calendar = _busdaycalendar(name, self.first_year, self.last_year)
                table[code] = np.cumsum(np.is_busday(days, busdaycal=calendar))
            self._table = (base, table)
        return self._table

    def _each(self, rows: BoolArray, calendars: IntArray) -> Iterable[tuple[BoolArray, Any]]:
        for code in np.unique(calendars[rows]):
            if code >= 0:
                calendar = _busdaycalendar(self.names[code], self.first_year, self.last_year)
                yield rows & (calendars == code), calendar

    def between(self, start: Any, end: Any, calendars: IntArray) -> FloatArray:
        """Working days in (start, end], negative when end is before start; NaN if missing."""
        begin, finish = _day_array(start), _day_array(end)
        base, table = self._counts()
        width = table.shape[1]
        counts = table.ravel()
        # Each day's column in the table (NaT becomes numpy's smallest integer: outside).
        i = (begin - base).astype(np.int64)
        j = (finish - base).astype(np.int64)
        inside = (calendars >= 0) & (i >= 0) & (i < width) & (j >= 0) & (j < width)
        if inside.all():
            row = calendars * width
            return cast(FloatArray, (counts[row + j] - counts[row + i]).astype(np.float64))
        out = np.full(len(begin), np.nan)
        row = calendars[inside] * width
        out[inside] = counts[row + j[inside]] - counts[row + i[inside]]
        known = ~(np.isnat(begin) | np.isnat(finish)) & (calendars >= 0)
        # Days beyond the table (decades away): numpy's count, calendar by calendar. It counts
        # a backwards span as [end + 1, start + 1), so count the forward one and negate.
        backwards = finish < begin
        low, high = np.where(backwards, finish, begin), np.where(backwards, begin, finish)
        for rows, calendar in self._each(known & ~inside, calendars):
            counted = np.busday_count(low[rows] + 1, high[rows] + 1, busdaycal=calendar)
            out[rows] = np.where(backwards[rows], -counted, counted)
        return out

    def add(self, days: DayArray, count: int, kind: DayKind, calendars: IntArray) -> DayArray:
        """`count` days of the given kind after each day (`WorkCalendar.add`, vectorised)."""
        if kind is DayKind.CALENDAR:
            return days + np.timedelta64(count, "D")
        if count == 0:
            return days.copy()
        out = np.full(len(days), _NAT)
        for rows, calendar in self._each(~np.isnat(days), calendars):
            # Rolling a holiday back to the working day before it and counting from there is
            # counting from the holiday itself: no working day lies between the two.
            out[rows] = np.busday_offset(days[rows], count, roll="backward", busdaycal=calendar)
        return out

    def roll_forward(self, days: DayArray, calendars: IntArray) -> DayArray:
        """Each day if it is a working day, else the next one."""
        out = np.full(len(days), _NAT)
        for rows, calendar in self._each(~np.isnat(days), calendars):
            out[rows] = np.busday_offset(days[rows], 0, roll="forward", busdaycal=calendar)
        return out


def _calendar_days(start: DayArray, end: DayArray) -> FloatArray:
    """Calendar days from start to end (NaN if either is missing)."""
    days = (end - start).astype("timedelta64[D]")
    return np.where(np.isnat(days), np.nan, days.astype(np.int64)).astype(np.float64)


def _day_array(values: Any) -> DayArray:
    if isinstance(values, pd.Series | pd.Index):
        return cast(DayArray, values.to_numpy(dtype="datetime64[D]"))
    return np.asarray(values, dtype="datetime64[D]")


def _codes(values: pd.Series[Any]) -> IntArray:
    return np.asarray(values.cat.codes, dtype=np.int64)


def _workdays(frames: Frames) -> _Workdays:
    return _memo(frames, "workdays", lambda: _workdays_of(frames.cases, frames.as_of))


def _workdays_of(cases: pd.DataFrame, as_of: date) -> _Workdays:
    """Working days in the calendars of `cases` (and of their milestones' owners), over the
    years they span."""
    today = pd.Timestamp(as_of)
    first = min(cases["start_date"].min(), today) if len(cases) else today
    last = max(cases["target_date"].max(), today) if len(cases) else today
    dtype = cases["calendar"].dtype
    names = list(dtype.categories) if isinstance(dtype, pd.CategoricalDtype) else []
    return _Workdays(names, first.date(), last.date())


def _local_days(stamps: pd.Series[Any], zones: pd.Series[Any]) -> pd.Series[Any]:
    """The day of each UTC time in its row's time zone (naive day timestamps)."""
    out = np.full(len(stamps), _NAT)
    zone = pd.Categorical(zones)
    codes, names = np.asarray(zone.codes, dtype=np.int64), zone.categories
    known = stamps.notna().to_numpy()
    for code in np.unique(codes[known]):
        rows = known & (codes == code)
        name = names[code] if code >= 0 else np.nan
        local = stamps[rows].dt.tz_convert(str(name)).dt.tz_localize(None)
        out[rows] = local.to_numpy(dtype="datetime64[D]")
    return pd.Series(out.astype("datetime64[s]"), index=stamps.index)


# --- shared helpers --------------------------------------------------------------------------


def _memo(frames: Frames, name: str, build: Callable[[], _T]) -> _T:
    """Derived data that several builds share, computed once per `Frames`."""
    if name not in frames._memo:
        frames._memo[name] = build()
    return cast(_T, frames._memo[name])


def _dims(by: Iterable[str], allowed: Sequence[str] = CASE_DIMENSIONS) -> list[str]:
    dims = [by] if isinstance(by, str) else list(by)
    if not dims or len(set(dims)) != len(dims) or any(d not in allowed for d in dims):
        raise InvalidInput(
            f"cannot group KPIs by {', '.join(dims) or 'nothing'}: "
            f"choose one or more of {', '.join(allowed)}"
        )
    return dims


def _as_of(frames: Frames) -> np.datetime64:
    return np.datetime64(frames.as_of, "D")


def _is_open(status: pd.Series[Any]) -> BoolArray:
    return status.isin([s.value for s in OPEN_CASE]).to_numpy()


def _positions(frames: Frames, part: str) -> IntArray:
    """Row of each milestone's (or gate's, or slip's) case in `frames.cases`."""

    def make() -> IntArray:
        if part == "slips":
            return _rows_of(frames.cases.index, frames.slips["case_id"])
        return frames._details.get().positions[part]

    return _memo(frames, f"positions.{part}", make)


def _case_columns(frames: Frames, positions: IntArray, columns: Sequence[str]) -> pd.DataFrame:
    """Columns of the cases at `positions`, categories kept."""
    out: dict[str, Any] = {}
    for column in columns:
        values = frames.cases[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            out[column] = _categorical(_codes(values)[positions], values.dtype)
        else:
            out[column] = values.to_numpy()[positions]
    return pd.DataFrame(out, copy=False)  # fresh arrays: no copy into one block


def _groups(frames: Frames, dims: list[str]) -> pd.Index:
    """Every group of `dims` that has cases, sorted: the rows of a table by those dims."""
    return _memo(frames, f"groups.{dims}", lambda: _Grouping(_keys(frames.cases, dims)).index)


def _by_groups(
    frames: Frames, dims: list[str], table: pd.DataFrame, counts: Sequence[str]
) -> pd.DataFrame:
    """One row per group with cases; counts 0 where nothing was seen; group columns first."""
    out = table.reindex(_groups(frames, dims))
    for column in counts:
        out[column] = out[column].fillna(0).astype("int64")
    return out.reset_index()


class _Grouping:
    """Rows sorted into groups by the values of some keys (in sorted order), for counts and
    order statistics with numpy: no per-group Python, no copy of the rows.

    Rows outside `rows`, or with a missing key, belong to no group. Labels are strings,
    except for integer keys.
    """

    def __init__(self, keys: Mapping[str, Any], rows: BoolArray | None = None) -> None:
        arrays = list(keys.values())
        n = len(arrays[0])
        keep = np.ones(n, dtype=bool) if rows is None else np.asarray(rows, dtype=bool).copy()
        codes, labels = [], []
        for values in arrays:
            code, uniques = pd.factorize(values, sort=True)
            codes.append(np.asarray(code, dtype=np.int64))
            unique = np.asarray(uniques)
            labels.append(unique if unique.dtype.kind in "iu" else unique.astype(str))
            keep &= code >= 0
        sizes = tuple(max(len(u), 1) for u in labels)
        flat = np.ravel_multi_index(tuple(c[keep] for c in codes), sizes)
        total = int(np.prod(sizes))
        if total <= max(4 * n, 1 << 16):  # few possible groups: a lookup table, no sort
            seen = np.zeros(total, dtype=bool)
            seen[flat] = True
            unique_flat = np.flatnonzero(seen)
            lookup = np.full(total, -1, dtype=np.int64)
            lookup[unique_flat] = np.arange(len(unique_flat))
            inverse = lookup[flat]
        else:
            unique_flat, inverse = np.unique(flat, return_inverse=True)
        self.ids = np.full(n, -1, dtype=np.int64)
        self.ids[keep] = inverse
        self._member = keep
        self.size = len(unique_flat)
        parts = np.unravel_index(unique_flat, sizes)
        levels = [label[part] for label, part in zip(labels, parts, strict=True)]
        names = list(keys)
        self.index: pd.Index = (
            pd.MultiIndex.from_arrays(levels, names=names)
            if len(names) > 1
            else pd.Index(levels[0], name=names[0])
        )

    def at(self, positions: IntArray) -> _Grouping:
        """The rows of another table, each in the group of the row at its position here (-1:
        in none): the same groups, in the same order."""
        out = copy(self)
        out.ids = np.where(positions >= 0, self.ids[np.maximum(positions, 0)], -1)
        out._member = out.ids >= 0
        return out

    def count(self, flags: Any = None) -> IntArray:
        """Rows per group (with the flag set, when given)."""
        rows = self._member if flags is None else self._member & np.asarray(flags, dtype=bool)
        return np.bincount(self.ids[rows], minlength=self.size).astype(np.int64)

    def total(self, values: Any) -> IntArray:
        """The sum of integer values per group."""
        numbers = np.asarray(values, dtype=np.int64)[self._member]
        sums = np.bincount(self.ids[self._member], weights=numbers, minlength=self.size)
        return sums.round().astype(np.int64)

    def stats(self, values: Any, name: str, how: Sequence[str]) -> dict[str, FloatArray]:
        """`median`, `p90`, `mean`, `min` or `max` of the values per group (missing values
        left out; NaN where a group has none). Quantiles interpolate linearly."""
        numbers = np.asarray(values, dtype=np.float64)
        measured = (self.ids >= 0) & ~np.isnan(numbers)
        ids, numbers = _sorted_in_groups(self.ids[measured], numbers[measured], self.size)
        n = np.bincount(ids, minlength=self.size)
        start = np.cumsum(n) - n
        has = n > 0
        out: dict[str, FloatArray] = {}
        for stat in how:
            result = np.full(self.size, np.nan)
            if stat in ("median", "p90"):
                position = start + (0.5 if stat == "median" else 0.9) * (n - 1)
                low = np.floor(position).astype(np.int64)
                high = np.ceil(position).astype(np.int64)
                low, high = low[has], high[has]
                fraction = position[has] - low
                result[has] = numbers[low] + fraction * (numbers[high] - numbers[low])
            elif stat == "mean":
                sums = np.bincount(ids, weights=numbers, minlength=self.size)
                result[has] = sums[has] / n[has]
            elif stat == "min":
                result[has] = numbers[start[has]]
            elif stat == "max":
                result[has] = numbers[start[has] + n[has] - 1]
            else:
                raise ValueError(f"unknown statistic {stat}")
            out[f"{stat}_{name}"] = result
        return out

    def table(self, columns: Mapping[str, Any]) -> pd.DataFrame:
        """A table of per-group columns, indexed by the group labels."""
        return pd.DataFrame(dict(columns), index=self.index)


def _sorted_in_groups(
    ids: IntArray, numbers: FloatArray, groups: int
) -> tuple[IntArray, FloatArray]:
    """The values sorted by group, then by value. Whole numbers in a short range (days,
    counts) are counted rather than compared: a histogram per group, read off in order."""
    if len(numbers) and np.abs(numbers).max() < 2**53:
        whole = numbers.astype(np.int64)
        low, high = int(whole.min()), int(whole.max())
        span = high - low + 1
        if span * groups <= max(4 * len(numbers), 1 << 16) and np.array_equal(whole, numbers):
            counts = np.bincount(ids * span + (whole - low), minlength=span * groups)
            values = np.tile(np.arange(low, high + 1, dtype=np.float64), groups)
            labels = np.repeat(np.arange(groups, dtype=np.int64), span)
            return np.repeat(labels, counts), np.repeat(values, counts)
    order = np.lexsort((numbers, ids))
    return ids[order], numbers[order]


def _keys(frame: pd.DataFrame, dims: Sequence[str]) -> dict[str, Any]:
    return {d: frame[d].array for d in dims}


# --- case counts -----------------------------------------------------------------------------


def build_case_counts(frames: Frames, by: Sequence[str] = (PILOT,)) -> pd.DataFrame:
    """Cases per group by status.

    Columns: the `by` dimensions, then `cases` (all), `open` (draft, active or on hold),
    `active`, `on_hold`, `completed`, `cancelled`.
    """
    dims = _dims(by)
    cases = frames.cases
    status = cases["status"]
    groups = _Grouping(_keys(cases, dims))
    counts = groups.table(
        {
            "cases": groups.count(),
            "open": groups.count(_is_open(status)),
            "active": groups.count(status == CaseStatus.ACTIVE.value),
            "on_hold": groups.count(status == CaseStatus.ON_HOLD.value),
            "completed": groups.count(status == CaseStatus.COMPLETED.value),
            "cancelled": groups.count(status == CaseStatus.CANCELLED.value),
        }
    )
    return _by_groups(frames, dims, counts, list(counts.columns))


# --- milestones: on time, slips, overdue, breaches -------------------------------------------


def milestone_facts(frames: Frames) -> pd.DataFrame:
    """One row per milestone, with its case's dimensions and what the KPIs measure on it.

    Columns: case_id, case (key), pilot, partner, country, case_status, milestone, stage,
    status, planned_due, finished_on, `done`, `waived`, `open` (not finished),
    `slip_working_days` (done ones), `on_time` (done on or before the planned due date),
    `overdue_now`, `breached`, `breach_month` (Period: month of the first late day),
    `working_days_late` (breached ones: to the finish, to `as_of`, or to the case's close),
    `breach_state` ("finished late", "open", "open when case closed").
    """
    return _memo(frames, "milestone_facts", lambda: _milestone_facts(frames))


@dataclass(frozen=True)
class _Delivery:
    """What the milestone KPIs measure on each milestone (arrays in `frames.milestones`
    order): the rules of the module docstring, for the facts (`milestone_counts` and `slips`
    count the same, per case)."""

    case_status: pd.Series[Any]  # categorical
    case_open: BoolArray
    done: BoolArray
    waived: BoolArray
    on_time: BoolArray
    overdue_now: BoolArray
    slip: FloatArray  # working days, done milestones only

    @property
    def finished(self) -> BoolArray:
        return self.done | self.waived


def _delivery(frames: Frames) -> _Delivery:
    return _memo(frames, "delivery", lambda: _measure_delivery(frames))


def _measure_delivery(frames: Frames) -> _Delivery:
    m = frames.milestones
    case_status = _case_columns(frames, _positions(frames, "milestones"), ["status"])["status"]
    due, finish = _day_array(m["planned_due"]), _day_array(m["finished_on"])
    status = m["status"]
    has_finish = ~np.isnat(finish)
    done = (status == MilestoneStatus.DONE.value).to_numpy() & has_finish
    waived = (status == MilestoneStatus.WAIVED.value).to_numpy() & has_finish
    case_open = _is_open(case_status)
    slip = np.full(len(m), np.nan)
    slip[done] = _workdays(frames).between(due[done], finish[done], _codes(m["calendar"])[done])
    return _Delivery(
        case_status=case_status,
        case_open=case_open,
        done=done,
        waived=waived,
        on_time=done & (finish <= due),
        overdue_now=~(done | waived) & case_open & (due < _as_of(frames)),
        slip=slip,
    )


def _milestone_facts(frames: Frames) -> pd.DataFrame:
    m = frames.milestones
    positions = _positions(frames, "milestones")
    delivery = _delivery(frames)
    out = _case_columns(frames, positions, ["key", PILOT, PARTNER, COUNTRY, "closed_on"])
    out = out.rename(columns={"key": "case"})
    out.insert(0, "case_id", m["case_id"].to_numpy())
    out.insert(5, "case_status", delivery.case_status)
    out["milestone"] = m["key"].array
    out["stage"] = m["stage"].array
    out["status"] = m["status"].array
    out["planned_due"] = m["planned_due"].to_numpy()
    out["finished_on"] = m["finished_on"].to_numpy()
    due, finish = _day_array(m["planned_due"]), _day_array(m["finished_on"])
    closed = _day_array(out.pop("closed_on"))
    as_of = _as_of(frames)
    finished, case_open = delivery.finished, delivery.case_open
    calendars = _codes(m["calendar"])
    work = _workdays(frames)
    out["done"] = delivery.done
    out["waived"] = delivery.waived
    out["open"] = ~finished
    out["slip_working_days"] = delivery.slip
    out["on_time"] = delivery.on_time
    out["overdue_now"] = delivery.overdue_now
    # The last day the milestone was watched: its finish, today, or the day its case closed.
    watched = np.where(finished, finish, np.where(case_open | np.isnat(closed), as_of, closed))
    breached = due < watched
    out["breached"] = breached
    # Months since 1970-01 are the ordinals of monthly periods (NaT stays NaT).
    month = np.where(breached, due + 1, _NAT).astype("datetime64[M]").astype(np.int64)
    out["breach_month"] = pd.arrays.PeriodArray(month, dtype=pd.PeriodDtype("M"))
    late = np.full(len(m), np.nan)
    late[breached] = work.between(due[breached], watched[breached], calendars[breached])
    out["working_days_late"] = late
    state = np.where(finished, 0, np.where(case_open, 1, 2))
    out["breach_state"] = _categorical(np.where(breached, state, -1), BREACH_STATES)
    return out


def build_milestone_kpis(frames: Frames, by: Sequence[str] = (PILOT,)) -> pd.DataFrame:
    """Delivery of milestones per group (cancelled cases left out).

    Columns: the `by` dimensions, then `milestones`, `open`, `done`, `waived`,
    `done_on_time`, `done_late`, `on_time_pct` (done on time / done x 100, waived left out),
    `median_slip_working_days`, `p90_slip_working_days` (done milestones, in working days of
    the milestone's own calendar, signed), `overdue_now`.

    From `milestone_counts` and `slips`: no milestone rows are read.
    """
    dims = _dims(by)
    cases, counts = frames.cases, frames.milestone_counts
    status = cases["status"]
    groups = _Grouping(_keys(cases, dims), (status != CaseStatus.CANCELLED.value).to_numpy())
    every, done, waived, on_time, due = (
        counts[c].to_numpy()
        for c in ("milestones", "done", "waived", "done_on_time", "due_unfinished")
    )
    slips = groups.at(_positions(frames, "slips"))
    table = groups.table(
        {
            "milestones": groups.total(every),
            "open": groups.total(every - done - waived),
            "done": groups.total(done),
            "waived": groups.total(waived),
            "done_on_time": groups.total(on_time),
            "done_late": groups.total(done - on_time),
            "overdue_now": groups.total(np.where(_is_open(status), due, 0)),
            **slips.stats(
                frames.slips["slip_working_days"], "slip_working_days", ("median", "p90")
            ),
        }
    )
    counted = ["milestones", "open", "done", "waived", "done_on_time", "done_late", "overdue_now"]
    out = _by_groups(frames, dims, table, counted)
    measured = out["done"].where(out["done"] > 0)
    out["on_time_pct"] = (100.0 * out["done_on_time"] / measured).round(2)
    slip_stats = ["median_slip_working_days", "p90_slip_working_days"]
    return out[[*dims, *counted[:-1], "on_time_pct", *slip_stats, "overdue_now"]]


def build_sla_breaches(frames: Frames) -> pd.DataFrame:
    """Every breached milestone, after the fact (see the module rules), oldest first.

    Columns: case, pilot, partner, country, case_status, milestone, stage, status,
    planned_due, finished_on, breach_month, working_days_late, breach_state.
    """
    facts = milestone_facts(frames)
    rows = np.flatnonzero(facts["breached"].to_numpy())
    order = np.lexsort(
        (
            _codes(facts["milestone"])[rows],
            facts["case_id"].to_numpy()[rows],
            _day_array(facts["planned_due"])[rows],
        )
    )
    columns = [
        "case",
        PILOT,
        PARTNER,
        COUNTRY,
        "case_status",
        "milestone",
        "stage",
        "status",
        "planned_due",
        "finished_on",
        "breach_month",
        "working_days_late",
        "breach_state",
    ]
    return facts[columns].take(rows[order]).reset_index(drop=True)


def build_sla_breaches_by_month(frames: Frames, by: Sequence[str] = (PILOT,)) -> pd.DataFrame:
    """SLA breaches per month of breach (the month of the first late day) and group.

    Columns: `month` (Period), the `by` dimensions, `breaches`, `finished_late`, `still_open`
    (open and late now), `open_when_closed`, `median_working_days_late`,
    `max_working_days_late`. Only months with breaches have rows.
    """
    dims = _dims(by)
    facts = milestone_facts(frames)
    # Grouped by the months' ordinals (integers group faster than periods), shown as periods.
    ordinals = np.asarray(facts["breach_month"].array.asi8, dtype=np.int64)
    groups = _Grouping({"month": ordinals, **_keys(facts, dims)}, facts["breached"].to_numpy())
    state = facts["breach_state"]
    out = groups.table(
        {
            "breaches": groups.count(),
            "finished_late": groups.count(state == BREACH_STATES[0]),
            "still_open": groups.count(state == BREACH_STATES[1]),
            "open_when_closed": groups.count(state == BREACH_STATES[2]),
            **groups.stats(facts["working_days_late"], "working_days_late", ("median", "max")),
        }
    ).reset_index()
    out["month"] = pd.arrays.PeriodArray(
        out["month"].to_numpy(dtype=np.int64), dtype=pd.PeriodDtype("M")
    )
    return out


# --- stages ----------------------------------------------------------------------------------


def stage_spans(frames: Frames) -> pd.DataFrame:
    """When each case (cancelled ones left out) entered and left each stage, in template order.

    Columns: case_id, case, pilot, partner, country, stage, stage_order, entered, left (NaT
    while the stage or an earlier one has unfinished work), `working_days` and
    `calendar_days` (entered to left), `in_stage_now` (the case's current stage),
    `age_working_days` (entered to `as_of`, for the current stage).
    """
    return _memo(frames, "stage_spans", lambda: _stage_spans(frames))


def _stage_spans(frames: Frames) -> pd.DataFrame:
    cases = frames.cases
    m, g = frames.milestones, frames.gates
    m_done = m["status"].isin([s.value for s in FINISHED]).to_numpy() & m["finished_on"].notna()
    g_done = (g["status"] == GateStatus.APPROVED.value).to_numpy() & g["decided_on"].notna()
    width = 1 + max([len(t.stages) for t in frames.templates.values()], default=0)
    position = np.concatenate([_positions(frames, "milestones"), _positions(frames, "gates")])
    order = np.concatenate([m["stage_order"].to_numpy(), g["stage_order"].to_numpy()])
    items = pd.DataFrame(
        {
            "slot": position * width + order,
            "unfinished": np.concatenate([~m_done, ~g_done]).astype(np.int64),
            "finish": np.concatenate(
                [
                    _day_array(m["finished_on"].where(m_done)),
                    _day_array(g["decided_on"].where(g_done)),
                ]
            ),
        }
    )
    live = (cases["status"] != CaseStatus.CANCELLED.value).to_numpy()
    items = items[(order >= 0) & (position >= 0) & live[np.maximum(position, 0)]]
    spans = items.groupby("slot", sort=True).agg(
        unfinished=("unfinished", "sum"), finish=("finish", "max")
    )
    slot = spans.index.to_numpy()
    case_row, stage_order = slot // width, slot % width
    by_case = spans.groupby(case_row, sort=False)
    blocked = (by_case["unfinished"].cumsum() > 0).to_numpy()
    left = _day_array(by_case["finish"].cummax())
    left[blocked] = _NAT
    first = np.r_[True, case_row[1:] != case_row[:-1]] if len(slot) else np.zeros(0, bool)
    entered = np.r_[_NAT, left[:-1]] if len(slot) else np.zeros(0, "datetime64[D]")
    starts = _day_array(cases["start_date"])[case_row]
    entered = np.where(first, starts, entered)
    out = _case_columns(frames, case_row, ["key", PILOT, PARTNER, COUNTRY])
    out = out.rename(columns={"key": "case"})
    out.insert(0, "case_id", cases.index.to_numpy()[case_row])
    out["stage"] = _stage_names(frames, cases["tpl"].to_numpy()[case_row], stage_order)
    out["stage_order"] = stage_order
    out["entered"] = entered.astype("datetime64[s]")
    out["left"] = left.astype("datetime64[s]")
    work = _workdays(frames)
    calendars = _codes(cases["calendar"])[case_row]
    out["working_days"] = work.between(entered, left, calendars)
    out["calendar_days"] = _calendar_days(entered, left)
    now = ~np.isnat(entered) & np.isnat(left)
    out["in_stage_now"] = now
    age = np.full(len(out), np.nan)
    age[now] = work.between(entered[now], np.full(now.sum(), _as_of(frames)), calendars[now])
    out["age_working_days"] = age
    return out


def _stage_names(frames: Frames, tpl: IntArray, order: IntArray) -> pd.Categorical:
    """The key of stage number `order` of each row's template."""
    stages = [[s.key for s in t.stages] for t in frames.templates.values()]
    names = sorted({key for keys in stages for key in keys})
    table = np.full((len(stages) + 1, 1 + max(map(len, stages), default=0)), -1, dtype=np.int64)
    for row, keys in enumerate(stages):
        table[row, : len(keys)] = [names.index(key) for key in keys]
    codes = table[np.where(tpl < 0, len(stages), tpl), np.clip(order, 0, table.shape[1] - 1)]
    return _categorical(codes, names)


def build_stage_cycle_times(frames: Frames, by: Sequence[str] = (PILOT,)) -> pd.DataFrame:
    """Cycle time per stage of each pilot (cancelled cases left out), in template order.

    Columns: pilot, any other `by` dimensions, stage, stage_order, `passed` (cases that left
    the stage), `median_working_days`, `p90_working_days`, `mean_working_days`,
    `median_calendar_days` (entered to left), `in_stage_now` (cases whose current stage it
    is), `median_age_working_days` (how long those have been in it, to `as_of`).
    """
    dims = [PILOT, *(d for d in _dims(by) if d != PILOT)]
    spans = stage_spans(frames)
    groups = _Grouping(_keys(spans, [*dims, "stage"]))
    passed = ~np.isnat(_day_array(spans["left"]))
    cycle = np.where(passed, spans["working_days"], np.nan)
    days = np.where(passed, spans["calendar_days"], np.nan)
    table = groups.table(
        {
            "stage_order": groups.stats(spans["stage_order"], "order", ("min",))["min_order"],
            "passed": groups.count(passed),
            "in_stage_now": groups.count(spans["in_stage_now"]),
            **groups.stats(cycle, "working_days", ("median", "p90", "mean")),
            **groups.stats(days, "calendar_days", ("median",)),
            **groups.stats(spans["age_working_days"], "age_working_days", ("median",)),
        }
    )
    out = table.reset_index()
    out["stage_order"] = out["stage_order"].astype("int64")
    out = out.sort_values([*dims, "stage_order"], kind="stable")
    return out[
        [
            *dims,
            "stage",
            "stage_order",
            "passed",
            "median_working_days",
            "p90_working_days",
            "mean_working_days",
            "median_calendar_days",
            "in_stage_now",
            "median_age_working_days",
        ]
    ].reset_index(drop=True)


# --- gates -----------------------------------------------------------------------------------


def gate_rounds(frames: Frames) -> pd.DataFrame:
    """One row per gate round: opened, decided, or still waiting. The current round of each
    gate comes from its row, the rounds before a rework from the audit trail.

    Columns: case_id, case, pilot, partner, country, gate, round, opened_on, deadline,
    decided_on, outcome ("approved", "rejected", "waiting", or "closed": the case closed
    without a decision), `decision_working_days`, `decision_calendar_days`,
    `decided_after_deadline`, `waiting_working_days` (open gates of open cases, to `as_of`).
    Days in the lead partner's time zone, counted in the case's calendar.
    """
    return _memo(frames, "gate_rounds", lambda: _gate_rounds(frames))


def _gate_rounds(frames: Frames) -> pd.DataFrame:
    # The current round of every gate that has opened, from its row.
    g = frames.gates
    now = g[g["opened_on"].notna().to_numpy()]
    status = now["status"]
    current = pd.DataFrame(
        {
            "case_id": now["case_id"].to_numpy(),
            "gate": now["key"].astype(str).to_numpy(),
            "round": now["round"].to_numpy(),
            "opened_on": now["opened_on"].to_numpy(),
            "deadline": now["deadline"].to_numpy(),
            "decided_on": now["decided_on"].where(status != GateStatus.OPEN.value).to_numpy(),
            "approved": (status == GateStatus.APPROVED.value).to_numpy(),
        }
    )
    # Earlier rounds, sent back for rework, from the audit trail.
    events = frames.events
    keys = ["case_id", "gate", "round"]
    events = events.assign(gate=events["gate"].astype(str))
    opened = events[(events["kind"] == GATE_EVENTS[0]).to_numpy()].drop_duplicates(keys)
    decided = events[(events["kind"] != GATE_EVENTS[0]).to_numpy()].drop_duplicates(
        keys, keep="last"
    )
    earlier = opened[[*keys, "at", "deadline"]].merge(
        decided[[*keys, "at", "kind"]], on=keys, how="left", suffixes=("_opened", "_decided")
    )
    latest = current.set_index(["case_id", "gate"])["round"]
    now_round = latest.reindex(pd.MultiIndex.from_frame(earlier[["case_id", "gate"]]))
    earlier = earlier[(earlier["round"].to_numpy() < now_round.to_numpy())]
    zones = frames.cases["timezone"].reindex(earlier["case_id"]).reset_index(drop=True)
    earlier = earlier.reset_index(drop=True)
    past = pd.DataFrame(
        {
            "case_id": earlier["case_id"].to_numpy(),
            "gate": earlier["gate"].to_numpy(),
            "round": earlier["round"].to_numpy(),
            "opened_on": _local_days(earlier["at_opened"], zones).to_numpy(),
            "deadline": earlier["deadline"].to_numpy(),
            "decided_on": _local_days(earlier["at_decided"], zones).to_numpy(),
            "approved": (earlier["kind"] == GATE_EVENTS[1]).to_numpy(),
        }
    )
    rounds = pd.concat([past, current], ignore_index=True)
    rounds = rounds.sort_values(["case_id", "gate", "round"], kind="stable", ignore_index=True)
    positions = _rows_of(frames.cases.index, rounds["case_id"])
    columns = ["key", PILOT, PARTNER, COUNTRY, "status", "calendar"]
    out = _case_columns(frames, positions, columns).rename(columns={"key": "case"})
    out.insert(0, "case_id", rounds["case_id"].to_numpy())
    for column in ("gate", "round", "opened_on", "deadline", "decided_on"):
        out[column] = rounds[column].to_numpy()
    opened_on, decided_on = _day_array(out["opened_on"]), _day_array(out["decided_on"])
    case_open = _is_open(out.pop("status"))
    waiting = np.isnat(decided_on)
    approved = rounds["approved"].to_numpy(dtype=bool)
    outcome = np.where(waiting, np.where(case_open, 2, 3), np.where(approved, 0, 1))
    out["outcome"] = _categorical(outcome, OUTCOMES)
    work = _workdays(frames)
    calendars = _codes(out.pop("calendar"))
    out["decision_working_days"] = work.between(opened_on, decided_on, calendars)
    out["decision_calendar_days"] = _calendar_days(opened_on, decided_on)
    out["decided_after_deadline"] = decided_on > _day_array(out["deadline"])
    today = np.full(len(out), _as_of(frames))
    age = work.between(opened_on, today, calendars)
    out["waiting_working_days"] = np.where(waiting & case_open, age, np.nan)
    return out


def build_gate_times(frames: Frames, by: Sequence[str] = (PILOT,)) -> pd.DataFrame:
    """Gate decision time per gate of each pilot, every round counted.

    Columns: pilot, any other `by` dimensions, gate, `rounds` (opened), `decided`,
    `approved`, `rejected`, `decided_after_deadline`, `median_decision_working_days`,
    `p90_decision_working_days`, `median_decision_calendar_days` (opened to decided),
    `waiting_now` (open gates of open cases), `median_waiting_working_days`.
    """
    dims = [PILOT, *(d for d in _dims(by) if d != PILOT)]
    rounds = gate_rounds(frames)
    groups = _Grouping(_keys(rounds, [*dims, "gate"]))
    outcome = rounds["outcome"]
    out = groups.table(
        {
            "rounds": groups.count(),
            "decided": groups.count(outcome.isin(OUTCOMES[:2])),
            "approved": groups.count(outcome == OUTCOMES[0]),
            "rejected": groups.count(outcome == OUTCOMES[1]),
            "decided_after_deadline": groups.count(rounds["decided_after_deadline"]),
            "waiting_now": groups.count(outcome == OUTCOMES[2]),
            **groups.stats(
                rounds["decision_working_days"], "decision_working_days", ("median", "p90")
            ),
            **groups.stats(rounds["decision_calendar_days"], "decision_calendar_days", ("median",)),
            **groups.stats(rounds["waiting_working_days"], "waiting_working_days", ("median",)),
        }
    ).reset_index()
    return out[
        [
            *dims,
            "gate",
            "rounds",
            "decided",
            "approved",
            "rejected",
            "decided_after_deadline",
            "median_decision_working_days",
            "p90_decision_working_days",
            "median_decision_calendar_days",
            "waiting_now",
            "median_waiting_working_days",
        ]
    ]


# --- the shared SME service ------------------------------------------------------------------


def service_type(notes: pd.Series[Any]) -> pd.Series[Any]:
    """The service type each triage note names first (see SERVICE_TYPES), else
    `unspecified`. Each distinct note is read once."""
    codes, uniques = pd.factorize(notes.fillna("").astype(str).str.lower())
    pattern = "|".join(f"({words})" for _, words in SERVICE_TYPES)
    found = pd.Series(uniques).str.extract(pattern).notna().to_numpy()
    names = np.array([name for name, _ in SERVICE_TYPES] + [UNSPECIFIED], dtype=object)
    first = np.where(found.any(axis=1), found.argmax(axis=1), len(SERVICE_TYPES))
    return pd.Series(names[first][codes] if len(codes) else [], index=notes.index, dtype=object)


def sme_requests(frames: Frames) -> pd.DataFrame:
    """One row per shared-sme-service request.

    Columns: case_id, case, country, partner, status, service_type, start_date,
    first_response_on (the first milestone done), closed_on, `first_response_working_days`,
    `first_response_calendar_days`, `delivery_working_days`, `delivery_calendar_days` (start
    to completion, completed requests). Working days of the case's calendar.
    """
    return _memo(frames, "sme_requests", lambda: _sme_requests(frames))


def _sme_requests(frames: Frames) -> pd.DataFrame:
    cases, m = frames.cases, frames.milestones
    is_sme = (cases[PILOT] == SME_KIND).to_numpy()
    rows = np.flatnonzero(is_sme)
    positions = _positions(frames, "milestones")
    in_sme = (positions >= 0) & is_sme[np.maximum(positions, 0)]
    done = in_sme & (m["status"] == MilestoneStatus.DONE.value).to_numpy()
    done &= m["finished_on"].notna().to_numpy()
    first = m["finished_on"][done].groupby(m["case_id"][done]).min()
    triaged = set(m["case_id"][done & (m["key"] == TRIAGE_MILESTONE).to_numpy()])
    notes = frames.notes.drop_duplicates("case_id", keep="last").set_index("case_id")["note"]
    out = _case_columns(
        frames, rows, ["key", COUNTRY, PARTNER, "status", "start_date", "closed_on"]
    ).rename(columns={"key": "case"})
    ids = cases.index.to_numpy()[rows]
    out.insert(0, "case_id", ids)
    kinds = service_type(notes.reindex(ids).reset_index(drop=True)).to_numpy()
    out.insert(5, SERVICE_TYPE, np.where(np.isin(ids, list(triaged)), kinds, UNTRIAGED))
    out["first_response_on"] = first.reindex(ids).to_numpy()
    completed = (out["status"] == CaseStatus.COMPLETED.value).to_numpy()
    start = _day_array(out["start_date"])
    answered = _day_array(out["first_response_on"])
    delivered = np.where(completed, _day_array(out["closed_on"]), _NAT)
    work = _workdays(frames)
    calendars = _codes(cases["calendar"])[rows]
    out["first_response_working_days"] = work.between(start, answered, calendars)
    out["first_response_calendar_days"] = _calendar_days(start, answered)
    out["delivery_working_days"] = work.between(start, delivered, calendars)
    out["delivery_calendar_days"] = _calendar_days(start, delivered)
    return out


def build_sme_service(frames: Frames, by: Sequence[str] = (COUNTRY, SERVICE_TYPE)) -> pd.DataFrame:
    """The shared SME support service: requests per country and service type.

    Columns: the `by` dimensions (any of country, partner, service_type), `requests`, `open`,
    `completed`, `cancelled` (declined or withdrawn), `responded` (a first milestone done),
    `median_first_response_working_days`, `p90_first_response_working_days`,
    `median_first_response_calendar_days` (start to the first milestone done),
    `median_delivery_working_days`, `p90_delivery_working_days`,
    `median_delivery_calendar_days` (start to completion, completed requests).
    """
    dims = _dims(by, (COUNTRY, PARTNER, SERVICE_TYPE))
    requests = sme_requests(frames)
    groups = _Grouping(_keys(requests, dims))
    status = requests["status"]
    both, median = ("median", "p90"), ("median",)
    return groups.table(
        {
            "requests": groups.count(),
            "open": groups.count(_is_open(status)),
            "completed": groups.count(status == CaseStatus.COMPLETED.value),
            "cancelled": groups.count(status == CaseStatus.CANCELLED.value),
            "responded": groups.count(requests["first_response_on"].notna()),
            **groups.stats(
                requests["first_response_working_days"], "first_response_working_days", both
            ),
            **groups.stats(
                requests["first_response_calendar_days"], "first_response_calendar_days", median
            ),
            **groups.stats(requests["delivery_working_days"], "delivery_working_days", both),
            **groups.stats(requests["delivery_calendar_days"], "delivery_calendar_days", median),
        }
    ).reset_index()


# --- forecast --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    key: str
    gate: bool
    seq: int
    duration: int
    days: DayKind
    after: tuple[tuple[int, int, DayKind], ...]  # (column of the predecessor, lag, lag kind)


def _schedule_order(template: Template) -> list[_Node]:
    """Milestones then gates in dependency waves, exactly as `schedule.order` places them."""
    specs: list[MilestoneSpec | GateSpec] = [*template.milestones, *template.gates]
    pending, placed, done = list(specs), list[MilestoneSpec | GateSpec](), set[str]()
    while pending:
        ready = [s for s in pending if all(d.key in done for d in s.after)]
        if not ready:
            raise ValueError(f"dependency cycle in template {template.kind}")
        placed += ready
        done |= {s.key for s in ready}
        pending = [s for s in pending if s.key not in done]
    column = {s.key: i for i, s in enumerate(placed)}
    seqs = {s.key: i for i, s in enumerate(template.milestones)}
    seqs |= {s.key: i for i, s in enumerate(template.gates)}
    return [
        _Node(
            key=s.key,
            gate=isinstance(s, GateSpec),
            seq=seqs[s.key],
            duration=s.deadline if isinstance(s, GateSpec) else s.duration,
            days=template.day_kind(s),
            after=tuple((column[d.key], d.lag, d.days or template.day_kind(s)) for d in s.after),
        )
        for s in placed
    ]


@dataclass(frozen=True)
class _Rescheduled:
    """One template's open cases rescheduled: a row per case, a column per item."""

    rows: IntArray  # rows of the cases in `frames.cases`
    nodes: list[_Node]
    begin: DayArray
    due: DayArray
    critical: BoolArray
    finished: BoolArray


def _rescheduled(frames: Frames) -> list[_Rescheduled]:
    def make() -> list[_Rescheduled]:
        open_rows = _is_open(frames.cases["status"])
        tpl = frames.cases["tpl"].to_numpy()
        return [
            _reschedule(frames, template, np.flatnonzero(open_rows & (tpl == row)))
            for row, template in enumerate(frames.templates.values())
        ]

    return _memo(frames, "rescheduled", make)


_ITEM_COLUMNS: Final = [
    "case_id",
    "case",
    "item",
    "gate",
    "forecast_start",
    "forecast_due",
    "critical",
    "finished",
]


def forecast_items(frames: Frames) -> pd.DataFrame:
    """Every milestone and gate of every open case, rescheduled as of `as_of`.

    Columns: case_id, case, item, gate (bool), forecast_start, forecast_due, critical (on the
    path that drives the case's end), finished.
    """
    cases = frames.cases
    parts = [
        pd.DataFrame(
            {
                "case_id": np.repeat(cases.index.to_numpy()[r.rows], len(r.nodes)),
                "case": np.repeat(cases["key"].to_numpy()[r.rows], len(r.nodes)),
                "item": np.tile(np.array([n.key for n in r.nodes], dtype=object), len(r.rows)),
                "gate": np.tile(np.array([n.gate for n in r.nodes], dtype=bool), len(r.rows)),
                "forecast_start": r.begin.reshape(-1).astype("datetime64[s]"),
                "forecast_due": r.due.reshape(-1).astype("datetime64[s]"),
                "critical": r.critical.reshape(-1),
                "finished": r.finished.reshape(-1),
            }
        )
        for r in _rescheduled(frames)
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=_ITEM_COLUMNS)


def _reschedule(frames: Frames, template: Template, rows: IntArray) -> _Rescheduled:
    """`schedule.schedule(items, start, today=as_of)` for many cases of one template at once:
    one column of dates per item, the items in the planner's order."""
    nodes = _schedule_order(template)
    n_cases, n_nodes = len(rows), len(nodes)
    cases = frames.cases
    slot = np.full(len(cases), -1, dtype=np.int64)  # case row in `frames.cases` -> row here
    slot[rows] = np.arange(n_cases)
    started = np.full((n_cases, n_nodes), _NAT)
    finished = np.full((n_cases, n_nodes), _NAT)
    calendar = np.full((n_cases, n_nodes), -1, dtype=np.int64)
    present = np.zeros((n_cases, n_nodes), dtype=bool)
    case_calendar = _codes(cases["calendar"])[rows]
    for part in ("milestones", "gates") if n_cases else ():
        items = frames.milestones if part == "milestones" else frames.gates
        columns = np.full(max(n.seq for n in nodes) + 2, -1, dtype=np.int64)
        for j, node in enumerate(nodes):
            if node.gate == (part == "gates"):
                columns[node.seq] = j
        positions = _positions(frames, part)
        r = np.where(positions >= 0, slot[np.maximum(positions, 0)], -1)
        seq = items["seq"].to_numpy()
        c = columns[np.where((seq >= 0) & (seq < len(columns) - 1), seq, len(columns) - 1)]
        keep = (r >= 0) & (c >= 0)
        r, c = r[keep], c[keep]
        if part == "gates":
            start = _day_array(items["opened_on"])[keep]
            end = _day_array(items["decided_on"])[keep]
            done = (items["status"] == GateStatus.APPROVED.value).to_numpy()[keep]
            calendar[r, c] = case_calendar[r]
        else:
            start = _day_array(items["started_on"])[keep]
            end = _day_array(items["finished_on"])[keep]
            done = items["status"].isin([s.value for s in FINISHED]).to_numpy()[keep]
            calendar[r, c] = _codes(items["calendar"])[keep]
        started[r, c] = start
        finished[r, c] = np.where(done, end, _NAT)
        present[r, c] = True
    work = _workdays(frames)
    today = _as_of(frames)
    case_start = _day_array(cases["start_date"])[rows]
    begin = np.full((n_cases, n_nodes), _NAT)
    due = np.full((n_cases, n_nodes), _NAT)
    driver = np.full((n_cases, n_nodes), -1, dtype=np.int64)
    for j, node in enumerate(nodes if n_cases else ()):  # the planner's `_place`, all at once
        cal = calendar[:, j]
        earliest = (
            work.roll_forward(case_start, cal) if node.days is DayKind.WORKING else case_start
        )
        drive = np.full(n_cases, -1, dtype=np.int64)
        for p, lag, lag_days in node.after:
            candidate = work.add(due[:, p], lag, lag_days, cal)
            later = candidate >= earliest
            earliest = np.where(later, candidate, earliest)
            drive = np.where(later, p, drive)
        start = np.where(np.isnat(started[:, j]), earliest, started[:, j])
        end = finished[:, j]
        done = ~np.isnat(end)
        begin[:, j] = np.where(done, np.minimum(start, end), start)
        due[:, j] = np.where(
            done, end, np.maximum(work.add(start, node.duration, node.days, cal), today)
        )
        driver[:, j] = drive
    valid: BoolArray = np.all(present, axis=1)
    due[~valid] = _NAT
    critical = _critical(due, driver, valid)
    return _Rescheduled(rows, nodes, begin, due, critical, ~np.isnat(finished))


def _critical(due: DayArray, driver: IntArray, valid: BoolArray) -> BoolArray:
    """The driving path: from the latest-due item (the last in order on a tie) back along the
    predecessors that drove each start (`schedule._mark_critical`)."""
    n_cases, n_nodes = due.shape
    critical = np.zeros((n_cases, n_nodes), dtype=bool)
    end = np.where(np.isnat(due), np.datetime64("0001-01-01", "D"), due).max(axis=1)
    last = n_nodes - 1 - np.argmax((due == end[:, None])[:, ::-1], axis=1)
    current = np.where(valid, last, -1)
    rows = np.arange(n_cases)
    for _ in range(n_nodes):
        on = current >= 0
        if not on.any():
            break
        critical[rows[on], current[on]] = True
        current = np.where(on, driver[rows, np.maximum(current, 0)], -1)
    return critical


def _row_max(due: DayArray) -> DayArray:
    """The latest date of each row (NaT when the row has a missing date)."""
    if due.shape[1] == 0:
        return np.full(due.shape[0], _NAT)
    return cast(DayArray, due.max(axis=1))


def _driving(r: _Rescheduled) -> npt.NDArray[np.object_]:
    """The first unfinished item on each case's critical path (None when all is finished)."""
    chase = r.critical & ~r.finished
    keys = np.array([n.key for n in r.nodes] + [None], dtype=object)
    first = np.where(chase.any(axis=1), chase.argmax(axis=1), len(r.nodes))
    return cast(npt.NDArray[np.object_], keys[first])


def build_forecast(frames: Frames) -> pd.DataFrame:
    """Each open case's forecast completion as of `as_of`; the cases at risk first, the
    largest slip first.

    Columns: case, pilot, partner, country, status, current_stage, target_date,
    `forecast_date` (the end of its critical path, rescheduled as of `as_of`),
    `slip_working_days` (target to forecast, in the case's calendar, signed),
    `slip_calendar_days`, `at_risk` (forecast after target), `driving_item` (the first
    unfinished item on the critical path: the one to chase), `stored_forecast_date` (as the
    last change to the case left it).
    """
    cases = frames.cases
    parts = _rescheduled(frames)
    rows = np.concatenate([r.rows for r in parts]) if parts else np.zeros(0, np.int64)
    end = np.concatenate([_row_max(r.due) for r in parts]) if parts else np.zeros(0, "M8[D]")
    driving = np.concatenate([_driving(r) for r in parts]) if parts else np.zeros(0, object)
    out = _case_columns(
        frames,
        rows,
        ["key", PILOT, PARTNER, COUNTRY, "status", "current_stage", "target_date"],
    ).rename(columns={"key": "case"})
    for column in (PILOT, PARTNER, COUNTRY, "status"):
        out[column] = out[column].astype(str)
    target, forecast = _day_array(out["target_date"]), end
    out["forecast_date"] = forecast.astype("datetime64[s]")
    work = _workdays(frames)
    calendars = _codes(cases["calendar"])[rows]
    out["slip_working_days"] = work.between(target, forecast, calendars)
    out["slip_calendar_days"] = _calendar_days(target, forecast)
    out["at_risk"] = forecast > target
    out["driving_item"] = driving
    out["stored_forecast_date"] = cases["forecast_date"].to_numpy()[rows]
    slip = np.nan_to_num(out["slip_working_days"].to_numpy(), nan=-np.inf)
    order = np.lexsort((cases.index.to_numpy()[rows], -slip, ~out["at_risk"].to_numpy()))
    return out.take(order).reset_index(drop=True)


# --- everything at once ----------------------------------------------------------------------


def build_all(frames: Frames) -> dict[str, pd.DataFrame]:
    """Every KPI table of the portfolio, by name."""
    tables: dict[str, pd.DataFrame] = {}
    for dim in CASE_DIMENSIONS:
        tables[f"cases_by_{dim}"] = build_case_counts(frames, (dim,))
        tables[f"milestones_by_{dim}"] = build_milestone_kpis(frames, (dim,))
    tables["stage_cycle_times"] = build_stage_cycle_times(frames)
    tables["gate_times"] = build_gate_times(frames)
    tables["sla_breaches"] = build_sla_breaches(frames)
    tables["sla_breaches_by_month"] = build_sla_breaches_by_month(frames)
    tables["sme_service"] = build_sme_service(frames)
    tables["forecast"] = build_forecast(frames)
    return tables
