"""The partners' door's pages over the demo portfolio (a SQLite file), through Starlette's test
client: My items, the case page within scope and refused outside it, the actions through the
use cases with `source=web` and the page's version, and the calendar feeds."""

import re
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select
from starlette.testclient import TestClient

from bridgebsr.bootstrap import Runtime
from bridgebsr.demo import load_consortium, load_demo
from bridgebsr.office.mine import my_items
from bridgebsr.office.people import set_absence
from bridgebsr.store import reports
from bridgebsr.store.db import read_session, write_session
from bridgebsr.store.people import load_directory
from bridgebsr.web import links
from bridgebsr.web.app import create_app
from models import (
    AccessDenial,
    Case,
    CaseEvent,
    Contact,
    DateRequest,
    GateDecision,
    Milestone,
    Partner,
    Source,
)
from tests.conftest import BACKENDS, migrated, pg_schema

TODAY = date(2026, 11, 26)
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
LEAD = "karin.astrom@mva.example"  # owns the IP case, leads ip-integration
FOUNDATION_LEAD = "katrin.schaefer@bioconvalley.example"  # leads life-science-foundation
COUNCIL = "paivi.kaariainen@bioforum-oulu.example"  # council member at another partner
OUTSIDER = "triin.saask@biotech-ee.example"  # founder at EBA: on no case
COORDINATOR = "mette.sorensen@scanbalt.example"
PARTNER_CONTACT = "elin.sjoberg@mva.example"  # an sme-advisor at MVA: reads MVA's version
REPORTS = "10.0.0.1"  # the address the stored reports' test is refused from
CAPTURED = "field.funds_raised_eur"  # what completing capital-commitments records


@pytest.fixture(scope="module", params=BACKENDS)
def demo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg_ready: bool
) -> Iterator[tuple[Runtime, list[str]]]:
    """The demo portfolio in a SQLite file or a PostgreSQL schema, shared by this module's
    tests on that store (each changes different cases). The door's actions run on both;
    tests marked `SQLITE_ONLY` (pages and feeds that only read) on SQLite alone."""
    base = tmp_path_factory.mktemp("door")
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{base / 'cases.db'}"
        else:
            url = stack.enter_context(pg_schema(pg_ready))
        rt = stack.enter_context(migrated(url, base / "home"))
        load_consortium(rt)
        yield rt, load_demo(rt, TODAY)


SQLITE_ONLY = pytest.mark.parametrize("demo", ["sqlite"], indirect=True)


def _client(rt: Runtime, email: str, address: str = "testclient") -> TestClient:
    """A browser signed in as `email` by their personal link, from `address` (the rate limit
    counts refusals per address: a test that refuses a few gives its own)."""
    with read_session(rt.engine) as session:
        person = load_directory(session.connection()).by_email[email]
    client = TestClient(
        create_app(rt, clock=lambda: NOW), base_url="http://127.0.0.1", client=(address, 50000)
    )
    link = links.personal_link(rt, person.id, 1, now=NOW)
    assert client.get(link.removeprefix(rt.settings.web_url())).status_code == 200
    return client


def _form(html: str, action: str) -> dict[str, str]:
    """The hidden fields of the form posting to `action`."""
    form = html[html.index(f'action="{action}"') :]
    form = form[: form.index("</form>")]
    return dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', form))


def _events(rt: Runtime, key: str, kind: str) -> list[CaseEvent]:
    with read_session(rt.engine) as session:
        return list(
            session.exec(
                select(CaseEvent)
                .join(Case, col(Case.id) == CaseEvent.case_id)
                .where(Case.key == key, CaseEvent.kind == kind)
            ).all()
        )


