"""Bulk import of cases and their milestone progress from CSV or XLSX, all or nothing.

For moving a spreadsheet-run pilot into the case store: every row is validated first and
every problem is named with its file, row and column; then the cases are written with Core
executemany INSERTs (four per 500 cases: cases, milestones, gates, audit events) in one
transaction, so 10,000 cases take seconds, not minutes. CLI: `bridgebsr case import`.

Input
-----
The cases sheet, one row per case (header names in any order and any case):

    ref      any text, unique in the file: links progress rows, makes re-runs idempotent
    kind     a pilot kind of the catalog (shared-sme-service, ip-integration, ...)
    title    what the case is about (at most what cases.title holds: 300 characters)
    owner    the case owner's email, a contact of the store
    start    the day the case starts
    partner  optional: the lead partner's code (default: the owner's partner)
    target   optional: the target date (default: the template's planned end)

The progress sheet, optional, one row per milestone that has moved:

    case         a ref from the cases sheet
    milestone    a milestone key of that case's template (gates are not imported)
    status       in_progress | done | waived
    started_on   needed for in_progress; optional for done and waived
    finished_on  needed for done and waived; empty for in_progress
    by           optional: who did it, an email (default: the milestone's owner)

CSV: two files, UTF-8 with or without a BOM, comma or semicolon (as `bridgebsr.sheets` reads
them). XLSX: one workbook with sheets named `cases` and `progress`, or two files (a workbook
of one sheet is read whatever that sheet is called). Dates: YYYY-MM-DD, DD.MM.YYYY, or date
cells of an XLSX sheet.

Validation
----------
Everything is checked before anything is written, and every problem is reported at once
(`InvalidInput.problems`, one line each: `file: row N, column L (name): what`); the message
names the count and the first. The checks: no cell holds a NUL character; the header names
the required columns and no unknown ones; refs are present and unique; the kind is known;
the title is present and fits; the owner is a contact; the partner is a partner; dates are
dates of the years 1900-2999 (calendars.FIRST_DAY..LAST_DAY: planning from them stays within
the calendar); a target is not before the start; a template version already pinned with
other content is refused (as open_case refuses it). Progress: the case is a ref of the cases
sheet, the milestone a milestone of its template, at most one row per case and milestone;
the status is known and has the dates it needs; no date is after the day of `now` at the
lead partner (`--as-of`) or before the case's start; a milestone finishes on or after it
starts; and the lifecycle rules hold as progress.py applies them: a strict milestone starts
or completes only after every predecessor is done or waived (a gate never is: the import
does not decide gates), and not before the day they finished. Waiving needs no finished
predecessors. open_case asks nothing of the owner's role (pilot leads own pilots, case
owners own SME requests), so neither does the import.

What is written
---------------
Per new case exactly what `cases.open_case` writes at the same `now`: the case row (key from
key_sequences, the template version pinned in template_versions, the owner's country, status
active), every milestone and gate with its owner by role, planned dates from the case start
and forecast dates, critical path and current stage as of today at the lead partner, and the
`case.open` audit event with the same `after` plus `import_ref` (the row's ref) and
`import_sha256` (the cases file's checksum); the actor is the owner, the source `import`, the
source_ref `FILE row N`. The dates come from the project's pure scheduler
(`bridgebsr.schedule.schedule`), given the same items planning.items builds from those rows.

Progress rows are replayed as the `milestone start|complete|waive` commands would apply them
(ordered by day, predecessors first): statuses, started_on and finished_on set, one audit
event per step with the same kind and before/after as progress.py writes (finished_on and
days_late on completions and waivers), actor `by`. Then the forecast is planned once more
from the actuals, as planning.reforecast does: gates whose predecessors are all finished
open today with their deadline (`gate.open` events), forecasts, critical path, current stage
and the case forecast move, and the last step's event carries `case_forecast` before and
after when the case forecast moved. The commands would note each step's move and record a
`gate.open` after the step that readied it; the import records the same events, those
`gate.open` after the last step with its actor. The case is written once, at version 1.

Idempotency
-----------
No schema change: the `case.open` event of an imported case records `import_ref`. A row whose
(kind, ref) an earlier import already opened is left as it is and reported unchanged (its
progress rows too): the import opens cases, it does not edit them.

Keys and concurrency
--------------------
Inside one transaction (use `db.write_session`: on SQLite BEGIN IMMEDIATE serialises
writers): the templates are pinned first (the order open_case follows), then the
key_sequences rows of every (prefix, year) in the file are created if missing and, on
PostgreSQL, locked FOR UPDATE in a fixed order; only then are earlier imports read, so two
imports of one file cannot both open its cases. Each sequence moves by the number of new
cases in one UPDATE, so a concurrent `open_case` waits and continues after the imported
keys. Case ids come from the table's own sequence on PostgreSQL (nextval) and after the
largest id under the write lock on SQLite. `dry_run` does all of it and rolls back.

Speed
-----
No ORM unit of work: rows are plain dicts. Working calendars are tabulated once per country
or state (same answers as bridgebsr.calendars, by table lookup); templates, owners by role
and the schedule of a case without progress are computed once per (kind, calendars, start,
today) and shared by every case that has them in common.
"""

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Table, func, insert, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel

from bridgebsr.errors import InvalidInput
from bridgebsr.exchange.catalog import Catalog, checksum
from bridgebsr.exchange.sheets import Sheet, column_letter, read_sheet, refuse_nul
from bridgebsr.rules import lifecycle
from bridgebsr.rules.calendars import WorkCalendar, calendar_for, out_of_range, subdivision_of
from bridgebsr.rules.lifecycle import Change
from bridgebsr.rules.roles import case_role_holders, led_kinds
from bridgebsr.rules.schedule import Item, Link, Slot, order, schedule
from bridgebsr.rules.texts import email_address, email_key, fitting
from models import (
    CASE_OWNER,
    Case,
    CaseStatus,
    DayKind,
    GateSpec,
    GateStatus,
    MilestoneSpec,
    MilestoneStatus,
    Source,
    Template,
)

CASE_COLUMNS = (("ref", "kind", "title", "owner", "start"), ("partner", "target"))
PROGRESS_COLUMNS = (("case", "milestone", "status"), ("started_on", "finished_on", "by"))
STATUSES = {
    "in_progress": MilestoneStatus.IN_PROGRESS,
    "done": MilestoneStatus.DONE,
    "waived": MilestoneStatus.WAIVED,
}
REF_MAX = 120
CHUNK = 500  # cases per round of executemany: bounded memory, a progress bar that moves
ProgressCallback = Callable[[int, int], None]  # (cases written, cases to write)


