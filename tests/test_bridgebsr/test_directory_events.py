"""The directory's audit trail, on a SQLite file and on PostgreSQL: every change to a person
or a partner (contacts add, edit, prefs, away, cancel; the contacts and partners imports)
writes its events in its own transaction, and the trail refuses edits and deletions."""

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select

from bridgebsr.bootstrap import Runtime
from bridgebsr.office import directory
from bridgebsr.office.progress import Actor
from bridgebsr.store import directory_events
from bridgebsr.store.db import read_session, write_session
from models import DirectoryEvent, Source
from tests.conftest import at
from tests.test_bridgebsr.test_cli_input import cli, one_error_line, store_env

JANE = "jane.doe@scanbalt.example"
LEAD = "soren.ostergaard@scanbalt.example"
DEPUTY = "anders.bogh@scanbalt.example"
OPS = "ops@scanbalt.example"


def _events(rt: Runtime) -> list[DirectoryEvent]:
    with read_session(rt.engine) as session:
        return list(session.exec(select(DirectoryEvent).order_by(col(DirectoryEvent.id))))


def _one_more(rt: Runtime, seen: int) -> DirectoryEvent:
    """The one event written since there were `seen`."""
    events = _events(rt)
    assert len(events) == seen + 1, [(e.kind, e.subject) for e in events[seen:]]
    return events[-1]


def test_each_contact_command_writes_one_event_with_what_changed(consortium: Runtime) -> None:
    env = store_env(consortium)
    seen = len(_events(consortium))
    added = cli(
        env, "contacts", "add", JANE, "--name", "Jane Doe", "--partner", "SCANBALT",
        "--role", "coordinator", "--by", OPS, "--as-of", "2026-05-01T09:00",
    )  # fmt: skip
    assert added.code == 0, added
    event = _one_more(consortium, seen)
    assert (event.kind, event.subject, event.actor, event.source) == (
        "contact.add", JANE, OPS, Source.CLI,
    )  # fmt: skip
    assert event.at == at("2026-05-01", 7)  # 09:00 in Copenhagen
    assert event.before is None
    assert event.after == {
        "email": JANE, "name": "Jane Doe", "partner": "SCANBALT", "role": "coordinator",
        "country": "DK", "timezone": "Europe/Copenhagen", "leads": "",
    }  # fmt: skip

    edited = cli(env, "contacts", "edit", JANE, "--country", "SE", "--by", OPS)
    assert edited.code == 0, edited
    event = _one_more(consortium, seen + 1)
    assert (event.kind, event.subject) == ("contact.edit", JANE)
    assert event.before == {"country": "DK", "timezone": "Europe/Copenhagen"}
    assert event.after == {"country": "SE", "timezone": "Europe/Stockholm"}
    # Nothing moved: nothing recorded. A refusal records nothing either.
    assert cli(env, "contacts", "edit", JANE, "--name", "Jane Doe").code == 0
    one_error_line(cli(env, "contacts", "edit", JANE, "--role", "boss"), "--role")
    assert len(_events(consortium)) == seen + 2

    prefs = cli(env, "contacts", "prefs", JANE, "--cap", "10", "--quiet", "22:00-06:00")
    assert prefs.code == 0, prefs
    event = _one_more(consortium, seen + 2)
    assert (event.kind, event.actor.endswith("@cli")) == ("contact.preferences", True)
    assert event.before == {"daily_cap": 20, "quiet_from": "21:00:00", "quiet_until": "07:00:00"}
    assert event.after == {"daily_cap": 10, "quiet_from": "22:00:00", "quiet_until": "06:00:00"}

    away = ("contacts", "away", JANE, "--as-of", "2026-05-20", "--by", OPS)
    done = cli(env, *away, "--from", "2026-06-01", "--to", "2026-06-10", "--deputy", DEPUTY)
    assert done.code == 0, done
    event = _one_more(consortium, seen + 3)
    assert (event.kind, event.subject, event.actor, event.before) == (
        "absence.add", JANE, OPS, None,
    )  # fmt: skip
    assert event.after is not None
    assert (event.after["from"], event.after["to"], event.after["deputy"]) == (
        "2026-06-01", "2026-06-10", DEPUTY,
    )  # fmt: skip

    back = cli(env, "contacts", "away", JANE, "--cancel", "--as-of", "2026-06-04", "--by", OPS)
    assert back.code == 0, back
    event = _one_more(consortium, seen + 4)
    assert event.kind == "absence.cancel" and event.before and event.after
    assert (event.before["to"], event.after["to"]) == ("2026-06-10", "2026-06-03")

    shown = cli(env, "contacts", "history", "Jane.Doe@SCANBALT.example", "--json")
    assert shown.code == 0, shown
    trail = json.loads(shown.stdout)
    assert [e["kind"] for e in trail] == [
        "contact.add", "contact.edit", "contact.preferences", "absence.add", "absence.cancel",
    ]  # fmt: skip
    assert trail[1]["before"] == {"country": "DK", "timezone": "Europe/Copenhagen"}
    table = cli(env, "contacts", "history", JANE)
    assert "country: DK -> SE; timezone: Europe/Copenhagen -> Europe/Stockholm" in table.stdout
    one_error_line(cli(env, "contacts", "history", "nobody@x.example"), "no contact")


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


