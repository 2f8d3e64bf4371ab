"""The partners' door's security, against the real app on a SQLite file (and the revocation
on PostgreSQL too): signed tokens, login by link, refusals audited and rate limited, cookie
flags, CSRF, headers, error pages that echo nothing, revocation and retirement, and the link a
delivered notice carries logging its reader in."""

import json
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.demo import load_consortium
from bridgebsr.monitor.sweep import run_monitor
from bridgebsr.office import cases, people, retire
from bridgebsr.office.delivery import deliver
from bridgebsr.office.doctor import Check, checks
from bridgebsr.office.progress import Actor
from bridgebsr.settings import Settings
from bridgebsr.store import case_rows as store
from bridgebsr.store.db import read_session, write_session
from bridgebsr.web import auth, tokens
from bridgebsr.web.app import create_app
from bridgebsr.web.links import feed_link, personal_link
from bridgebsr.web.serve import Background, problems
from notifications.render import Door, render
from tests.conftest import migrated
from tests.test_bridgebsr.test_cli_input import cli, one_error_line, store_env
from tests.test_notifications.conftest import free_port

BASE = "http://127.0.0.1:4280"
LEAD = "soren.ostergaard@scanbalt.example"  # pilot-lead at SCANBALT
OTHER = "karin.astrom@mva.example"  # pilot-lead at MVA
COORDINATOR = "mette.sorensen@scanbalt.example"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    """The app's time, moved by the test."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def _whoami(request: Request) -> Response:
    """A page behind the door, as the pages are: the signed-in person or the 403."""
    person = auth.viewer(request)
    role = "coordinator" if auth.is_coordinator(person) else person.role
    return PlainTextResponse(f"{person.name} ({role}) csrf={auth.csrf_token(request)}")


def _client(rt: Runtime, clock: Clock) -> TestClient:
    app = create_app(rt, clock=clock)
    app.router.routes.append(Route("/whoami", _whoami))
    return TestClient(app, base_url=BASE)


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated store with the consortium, made once and copied by each test."""
    folder = tmp_path_factory.mktemp("door-seed")
    with migrated(f"sqlite:///{folder / 'cases.db'}", folder / "home") as rt:
        load_consortium(rt)
    return folder / "cases.db"


@pytest.fixture
def door(seed: Path, tmp_path: Path) -> Iterator[tuple[Runtime, Clock, TestClient]]:
    """The consortium on a SQLite file of its own, and a browser at the app."""
    shutil.copy(seed, tmp_path / "cases.db")
    rt = build_runtime(
        Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'cases.db'}")
    )
    clock = Clock()
    try:
        with _client(rt, clock) as client:
            yield rt, clock, client
    finally:
        rt.engine.dispose()


def _contact(rt: Runtime, email: str) -> tuple[int, int]:
    with rt.engine.connect() as conn:
        row = conn.execute(
            text("SELECT id, link_generation FROM contacts WHERE email = :e"), {"e": email}
        ).one()
    return int(row[0]), int(row[1])


def _link(rt: Runtime, email: str, **kw: Any) -> str:
    cid, generation = _contact(rt, email)
    return personal_link(rt, cid, generation, now=kw.pop("now", NOW), **kw)


def _path(link: str) -> str:
    return link.removeprefix(BASE)


def _denials(rt: Runtime) -> list[tuple[Any, ...]]:
    with rt.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text("SELECT address, reason, path, contact_id FROM access_denials ORDER BY id")
            )
        ]


# --- tokens ----------------------------------------------------------------------------------


def test_a_token_says_who_and_which_generation_and_refuses_forgery_age_and_purpose() -> None:
    page = tokens.issue(secret="k1", contact_id=7, generation=3, purpose="page", now=NOW)
    claims = tokens.read(page, secret="k1", purpose="page", now=NOW + timedelta(days=29))
    assert (claims.contact_id, claims.generation, claims.purpose) == (7, 3, "page")
    with pytest.raises(tokens.Expired):
        tokens.read(page, secret="k1", purpose="page", now=NOW + timedelta(days=30))
    with pytest.raises(tokens.WrongPurpose):
        tokens.read(page, secret="k1", purpose="feed", now=NOW)
    with pytest.raises(tokens.Forged):  # another installation's key
        tokens.read(page, secret="k2", purpose="page", now=NOW)
    body, _, signature = page.rpartition(".")
    other = tokens.issue(secret="k1", contact_id=8, generation=3, purpose="page", now=NOW)
    with pytest.raises(tokens.Forged):  # someone else's claims under this signature
        tokens.read(f"{other.rpartition('.')[0]}.{signature}", secret="k1", purpose="page", now=NOW)
    feed = tokens.issue(secret="k1", contact_id=7, generation=3, purpose="feed", now=NOW)
    later = NOW + timedelta(days=364)
    assert tokens.read(feed, secret="k1", purpose="feed", now=later).purpose == "feed"


