"""Delivery through Apprise to real endpoints, and the outbox dispatched over a real case store.

Email goes to an aiosmtpd server on loopback (`mailto://[user:pass@]127.0.0.1:PORT?from=...`,
plain SMTP, no TLS), chat to an HTTP receiver through an Apprise YAML config (`json://` tagged
with a contact's email, `mmost://` tagged with a partner code); nothing configured falls back
to the `bridgebsr://` local log. Dispatch tests run on SQLite and PostgreSQL.
"""

import base64
import json
import logging
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from models import NotificationStatus
from notifications.outbox import DispatchReport, backoff, dispatch
from notifications.post import BadChannel, PostOffice, shown, with_recipient
from notifications.render import render
from tests.test_notifications.conftest import (
    CANARY,
    CHAT_PARTNER,
    COORDINATOR,
    DESK_OWNER,
    LEAD,
    SENDER,
    HttpReceiver,
    Outbox,
    SmtpSink,
    chat_url,
    free_port,
    json_url,
)

PAYLOAD: dict[str, Any] = {
    "case": "IP-2026-0001",
    "case_title": "Øresund IP integration",
    "pilot": "ip-integration",
    "country": "DK",
    "item": "bottleneck-desk-study",
    "item_kind": "milestone",
    "item_title": "Desk study of regional IP bottlenecks",
    "due": "2026-05-15",
    "days_late": 9,
    "step": "due",
    "offset": 0,
    "round": 1,
}
URL_MARKERS = ("://", "127.0.0.1", "http:", "/contact", "partnertoken", "from=")


def _office(tmp_path: Path, **kwargs: Any) -> PostOffice:
    kwargs.setdefault("email_url", None)
    kwargs.setdefault("apprise_config", None)
    kwargs.setdefault("timeout", 5.0)
    return PostOffice(local_log=tmp_path / "notices" / "local.log", **kwargs)


def _counts(report: DispatchReport) -> dict[str, int]:
    """Outbox rows by outcome (the report also counts messages, digests and summaries)."""
    return {k: report.summary()[k] for k in ("sent", "held", "retrying", "failed")}


