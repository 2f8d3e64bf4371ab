"""KPIs over a large portfolio against one SQL GROUP BY producing the same per-pilot figures.

    python -m benchmarks.kpi_scale [--cases 100000] [--db sqlite postgresql] [--json OUT]
                                   [--keep DIR]

On SQLite, and on PostgreSQL when 127.0.0.1:5432 answers (a scratch database, dropped at the
end; ours reads it through ADBC on one exported snapshot). The store is built in a child
process (the generator of `benchmarks.monitor_scale`: about 11 milestones per case), so this
process's peak RSS is the KPI work's. Then, per backend, in one run:

- floor: two GROUP BY queries per pilot: cases by status; milestones (of cases not cancelled)
  done, done on or before the planned due date, waived, and overdue now;
- ours: `kpis.load` (every row the views read, in one snapshot) plus `build_case_counts`
  and `build_milestone_kpis` by pilot, the same figures plus the working-day slips (median,
  p90) SQL cannot give;
- ours, every view: `kpis.load` plus `build_all` (stages, gate rounds, breaches by month, the
  SME service, the forecast of every open case), reported against the same floor.

The per-pilot figures of ours and the floor must agree exactly, or the run fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, create_engine, text

from benchmarks import scratch_pg
from benchmarks.common import (
    BACKENDS,
    Result,
    backends,
    in_child,
    peak_rss_mb,
    reset_peak_rss,
    result,
    within_target,
    write_json,
)
from bridgebsr.reports import kpis

NAME = "kpis per pilot"
TARGET = 3.0
AS_OF = date(2026, 11, 26)  # the day benchmarks.monitor_scale builds its portfolio for

FLOOR_CASES = """
SELECT kind AS pilot,
       count(*) AS cases,
       sum(CASE WHEN status IN ('draft', 'active', 'on_hold') THEN 1 ELSE 0 END) AS open,
       sum(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) AS completed,
       sum(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END) AS cancelled
FROM cases GROUP BY kind ORDER BY kind
"""
FLOOR_MILESTONES = """
SELECT c.kind AS pilot,
       count(*) AS milestones,
       sum(CASE WHEN m.status = 'done' THEN 1 ELSE 0 END) AS done,
       sum(CASE WHEN m.status = 'done' AND m.finished_on <= m.planned_due THEN 1 ELSE 0 END)
           AS done_on_time,
       sum(CASE WHEN m.status = 'waived' THEN 1 ELSE 0 END) AS waived,
       sum(CASE WHEN m.status IN ('planned', 'in_progress', 'blocked')
                 AND c.status IN ('draft', 'active', 'on_hold')
                 AND m.planned_due < :as_of THEN 1 ELSE 0 END) AS overdue_now
FROM milestones m JOIN cases c ON c.id = m.case_id
WHERE c.status <> 'cancelled'
GROUP BY c.kind ORDER BY c.kind
"""
COMPARED = {
    "cases": ("cases", "open", "completed", "cancelled"),
    "milestones": ("milestones", "done", "done_on_time", "waived", "overdue_now"),
}


def _build(url: str, home: str, cases: int) -> dict[str, Any]:
    from benchmarks.monitor_scale import Store, build_store

    counts, seconds = build_store(Store("kpi", url, Path(home)), cases)
    return {"milestones": counts.milestones, "cases": counts.cases, "seconds": seconds}


def floor(engine: Engine) -> tuple[float, dict[str, pd.DataFrame]]:
    started = time.perf_counter()
    with engine.connect() as conn:
        by_case = pd.DataFrame(conn.execute(text(FLOOR_CASES)).mappings().all())
        by_milestone = pd.DataFrame(
            conn.execute(text(FLOOR_MILESTONES), {"as_of": AS_OF}).mappings().all()
        )
    return time.perf_counter() - started, {
        "cases": by_case.set_index("pilot"),
        "milestones": by_milestone.set_index("pilot"),
    }


def ours(engine: Engine) -> tuple[float, dict[str, pd.DataFrame]]:
    started = time.perf_counter()
    frames = kpis.load(engine, as_of=AS_OF)
    cases = kpis.build_case_counts(frames, (kpis.PILOT,))
    milestones = kpis.build_milestone_kpis(frames, (kpis.PILOT,))
    seconds = time.perf_counter() - started
    return seconds, {
        "cases": _indexed(cases),
        "milestones": _indexed(milestones),
    }


def every_view(engine: Engine) -> float:
    started = time.perf_counter()
    frames = kpis.load(engine, as_of=AS_OF)
    kpis.build_all(frames)
    return time.perf_counter() - started


def _indexed(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.reset_index() if kpis.PILOT not in frame.columns else frame
    out = out.assign(pilot=out[kpis.PILOT].astype(str))
    return out.set_index("pilot").sort_index()


def _agree(mine: dict[str, pd.DataFrame], theirs: dict[str, pd.DataFrame]) -> None:
    for table, columns in COMPARED.items():
        left = mine[table].loc[:, list(columns)].astype("int64")
        right = theirs[table].loc[left.index, list(columns)].astype("int64")
        if not left.equals(right):
            raise RuntimeError(f"per-pilot {table} differ:\nours\n{left}\nfloor\n{right}")


@contextmanager
def _store(db: str, cases: int, keep: Path | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(its URL, the build's figures): a store of `cases` cases, built in a child process; a
    SQLite file, or a scratch database `bench_kpi_<pid>_store` on PostgreSQL, dropped after.
    With `keep`, the store is kept for the next run instead (see `_kept_store`)."""
    if keep is not None:
        yield _kept_store(db, cases, keep)
        return
    with tempfile.TemporaryDirectory(prefix="bridgebsr-kpi-") as tmp:
        if db == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'cases.db'}"
            yield url, in_child(_build, url, tmp, cases)
            return
        with scratch_pg.scratch_databases("kpi") as databases:
            url = databases.create("store")
            yield url, in_child(_build, url, tmp, cases)