def test_logs_and_denials_keep_paths_without_their_tokens() -> None:
    assert auth.masked("/l/abc.def") == "/l/***"
    assert auth.masked("/feeds/abc.def.ics") == "/feeds/***"
    assert auth.masked("/feeds/abc.def/partner.ics") == "/feeds/***/partner.ics"
    assert auth.masked("/cases/IP-2026-0001") == "/cases/IP-2026-0001"


def test_the_secret_key_is_made_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    key = settings.signing_key()
    path = tmp_path / "home" / "secret_key"
    assert path.stat().st_mode & 0o777 == 0o600 and len(key) >= 40
    assert Settings(home=tmp_path / "home").signing_key() == key
    assert Settings(home=tmp_path / "home", secret_key="given").signing_key() == "given"


def test_doctor_checks_where_links_point_and_their_key(door: Any) -> None:
    rt, _, _ = door

    def check(**settings: Any) -> Check:
        changed = rt.settings.model_copy(update=settings)
        (found,) = [c for c in checks(Runtime(changed, rt.engine)) if c.name == "web links"]
        return found

    key = rt.settings.home / "secret_key"  # made when the app started
    assert check().ok and str(key) in check().detail
    key.chmod(0o644)
    assert not check().ok and "chmod 600" in check().detail
    key.unlink()
    assert check().ok and "made on first use" in check().detail
    assert "BRIDGEBSR_SECRET_KEY" in check(secret_key=SecretStr("k")).detail
    plain = check(public_url="http://door.example.org")
    assert not plain.ok and "TLS" in plain.detail
    assert check(public_url="https://door.example.org").ok


# --- login by link ---------------------------------------------------------------------------


def test_a_link_signs_its_person_in_with_a_strict_cookie_and_headers(door: Any) -> None:
    rt, _, client = door
    link = _link(rt, LEAD, next_path="/cases/IP-2026-0001#kickoff")
    assert link.startswith(f"{BASE}/l/") and "next=/cases/IP-2026-0001%23kickoff" in link
    opened = client.get(_path(link), follow_redirects=False)
    assert opened.status_code == 303
    assert opened.headers["location"] == "/cases/IP-2026-0001#kickoff"
    cookie = opened.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    page = client.get("/whoami")
    assert page.status_code == 200 and page.text.startswith("Søren Østergaard (pilot-lead)")
    for response in (opened, page, client.get("/nowhere")):
        headers = response.headers
        assert headers["content-security-policy"] == (
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        )
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
    # Only a path on this site is followed.
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        away = client.get(_path(_link(rt, LEAD, next_path=target)), follow_redirects=False)
        assert away.headers["location"] == "/me"
    # The coordinator is who the directory says.
    client.get(_path(_link(rt, COORDINATOR)))
    assert "(coordinator)" in client.get("/whoami").text


def test_behind_https_the_cookie_is_secure(door: Any) -> None:
    rt, _, _ = door
    rt.settings = rt.settings.model_copy(update={"public_url": "https://door.example"})
    link = _link(rt, LEAD)
    assert link.startswith("https://door.example/l/")
    with TestClient(create_app(rt, clock=Clock()), base_url="https://door.example") as client:
        opened = client.get(link, follow_redirects=False)
    assert opened.status_code == 303 and "secure" in opened.headers["set-cookie"].lower()


def _refused(client: TestClient, path: str, token: str) -> None:
    answer = client.get(path, follow_redirects=False)
    assert answer.status_code == 403, path
    assert "set-cookie" not in answer.headers
    assert token not in answer.text and "This link does not open anything" in answer.text


def test_forged_expired_wrong_purpose_and_revoked_links_are_refused_and_recorded(
    door: Any,
) -> None:
    rt, clock, client = door
    lead, generation = _contact(rt, LEAD)
    good = _link(rt, LEAD)
    token = good.rsplit("/", 1)[1]
    stranger = tokens.issue(
        secret="another", contact_id=lead, generation=1, purpose="page", now=NOW
    )
    old = _link(rt, LEAD, now=NOW - timedelta(days=31))
    feed = feed_link(rt, lead, generation, now=NOW).removesuffix(".ics").rsplit("/", 1)[1]
    for bad in (f"{token[:-2]}xy", stranger, old.rsplit("/", 1)[1], feed):
        _refused(client, f"/l/{bad}", bad)
    assert client.get("/whoami").status_code == 403  # no session was opened
    assert [(r, p, c) for _, r, p, c in _denials(rt)] == [
        ("forged", "/l/***", None),
        ("forged", "/l/***", None),
        ("expired", "/l/***", None),
        ("wrong-purpose", "/l/***", None),
        ("no-session", "/whoami", None),
    ]
    assert {a for a, *_ in _denials(rt)} == {"testclient"}

    # A session opened by a link ends when the links are revoked, and so does the link.
    assert client.get(_path(good)).status_code == 200  # My items
    assert client.get("/whoami").status_code == 200
    with write_session(rt.engine) as session:
        assert people.revoke_links(session=session, email=LEAD, now=NOW) == (1, 2)
    assert client.get("/whoami").status_code == 403
    _refused(client, _path(good), token)
    fresh = _link(rt, LEAD)
    assert fresh != good and client.get(_path(fresh)).status_code == 200
    assert client.get("/whoami").status_code == 200
    assert [(r, c) for _, r, _, c in _denials(rt)[-2:]] == [("revoked", lead), ("revoked", lead)]
    # No table keeps a token.
    with rt.engine.connect() as conn:
        for table in ("access_denials", "directory_events", "contacts", "notifications"):
            dump = repr(conn.execute(text(f"SELECT * FROM {table}")).all())
            assert token not in dump and fresh.rsplit("/", 1)[1] not in dump