def test_owner_completes_an_item_and_a_stale_form_is_refused(
    demo: tuple[Runtime, list[str]],
) -> None:
    rt, keys = demo
    with read_session(rt.engine) as session:
        found = session.exec(
            select(Case.key, Milestone.key)
            .join(Case, col(Case.id) == Milestone.case_id)
            .where(
                Case.kind == "life-science-foundation",
                Milestone.status == "planned",
                Milestone.forecast_start <= TODAY,
            )
            .order_by(col(Case.key), col(Milestone.seq))
        ).first()
    assert found is not None
    key, item = found
    assert item == "capital-commitments"  # it captures CAPTURED
    browser = _client(rt, FOUNDATION_LEAD)
    me = browser.get("/me")
    assert me.status_code == 200 and key in me.text and "Calendar subscription" in me.text
    page = browser.get(f"/cases/{key}")
    assert page.status_code == 200 and "<svg" in page.text and "History" in page.text
    action = f"/cases/{key}/milestones/{item}"
    fields = _form(page.text, action)
    stale = {**fields, "version": str(int(fields["version"]) - 1), "action": "complete"}
    refused = browser.post(action, data=stale, follow_redirects=False)
    assert refused.status_code == 409
    assert "someone changed this case since you opened the page" in refused.text
    assert not [e for e in _events(rt, key, "milestone.complete") if e.subject == item]
    done = browser.post(
        action,
        data={**fields, "action": "complete", "note": "<b>ok</b>", CAPTURED: "250000"},
        follow_redirects=False,
    )
    assert done.status_code == 303, re.findall(r"class=\"error\"[^<]*", done.text)
    assert done.headers["location"].startswith(f"/cases/{key}?")
    shown = browser.get(done.headers["location"])
    assert f"Completed {item}." in shown.text and "<b>ok</b>" not in shown.text
    assert "&lt;b&gt;ok&lt;/b&gt;" in shown.text  # in the history, escaped
    assert re.search(r"<dt>Funds raised[^<]*</dt><dd>250000", shown.text)  # the captured field
    (event,) = [e for e in _events(rt, key, "milestone.complete") if e.subject == item]
    assert (event.actor, event.source, event.comment) == (FOUNDATION_LEAD, Source.WEB, "<b>ok</b>")
    no_csrf = {k: v for k, v in fields.items() if k != "csrf_token"}
    assert browser.post(action, data=no_csrf, follow_redirects=False).status_code == 403


def test_a_council_member_sees_only_the_vote_and_an_outsider_nothing(
    demo: tuple[Runtime, list[str]],
) -> None:
    rt, keys = demo
    council = _client(rt, COUNCIL)
    me = council.get("/me")
    gate = re.search(r'href="/cases/([A-Z]+-\d+-\d+)#([a-z-]+)"', me.text)
    assert gate is not None, "the council member has a gate to vote on"
    key, gate_key = gate.groups()
    assert "expert-panel minutes" in me.text  # the template's evidence text
    page = council.get(f"/cases/{key}")
    assert page.status_code == 200 and "History" not in page.text and "<svg" not in page.text
    action = f"/cases/{key}/gates/{gate_key}"
    voted = council.post(
        action,
        data={**_form(page.text, action), "decision": "approve", "comment": "sound"},
        follow_redirects=False,
    )
    assert voted.status_code == 303
    with read_session(rt.engine) as session:
        vote = session.exec(select(GateDecision).order_by(col(GateDecision.id).desc())).first()
    assert vote is not None and (vote.source, vote.comment) == (Source.WEB, "sound")
    assert [e.actor for e in _events(rt, key, "gate.vote")][-1:] == [COUNCIL]
    again = council.post(action, data=_form(page.text, action) | {"decision": "approve"})
    assert again.status_code == 400 and "already voted" in again.text
    twice = [e for e in _events(rt, key, "gate.refused") if e.actor == COUNCIL]
    assert [(e.subject, e.source) for e in twice] == [(gate_key, Source.WEB)]
    assert twice[0].after and "already voted" in twice[0].after["reason"]

    # One case of each kind: the door answers an address past 20 refusals in ten minutes with
    # 429 (and this module's clock stands still); everyone's scope on every demo case is
    # test_access's.
    outsider = _client(rt, OUTSIDER)
    tried = list({case_key.split("-")[0]: case_key for case_key in keys}.values())
    assert len(tried) == 9
    for case_key in tried:
        assert outsider.get(f"/cases/{case_key}").status_code == 403
    assert outsider.get("/cases/NO-SUCH-1").status_code == 403
    assert key not in outsider.get("/me").text
    with read_session(rt.engine) as session:
        reasons = session.exec(select(AccessDenial.reason)).all()
    assert reasons.count("out-of-scope") == len(tried) + 1


