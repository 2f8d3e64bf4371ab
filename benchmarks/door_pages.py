"""`door-pages`: the partners' door's My items and case page over 100,000 cases, against the
same pages' SQL alone.

```sh
.venv/bin/python -m benchmarks.door_pages [--cases 100000] [--repeat 60] [--keep DIR] [--json OUT]
```

The store is `monitor_scale`'s (SQLite; built in a child process, or kept in `--keep DIR` for
later runs). Three pages, each requested `--repeat` times after a warm-up, signed in by a
personal link:

- ours: `GET /me` and `GET /cases/KEY` through the whole web app, called as an ASGI app in
  one event loop of this process (the guard's rate-limit look-up, the session cookie, the
  read models, the templates and the security headers; no socket), the p95 of the wall
  times;
- floor: the SQL statements that one such request ran, recorded with sqlite3's trace
  callback (parameters in place) and replayed with `fetchall` on a plain sqlite3
  connection to the same file, the p95 of the wall times of the whole set.

The pages: My items of the IP pilot's lead (who owns or leads every IP case, 3 % of the
portfolio), My items of the case owner with the most open items, and the page of one IP
case (its plan, gates, history) as its owner sees it. Targets: ours within 5x of the floor
and a p95 under 150 ms (the row's name says the p95 and whether it is within).
"""

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

from benchmarks.common import Result, in_child, peak_rss_mb, reset_peak_rss, result, write_json

NAME = "door-pages"
TARGET = 5.0
BUDGET_MS = 150.0
IP_LEAD = "karin.astrom@mva.example"


def _build(url: str, home: str, cases: int) -> int:
    from benchmarks.monitor_scale import Store, build_store

    counts, _ = build_store(Store("door", url, Path(home)), cases)
    return counts.cases


def _store(cases: int, keep: Path | None, tmp: str) -> Path:
    """The SQLite file of a store of `cases` cases: kept in `keep` when given (built the first
    time), else built in `tmp`."""
    folder = keep or Path(tmp)
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / f"door_{cases}.db").resolve()
    if keep is None or not path.exists():
        path.unlink(missing_ok=True)
        in_child(_build, f"sqlite:///{path}", str(folder / "build-home"), cases)
    return path


def _p95(times: Sequence[float]) -> float:
    return statistics.quantiles(times, n=20)[-1]


class _Asgi:
    """GET requests straight into an ASGI app on one event loop, keeping its cookie."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.cookie = ""

    def get(self, path: str) -> tuple[int, dict[str, str]]:
        return self.loop.run_until_complete(self._get(path))

    async def _get(self, target: str) -> tuple[int, dict[str, str]]:
        path, _, query = target.partition("?")
        headers = [(b"host", b"127.0.0.1")]
        if self.cookie:
            headers.append((b"cookie", self.cookie.encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
            "app": self.app,
        }
        answer: dict[str, Any] = {}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}

        await self.app(scope, receive, send)
        cookie = answer["headers"].get("set-cookie", "")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        return answer["status"], answer["headers"]

    def close(self) -> None:
        self.loop.close()


def run(cases: int, repeat: int = 60, keep: Path | None = None) -> list[Result]:
    """Build (or reuse) the store, then time each page and its SQL."""
    from benchmarks.monitor_scale import NOW
    from bridgebsr.bootstrap import build_runtime
    from bridgebsr.settings import Settings
    from bridgebsr.web import links
    from bridgebsr.web.app import create_app

    with tempfile.TemporaryDirectory(prefix="bridgebsr-door-") as tmp:
        path = _store(cases, keep, tmp)
        reset_peak_rss()
        rt = build_runtime(Settings(home=Path(tmp) / "home", database_url=f"sqlite:///{path}"))
        recorded: list[str] = []
        recording = [False]

        def trace(statement: str) -> None:
            if recording[0]:
                recorded.append(statement)

        @event.listens_for(rt.engine, "connect")
        def _traced(dbapi: Any, _record: Any) -> None:
            dbapi.set_trace_callback(trace)

        with rt.engine.connect() as conn:
            owner = conn.execute(
                text(
                    "SELECT c.email, count(*) AS n FROM milestones m "
                    "JOIN contacts c ON c.id = m.owner_id "
                    "WHERE m.status IN ('planned', 'in_progress', 'blocked') "
                    "AND c.role = 'case-owner' GROUP BY c.email ORDER BY n DESC LIMIT 1"
                )
            ).one()[0]
            ids: dict[str, int] = dict(conn.execute(text("SELECT email, id FROM contacts")).all())
            ip_case = conn.execute(
                text(
                    "SELECT key FROM cases WHERE kind = 'ip-integration' AND status = 'active' "
                    "ORDER BY key DESC LIMIT 1"
                )
            ).scalar_one()
        app = create_app(rt, clock=lambda: NOW)
        pages = [
            ("My items, IP pilot lead", IP_LEAD, "/me"),
            ("My items, busiest case owner", owner, "/me"),
            (f"case page, {ip_case}", IP_LEAD, f"/cases/{ip_case}"),
        ]
        raw = sqlite3.connect(path)
        results = []
        clients: list[_Asgi] = []
        try:
            for label, email, page in pages:
                client = _Asgi(app)
                link = links.personal_link(rt, ids[email], 1, now=NOW)
                client.get(link.removeprefix(rt.settings.web_url()))
                clients.append(client)

                def get(client: _Asgi = client, page: str = page) -> None:
                    status, _ = client.get(page)
                    if status != 200:
                        raise RuntimeError(f"{page}: {status}")

                recorded.clear()
                recording[0] = True
                get()
                recording[0] = False
                statements = [
                    s for s in recorded if s.lstrip().upper().startswith(("SELECT", "WITH"))
                ]

                def replay(statements: list[str] = statements) -> None:
                    for statement in statements:
                        raw.execute(statement).fetchall()

                ours = _timed(get, repeat)
                floor = _timed(replay, repeat)
                p95 = _p95(ours) * 1000
                verdict = "ok" if p95 <= BUDGET_MS else "OVER"
                name = (
                    f"{NAME}: {label} ({len(statements)} statements; "
                    f"p95 {p95:.0f} ms, budget {BUDGET_MS:.0f} ms {verdict})"
                )
                results.append(
                    {
                        **result(name, cases, _p95(ours), _p95(floor), TARGET, peak_rss_mb()),
                        "p95_ms": round(p95, 1),
                        "median_ms": round(statistics.median(ours) * 1000, 1),
                        "floor_p95_ms": round(_p95(floor) * 1000, 1),
                        "budget_ms": BUDGET_MS,
                        "statements": len(statements),
                    }
                )
        finally:
            for client in clients:
                client.close()
            raw.close()
            rt.engine.dispose()
    return results


def _timed(work: Callable[[], None], repeat: int) -> list[float]:
    for _ in range(3):  # warm caches alike for both sides
        work()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console

    from benchmarks.common import results_table

    parser = argparse.ArgumentParser(prog="python -m benchmarks.door_pages")
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=60)
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the store for later runs")
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args(argv)
    rows = run(args.cases, args.repeat, args.keep)
    Console(width=150).print(results_table("partners' door pages", rows))
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
