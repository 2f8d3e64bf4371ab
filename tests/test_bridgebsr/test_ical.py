"""`bridgebsr ical`: calendar feeds of the demo portfolio, read back with `icalendar`."""

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from icalendar import Calendar, Event
from sqlalchemy import text
from sqlmodel import col, select
from typer.testing import CliRunner

from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.cli.exchange import ical as ical_command
from bridgebsr.demo import load_demo
from bridgebsr.errors import InvalidInput
from bridgebsr.exchange import files, ical
from bridgebsr.office import cases, progress
from bridgebsr.rules import planning
from bridgebsr.rules.people import Person
from bridgebsr.rules.rows import MilestoneRow
from bridgebsr.settings import Settings
from bridgebsr.store import case_rows as store
from bridgebsr.store import migrate
from bridgebsr.store.db import read_session, write_session
from models import (
    Case,
    CaseStatus,
    Gate,
    GateStatus,
    Milestone,
    MilestoneStatus,
    Partner,
    Source,
)

AS_OF = date(2026, 11, 26)
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
SHOWN = (CaseStatus.ACTIVE, CaseStatus.ON_HOLD)
SHOWN_GATES = (GateStatus.PENDING, GateStatus.OPEN, GateStatus.APPROVED)
COUNCIL_MEMBER = "peter.moller-jensen@mva.example"
# Leads the SME pilot (contacts.csv): owns the SME requests' items no one at their lead holds.
SME_PILOT_LEAD = "soren.ostergaard@scanbalt.example"
SME_OWNER = "oskar.lundback@lundback-dx.example"
TESTER = progress.Actor("tester@bridgebsr", Source.CLI)


def _runtime(folder: Path, db: Path) -> Runtime:
    return build_runtime(Settings(home=folder / "home", database_url=f"sqlite:///{db}"))


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo portfolio as of AS_OF in one SQLite file, built once for this module."""
    folder = tmp_path_factory.mktemp("ical-demo")
    rt = _runtime(folder, folder / "cases.db")
    migrate.upgrade(rt.engine)
    load_demo(rt, AS_OF)
    with rt.engine.connect() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    rt.engine.dispose()
    return folder / "cases.db"


@pytest.fixture(scope="module")
def shared(demo_db: Path) -> Iterator[Runtime]:
    """The module's demo store, for tests that only read."""
    rt = _runtime(demo_db.parent, demo_db)
    yield rt
    rt.engine.dispose()


@pytest.fixture
def demo(demo_db: Path, tmp_path: Path) -> Iterator[Runtime]:
    """A private copy of the demo store, for tests that change it."""
    db = tmp_path / "cases.db"
    shutil.copyfile(demo_db, db)
    rt = _runtime(tmp_path, db)
    yield rt
    rt.engine.dispose()


def _build(rt: Runtime, now: datetime = NOW, **who: str) -> bytes:
    with read_session(rt.engine) as session:
        return ical.feed(session=session, now=now, **who)


def _events(data: bytes) -> dict[str, Event]:
    """The events of a feed by UID (and every UID is unique)."""
    events = Calendar.from_ical(data).events
    by_uid = {str(e.uid): e for e in events}
    assert len(by_uid) == len(events), "duplicate UIDs"
    return by_uid


def _case_of(uid: str) -> str:
    return uid.split("/", 1)[0]


def _items(rt: Runtime) -> list[dict[str, Any]]:
    """Every milestone and gate of the store with its case's facts, as the test sees them."""
    lead = col(Partner.id) == Case.lead_partner_id
    with read_session(rt.engine) as session:
        ms = session.exec(
            select(Milestone, Case, Partner.code)
            .join(Case, col(Case.id) == Milestone.case_id)
            .join(Partner, lead)
        ).all()
        gs = session.exec(
            select(Gate, Case, Partner.code)
            .join(Case, col(Case.id) == Gate.case_id)
            .join(Partner, lead)
        ).all()
    rows = [
        {
            "uid": f"{c.key}/{m.key}@bridgebsr",
            "kind": "milestone",
            "item": m,
            "case": c,
            "partner": code,
            "shown": c.status in SHOWN,
        }
        for m, c, code in ms
    ]
    rows += [
        {
            "uid": f"{c.key}/gate/{g.key}/r{g.round}@bridgebsr",
            "kind": "gate",
            "item": g,
            "case": c,
            "partner": code,
            "shown": c.status in SHOWN and g.status in SHOWN_GATES,
        }
        for g, c, code in gs
    ]
    return rows


def _contact(rt: Runtime, email: str) -> Person:
    with read_session(rt.engine) as session:
        return store.contact_by_email(session.connection(), email)


