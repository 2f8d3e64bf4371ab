"""Real delivery endpoints for the post office tests: an SMTP server, an HTTP receiver standing
in for chat webhooks, an Apprise YAML config pointing at it, and an outbox written by the
monitor over a real case store (SQLite file and PostgreSQL through `consortium`)."""

import email
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from sqlalchemy import Engine
from sqlmodel import col, select

from bridgebsr.bootstrap import Runtime
from bridgebsr.monitor.sweep import run_monitor
from bridgebsr.office import cases
from bridgebsr.store import case_rows as store
from bridgebsr.store.db import read_session, write_session
from models import Contact, Notification, NotificationStatus, Partner
from tests.conftest import at

ZONE = "Europe/Copenhagen"
SENDER = "office@bridgebsr.example"
LEAD = "soren.ostergaard@scanbalt.example"  # pilot-lead at SCANBALT (DK): three notices
COORDINATOR = "mette.sorensen@scanbalt.example"  # coordinator at SCANBALT: one notice
# The desk study is an ip-expert's; SCANBALT, leading the case, has none, so it is the IP
# pilot's lead's (contacts.csv), at MVA: one notice.
DESK_OWNER = "karin.astrom@mva.example"
CHAT_PARTNER = "MVA"  # the partner whose webhook is in the Apprise config
CANARY = "canary-S3cr3t"


def free_port() -> int:
    """A loopback port nothing listens on (once the probe socket is closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- SMTP ------------------------------------------------------------------------------------


@dataclass
class Mail:
    """One message as the SMTP server took it."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        """The plain-text part."""
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None, "the message has no plain-text part"
        return str(part.get_content())

    @property
    def html(self) -> str:
        """The HTML part."""
        part = self.message.get_body(preferencelist=("html",))
        assert part is not None, "the message has no HTML part"
        return str(part.get_content())


@dataclass
class SmtpSink:
    """An aiosmtpd server on 127.0.0.1 that keeps what it is sent.

    AUTH is offered without TLS and any credentials are accepted (and recorded); a client
    that does not log in may send all the same. `refuse` makes it answer DATA with 554,
    `deny_login` refuse every login with 535, `hang_up` close the connection during DATA."""

    port: int
    mails: list[Mail] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    refuse: bool = False
    deny_login: bool = False
    hang_up: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """The Apprise URL of this server: plain SMTP, no TLS, on its own port."""
        auth = f"{user}:{password}@" if user and password else ""
        return f"mailto://{auth}127.0.0.1:{self.port}?from={SENDER}"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse:
            return "554 5.7.1 Transaction failed"
        if self.hang_up:
            assert server.transport is not None
            server.transport.close()
            return "421 closing"  # never reaches the client
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, _class=EmailMessage, policy=default_policy)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.mails.append(
                Mail(str(envelope.mail_from), [str(r) for r in envelope.rcpt_tos], message)
            )
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            with self.lock:
                self.logins.append((data.login.decode(), data.password.decode()))
        # handled=False: the server answers the refusal itself (535).
        return AuthResult(success=not self.deny_login, handled=False)

    def received(self) -> list[Mail]:
        with self.lock:
            return list(self.mails)


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    """A running SMTP server; stopped after the test."""
    sink = SmtpSink(port=free_port())
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=sink.port,
        authenticator=sink.authenticate,
        auth_require_tls=False,
        ready_timeout=10,
    )
    controller.start()
    yield sink
    controller.stop()


@pytest.fixture
def dead_smtp_url() -> str:
    """An SMTP URL on a loopback port where nothing listens (connection refused)."""
    return f"mailto://127.0.0.1:{free_port()}?from={SENDER}"


# --- HTTP ------------------------------------------------------------------------------------


@dataclass
class Hit:
    """One request the HTTP receiver answered."""

    path: str
    content_type: str
    body: bytes
    authorization: str = ""

    @property
    def data(self) -> Any:
        if "json" in self.content_type:
            return json.loads(self.body)
        return dict(parse_qsl(self.body.decode()))


class HttpReceiver:
    """An HTTP server on 127.0.0.1 in a thread, recording bodies; answers `status` after
    sleeping `delay` seconds (both overridable per path prefix in `statuses` and `delays`),
    the sleep cut short at teardown."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.status = 200
        self.statuses: dict[str, int] = {}
        self.delay = 0.0
        self.delays: dict[str, float] = {}
        self.release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.hits.append(
                        Hit(
                            self.path,
                            self.headers.get("Content-Type", ""),
                            body,
                            self.headers.get("Authorization", ""),
                        )
                    )
                status, delay = (
                    next((v for p, v in table.items() if self.path.startswith(p)), fallback)
                    for table, fallback in (
                        (receiver.statuses, receiver.status),
                        (receiver.delays, receiver.delay),
                    )
                )
                if delay:
                    receiver.release.wait(delay)
                payload = b"{}" if status < 400 else b'{"error": "receiver told to fail"}'
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up waiting (the slow case)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = False
        self.server.block_on_close = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()  # joins the handler threads
        self._thread.join(timeout=10)

    def received(self, path: str | None = None) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if path is None or h.path.startswith(path)]


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    """A running HTTP receiver; closed after the test."""
    server = HttpReceiver()
    server.start()
    yield server
    server.close()


