"""Shared parts of the reliability tests: an outbox filled with N due notices fast, a loopback
webhook receiver that counts what it got per notice, child processes (dispatchers,
optimistic-locking writers, monitor passes, monitor passes followed by dispatch) and a private
PostgreSQL instance to take down.

Every notice's payload carries a unique case token (`REL-000042`) that the rendered title
starts with, so the receiver can count deliveries per outbox row (per dedupe key).

Sizes are small under `make test` and large with BRIDGEBSR_SOAK=1 (`sized`).

Run as a module it is the child process side:

    python -m tests.reliability._outbox dispatch URL CONFIG HOME NOW BATCH
    python -m tests.reliability._outbox writer URL KEY ATTEMPTS NAME SEED
    python -m tests.reliability._outbox monitor URL NOW
    python -m tests.reliability._outbox cycle URL CONFIG HOME NOW BATCH

`dispatch`, `writer` and `cycle` (one monitor pass, then dispatch) print `ready`, wait for a
line on stdin, work, and print one JSON line; `monitor` prints `go` just before its pass and a
JSON line after it.
"""

from __future__ import annotations

import email
import email.policy
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, select, update
from sqlmodel import col

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SOAK = os.environ.get("BRIDGEBSR_SOAK", "") == "1"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# A Thursday, 11:00 UTC: daytime for every contact (all in Europe); quiet hours are lifted too.
NOW = datetime(2026, 11, 26, 11, tzinfo=UTC)
ZONE = "Europe/Copenhagen"
ANCHOR_OWNER = "soren.ostergaard@scanbalt.example"


def sized(quick: int, soak: int) -> int:
    """`soak` with BRIDGEBSR_SOAK=1, else `quick`."""
    return soak if SOAK else quick