# --- partner feeds -----------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["MVA", "BCV", "LUNDBACK-DX", "OSTERSJO-VITA", "STEINBEIS"])
def test_a_partner_feed_holds_exactly_the_items_of_its_own_cases(
    shared: Runtime, code: str
) -> None:
    items = _items(shared)
    expected = {r["uid"] for r in items if r["partner"] == code and r["shown"]}
    own_cases = {r["case"].key for r in items if r["partner"] == code}
    others = {r["case"].key for r in items} - own_cases

    data = _build(shared, partner=code.lower())
    events = _events(data)

    assert set(events) == expected
    # Security: nothing of another partner's case, not in a UID and not in any text.
    assert {_case_of(uid) for uid in events} <= own_cases
    body = data.decode()
    assert not [key for key in others if key in body]
    if code == "STEINBEIS":
        # Steinbeis leads only the IP analysis; its IP expert's items on MVA's IP case stay
        # out of its feed.
        assert {_case_of(uid).split("-")[0] for uid in events} == {"IPA"}


# The demo's IP case (MVA) has done and planned milestones, an open and a pending gate; its
# foundation case (BCV) has passed its founders' approval.
KINDS_SEEN = {
    "MVA": {
        ("milestone", MilestoneStatus.DONE),
        ("milestone", MilestoneStatus.PLANNED),
        ("gate", GateStatus.OPEN),
        ("gate", GateStatus.PENDING),
    },
    "BCV": {("milestone", MilestoneStatus.DONE), ("gate", GateStatus.APPROVED)},
}


@pytest.mark.parametrize(("code", "zone"), [("MVA", "Europe/Copenhagen"), ("BCV", "Europe/Berlin")])
def test_partner_feed_events_are_all_day_dated_by_the_rules(
    shared: Runtime, code: str, zone: str
) -> None:
    calendar = Calendar.from_ical(_build(shared, partner=code))
    assert str(calendar["PRODID"]) == "-//Bridge-BSR//bridgebsr//EN"
    assert str(calendar["VERSION"]) == "2.0"
    assert code in str(calendar["X-WR-CALNAME"])
    assert str(calendar["X-WR-TIMEZONE"]) == zone
    rows = {r["uid"]: r for r in _items(shared)}
    seen = set()
    for event in calendar.events:
        row = rows[str(event.uid)]
        item, case = row["item"], row["case"]
        start = event.start
        assert type(start) is date and event.end == start + timedelta(days=1)
        assert event.DTSTAMP == NOW
        assert event.sequence == case.version
        assert event["LAST-MODIFIED"].dt == case.updated_at
        assert str(event["STATUS"]) == "CONFIRMED"
        assert [str(c) for c in event.categories] == [row["kind"], case.kind]
        summary = str(event["SUMMARY"])
        description = str(event["DESCRIPTION"])
        assert description.startswith(case.title + "\n")
        assert item.title in summary and case.key in summary
        if row["kind"] == "milestone":
            assert start == item.forecast_due
            assert summary.startswith("✓ ") == (item.status is MilestoneStatus.DONE)
            assert f"Planned due {item.planned_due}" in description
        elif item.status is GateStatus.OPEN:
            assert start == item.deadline and not summary.startswith("✓ ")
        elif item.status is GateStatus.APPROVED:
            assert start == item.decided_on and summary.startswith("✓ ")
        else:
            assert (item.status, start) == (GateStatus.PENDING, item.forecast_due)
        seen.add((row["kind"], item.status))
    assert KINDS_SEEN[code] <= seen


def test_the_same_store_gives_the_same_feed(shared: Runtime) -> None:
    first, second = _build(shared, partner="MVA"), _build(shared, partner="MVA")
    assert first == second
    later = _build(shared, NOW + timedelta(days=3), partner="MVA")
    changed = set(first.decode().splitlines()) ^ set(later.decode().splitlines())
    assert changed and all(line.startswith("DTSTAMP:") for line in changed)


def test_a_late_finish_moves_dates_and_raises_sequence_but_keeps_uids(demo: Runtime) -> None:
    before = _events(_build(demo, partner="LUNDBACK-DX"))
    key = "SME-2026-0001"
    with read_session(demo.engine) as session:
        nodes = store.load_case(session, key, for_update=False).plan.nodes()
    done = {n.key for n in nodes if planning.is_finished(n)}
    ready = next(
        m
        for m in nodes
        if isinstance(m, MilestoneRow)
        and m.key not in done
        and all(d["key"] in done for d in m.depends_on)
    )
    finished = max(AS_OF, ready.forecast_due) + timedelta(days=10)
    later = datetime.combine(finished, datetime.min.time(), UTC).replace(hour=12)
    with write_session(demo.engine) as session:
        progress.progress_milestone(
            session=session,
            case_key=key,
            milestone_key=ready.key,
            action="complete",
            actor=TESTER,
            now=later,
            on=finished,
        )

    after = _events(_build(demo, later, partner="LUNDBACK-DX"))

    assert set(after) == set(before)
    uid = f"{key}/{ready.key}@bridgebsr"
    assert (before[uid].start, after[uid].start) == (ready.forecast_due, finished)
    assert str(after[uid]["SUMMARY"]).startswith("✓ ")
    ours = [u for u in after if _case_of(u) == key]
    assert all(after[u].sequence > before[u].sequence for u in ours)
    moved = [u for u in ours if u != uid and after[u].start > before[u].start]
    assert moved, "the finish moved no dependent forecast"
    # The other cases of the partner did not change.
    assert all(after[u].sequence == before[u].sequence for u in after if _case_of(u) != key)