# --- Apprise config --------------------------------------------------------------------------


def json_url(receiver: HttpReceiver, password: str | None = None) -> str:
    """The contact's JSON webhook on the receiver (path /contact)."""
    auth = f"bridge:{password}@" if password else ""
    return f"json://{auth}127.0.0.1:{receiver.port}/contact"


def chat_url(receiver: HttpReceiver) -> str:
    """A Mattermost incoming webhook on the receiver (path /hooks/partnertoken)."""
    return f"mmost://127.0.0.1:{receiver.port}/partnertoken"


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write an Apprise YAML config from (url, tag) pairs; returns its path."""

    def write(*entries: tuple[str, str], name: str = "apprise.yml") -> Path:
        lines = ["version: 1", "urls:"]
        for url, tag in entries:
            lines += [f"  - {url}:", f"      - tag: {tag}"]
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return write


@pytest.fixture
def apprise_config(write_config: Callable[..., Path], receiver: HttpReceiver) -> Path:
    """JSON webhook tagged with the pilot-lead's email, Mattermost tagged with MVA."""
    return write_config((json_url(receiver), LEAD), (chat_url(receiver), CHAT_PARTNER))


# --- an outbox written by the monitor --------------------------------------------------------


@dataclass
class Outbox:
    """A case store whose monitor pass wrote pending notices, and a daytime `now` to send."""

    rt: Runtime
    day: date
    now: datetime

    @property
    def engine(self) -> Engine:
        return self.rt.engine

    def rows(self) -> list[Notification]:
        with read_session(self.engine) as session:
            return list(session.exec(select(Notification).order_by(col(Notification.id))))

    def recipients(self) -> dict[int, str]:
        """Row id -> the recipient's email."""
        with read_session(self.engine) as session:
            pairs = session.exec(
                select(Notification.id, Contact.email).join(
                    Contact, col(Contact.id) == Notification.recipient_id
                )
            )
            return {int(i or 0): str(e) for i, e in pairs}

    def partners(self) -> dict[str, str]:
        """Recipient email -> partner code."""
        with read_session(self.engine) as session:
            pairs = session.exec(
                select(Contact.email, Partner.code).join(
                    Partner, col(Partner.id) == Contact.partner_id
                )
            )
            return {str(e): str(p) for e, p in pairs}


@pytest.fixture
def outbox(consortium: Runtime) -> Outbox:
    """An IP case opened on Monday 2026-03-02 by the pilot-lead, monitored two days after its
    regional workshops were due: five pending notices for three people at two partners (the
    pilot lead, who also owns the case, hears of three milestones; the coordinator of the
    kickoff ten working days late)."""
    start = date(2026, 3, 2)
    with write_session(consortium.engine) as session:
        key = cases.open_case(
            session=session,
            catalog=consortium.catalog,
            kind="ip-integration",
            title="Øresund IP integration",
            owner_email=LEAD,
            start=start,
            now=at(start.isoformat()),
        ).key
    with read_session(consortium.engine) as session:
        case = store.case_by_key(session, key)
        due = next(
            m.planned_due
            for m in store.milestones_of(session, case)
            if m.key == "regional-workshops"
        )
    day = due + timedelta(days=2)
    run_monitor(consortium.engine, now=at(day.isoformat(), 7), zone=ZONE)
    box = Outbox(rt=consortium, day=day, now=at(day.isoformat(), 10))  # daytime everywhere
    rows = box.rows()
    assert rows and all(r.status is NotificationStatus.PENDING for r in rows)
    assert sorted(box.recipients().values()) == sorted([COORDINATOR, DESK_OWNER, LEAD, LEAD, LEAD])
    return box