def note(line: str) -> None:
    """A figure for the reader (shown with `pytest -s`; also appended to the file named by
    BRIDGEBSR_RELIABILITY_LOG, if set)."""
    sys.stdout.write(f"\n[reliability] {line}\n")
    log = os.environ.get("BRIDGEBSR_RELIABILITY_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as out:
            out.write(line + "\n")


def token_of(title: str) -> str:
    """The notice token a rendered title starts with (`REL-000042: kickoff is ...`)."""
    return title.split(":", 1)[0].strip()


# --- the webhook receiver ----------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """One POST as the receiver took it: the path, the notice token, the status it answered
    (after `delay` seconds, by which time a client with a shorter timeout is gone), and the
    message's whole title and body."""

    path: str
    token: str
    status: int
    delay: float
    title: str = ""
    message: str = ""


class _Server(ThreadingHTTPServer):
    request_queue_size = 512  # several dispatchers x 8 threads connect at once
    daemon_threads = True
    allow_reuse_address = True
    busy = 0  # connections accepted and not yet answered

    def process_request(self, request: Any, client_address: Any) -> None:
        with _BUSY:
            self.busy += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with _BUSY:
            self.busy -= 1
        super().shutdown_request(request)


_BUSY = threading.Lock()


class Receiver:
    """A loopback HTTP server in a thread standing in for chat webhooks. It answers `status`
    (or `statuses[path prefix]`) after `delay` (or `delays[path prefix]`) seconds."""

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
                if len(body) < length:  # the client died mid-request: nothing was delivered
                    self.close_connection = True
                    return
                try:
                    posted = json.loads(body)
                    title, message = str(posted.get("title", "")), str(posted.get("message", ""))
                except (ValueError, AttributeError):
                    title = message = ""
                with receiver._lock:
                    status = next(
                        (v for p, v in receiver.statuses.items() if self.path.startswith(p)),
                        receiver.status,
                    )
                    delay = next(
                        (v for p, v in receiver.delays.items() if self.path.startswith(p)),
                        receiver.delay,
                    )
                    receiver.hits.append(
                        Hit(self.path, token_of(title), status, delay, title, message)
                    )
                if delay:
                    receiver.release.wait(delay)
                payload = b"{}" if status < 400 else b'{"error": "told to fail"}'
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client stopped waiting

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def count(self) -> int:
        with self._lock:
            return len(self.hits)

    def settle(self, quiet: float = 0.1, timeout: float = 10.0) -> None:
        """Wait until requests already sent (by a client killed since, say) are taken: no
        connection in progress and no new POST for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        seen = -1
        while time.monotonic() < deadline:
            if self.server.busy == 0 and self.count() == seen:
                return
            seen = self.count()
            time.sleep(quiet)

    def received(self, *, status: int | None = None, since: int = 0) -> list[Hit]:
        """Hits (from the `since`-th on), only those answered `status` if given."""
        with self._lock:
            return [h for h in self.hits[since:] if status is None or h.status == status]

    def tally(self, *, status: int | None = None, since: int = 0) -> Counter[str]:
        """POSTs per notice token."""
        return Counter(h.token for h in self.received(status=status, since=since))

    def heal(self) -> None:
        """Every hook answers 200 at once again."""
        with self._lock:
            self.status, self.delay = 200, 0.0
            self.statuses.clear()
            self.delays.clear()


def hook(partner: str) -> str:
    return f"/hook/{partner}"


def write_config(path: Path, port: int, partners: Sequence[str]) -> Path:
    """An Apprise YAML config: one json:// webhook per partner, tagged with its code."""
    lines = ["version: 1", "urls:"]
    for code in sorted(partners):
        lines += [f"  - json://127.0.0.1:{port}{hook(code)}:", f"      - tag: {code}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_routes(path: Path, port: int, routes: dict[str, str]) -> Path:
    """An Apprise YAML config: one json:// webhook per tag (a contact's email, say), at the
    hook path given for it."""
    lines = ["version: 1", "urls:"]
    for tag, where in sorted(routes.items()):
        lines += [f"  - json://127.0.0.1:{port}{where}:", f"      - tag: {tag}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- an SMTP server ----------------------------------------------------------------------------


class SmtpSink:
    """An aiosmtpd handler on loopback keeping (subject, recipients) of each message it
    takes; with `refuse` it answers DATA with 554 and keeps nothing."""

    def __init__(self) -> None:
        self.refuse = False
        self.port = free_port()
        self._mails: list[tuple[str, tuple[str, ...]]] = []
        self._lock = threading.Lock()

    def url(self) -> str:
        """The Apprise URL of this server: plain SMTP, no TLS, no login."""
        return f"mailto://127.0.0.1:{self.port}?from=office@bridgebsr.example"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return "554 5.7.1 Transaction failed"
        message = email.message_from_bytes(
            envelope.original_content or b"", policy=email.policy.default
        )
        with self._lock:
            self._mails.append((str(message["Subject"]), tuple(map(str, envelope.rcpt_tos))))
        return "250 OK"

    def received(self) -> list[tuple[str, tuple[str, ...]]]:
        with self._lock:
            return list(self._mails)


@contextmanager
def smtp_sink() -> Iterator[SmtpSink]:
    """A running SMTP sink, stopped at the end."""
    from aiosmtpd.controller import Controller

    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port, ready_timeout=10)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


# --- the outbox ----------------------------------------------------------------------------------


@dataclass
class Box:
    """A migrated case store with `size` due notices, one message each."""

    url: str
    home: Path
    now: datetime
    path_of: dict[str, str]  # notice token -> the hook path it must reach
    email_of: dict[str, str]  # notice token -> recipient email
    per_recipient: Counter[str] = field(default_factory=Counter)

    @property
    def size(self) -> int:
        return len(self.path_of)

    def engine(self) -> Engine:
        from bridgebsr.store.db import make_engine

        return make_engine(self.url)

    def partners(self) -> list[str]:
        return sorted({p.rsplit("/", 1)[1] for p in self.path_of.values()})


def payload(token: str, today: Any, due: Any) -> dict[str, Any]:
    """A monitor-shaped payload whose headline starts with `token`, for the step on the day
    an item due on `due` fell due."""
    return {
        "case": token,
        "case_title": "Reliability probe",
        "pilot": "ip-integration",
        "country": "DK",
        "item": "kickoff",
        "item_kind": "milestone",
        "item_title": "Kick-off meeting",
        "due": due.isoformat(),
        "days_late": (today - due).days,
        "step": "due",
        "offset": 0,
        "round": 1,
    }


def fill_outbox(url: str, home: Path, size: int, now: datetime = NOW) -> Box:
    """Migrate the store, load the consortium (daily cap 0, digest off, no quiet hours, so
    each notice is one message at once), open one real case to hang the notices on, and
    write `size` due notices spread over every contact, in a few set-based inserts."""
    from bridgebsr.bootstrap import build_runtime
    from bridgebsr.demo import load_consortium
    from bridgebsr.office.cases import open_case
    from bridgebsr.settings import Settings
    from bridgebsr.store import migrate
    from bridgebsr.store.db import write_session
    from models import Contact, Milestone, Notification, NotificationStatus, Partner

    rt = build_runtime(Settings(home=home, database_url=url))
    try:
        migrate.upgrade(rt.engine)
        load_consortium(rt)
        with rt.engine.begin() as conn:
            conn.execute(
                update(Contact).values(daily_cap=0, digest=False, quiet_from=None, quiet_until=None)
            )
        with write_session(rt.engine) as session:
            case = open_case(
                session=session,
                catalog=rt.catalog,
                kind="ip-integration",
                title="Reliability anchor case",
                owner_email=ANCHOR_OWNER,
                start=(now - timedelta(weeks=10)).date(),
                now=now - timedelta(weeks=10),
            )
            case_id = case.id
        with rt.engine.connect() as conn:
            # The notices are the kickoff's: for its agreed due date, so dispatch keeps them.
            kickoff_due = conn.execute(
                select(col(Milestone.planned_due)).where(
                    col(Milestone.case_id) == case_id, col(Milestone.key) == "kickoff"
                )
            ).scalar_one()
            people = conn.execute(
                select(col(Contact.id), col(Contact.email), col(Partner.code))
                .join(Partner, col(Partner.id) == Contact.partner_id)
                .order_by(col(Contact.id))
            ).all()
        today = now.date()
        rows: list[dict[str, Any]] = []
        box = Box(url=url, home=home, now=now, path_of={}, email_of={})
        for n in range(size):
            person_id, email, partner = people[n % len(people)]
            token = f"REL-{n:06d}"
            rows.append(
                {
                    "dedupe_key": f"m:{token}/kickoff/due/{email}",
                    "case_id": case_id,
                    "subject": "kickoff",
                    "rule": "due",
                    "recipient_id": person_id,
                    "urgent": False,
                    "due_on": kickoff_due,
                    "fire_on": today,
                    "payload": payload(token, today, kickoff_due),
                    "created_at": now,
                    "status": NotificationStatus.PENDING,
                    "attempts": 0,
                }
            )
            box.path_of[token] = hook(partner)
            box.email_of[token] = email
            box.per_recipient[email] += 1
        table = Notification.__table__  # type: ignore[attr-defined]
        with rt.engine.begin() as conn:
            for start in range(0, len(rows), 2000):
                conn.execute(table.insert(), rows[start : start + 2000])
    finally:
        rt.engine.dispose()
    return box


def ladder_store(url: str, home: Path, cases: int) -> dict[int, str]:
    """A migrated store of `cases` cases at every stage of their plans (benchmarks.monitor_scale:
    the consortium, one real case per pilot kind, set-based clones), with nothing in the
    outbox yet: a monitor pass at NOW finds milestones late, gates expired or timing out and
    ladder steps due (about 1.7 a case). Each contact takes every notice as one message at
    once (daily cap 0, no digest, no quiet hours). Returns every contact's email by id."""
    from benchmarks.monitor_scale import NOW as BUILT_AT
    from benchmarks.monitor_scale import Store, build_store
    from bridgebsr.store.db import make_engine
    from models import Contact

    assert BUILT_AT == NOW
    build_store(Store("ladders", url, home), cases)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(Contact).values(daily_cap=0, digest=False, quiet_from=None, quiet_until=None)
            )
            people = conn.execute(select(col(Contact.id), col(Contact.email))).all()
    finally:
        engine.dispose()
    return {int(cid): str(email) for cid, email in people}


@dataclass(frozen=True)
class OutboxRow:
    token: str
    dedupe_key: str
    status: str
    attempts: int
    delivery_id: int | None
    next_attempt_at: datetime | None
    last_error: str | None
    delivered: tuple[str, ...]
    sending: bool = False  # marked before its message went, not recorded since
    resent: int = 0  # sends after an unrecorded attempt (possible duplicates)


@dataclass(frozen=True)
class Receipt:
    id: int
    ok: bool
    kind: str
    notices: int
    title: str
    resent: int = 0  # notices an unrecorded earlier attempt may have delivered


def outbox(engine: Engine) -> dict[str, OutboxRow]:
    """Every outbox row by notice token."""
    from models import Notification

    with engine.connect() as conn:
        found = conn.execute(
            select(
                col(Notification.payload),
                col(Notification.dedupe_key),
                col(Notification.status),
                col(Notification.attempts),
                col(Notification.delivery_id),
                col(Notification.next_attempt_at),
                col(Notification.last_error),
                col(Notification.delivered),
                col(Notification.sending),
                col(Notification.resent),
            )
        ).all()
    out = {}
    for p, key, status, attempts, receipt, nxt, error, delivered, sending, resent in found:
        token = str(p["case"])
        out[token] = OutboxRow(
            token,
            key,
            str(status),
            int(attempts),
            receipt,
            nxt,
            error,
            tuple(delivered or ()),
            bool(sending),
            int(resent),
        )
    return out


def receipts(engine: Engine) -> list[Receipt]:
    """Every delivery receipt."""
    from models import Delivery

    with engine.connect() as conn:
        found = conn.execute(
            select(
                col(Delivery.id),
                col(Delivery.ok),
                col(Delivery.kind),
                col(Delivery.notices),
                col(Delivery.title),
                col(Delivery.resent),
            ).order_by(col(Delivery.id))
        ).all()
    return [
        Receipt(int(i or 0), bool(ok), str(k), int(n), str(t), int(r))
        for i, ok, k, n, t, r in found
    ]


# --- child processes -----------------------------------------------------------------------------


def child_env(**settings: str | Path | None) -> dict[str, str]:
    """This environment without BRIDGEBSR_*, plus the given settings and PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGEBSR_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    for name, value in settings.items():
        if value is not None:
            env[f"BRIDGEBSR_{name.upper()}"] = str(value)
    return env


def python_child(args: Sequence[str], stderr: IO[str]) -> subprocess.Popen[str]:
    """`python -m tests.reliability._outbox ARGS`, with pipes for the handshake."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability._outbox", *args],
        cwd=ROOT,
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def cli(
    args: Sequence[str],
    *,
    home: Path,
    url: str,
    config: Path | None,
    out: Path,
) -> subprocess.Popen[bytes]:
    """`bridgebsr ARGS` in the background, stdout to `out`.stdout and stderr to `out`.stderr."""
    env = child_env(home=home, database_url=url, apprise_config=config)
    with (
        out.with_suffix(".stdout").open("wb") as stdout,
        out.with_suffix(".stderr").open("wb") as stderr,
    ):
        return subprocess.Popen(
            [str(BIN / "bridgebsr"), *args],
            cwd=home.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )


def outputs(out: Path) -> tuple[str, str]:
    """What a `cli` run wrote: stdout, stderr."""
    return (
        out.with_suffix(".stdout").read_text(encoding="utf-8", errors="replace"),
        out.with_suffix(".stderr").read_text(encoding="utf-8", errors="replace"),
    )


def kill(process: subprocess.Popen[Any]) -> bool:
    """SIGKILL one child we started (by its own pid) unless it has ended; reap it and close
    its pipes. Whether it was still running (killed)."""
    running = process.poll() is None
    if running:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(30)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass  # unsent input to a dead child
    return running


def wait(process: subprocess.Popen[Any], seconds: float) -> None:
    """Wait up to `seconds` for a child to end."""
    try:
        process.wait(max(seconds, 0.0))
    except subprocess.TimeoutExpired:
        pass


def ready(process: subprocess.Popen[str], what: str) -> None:
    """Wait for a child's `ready` (or `go`) line."""
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line not in {"ready", "go"}:
        process.wait(30)
        raise RuntimeError(f"{what} did not start (said {line!r}, exit {process.returncode})")


def finish(process: subprocess.Popen[str], what: str, timeout: float = 600) -> dict[str, Any]:
    """Wait for a released child to end and parse its last line (JSON)."""
    stdout, _ = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"{what} exited {process.returncode}")
    return dict(json.loads(stdout.strip().splitlines()[-1]))