def _log_lines(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "notices" / "local.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _no_url(error: str | None) -> None:
    assert error
    for marker in URL_MARKERS:
        assert marker not in error.lower(), (marker, error)


# --- email -----------------------------------------------------------------------------------


@pytest.mark.parametrize("login", [None, ("office", "app-password")], ids=["no-auth", "auth"])
def test_email_reaches_the_contact_with_the_case_in_the_subject(
    tmp_path: Path, smtp: SmtpSink, login: tuple[str, str] | None
) -> None:
    url = smtp.url(*login) if login else smtp.url()
    post = _office(tmp_path, email_url=url)

    results = post.deliver(to=LEAD, tags=[LEAD, "SCANBALT"], message=render(PAYLOAD))

    assert [(r.channel, r.ok, r.detail) for r in results] == [("email", True, "")]
    (mail,) = smtp.received()
    assert mail.rcpt_tos == [LEAD]
    assert mail.mail_from == SENDER
    assert mail.message["To"] == LEAD
    assert "IP-2026-0001" in mail.subject
    assert "9 day(s) late" in mail.subject
    assert "Due: Friday 15 May 2026 (9 day(s) late)" in mail.text
    assert "<b>IP-2026-0001</b>" in mail.html
    assert "Øresund IP integration" in mail.text
    assert "Desk study of regional IP bottlenecks" in mail.text
    assert smtp.logins == ([login] if login else [])
    assert _log_lines(tmp_path) == []


def test_each_recipient_gets_their_own_message_and_nobody_elses(
    tmp_path: Path, smtp: SmtpSink
) -> None:
    post = _office(tmp_path, email_url=smtp.url())
    for to in (LEAD, COORDINATOR):
        post.deliver(to=to, tags=[to], message=render(PAYLOAD))
    assert [m.rcpt_tos for m in smtp.received()] == [[LEAD], [COORDINATOR]]


def test_with_recipient_replaces_any_to_and_keeps_the_rest() -> None:
    url = f"mailto://u:p@127.0.0.1:2525?from={SENDER}&to=someone@else.example"
    out = with_recipient(url, LEAD)
    assert out.startswith("mailto://u:p@127.0.0.1:2525?")
    assert "someone" not in out
    assert out.endswith("to=soren.ostergaard%40scanbalt.example")
    assert "from=office%40bridgebsr.example" in out


def test_the_sender_name_survives_with_recipient(tmp_path: Path, smtp: SmtpSink) -> None:
    post = _office(tmp_path, email_url=smtp.url() + "&name=Bridge%20BSR%20Office")
    (result,) = post.deliver(to=LEAD, tags=[LEAD], message=render(PAYLOAD))
    assert result.ok
    (mail,) = smtp.received()
    assert mail.message["From"].addresses[0].display_name == "Bridge BSR Office"


def test_an_smtp_server_refusing_the_message_is_a_failed_email(
    tmp_path: Path, smtp: SmtpSink
) -> None:
    smtp.refuse = True
    post = _office(tmp_path, email_url=smtp.url())
    (result,) = post.deliver(to=LEAD, tags=[LEAD], message=render(PAYLOAD))
    assert (result.channel, result.ok) == ("email", False)
    _no_url(result.detail)
    assert smtp.received() == []


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"mailto://office:{CANARY}@Leaky#x@smtp.example.org", "unescaped '@' or '#'"),
        (f"mailto://office:{CANARY}@Leaky@smtp.example.org?from={SENDER}", "unescaped '@'"),
        (f"mailto://u:{CANARY}@127.0.0.1:25?from=not-an-address", "check the host, the port"),
        (f"mailto://office:{CANARY}@127.0.0.1:25", "and from= (an address)"),
        (f"https://office:{CANARY}@smtp.example.org", "not a mailto:// or mailtos:// URL"),
    ],
    ids=["hash", "two-at", "bad-from", "no-from", "not-mail"],
)
def test_an_email_url_that_cannot_send_is_refused_without_showing_it(
    tmp_path: Path, url: str, says: str
) -> None:
    with pytest.raises(BadChannel) as refused:
        _office(tmp_path, email_url=url)
    message = str(refused.value)
    assert message.startswith("BRIDGEBSR_EMAIL_URL ") and says in message
    for secret in (CANARY, "Leaky", "office", "127.0.0.1", "smtp.example.org"):
        assert secret not in message
    if "mailto" in url:
        assert "@ as %40, # as %23" in message


def test_a_percent_encoded_password_with_at_and_hash_logs_in_as_written(
    tmp_path: Path, smtp: SmtpSink
) -> None:
    post = _office(tmp_path, email_url=smtp.url("office", "abc%40Leaky%23x"))
    (result,) = post.deliver(to=LEAD, tags=[LEAD], message=render(PAYLOAD))
    assert result.ok, result.detail
    assert smtp.logins == [("office", "abc@Leaky#x")]


@pytest.mark.parametrize("content", [None, "urls:\n  - notascheme://x\n"], ids=["none", "empty"])
def test_an_apprise_config_without_a_service_is_refused(
    tmp_path: Path, content: str | None
) -> None:
    config = tmp_path / "apprise.yml"
    if content is not None:
        config.write_text(content, encoding="utf-8")
    with pytest.raises(BadChannel) as refused:
        _office(tmp_path, apprise_config=config)
    assert str(refused.value).startswith(f"BRIDGEBSR_APPRISE_CONFIG {config} ")


@pytest.mark.parametrize(
    ("trouble", "reply"),
    [
        ("deny_login", "SMTP 535 5.7.8 Authentication credentials invalid"),
        ("hang_up", "Connection unexpectedly closed"),
        ("refuse", "SMTP 554 5.7.1 Transaction failed"),
    ],
    ids=["login-535", "closed-in-data", "rejected-554"],
)
def test_an_smtp_failure_says_what_the_server_replied(
    tmp_path: Path, smtp: SmtpSink, trouble: str, reply: str
) -> None:
    setattr(smtp, trouble, True)
    post = _office(tmp_path, email_url=smtp.url("office", CANARY))
    (result,) = post.deliver(to=LEAD, tags=[LEAD], message=render(PAYLOAD))
    assert (result.channel, result.ok) == ("email", False)
    assert result.detail == f"E-Mail: failure ({reply})"
    assert CANARY not in result.detail
    _no_url(result.detail)
    assert smtp.received() == []