@SQLITE_ONLY
def test_feeds_open_by_feed_token_only(demo: tuple[Runtime, list[str]]) -> None:
    rt, _ = demo
    browser = _client(rt, LEAD)
    feeds = re.findall(r'value="http://[^/]+(/feeds/[^"]+)"', browser.get("/me").text)
    assert len(feeds) == 2
    anonymous = TestClient(create_app(rt, clock=lambda: NOW), base_url="http://127.0.0.1")
    personal, partner = (anonymous.get(path) for path in feeds)
    for got in (personal, partner):
        assert got.status_code == 200, got.text
        assert got.headers["content-type"].startswith("text/calendar")
    assert "X-WR-CALNAME:Bridge-BSR · Karin" in personal.text
    assert "X-WR-CALNAME:Bridge-BSR · MVA" in partner.text
    with read_session(rt.engine) as session:
        person = load_directory(session.connection()).by_email[LEAD]
    page_token = links.personal_link(rt, person.id, 1, now=NOW).rsplit("/", 1)[-1]
    assert anonymous.get(f"/feeds/{page_token}.ics").status_code == 403


@SQLITE_ONLY
def test_screens_render_for_everyone_of_the_demo(
    demo: tuple[Runtime, list[str]], tmp_path: Path
) -> None:
    """Every person's My items renders (no template error for any mix of items)."""
    rt, _ = demo
    with read_session(rt.engine) as session:
        emails = [p.email for p in load_directory(session.connection()).people.values()]
    for email in emails:
        assert _client(rt, email).get("/me").status_code == 200, email


@SQLITE_ONLY
def test_an_owner_withdraws_their_request_from_the_case_page(
    demo: tuple[Runtime, list[str]],
) -> None:
    rt, _ = demo
    key, item, email, _ = _open_item(rt, "", partner="GINTARELIS-BIO")
    owner = _client(rt, email)
    page = owner.get(f"/cases/{key}")
    ask = f"/cases/{key}/milestones/{item}/new-date"
    wanted = TODAY + timedelta(days=40)
    asked = owner.post(
        ask,
        data={**_form(page.text, ask), "due": wanted.isoformat(), "reason": "lab closed"},
        follow_redirects=False,
    )
    assert asked.status_code == 303, re.findall(r'class="error"[^<]*', asked.text)
    page = owner.get(f"/cases/{key}")
    assert f"You asked to move it to {wanted.isoformat()}" in page.text
    (action,) = re.findall(r'action="(/requests/\d+/withdraw)"', page.text)
    form = _form(page.text, action)
    assert form["item"] == item and ask not in re.findall(r'action="([^"]+)"', page.text)
    assert email != COORDINATOR
    other = _client(rt, COORDINATOR, address="10.0.0.7")
    progress = f"/cases/{key}/milestones/{item}"  # a form of theirs: their CSRF token
    refused = other.post(action, data={**form, **_form(other.get(f"/cases/{key}").text, progress)})
    assert refused.status_code == 403  # only whoever asked withdraws
    assert f"you have no request #{action.split('/')[2]} waiting on {item}" in refused.text
    done = owner.post(action, data=form, follow_redirects=False)
    assert done.status_code == 303
    again = owner.get(done.headers["location"])
    assert f"Your request for a new date for {item} is withdrawn" in again.text
    assert ask in again.text  # the item may be asked for again
    with read_session(rt.engine) as session:
        (row,) = session.exec(
            select(DateRequest)
            .join(Case, col(Case.id) == DateRequest.case_id)
            .where(Case.key == key, DateRequest.item_key == item)
        ).all()
    assert (row.status, row.decided_by) == ("withdrawn", email)
    kinds = {(e.actor, e.source) for e in _events(rt, key, "date.withdrawn")}
    assert kinds == {(email, Source.WEB)}