def test_case_titles_are_escaped_and_cannot_inject_events(demo: Runtime) -> None:
    title = 'Ärger, "quotes"; semi\\colon\nBEGIN:VEVENT\r\nUID:evil@x\nEND:VEVENT, tail'
    with write_session(demo.engine) as session:
        key = cases.open_case(
            session=session,
            catalog=demo.catalog,
            kind="shared-sme-service",
            title=title,
            owner_email=SME_OWNER,
            start=AS_OF,
            now=NOW,
        ).key

    data = _build(demo, partner="LUNDBACK-DX")
    events = _events(data)

    expected = {r["uid"] for r in _items(demo) if r["partner"] == "LUNDBACK-DX" and r["shown"]}
    assert set(events) == expected and "evil@x" not in events
    shown = title.replace("\r\n", "\n")  # icalendar writes any line break as \n
    ours = [e for uid, e in events.items() if _case_of(uid) == key]
    assert ours and all(str(e["DESCRIPTION"]).startswith(shown + "\n") for e in ours)
    raw = data.decode()
    lines = raw.split("\r\n")
    assert not [line for line in lines if line.startswith(("UID:evil", "END:VEVENT,"))]
    assert sum(line == "BEGIN:VEVENT" for line in lines) == len(events)
    unfolded = raw.replace("\r\n ", "")
    assert 'Ärger\\, "quotes"\\; semi\\\\colon\\nBEGIN:VEVENT\\nUID:evil@x' in unfolded


def test_held_cases_are_tentative_and_cancelled_ones_leave(demo: Runtime) -> None:
    held, cancelled, waived_in = "SME-2026-0005", "SME-2026-0009", "SME-2026-0001"
    for key, action in ((held, "hold"), (cancelled, "cancel")):
        with write_session(demo.engine) as session:
            cases.change_case(
                session=session, key=key, action=action, reason="test", actor="t", now=NOW
            )
    with read_session(demo.engine) as session:
        last = store.milestones_of(session, store.case_by_key(session, waived_in))[-1]
    with write_session(demo.engine) as session:
        progress.progress_milestone(
            session=session,
            case_key=waived_in,
            milestone_key=last.key,
            action="waive",
            actor=TESTER,
            now=NOW,
        )

    events = _events(_build(demo, partner="LUNDBACK-DX"))

    keys = {_case_of(uid) for uid in events}
    assert held in keys and cancelled not in keys
    for uid, event in events.items():
        on_hold = _case_of(uid) == held
        status = str(event["STATUS"])
        if uid == f"{waived_in}/{last.key}@bridgebsr":
            assert status == "CANCELLED"
        else:
            assert status == ("TENTATIVE" if on_hold else "CONFIRMED"), uid
        assert str(event["SUMMARY"]).endswith("(case on hold)") == on_hold


# --- contact feeds -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    [
        COUNCIL_MEMBER,
        SME_PILOT_LEAD,
        SME_OWNER,
        "mette.sorensen@scanbalt.example",
        "elin.sjoberg@mva.example",
    ],
)
def test_a_contact_feed_holds_what_they_own_or_may_approve(shared: Runtime, email: str) -> None:
    person = _contact(shared, email)
    expected = set()
    for r in _items(shared):
        item, case = r["item"], r["case"]
        mine = case.owner_id == person.id or (
            item.owner_id == person.id
            if r["kind"] == "milestone"
            else item.approver_role == person.role
        )
        if r["shown"] and mine:
            expected.add(r["uid"])

    calendar = Calendar.from_ical(_build(shared, contact=email.upper()))

    assert {str(e.uid) for e in calendar.events} == expected
    assert expected, f"{email} has nothing in the demo"
    assert person.name in str(calendar["X-WR-CALNAME"])


