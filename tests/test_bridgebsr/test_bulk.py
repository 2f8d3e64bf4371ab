"""Bulk import of cases and progress: the same rows as open_case and the milestone commands,
all or nothing with every problem located, idempotent, keys shared with open_case.

What depends on the database runs on a SQLite file and on PostgreSQL (`consortium`); file
formats and the command on SQLite only (`on_sqlite`)."""

import csv
import itertools
import json
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook
from sqlalchemy import Connection, select, text
from sqlmodel import SQLModel
from typer.testing import CliRunner

from bridgebsr.bootstrap import Runtime
from bridgebsr.cli.bulk import import_cases
from bridgebsr.demo import DATA, load_consortium
from bridgebsr.errors import InvalidInput
from bridgebsr.exchange.catalog import load_catalog
from bridgebsr.office import bulk, cases, progress
from bridgebsr.store.db import write_session
from models import FieldSpec, Source, Template
from tests.conftest import at, migrated

NOW = at("2026-04-15")  # a Wednesday, 10:00 UTC: the same day everywhere in the region
SME, IP, LSF = "shared-sme-service", "ip-integration", "life-science-foundation"
TABLES = (
    "cases",
    "milestones",
    "gates",
    "gate_decisions",
    "case_events",
    "template_versions",
    "key_sequences",
    "notifications",
)
CASE_HEADER = ["ref", "kind", "title", "owner", "start", "partner"]


@pytest.fixture
def on_sqlite(tmp_path: Path) -> Iterator[Runtime]:
    """A migrated SQLite case store with the consortium, for what no database changes."""
    with migrated(f"sqlite:///{tmp_path / 'cases.db'}", tmp_path / "home") as rt:
        load_consortium(rt)
        yield rt


def _row(ref: str, kind: str, title: str, owner: str, start: str, partner: str = "") -> list[str]:
    """A cases row; `owner` without the `.example` every shipped address ends in."""
    return [ref, kind, title, f"{owner}.example", start, partner]


# Owners in every country of the consortium, explicit and default lead partners, starts on
# holidays, weekends, in the past, today and in the future, and a start in 2025.
CASES = [
    _row(
        "sme-1",
        SME,
        "Licensing help for a Danish diagnostics SME",
        "anders.bogh@scanbalt",
        "2026-03-02",
    ),
    _row(
        "sme-2",
        SME,
        "Förstudie: Finanzierung für ein Start-up",
        "sabine.wuerth@steinbeis",
        "2026-01-01",
    ),
    _row("sme-3", SME, "Partnering in Oulu", "aino.makela@bioforum-oulu", "2026-04-03"),
    _row("sme-4", SME, "EU programme advice", "oskar.lundback@lundback-dx", "2026-03-07", "ncp-lt"),
    _row(
        "sme-5", SME, "Investor match (future start)", "ruta.zemaityte@gintarelis-bio", "2026-05-14"
    ),
    _row(
        "sme-6",
        SME,
        "Ørland marine bioactives IP",
        "ingrid.odegard@orland-marine",
        "2026-04-13",
        "LBA",
    ),
    _row("sme-7", SME, "A request from last year", "henrik.oberg@ostersjo-vita", "2025-12-22"),
    _row("sme-8", SME, "Starts today", "Anders.Bogh@ScanBalt", "2026-04-15", "BCV"),
    _row("sme-9", SME, "Owned by a pilot lead", "katrin.schaefer@bioconvalley", "2026-02-16"),
    _row("sme-10", SME, "Owner abroad of her partner", "karin.astrom@mva", "2026-03-30"),
    _row("ip-1", IP, "IP integration, Copenhagen", "soren.ostergaard@scanbalt", "2026-01-05"),
    _row("ip-2", IP, "IP integration, Medicon Valley", "karin.astrom@mva", "2026-02-02", "MVA"),
    _row(
        "ip-3",
        IP,
        "IP integration, Baden-Württemberg",
        "sabine.wuerth@steinbeis",
        "2026-06-01",
        "STEINBEIS",
    ),
    _row(
        "ip-4", IP, "IP integration started 2025", "matthias.koehler@steinbeis", "2025-09-01", "BCV"
    ),
    _row(
        "lsf-1",
        LSF,
        "Top of Europe foundation",
        "katrin.schaefer@bioconvalley",
        "2026-02-02",
        "BCV",
    ),
    _row(
        "lsf-2", LSF, "Foundation, Finnish founders", "jussi.hakkinen@bioforum-oulu", "2025-11-03"
    ),
    _row("lsf-3", LSF, "Foundation, Estonia", "triin.saask@biotech-ee", "20.04.2026", "EBA"),
    _row("sme-11", SME, "Advisor-owned request", "egle.paulauskiene@ncp-lt", "2026-03-16"),
    _row("sme-12", SME, "Oulu again", "aino.makela@bioforum-oulu", "2026-03-02", "BIOFORUM-OULU"),
    _row(
        "ip-5", IP, "IP integration, Warsaw", "grzegorz.rozanski@ippt-pan", "2026-03-09", "IPPT-PAN"
    ),
]
PROGRESS_HEADER = ["case", "milestone", "status", "started_on", "finished_on", "by"]
PROGRESS_CASES = [
    _row("p-sme-1", SME, "Late interview", "anders.bogh@scanbalt", "2026-02-02"),
    _row("p-sme-2", SME, "Up to the acceptance gate", "ingrid.odegard@orland-marine", "2026-02-09"),
    _row(
        "p-ip",
        IP,
        "Kick-off done, loose milestone early",
        "soren.ostergaard@scanbalt",
        "2026-01-05",
    ),
    _row(
        "p-lsf",
        LSF,
        "Study started, then waived",
        "katrin.schaefer@bioconvalley",
        "2026-02-02",
        "BCV",
    ),
]
# In dependency order, so that (day, file row) is the order the commands would be given in.
PROGRESS = [
    ["p-sme-1", "request-intake", "done", "", "2026-02-03", ""],
    ["p-sme-1", "needs-interview", "done", "2026-02-04", "2026-02-13", "elin.sjoberg@mva.example"],
    ["p-sme-1", "triage-decision", "done", "", "2026-02-16", ""],
    ["p-sme-1", "nda", "waived", "", "2026-02-17", ""],
    ["p-sme-1", "cluster-search", "in_progress", "2026-02-17", "", ""],
    ["p-sme-2", "request-intake", "done", "", "2026-02-10", ""],
    ["p-sme-2", "needs-interview", "done", "", "2026-02-13", ""],
    ["p-sme-2", "triage-decision", "done", "", "2026-02-17", ""],
    ["p-sme-2", "nda", "done", "2026-02-18", "2026-02-25", ""],
    ["p-sme-2", "cluster-search", "Done", "", "27.02.2026", ""],
    ["p-sme-2", "match-proposal", "done", "", "2026-03-04", "Ingrid.Odegard@Orland-Marine.example"],
    ["p-ip", "kickoff", "done", "", "2026-01-16", ""],
    ["p-ip", "regional-workshops", "in progress", "2026-02-02", "", ""],
    ["p-ip", "baseline-data", "done", "", "2026-02-20", ""],
    ["p-lsf", "feasibility-study", "waived", "2026-02-03", "2026-02-10", ""],
]  # fmt: skip