# ---------------------------------------------------------------------------------------------
# The report


@dataclass
class BulkReport:
    """What an import created and left as it was, as (ref, case key) pairs."""

    created: list[tuple[str, str]] = field(default_factory=list)
    unchanged: list[tuple[str, str]] = field(default_factory=list)
    milestones: int = 0
    dry_run: bool = False

    def summary(self) -> str:
        """One line for the CLI."""
        if self.dry_run:
            return (
                f"cases: would create {len(self.created)}, unchanged {len(self.unchanged)}; "
                f"milestones would be updated {self.milestones}"
            )
        return (
            f"cases: created {len(self.created)}, unchanged {len(self.unchanged)}; "
            f"milestones updated {self.milestones}"
        )


# ---------------------------------------------------------------------------------------------
# Reading the files


@dataclass(frozen=True)
class Part:
    """One sheet of the input and how problems name it (`cases.csv`, `book.xlsx[progress]`)."""

    label: str
    sheet: Sheet


@dataclass(frozen=True)
class Inputs:
    """The cases sheet, the progress sheet if any, and the cases file's checksum."""

    cases: Part
    progress: Part | None
    digest: str


def read_inputs(cases: Path, progress: Path | None = None) -> Inputs:
    """Read the cases file and the progress file (or the workbook's `progress` sheet)."""
    if not cases.is_file():
        raise InvalidInput(f"{cases}: no such file")
    progress_part = None
    if _is_xlsx(cases):
        book = _read_book(cases)
        cases_part = _sheet_named(cases, book, "cases")
        progress_part = book.get("progress") if len(book) > 1 else None
        if progress_part is not None and progress is not None:
            raise InvalidInput(
                f"{cases}: the workbook has a `progress` sheet and --progress names {progress}; "
                "give one of them"
            )
    else:
        cases_part = Part(cases.name, read_sheet(cases))
    if progress is not None:
        if not progress.is_file():
            raise InvalidInput(f"{progress}: no such file")
        if _is_xlsx(progress):
            progress_part = _sheet_named(progress, _read_book(progress), "progress")
        else:
            progress_part = Part(progress.name, read_sheet(progress))
    digest = hashlib.sha256(cases.read_bytes()).hexdigest()
    return Inputs(cases_part, progress_part, digest)


def _is_xlsx(path: Path) -> bool:
    return path.suffix.lower() == ".xlsx"


def _sheet_named(path: Path, book: dict[str, Part], name: str) -> Part:
    """The sheet called `name`; a workbook of one sheet is that sheet, whatever its name."""
    if name in book:
        return book[name]
    if len(book) == 1:
        return next(iter(book.values()))
    raise InvalidInput(f"{path}: no sheet named '{name}' (it has: {', '.join(book)})")


def _read_book(path: Path) -> dict[str, Part]:
    """Every sheet of a workbook by lower-cased name; date cells become ISO dates."""
    from openpyxl import load_workbook  # only XLSX imports pay for openpyxl

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a damaged file
        raise InvalidInput(f"{path}: not a readable XLSX file ({type(exc).__name__})") from None
    try:
        several = len(book.worksheets) > 1
        parts: dict[str, Part] = {}
        for ws in book.worksheets:
            table = [[_xlsx_text(v) for v in row] for row in ws.iter_rows(values_only=True)]
            label = f"{path.name}[{ws.title}]" if several else path.name
            parts[ws.title.strip().lower()] = Part(label, _as_sheet(path, label, table))
        return parts
    finally:
        book.close()