def test_contact_feeds_reach_across_partners_by_role_and_ownership(shared: Runtime) -> None:
    council = _events(_build(shared, contact=COUNCIL_MEMBER))
    assert [u for u in council if "/gate/council-approval/" in u]
    lead = _events(_build(shared, contact=SME_PILOT_LEAD))
    # ScanBalt's SME pilot lead owns milestones of the SMEs' requests and the pilot-lead items
    # of the activities ScanBalt leads (the financing analysis, the action plan), and as a
    # pilot lead votes on every activity's partner sign-off and the mentoring plan.
    owned = {_case_of(u).split("-")[0] for u in lead if "/gate/" not in u}
    assert owned == {"SME", "FIN", "IAP"}
    votes = {u.split("/gate/")[1].split("/")[0] for u in lead if "/gate/" in u}
    assert votes == {"partner-signoff", "plan-approval"}
    owner = _events(_build(shared, contact=SME_OWNER))
    assert owner == _events(_build(shared, partner="LUNDBACK-DX"))


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "message"),
    [
        ({"partner": "xyz"}, "no partner 'XYZ'; see `bridgebsr partners list`"),
        ({"contact": "nobody@x.example"}, "no contact 'nobody@x.example'"),
        ({"partner": "MVA", "contact": SME_OWNER}, "exactly one of --partner"),
        ({}, "exactly one of --partner"),
        ({"partner": "  ", "contact": ""}, "exactly one of --partner"),
    ],
)
def test_unknown_or_ambiguous_subjects_are_refused(
    shared: Runtime, who: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        _build(shared, **who)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_naive_now_is_refused(shared: Runtime) -> None:
    with pytest.raises(InvalidInput, match="aware"):
        _build(shared, datetime(2026, 11, 26, 12), partner="MVA")


# --- the command -------------------------------------------------------------------------------


@pytest.fixture
def cli(demo: Runtime, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    """The command mounted alone, pointed at the private demo store through the environment."""
    for name in [n for n in os.environ if n.startswith("BRIDGEBSR_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("BRIDGEBSR_HOME", str(demo.settings.home))
    monkeypatch.setenv("BRIDGEBSR_DATABASE_URL", demo.settings.resolved_database_url())
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(ical_command)
    return app


def test_the_command_writes_the_file_and_says_so(cli: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "feeds" / "mva.ics"
    out.parent.mkdir()
    out.write_text("old")
    done = CliRunner().invoke(cli, ["--partner", "mva", "--out", str(out), "--as-of", "2026-11-26"])
    assert done.exit_code == 0, done.output
    events = _events(out.read_bytes())
    assert done.stdout == f"wrote {len(events)} event(s) for partner MVA to {out}\n"
    assert len(events) == 16
    assert [p.name for p in out.parent.iterdir()] == ["mva.ics"]
    assert all(e.DTSTAMP == datetime(2026, 11, 26, 11, tzinfo=UTC) for e in events.values())

    done = CliRunner().invoke(cli, ["--contact", SME_OWNER, "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "for Oskar Lundbäck <oskar.lundback@lundback-dx.example>" in done.stdout


def test_an_unknown_partner_is_one_error_line_and_no_file(cli: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "x.ics"
    done = CliRunner().invoke(cli, ["--partner", "XYZ", "--out", str(out)])
    assert done.exit_code == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == ["error: no partner 'XYZ'; see `bridgebsr partners list`"]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mva.ics.")]  # none left

    missing = CliRunner().invoke(cli, ["--partner", "MVA"])
    assert missing.exit_code == 2


def test_a_failed_write_leaves_the_old_file_whole(
    cli: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "mva.ics"
    out.write_bytes(b"previous feed")

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", refuse)
    done = CliRunner().invoke(cli, ["--partner", "MVA", "--out", str(out)])
    assert done.exit_code == 1
    assert done.stderr.splitlines() == [
        f"error: --out {out}: cannot write it (No space left on device)"
    ]
    assert out.read_bytes() == b"previous feed"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mva.ics.")]  # none left


def test_a_line_break_in_a_name_becomes_a_space_in_the_calendar_name(demo: Runtime) -> None:
    # Stores filled before imports refused control characters in names may hold them.
    with write_session(demo.engine) as session:
        session.execute(
            text("UPDATE contacts SET name = :name WHERE email = :email"),
            {"name": "Oskar\nLundbäck\x1b", "email": SME_OWNER},
        )
        session.execute(
            text("UPDATE partners SET name = :name WHERE code = 'MVA'"),
            {"name": "Medicon\r\nValley"},
        )
        session.commit()
    person = Calendar.from_ical(_build(demo, contact=SME_OWNER))
    assert str(person["NAME"]) == str(person["X-WR-CALNAME"]) == "Bridge-BSR · Oskar Lundbäck "
    partner = Calendar.from_ical(_build(demo, partner="MVA"))
    assert str(partner["NAME"]) == "Bridge-BSR · MVA (Medicon  Valley)"