def _csv(path: Path, rows: Sequence[Sequence[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def _import(
    rt: Runtime,
    cases_file: Path,
    progress_file: Path | None = None,
    *,
    dry_run: bool = False,
    now: datetime = NOW,
) -> bulk.BulkReport:
    with write_session(rt.engine) as session:
        return bulk.import_cases(
            session=session,
            catalog=rt.catalog,
            cases=cases_file,
            progress=progress_file,
            now=now,
            dry_run=dry_run,
        )


def _open(rt: Runtime, row: Sequence[str]) -> str:
    ref, kind, title, owner, start, partner = row
    with write_session(rt.engine) as session:
        return cases.open_case(
            session=session,
            catalog=rt.catalog,
            kind=kind,
            title=title,
            owner_email=owner,
            partner_code=partner or None,
            start=_day(start),
            now=NOW,
            source=Source.IMPORT,
        ).key


def _day(value: str) -> date:
    """A file's date: YYYY-MM-DD or DD.MM.YYYY."""
    if "." in value:
        day, month, year = (int(part) for part in value.split("."))
        return date(year, month, day)
    return date.fromisoformat(value)


def _counts(rt: Runtime) -> dict[str, int]:
    with rt.engine.connect() as conn:
        return {
            t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES
        }


def _state(conn: Connection, key: str) -> dict[str, Any]:
    """Every column of a case, its milestones, gates and events, less ids and keys."""
    t = SQLModel.metadata.tables
    case = dict(conn.execute(select(t["cases"]).where(t["cases"].c.key == key)).mappings().one())
    case_id = case.pop("id")
    case.pop("key")

    def rows(name: str, order: Any) -> list[dict[str, Any]]:
        table = t[name]
        found = conn.execute(select(table).where(table.c.case_id == case_id).order_by(order))
        return [
            {k: v for k, v in r.items() if k not in {"id", "case_id", "source_ref"}}
            for r in found.mappings()
        ]

    events = rows("case_events", t["case_events"].c.id)
    for event in events:
        if event["kind"] == "case.open":
            assert event["after"].pop("key") == key
            event["after"].pop("import_ref", None)
            event["after"].pop("import_sha256", None)
    return {
        "case": case,
        "milestones": rows("milestones", t["milestones"].c.seq),
        "gates": rows("gates", t["gates"].c.seq),
        "events": events,
    }


def _keys_by_ref(report: bulk.BulkReport) -> dict[str, str]:
    return dict(report.created)


# --- the same rows as open_case ---------------------------------------------------------------


def test_imported_cases_are_the_cases_open_case_opens(consortium: Runtime, tmp_path: Path) -> None:
    rt = consortium
    report = _import(rt, _csv(tmp_path / "cases.csv", [CASE_HEADER, *CASES]))
    assert report.summary() == "cases: created 20, unchanged 0; milestones updated 0"
    imported = _keys_by_ref(report)
    assert [imported[r] for r in ("sme-1", "sme-2", "sme-7", "ip-4", "lsf-1", "lsf-2", "ip-5")] == [
        "SME-2026-0001",
        "SME-2026-0002",
        "SME-2025-0001",
        "IP-2025-0001",
        "LSF-2026-0001",
        "LSF-2025-0001",
        "IP-2026-0004",
    ]
    opened = {row[0]: _open(rt, row) for row in CASES}  # the same cases, one by one
    assert opened["sme-1"] == "SME-2026-0012" and opened["sme-7"] == "SME-2025-0002"
    with rt.engine.connect() as conn:
        for row in CASES:
            ours, theirs = _state(conn, imported[row[0]]), _state(conn, opened[row[0]])
            assert ours == theirs, row[0]
    # Starts in the past push unfinished work to today; one template version pinned per kind.
    with rt.engine.connect() as conn:
        ip4 = _state(conn, imported["ip-4"])
        assert ip4["case"]["forecast_date"] > ip4["case"]["target_date"]
        assert ip4["case"]["current_stage"] == "scoping"
        pinned = conn.execute(text("SELECT kind FROM template_versions ORDER BY kind")).all()
    assert [k for (k,) in pinned] == [IP, LSF, SME]


def test_the_open_event_records_the_ref_and_the_file(consortium: Runtime, tmp_path: Path) -> None:
    rows = [[*CASE_HEADER, "target"], [*CASES[0], "2026-12-31"], [*CASES[1], ""]]
    path = _csv(tmp_path / "cases.csv", rows)
    _import(consortium, path)
    with consortium.engine.connect() as conn:
        events = conn.execute(
            text("SELECT actor, source, source_ref, after FROM case_events ORDER BY id")
        ).all()
    first = json.loads(events[0][3]) if isinstance(events[0][3], str) else events[0][3]
    assert tuple(events[0][:3]) == ("anders.bogh@scanbalt.example", "import", "cases.csv row 2")
    assert first["import_ref"] == "sme-1"
    assert len(first["import_sha256"]) == 64
    assert first["target"] == "2026-12-31"  # given: kept, though the plan ends earlier
    assert events[1][2] == "cases.csv row 3"
    with consortium.engine.connect() as conn:
        targets = conn.execute(text("SELECT target_date FROM cases ORDER BY id")).scalars()
        # sme-2's sme-advisor items are the SME pilot's lead's (DK, no Epiphany off).
        assert [str(t) for t in targets] == ["2026-12-31", "2026-03-04"]


# --- progress -----------------------------------------------------------------------------------


def _replay(rt: Runtime, keys: dict[str, str]) -> None:
    """Give the milestone commands the progress rows, in the order of their days."""
    steps = []
    for i, (ref, milestone, status, started, finished, by) in enumerate(PROGRESS):
        status = status.lower().replace(" ", "_")
        if started:
            steps.append((date.fromisoformat(started), i, 0, ref, milestone, "start", by))
        if status in {"done", "waived"}:
            day = _day(finished)
            action = "complete" if status == "done" else "waive"
            steps.append((day, i, 1, ref, milestone, action, by))
    for day, _i, _phase, ref, milestone, action, by in sorted(steps):
        with rt.engine.connect() as conn:
            owner = conn.execute(
                text(
                    "SELECT c.email FROM milestones m JOIN cases k ON k.id = m.case_id "
                    "JOIN contacts c ON c.id = m.owner_id WHERE k.key = :key AND m.key = :m"
                ),
                {"key": keys[ref], "m": milestone},
            ).scalar_one()
        with write_session(rt.engine) as session:
            progress.progress_milestone(
                session=session,
                case_key=keys[ref],
                milestone_key=milestone,
                action=action,
                actor=progress.Actor((by or owner).lower(), Source.IMPORT),
                now=NOW,
                on=day,
            )


def _without_forecast_notes(events: list[dict[str, Any]]) -> Counter[str]:
    """Events as a multiset, less the case_forecast notes (the commands note each step's
    move; the import notes the whole move on its last step)."""
    out: Counter[str] = Counter()
    for e in events:
        e = {**e, "before": dict(e["before"] or {}), "after": dict(e["after"] or {})}
        e["before"].pop("case_forecast", None)
        e["after"].pop("case_forecast", None)
        out[json.dumps(e, default=str, sort_keys=True)] += 1
    return out


def test_progress_lands_as_the_milestone_commands_leave_it(
    consortium: Runtime, tmp_path: Path
) -> None:
    rt = consortium
    report = _import(
        rt,
        _csv(tmp_path / "cases.csv", [CASE_HEADER, *PROGRESS_CASES]),
        _csv(tmp_path / "progress.csv", [PROGRESS_HEADER, *PROGRESS]),
    )
    assert report.summary() == "cases: created 4, unchanged 0; milestones updated 15"
    imported = _keys_by_ref(report)
    opened = {row[0]: _open(rt, row) for row in PROGRESS_CASES}
    _replay(rt, opened)
    with rt.engine.connect() as conn:
        for ref in imported:
            ours, theirs = _state(conn, imported[ref]), _state(conn, opened[ref])
            theirs["case"]["version"] = ours["case"]["version"] = 1  # one write, not one a step
            assert ours["case"] == theirs["case"], ref
            assert ours["milestones"] == theirs["milestones"], ref
            assert ours["gates"] == theirs["gates"], ref
            assert _without_forecast_notes(ours["events"]) == _without_forecast_notes(
                theirs["events"]
            ), ref


def test_progress_moves_the_forecast_and_opens_gates(consortium: Runtime, tmp_path: Path) -> None:
    report = _import(
        consortium,
        _csv(tmp_path / "cases.csv", [CASE_HEADER, *PROGRESS_CASES]),
        _csv(tmp_path / "progress.csv", [PROGRESS_HEADER, *PROGRESS]),
    )
    keys = _keys_by_ref(report)
    with consortium.engine.connect() as conn:
        late = _state(conn, keys["p-sme-1"])
        gate = _state(conn, keys["p-sme-2"])
    by_key = {m["key"]: m for m in late["milestones"]}
    interview = by_key["needs-interview"]
    assert (interview["status"], interview["started_on"], interview["finished_on"]) == (
        "done",
        date(2026, 2, 4),
        date(2026, 2, 13),
    )
    # Planned 3 working days from 3 February (due the 6th): finished a week late.
    assert interview["planned_due"] == date(2026, 2, 6)
    search = by_key["cluster-search"]
    assert (search["status"], search["started_on"], search["forecast_due"]) == (
        "in_progress",
        date(2026, 2, 17),
        NOW.date(),  # 7 working days from 17 February passed long ago: due today
    )
    assert by_key["match-proposal"]["forecast_start"] == NOW.date()
    assert late["case"]["current_stage"] == "matching"
    assert late["case"]["forecast_date"] > late["case"]["target_date"]
    steps = [e for e in late["events"] if e["kind"].startswith("milestone.")]
    assert [(e["kind"], e["subject"], e["actor"]) for e in steps] == [
        # Without `by`, the owner: no sme-advisor at the lead partner, so the SME pilot's lead.
        ("milestone.complete", "request-intake", "soren.ostergaard@scanbalt.example"),
        ("milestone.start", "needs-interview", "elin.sjoberg@mva.example"),
        ("milestone.complete", "needs-interview", "elin.sjoberg@mva.example"),
        ("milestone.complete", "triage-decision", "soren.ostergaard@scanbalt.example"),
        ("milestone.waive", "nda", "nikolaj.brond@scanbalt.example"),
        ("milestone.start", "cluster-search", "anders.bogh@scanbalt.example"),
    ]
    assert steps[2]["after"]["days_late"] == 7
    assert "case_forecast" in steps[-1]["after"]
    assert {e["source"] for e in late["events"]} == {"import"}
    (acceptance,) = gate["gates"]
    assert (acceptance["status"], acceptance["opened_on"]) == ("open", NOW.date())
    assert gate["events"][-1]["kind"] == "gate.open"
    assert gate["case"]["current_stage"] == "acceptance"


COUNCIL_REVIEW = """\
kind: council-review
version: 1
title: Innovation Council review
key_prefix: CR
roles: [coordinator, council-member]
stages:
  - {key: review, title: Review}
  - {key: report, title: Report}
milestones:
  - {key: dossier, title: Dossier sent, stage: review, owner: coordinator, duration: 5}
  - {key: hearing, title: Hearing, stage: review, duration: 2, days: calendar, after: [dossier+1]}
  - {key: minutes, title: Minutes, stage: report, duration: 3, after: [verdict, hearing]}
gates:
  - key: verdict
    title: Council verdict
    stage: review
    approvers: {role: council-member, required: 2}
    deadline: 10
    on_reject: {cancel: true}
"""


def test_a_gate_without_predecessors_opens_at_once_as_open_case_opens_it(
    consortium: Runtime, tmp_path: Path
) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "council-review.yaml").write_text(COUNCIL_REVIEW, encoding="utf-8")
    catalog = load_catalog([folder])
    rows = [
        _row("cr-1", "council-review", "The IP model", "soren.ostergaard@scanbalt", "2026-04-01"),
        _row("cr-2", "council-review", "Late start", "katrin.schaefer@bioconvalley", "2026-02-02"),
    ]
    steps = [PROGRESS_HEADER, ["cr-2", "dossier", "done", "", "2026-02-06", ""]]
    with write_session(consortium.engine) as session:
        report = bulk.import_cases(
            session=session,
            catalog=catalog,
            cases=_csv(tmp_path / "cases.csv", [CASE_HEADER, *rows]),
            progress=_csv(tmp_path / "progress.csv", steps),
            now=NOW,
        )
    opened = {}
    for ref, kind, title, owner, start, _partner in rows:
        with write_session(consortium.engine) as session:
            opened[ref] = cases.open_case(
                session=session,
                catalog=catalog,
                kind=kind,
                title=title,
                owner_email=owner,
                start=_day(start),
                now=NOW,
                source=Source.IMPORT,
            ).key
    with write_session(consortium.engine) as session:
        progress.progress_milestone(
            session=session,
            case_key=opened["cr-2"],
            milestone_key="dossier",
            action="complete",
            # No coordinator at BCV and no lead of council-review: the dossier is unowned, so
            # the import records its case owner.
            actor=progress.Actor("katrin.schaefer@bioconvalley.example", Source.IMPORT),
            now=NOW,
            on=date(2026, 2, 6),
        )
    with consortium.engine.connect() as conn:
        for ref, key in report.created:
            ours, theirs = _state(conn, key), _state(conn, opened[ref])
            theirs["case"]["version"] = ours["case"]["version"]
            assert ours == theirs, ref
            assert ours["gates"][0]["status"] == "open"
            assert ours["events"][1]["kind"] == "gate.open"


# --- the property: `case open` and `case import` open the same case -----------------------------

CONTACTS = [
    row[0] for row in list(csv.reader((DATA / "contacts.csv").read_text("utf-8").splitlines()))[1:]
]
PARTNERS = [
    row[0] for row in list(csv.reader((DATA / "partners.csv").read_text("utf-8").splitlines()))[1:]
]
TEMPLATES = load_catalog().templates
_imports = itertools.count()


def _links(template: Template) -> dict[str, list[str]]:
    """Each item's predecessors."""
    return {
        spec.key: [d.key for d in spec.after] for spec in [*template.milestones, *template.gates]
    }


def _in_dependency_order(template: Template) -> list[str]:
    """The template's items, each after every item it follows."""
    after = {
        spec.key: [d.key for d in spec.after] for spec in [*template.milestones, *template.gates]
    }
    placed: list[str] = []
    while len(placed) < len(after):
        placed += [k for k, preds in after.items() if k not in placed and set(preds) <= set(placed)]
    return placed


@st.composite
def _histories(draw: st.DrawFn, template: Template, start: date) -> list[list[str]]:
    """Progress rows the lifecycle rules allow: each milestone of the template, in dependency
    order, left planned, started, done or waived on days between the start and today, never
    before a strict milestone's predecessors finished."""
    strict = {m.key: template.is_strict(m) for m in template.milestones}
    after = {
        spec.key: [d.key for d in spec.after] for spec in [*template.milestones, *template.gates]
    }
    finished: dict[str, date] = {}  # milestones done or waived, with their day
    rows = []
    today = NOW.date()
    for key in _in_dependency_order(template):
        if key not in strict or start > today:
            continue  # a gate: an import never decides one
        ready = not strict[key] or all(p in finished for p in after[key])
        earliest = max([start, *(finished[p] for p in after[key] if p in finished)])
        if strict[key] and not ready:
            choices = ["planned", "waived"]
        else:
            choices = ["planned", "in_progress", "done", "waived"]
        status = draw(st.sampled_from(choices))
        if status == "planned" or earliest > today:
            continue
        span = (today - earliest).days
        first = earliest + timedelta(days=draw(st.integers(0, span)))
        last = first + timedelta(days=draw(st.integers(0, (today - first).days)))
        started = first if status == "in_progress" or (ready and draw(st.booleans())) else None
        if status == "in_progress":
            rows.append([key, status, first.isoformat(), ""])
            continue
        day = last if started else first
        finished[key] = day
        rows.append([key, status, started.isoformat() if started else "", day.isoformat()])
    return rows


@st.composite
def _cases(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    """A case row (any kind, owner, lead partner or none, start in the year before today or
    the month after) and a progress history for it."""
    kind = draw(st.sampled_from([SME, IP, LSF]))
    owner = draw(st.sampled_from(CONTACTS))
    partner = draw(st.sampled_from(["", *PARTNERS]))
    start = NOW.date() + timedelta(days=draw(st.integers(-400, 30)))
    return [kind, owner, start.isoformat(), partner], draw(_histories(TEMPLATES[kind], start))


def _comparable(state: dict[str, Any]) -> dict[str, Any]:
    """A case's rows as both paths must leave them: the case written once (version 1),
    events as a multiset less their source, the case forecast notes (the commands note each
    step's move, the import the whole move on its last step) and the actor of a gate that
    opened (the step that readied it, or the import's last)."""
    state["case"]["version"] = 1
    events = []
    for e in state["events"]:
        e = {k: v for k, v in e.items() if k != "source"}
        if e["kind"] == "gate.open":
            e.pop("actor")
        events.append(e)
    state["events"] = _without_forecast_notes(events)
    return state


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=_cases())
def test_case_open_and_case_import_open_the_same_case(
    consortium: Runtime, tmp_path_factory: pytest.TempPathFactory, drawn: Any
) -> None:
    (kind, owner, start, partner), history = drawn
    rt = consortium
    ref = f"prop-{next(_imports)}"
    folder = tmp_path_factory.mktemp("files")
    steps = [
        [ref, key, status, started, finished, ""] for key, status, started, finished in history
    ]
    # What completing the drawn milestones must record, given on the case row by both paths.
    template = rt.catalog.get(kind)
    done = [key for key, status, _, _ in history if status == "done"]
    given = {
        spec.key: _a_value(spec, start)
        for key in done
        for spec in template.captured(key)
        if spec.required
    }
    report = _import(
        rt,
        _csv(
            folder / "cases.csv",
            [[*CASE_HEADER, *given], [ref, kind, "Drawn", owner, start, partner, *given.values()]],
        ),
        _csv(folder / "progress.csv", [PROGRESS_HEADER, *steps]) if steps else None,
    )
    ((_, imported),) = report.created
    with write_session(rt.engine) as session:
        opened = cases.open_case(
            session=session,
            catalog=rt.catalog,
            kind=kind,
            title="Drawn",
            owner_email=owner,
            partner_code=partner or None,
            start=date.fromisoformat(start),
            now=NOW,
            fields=given,
        ).key
    _apply(rt, opened, steps)
    with rt.engine.connect() as conn:
        ours, theirs = _state(conn, imported), _state(conn, opened)
    assert _comparable(ours) == _comparable(theirs)


def _a_value(spec: FieldSpec, start: str) -> str:
    """A value the field rule accepts for `spec`, as a user would type it."""
    by_kind = {
        "integer": str(int(spec.min or 0) + 1),
        "decimal": f"{(spec.min or 0) + 1}.50",
        "date": start,
        "choice": spec.choices[0] if spec.choices else "",
        "email": "someone@example.org",
        "url": "https://example.org/evidence",
        "bool": "yes",
    }
    return by_kind.get(str(spec.kind), "given")


def _apply(rt: Runtime, key: str, steps: Sequence[Sequence[str]]) -> None:
    """Give the milestone commands these progress rows (dependency order), by day."""
    commands = []
    for i, (_ref, milestone, status, started, finished, _by) in enumerate(steps):
        if started:
            commands.append((date.fromisoformat(started), i, 0, milestone, "start"))
        if status in {"done", "waived"}:
            action = "complete" if status == "done" else "waive"
            commands.append((date.fromisoformat(finished), i, 1, milestone, action))
    for day, _i, _phase, milestone, action in sorted(commands):
        with rt.engine.connect() as conn:
            owner = conn.execute(
                text(
                    "SELECT c.email, k.owner_id FROM milestones m JOIN cases k ON k.id = m.case_id "
                    "LEFT JOIN contacts c ON c.id = m.owner_id WHERE k.key = :key AND m.key = :m"
                ),
                {"key": key, "m": milestone},
            ).one()
            actor = (
                owner[0]
                or conn.execute(
                    text("SELECT email FROM contacts WHERE id = :id"), {"id": owner[1]}
                ).scalar_one()
            )
        with write_session(rt.engine) as session:
            progress.progress_milestone(
                session=session,
                case_key=key,
                milestone_key=milestone,
                action=action,
                actor=progress.Actor(actor, Source.IMPORT),
                now=NOW,
                on=day,
            )


# --- validation ---------------------------------------------------------------------------------

BAD_CASES = [
    ["ref", "kind", "title", "owner", "start", "partner", "target"],
    ["ok", SME, "Fine", "anders.bogh@scanbalt.example", "2026-03-02", "", ""],
    ["r3", "sme-service", "Unknown kind", "anders.bogh@scanbalt.example", "2026-03-02", "", ""],
    ["r4", SME, "Unknown owner", "nobody@example.org", "2026-03-02", "", ""],
    ["r5", SME, "Unknown partner", "anders.bogh@scanbalt.example", "2026-03-02", "nope", ""],
    ["r6", SME, "Bad dates", "anders.bogh@scanbalt.example", "2026-02-30", "", "soon"],
    ["r7", SME, "Target first", "anders.bogh@scanbalt.example", "2026-03-02", "", "2026-03-01"],
    ["ok", SME, "Twice", "anders.bogh@scanbalt.example", "2026-03-02", "", ""],
    ["", SME, "", "anders.bogh@scanbalt.example", "", "", ""],
    ["r10", IP, "x" * 301, "soren.ostergaard@scanbalt.example", "03/02/2026", "", ""],
]
BAD_PROGRESS = [
    ["case", "milestone", "status", "started_on", "finished_on", "by"],
    ["ok", "request-intake", "done", "", "2026-03-03", ""],
    ["ghost", "request-intake", "done", "", "2026-03-03", ""],
    ["ok", "no-such-step", "done", "", "2026-03-03", ""],
    ["ok", "sme-acceptance", "done", "", "2026-03-03", ""],
    ["ok", "needs-interview", "finished", "", "2026-03-05", ""],
    ["ok", "triage-decision", "in_progress", "", "", ""],
    ["ok", "request-intake", "done", "", "2026-03-04", ""],
    ["ok", "nda", "waived", "2026-03-09", "2026-03-06", ""],
    ["ok", "follow-up-call", "done", "", "", "not-an-email"],
    ["r4", "request-intake", "done", "", "2026-03-03", ""],  # its case row is wrong
]
BAD_PROBLEMS = [
    "cases.csv: row 3, column B (kind): unknown pilot kind 'sme-service' (known: "
    "cluster-mentoring, cluster-strategy-analysis, council-review-round, "
    "innovation-action-plan, ip-bottleneck-analysis, ip-integration, "
    "life-science-foundation, shared-sme-service, sme-financing-analysis)",
    "cases.csv: row 4, column D (owner): no contact nobody@example.org; add it with "
    "`bridgebsr contacts import`",
    "cases.csv: row 5, column F (partner): no partner nope; add it with "
    "`bridgebsr partners import`",
    "cases.csv: row 6, column E (start): '2026-02-30' is not a date (YYYY-MM-DD or DD.MM.YYYY)",
    "cases.csv: row 6, column G (target): 'soon' is not a date (YYYY-MM-DD or DD.MM.YYYY)",
    "cases.csv: row 7, column G (target): 2026-03-01 is before the start (2026-03-02)",
    "cases.csv: row 8, column A (ref): 'ok' also appears in row 2",
    "cases.csv: row 9, column A (ref): empty; every row needs a value here",
    "cases.csv: row 9, column C (title): empty; every row needs a value here",
    "cases.csv: row 9, column E (start): empty; every row needs a value here",
    "cases.csv: row 10, column C (title): 301 characters; at most 300 fit here",
    "cases.csv: row 10, column E (start): '03/02/2026' is not a date (YYYY-MM-DD or DD.MM.YYYY)",
    "progress.csv: row 3, column A (case): no case 'ghost' in cases.csv (give a ref of a row "
    "there)",
    "progress.csv: row 4, column B (milestone): 'no-such-step' is not a milestone of "
    "shared-sme-service (it has: request-intake, needs-interview, triage-decision, nda, "
    "cluster-search, match-proposal, service-plan, service-delivery, follow-up-call, feedback, "
    "kpi-record)",
    "progress.csv: row 5, column B (milestone): 'sme-acceptance' is a gate of shared-sme-service; "
    "an import records milestones only (decide gates with `bridgebsr gate approve`)",
    "progress.csv: row 6, column C (status): 'finished' is not a status (in_progress, done, "
    "waived)",
    "progress.csv: row 7, column D (started_on): empty; in_progress needs the day it started",
    "progress.csv: row 8, column B (milestone): 'request-intake' of 'ok' also appears in row 2",
    "progress.csv: row 9, column E (finished_on): 2026-03-06 is before it started (2026-03-09)",
    "progress.csv: row 10, column C (status): cannot complete follow-up-call: predecessor "
    "service-delivery is not done or waived (not in the file)",
    "progress.csv: row 10, column E (finished_on): empty; done needs the day it finished",
    "progress.csv: row 10, column F (by): 'not-an-email' is not an email address: An email "
    "address must have an @-sign.",
]


def test_every_problem_is_named_and_nothing_is_written(consortium: Runtime, tmp_path: Path) -> None:
    before = _counts(consortium)
    with pytest.raises(InvalidInput) as refused:
        _import(
            consortium,
            _csv(tmp_path / "cases.csv", BAD_CASES),
            _csv(tmp_path / "progress.csv", BAD_PROGRESS),
        )
    assert refused.value.problems == BAD_PROBLEMS  # by file, row and column
    assert str(refused.value) == (
        f"cases.csv, progress.csv: {len(BAD_PROBLEMS)} problem(s), nothing imported; "
        f"first: {BAD_PROBLEMS[0]}"
    )
    assert _counts(consortium) == before


ORDER_CASES = [
    CASE_HEADER,
    _row("a", SME, "Done before its predecessor", "anders.bogh@scanbalt", "2026-03-02"),
    _row("b", SME, "Started before the predecessor finished", "anders.bogh@scanbalt", "2026-03-02"),
    _row("c", SME, "Dates outside the case", "anders.bogh@scanbalt", "2026-03-02"),
    _row("d", SME, "Past the gate", "anders.bogh@scanbalt", "2026-03-02"),
    _row("e", IP, "Loose and waived need nothing", "soren.ostergaard@scanbalt", "2026-01-05"),
]
ORDER_PROGRESS = [
    PROGRESS_HEADER,
    ["a", "request-intake", "in_progress", "2026-03-03", "", ""],
    ["a", "needs-interview", "done", "", "2026-03-05", ""],
    ["b", "request-intake", "done", "", "2026-03-10", ""],
    ["b", "needs-interview", "done", "2026-03-09", "2026-03-12", ""],
    ["b", "triage-decision", "done", "", "2026-03-11", ""],
    ["c", "request-intake", "done", "", "2026-02-27", ""],
    ["c", "needs-interview", "in_progress", "2026-04-16", "", ""],
    ["d", "service-plan", "waived", "2026-04-01", "2026-04-02", ""],
    ["e", "baseline-data", "done", "", "2026-02-20", ""],
    ["e", "bottleneck-report", "waived", "", "2026-02-20", ""],
]  # fmt: skip


def test_progress_the_lifecycle_rules_refuse_is_named(consortium: Runtime, tmp_path: Path) -> None:
    before = _counts(consortium)
    with pytest.raises(InvalidInput) as refused:
        _import(
            consortium,
            _csv(tmp_path / "cases.csv", ORDER_CASES),
            _csv(tmp_path / "progress.csv", ORDER_PROGRESS),
        )
    assert refused.value.problems == [
        "progress.csv: row 3, column C (status): cannot complete needs-interview: predecessor "
        "request-intake is not done or waived (in_progress)",
        "progress.csv: row 5, column D (started_on): 2026-03-09 is before predecessor "
        "request-intake finished (2026-03-10)",
        "progress.csv: row 6, column E (finished_on): 2026-03-11 is before predecessor "
        "needs-interview finished (2026-03-12)",
        "progress.csv: row 7, column E (finished_on): 2026-02-27 is before case 'c' started "
        "(2026-03-02)",
        "progress.csv: row 8, column D (started_on): 2026-04-16 is in the future (today is "
        "2026-04-15)",
        "progress.csv: row 9, column C (status): cannot start service-plan: it waits for gate "
        "sme-acceptance, which an import cannot decide; import the case up to the gate and "
        "decide it with `bridgebsr gate approve`",
    ]
    assert _counts(consortium) == before


def test_a_header_must_name_the_columns(on_sqlite: Runtime, tmp_path: Path) -> None:
    cases_file = _csv(tmp_path / "cases.csv", [["ref", "kind", "title", "colour"]])
    progress_file = _csv(tmp_path / "progress.csv", [["case", "milestone", "status"]])
    with pytest.raises(InvalidInput) as refused:
        _import(on_sqlite, cases_file, progress_file)
    assert str(refused.value) == (
        "cases.csv: row 1: missing column(s) owner, start; unknown column(s) colour; the "
        "header must name ref, kind, title, owner, start (optional: partner, target, team; "
        "fields: actions_in_draft, actions_in_plan, authorities_endorsing, "
        "consultation_responses, employees, evaluation_report, financing_stage, "
        "founders_committed, funding_gap_eur, funds_raised_eur, indicators_defined, "
        "investor_map_url, investors_interviewed, investors_mapped, ip_cases_handled, "
        "members_taking_part, mentee_satisfaction, mentor_partner, minutes_url, opinion_url, "
        "plan_period_end, plan_period_start, plan_url, practice_title, practice_url, "
        "procedure, published_on, questionnaires_sent, quorum_reached, recommendations, "
        "recommendations_accepted, regions_in_scope, regions_in_trial, report_url, "
        "responses_received, sector, service_type, session_date, sme_name, sme_responses, "
        "strategy_period, subject, subject_case, topic, tto_count, tto_responses, "
        "visit_participants, visit_report_url, workshop_participants, workshops_held)"
    )


def test_a_template_edited_after_pinning_is_refused(on_sqlite: Runtime, tmp_path: Path) -> None:
    with on_sqlite.engine.begin() as conn:
        conn.execute(
            SQLModel.metadata.tables["template_versions"].insert(),
            {"kind": SME, "version": 2, "checksum": "0" * 64, "body": {}, "first_used_at": NOW},
        )
    with pytest.raises(InvalidInput) as refused:
        _import(on_sqlite, _csv(tmp_path / "cases.csv", [CASE_HEADER, *CASES[:2]]))
    assert refused.value.problems == [
        "cases.csv: row 2, column B (kind): template shared-sme-service version 2 was edited "
        "after cases were opened with it; raise `version:` in the file so running cases keep "
        "theirs"
    ]


# --- idempotency, dry runs, keys ----------------------------------------------------------------


def test_importing_the_same_files_again_changes_nothing(
    consortium: Runtime, tmp_path: Path
) -> None:
    cases_file = _csv(tmp_path / "cases.csv", [CASE_HEADER, *PROGRESS_CASES])
    progress_file = _csv(tmp_path / "progress.csv", [PROGRESS_HEADER, *PROGRESS])
    first = _import(consortium, cases_file, progress_file)
    after_first = _counts(consortium)
    again = _import(consortium, cases_file, progress_file)
    assert again.summary() == "cases: created 0, unchanged 4; milestones updated 0"
    assert again.unchanged == first.created
    assert _counts(consortium) == after_first
    # A longer file later: only its new row is opened; the key continues.
    more = [*PROGRESS_CASES, _row("p-new", SME, "A new one", "anders.bogh@scanbalt", "2026-03-02")]
    third = _import(consortium, _csv(tmp_path / "more.csv", [CASE_HEADER, *more]))
    assert third.created == [("p-new", "SME-2026-0003")]
    assert len(third.unchanged) == 4


def test_a_dry_run_reports_and_writes_nothing(consortium: Runtime, tmp_path: Path) -> None:
    cases_file = _csv(tmp_path / "cases.csv", [CASE_HEADER, *PROGRESS_CASES])
    progress_file = _csv(tmp_path / "progress.csv", [PROGRESS_HEADER, *PROGRESS])
    before = _counts(consortium)
    dry = _import(consortium, cases_file, progress_file, dry_run=True)
    assert dry.summary() == "cases: would create 4, unchanged 0; milestones would be updated 15"
    assert _counts(consortium) == before
    real = _import(consortium, cases_file, progress_file)
    assert real.created == dry.created


def test_keys_interleave_with_open_case(consortium: Runtime, tmp_path: Path) -> None:
    first = _open(consortium, CASES[0])
    report = _import(consortium, _csv(tmp_path / "cases.csv", [CASE_HEADER, *CASES[:3]]))
    last = _open(consortium, CASES[0])
    assert [first, *(k for _, k in report.created), last] == [
        f"SME-2026-{n:04d}" for n in range(1, 6)
    ]


def test_concurrent_open_case_calls_never_collide_with_an_import(
    consortium: Runtime, tmp_path: Path
) -> None:
    rows = [
        [f"c{i}", SME, f"Request {i}", "anders.bogh@scanbalt.example", "2026-03-02", ""]
        for i in range(300)
    ]
    path = _csv(tmp_path / "cases.csv", [CASE_HEADER, *rows])
    opened = [_open(consortium, CASES[0])]  # pins the template (first pins race in open_case)
    errors: list[BaseException] = []

    def open_some() -> None:
        try:
            for _ in range(8):
                opened.append(_open(consortium, CASES[0]))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_some) for _ in range(2)]
    for thread in threads:
        thread.start()
    report = _import(consortium, path)
    for thread in threads:
        thread.join()
    assert not errors
    keys = [k for _, k in report.created] + opened
    assert sorted(keys) == [f"SME-2026-{n:04d}" for n in range(1, 318)]
    with consortium.engine.connect() as conn:
        last = conn.execute(
            text("SELECT last FROM key_sequences WHERE prefix = 'SME' AND year = 2026")
        ).scalar_one()
    assert last == 317