def _xlsx_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else str(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _as_sheet(path: Path, label: str, table: list[list[str]]) -> Sheet:
    """Numbered non-blank rows keyed by lower-cased header, as sheets.read_sheet makes them."""
    if not table or not any(c.strip() for c in table[0]):
        raise InvalidInput(f"{label}: the sheet is empty; the first row must name the columns")
    columns = [c.strip().lower() for c in table[0]]
    rows = []
    for number, cells in enumerate(table[1:], start=2):
        if any(c.strip() for c in cells):
            padded = [*cells, *[""] * (len(columns) - len(cells))]
            rows.append((number, {col: padded[i].strip() for i, col in enumerate(columns) if col}))
    sheet = Sheet(path, columns, rows)
    refuse_nul(label, sheet)
    return sheet


# ---------------------------------------------------------------------------------------------
# Problems, each with its file, row and column


class _Problems:
    def __init__(self) -> None:
        self.found: list[tuple[int, int, int, str, str]] = []

    def add(self, part: Part, rank: int, row: int, column: str, message: str) -> None:
        columns = part.sheet.columns
        index = columns.index(column) if column in columns else len(columns)
        letter = column_letter(index) if column in columns else "?"
        line = f"{part.label}: row {row}, column {letter} ({column}): {message}"
        self.found.append((rank, row, index, part.label, line))

    def raise_if_any(self) -> None:
        if not self.found:
            return
        self.found.sort(key=lambda p: p[:3])
        lines = [p[4] for p in self.found]
        labels = ", ".join(dict.fromkeys(p[3] for p in self.found))
        raise InvalidInput(
            f"{labels}: {len(lines)} problem(s), nothing imported; first: {lines[0]}", lines
        )


def _check_columns(part: Part, spec: tuple[tuple[str, ...], tuple[str, ...]]) -> str | None:
    required, optional = spec
    missing = [c for c in required if c not in part.sheet.columns]
    unknown = [c for c in part.sheet.columns if c and c not in (*required, *optional)]
    if not missing and not unknown:
        return None
    parts = [f"missing column(s) {', '.join(missing)}"] if missing else []
    parts += [f"unknown column(s) {', '.join(unknown)}"] if unknown else []
    return (
        f"{part.label}: row 1: {'; '.join(parts)}; the header must name "
        f"{', '.join(required)} (optional: {', '.join(optional)})"
    )


class _Dates:
    """Date cells parsed once per distinct text."""

    def __init__(self) -> None:
        self._seen: dict[str, date | None] = {}

    def parse(self, value: str) -> date:
        if value not in self._seen:
            self._seen[value] = _parse_date(value)
        parsed = self._seen[value]
        if parsed is None:
            raise ValueError(f"'{value}' is not a date (YYYY-MM-DD or DD.MM.YYYY)")
        if why := out_of_range(parsed):
            raise ValueError(why)
        return parsed


def _parse_date(value: str) -> date | None:
    text_ = value.strip()
    try:
        if len(text_) == 10 and text_[4] == "-":
            return date.fromisoformat(text_)
        if len(text_) > 10 and text_[4] == "-" and text_[10] in " T":  # a datetime at midnight
            moment = datetime.fromisoformat(text_)
            return moment.date() if moment.time() == datetime.min.time() else None
        day, month, year = text_.split(".")
        if len(year) == 4:
            return date(int(year), int(month), int(day))
    except ValueError:
        return None
    return None


# ---------------------------------------------------------------------------------------------
# The store's directory, read once


@dataclass(frozen=True)
class _Person:
    id: int
    email: str
    partner_id: int
    role: str
    country: str


@dataclass(frozen=True)
class _Org:
    id: int
    code: str
    country: str
    region: str
    timezone: str


@dataclass
class _Directory:
    people: dict[str, _Person]
    people_by_id: dict[int, _Person]
    orgs: dict[str, _Org]
    orgs_by_id: dict[int, _Org]
    by_role: dict[str, list[_Person]]  # by id, as open_case picks them
    leads: dict[str, list[_Person]]  # who leads each pilot kind, by id
    pinned: dict[tuple[str, int], str]  # (kind, version) -> checksum


def _tables() -> Mapping[str, Table]:
    return SQLModel.metadata.tables


def _load_directory(conn: Connection) -> _Directory:
    t = _tables()
    contacts, partners, versions = t["contacts"], t["partners"], t["template_versions"]
    rows = conn.execute(
        select(
            contacts.c.id,
            contacts.c.email,
            contacts.c.partner_id,
            contacts.c.role,
            contacts.c.country,
            contacts.c.leads,
        ).order_by(contacts.c.id)
    ).all()
    people = [_Person(r.id, r.email, r.partner_id, r.role, r.country) for r in rows]
    leads: dict[str, list[_Person]] = {}
    for person, r in zip(people, rows, strict=True):
        for kind in led_kinds(r.leads):
            leads.setdefault(kind, []).append(person)
    orgs = [
        _Org(r.id, r.code, r.country, r.region, r.timezone)
        for r in conn.execute(
            select(
                partners.c.id,
                partners.c.code,
                partners.c.country,
                partners.c.region,
                partners.c.timezone,
            )
        )
    ]
    by_role: dict[str, list[_Person]] = {}
    for person in people:
        by_role.setdefault(person.role, []).append(person)
    pinned = {
        (r.kind, r.version): r.checksum
        for r in conn.execute(select(versions.c.kind, versions.c.version, versions.c.checksum))
    }
    return _Directory(
        people={p.email: p for p in people},
        people_by_id={p.id: p for p in people},
        orgs={o.code: o for o in orgs},
        orgs_by_id={o.id: o for o in orgs},
        by_role=by_role,
        leads=leads,
        pinned=pinned,
    )


# ---------------------------------------------------------------------------------------------
# Templates and calendars, prepared once per import


class _Kind:
    """A template as the importer needs it: static columns, links, order, predecessors."""

    def __init__(self, template: Template) -> None:
        self.template = template
        self.digest = checksum(template)
        self.prefix = template.key_prefix
        t = template
        self.milestones = list(t.milestones)
        self.gates = list(t.gates)
        self.m_keys = [m.key for m in self.milestones]
        self.m_index = {key: i for i, key in enumerate(self.m_keys)}
        self.g_keys = {g.key for g in self.gates}
        nodes: list[MilestoneSpec | GateSpec] = [*self.milestones, *self.gates]
        depends = [_links(spec, t) for spec in nodes]
        self.m_static: list[dict[str, Any]] = [
            {
                "key": spec.key,
                "seq": i,
                "title": spec.title,
                "stage": spec.stage,
                "owner_role": spec.owner,
                "duration": spec.duration,
                "days": t.day_kind(spec),
                "strict": t.is_strict(spec),
                "depends_on": depends[i],
            }
            for i, spec in enumerate(self.milestones)
        ]
        offset = len(self.milestones)
        self.g_static: list[dict[str, Any]] = [
            {
                "key": spec.key,
                "seq": i,
                "title": spec.title,
                "stage": spec.stage,
                "approver_role": spec.approvers.role,
                "required": spec.approvers.required,
                "deadline_days": spec.deadline,
                "days": t.day_kind(spec),
                "on_timeout": spec.on_timeout,
                "rework_stage": spec.on_reject.rework,
                "depends_on": depends[offset + i],
            }
            for i, spec in enumerate(self.gates)
        ]
        # What planning.items gives the scheduler for each node (calendars come per case).
        self._shape = [
            (
                spec.key,
                spec.duration if isinstance(spec, MilestoneSpec) else spec.deadline,
                t.day_kind(spec),
                tuple(Link(d["key"], int(d["lag"]), DayKind(d["days"])) for d in depends[i]),
            )
            for i, spec in enumerate(nodes)
        ]
        self.preds = {spec.key: [d["key"] for d in depends[i]] for i, spec in enumerate(nodes)}
        self.strict = {spec.key: t.is_strict(spec) for spec in self.milestones}
        self.roles = sorted({m.owner for m in self.milestones} - {CASE_OWNER})
        self.owner_roles = [m.owner for m in self.milestones]
        self.stages = [s.key for s in t.stages]
        self.node_stage = {spec.key: spec.stage for spec in nodes}
        self._items: dict[tuple[Any, ...], tuple[Item, ...]] = {}
        self._rank: dict[str, int] | None = None

    def items(self, calendars: tuple[WorkCalendar, ...]) -> tuple[Item, ...]:
        """The scheduler's items with each node's calendar (milestones, then gates)."""
        key = tuple(id(c) for c in calendars)
        found = self._items.get(key)
        if found is None:
            found = self._items[key] = tuple(
                Item(k, d, days, cal, after)
                for (k, d, days, after), cal in zip(self._shape, calendars, strict=True)
            )
        return found

    def rank(self, items: tuple[Item, ...]) -> dict[str, int]:
        """Each node's place in dependency order, as schedule.order puts them (calendars play
        no part in it, so any case's items give the same)."""
        if self._rank is None:
            self._rank = {item.key: i for i, item in enumerate(order(items))}
        return self._rank


def _links(spec: MilestoneSpec | GateSpec, template: Template) -> list[dict[str, Any]]:
    """A node's finish-to-start links as open_case stores them."""
    return [
        {"key": d.key, "lag": d.lag, "days": (d.days or template.day_kind(spec)).value}
        for d in spec.after
    ]


class _Calendars:
    """The calendars per country (and state), and which one each case and person uses."""

    def __init__(self, directory: _Directory) -> None:
        self.directory = directory
        self._cals: dict[tuple[str, str | None], WorkCalendar] = {}
        self._subdivisions: dict[tuple[str, str | None], str | None] = {}
        self._people: dict[int, WorkCalendar] = {}

    def get(self, country: str, region: str | None) -> WorkCalendar:
        where = (country, region)
        if where not in self._subdivisions:
            self._subdivisions[where] = subdivision_of(country, region)
        key = (country, self._subdivisions[where])
        if key not in self._cals:
            self._cals[key] = calendar_for(*key)
        return self._cals[key]

    def of_case(self, owner: _Person, lead: _Org) -> WorkCalendar:
        """As planning.calendars_for: the owner's country, the lead's region if it is there."""
        region = lead.region if lead.country == owner.country else None
        return self.get(owner.country, region)

    def of_person(self, person_id: int) -> WorkCalendar:
        found = self._people.get(person_id)
        if found is None:
            person = self.directory.people_by_id[person_id]
            org = self.directory.orgs_by_id[person.partner_id]
            region = org.region if org.country == person.country else None
            found = self._people[person_id] = self.get(person.country, region)
        return found


# ---------------------------------------------------------------------------------------------
# Validation


@dataclass(frozen=True)
class _Step:
    """One validated progress row."""

    row: int
    milestone: str
    status: MilestoneStatus
    started_on: date | None
    finished_on: date | None
    by: str | None


@dataclass
class _NewCase:
    """One validated case row."""

    row: int
    ref: str
    kind: _Kind
    title: str
    owner: _Person
    lead: _Org
    start: date
    target: date | None
    today: date
    steps: list[_Step] = field(default_factory=list)


@dataclass(frozen=True)
class _Valid:
    cases: list[_NewCase]
    progress_label: str


def _nonempty(value: str) -> str:
    if not value:
        raise ValueError("empty; every row needs a value here")
    return value


class _Validator:
    def __init__(
        self, inputs: Inputs, catalog: Catalog, directory: _Directory, now: datetime
    ) -> None:
        self.inputs, self.catalog, self.directory, self.now = inputs, catalog, directory, now
        self.problems = _Problems()
        self.dates = _Dates()
        self.kinds: dict[str, _Kind] = {}
        self.todays: dict[str, date] = {}
        self.emails: dict[str, str | None] = {}

    def run(self) -> _Valid:
        headers = [_check_columns(self.inputs.cases, CASE_COLUMNS)]
        if self.inputs.progress is not None:
            headers.append(_check_columns(self.inputs.progress, PROGRESS_COLUMNS))
        if refused := [h for h in headers if h]:
            raise InvalidInput(refused[0] if len(refused) == 1 else "; ".join(refused), refused)
        cases = self._cases(self.inputs.cases)
        if self.inputs.progress is not None:
            self._progress(self.inputs.progress, cases)
        self.problems.raise_if_any()
        valid = [c for c in cases.values() if isinstance(c, _NewCase)]
        label = self.inputs.progress.label if self.inputs.progress else ""
        return _Valid(valid, label)

    def _add(self, part: Part, rank: int, row: int, column: str, message: str) -> None:
        self.problems.add(part, rank, row, column, message)

    def _cell(self, part: Part, rank: int, row: int, column: str, check: Any, *args: Any) -> Any:
        try:
            return check(*args)
        except ValueError as exc:
            self._add(part, rank, row, column, str(exc))
            return None

    def _kind(self, value: str) -> _Kind:
        name = value.strip().lower()
        if name not in self.kinds:
            template = self.catalog.templates.get(name)
            if template is None:
                known = ", ".join(sorted(self.catalog.templates)) or "none"
                raise ValueError(f"unknown pilot kind '{value}' (known: {known})")
            self.kinds[name] = _Kind(template)
        return self.kinds[name]

    def _owner(self, value: str) -> _Person:
        found = self.directory.people.get(email_key(_nonempty(value)))
        if found is None:
            raise ValueError(f"no contact {value}; add it with `bridgebsr contacts import`")
        return found

    def _partner(self, value: str) -> _Org:
        found = self.directory.orgs.get(value.upper())
        if found is None:
            raise ValueError(f"no partner {value}; add it with `bridgebsr partners import`")
        return found

    def _title(self, value: str) -> str:
        return fitting(_nonempty(value), Case, "title")

    def _date(self, value: str) -> date:
        return self.dates.parse(_nonempty(value))

    def _ref(self, value: str) -> str:
        if len(_nonempty(value)) > REF_MAX:
            raise ValueError(f"{len(value)} characters; a ref has at most {REF_MAX}")
        return value

    def _today(self, zone: str) -> date:
        if zone not in self.todays:
            self.todays[zone] = self.now.astimezone(ZoneInfo(zone)).date()
        return self.todays[zone]

    def _cases(self, part: Part) -> dict[str, _NewCase | None]:
        """Valid case rows by ref (None for a ref whose row has problems)."""
        out: dict[str, _NewCase | None] = {}
        first_row: dict[str, int] = {}
        pinned_checked: set[str] = set()
        cell = self._cell
        for n, raw in part.sheet.rows:
            before = len(self.problems.found)
            ref = cell(part, 0, n, "ref", self._ref, raw["ref"])
            kind: _Kind | None = cell(part, 0, n, "kind", self._kind, raw["kind"])
            title = cell(part, 0, n, "title", self._title, raw["title"])
            owner: _Person | None = cell(part, 0, n, "owner", self._owner, raw["owner"])
            start = cell(part, 0, n, "start", self._date, raw["start"])
            lead: _Org | None = None
            if raw.get("partner"):
                lead = cell(part, 0, n, "partner", self._partner, raw["partner"])
            elif owner is not None:
                lead = self.directory.orgs_by_id[owner.partner_id]
            target = None
            if raw.get("target"):
                target = cell(part, 0, n, "target", self.dates.parse, raw["target"])
                if target is not None and start is not None and target < start:
                    self._add(part, 0, n, "target", f"{target} is before the start ({start})")
            if kind is not None and kind.template.kind not in pinned_checked:
                pinned_checked.add(kind.template.kind)
                stored = self.directory.pinned.get((kind.template.kind, kind.template.version))
                if stored is not None and stored != kind.digest:
                    self._add(
                        part,
                        0,
                        n,
                        "kind",
                        f"template {kind.template.kind} version {kind.template.version} was "
                        "edited after cases were opened with it; raise `version:` in the file "
                        "so running cases keep theirs",
                    )
            if ref is not None and ref in first_row:
                self._add(part, 0, n, "ref", f"'{ref}' also appears in row {first_row[ref]}")
                continue
            if ref is None:
                continue
            first_row[ref] = n
            ok = len(self.problems.found) == before
            if ok and kind and owner and lead and start and title:
                today = self._today(lead.timezone)
                out[ref] = _NewCase(n, ref, kind, title, owner, lead, start, target, today)
            else:
                out[ref] = None
        return out

    def _progress(self, part: Part, cases: dict[str, _NewCase | None]) -> None:
        cell = self._cell
        label = self.inputs.cases.label
        seen: dict[tuple[str, str], int] = {}
        broken: set[tuple[str, str]] = set()  # rows with problems: not blamed on successors
        for n, raw in part.sheet.rows:
            before = len(self.problems.found)
            ref = cell(part, 1, n, "case", _nonempty, raw["case"])
            key = cell(part, 1, n, "milestone", _nonempty, raw["milestone"])
            status = cell(part, 1, n, "status", _status, raw["status"])
            started = finished = None
            if raw.get("started_on"):
                started = cell(part, 1, n, "started_on", self.dates.parse, raw["started_on"])
            if raw.get("finished_on"):
                finished = cell(part, 1, n, "finished_on", self.dates.parse, raw["finished_on"])
            by = cell(part, 1, n, "by", self._email, raw["by"]) if raw.get("by") else None
            if status is MilestoneStatus.IN_PROGRESS:
                if not raw.get("started_on"):
                    self._add(
                        part, 1, n, "started_on", "empty; in_progress needs the day it started"
                    )
                if raw.get("finished_on"):
                    self._add(
                        part,
                        1,
                        n,
                        "finished_on",
                        "an in_progress milestone has not finished; leave this empty or say done",
                    )
            elif status is not None and not raw.get("finished_on"):
                self._add(
                    part, 1, n, "finished_on", f"empty; {status.value} needs the day it finished"
                )
            if started and finished and finished < started:
                self._add(part, 1, n, "finished_on", f"{finished} is before it started ({started})")
            if ref is None or key is None:
                continue
            if ref not in cases:
                self._add(
                    part, 1, n, "case", f"no case '{ref}' in {label} (give a ref of a row there)"
                )
                continue
            if (ref, key) in seen:
                self._add(
                    part,
                    1,
                    n,
                    "milestone",
                    f"'{key}' of '{ref}' also appears in row {seen[ref, key]}",
                )
                continue
            seen[ref, key] = n
            if len(self.problems.found) > before:
                broken.add((ref, key))
            case = cases[ref]
            if case is None:
                continue  # its row has problems, reported there
            if key not in case.kind.m_index:
                self._add(part, 1, n, "milestone", _not_a_milestone(case.kind, key))
                continue
            if status is not None:
                case.steps.append(_Step(n, key, status, started, finished, by))
            else:
                broken.add((ref, key))
        for case in cases.values():
            if case is not None and case.steps:
                self._check_case(part, case, {k for r, k in broken if r == case.ref})

    def _email(self, value: str) -> str:
        if value not in self.emails:
            try:
                self.emails[value] = email_address(value)
            except ValueError:
                self.emails[value] = None
                raise
        found = self.emails[value]
        if found is None:
            raise ValueError(f"'{value}' is not an email address")
        return found

    def _check_case(self, part: Part, case: _NewCase, broken: set[str]) -> None:
        """The dates against the case and today, and the lifecycle rules between milestones."""
        steps = {s.milestone: s for s in case.steps}
        for s in case.steps:
            for column, day in (("started_on", s.started_on), ("finished_on", s.finished_on)):
                if day is None:
                    continue
                if day > case.today:
                    self._add(
                        part, 1, s.row, column, f"{day} is in the future (today is {case.today})"
                    )
                elif day < case.start:
                    self._add(
                        part,
                        1,
                        s.row,
                        column,
                        f"{day} is before case '{case.ref}' started ({case.start})",
                    )
            starts = s.status is not MilestoneStatus.WAIVED or s.started_on is not None
            if not case.kind.strict[s.milestone] or not starts:
                continue  # waiving needs no finished predecessors; nor does a loose milestone
            action = "start" if s.status is MilestoneStatus.IN_PROGRESS else "complete"
            if s.status is MilestoneStatus.WAIVED:
                action = "start"
            first_day = s.started_on or s.finished_on
            first_column = "started_on" if s.started_on is not None else "finished_on"
            for pred in case.kind.preds[s.milestone]:
                done = steps.get(pred)
                if pred in broken:
                    continue  # its own row's problems are reported
                if pred in case.kind.g_keys:
                    self._add(
                        part,
                        1,
                        s.row,
                        "status",
                        f"cannot {action} {s.milestone}: it waits for gate {pred}, which an "
                        "import cannot decide; import the case up to the gate and decide it "
                        "with `bridgebsr gate approve`",
                    )
                elif done is None or done.status is MilestoneStatus.IN_PROGRESS:
                    state = "in_progress" if done else "not in the file"
                    self._add(
                        part,
                        1,
                        s.row,
                        "status",
                        f"cannot {action} {s.milestone}: predecessor {pred} is not done or "
                        f"waived ({state})",
                    )
                elif (
                    done.finished_on is not None
                    and first_day is not None
                    and first_day < done.finished_on
                ):
                    self._add(
                        part,
                        1,
                        s.row,
                        first_column,
                        f"{first_day} is before predecessor {pred} finished ({done.finished_on})",
                    )


def _status(value: str) -> MilestoneStatus:
    found = STATUSES.get(value.strip().lower().replace(" ", "_").replace("-", "_"))
    if found is None:
        raise ValueError(f"'{value}' is not a status ({', '.join(STATUSES)})")
    return found


def _not_a_milestone(kind: _Kind, key: str) -> str:
    if key in kind.g_keys:
        return (
            f"'{key}' is a gate of {kind.template.kind}; an import records milestones only "
            "(decide gates with `bridgebsr gate approve`)"
        )
    return f"'{key}' is not a milestone of {kind.template.kind} (it has: {', '.join(kind.m_keys)})"


# ---------------------------------------------------------------------------------------------
# Planning: what open_case (and then each progress step) leaves in the store


@dataclass
class _Opened:
    """A case without progress as open_case leaves it; shared by cases with the same inputs."""

    baseline: dict[str, Slot]
    m_rows: list[dict[str, Any]]  # without case_id and owner_id
    g_rows: list[dict[str, Any]]  # without case_id
    target: date
    forecast: date
    stage: str | None
    gate_changes: list[Change]


@dataclass
class _Rows:
    cases: list[dict[str, Any]] = field(default_factory=list)
    milestones: list[dict[str, Any]] = field(default_factory=list)
    gates: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def write(self, conn: Connection) -> None:
        t = _tables()
        for name, rows in (
            ("cases", self.cases),
            ("milestones", self.milestones),
            ("gates", self.gates),
            ("case_events", self.events),
        ):
            if rows:
                conn.execute(insert(t[name]), rows)


_MILESTONE_OPEN: dict[str, Any] = {"status": MilestoneStatus.PLANNED, "overdue_on": None}
_GATE_FIXED: dict[str, Any] = {"round": 1, "decided_on": None, "expired_on": None}


class _Planner:
    """Rows for new cases, sharing every plan that does not depend on the case itself."""

    def __init__(
        self,
        directory: _Directory,
        now: datetime,
        digest: str,
        cases_label: str,
        progress_label: str,
    ) -> None:
        self.directory, self.now, self.digest = directory, now, digest
        self.cases_label, self.progress_label = cases_label, progress_label
        self.calendars = _Calendars(directory)
        self.milestones = 0
        self._role_owners: dict[tuple[str, int], dict[str, int | None]] = {}
        self._owners: dict[
            tuple[str, int, int], tuple[list[int | None], tuple[WorkCalendar, ...]]
        ] = {}
        self._baselines: dict[tuple[Any, ...], dict[str, Slot]] = {}
        self._opened: dict[tuple[Any, ...], _Opened] = {}

    # Owners and calendars: as cases._owners_by_role and planning.calendars_for

    def _roles(self, kind: _Kind, lead: int) -> dict[str, int | None]:
        key = (kind.template.kind, lead)
        found = self._role_owners.get(key)
        if found is None:
            found = {}
            leads = self.directory.leads.get(kind.template.kind, [])
            for role in kind.roles:
                holders = self.directory.by_role.get(role, [])
                chosen = case_role_holders(holders, lead, leads)
                found[role] = chosen[0].id if chosen else None
            self._role_owners[key] = found
        return found

    def owners(self, case: _NewCase) -> tuple[list[int | None], tuple[WorkCalendar, ...]]:
        """Each milestone's owner id, and every node's calendar (milestones, then gates)."""
        kind = case.kind
        key = (kind.template.kind, case.owner.id, case.lead.id)
        found = self._owners.get(key)
        if found is None:
            roles = self._roles(kind, case.lead.id)
            ids = [case.owner.id if r == CASE_OWNER else roles[r] for r in kind.owner_roles]
            own = self.calendars.of_case(case.owner, case.lead)
            cals = tuple(own if i is None else self.calendars.of_person(i) for i in ids)
            found = self._owners[key] = (ids, (*cals, *(own,) * len(kind.gates)))
        return found

    # Schedules

    def _baseline(
        self, kind: _Kind, cals: tuple[WorkCalendar, ...], start: date
    ) -> dict[str, Slot]:
        key = (kind.template.kind, *map(id, cals), start)
        found = self._baselines.get(key)
        if found is None:
            found = self._baselines[key] = schedule(kind.items(cals), start)
        return found

    def _open(self, case: _NewCase, cals: tuple[WorkCalendar, ...]) -> _Opened:
        kind, start, today = case.kind, case.start, case.today
        key = (kind.template.kind, *map(id, cals), start, today)
        found = self._opened.get(key)
        if found is not None:
            return found
        baseline = self._baseline(kind, cals, start)
        # planning.reforecast at open: gates without predecessors open today, then forecast.
        opened: dict[str, date] = {}
        changes = []
        for i, gate in enumerate(kind.gates):
            if not kind.preds[gate.key]:
                cal = cals[len(kind.milestones) + i]
                opened[gate.key] = cal.add(today, gate.deadline, kind.template.day_kind(gate))
                changes.append(_gate_open(gate.key, opened[gate.key]))
        if not opened and min(slot.due for slot in baseline.values()) >= today:
            slots = baseline  # nothing due before today: the forecast is the plan, exactly
        else:
            slots = schedule(_actual(kind, cals, {}, opened, today), start, today)
        m_rows = [
            {**static, **_dates(baseline[static["key"]], slots[static["key"]]), **_MILESTONE_OPEN}
            | {"started_on": None, "finished_on": None}
            for static in kind.m_static
        ]
        g_rows = [_gate_row(static, baseline, slots, opened, today) for static in kind.g_static]
        found = self._opened[key] = _Opened(
            baseline=baseline,
            m_rows=m_rows,
            g_rows=g_rows,
            target=max(slot.due for slot in baseline.values()),
            forecast=max(slot.due for slot in slots.values()),
            stage=_stage(kind, set()),
            gate_changes=changes,
        )
        return found

    # One case

    def add(self, case: _NewCase, key: str, case_id: int, rows: _Rows) -> None:
        """Append the case's rows: case, milestones, gates and audit events."""
        kind = case.kind
        ids, cals = self.owners(case)
        opened = self._open(case, cals)
        target = case.target or opened.target
        source_ref = _source_ref(self.cases_label, case.row)
        actor = case.owner.email
        events = rows.events
        events.append(
            self._event(
                case_id,
                Change(
                    "case.open",
                    None,
                    {},
                    {
                        "key": key,
                        "kind": kind.template.kind,
                        "template_version": kind.template.version,
                        "title": case.title,
                        "owner": case.owner.email,
                        "partner": case.lead.code,
                        "start": case.start.isoformat(),
                        "target": target.isoformat(),
                        "import_ref": case.ref,
                        "import_sha256": self.digest,
                    },
                ),
                actor,
                source_ref,
            )
        )
        events.extend(self._event(case_id, c, actor, source_ref) for c in opened.gate_changes)
        if case.steps:
            m_rows, g_rows, forecast, stage = self._replay(case, key, case_id, ids, cals, rows)
        else:
            m_rows, g_rows = opened.m_rows, opened.g_rows
            forecast, stage = opened.forecast, opened.stage
        for base, owner in zip(m_rows, ids, strict=True):
            row = base.copy()
            row["case_id"], row["owner_id"] = case_id, owner
            rows.milestones.append(row)
        for base in g_rows:
            row = base.copy()
            row["case_id"] = case_id
            rows.gates.append(row)
        rows.cases.append(
            {
                "id": case_id,
                "key": key,
                "kind": kind.template.kind,
                "template_version": kind.template.version,
                "title": case.title,
                "lead_partner_id": case.lead.id,
                "owner_id": case.owner.id,
                "country": case.owner.country,
                "status": CaseStatus.ACTIVE,
                "current_stage": stage,
                "start_date": case.start,
                "target_date": target,
                "forecast_date": forecast,
                "opened_at": self.now,
                "closed_at": None,
                "updated_at": self.now,
                "version": 1,
            }
        )

    def _event(self, case_id: int, change: Change, actor: str, source_ref: str) -> dict[str, Any]:
        return {
            "case_id": case_id,
            "at": self.now,
            "actor": actor,
            "kind": change.kind,
            "subject": change.subject,
            "before": change.before,
            "after": change.after,
            "source": Source.IMPORT,
            "source_ref": source_ref,
            "comment": "",
        }

    def _replay(
        self,
        case: _NewCase,
        key: str,
        case_id: int,
        ids: list[int | None],
        cals: tuple[WorkCalendar, ...],
        rows: _Rows,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], date, str | None]:
        """Apply the progress rows as progress_milestone would, then reforecast once."""
        kind, today = case.kind, case.today
        opened = self._open(case, cals)
        baseline = opened.baseline
        status: dict[str, MilestoneStatus] = {}
        started: dict[str, date] = {}
        finished: dict[str, date] = {}
        steps: list[tuple[date, int, int, str, _Step]] = []
        ranks = kind.rank(kind.items(cals))
        for s in case.steps:
            rank = ranks[s.milestone]
            finish = {MilestoneStatus.DONE: "complete", MilestoneStatus.WAIVED: "waive"}
            if s.started_on is not None:
                steps.append((s.started_on, rank, 0, "start", s))
            if s.status in finish and s.finished_on is not None:
                steps.append((s.finished_on, rank, 1, finish[s.status], s))
        steps.sort(key=lambda step: step[:3])
        last: tuple[Change, str, str] | None = None
        for day, _rank, _phase, action, s in steps:
            m = s.milestone
            current = status.get(m, MilestoneStatus.PLANNED)
            blocking = (
                [p for p in kind.preds[m] if not _finished(p, status)] if kind.strict[m] else []
            )
            new, change = lifecycle.milestone_change(action, key, m, current, blocking)
            status[m] = new
            if new in {MilestoneStatus.IN_PROGRESS, MilestoneStatus.DONE}:
                started.setdefault(m, day)
            if new in {MilestoneStatus.DONE, MilestoneStatus.WAIVED}:
                finished[m] = day
                late = (day - baseline[m].due).days
                change.after.update({"finished_on": day.isoformat(), "days_late": max(late, 0)})
            else:
                change.after["started_on"] = day.isoformat()
            owner = ids[kind.m_index[m]]
            actor = s.by or (
                self.directory.people_by_id[owner].email if owner is not None else case.owner.email
            )
            source_ref = _source_ref(self.progress_label, s.row)
            rows.events.append(self._event(case_id, change, actor, source_ref))
            last = (change, actor, source_ref)
        self.milestones += len(status)
        # planning.reforecast: open the gates whose predecessors all finished, then forecast.
        gates_open = {
            str(c.subject): date.fromisoformat(c.after["deadline"]) for c in opened.gate_changes
        }
        more: list[Change] = []
        for i, gate in enumerate(kind.gates):
            if gate.key in gates_open or not all(
                _finished(p, status) for p in kind.preds[gate.key]
            ):
                continue
            cal = cals[len(kind.milestones) + i]
            gates_open[gate.key] = cal.add(today, gate.deadline, kind.template.day_kind(gate))
            more.append(_gate_open(gate.key, gates_open[gate.key]))
        actual = {m: (started.get(m), finished.get(m)) for m in status}
        slots = schedule(
            _actual(kind, cals, actual, gates_open, today),
            case.start,
            today,
        )
        forecast = max(slot.due for slot in slots.values())
        assert last is not None
        change, actor, source_ref = last
        if forecast != opened.forecast:
            change.after["case_forecast"] = forecast.isoformat()
            change.before["case_forecast"] = opened.forecast.isoformat()
        rows.events.extend(self._event(case_id, c, actor, source_ref) for c in more)
        m_rows = []
        for static in kind.m_static:
            m = static["key"]
            row = {**static, **_dates(baseline[m], slots[m]), **_MILESTONE_OPEN}
            row["status"] = status.get(m, MilestoneStatus.PLANNED)
            row["started_on"], row["finished_on"] = started.get(m), finished.get(m)
            m_rows.append(row)
        g_rows = [_gate_row(static, baseline, slots, gates_open, today) for static in kind.g_static]
        done = {
            m for m, st in status.items() if st in {MilestoneStatus.DONE, MilestoneStatus.WAIVED}
        }
        return m_rows, g_rows, forecast, _stage(kind, done)


