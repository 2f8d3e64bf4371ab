"""Opening cases in bulk: 10,000 cases from a CSV file, against SQLAlchemy Core executemany.

Generates a realistic cases file (a fixed seed: 94 % shared-sme-service requests over every
case owner of the consortium, 3 % IP integration and 3 % foundation pilots led by the pilot
leads, lead partners mostly the owner's own and sometimes another cluster, start dates over
the two years before the as-of day, some on weekends and holidays; 40 % of the SME requests
name a team: an SME advisor, half of them also a legal advisor), then, on two case stores
built the same way (migrated, the shipped consortium loaded, bridgebsr.store.db's settings: on
SQLite two files in WAL mode, synchronous=NORMAL; on PostgreSQL, when 127.0.0.1:5432 answers,
two scratch databases `bench_bulk_<pid>_*`, dropped at the end):

- ours: `bridgebsr.office.bulk.import_cases` end to end from the file (reading, validation,
  planning, writing, commit), the templates already loaded;
- floor: the rows ours wrote (read back from the first store: cases, milestones, gates,
  audit events, the pinned template versions and key sequences) inserted into the second
  store with one SQLAlchemy Core executemany per table, in one transaction.

    .venv/bin/python -m benchmarks.bulk_open [--size 10000] [--progress]
        [--db sqlite postgresql] [--json OUT] [--profile PSTATS]

The target is ours at most 2x the floor; exits 1 when it is missed, or when the two stores
do not end up with the same rows.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, insert, select, text
from sqlmodel import SQLModel

from benchmarks import scratch_pg
from benchmarks.common import (
    BACKENDS,
    Result,
    backends,
    peak_rss_mb,
    print_profile,
    reset_peak_rss,
    result,
    results_table,
    within_target,
    write_json,
)
from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.demo import DATA, load_consortium
from bridgebsr.exchange.catalog import Catalog
from bridgebsr.office import bulk
from bridgebsr.settings import Settings
from bridgebsr.store import migrate
from bridgebsr.store.db import write_session

NAME = "bulk-open"
TARGET = 2.0  # ours at most this many times the floor
NOW = datetime(2026, 11, 26, 11, tzinfo=UTC)
RNG_SEED = 20261126
DAYS_BACK = 730  # starts over the two years before NOW
OTHER_LEAD = 0.15  # share of cases led by another partner than the owner's
WITH_TEAM = 0.4  # share of cases that name a team (an SME advisor, sometimes a legal advisor)
SIDES = ("ours", "floor")
# Tables the import writes, in insertion order, and whether ours passes their ids.
WRITTEN = (
    ("template_versions", False),
    ("key_sequences", True),
    ("cases", True),
    ("case_team", False),
    ("milestones", False),
    ("gates", False),
    ("case_events", False),
)
SME_TOPICS = (
    "IP licensing",
    "patent landscaping",
    "seed financing",
    "investor readiness",
    "Horizon Europe application",
    "EIC Accelerator pitch",
    "clinical partner search",
    "CRO partnering",
    "technology scouting",
    "regulatory advice (MDR)",
)

out = Console(width=max(Console().width, 112))


# ---------------------------------------------------------------------------------------------
# The file


def _contacts() -> list[dict[str, str]]:
    with (DATA / "contacts.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def write_cases(path: Path, size: int) -> list[list[str]]:
    """A deterministic cases file of `size` rows; returns its rows (header first)."""
    rng = random.Random(RNG_SEED)
    people = _contacts()
    case_owners = [p for p in people if p["role"] == "case-owner"]
    leads = [p for p in people if p["role"] == "pilot-lead"]
    clusters = ["SCANBALT", "BCV", "MVA", "BIOFORUM-OULU", "LBA", "EBA", "STEINBEIS", "NCP-LT"]
    advisors = [p["email"] for p in people if p["role"] == "sme-advisor"]
    lawyers = [p["email"] for p in people if p["role"] == "legal-advisor"]
    rows = [["ref", "kind", "title", "owner", "start", "partner", "team"]]
    for n in range(size):
        roll = rng.random()
        start = NOW.date() - timedelta(days=rng.randrange(DAYS_BACK))
        if start.weekday() >= 5 and rng.random() < 0.8:  # most requests come in on weekdays
            start -= timedelta(days=start.weekday() - 4)
        partner = rng.choice(clusters) if rng.random() < OTHER_LEAD else ""
        if roll < 0.94:
            owner = rng.choice(case_owners)
            kind, title = "shared-sme-service", f"SME request {n + 1}: {rng.choice(SME_TOPICS)}"
        elif roll < 0.97:
            owner = rng.choice(leads)
            kind, title = "ip-integration", f"Transregional IP integration, wave {n + 1}"
        else:
            owner = rng.choice(leads)
            kind, title = "life-science-foundation", f"Life science foundation, track {n + 1}"
        team = ""
        if kind == "shared-sme-service" and rng.random() < WITH_TEAM:
            team = f"sme-advisor={rng.choice(advisors)}"
            if rng.random() < 0.5:
                team += f";legal-advisor={rng.choice(lawyers)}"
        rows.append(
            [f"XL-{n + 1:06d}", kind, title, owner["email"], start.isoformat(), partner, team]
        )
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return rows


def write_progress(path: Path, cases: list[list[str]]) -> None:
    """For SME cases over 8 weeks old: intake and interview done, triage under way."""
    rng = random.Random(RNG_SEED + 1)
    rows = [["case", "milestone", "status", "started_on", "finished_on"]]
    for ref, kind, _title, _owner, start, _partner in cases[1:]:
        began = date.fromisoformat(start)
        if kind != "shared-sme-service" or (NOW.date() - began).days < 56:
            continue
        intake = _weekday(began + timedelta(days=rng.randrange(1, 4)))
        interview = _weekday(intake + timedelta(days=rng.randrange(3, 9)))
        rows.append([ref, "request-intake", "done", "", intake.isoformat()])
        rows.append([ref, "needs-interview", "done", "", interview.isoformat()])
        rows.append([ref, "triage-decision", "in_progress", interview.isoformat(), ""])
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)


def _weekday(day: date) -> date:
    return day + timedelta(days=max(0, 7 - day.weekday()) if day.weekday() >= 5 else 0)


# ---------------------------------------------------------------------------------------------
# The stores and the two sides


def new_store(home: Path, url: str) -> Runtime:
    """A migrated case store with the shipped consortium, on bridgebsr.store.db's settings."""
    home.mkdir(parents=True, exist_ok=True)
    rt = build_runtime(Settings(home=home, database_url=url))
    migrate.upgrade(rt.engine)
    load_consortium(rt)
    return rt