def go(*processes: subprocess.Popen[str]) -> None:
    """Release started children all at once."""
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()


# --- a private PostgreSQL instance ---------------------------------------------------------------


class PostgresUnavailable(RuntimeError):
    """No initdb/pg_ctl here, or they would not run."""


def _pg_bin() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if candidates:
        return Path(candidates[-1]).parent
    raise PostgresUnavailable("no initdb/pg_ctl on PATH or under /usr/lib/postgresql/*/bin")


def _version_key(path: str) -> tuple[int, ...]:
    part = Path(path).parents[1].name
    return tuple(int(x) for x in part.split(".") if x.isdigit())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivatePostgres:
    """A throwaway PostgreSQL cluster of our own (initdb in a temp dir, its own port), so it
    can be stopped and started under a dispatcher without touching the shared server. As
    root it runs as the `postgres` system user (initdb refuses root)."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.runas: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise PostgresUnavailable("running as root and no runuser to become postgres")
            self.runas = [runuser, "-u", "postgres", "--"]
        self.dir = Path(tempfile.mkdtemp(prefix="bridgebsr-pg-"))
        if self.runas:
            try:
                shutil.chown(self.dir, user="postgres")
            except (LookupError, OSError) as exc:
                shutil.rmtree(self.dir, ignore_errors=True)
                raise PostgresUnavailable(f"running as root and no postgres user: {exc}") from exc
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        command = self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")
        command += ["--no-sync", "-E", "UTF8"]
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            self.cleanup()
            raise PostgresUnavailable(f"initdb failed: {result.stderr.strip()[-300:]}")

    def _run(self, tool: str, *args: str) -> list[str]:
        return [*self.runas, str(self.bin / tool), *args]

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=50"
        )
        command = self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l")
        command += [str(self.dir / "server.log"), "-w", "-t", "60", "start"]
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=90)
        if result.returncode != 0:
            log = (self.dir / "server.log").read_text(errors="replace")[-500:]
            raise PostgresUnavailable(f"pg_ctl start failed: {result.stderr.strip()} {log}")

    def stop(self, mode: str = "fast") -> None:
        command = self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        subprocess.run(command, capture_output=True, text=True, check=False, timeout=90)

    def running(self) -> bool:
        command = self._run("pg_ctl", "-D", str(self.data), "status")
        return subprocess.run(command, capture_output=True, check=False).returncode == 0

    def cleanup(self) -> None:
        if self.data.exists() and self.running():
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


# --- the child side ------------------------------------------------------------------------------


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _dispatch(url: str, config: str, home: str, now: str, batch: str) -> dict[str, Any]:
    """One dispatcher: its own engine and post office, released with the others."""
    from bridgebsr.store.db import make_engine
    from notifications.outbox import dispatch
    from notifications.post import PostOffice

    engine = make_engine(url)
    post = PostOffice(
        email_url=None, apprise_config=Path(config), local_log=Path(home) / "local.log"
    )
    _say("ready")
    sys.stdin.readline()
    started = time.perf_counter()
    report = dispatch(engine, now=datetime.fromisoformat(now), post=post, batch=int(batch))
    engine.dispose()
    return {
        **report.summary(),
        "errors": report.errors[:5],
        "pid": os.getpid(),
        "seconds": round(time.perf_counter() - started, 3),
    }


def _writer(url: str, key: str, attempts: str, name: str, seed: str) -> dict[str, Any]:
    """Hold or resume one case `attempts` times, each with the version it read
    (`--if-version`): applied, refused as stale, or refused by the lifecycle rules."""
    from bridgebsr.errors import IllegalTransition, StaleCase
    from bridgebsr.office.cases import change_case
    from bridgebsr.store.case_rows import case_by_key
    from bridgebsr.store.db import make_engine, read_session, write_session
    from models import CaseStatus

    engine = make_engine(url)
    rng = random.Random(int(seed))
    out: dict[str, Any] = {"name": name, "applied": {}, "stale": [], "illegal": [], "current": []}
    _say("ready")
    sys.stdin.readline()
    for attempt in range(int(attempts)):
        with read_session(engine) as session:
            case = case_by_key(session, key)
            seen, status = case.version, case.status
        action = "hold" if status is CaseStatus.ACTIVE else "resume"
        time.sleep(rng.uniform(0, 0.002))  # a reader's moment between looking and acting
        try:
            with write_session(engine) as session:
                changed = change_case(
                    session=session,
                    key=key,
                    action=action,
                    reason=f"{name} #{attempt}",
                    actor=f"{name}@reliability.example",
                    now=NOW + timedelta(seconds=attempt),
                    expected_version=seen,
                )
                out["applied"][str(attempt)] = changed.version
        except StaleCase:
            out["stale"].append(attempt)
        except IllegalTransition:
            out["illegal"].append(attempt)
            with read_session(engine) as session:
                if case_by_key(session, key).version == seen:  # refused though current
                    out["current"].append(attempt)
    engine.dispose()
    return out


def _monitor(url: str, now: str) -> dict[str, Any]:
    """One monitor pass, announced by `go` just before it starts."""
    from bridgebsr.monitor.sweep import run_monitor
    from bridgebsr.store.db import make_engine

    engine = make_engine(url)
    _say("go")
    started = time.perf_counter()
    report = run_monitor(engine, now=datetime.fromisoformat(now), zone=ZONE)
    engine.dispose()
    return {"notifications": report.notifications, "seconds": time.perf_counter() - started}


def _cycle(url: str, config: str, home: str, now: str, batch: str) -> dict[str, Any]:
    """One monitor pass and then dispatch, as a scheduler runs them: its own engine and post
    office, released with the others."""
    from bridgebsr.monitor.sweep import run_monitor
    from bridgebsr.store.db import make_engine
    from notifications.outbox import dispatch
    from notifications.post import PostOffice

    engine = make_engine(url)
    post = PostOffice(
        email_url=None, apprise_config=Path(config), local_log=Path(home) / "local.log"
    )
    when = datetime.fromisoformat(now)
    _say("ready")
    sys.stdin.readline()
    started = time.perf_counter()
    monitor = run_monitor(engine, now=when, zone=ZONE)
    between = time.perf_counter()
    report = dispatch(engine, now=when, post=post, batch=int(batch))
    engine.dispose()
    return {
        "monitor": {
            k: v
            for k, v in monitor.summary().items()
            if k in {"notifications", "newly_overdue", "newly_expired", "timed_out", "failures"}
        },
        "dispatch": {**report.summary(), "errors": report.errors[:5]},
        "pid": os.getpid(),
        "seconds": [round(between - started, 3), round(time.perf_counter() - between, 3)],
    }


def main(argv: Sequence[str]) -> int:
    commands: dict[str, Callable[..., dict[str, Any]]] = {
        "dispatch": _dispatch,
        "writer": _writer,
        "monitor": _monitor,
        "cycle": _cycle,
    }
    if not argv or argv[0] not in commands:
        sys.stderr.write(f"usage: {' | '.join(commands)} ARGS\n")
        return 2
    result = commands[argv[0]](*argv[1:])
    _say(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