def _finished(key: str, status: dict[str, MilestoneStatus]) -> bool:
    """Done or waived (a gate is never approved by an import)."""
    return status.get(key) in {MilestoneStatus.DONE, MilestoneStatus.WAIVED}


def _actual(
    kind: _Kind,
    cals: tuple[WorkCalendar, ...],
    milestones: dict[str, tuple[date | None, date | None]],
    gates_open: dict[str, date],
    today: date,
) -> list[Item]:
    """planning.items(actual=True): actual starts and finishes; open gates started today."""
    items = list(kind.items(cals))
    if not milestones and not gates_open:
        return items
    for i, item in enumerate(items):
        if item.key in milestones:
            begun, ended = milestones[item.key]
            items[i] = replace(item, started_on=begun, finished_on=ended)
        elif item.key in gates_open:
            items[i] = replace(item, started_on=today)
    return items


def _dates(planned: Slot, forecast: Slot) -> dict[str, Any]:
    return {
        "planned_start": planned.start,
        "planned_due": planned.due,
        "forecast_start": forecast.start,
        "forecast_due": forecast.due,
        "critical": forecast.critical,
    }


def _gate_row(
    static: dict[str, Any],
    baseline: dict[str, Slot],
    slots: dict[str, Slot],
    opened: dict[str, date],
    today: date,
) -> dict[str, Any]:
    key = static["key"]
    is_open = key in opened
    return {
        **static,
        **_dates(baseline[key], slots[key]),
        **_GATE_FIXED,
        "status": GateStatus.OPEN if is_open else GateStatus.PENDING,
        "opened_on": today if is_open else None,
        "deadline": opened.get(key),
    }