@contextmanager
def stores(db: str, root: Path) -> Iterator[tuple[Runtime, Runtime]]:
    """Ours and the floor's store, built the same way: SQLite files under `root`, or scratch
    databases `bench_bulk_<pid>_ours` and `..._floor` on PostgreSQL, dropped at the end."""
    with ExitStack() as stack:
        if db == "sqlite":
            urls = [f"sqlite:///{root / side / 'cases.db'}" for side in SIDES]
        else:
            databases = stack.enter_context(scratch_pg.scratch_databases("bulk"))
            urls = [databases.create(side) for side in SIDES]
        built = []
        for side, url in zip(SIDES, urls, strict=True):
            rt = new_store(root / side, url)
            stack.callback(rt.engine.dispose)
            built.append(rt)
        yield built[0], built[1]


def ours(
    engine: Engine, catalog: Catalog, cases: Path, progress: Path | None, profile: Path | None
) -> tuple[float, bulk.BulkReport]:
    """The import end to end; its wall time and report."""
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    with write_session(engine) as session:
        report = bulk.import_cases(
            session=session, catalog=catalog, cases=cases, progress=progress, now=NOW
        )
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - started
    if profiler and profile:
        profiler.dump_stats(str(profile))
    return seconds, report


def written_rows(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables the import writes, as ours passed them (ids where it does)."""
    tables = SQLModel.metadata.tables
    rows: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        for name, with_ids in WRITTEN:
            table = tables[name]
            order = table.c.id if "id" in table.c else table.c.prefix
            found = [dict(r) for r in conn.execute(select(table).order_by(order)).mappings()]
            if not with_ids:
                for row in found:
                    row.pop("id", None)
            rows[name] = found
    return rows


def floor(engine: Engine, rows: dict[str, list[dict[str, Any]]]) -> float:
    """The same rows with one Core executemany per table, in one transaction; wall time."""
    tables = SQLModel.metadata.tables
    started = time.perf_counter()
    with engine.begin() as conn:
        for name, _with_ids in WRITTEN:
            if rows[name]:
                conn.execute(insert(tables[name]), rows[name])
    return time.perf_counter() - started


def fingerprint(engine: Engine) -> dict[str, int]:
    """Row counts and a content digest of the written tables (ids and pin times aside)."""
    tables = SQLModel.metadata.tables
    cases = tables["cases"]
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        for name, _ in WRITTEN:
            counts[name] = int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one())
        digest = conn.execute(
            select(
                cases.c.key, cases.c.status, cases.c.forecast_date, cases.c.current_stage
            ).order_by(cases.c.key)
        ).all()
    counts["cases_digest"] = hash(tuple(tuple(row) for row in digest))
    return counts


def run(
    size: int, with_progress: bool = False, profile: Path | None = None, db: str = "sqlite"
) -> Result:
    """One run on a backend: generate the file, time ours on one store and the floor on
    another."""
    reset_peak_rss()
    with tempfile.TemporaryDirectory(prefix="bridgebsr-bulk-") as tmp:
        root = Path(tmp)
        cases = root / "cases.csv"
        rows = write_cases(cases, size)
        progress = None
        if with_progress:
            progress = root / "progress.csv"
            write_progress(progress, rows)
        with stores(db, root) as (ours_store, floor_store):
            catalog = ours_store.catalog  # loading the templates is set-up, not import
            ours_s, report = ours(ours_store.engine, catalog, cases, progress, profile)
            ours_rss = peak_rss_mb()  # before the floor's side reads every row back
            if len(report.created) != size:
                raise RuntimeError(f"ours created {len(report.created)} of {size} cases")
            written = written_rows(ours_store.engine)
            floor_s = floor(floor_store.engine, written)
            if fingerprint(ours_store.engine) != fingerprint(floor_store.engine):
                raise RuntimeError("the floor did not write the rows ours wrote")
    label = f"{NAME} with progress" if with_progress else NAME
    return {
        **result(f"{label} ({BACKENDS[db]})", size, ours_s, floor_s, TARGET, ours_rss),
        "backend": db,
        "peak_rss_mb_with_floor": peak_rss_mb(),
        "rows": {name: len(found) for name, found in written.items()},
        "milestones_updated": report.milestones,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def run_backends(sizes: Mapping[str, int]) -> list[Result]:
    """One run per backend at its size (PostgreSQL when the server answers)."""
    return [run(sizes[db], db=db) for db in backends(NAME, list(sizes))]


# ---------------------------------------------------------------------------------------------
# The command


def table(results: Sequence[Result]) -> Table:
    """One row per run."""
    return results_table(
        "opening cases in bulk from a CSV file",
        results,
        size_label="cases",
        extra=[("rows written", lambda r: f"{sum(r['rows'].values()):,}")],
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--size", type=int, action="append", help="cases in the file (repeatable; 10,000)"
    )
    parser.add_argument(
        "--progress", action="store_true", help="also import progress rows for older cases"
    )
    parser.add_argument(
        "--db",
        nargs="+",
        choices=tuple(BACKENDS),
        default=list(BACKENDS),
        help="backends (PostgreSQL when 127.0.0.1:5432 answers)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the results here")
    parser.add_argument(
        "--profile", type=Path, metavar="PSTATS", help="cProfile ours into this file"
    )
    args = parser.parse_args(argv)
    sizes = args.size or [10_000]
    if any(s < 1 for s in sizes):
        parser.error("--size must be at least 1")
    results = [
        run(size, args.progress, args.profile, db)
        for db in backends(NAME, args.db)
        for size in sizes
    ]
    out.print(table(results))
    if args.profile:
        print_profile(args.profile)
    if args.json:
        write_json(args.json, results)
    return 0 if all(within_target(r) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
