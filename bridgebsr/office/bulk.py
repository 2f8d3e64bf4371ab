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
    team     optional: the case team, `role=email;role=email` (roles of the kind's template,
             contacts not retired): they hold those roles on this case (owners by role)

The progress sheet, optional, one row per milestone that has moved:

    case         a ref from the cases sheet
    milestone    a milestone key of that case's template (gates are not imported)
    status       in_progress | done | waived
    started_on   needed for in_progress; optional for done and waived
    finished_on  needed for done and waived; empty for in_progress
    by           optional: who did it, an email (default: the milestone's owner)

CSV: two files, UTF-8 with or without a BOM, comma or semicolon (as `exchange.sheets` reads
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
starts; and the lifecycle rules hold (`rules.progress.step`, the milestone commands' own
rule): a strict milestone starts or completes only after every predecessor is done or
waived (a gate never is: the import does not decide gates), and not before the day they
finished. Waiving needs no finished predecessors. open_case asks nothing of the owner's role
(pilot leads own pilots, case owners own SME requests), so neither does the import.

What is written
---------------
Per new case exactly what `cases.open_case` writes at the same `now`, planned by the same
rule (`rules.opening`) and written by the same writer (`store.writer.write_cases`): the case
row (key from key_sequences, the template version pinned in template_versions, the owner's
country, status active), every milestone and gate with its owner by role, planned dates from
the case start and forecast dates, critical path and current stage as of today at the lead
partner, and the `case.open` audit event with the same `after` plus `import_ref` (the row's
ref) and `import_sha256` (the cases file's checksum); the actor is the owner, the source
`import`, the source_ref `FILE row N`.

Progress rows are replayed with the step the `milestone start|complete|waive` commands apply
(`rules.progress.step`; ordered by day, predecessors first): statuses, started_on and
finished_on set, one audit event per step (finished_on and days_late on completions and
waivers), actor `by` (default: the milestone's owner). Then the case is settled once, as the
commands settle each step (`rules.progress.settle`: `planning.reforecast`): gates whose
predecessors are all finished open today with their deadline (`gate.open` events),
forecasts, critical path, current stage and the case forecast move, and the last step's
event carries `case_forecast` before and after when the case forecast moved. The commands
would note each step's move and record a `gate.open` after the step that readied it; the
import records the same events, those `gate.open` after the last step with its actor. The
case is written once, at version 1.

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
keys. Case ids are the database's, returned in the order of the cases (one INSERT ...
RETURNING a chunk). `dry_run` does all of it and rolls back.

Speed
-----
No ORM unit of work: plain rows, one executemany INSERT per table and chunk. The directory
is read once (`store.people.load_directory`); owners by role and the dates of a case without
progress are planned once per (kind, calendars, start, today) by `rules.opening.Planner` and
shared by every case that has them in common.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, select
from sqlmodel import Session, SQLModel

from bridgebsr.exchange.case_checks import Kind, NewCase, Validator
from bridgebsr.exchange.case_sheets import read_inputs
from bridgebsr.exchange.catalog import Catalog
from bridgebsr.rules import planning
from bridgebsr.rules import progress as rules
from bridgebsr.rules.opening import Event, Opening, Planned, Planner
from bridgebsr.rules.schedule import order
from bridgebsr.store import writer
from bridgebsr.store.people import load_directory
from models import MilestoneStatus, Source

CHUNK = 500  # cases per round of executemany: bounded memory, a progress bar that moves
ProgressCallback = Callable[[int, int], None]  # (cases written, cases to write)


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
        directory = load_directory(conn)
        valid = Validator(inputs, catalog, directory, _pinned(conn), now).run()
        cases_label = inputs.cases.label
        plans = _Plans(Planner(directory, now), inputs.digest, cases_label, valid.progress_label)
        report = _write(conn, valid.cases, plans, on_progress)
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
    valid: Sequence[NewCase],
    plans: "_Plans",
    on_progress: ProgressCallback | None,
) -> BulkReport:
    report = BulkReport()
    if not valid:
        return report
    kinds = {c.kind.template.kind: c.kind for c in valid}
    writer.pin_templates(conn, [(k.template, k.digest) for k in kinds.values()])
    writer.lock_sequences(conn, [(c.kind.prefix, c.start.year) for c in valid])
    earlier = _imported(conn)
    new = []
    for c in valid:
        key = earlier.get((c.kind.template.kind, c.ref))
        if key is None:
            new.append(c)
        else:
            report.unchanged.append((c.ref, key))
    keys = writer.take_keys(conn, [(c.kind.prefix, c.start.year) for c in new])
    total = len(new)
    if on_progress is not None:
        on_progress(0, total)
    now = plans.planner.now
    for lo in range(0, total, CHUNK):
        chunk = list(zip(new[lo : lo + CHUNK], keys[lo : lo + CHUNK], strict=True))
        planned = [plans.case(case, key) for case, key in chunk]
        writer.write_cases(conn, planned, now=now, source=Source.IMPORT)
        report.created.extend((case.ref, key) for case, key in chunk)
        if on_progress is not None:
            on_progress(min(lo + CHUNK, total), total)
    report.milestones = plans.milestones
    return report


class _Plans:
    """Each new case as `rules.opening` opens it, then its progress replayed."""

    def __init__(self, planner: Planner, digest: str, cases_label: str, progress_label: str):
        self.planner, self.digest = planner, digest
        self.cases_label, self.progress_label = cases_label, progress_label
        self.milestones = 0
        self._ranks: dict[str, dict[str, int]] = {}

    def case(self, case: NewCase, key: str) -> Planned:
        note = (("import_ref", case.ref), ("import_sha256", self.digest))
        opening = Opening(
            case.kind.template,
            case.title,
            case.owner,
            case.lead,
            case.start,
            case.today,
            case.target,
            note,
            case.team,
            case.fields,
        )
        planned = self.planner.plan(
            opening, key, source_ref=_source_ref(self.cases_label, case.row)
        )
        if case.steps:
            self._replay(case, planned)
        return planned

    def _rank(self, kind: Kind, plan: planning.Plan) -> dict[str, int]:
        """Each item's place in dependency order, as the scheduler orders them (calendars
        play no part in it, so any case of the kind gives the same)."""
        found = self._ranks.get(kind.template.kind)
        if found is None:
            items = planning.items(plan, actual=False)
            found = self._ranks[kind.template.kind] = {
                item.key: i for i, item in enumerate(order(items))
            }
        return found

    def _replay(self, case: NewCase, planned: Planned) -> None:
        """Apply the progress rows as the milestone commands would (`rules.progress.step`),
        ordered by day and dependency, then settle the case once."""
        plan = planned.plan
        ranks = self._rank(case.kind, plan)
        finish = {MilestoneStatus.DONE: "complete", MilestoneStatus.WAIVED: "waive"}
        steps = []
        for s in case.steps:
            rank = ranks[s.milestone]
            if s.started_on is not None:
                steps.append((s.started_on, rank, 0, "start", s))
            if s.status in finish and s.finished_on is not None:
                steps.append((s.finished_on, rank, 1, finish[s.status], s))
        steps.sort(key=lambda step: step[:3])
        by_key = {m.key: m for m in plan.milestones}
        people = self.planner.directory.people
        last: Event | None = None
        for day, _rank, _phase, action, s in steps:
            milestone = by_key[s.milestone]
            change = rules.step(plan, milestone, action, day)
            owner = milestone.owner_id
            actor = s.by or (people[owner].email if owner is not None else case.owner.email)
            last = Event(change, actor, _source_ref(self.progress_label, s.row))
            planned.events.append(last)
        self.milestones += len({s.milestone for s in case.steps})
        assert last is not None
        more = rules.settle(plan, case.kind.template, case.today, [last.change])
        planned.events.extend(Event(c, last.actor, last.source_ref) for c in more)


def _source_ref(label: str, row: int) -> str:
    where = f" row {row}"
    return label[: 120 - len(where)] + where


def _pinned(conn: Connection) -> dict[tuple[str, int], str]:
    """(kind, version) -> checksum of every pinned template."""
    versions = SQLModel.metadata.tables["template_versions"]
    found = conn.execute(select(versions.c.kind, versions.c.version, versions.c.checksum))
    return {(kind, version): digest for kind, version, digest in found}


def _imported(conn: Connection) -> dict[tuple[str, str], str]:
    """(kind, import_ref) -> case key of every case an import opened."""
    t = SQLModel.metadata.tables
    events, cases = t["case_events"], t["cases"]
    ref = events.c.after["import_ref"].as_string()
    query = (
        select(cases.c.kind, ref, cases.c.key)
        .select_from(events.join(cases, cases.c.id == events.c.case_id))
        .where(events.c.kind == "case.open", events.c.source == Source.IMPORT)
    )
    return {(kind, r): key for kind, r, key in conn.execute(query) if r is not None}