def _gate_open(key: str, deadline: date) -> Change:
    new = lifecycle.next_status(lifecycle.GATE_ACTIONS, "open", GateStatus.PENDING, f"gate {key}")
    return Change(
        "gate.open",
        key,
        {"status": GateStatus.PENDING.value},
        {"status": new.value, "deadline": deadline.isoformat(), "round": 1},
    )


def _stage(kind: _Kind, finished: set[str]) -> str | None:
    """planning.current_stage: the first stage with unfinished work."""
    open_stages = {stage for key, stage in kind.node_stage.items() if key not in finished}
    return next((s for s in kind.stages if s in open_stages), None)


def _source_ref(label: str, row: int) -> str:
    where = f" row {row}"
    return label[: 120 - len(where)] + where


# ---------------------------------------------------------------------------------------------
# Writing: one transaction, a few executemany INSERTs


def import_cases(
    *,
    session: Session,
    catalog: Catalog,
    cases: Path,
    progress: Path | None = None,
    now: datetime,
    dry_run: bool = False,
    on_progress: ProgressCallback | None = None,
) -> BulkReport:
    """Open every case of the cases file and apply its progress, all rows or none.

    Give a `db.write_session`. Raises InvalidInput naming every problem when any row is
    wrong; then nothing is written. `dry_run` validates and plans everything, then rolls back.
    """
    inputs = read_inputs(cases, progress)
    try:
        conn = session.connection()
        directory = _load_directory(conn)
        valid = _Validator(inputs, catalog, directory, now).run()
        report = _write(conn, valid, directory, inputs, now, on_progress)
    except BaseException:
        session.rollback()
        raise
    report.dry_run = dry_run
    if dry_run:
        session.rollback()
    else:
        session.commit()
    return report