def test_a_retired_persons_links_and_session_stop(door: Any) -> None:
    rt, _, client = door
    link = _link(rt, OTHER)
    client.get(_path(link))
    assert client.get("/whoami").status_code == 200
    with write_session(rt.engine) as session:
        retire.retire_contact(
            session=session, email_=OTHER, successor=LEAD, actor=Actor("cli"), now=NOW
        )
    assert client.get("/whoami").status_code == 403
    assert _contact(rt, OTHER)[1] == 2  # retiring moved their links on
    _refused(client, _path(link), link.rsplit("/", 1)[1])
    # Even a link made at the new generation opens nothing for someone who left.
    again = _link(rt, OTHER)
    _refused(client, _path(again), again.rsplit("/", 1)[1])
    assert [r for _, r, _, _ in _denials(rt)] == ["retired", "retired", "retired"]


def test_an_error_page_never_echoes_the_token(door: Any) -> None:
    rt, _, client = door
    token = _link(rt, LEAD).rsplit("/", 1)[1]
    for answer in (
        client.get(f"/l/{token}/more"),
        client.post(f"/l/{token}"),
        client.get(f"/feeds/{token}.ics"),
        client.get(f"/l/{token[:-2]}zz"),
    ):
        assert answer.status_code in {403, 404, 405}
        assert token not in answer.text and token[:-2] not in answer.text
    # A page used with the wrong method says which methods it takes.
    wrong = client.post(f"/l/{token}")
    assert wrong.status_code == 405
    assert set(wrong.headers.get("allow", "").split(", ")) == {"GET", "HEAD"}
    assert "cannot be used that way" in wrong.text


def test_forms_need_the_sessions_csrf_token(door: Any) -> None:
    rt, _, client = door
    client.get(_path(_link(rt, LEAD)))
    csrf = client.get("/whoami").text.rsplit("csrf=", 1)[1]
    assert client.post("/logout", data={}).status_code == 403
    assert client.post("/logout", data={"csrf_token": "x" + csrf}).status_code == 403
    assert client.get("/whoami").status_code == 200  # still signed in
    out = client.post("/logout", data={"csrf_token": csrf})
    assert out.status_code == 200 and "Signed out" in out.text
    assert client.get("/whoami").status_code == 403
    assert [r for _, r, _, _ in _denials(rt)] == ["csrf", "csrf", "no-session"]


def test_an_address_refused_too_often_is_turned_away_until_the_window_passes(door: Any) -> None:
    rt, clock, client = door
    for _ in range(auth.LIMIT + 1):
        assert client.get("/l/nonsense").status_code == 403
    good = _path(_link(rt, LEAD))
    limited = client.get(good, follow_redirects=False)
    assert limited.status_code == 429 and "set-cookie" not in limited.headers
    assert limited.headers["x-frame-options"] == "DENY"
    assert limited.headers["retry-after"] == str(int(auth.WINDOW.total_seconds()))
    assert len(_denials(rt)) == auth.LIMIT + 1  # the 429s are not counted again
    # Another worker (another app over the same store) agrees.
    with _client(rt, clock) as other:
        assert other.get("/health").status_code == 429
    clock.now = NOW + auth.WINDOW + timedelta(seconds=1)
    assert client.get(good, follow_redirects=False).status_code == 303


# --- serving ------------------------------------------------------------------------------------