def test_hearing_smtp_replies_shows_other_log_handlers_nothing_more(
    tmp_path: Path, smtp: SmtpSink, receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    # A handler on the root logger sees what it saw before: warnings, not Apprise's debug
    # lines (which hold webhook URLs with their tokens).
    caplog.set_level(logging.WARNING)
    hook = f"json://bridge:{CANARY}@127.0.0.1:{receiver.port}/contact"
    config = tmp_path / "apprise.yml"
    config.write_text(f"urls:\n  - {hook}:\n      - tag: {LEAD}\n", encoding="utf-8")
    smtp.deny_login = True
    post = _office(tmp_path, email_url=smtp.url("office", CANARY), apprise_config=config)
    email, chat = post.deliver(to=LEAD, tags=[LEAD], message=render(PAYLOAD))
    assert "SMTP 535" in email.detail and chat.ok
    assert [r.levelname for r in caplog.records if r.name == "apprise"] == ["WARNING"]
    assert CANARY not in caplog.text and "/contact" not in caplog.text


# --- chat and the local log ------------------------------------------------------------------


def test_chat_goes_where_the_tags_say(
    tmp_path: Path, receiver: HttpReceiver, apprise_config: Path
) -> None:
    post = _office(tmp_path, apprise_config=apprise_config)
    message = render(PAYLOAD)

    mine = post.deliver(to=LEAD, tags=[LEAD, "SCANBALT", "ip-integration"], message=message)

    assert [(r.channel, r.ok) for r in mine] == [("chat", True)]
    (hit,) = receiver.received()
    assert hit.path == "/contact"
    assert hit.data["title"] == message.title
    assert "IP-2026-0001" in hit.data["title"]
    assert hit.data["message"] == message.markdown.strip()
    assert "**IP-2026-0001**" in hit.data["message"]

    # Another partner's code only: the contact's webhook is not called.
    other = post.deliver(to=COORDINATOR, tags=["BCV"], message=message)
    assert "chat" not in {r.channel for r in other}
    assert receiver.received("/contact") == [hit]
    assert receiver.received("/hooks") == []

    # The partner's Mattermost webhook, by partner code.
    partner = post.deliver(to=DESK_OWNER, tags=[DESK_OWNER, CHAT_PARTNER], message=message)
    assert [(r.channel, r.ok) for r in partner] == [("chat", True)]
    (hook,) = receiver.received("/hooks")
    assert hook.path == "/hooks/partnertoken"
    assert message.title in hook.data["text"]
    assert receiver.received("/contact") == [hit]


def test_email_and_chat_both_go_for_a_tagged_contact(
    tmp_path: Path, smtp: SmtpSink, receiver: HttpReceiver, apprise_config: Path
) -> None:
    post = _office(tmp_path, email_url=smtp.url(), apprise_config=apprise_config)
    results = post.deliver(to=LEAD, tags=[LEAD], message=render(PAYLOAD))
    assert [(r.channel, r.ok) for r in results] == [("email", True), ("chat", True)]
    assert [m.rcpt_tos for m in smtp.received()] == [[LEAD]]
    assert [h.path for h in receiver.received()] == ["/contact"]
    assert _log_lines(tmp_path) == []


def test_one_webhook_matching_several_tags_is_called_once(
    tmp_path: Path, receiver: HttpReceiver, write_config: Callable[..., Path]
) -> None:
    config = write_config((json_url(receiver), f"{LEAD}, SCANBALT, ip-integration"))
    post = _office(tmp_path, apprise_config=config)
    results = post.deliver(
        to=LEAD, tags=[LEAD, "SCANBALT", "ip-integration"], message=render(PAYLOAD)
    )
    assert [(r.channel, r.ok) for r in results] == [("chat", True)]
    assert len(receiver.received("/contact")) == 1


def test_each_post_office_writes_its_own_local_log(tmp_path: Path) -> None:
    first = PostOffice(email_url=None, apprise_config=None, local_log=tmp_path / "a" / "log")
    PostOffice(email_url=None, apprise_config=None, local_log=tmp_path / "b" / "log")
    first.deliver(to=LEAD, tags=[LEAD], message=render(PAYLOAD))
    assert (tmp_path / "a" / "log").exists()
    assert not (tmp_path / "b" / "log").exists()


def test_nothing_configured_writes_the_local_log(tmp_path: Path) -> None:
    post = _office(tmp_path)
    message = render(PAYLOAD)
    assert post.channels() == ["local log (bridgebsr://)"]

    results = post.deliver(to=LEAD, tags=[LEAD, "SCANBALT"], message=message)
    post.deliver(to=COORDINATOR, tags=[COORDINATOR], message=message)

    assert [(r.channel, r.ok) for r in results] == [("local", True)]
    lines = _log_lines(tmp_path)
    assert [line["to"] for line in lines] == [LEAD, COORDINATOR]
    assert lines[0]["title"] == message.title
    assert lines[0]["body"] == message.text.strip()
    assert lines[0]["at"]


def test_channels_are_shown_in_privacy_form(
    tmp_path: Path, smtp: SmtpSink, apprise_config: Path
) -> None:
    post = _office(tmp_path, email_url=smtp.url("office", CANARY), apprise_config=apprise_config)
    channels = post.channels()
    assert len(channels) == 2
    assert channels[0].startswith(f"email via mailto://office:****@127.0.0.1:{smtp.port}")
    assert channels[1] == "chat/webhooks from the Apprise config"
    assert CANARY not in " ".join(channels)
    assert shown("definitely not a url") == "<unparseable URL>"


# --- slow receivers --------------------------------------------------------------------------


def test_a_slow_webhook_times_out_instead_of_hanging(
    tmp_path: Path, receiver: HttpReceiver, apprise_config: Path
) -> None:
    receiver.delay = 8.0
    post = _office(tmp_path, apprise_config=apprise_config, timeout=1.0)

    started = time.monotonic()
    results = post.deliver(to=LEAD, tags=[LEAD], message=render(PAYLOAD))
    elapsed = time.monotonic() - started

    assert elapsed < 3.0
    assert [(r.channel, r.ok) for r in results] == [("chat", False)]
    # The service's read timeout ends the call: Apprise reports it as the service failing.
    assert results[0].detail in {"JSON: failure", "JSON: timeout"}
    _no_url(results[0].detail)


# --- dispatch over a real case store ---------------------------------------------------------


def test_dispatch_sends_every_pending_row_once(
    tmp_path: Path, outbox: Outbox, smtp: SmtpSink
) -> None:
    rows = outbox.rows()
    post = _office(tmp_path, email_url=smtp.url())

    report = dispatch(outbox.engine, now=outbox.now, post=post, batch=3)  # two claims

    assert _counts(report) == {"sent": len(rows), "held": 0, "retrying": 0, "failed": 0}
    assert report.errors == []
    after = outbox.rows()
    assert {r.status for r in after} == {NotificationStatus.SENT}
    assert {r.sent_at for r in after} == {outbox.now}
    assert {r.attempts for r in after} == {1}
    assert {r.last_error for r in after} == {None}
    mails = smtp.received()
    assert len(mails) == len(rows)
    assert Counter(m.rcpt_tos[0] for m in mails) == Counter(outbox.recipients().values())
    # Each message is the notice of its row: case key in the subject, its item in the text.
    by_item = Counter((m.rcpt_tos[0], m.subject.split(": ")[1].split(" ")[0]) for m in mails)
    recipients = outbox.recipients()
    assert by_item == Counter((recipients[r.id or 0], r.subject) for r in rows)
    assert all(m.subject.startswith("IP-2026-0001: ") for m in mails)

    again = dispatch(outbox.engine, now=outbox.now + timedelta(hours=1), post=post)
    assert _counts(again) == {"sent": 0, "held": 0, "retrying": 0, "failed": 0}
    assert len(smtp.received()) == len(rows)
    assert [(r.status, r.sent_at) for r in outbox.rows()] == [(r.status, r.sent_at) for r in after]


def test_a_failing_webhook_retries_with_backoff_then_fails_while_others_go(
    tmp_path: Path,
    outbox: Outbox,
    smtp: SmtpSink,
    receiver: HttpReceiver,
    apprise_config: Path,
) -> None:
    receiver.statuses["/contact"] = 500  # the pilot-lead's webhook is down
    post = _office(tmp_path, email_url=smtp.url(), apprise_config=apprise_config)
    recipients = outbox.recipients()
    lead_rows = {i for i, e in recipients.items() if e == LEAD}
    other_rows = set(recipients) - lead_rows

    now = outbox.now
    report = dispatch(outbox.engine, now=now, post=post)

    assert _counts(report) == {
        "sent": len(other_rows),
        "held": 0,
        "retrying": len(lead_rows),
        "failed": 0,
    }
    rows = {r.id: r for r in outbox.rows()}
    for i in other_rows:
        assert (rows[i].status, rows[i].sent_at, rows[i].attempts) == (
            NotificationStatus.SENT,
            now,
            1,
        )
    for i in lead_rows:
        row = rows[i]
        assert row.status is NotificationStatus.PENDING
        assert row.attempts == 1
        assert row.next_attempt_at == now + backoff(1)
        assert row.sent_at is None
        assert row.last_error and row.last_error.startswith("chat: ")
        _no_url(row.last_error)
    assert len(report.errors) == len(lead_rows)
    for error in report.errors:
        _no_url(error)
    assert [h.path for h in receiver.received("/hooks")] == ["/hooks/partnertoken"]  # MVA

    # Before the backoff runs out nothing is claimed.
    early = dispatch(outbox.engine, now=now + backoff(1) - timedelta(seconds=1), post=post)
    assert _counts(early) == {"sent": 0, "held": 0, "retrying": 0, "failed": 0}

    for attempt in range(2, 6):
        now = now + backoff(attempt - 1)
        report = dispatch(outbox.engine, now=now, post=post)
        rows = {r.id: r for r in outbox.rows()}
        assert {rows[i].attempts for i in lead_rows} == {attempt}
        if attempt < 5:
            assert report.retrying == len(lead_rows) and report.failed == 0
            assert {rows[i].next_attempt_at for i in lead_rows} == {now + backoff(attempt)}
            assert {rows[i].status for i in lead_rows} == {NotificationStatus.PENDING}
        else:
            assert report.failed == len(lead_rows) and report.retrying == 0
            assert {rows[i].status for i in lead_rows} == {NotificationStatus.FAILED}
            assert {rows[i].next_attempt_at for i in lead_rows} == {None}
        assert report.sent == 0
    assert backoff(1) < backoff(2) < backoff(3) < backoff(4)
    assert len(receiver.received("/contact")) == 5 * len(lead_rows)

    done = dispatch(outbox.engine, now=now + timedelta(days=1), post=post)
    assert _counts(done) == {"sent": 0, "held": 0, "retrying": 0, "failed": 0}
    assert {r.status for r in outbox.rows() if r.id in other_rows} == {NotificationStatus.SENT}


def test_a_retry_does_not_send_the_email_again_when_only_chat_failed(
    tmp_path: Path,
    outbox: Outbox,
    smtp: SmtpSink,
    receiver: HttpReceiver,
    apprise_config: Path,
) -> None:
    receiver.statuses["/contact"] = 500
    post = _office(tmp_path, email_url=smtp.url(), apprise_config=apprise_config)
    lead_rows = [i for i, e in outbox.recipients().items() if e == LEAD]
    now = outbox.now
    for attempt in range(1, 4):
        dispatch(outbox.engine, now=now, post=post)
        now += backoff(attempt)
    assert len([m for m in smtp.received() if m.rcpt_tos == [LEAD]]) == len(lead_rows)


def test_an_unreachable_smtp_server_retries_then_fails(
    tmp_path: Path, outbox: Outbox, dead_smtp_url: str
) -> None:
    post = _office(tmp_path, email_url=dead_smtp_url)
    count = len(outbox.rows())

    now = outbox.now
    first = dispatch(outbox.engine, now=now, post=post, max_attempts=3)
    assert _counts(first) == {"sent": 0, "held": 0, "retrying": count, "failed": 0}
    rows = outbox.rows()
    assert {r.status for r in rows} == {NotificationStatus.PENDING}
    assert {r.attempts for r in rows} == {1}
    assert {r.next_attempt_at for r in rows} == {now + backoff(1)}
    for row in rows:
        assert row.last_error and row.last_error.startswith("email: ")
        _no_url(row.last_error)

    now += backoff(1)
    second = dispatch(outbox.engine, now=now, post=post, max_attempts=3)
    assert second.retrying == count
    now += backoff(2)
    third = dispatch(outbox.engine, now=now, post=post, max_attempts=3)
    assert _counts(third) == {"sent": 0, "held": 0, "retrying": 0, "failed": count}
    rows = outbox.rows()
    assert {r.status for r in rows} == {NotificationStatus.FAILED}
    assert {r.attempts for r in rows} == {3}
    assert {r.next_attempt_at for r in rows} == {None}
    assert {r.sent_at for r in rows} == {None}


def test_a_slow_webhook_in_dispatch_is_a_failure_not_a_hang(
    tmp_path: Path,
    outbox: Outbox,
    smtp: SmtpSink,
    receiver: HttpReceiver,
    apprise_config: Path,
) -> None:
    receiver.delays["/contact"] = 8.0  # the pilot-lead's webhook hangs, MVA's answers
    post = _office(tmp_path, email_url=smtp.url(), apprise_config=apprise_config, timeout=1.0)
    recipients = outbox.recipients()
    lead_rows = {i for i, e in recipients.items() if e == LEAD}

    started = time.monotonic()
    report = dispatch(outbox.engine, now=outbox.now, post=post)
    elapsed = time.monotonic() - started

    assert elapsed < 1.5 * len(lead_rows) + 3.0, (elapsed, len(lead_rows))
    assert report.retrying == len(lead_rows)
    assert report.sent == len(recipients) - len(lead_rows)
    for row in outbox.rows():
        if row.id in lead_rows:
            assert row.status is NotificationStatus.PENDING
            assert row.last_error and "chat: JSON: " in row.last_error  # failure or timeout
        else:
            assert row.status is NotificationStatus.SENT


# --- secrets ---------------------------------------------------------------------------------


def test_the_canary_password_is_never_stored_or_shown(
    tmp_path: Path,
    outbox: Outbox,
    receiver: HttpReceiver,
    write_config: Callable[..., Path],
) -> None:
    email_url = f"mailto://office:{CANARY}@127.0.0.1:{free_port()}?from={SENDER}"
    hook_url = json_url(receiver, password=CANARY)
    config = write_config((hook_url, LEAD), (chat_url(receiver), CHAT_PARTNER))
    receiver.status = 500  # every webhook fails too
    post = _office(tmp_path, email_url=email_url, apprise_config=config)

    reports = [dispatch(outbox.engine, now=outbox.now, post=post, max_attempts=2)]
    reports.append(dispatch(outbox.engine, now=outbox.now + backoff(1), post=post, max_attempts=2))

    count = len(outbox.rows())
    assert reports[0].retrying == count and reports[1].failed == count
    # The webhook was really called with the password (basic auth), so it was in play.
    hook_hits = receiver.received("/contact")
    lead_rows = list(outbox.recipients().values()).count(LEAD)
    assert len(hook_hits) == 2 * lead_rows  # each pilot-lead row, two attempts
    basic = "Basic " + base64.b64encode(f"bridge:{CANARY}".encode()).decode()
    assert {h.authorization for h in hook_hits} == {basic}

    with outbox.engine.connect() as conn:
        table = [tuple(row) for row in conn.execute(text("SELECT * FROM notifications"))]
        receipts = [tuple(row) for row in conn.execute(text("SELECT * FROM deliveries"))]
    assert len(table) == count and len(receipts) == 2 * count
    assert CANARY not in repr(table) and CANARY not in repr(receipts)
    for row in outbox.rows():
        assert row.last_error
        assert CANARY not in row.last_error
        _no_url(row.last_error)
    errors = [e for r in reports for e in r.errors]
    assert len(errors) == 2 * count
    assert all(CANARY not in e for e in errors)
    assert CANARY not in shown(email_url)
    assert CANARY not in shown(hook_url)
    assert "****" in shown(email_url) and "****" in shown(hook_url)
    assert all(CANARY not in c for c in post.channels())


# --- JSON webhooks ---------------------------------------------------------------------------


def test_a_webhook_answering_500_is_a_failure_with_a_reason(
    tmp_path: Path, receiver: HttpReceiver, write_config: Callable[..., Path]
) -> None:
    receiver.status = 500
    post = _office(tmp_path, apprise_config=write_config((json_url(receiver), LEAD)))
    for _ in range(2):  # a failure leaves the post office fit for the next message
        (result,) = post.deliver(to=LEAD, tags=[LEAD], message=render(PAYLOAD))
        assert (result.channel, result.ok, result.detail) == ("chat", False, "JSON: failure")
    assert len(receiver.received()) == 2
    receiver.status = 200
    (result,) = post.deliver(to=LEAD, tags=[LEAD], message=render(PAYLOAD))
    assert result.ok


def test_a_webhook_on_a_dead_port_is_a_failure_not_a_hang(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    url = f"json://127.0.0.1:{free_port()}/hook"
    post = _office(tmp_path, apprise_config=write_config((url, LEAD)), timeout=1.0)
    started = time.monotonic()
    (result,) = post.deliver(to=LEAD, tags=[LEAD], message=render(PAYLOAD))
    assert time.monotonic() - started < 3.0
    assert (result.channel, result.ok, result.detail) == ("chat", False, "JSON: failure")


def test_a_webhook_with_retries_is_retried_as_apprise_does(
    tmp_path: Path, receiver: HttpReceiver, write_config: Callable[..., Path]
) -> None:
    receiver.status = 500
    url = f"{json_url(receiver)}?retry=2"
    post = _office(tmp_path, apprise_config=write_config((url, LEAD)))
    (result,) = post.deliver(to=LEAD, tags=[LEAD], message=render(PAYLOAD))
    assert (result.ok, result.detail) == (False, "JSON: failure")
    assert len(receiver.received()) == 3  # the first attempt and two retries


def test_an_optional_webhook_failing_is_not_a_failure(
    tmp_path: Path, receiver: HttpReceiver, write_config: Callable[..., Path]
) -> None:
    receiver.status = 500
    url = f"{json_url(receiver)}?optional=yes"
    post = _office(tmp_path, apprise_config=write_config((url, LEAD)))
    (result,) = post.deliver(to=LEAD, tags=[LEAD], message=render(PAYLOAD))
    assert (result.channel, result.ok) == ("chat", True)
    assert len(receiver.received()) == 1


def test_webhooks_from_several_threads_at_once_each_arrive_whole(
    tmp_path: Path, receiver: HttpReceiver, write_config: Callable[..., Path]
) -> None:
    post = _office(tmp_path, apprise_config=write_config((json_url(receiver), LEAD)))

    def send(_: int) -> bool:
        return all(
            r.ok
            for _ in range(4)
            for r in post.deliver(to=LEAD, tags=[LEAD], message=render(PAYLOAD))
        )

    with ThreadPoolExecutor(max_workers=3) as pool:
        assert all(pool.map(send, range(3)))
    hits = receiver.received()
    assert len(hits) == 12
    assert len({h.body for h in hits}) == 1  # the same message, whole, every time


# --- a full disk -----------------------------------------------------------------------------

_FILL_THE_LOG = """
import json, resource, sys
from pathlib import Path
from notifications.post import PostOffice
from notifications.render import render

log, payload = Path(sys.argv[1]), json.loads(sys.argv[2])
post = PostOffice(email_url=None, apprise_config=None, local_log=log)
post.deliver(to="first@example.org", tags=[], message=render(payload))
# From here on the log may grow by 100 bytes: less than one record.
resource.setrlimit(resource.RLIMIT_FSIZE, (log.stat().st_size + 100, resource.RLIM_INFINITY))
after = [post.deliver(to="next@example.org", tags=[], message=render(payload)) for _ in "ab"]
print(json.dumps([(r.channel, r.ok, r.detail) for results in after for r in results]))
"""


def test_a_log_out_of_room_keeps_only_whole_records_and_says_disk_full(tmp_path: Path) -> None:
    # A file size limit stands in for a full disk: the write stops part way, as it would.
    log = tmp_path / "notices" / "local.log"
    done = subprocess.run(
        [sys.executable, "-c", _FILL_THE_LOG, str(log), json.dumps(PAYLOAD)],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    full = ["local", False, f"disk full at {log}"]
    assert json.loads(done.stdout) == [full, full]
    (record,) = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert record["to"] == "first@example.org"
    assert log.read_bytes().endswith(b"}\n")
