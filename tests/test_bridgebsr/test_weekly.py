"""The weekly report: built into the case store, emailed through a real SMTP server (aiosmtpd)
with its workbook attached, the right version to each reader, once a week; on a SQLite file
and on PostgreSQL."""

import io
from datetime import date, time, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from openpyxl import load_workbook
from pydantic import SecretStr
from sqlalchemy import update
from sqlmodel import col

from bridgebsr.bootstrap import Runtime
from bridgebsr.office import cases, weekly
from bridgebsr.reports.weekly import render
from bridgebsr.rules import weekly as rule
from bridgebsr.store import reports as store
from bridgebsr.store.db import read_session, write_session
from models import Contact
from tests.conftest import at, run_here
from tests.test_notifications import conftest as post_fixtures
from tests.test_notifications.conftest import SmtpSink

smtp = post_fixtures.smtp  # an SMTP server on loopback that keeps what it is sent

START = date(2026, 9, 7)
MONDAY = date(2026, 11, 30)  # week 2026-W49
COORDINATOR = "mette.sorensen@scanbalt.example"
WHOLE = {COORDINATOR, "soren.ostergaard@scanbalt.example", "karin.astrom@mva.example"}
WHOLE |= {"katrin.schaefer@bioconvalley.example"}  # the pilot leads (contacts.csv `leads`)
IP, SME = "IP-2026-0001", "SME-2026-0001"  # led by SCANBALT and by MVA
MVA_READER = "elin.sjoberg@mva.example"  # an sme-advisor at MVA: MVA's version
# The other contacts of the two partners leading an open case.
PARTNER = {MVA_READER, "peter.moller-jensen@mva.example"}
PARTNER |= {f"{n}@scanbalt.example" for n in ("laerke.dahl", "nikolaj.brond", "anders.bogh")}
LATE = "laerke.dahl@scanbalt.example"  # her quiet hours end at 09:30 Copenhagen


def test_the_week_names_the_report_and_twelve_weeks_are_kept() -> None:
    assert rule.week_of(MONDAY) == "2026-W49" and rule.week_of(date(2027, 1, 1)) == "2026-W53"
    assert rule.report_name(MONDAY + timedelta(days=6)) == "weekly-2026-W49"
    assert rule.oldest_kept(MONDAY) == "weekly-2026-W38"  # W38 .. W49: twelve weeks
    assert rule.report_name(date(2026, 3, 2)) < rule.report_name(MONDAY)  # names sort by week
    assert rule.delivery_kind(MONDAY) == "report 2026-W49"


def test_leads_and_coordinators_get_everything_a_leading_partners_people_their_own() -> None:
    def reader(email: str, role: str, partner: str, **kw: object) -> rule.Reader:
        fields = {"leads": "", "channels": "email,chat", "retired": False} | kw
        return rule.Reader(0, email, email, role, partner=partner, **fields)  # type: ignore[arg-type]

    people = [
        reader("c@x", "coordinator", "A"),
        reader("l@x", "pilot-lead", "B", leads="ip-integration"),
        reader("o@x", "case-owner", "B"),
        reader("q@x", "case-owner", "C"),  # C leads no open case
        reader("chat@x", "case-owner", "B", channels="chat"),
        reader("gone@x", "coordinator", "A", retired=True),
    ]
    chosen = rule.readers(people, {"A", "B"})
    assert {e: scope for e, (_, scope) in chosen.items()} == {"c@x": "", "l@x": "", "o@x": "B"}
    lead, owner, other, gone = people[1], people[2], people[3], people[5]
    assert rule.may_read(lead, "") and rule.may_read(lead, "A")  # a pilot lead reads any
    assert rule.may_read(owner, "B") and not rule.may_read(owner, "A")
    assert not rule.may_read(owner, "") and not rule.may_read(other, "B")
    assert not rule.may_read(gone, "")


@pytest.fixture
def portfolio(consortium: Runtime, smtp: SmtpSink, tmp_path: Path) -> Runtime:
    """Two open cases, led by SCANBALT and by MVA; email through the SMTP server."""
    consortium.settings.email_url = SecretStr(smtp.url())
    consortium.settings.public_url = "https://bridge.example.org/"
    with write_session(consortium.engine) as session:
        for kind, title, owner, partner in (
            ("ip-integration", "Øresund IP model", "soren.ostergaard@scanbalt.example", None),
            ("shared-sme-service", "Diagnostics partner search", MVA_READER, "MVA"),
        ):
            cases.open_case(
                session=session,
                catalog=consortium.catalog,
                kind=kind,
                title=title,
                owner_email=owner,
                partner_code=partner,
                start=START,
                now=at(START.isoformat()),
            )
    return consortium


