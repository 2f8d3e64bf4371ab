"""`bridgebsr doctor` and `bridgebsr notifications test`, against a real SMTP server on loopback
(aiosmtpd), an HTTP receiver standing in for chat webhooks, and real case stores; and the
operator's notice texts (BRIDGEBSR_NOTICE_TEXTS) in a message actually sent."""

import json
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr

from bridgebsr.bootstrap import Runtime
from bridgebsr.office.delivery import deliver
from bridgebsr.office.doctor import checks
from notifications.probe import smtp_login
from notifications.render import TEMPLATES, TEXTS, text_path, unknown_fields
from tests.conftest import run, run_here
from tests.test_notifications import conftest as post_fixtures
from tests.test_notifications.conftest import (
    CANARY,
    SENDER,
    HttpReceiver,
    Outbox,
    SmtpSink,
    free_port,
    json_url,
)

TO = "lead@example.org"
outbox = post_fixtures.outbox  # an outbox a monitor pass wrote, on SQLite and PostgreSQL
smtp = post_fixtures.smtp  # an SMTP server that takes any login (or refuses all: `deny_login`)
receiver = post_fixtures.receiver  # an HTTP receiver, closed after the test


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home with a case store at the current schema."""
    home = tmp_path / "home"
    done = run_here(home, "init")
    assert done.returncode == 0, done.stderr
    return home


def doctor(home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run(home, "doctor", env={"PREFECT_API_URL": "", **env})


def lines(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Each check's line, by check name."""
    found = {}
    for line in done.stdout.splitlines():
        status, _, rest = line.partition(" ")
        name, _, detail = rest.strip().partition(": ")
        found[name] = f"{status} {detail}"
    return found


# --- SMTP login ------------------------------------------------------------------------------


def test_the_smtp_login_check_logs_in_and_sends_nothing(smtp: SmtpSink) -> None:
    probe = smtp_login(smtp.url("office", CANARY))
    assert probe.ok, probe.detail
    assert "logged in as office" in probe.detail and CANARY not in probe.detail
    assert smtp.logins == [("office", CANARY)]
    assert smtp.received() == []


def test_a_refused_smtp_login_says_535_and_never_the_password(smtp: SmtpSink) -> None:
    smtp.deny_login = True
    probe = smtp_login(smtp.url("office", CANARY))
    assert not probe.ok
    assert "login refused (SMTP 535" in probe.detail
    assert CANARY not in probe.detail and "%23" in probe.detail  # the percent-encoding hint


def test_an_smtp_server_not_there_is_said_quickly() -> None:
    probe = smtp_login(f"mailto://127.0.0.1:{free_port()}?from={SENDER}", timeout=2)
    assert not probe.ok and "cannot reach the server" in probe.detail


@pytest.mark.parametrize(
    "url",
    [
        f"mailto://office:pa@ss@smtp.example.org?from={SENDER}",
        f"mailto://office:x@ss?from={SENDER}",
    ],
    ids=["two-at", "host-without-dot"],
)
def test_a_mail_url_cut_at_an_unescaped_character_gets_the_hint(url: str) -> None:
    probe = smtp_login(url, timeout=2)
    assert not probe.ok and "percent-encode @ as %40, # as %23" in probe.detail


# --- notice texts ----------------------------------------------------------------------------


def test_the_shipped_notice_texts_use_only_known_fields() -> None:
    for name in TEXTS:
        assert unknown_fields(TEMPLATES / name) == [], name


def test_unknown_fields_are_named(tmp_path: Path) -> None:
    text = tmp_path / "bundle.md"
    text.write_text("$headline $case ${nosuch} costs $$5 and $\n", encoding="utf-8")
    assert unknown_fields(text) == ["$case", "$nosuch", "a lone $ (write $$ for a dollar sign)"]


# --- doctor ----------------------------------------------------------------------------------