def _write(
    conn: Connection,
    valid: _Valid,
    directory: _Directory,
    inputs: Inputs,
    now: datetime,
    on_progress: ProgressCallback | None,
) -> BulkReport:
    report = BulkReport()
    if not valid.cases:
        return report
    kinds = {c.kind.template.kind: c.kind for c in valid.cases}
    _pin(conn, kinds.values(), directory)
    _lock_sequences(conn, sorted({(c.kind.prefix, c.start.year) for c in valid.cases}))
    earlier = _imported(conn)
    new = []
    for c in valid.cases:
        key = earlier.get((c.kind.template.kind, c.ref))
        if key is None:
            new.append(c)
        else:
            report.unchanged.append((c.ref, key))
    keys = _take_keys(conn, new)
    ids = _case_ids(conn, len(new))
    planner = _Planner(directory, now, inputs.digest, inputs.cases.label, valid.progress_label)
    total = len(new)
    if on_progress is not None:
        on_progress(0, total)
    for lo in range(0, total, CHUNK):
        rows = _Rows()
        for case, key, case_id in zip(
            new[lo : lo + CHUNK], keys[lo : lo + CHUNK], ids[lo : lo + CHUNK], strict=True
        ):
            planner.add(case, key, case_id, rows)
            report.created.append((case.ref, key))
        rows.write(conn)
        if on_progress is not None:
            on_progress(min(lo + CHUNK, total), total)
    report.milestones = planner.milestones
    return report