def _workbook(mail: EmailMessage) -> tuple[str, bytes]:
    (part,) = [p for p in mail.iter_attachments() if p.get_filename()]
    return str(part.get_filename()), bytes(part.get_content())


def _cases_in(book: bytes) -> set[str]:
    """The cases of a workbook's forecast sheet."""
    sheet = load_workbook(io.BytesIO(book), read_only=True)["Forecast"]
    rows = list(sheet.iter_rows(values_only=True))
    column = rows[0].index("Case")
    return {str(r[column]) for r in rows[1:]}


def test_the_weekly_report_reaches_each_reader_once_with_their_version(
    portfolio: Runtime, smtp: SmtpSink, tmp_path: Path
) -> None:
    rt = portfolio
    now = at(MONDAY.isoformat(), 6)
    with write_session(rt.engine) as session:  # two weeks' old reports: one kept, one not
        for name in ("weekly-2026-W30", "weekly-2026-W40"):
            store.save(session, name=name, scope="", filename="x.html", media_type="text/html",
                       content=b"<p>old</p>", now=now)  # fmt: skip
        session.commit()

    with write_session(rt.engine) as session:  # one reader's night lasts until 09:30
        session.execute(
            update(Contact).where(col(Contact.email) == LATE).values(quiet_until=time(9, 30))
        )
        session.commit()

    smtp.refuse = True  # the server refuses every message: built, stored, nobody has it
    first = weekly.weekly_report(rt, now=now, render=render, send=True)
    assert sorted(first.built) == ["", "MVA", "SCANBALT"] and first.pruned == 1
    others = WHOLE | PARTNER - {LATE}
    assert {s.email for s in first.sent} == others and not any(s.ok for s in first.sent)
    assert first.held == [(LATE, now + timedelta(hours=2, minutes=30))]  # 09:30 Copenhagen

    smtp.refuse = False  # the next run sends them all, without building again
    second = weekly.weekly_report(rt, now=now + timedelta(hours=1), render=render, send=True)
    assert second.built == [] and second.files == first.files
    assert all(s.ok for s in second.sent), second.sent
    assert {s.email for s in second.sent} == others and [e for e, _ in second.held] == [LATE]
    late = weekly.weekly_report(rt, now=now + timedelta(hours=3), render=render, send=True)
    assert [(s.email, s.ok) for s in late.sent] == [(LATE, True)] and not late.held
    mails = {m.rcpt_tos[0]: m.message for m in smtp.received()}
    assert set(mails) == WHOLE | PARTNER and len(smtp.received()) == len(mails)

    name, book = _workbook(mails[COORDINATOR])
    assert name == "portfolio-2026-W49.xlsx" and _cases_in(book) == {IP, SME}
    assert str(mails[COORDINATOR]["Subject"]) == "Bridge-BSR weekly report, week 49 of 2026"
    assert str(mails[MVA_READER]["Subject"]) == "Bridge-BSR weekly report, week 49 of 2026: MVA"
    name, own = _workbook(mails[MVA_READER])
    assert name == "portfolio-2026-W49-MVA.xlsx" and _cases_in(own) == {SME}
    body = mails[MVA_READER].get_body(preferencelist=("html",))
    assert body is not None
    html = str(body.get_content())
    assert "Needs action this week" in html and "<img" not in html  # the summary, no charts
    assert SME in html and IP not in html
    page = next(f for f in second.files if f.filename == "portfolio-2026-W49-MVA.html")
    assert f"https://bridge.example.org/reports/{page.id}/{page.filename}" in html

    # The stored files read back byte for byte: as attached, and fetched on the command line.
    stored = next(f for f in second.files if f.filename == "portfolio-2026-W49-MVA.xlsx")
    assert weekly.stored(rt, stored.id) == (stored, own)
    out = tmp_path / "fetched.xlsx"
    done = run_here(
        tmp_path / "home",
        *("reports", "fetch", str(stored.id), "--out", str(out)),
        env={"BRIDGEBSR_DATABASE_URL": rt.settings.resolved_database_url()},
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == own

    third = weekly.weekly_report(rt, now=now + timedelta(days=3), render=render, send=True)
    assert third.sent == [] and set(third.already) == WHOLE | PARTNER
    assert len(smtp.received()) == len(mails)  # nothing sent twice
    with read_session(rt.engine) as session:
        names = {f.name for f in store.listing(session)}
    assert names == {"weekly-2026-W40", "weekly-2026-W49"}