@SQLITE_ONLY
def test_an_owner_asks_for_a_new_date_and_the_pilot_lead_accepts_it(
    demo: tuple[Runtime, list[str]],
) -> None:
    rt, _ = demo
    key, item = "SME-2026-0006", "service-delivery"
    owner = _client(rt, "ruta.zemaityte@gintarelis-bio.example")
    page = owner.get(f"/cases/{key}")
    action = f"/cases/{key}/milestones/{item}/new-date"
    with read_session(rt.engine) as session:
        due = session.exec(
            select(Milestone.planned_due)
            .join(Case, col(Case.id) == Milestone.case_id)
            .where(Case.key == key, Milestone.key == item)
        ).one()
    wanted = due + timedelta(days=7)
    asked = owner.post(
        action,
        data={**_form(page.text, action), "due": wanted.isoformat(), "reason": "SME on holiday"},
        follow_redirects=False,
    )
    assert asked.status_code == 303, re.findall(r'class="error"[^<]*', asked.text)
    lead = _client(rt, "soren.ostergaard@scanbalt.example")  # leads shared-sme-service
    me = lead.get("/me")
    assert "SME on holiday" in me.text and wanted.isoformat() in me.text
    (path,) = re.findall(r'action="(/requests/\d+)"', me.text)
    accepted = lead.post(
        path, data={**_form(me.text, path), "answer": "accept"}, follow_redirects=False
    )
    assert accepted.status_code == 303
    assert "Accepted" in lead.get(accepted.headers["location"]).text
    with read_session(rt.engine) as session:
        assert (
            session.exec(
                select(Milestone.planned_due)
                .join(Case, col(Case.id) == Milestone.case_id)
                .where(Case.key == key, Milestone.key == item)
            ).one()
            == wanted
        )
    kinds = {(e.kind, e.actor, e.source) for e in _events(rt, key, "date.requested")}
    kinds |= {(e.kind, e.actor, e.source) for e in _events(rt, key, "date.accepted")}
    assert kinds == {
        ("date.requested", "ruta.zemaityte@gintarelis-bio.example", Source.WEB),
        ("date.accepted", "soren.ostergaard@scanbalt.example", Source.WEB),
    }


def test_stored_reports_open_to_their_readers_only(demo: tuple[Runtime, list[str]]) -> None:
    """The coordinator opens the whole report, a partner's contact only their partner's
    version; an outsider, another partner's version and no session get the 403."""
    rt, _ = demo
    with write_session(rt.engine) as session:
        stored = {
            scope: reports.save(
                session,
                name="weekly-2026-W48",
                scope=scope,
                filename=f"portfolio-2026-W48{'-' + scope if scope else ''}.html",
                media_type="text/html",
                content=f"<p>report {scope or 'whole'}</p>".encode(),
                now=NOW,
            )
            for scope in ("", "MVA")
        }
        session.commit()
    whole, mva = (f"/reports/{f.id}/{f.filename}" for f in stored.values())
    coordinator = _client(rt, COORDINATOR, REPORTS)
    got = coordinator.get(whole)
    assert got.status_code == 200 and got.text == "<p>report whole</p>"
    assert "sandbox" in got.headers["content-security-policy"]
    assert coordinator.get(mva).status_code == 200
    partner = _client(rt, PARTNER_CONTACT, REPORTS)
    assert partner.get(mva).text == "<p>report MVA</p>"
    assert partner.get(whole).status_code == 403
    assert partner.get(mva.replace("-MVA.html", ".html")).status_code == 403  # not its name
    assert _client(rt, OUTSIDER, REPORTS).get(mva).status_code == 403
    anonymous = TestClient(
        create_app(rt, clock=lambda: NOW), base_url="http://127.0.0.1", client=(REPORTS, 1)
    )
    assert anonymous.get(whole).status_code == 403
    with read_session(rt.engine) as session:
        reasons = session.exec(select(AccessDenial.reason)).all()
    assert reasons.count("report-out-of-scope") == 3 and "no-session" in reasons