def _pin(conn: Connection, kinds: Iterable[_Kind], directory: _Directory) -> None:
    """Pin each template version not pinned yet (as store.pin_template), tolerating a
    concurrent first pin of the same version as long as its content is the same."""
    table = _tables()["template_versions"]
    rows = [
        {
            "kind": k.template.kind,
            "version": k.template.version,
            "checksum": k.digest,
            "body": k.template.model_dump(mode="json"),
            "first_used_at": datetime.now(UTC),
        }
        for k in kinds
        if (k.template.kind, k.template.version) not in directory.pinned
    ]
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(table).values(rows).on_conflict_do_nothing())
    for row in rows:
        stored = conn.execute(
            select(table.c.checksum).where(
                table.c.kind == row["kind"], table.c.version == row["version"]
            )
        ).scalar_one()
        if stored != row["checksum"]:
            raise InvalidInput(
                f"template {row['kind']} version {row['version']} was pinned with other "
                "content while this import ran; raise `version:` in the file and retry"
            )


def _lock_sequences(conn: Connection, pairs: Sequence[tuple[str, int]]) -> None:
    """Create the key_sequences rows this import needs and, on PostgreSQL, lock them."""
    table = _tables()["key_sequences"]
    values = [{"prefix": p, "year": y, "last": 0} for p, y in pairs]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(table).values(values).on_conflict_do_nothing())
    if conn.dialect.name == "postgresql":
        conn.execute(
            select(table.c.prefix)
            .where(tuple_(table.c.prefix, table.c.year).in_(pairs))
            .order_by(table.c.prefix, table.c.year)
            .with_for_update()
        )
    # On SQLite the write transaction (BEGIN IMMEDIATE) already holds the whole database.


