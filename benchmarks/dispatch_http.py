"""Outbox dispatch over HTTP: 10,000 notices to a loopback webhook receiver, against a floor.

Builds a fresh SQLite case store (the shipped consortium, one real case per pilot kind opened
through the use case, then bulk copies of those cases) and writes `--size` pending outbox rows
straight into it, spread over every contact, with payloads shaped like the monitor's. An
Apprise YAML config sends each contact's notices, by partner code, to
`json://127.0.0.1:PORT/hook/<partner>` on a receiver that runs in a separate process (so its
CPU does not compete with the measured side for the GIL).

Two timed sides, the same receiver, the same concurrency:

- floor: the same POST bodies (rendered once, beforehand) sent directly with httpx from a
  thread pool of `--concurrency` threads;
- ours: `notifications.outbox.dispatch` end to end (claim, the case office's check for
  obsolete notices, render, deliver, record), passed `concurrency=` when it takes that keyword.

    .venv/bin/python -m benchmarks.dispatch_http [--size 10000] [--concurrency 8] [--json OUT]

The target is ours at most 3x the floor. Exits 1 when it is missed; a wrong delivery (a row
not sent, or not exactly one POST per row) stops the run with an error.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import math
import os
import pstats
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, cast

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, func, select
from sqlmodel import col

from benchmarks.common import peak_rss_mb, print_profile, results_table, within_target, write_json
from bridgebsr.bootstrap import build_runtime
from bridgebsr.demo import load_consortium
from bridgebsr.office.cases import open_case
from bridgebsr.office.delivery import deliver
from bridgebsr.office.stale import obsolete_notices
from bridgebsr.settings import Settings
from bridgebsr.store import migrate
from bridgebsr.store.db import write_session
from models import Case, Contact, Gate, Milestone, Notification, NotificationStatus, Partner, Source
from notifications.outbox import dispatch
from notifications.post import PostOffice
from notifications.render import render

NAME = "dispatch-http"
TARGET = 3.0  # ours at most this many times the floor
RNG_SEED = 20261126
NOTICES_PER_CASE = 4  # each case has this many notices (distinct item and ladder step)
PILOTS = (  # kind, share of cases, title, owner of the seed case, lead partner
    ("shared-sme-service", 0.94, "SME support request", "henrik.oberg@ostersjo-vita.example", None),
    (
        "ip-integration",
        0.03,
        "Transregional IP integration model",
        "karin.astrom@mva.example",
        "MVA",
    ),
    (
        "life-science-foundation",
        0.03,
        "Top of Europe Life Science Foundation",
        "katrin.schaefer@bioconvalley.example",
        "BCV",
    ),
)
HEADERS = {"User-Agent": "Apprise", "Content-Type": "application/json"}  # what json:// sends

ROOT = Path(__file__).resolve().parents[1]

out = Console(width=max(Console().width, 112))


# ---------------------------------------------------------------------------------------------
# The receiver: a minimal HTTP/1.1 server on asyncio, in its own process


class _Tally:
    """What the receiver took: POSTs per path, and how many different bodies."""

    def __init__(self) -> None:
        self.paths: Counter[str] = Counter()
        self.bodies: set[int] = set()

    def reset(self) -> None:
        self.paths.clear()
        self.bodies.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "posts": sum(self.paths.values()),
            "paths": dict(self.paths),
            "distinct_bodies": len(self.bodies),
        }


_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
_OK = _HEAD % 2 + b"{}"


class _Http(asyncio.Protocol):
    """One connection: keep-alive requests with Content-Length bodies, answered 200 at once.

    POSTs are counted by path; `GET /_stats` answers the tally, `POST /_reset` clears it."""

    def __init__(self, tally: _Tally) -> None:
        self.tally = tally
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            method, path, version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip().lower()
            total = end + 4 + int(headers.get("content-length") or 0)
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
            self._answer(method, path, body)
            close = headers.get("connection") == "close" or (
                version == "HTTP/1.0" and headers.get("connection") != "keep-alive"
            )
            if close:
                self.transport.close()
                self.transport = None

    def _answer(self, method: str, path: str, body: bytes) -> None:
        assert self.transport is not None
        if path == "/_stats":
            reply = json.dumps(self.tally.stats()).encode()
            self.transport.write(_HEAD % len(reply) + reply)
            return
        if path == "/_reset":
            self.tally.reset()
        elif method == "POST":
            self.tally.paths[path] += 1
            self.tally.bodies.add(hash(body))
        self.transport.write(_OK)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def serve() -> None:
    """The receiver process: listen on a free loopback port, print it, serve until killed."""

    async def main() -> None:
        tally = _Tally()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Http(tally), "127.0.0.1", 0, backlog=1024)
        sys.stdout.write(f"{server.sockets[0].getsockname()[1]}\n")
        sys.stdout.flush()
        await server.serve_forever()

    asyncio.run(main())


class Receiver:
    """The receiver in a child process, and how to ask it what it received.

    A plain subprocess rather than multiprocessing: its "spawn" start re-imports the caller's
    main module, which breaks callers (a combined harness) without a `__main__` guard."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from benchmarks.dispatch_http import serve; serve()"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"the HTTP receiver did not start (it said {line!r})")
        self.port = int(line)
        self.base = f"http://127.0.0.1:{self.port}"

    def _call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.base}{path}", method=method, data=b"")
        request.add_header("Connection", "close")
        with urllib.request.urlopen(request, timeout=10) as reply:
            return cast(dict[str, Any], json.loads(reply.read()))

    def stats(self) -> dict[str, Any]:
        """POSTs received since the last reset: total, per path, distinct bodies."""
        return self._call("GET", "/_stats")

    def reset(self) -> None:
        self._call("POST", "/_reset")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextmanager
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------
# The outbox