def _kept_store(db: str, cases: int, folder: Path) -> tuple[str, dict[str, Any]]:
    """A store that outlives the run, for measuring again without building again: the SQLite
    file `kpi_<cases>.db` in `folder`, or the database `bench_kpi_keep_<cases>` on
    PostgreSQL, built the first time (the build's figures kept beside it) and only read
    after. Nothing drops them: delete the folder, and the database with `DROP DATABASE`."""
    folder.mkdir(parents=True, exist_ok=True)
    figures = folder / f"kpi_{cases}_{db}.json"
    if db == "sqlite":
        url = f"sqlite:///{(folder / f'kpi_{cases}.db').resolve()}"
    else:
        url = scratch_pg.url_of(f"bench_kpi_keep_{cases}")
    if figures.exists():
        return url, dict(json.loads(figures.read_text(encoding="utf-8")))
    if db == "postgresql":
        admin = create_engine(scratch_pg.ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                name = f"bench_kpi_keep_{cases}"
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
    else:
        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="bridgebsr-kpi-") as tmp:
        built = dict(in_child(_build, url, tmp, cases))
    write_json(figures, built)
    return url, built


def run_backend(db: str, cases: int, keep: Path | None = None) -> list[Result]:
    """Build a store of `cases` cases (or reuse the one kept in `keep`), then time the floor,
    ours and every view."""
    reset_peak_rss()  # the build runs in a child: the peak from here on is the KPI work's
    with _store(db, cases, keep) as (url, built):
        engine = create_engine(url)
        try:
            floor(engine)  # warm the file cache (or shared buffers) for both sides alike
            floor_s, theirs = floor(engine)
            ours_s, mine = ours(engine)
            _agree(mine, theirs)
            all_s = every_view(engine)
        finally:
            engine.dispose()
    size = int(built["milestones"])
    rss = peak_rss_mb()
    label = BACKENDS[db]
    return [
        {**result(f"{NAME} ({label})", size, ours_s, floor_s, TARGET, rss), "backend": db},
        {
            **result(
                f"kpis, every view incl. forecasts ({label})", size, all_s, floor_s, None, rss
            ),
            "backend": db,
        },
    ]


def run(sizes: Mapping[str, int], keep: Path | None = None) -> list[Result]:
    """Each backend's rows, at its number of cases (PostgreSQL when the server answers)."""
    results: list[Result] = []
    for db in backends("kpis", list(sizes)):
        results += run_backend(db, sizes[db], keep)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kpi_scale")
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--db", nargs="+", choices=tuple(BACKENDS), default=list(BACKENDS))
    parser.add_argument("--json", type=Path, metavar="OUT")
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep the store for later runs (built once; for development, not for figures "
        "of record: the file cache and the server's buffers stay warm between runs)",
    )
    args = parser.parse_args(argv)
    results = run(dict.fromkeys(args.db, args.cases), args.keep)
    sys.stdout.write(json.dumps(results, indent=2) + "\n")
    if args.json:
        write_json(args.json, results)
    return 0 if all(within_target(r) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