def _imported(conn: Connection) -> dict[tuple[str, str], str]:
    """(kind, import_ref) -> case key of every case an import opened."""
    t = _tables()
    events, cases = t["case_events"], t["cases"]
    ref = events.c.after["import_ref"].as_string()
    query = (
        select(cases.c.kind, ref, cases.c.key)
        .select_from(events.join(cases, cases.c.id == events.c.case_id))
        .where(events.c.kind == "case.open", events.c.source == Source.IMPORT)
    )
    return {(kind, r): key for kind, r, key in conn.execute(query) if r is not None}


def _take_keys(conn: Connection, new: Sequence[_NewCase]) -> list[str]:
    """Move each sequence by its count of new cases at once; keys in file order."""
    table = _tables()["key_sequences"]
    counts: dict[tuple[str, int], int] = {}
    for c in new:
        pair = (c.kind.prefix, c.start.year)
        counts[pair] = counts.get(pair, 0) + 1
    following: dict[tuple[str, int], int] = {}
    for (prefix, year), count in sorted(counts.items()):
        last = conn.execute(
            update(table)
            .where(table.c.prefix == prefix, table.c.year == year)
            .values(last=table.c.last + count)
            .returning(table.c.last)
        ).scalar_one()
        following[prefix, year] = last - count + 1
    keys = []
    for c in new:
        pair = (c.kind.prefix, c.start.year)
        number = following[pair]
        following[pair] = number + 1
        keys.append(f"{c.kind.prefix}-{c.start.year}-{number:04d}")
    return keys


def _case_ids(conn: Connection, count: int) -> list[int]:
    """Ids for new cases: from the id sequence on PostgreSQL, after the largest on SQLite."""
    if count == 0:
        return []
    if conn.dialect.name == "postgresql":
        taken = conn.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('cases', 'id')) "
                "FROM generate_series(1, :count)"
            ),
            {"count": count},
        ).scalars()
        return sorted(int(i) for i in taken)
    top = conn.execute(select(func.max(_tables()["cases"].c.id))).scalar()
    first = int(top or 0) + 1
    return list(range(first, first + count))