@dataclass(frozen=True)
class Post:
    """One POST the floor sends: the receiver path and the JSON body json:// would send."""

    path: str
    body: bytes


@dataclass
class Outbox:
    """A case store with `size` pending notices and what their delivery should look like."""

    engine: Engine
    now: datetime
    size: int
    per_path: dict[str, int]
    posts: list[Post]


def _hook(partner: str) -> str:
    return f"/hook/{partner}"


def _write_config(path: Path, port: int, partners: Sequence[str]) -> Path:
    """One json:// webhook per partner, tagged with the partner code."""
    lines = ["version: 1", "urls:"]
    for code in partners:
        lines += [f"  - json://127.0.0.1:{port}{_hook(code)}:", f"      - tag: {code}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _body(payload: dict[str, Any]) -> bytes:
    """What Apprise's json:// plugin posts for one notice (markdown body, no attachments)."""
    message = render(payload)
    document = {
        "version": "1.0",
        "title": message.title,
        "message": message.markdown,
        "attachments": [],
        "type": "info",
    }
    return json.dumps(document).encode()


def _one_message_per_notice(engine: Engine) -> None:
    """Lift the contacts' daily cap and digest, where the store has those preferences.

    With the shipped cap (20 messages a day) 10,000 notices over 30 contacts would leave as
    20 notices and one overflow summary each; this benchmark measures one POST per notice."""
    contacts = Contact.__table__  # type: ignore[attr-defined]
    lifted = {k: v for k, v in (("daily_cap", 0), ("digest", False)) if k in contacts.c}
    if lifted:
        with engine.begin() as conn:
            conn.execute(contacts.update().values(lifted))


def build_outbox(home: Path, size: int, now: datetime) -> Outbox:
    """Migrate a SQLite store, load the consortium, open seed cases, copy them, write notices."""
    today = now.date()
    rt = build_runtime(Settings(home=home, database_url=f"sqlite:///{home / 'cases.db'}"))
    engine = rt.engine
    migrate.upgrade(engine)
    load_consortium(rt)
    _one_message_per_notice(engine)
    start = today - timedelta(weeks=10)
    seeds: dict[str, dict[str, Any]] = {}
    items: dict[str, list[tuple[str, str, str]]] = {}  # kind -> (item kind, key, title)
    ladders: dict[str, list[tuple[str, int, bool]]] = {}  # kind -> (step, offset, urgent)
    for kind, _share, title, owner, partner in PILOTS:
        with write_session(engine) as session:
            case = open_case(
                session=session,
                catalog=rt.catalog,
                kind=kind,
                title=f"{title} (seed)",
                owner_email=owner,
                partner_code=partner,
                start=start,
                now=now - timedelta(weeks=10),
                source=Source.IMPORT,
            )
            seeds[kind] = asdict(case)
        template = rt.catalog.get(kind)
        ladders[kind] = [(s.key, s.offset, s.urgent) for s in template.ladder]
        with engine.connect() as conn:
            m_rows = conn.execute(
                select(col(Milestone.key), col(Milestone.title)).where(
                    col(Milestone.case_id) == case.id
                )
            ).all()
            g_rows = conn.execute(
                select(col(Gate.key), col(Gate.title)).where(col(Gate.case_id) == case.id)
            ).all()
        items[kind] = [("milestone", k, t) for k, t in m_rows] + [("gate", k, t) for k, t in g_rows]

    rng = random.Random(RNG_SEED)
    case_table = Case.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        next_id = int(conn.execute(select(func.max(col(Case.id)))).scalar_one() or 0) + 1
        people = conn.execute(
            select(col(Contact.id), col(Contact.email), col(Partner.code))
            .join(Partner, col(Partner.id) == Contact.partner_id)
            .order_by(col(Contact.id))
        ).all()
    kinds = [p[0] for p in PILOTS]
    shares = [p[1] for p in PILOTS]
    cases: list[dict[str, Any]] = []
    for number, kind in enumerate(rng.choices(kinds, shares, k=math.ceil(size / NOTICES_PER_CASE))):
        seed = seeds[kind]
        prefix = seed["key"].rsplit("-", 2)[0]
        key = f"{prefix}-{start.year}-{number + 1000:06d}"
        cases.append(seed | {"id": next_id + number, "key": key, "title": f"{seed['title']} {key}"})
    with engine.begin() as conn:
        conn.execute(case_table.insert(), cases)

    rows: list[dict[str, Any]] = []
    posts: list[Post] = []
    per_path: Counter[str] = Counter()
    for n in range(size):
        case_row = cases[n // NOTICES_PER_CASE]
        kind = str(case_row["kind"])
        if n % NOTICES_PER_CASE == 0:  # a case's notices are on distinct (item, step) pairs
            picks = rng.sample(
                [(i, s) for i in items[kind] for s in ladders[kind]], NOTICES_PER_CASE
            )
        (item_kind, item, item_title), (step, offset, urgent) = picks[n % NOTICES_PER_CASE]
        person_id, email, partner = people[n % len(people)]
        due = today - timedelta(days=offset)
        case_key = case_row["key"]
        scope = f"g:{case_key}/{item}/r1" if item_kind == "gate" else f"m:{case_key}/{item}"
        payload = {
            "case": case_key,
            "case_title": case_row["title"],
            "pilot": kind,
            "country": case_row["country"],
            "item": item,
            "item_kind": item_kind,
            "item_title": item_title,
            "due": due.isoformat(),
            "days_late": max((today - due).days, 0),
            "step": step,
            "offset": offset,
            "round": 1,
        }
        rows.append(
            {
                "dedupe_key": f"{scope}/{step}/{email}",
                "case_id": case_row["id"],
                "subject": item,
                "rule": step,
                "recipient_id": person_id,
                "urgent": urgent,
                "due_on": due,
                "fire_on": today,
                "payload": payload,
                "created_at": now,
                "status": NotificationStatus.PENDING,
                "attempts": 0,
            }
        )
        posts.append(Post(_hook(partner), _body(payload)))
        per_path[_hook(partner)] += 1
    table = Notification.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
    return Outbox(engine, now, size, dict(per_path), posts)


def _check_delivery(box: Outbox, stats: dict[str, Any], side: str) -> None:
    """Exactly one POST per row, to the row's partner hook, every body a different notice."""
    problems = []
    if stats["posts"] != box.size:
        problems.append(f"{stats['posts']:,} POSTs for {box.size:,} notices")
    if stats["paths"] != box.per_path:
        problems.append(f"POSTs per path {stats['paths']} instead of {box.per_path}")
    if stats["distinct_bodies"] != box.size:
        problems.append(f"{stats['distinct_bodies']:,} different bodies for {box.size:,}")
    if problems:
        raise RuntimeError(f"{side}: " + "; ".join(problems))


def _check_outbox(box: Outbox) -> None:
    """Every row sent, on its first attempt."""
    with box.engine.connect() as conn:
        counts = dict(
            conn.execute(
                select(col(Notification.status), func.count())
                .where(col(Notification.attempts) == 1)
                .group_by(col(Notification.status))
            ).all()
        )
    sent = counts.get(NotificationStatus.SENT, 0)
    if sent != box.size or sum(counts.values()) != box.size:
        raise RuntimeError(f"ours: {counts} of {box.size:,} rows sent on the first attempt")


# ---------------------------------------------------------------------------------------------
# The two sides


class Timer:
    """Wall and CPU seconds (this process, every thread) of a block."""

    def __enter__(self) -> Timer:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def floor(base: str, posts: Sequence[Post], concurrency: int) -> Timer:
    """The same POSTs sent directly with httpx from `concurrency` threads; its times."""
    # One shared Client: httpx's Client is thread-safe and its pool holds one keep-alive
    # connection per thread (max_connections=concurrency), so no POST pays a TCP handshake,
    # and the client's setup (SSL context, transports) is built once. That is how a careful
    # engineer sends many requests to one host, and the fastest direct way: one client per
    # thread measured no faster here (within run-to-run noise; the pool's lock costs little
    # next to the GIL). Fair: the same bodies, paths, headers, receiver and thread count as
    # ours; what the floor leaves out (claiming, rendering, Apprise, a connection per POST,
    # recording) is what the ratio prices.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with (
        httpx.Client(base_url=base, headers=HEADERS, limits=limits, timeout=15.0) as client,
        ThreadPoolExecutor(max_workers=concurrency) as pool,
    ):

        def send(post: Post) -> int:
            return client.post(post.path, content=post.body).status_code

        with Timer() as timer:
            statuses = Counter(pool.map(send, posts))
    if statuses != Counter({200: len(posts)}):
        raise RuntimeError(f"floor: answers {dict(statuses)}")
    return timer


def ours(
    box: Outbox,
    post: PostOffice,
    concurrency: int,
    profile: Path | None = None,
    settings: Settings | None = None,
    workers: int = 1,
) -> tuple[Timer, dict[str, Any]]:
    """`dispatch` end to end over the whole outbox; its times and its report. With
    `workers` > 1, the same pass in that many processes (`bridgebsr.delivery.deliver`), the
    `concurrency` deliveries in flight shared between them."""
    profilers: list[cProfile.Profile] = []

    def profile_thread(*_args: object) -> None:  # a thread's first event: profile it
        sys.setprofile(None)
        profilers.append(cProfile.Profile())
        profilers[-1].enable()

    with Timer() as timer:
        if profile:
            threading.setprofile(profile_thread)  # threads started from here on
            profile_thread()
        if workers > 1:
            assert settings is not None
            rt = build_runtime(settings)
            report = deliver(rt, now=box.now, workers=workers, concurrency=concurrency)
            rt.engine.dispose()
        else:
            report = dispatch(
                box.engine,
                now=box.now,
                post=post,
                concurrency=concurrency,
                obsolete=partial(obsolete_notices, box.engine),
            )
        if profile:
            threading.setprofile(None)
            profilers[0].disable()
    if profile:
        # Wall times of threads that wait on each other add up: read call counts and the
        # shares between functions, not the totals.
        stats = pstats.Stats(profilers[0])
        for extra in profilers[1:]:
            stats.add(extra)
        stats.dump_stats(str(profile))
    summary = report.summary()
    expected = {"sent": box.size, "held": 0, "retrying": 0, "failed": 0, "messages": box.size}
    if any(summary.get(k, v) != v for k, v in expected.items()):
        raise RuntimeError(f"ours: dispatch reported {summary}; first errors {report.errors[:3]}")
    return timer, summary


def run(
    size: int, concurrency: int, profile: Path | None = None, workers: int = 1
) -> dict[str, object]:
    """One run: build the outbox, time the floor, then ours, against one receiver."""
    # Daytime for every recipient (all in Europe), so no notice is held for quiet hours.
    now = datetime.combine(date.today(), datetime.min.time(), UTC).replace(hour=11)
    with tempfile.TemporaryDirectory(prefix="bridgebsr-dispatch-") as tmp, receiver() as rx:
        home = Path(tmp)
        box = build_outbox(home / "home", size, now)
        try:
            partners = sorted({p.path.rsplit("/", 1)[1] for p in box.posts})
            config = _write_config(home / "apprise.yml", rx.port, partners)
            post = PostOffice(
                email_url=None, apprise_config=config, local_log=home / "notifications.log"
            )
            rx.reset()
            floor_t = floor(rx.base, box.posts, concurrency)
            _check_delivery(box, rx.stats(), "floor")

            rx.reset()
            settings = Settings(
                home=home / "home", database_url=str(box.engine.url), apprise_config=config
            )
            ours_t, _summary = ours(box, post, concurrency, profile, settings, workers)
            _check_delivery(box, rx.stats(), "ours")
            _check_outbox(box)
        finally:
            box.engine.dispose()
    return {
        "name": NAME if workers == 1 else f"{NAME} ({workers} processes)",
        "size": size,
        "ours_s": round(ours_t.wall, 3),
        "floor_s": round(floor_t.wall, 3),
        "ratio": round(ours_t.wall / floor_t.wall, 2),
        "target": TARGET,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "concurrency": concurrency,
        "workers": workers,
        # CPU seconds of this process (all threads): near the wall time, the side is bound
        # by the interpreter (the GIL), not by the network or the receiver.
        "ours_cpu_s": round(ours_t.cpu, 3),
        "floor_cpu_s": round(floor_t.cpu, 3),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


# ---------------------------------------------------------------------------------------------
# The command


def table(results: Sequence[dict[str, object]]) -> Table:
    """One row per run."""
    threads = ("threads (floor/ours)", _threads)
    return results_table(
        "outbox dispatch to a loopback HTTP receiver",
        results,
        size_label="notices",
        extra=[threads],
    )


def _threads(r: Mapping[str, Any]) -> str:
    return f"{r['concurrency']} / {r['concurrency']} in {r['workers']} process(es)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=10_000, help="notices in the outbox")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="threads: the floor's, and dispatch's"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="dispatch processes sharing the concurrency"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the results here")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="PSTATS",
        help="cProfile ours (every thread it starts; inflates its time) into this file",
    )
    args = parser.parse_args(argv)
    if args.size < 1 or args.concurrency < 1:
        parser.error("--size and --concurrency must be at least 1")
    result = run(args.size, args.concurrency, args.profile, args.workers)
    out.print(table([result]))
    if args.profile:
        print_profile(args.profile)
    if args.json:
        write_json(args.json, [result])
    return 0 if within_target(result) else 1


if __name__ == "__main__":
    sys.exit(main())