def test_served_beside_prefect_the_app_logs_requests_without_tokens(door: Any) -> None:
    rt, _, _ = door
    server = Background(rt, port=free_port(), log_file=rt.settings.home / "web.log")
    server.start()
    token = _link(rt, LEAD, now=datetime.now(UTC)).rsplit("/", 1)[1]  # the app's own clock
    try:
        with urllib.request.urlopen(f"{server.url}/health", timeout=10) as reply:
            assert reply.status == 200 and reply.headers["x-frame-options"] == "DENY"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{server.url}/l/{token[:-3]}abc", timeout=10)
        assert refused.value.code == 403
        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as opened:
            opener.open(f"{server.url}/l/{token}", timeout=10)
        assert opened.value.code == 303
    finally:
        server.stop()
    log = (rt.settings.home / "web.log").read_text(encoding="utf-8")
    assert "GET /health 200" in log and "GET /l/*** 403" in log and "GET /l/*** 303" in log
    assert token[:20] not in log
    assert problems(rt, "127.0.0.1") == []
    assert "unencrypted" in problems(rt, "0.0.0.0")[0]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# --- revocation on PostgreSQL (the door's tests above run it on SQLite) --------------------------


@pytest.mark.postgres
def test_revoking_links_moves_the_generation_in_one_audited_change(
    pg_url: str, tmp_path: Path
) -> None:
    with migrated(pg_url, tmp_path / "home") as rt:
        load_consortium(rt)
        lead, before = _contact(rt, LEAD)
        env = store_env(rt) | {"BRIDGEBSR_PUBLIC_URL": BASE}
        done = cli(env, "contacts", "revoke-links", LEAD.upper(), "--by", COORDINATOR)
        assert done.code == 0 and f"{LEAD}: every earlier link revoked" in done.stdout
        assert _contact(rt, LEAD) == (lead, before + 1)
        one_error_line(cli(env, "contacts", "revoke-links", "nobody@x.example"), "no contact")
        with read_session(rt.engine) as session:
            history = people.contact_history(session=session, email=LEAD)
        *_, last = history
        assert (last["kind"], last["subject"], last["actor"]) == (
            "contact.revoke-links",
            LEAD,
            COORDINATOR,
        )
        assert (last["before"], last["after"]) == ({"link_generation": 1}, {"link_generation": 2})


# --- notices carry links -----------------------------------------------------------------------


def test_a_delivered_notice_carries_a_link_that_signs_its_reader_in(door: Any) -> None:
    rt, clock, client = door
    monday = date(2026, 3, 2)
    with write_session(rt.engine) as session:
        key = cases.open_case(
            session=session,
            catalog=rt.catalog,
            kind="ip-integration",
            title="Door",
            owner_email=LEAD,
            start=monday,
            now=NOW,
        ).key
    with read_session(rt.engine) as session:
        loaded = store.load_case(session, key, for_update=False)
        due = min(m.planned_due for m in loaded.plan.milestones)
    day = datetime(due.year, due.month, due.day, 7, tzinfo=UTC)
    run_monitor(rt.engine, now=day, zone="Europe/Copenhagen")
    report = deliver(rt, now=day + timedelta(hours=3))
    assert report.sent >= 1
    lines = (rt.settings.home / "notifications.log").read_text(encoding="utf-8").splitlines()
    messages = [json.loads(line) for line in lines]
    body = "\n".join(m["body"] for m in messages)
    opens = re.findall(rf"Open it: ({re.escape(BASE)}/l/\S+)", body)
    pages = re.findall(rf"Your items: ({re.escape(BASE)}/l/\S+)", body)
    assert len(opens) == len(messages) == len(pages) >= 1
    assert all(f"?next=/cases/{key}%23" in link for link in opens)
    with rt.engine.connect() as conn:
        payloads = repr(conn.execute(text("SELECT payload FROM notifications")).all())
    assert all(link.split("/l/")[1].split("?")[0] not in payloads for link in opens)
    # The link logs its reader in and goes straight to the item.
    clock.now = day + timedelta(hours=4)
    opened = client.get(_path(opens[0]), follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"].startswith(f"/cases/{key}#")
    reader = client.get("/whoami")
    assert reader.status_code == 200
    with rt.engine.connect() as conn:
        names = dict(conn.execute(text("SELECT email, name FROM contacts")).all())
    assert reader.text.startswith(names[messages[0]["to"]])


def test_chat_carries_one_short_link_and_email_both() -> None:
    payload = {"case": "K-1", "item": "m", "item_kind": "milestone", "due": "2026-03-02"}
    door = Door(page="https://d.example/l/P", item="https://d.example/l/P?next=/cases/K-1%23m")
    message = render(payload, door=door)
    assert "[Open it](https://d.example/l/P?next=/cases/K-1%23m)" in message.markdown
    assert "https://d.example/l/P)" not in message.markdown  # the page link: email only
    assert "Open it: https://d.example/l/P?next" in message.text
    assert "Your items: https://d.example/l/P\n" in message.text
    assert 'href="https://d.example/l/P?next=/cases/K-1%23m"' in message.html
    plain = render(payload)
    assert "Open it" not in plain.text and "Your items" not in plain.markdown