def test_doctor_on_a_sound_setup_says_ok_and_exits_0(
    home: Path, smtp: SmtpSink, tmp_path: Path
) -> None:
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "notice.txt").write_text("$headline\n$action\n", encoding="utf-8")
    done = doctor(
        home,
        BRIDGEBSR_EMAIL_URL=smtp.url("office", CANARY),
        BRIDGEBSR_NOTICE_TEXTS=str(texts),
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    found = lines(done)
    assert all(v.startswith("ok ") for v in found.values()), found
    assert set(found) >= {"case store", "prefect", "email", "apprise config", "notice texts"}
    assert "bridgebsr up" in found["prefect"] and "own notice.txt" in found["notice texts"]
    assert CANARY not in done.stdout + done.stderr
    assert smtp.logins == [("office", CANARY)] and smtp.received() == []


def test_doctor_names_each_problem_and_its_fix_and_exits_1(tmp_path: Path, smtp: SmtpSink) -> None:
    smtp.deny_login = True
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "notice.html").write_text("<p>$headline $nosuch</p>\n", encoding="utf-8")
    config = tmp_path / "apprise.yml"
    config.write_text("urls:\n  - notascheme://x\n", encoding="utf-8")
    home = tmp_path / "home"  # no store yet
    done = doctor(
        home,
        BRIDGEBSR_EMAIL_URL=smtp.url("office", CANARY),
        BRIDGEBSR_NOTICE_TEXTS=str(texts),
        BRIDGEBSR_APPRISE_CONFIG=str(config),
        PREFECT_API_URL=f"http://127.0.0.1:{free_port()}/api",
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    found = lines(done)
    assert found["case store"].startswith("PROBLEM") and "bridgebsr init" in found["case store"]
    assert found["prefect"].startswith("PROBLEM") and "bridgebsr up" in found["prefect"]
    assert found["email"].startswith("PROBLEM") and "SMTP 535" in found["email"]
    assert found["apprise config"].startswith("PROBLEM")
    assert found["notice texts"].startswith("PROBLEM")
    assert "notice.html uses unknown $nosuch" in found["notice texts"]
    assert CANARY not in done.stdout + done.stderr
    assert "5 problem(s) found" in done.stderr


def test_doctor_json_and_a_bad_settings_file(home: Path) -> None:
    done = run(home, "doctor", "--json", env={"PREFECT_API_URL": ""})
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert {c["check"] for c in listed} >= {"case store", "prefect", "email"}
    (home / "bridgebsr.toml").write_text("timezone = 'Europe/Oslo'\nnope = 1\n", encoding="utf-8")
    done = doctor(home)
    assert done.returncode == 1 and "'nope' is no setting" in done.stderr


def test_the_store_check_on_both_backends(rt: Runtime) -> None:
    found = {c.name: c for c in checks(rt)}
    assert found["case store"].ok, found["case store"].detail
    assert "(current)" in found["case store"].detail


def test_a_missing_template_folder_is_a_problem(rt: Runtime, tmp_path: Path) -> None:
    settings = rt.settings.model_copy(update={"template_dirs": str(tmp_path / "nope")})
    found = {c.name: c for c in checks(Runtime(settings=settings, engine=rt.engine))}
    assert not found["template folder"].ok
    assert "BRIDGEBSR_TEMPLATE_DIRS" in found["template folder"].detail


# --- notifications test ----------------------------------------------------------------------


def test_a_test_message_goes_on_each_channel_of_the_person_in_their_own_texts(
    home: Path, smtp: SmtpSink, receiver: HttpReceiver, tmp_path: Path
) -> None:
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "notice.html").write_text(
        "<p>OUR OWN TEXT: $headline</p>$run_html\n", encoding="utf-8"
    )
    config = tmp_path / "apprise.yml"
    config.write_text(
        "urls:\n"
        f"  - {json_url(receiver)}:\n      - tag: {TO}\n"
        f"  - json://127.0.0.1:{receiver.port}/team:\n      - tag: all\n"
        f"  - json://127.0.0.1:{receiver.port}/other:\n      - tag: someone@else.org\n",
        encoding="utf-8",
    )
    done = run_here(
        home,
        "notifications",
        "test",
        "--to",
        TO,
        env={
            "BRIDGEBSR_EMAIL_URL": smtp.url("office", CANARY),
            "BRIDGEBSR_APPRISE_CONFIG": str(config),
            "BRIDGEBSR_NOTICE_TEXTS": str(texts),
        },
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    out = done.stdout.splitlines()
    assert len(out) == 3 and all(line.startswith("ok ") for line in out), out
    assert CANARY not in done.stdout
    (mail,) = smtp.received()
    assert mail.rcpt_tos == [TO]
    assert "OUR OWN TEXT: TEST: a test message" in mail.html  # the operator's notice.html
    paths = sorted(hit.path for hit in receiver.received())
    assert paths == ["/contact", "/team"]
    # The chat services got the shipped notice.md: the folder has no notice.md of its own.
    for hit in receiver.received():
        assert "OUR OWN TEXT" not in str(hit.data)
        assert "**TEST: a test message" in str(hit.data)


def test_a_failed_channel_says_why_and_exits_1(home: Path, smtp: SmtpSink) -> None:
    smtp.deny_login = True
    done = run_here(
        home,
        "notifications",
        "test",
        "--to",
        TO,
        env={"BRIDGEBSR_EMAIL_URL": smtp.url("office", CANARY)},
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout.startswith("failed  email: ") and "SMTP 535" in done.stdout
    assert CANARY not in done.stdout + done.stderr


def test_without_channels_the_test_message_goes_to_the_local_log(home: Path) -> None:
    done = run_here(home, "notifications", "test", "--to", TO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok      local"
    record = json.loads((home / "notifications.log").read_text(encoding="utf-8").splitlines()[-1])
    assert record["to"] == TO and "this channel works" in record["title"]


def test_a_dispatch_pass_sends_notices_in_the_operators_texts(
    outbox: Outbox, smtp: SmtpSink, tmp_path: Path
) -> None:
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "notice.html").write_text(
        "<p>From the project office: $headline, due $due_long.</p>\n", encoding="utf-8"
    )
    settings = outbox.rt.settings.model_copy(
        update={"email_url": SecretStr(smtp.url()), "notice_texts": texts}
    )
    report = deliver(Runtime(settings=settings, engine=outbox.engine), now=outbox.now)
    assert report.sent == 5, report.errors
    mails = smtp.received()
    assert mails and all("From the project office: " in m.html for m in mails)
    # Without the folder, the shipped texts again.
    shipped = outbox.rt.settings.model_copy(update={"email_url": SecretStr(smtp.url())})
    Runtime(settings=shipped, engine=outbox.engine).post_office()
    assert text_path("notice.html") == TEMPLATES / "notice.html"