def _open_item(rt: Runtime, not_owner: str, partner: str = "") -> tuple[str, str, str, int]:
    """An active case (led by `partner`; else any, and the milestone ready to start) and a
    planned milestone of it owned by someone other than `not_owner` and not held through the
    sme-advisor role: (case, item, owner, version)."""
    query = (
        select(Case.key, Milestone.key, Contact.email, Case.version)
        .join(Case, col(Case.id) == Milestone.case_id)
        .join(Partner, col(Partner.id) == Case.lead_partner_id)
        .join(Contact, col(Contact.id) == Milestone.owner_id)
        .where(
            Case.status == "active",
            Milestone.status == "planned",
            Contact.email != not_owner,
            Milestone.owner_role != "sme-advisor",
        )
        .order_by(col(Case.key), col(Milestone.seq))
    )
    if partner:
        query = query.where(Partner.code == partner)
    else:
        query = query.where(Milestone.forecast_start <= TODAY)
    with read_session(rt.engine) as session:
        found = session.exec(query).first()
    assert found is not None
    return found


def test_refused_actions_are_audited_and_the_page_says_why(
    demo: tuple[Runtime, list[str]],
) -> None:
    """A partner's contact sees their partner's case but may not complete someone else's item
    nor vote as a council member: each refusal is a `<item>.refused` event (source web) and
    one line on the page."""
    rt, _ = demo
    key, item, _, version = _open_item(rt, PARTNER_CONTACT, "MVA")
    browser = _client(rt, PARTNER_CONTACT, "10.0.0.2")
    page = browser.get(f"/cases/{key}")
    assert page.status_code == 200 and f'action="/cases/{key}/milestones/{item}"' not in page.text
    data = {**_form(page.text, "/logout"), "version": str(version), "action": "complete"}
    refused = browser.post(f"/cases/{key}/milestones/{item}", data=data)
    assert refused.status_code == 403 and f"you may not update {item} of this case" in refused.text
    voted = browser.post(
        f"/cases/{key}/gates/council-approval", data=data | {"decision": "approve"}
    )
    assert voted.status_code == 403 and "you may not vote on council-approval" in voted.text
    trail = [
        (e.subject, e.actor, e.source, (e.after or {}).get("action"))
        for kind in ("milestone.refused", "gate.refused")
        for e in _events(rt, key, kind)
        if e.actor == PARTNER_CONTACT
    ]
    assert trail == [
        (item, PARTNER_CONTACT, Source.WEB, "complete"),
        ("council-approval", PARTNER_CONTACT, Source.WEB, "approve"),
    ]
    assert not [e for e in _events(rt, key, "milestone.complete") if e.subject == item]


