"""A partner's day at the partners' door: a real browser (Debian's Chromium through Playwright)
against the web app served by uvicorn over the demo portfolio, with a real SMTP server.

The monitor's pass writes the notices and dispatch emails them; the case owner opens the
personal link in her email, sees My items, and completes her milestone on the case page; a
council member of another partner opens his link and votes on the IP case's council gate,
seeing only that gate. The store, the audit trail (`source=web`) and the next monitor pass
agree; a third person's browser sees none of it (403 on the case's address). Screenshots of
My items and the case page go to build/screenshots (`make screenshots`: docs/screenshots).
"""

import html
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from sqlmodel import col, select

from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.demo import load_consortium, load_demo
from bridgebsr.monitor.sweep import run_monitor
from bridgebsr.office.delivery import deliver
from bridgebsr.settings import Settings
from bridgebsr.store import migrate
from bridgebsr.store.db import read_session
from bridgebsr.store.people import load_directory
from bridgebsr.web import links
from bridgebsr.web.app import create_app
from models import (
    Case,
    CaseEvent,
    Contact,
    Evidence,
    Gate,
    GateDecision,
    Milestone,
    MilestoneStatus,
    Notification,
    Source,
)
from tests.e2e.conftest import VIEWPORT, require_browser, screenshot
from tests.test_flows.conftest import free_port
from tests.test_notifications.conftest import SmtpSink, smtp  # noqa: F401  (the SMTP fixture)

require_browser()  # skipped here without Chromium or Playwright; failed in CI

from playwright.sync_api import Browser, Page, expect  # noqa: E402

expect.set_options(timeout=15_000)

DEMO_DAY = date(2026, 11, 26)
ZONE = "Europe/Copenhagen"
MONITOR_AT = datetime(2026, 11, 26, 7, tzinfo=UTC)
NOW = datetime(2026, 11, 26, 10, tzinfo=UTC)  # daytime for everyone: no quiet hours
OWNER = "ruta.zemaityte@gintarelis-bio.example"  # case owner of SME-2026-0006
CASE, ITEM = "SME-2026-0006", "service-plan"
COUNCIL = "paivi.kaariainen@bioforum-oulu.example"  # council member at BIOFORUM-OULU
IP_CASE, GATE = "IP-2025-0001", "council-approval"
OUTSIDER = "triin.saask@biotech-ee.example"  # a founder at EBA, on no case
EVIDENCE = "https://docs.example/sme-2026-0006/service-plan.pdf"


@dataclass
class Door:
    """The web app served on loopback over a demo store, with its runtime and address."""

    rt: Runtime
    url: str


@pytest.fixture
def door(tmp_path: Path, smtp: SmtpSink) -> Iterator[Door]:  # noqa: F811
    """The demo portfolio as of 2026-11-26 in a SQLite file, emailing through `smtp`, and the
    web app on a free loopback port (uvicorn in a thread, stopped after the test)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / 'cases.db'}",
        email_url=smtp.url(),
        public_url=url,
    )
    rt = build_runtime(settings)
    migrate.upgrade(rt.engine)
    load_consortium(rt)
    load_demo(rt, DEMO_DAY)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(rt, clock=lambda: NOW), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the web app did not start"
        time.sleep(0.05)
    try:
        yield Door(rt, url)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        rt.engine.dispose()


def _signed_in(browser: Browser, link: str) -> Page:
    """A fresh browser (its own cookies) that has opened `link`."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(link)
    return page


def _contact_id(rt: Runtime, email: str) -> int:
    with read_session(rt.engine) as session:
        return load_directory(session.connection()).by_email[email].id