def test_two_imports_of_one_file_at_once_open_each_case_once(
    consortium: Runtime, tmp_path: Path
) -> None:
    rows = [
        [f"c{i}", SME, f"Request {i}", "anders.bogh@scanbalt.example", "2026-03-02", ""]
        for i in range(200)
    ]
    path = _csv(tmp_path / "cases.csv", [CASE_HEADER, *rows])
    _open(consortium, CASES[0])  # pins the template
    reports: list[bulk.BulkReport] = []
    threads = [threading.Thread(target=lambda: reports.append(_import(consortium, path)))]
    threads.append(threading.Thread(target=lambda: reports.append(_import(consortium, path))))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted((len(r.created), len(r.unchanged)) for r in reports) == [(0, 200), (200, 0)]
    assert _counts(consortium)["cases"] == 201


# --- XLSX -----------------------------------------------------------------------------------------


def _as_cell(value: str) -> Any:
    if len(value) == 10 and value[4] == "-":
        return datetime.fromisoformat(value)  # what a date cell holds
    return value or None


def test_one_workbook_with_a_cases_and_a_progress_sheet(on_sqlite: Runtime, tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Cases"
    for row in [CASE_HEADER, *PROGRESS_CASES]:
        sheet.append([_as_cell(v) for v in row])
    steps = book.create_sheet("progress")
    for row in [PROGRESS_HEADER, *PROGRESS]:
        steps.append([_as_cell(v) for v in row])
    book.create_sheet("notes").append(["anything else is ignored"])
    path = tmp_path / "pilot.xlsx"
    book.save(path)
    report = _import(on_sqlite, path)
    assert report.summary() == "cases: created 4, unchanged 0; milestones updated 15"
    csv_store = _csv(tmp_path / "cases.csv", [CASE_HEADER, *PROGRESS_CASES])
    again = _import(on_sqlite, csv_store)  # the same refs: already imported from the workbook
    assert again.summary() == "cases: created 0, unchanged 4; milestones updated 0"


def test_problems_in_a_workbook_name_the_sheet(on_sqlite: Runtime, tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "cases"
    for row in [CASE_HEADER, *PROGRESS_CASES[:1]]:
        sheet.append([_as_cell(v) for v in row])
    steps = book.create_sheet("progress")
    steps.append(PROGRESS_HEADER)
    steps.append(["p-sme-1", "request-intake", "done", None, "tomorrow", None])
    path = tmp_path / "pilot.xlsx"
    book.save(path)
    with pytest.raises(InvalidInput) as refused:
        _import(on_sqlite, path)
    assert refused.value.problems == [
        "pilot.xlsx[progress]: row 2, column E (finished_on): 'tomorrow' is not a date "
        "(YYYY-MM-DD or DD.MM.YYYY)"
    ]


# --- the command --------------------------------------------------------------------------------


def test_the_command_prints_a_summary_and_refuses_bad_files(
    on_sqlite: Runtime, tmp_path: Path
) -> None:
    app = typer.Typer()
    app.command()(import_cases)
    app.command("other")(lambda: None)  # two commands: `import_cases` is then named on the line
    env = {
        "BRIDGEBSR_HOME": str(on_sqlite.settings.home),
        "BRIDGEBSR_DATABASE_URL": on_sqlite.settings.resolved_database_url(),
    }
    runner = CliRunner()
    cases_file = _csv(tmp_path / "cases.csv", [CASE_HEADER, *PROGRESS_CASES])
    progress_file = _csv(tmp_path / "progress.csv", [PROGRESS_HEADER, *PROGRESS])
    args = ["import-cases", str(cases_file), "--progress", str(progress_file), "--as-of"]
    dry = runner.invoke(app, [*args, "2026-04-15", "--dry-run", "--quiet"], env=env)
    assert (dry.exit_code, dry.stdout) == (
        0,
        "cases: would create 4, unchanged 0; milestones would be updated 15\n",
    )
    done = runner.invoke(app, [*args, "2026-04-15"], env=env)
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines()[:2] == [
        "cases: created 4, unchanged 0; milestones updated 15",
        "  + SME-2026-0001  p-sme-1",
    ]
    (tmp_path / "bad").mkdir()
    bad = _csv(tmp_path / "bad" / "cases.csv", BAD_CASES[:3])
    refused = runner.invoke(app, ["import-cases", str(bad)], env=env)
    assert refused.exit_code == 1
    assert refused.stderr.strip().splitlines() == [
        "error: cases.csv: 1 problem(s), nothing imported; first: " + BAD_PROBLEMS[0]
    ]