def test_a_deputy_completes_an_absent_owners_item_on_the_web(
    demo: tuple[Runtime, list[str]],
) -> None:
    rt, _ = demo
    key, item, owner, _ = _open_item(rt, OUTSIDER)
    deputy = OUTSIDER  # on no case: the cover alone opens this case to them
    with write_session(rt.engine) as session:
        set_absence(
            session=session,
            email=owner,
            starts=TODAY,
            ends=TODAY + timedelta(days=3),
            deputy=deputy,
            now=NOW - timedelta(days=1),
        )
    browser = _client(rt, deputy)
    # My items lists the absent owner's items, each marked whom it is for, while they are away.
    with read_session(rt.engine) as session:
        people = load_directory(session.connection()).by_email
        theirs = my_items(session=session, person=people[owner], today=TODAY, now=NOW)
        covering = my_items(session=session, person=people[deputy], today=TODAY, now=NOW)
        later = NOW + timedelta(days=5)
        after = my_items(session=session, person=people[deputy], today=later.date(), now=later)
    assert theirs.due and all(r["for"] is None for r in theirs.due)
    assert [r for r in covering.due if r["for"] == owner] == [
        {**r, "for": owner} for r in theirs.due
    ]
    assert not [r for r in after.due + after.done if r["for"]]  # back: theirs again
    assert f"for {owner}, who is away" in browser.get("/me").text
    page = browser.get(f"/cases/{key}")
    assert page.status_code == 200
    action = f"/cases/{key}/milestones/{item}"
    done = browser.post(
        action, data={**_form(page.text, action), "action": "start"}, follow_redirects=False
    )
    assert done.status_code == 303, re.findall(r'class="error"[^<]*', done.text)
    (event,) = [e for e in _events(rt, key, "milestone.start") if e.subject == item]
    assert (event.actor, event.source) == (deputy, Source.WEB)
    assert event.after and event.after["on_behalf_of"] == owner


def test_a_deputy_votes_for_an_absent_council_member_on_the_web(
    demo: tuple[Runtime, list[str]],
) -> None:
    """While a council member is away, their deputy (no council member) finds the member's
    gates on My items and on the case page, each marked whom the vote counts for; the vote is
    the member's, the event the deputy's on their behalf; after the absence, nothing of it."""
    rt, _ = demo
    absent, deputy = "juergen.weiss@bioconvalley.example", "jussi.hakkinen@bioforum-oulu.example"

    def gates(email: str, at: datetime) -> list[dict[str, object]]:
        with read_session(rt.engine) as session:
            reader = load_directory(session.connection()).by_email[email]
            return my_items(session=session, person=reader, today=at.date(), now=at).gates

    assert not gates(deputy, NOW)
    with write_session(rt.engine) as session:
        set_absence(
            session=session,
            email=absent,
            starts=TODAY,
            ends=TODAY + timedelta(days=3),
            deputy=deputy,
            now=NOW - timedelta(days=1),
        )
    theirs = gates(absent, NOW)
    assert theirs and all(g["for"] is None for g in theirs)
    covering = gates(deputy, NOW)
    assert covering == [{**g, "for": absent, "who": [absent]} for g in theirs]
    browser = _client(rt, deputy)
    assert f"Your vote counts for {absent}, who is away." in browser.get("/me").text
    key, gate = str(covering[-1]["case"]), str(covering[-1]["item"])
    page = browser.get(f"/cases/{key}")
    assert page.status_code == 200 and f"Your vote counts for {absent}" in page.text
    action = f"/cases/{key}/gates/{gate}"
    voted = browser.post(
        action,
        data={**_form(page.text, action), "decision": "approve", "comment": "seen"},
        follow_redirects=False,
    )
    assert voted.status_code == 303, re.findall(r'class="error"[^<]*', voted.text)
    with read_session(rt.engine) as session:
        vote = session.exec(
            select(GateDecision, Contact.email)
            .join(Contact, col(Contact.id) == GateDecision.approver_id)
            .order_by(col(GateDecision.id).desc())
        ).first()
    assert vote is not None and (vote[1], vote[0].source, vote[0].comment) == (
        absent,
        Source.WEB,
        "seen",
    )
    (event,) = [e for e in _events(rt, key, "gate.vote") if e.actor == deputy]
    assert event.after and event.after["on_behalf_of"] == absent
    # The member has voted now, through their deputy: neither is asked again for that gate.
    assert (key, gate) not in {(g["case"], g["item"]) for g in gates(absent, NOW)}
    assert (key, gate) not in {(g["case"], g["item"]) for g in gates(deputy, NOW)}
    again = browser.post(action, data={**_form(page.text, action), "decision": "approve"})
    assert again.status_code == 403 and f"you may not vote on {gate}" in again.text
    later = NOW + timedelta(days=5)
    assert not gates(deputy, later)  # back at work: the deputy stands in for no one