THREE = [
    "email,name,partner,role,country",
    "ann@mva.example,Ann Berg,MVA,coordinator,SE",
    "bo@mva.example,Bo Lind,MVA,sme-advisor,SE",
    "cai@bcv.example,Cai Vogt,BCV,coordinator,DE",
]


def _import(rt: Runtime, path: Path, *, dry_run: bool = False) -> directory.ImportReport:
    with write_session(rt.engine) as session:
        return directory.import_contacts(
            session=session,
            path=path,
            roles=rt.catalog.roles(),
            dry_run=dry_run,
            now=at("2026-05-04"),
            actor=Actor(OPS, Source.IMPORT),
        )


def test_an_import_records_each_contact_it_adds_or_changes_and_nothing_else(
    consortium: Runtime, tmp_path: Path
) -> None:
    path = _csv(tmp_path / "three.csv", THREE)
    seen = len(_events(consortium))
    _import(consortium, path, dry_run=True)
    assert len(_events(consortium)) == seen
    _import(consortium, path)
    events = _events(consortium)[seen:]
    assert [(e.kind, e.subject, e.before) for e in events] == [
        ("contact.import", "ann@mva.example", None),
        ("contact.import", "bo@mva.example", None),
        ("contact.import", "cai@bcv.example", None),
    ]
    assert {(e.actor, e.source, e.source_ref, e.at) for e in events} == {
        (OPS, Source.IMPORT, "three.csv", at("2026-05-04"))
    }
    assert events[2].after == {
        "email": "cai@bcv.example", "name": "Cai Vogt", "partner": "BCV",
        "role": "coordinator", "country": "DE", "timezone": "Europe/Berlin",
    }  # fmt: skip
    _import(consortium, path)
    assert len(_events(consortium)) == seen + 3, "the same file again changes nothing"

    moved = [*THREE[:2], "bo@mva.example,Bo Lindqvist,BCV,sme-advisor,SE", THREE[3]]
    _import(consortium, _csv(tmp_path / "moved.csv", moved))
    event = _one_more(consortium, seen + 3)
    assert (event.subject, event.before, event.after) == (
        "bo@mva.example",
        {"name": "Bo Lind", "partner": "MVA"},
        {"name": "Bo Lindqvist", "partner": "BCV"},
    )


def test_a_partners_import_records_each_partner_it_adds_or_changes(
    consortium: Runtime, tmp_path: Path
) -> None:
    env = store_env(consortium)
    seen = len(_events(consortium))
    rows = ["code,name,kind,country", "NEWCO,New Co,cluster,EE"]
    path = _csv(tmp_path / "partners.csv", rows)
    assert cli(env, "partners", "import", str(path), "--by", OPS).code == 0
    event = _one_more(consortium, seen)
    assert (event.kind, event.subject, event.actor, event.source, event.before) == (
        "partner.import", "NEWCO", OPS, Source.IMPORT, None,
    )  # fmt: skip
    assert event.after == {
        "code": "NEWCO", "name": "New Co", "kind": "cluster", "country": "EE",
        "region": "Estonia", "timezone": "Europe/Tallinn",
    }  # fmt: skip
    assert cli(env, "partners", "import", str(path)).code == 0
    assert len(_events(consortium)) == seen + 1
    path = _csv(tmp_path / "partners.csv", ["code,name,kind,country", "NEWCO,New Co,sme,EE"])
    assert cli(env, "partners", "import", str(path), "--dry-run").code == 0
    assert len(_events(consortium)) == seen + 1
    assert cli(env, "partners", "import", str(path), "--by", OPS).code == 0
    event = _one_more(consortium, seen + 1)
    assert (event.before, event.after) == ({"kind": "cluster"}, {"kind": "sme"})


def test_the_trail_refuses_updates_and_deletions(rt: Runtime) -> None:
    with write_session(rt.engine) as session:
        directory_events.record(
            session.connection(),
            kind="contact.retire",
            subject=LEAD,
            actor=OPS,
            now=at("2026-05-04"),
            source=Source.CLI,
            before={"retired_at": None},
            after={"retired_at": at("2026-05-04"), "successor": DEPUTY},
            comment="left the project",
        )
        session.commit()
    with read_session(rt.engine) as session:
        assert directory_events.history(session.connection(), LEAD)[0].after == {
            "retired_at": "2026-05-04T10:00:00+00:00",
            "successor": DEPUTY,
        }
    for statement in ("UPDATE directory_events SET actor = 'x'", "DELETE FROM directory_events"):
        with pytest.raises(DBAPIError, match="directory_events is append-only"):
            with rt.engine.begin() as conn:
                conn.execute(text(statement))
    assert len(_events(rt)) == 1
    with pytest.raises(ValueError, match="unknown directory event kind"):
        with rt.engine.begin() as conn:
            directory_events.record(
                conn, kind="contact.delete", subject=LEAD, actor=OPS, now=at("2026-05-04"),
                source=Source.CLI,
            )  # fmt: skip