def test_a_partner_acts_from_the_notice_and_a_council_member_votes(
    door: Door,
    smtp: SmtpSink,  # noqa: F811
    browser: Browser,
) -> None:
    rt = door.rt
    run_monitor(rt.engine, now=MONITOR_AT, zone=ZONE)
    report = deliver(rt, now=NOW)
    assert report.sent, "dispatch sent nothing"
    mails = [m for m in smtp.received() if OWNER in m.rcpt_tos]
    assert mails, f"no email for {OWNER}"
    # The message's "your items" link: the personal link that signs her in to My items.
    found = re.search(r'<a href="([^"]+)">your items</a>', mails[0].html)
    assert found, f"the notice carries no personal link:\n{mails[0].html}"
    link = html.unescape(found.group(1))
    assert link.startswith(f"{door.url}/l/"), link

    # The case owner opens her link: My items, then the case page, and completes her item.
    owner = _signed_in(browser, link)
    expect(owner).to_have_url(f"{door.url}/me")
    expect(owner.get_by_role("heading", name="My items")).to_be_visible()
    due = owner.locator("#due")
    expect(due.get_by_role("link", name=CASE).first).to_be_visible()
    screenshot(owner, "07-door-my-items")
    owner.goto(f"{door.url}/cases/{CASE}")
    expect(owner.get_by_role("heading", name=re.compile(CASE))).to_be_visible()
    row = owner.locator(f"[id='{ITEM}'] + tr.actions")
    row.locator("summary").click()
    row.get_by_label("Note").fill("Plan agreed with the SME on the phone")
    row.get_by_label("Evidence links").fill(EVIDENCE)
    row.scroll_into_view_if_needed()
    screenshot(owner, "08-door-complete")
    row.get_by_role("button", name="Complete").click()
    expect(owner.locator("p.notice")).to_have_text(f"Completed {ITEM}.")
    expect(owner.get_by_role("link", name=EVIDENCE)).to_be_visible()
    screenshot(owner, "09-door-case-page")
    owner.get_by_role("link", name="My items").first.click()
    expect(owner.locator("#done")).to_contain_text("Service plan agreed")

    # A council member of another partner votes on the IP case's gate from his link.
    council_link = links.personal_link(rt, _contact_id(rt, COUNCIL), 1, now=NOW)
    council = _signed_in(browser, council_link)
    gates = council.locator("#gates")
    expect(gates).to_contain_text("expert-panel minutes")  # the template's evidence text
    gates.get_by_role("link", name="Vote").first.click()
    expect(council).to_have_url(re.compile(f"/cases/{IP_CASE}#{GATE}"))
    expect(council.locator("#history")).to_have_count(0)  # only what the vote needs
    vote = council.locator(f"[id='{GATE}']")
    vote.get_by_label("Comment").fill("Sound model; trial it.")
    vote.get_by_role("button", name="Approve").click()
    expect(council.locator("p.notice")).to_have_text(f"Your approval of {GATE} is recorded.")
    screenshot(council, "10-door-vote")

    # Someone else's browser sees none of it.
    outsider = _signed_in(browser, links.personal_link(rt, _contact_id(rt, OUTSIDER), 1, now=NOW))
    expect(outsider.get_by_role("heading", name="My items")).to_be_visible()
    expect(outsider.locator("main")).not_to_contain_text(CASE)
    for key in (CASE, IP_CASE):
        answer = outsider.goto(f"{door.url}/cases/{key}")
        assert answer is not None and answer.status == 403
        expect(outsider.locator("main")).not_to_contain_text(key)

    # The store and the audit trail agree: done today, by the owner and the council member,
    # from the web.
    with read_session(rt.engine) as session:
        item = session.exec(
            select(Milestone)
            .join(Case, col(Case.id) == Milestone.case_id)
            .where(Case.key == CASE, Milestone.key == ITEM)
        ).one()
        assert (item.status, item.finished_on) == (MilestoneStatus.DONE, DEMO_DAY)
        events = session.exec(
            select(CaseEvent.actor, CaseEvent.kind, CaseEvent.subject, CaseEvent.source).where(
                CaseEvent.source == Source.WEB
            )
        ).all()
        assert (OWNER, "milestone.complete", ITEM, Source.WEB) in events
        assert (COUNCIL, "gate.vote", GATE, Source.WEB) in events
        assert {actor for actor, *_ in events} == {OWNER, COUNCIL}
        vote_row = session.exec(
            select(GateDecision, Contact.email)
            .join(Gate, col(Gate.id) == GateDecision.gate_id)
            .join(Contact, col(Contact.id) == GateDecision.approver_id)
            .where(GateDecision.source == Source.WEB)
        ).one()
        assert (vote_row[1], vote_row[0].comment) == (COUNCIL, "Sound model; trial it.")
        link = session.exec(select(Evidence.url, Evidence.added_by, Evidence.source)).all()
        assert link == [(EVIDENCE, OWNER, Source.WEB)]
        before = session.exec(select(Notification.id).order_by(col(Notification.id).desc())).first()

    # The next day's monitor pass agrees: no reminder for the finished item, and none for
    # the gate to the council member who voted.
    run_monitor(rt.engine, now=MONITOR_AT + timedelta(days=1), zone=ZONE)
    with read_session(rt.engine) as session:
        new = session.exec(
            select(Case.key, Notification.subject, Contact.email)
            .join(Case, col(Case.id) == Notification.case_id)
            .join(Contact, col(Contact.id) == Notification.recipient_id)
            .where(col(Notification.id) > (before or 0))
        ).all()
    assert new, "the next pass wrote nothing at all"
    assert not [n for n in new if n[:2] == (CASE, ITEM)]
    assert not [n for n in new if n == (IP_CASE, GATE, COUNCIL)]
