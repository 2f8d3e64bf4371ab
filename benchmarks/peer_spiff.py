"""Peer: SpiffWorkflow. The shared-sme-service lifecycle, case by case, in both engines.

Each side takes N SME requests from intake to closed, one step per transaction, on a SQLite
file with bridgebsr.store.db's settings (WAL, synchronous=NORMAL, a busy timeout, BEGIN IMMEDIATE
for every change):

- ours: the real use cases on a migrated case store with the shipped consortium:
  `open_case`, `progress_milestone(complete)` for each of the template's 11 milestones in
  the order they fall due, `decide_gate(approve)` on the SME acceptance gate and
  `change_case(close)`: 14 transactions a case, each with its optimistic-lock claim, its
  reforecast and its audit events;
- peer: the same lifecycle as BPMN (`benchmarks/peer/shared_sme_service.bpmn`: a user task
  per milestone, the acceptance gate as a user task and an exclusive gateway, a user task to
  close) run by SpiffWorkflow; each step loads the case's workflow, deserialises it with
  `BpmnWorkflowSerializer`, runs the ready task, runs the engine steps, serialises it and
  writes it back under a version check: 14 transactions a case as well (the first creates
  the workflow).

Each case is on schedule: opened 90 days before the as-of day, every milestone completed on
its planned due day, the gate decided on its deadline, the case closed when the last
milestone is done. The two sides take turns, 50 cases each, so that both meet the same load
on a shared machine. Parsing the BPMN file and loading the templates are set-up, not timed.
The result's ratio is ours_s / peer_s for the same cases; the target is at most 0.33 (ours
at least three times the peer's cases per second).

    .venv/bin/python -m benchmarks.peer_spiff [--cases 1000] [--json OUT] [--profile PSTATS]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, func
from sqlmodel import col, select

from benchmarks.common import peak_rss_mb, print_profile, results_table, within_target, write_json
from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.demo import load_consortium
from bridgebsr.exchange.catalog import Catalog
from bridgebsr.office.cases import change_case, open_case
from bridgebsr.office.progress import Actor, decide_gate, progress_milestone
from bridgebsr.settings import Settings
from bridgebsr.store import case_rows as store
from bridgebsr.store import migrate
from bridgebsr.store.db import SQLITE_PRAGMAS, read_session, write_session
from models import Case, CaseEvent, CaseStatus, Contact, Decision, Source

NAME = "peer: SpiffWorkflow (SME lifecycle)"
TARGET = 0.33  # ours_s / peer_s: ours at least three times the peer's cases per second
KIND = "shared-sme-service"
BPMN = Path(__file__).parent / "peer" / "shared_sme_service.bpmn"
PROCESS = "shared_sme_service"
NOW = datetime(2026, 11, 26, 11, tzinfo=UTC)
OPENED = NOW - timedelta(days=90)
START = OPENED.date()
GATE = "sme-acceptance"
CLOSE = "close-case"
# After opening: the template's milestones in the order they fall due (one its strict
# dependencies allow), the acceptance gate where it falls, then closing. The BPMN's user
# tasks carry the same keys.
STEPS = (
    "request-intake",
    "needs-interview",
    "triage-decision",
    "nda",
    "cluster-search",
    "match-proposal",
    GATE,
    "service-plan",
    "service-delivery",
    "feedback",
    "follow-up-call",
    "kpi-record",
    CLOSE,
)
TRANSACTIONS_PER_CASE = 1 + len(STEPS)
CHUNK = 50  # cases each side runs before the other takes its turn

out = Console(width=max(Console().width, 112))


# ---------------------------------------------------------------------------------------------
# Ours


def new_store(root: Path) -> Runtime:
    """A migrated SQLite case store with the shipped consortium, on the store settings."""
    home = root / "ours"
    rt = build_runtime(Settings(home=home, database_url=f"sqlite:///{home / 'cases.db'}"))
    migrate.upgrade(rt.engine)
    load_consortium(rt)
    return rt


def _first_with_role(engine: Engine, role: str) -> str:
    with read_session(engine) as session:
        found = session.exec(
            select(Contact.email).where(Contact.role == role).order_by(col(Contact.id))
        ).first()
    if found is None:
        raise RuntimeError(f"the consortium has no {role}")
    return found


def check_steps(catalog: Catalog) -> None:
    """The lifecycle covers every milestone and gate of the template, once."""
    template = catalog.get(KIND)
    keys = {m.key for m in template.milestones} | {g.key for g in template.gates}
    if keys != set(STEPS) - {CLOSE} or len(STEPS) != len(set(STEPS)):
        raise RuntimeError(f"the lifecycle steps do not match template {KIND}")


def step_days(engine: Engine, key: str) -> dict[str, datetime]:
    """When each step of a case on schedule happens: a milestone is completed on its planned
    due day, the gate is decided on its deadline, the case closed when the last milestone is
    done."""
    with read_session(engine) as session:
        plan = store.load_case(session, key, for_update=False).plan
    at = {n.key: datetime.combine(n.planned_due, NOW.timetz()) for n in plan.nodes()}
    at[CLOSE] = max(at.values())
    if [at[step] for step in STEPS] != sorted(at[step] for step in STEPS):
        raise RuntimeError("the lifecycle steps are not in the order they fall due")
    return at


def ours_case(
    engine: Engine,
    catalog: Catalog,
    n: int,
    owner: str,
    advisor: str,
    days: dict[str, datetime] | None = None,
) -> dict[str, datetime]:
    """One SME request from intake to closed through the use cases, a transaction a step,
    each step on its planned day (`days`: when each step happens; read from the first case
    when not given, since every case opens on the same day with the same owners)."""
    with write_session(engine) as session:
        key = open_case(
            session=session,
            catalog=catalog,
            kind=KIND,
            title=f"SME request {n}",
            owner_email=owner,
            start=START,
            now=OPENED,
        ).key
    days = days or step_days(engine, key)
    for step in STEPS:
        now = days[step]
        with write_session(engine) as session:
            if step == GATE:
                decide_gate(
                    session=session,
                    case_key=key,
                    gate_key=step,
                    decision=Decision.APPROVE,
                    actor=Actor(advisor, Source.CLI),
                    now=now,
                )
            elif step == CLOSE:
                change_case(
                    session=session,
                    key=key,
                    action="close",
                    reason="service delivered",
                    actor=owner,
                    now=now,
                )
            else:
                progress_milestone(
                    session=session,
                    case_key=key,
                    milestone_key=step,
                    action="complete",
                    actor=Actor(owner, Source.CLI),
                    now=now,
                )
    return days


class Ours:
    """Our side: cases through the use cases, timed chunk by chunk."""

    def __init__(self, rt: Runtime, profile: Path | None) -> None:
        self.engine, self.catalog = rt.engine, rt.catalog
        self.owner = _first_with_role(self.engine, "case-owner")
        self.advisor = _first_with_role(self.engine, "sme-advisor")
        self.days: dict[str, datetime] | None = None
        self.profiler = cProfile.Profile() if profile else None

    def run(self, first: int, count: int) -> float:
        """Cases first .. first + count - 1; wall time."""
        started = time.perf_counter()
        if self.profiler:
            self.profiler.enable()
        for n in range(first, first + count):
            self.days = ours_case(self.engine, self.catalog, n, self.owner, self.advisor, self.days)
        if self.profiler:
            self.profiler.disable()
        return time.perf_counter() - started


def ours_outcome(engine: Engine) -> dict[str, int]:
    """Completed cases and audit events in the case store."""
    with read_session(engine) as session:
        completed = session.exec(
            select(func.count(col(Case.id))).where(Case.status == CaseStatus.COMPLETED)
        ).one()
        events = session.exec(select(func.count(col(CaseEvent.id)))).one()
    return {"completed": completed, "events": events}


# ---------------------------------------------------------------------------------------------
# The peer


class Spiff:
    """The BPMN lifecycle run by SpiffWorkflow, each workflow a JSON document in SQLite."""

    def __init__(self, path: Path) -> None:
        from SpiffWorkflow.bpmn.parser import BpmnParser  # type: ignore[import-untyped]
        from SpiffWorkflow.bpmn.serializer import (  # type: ignore[import-untyped]
            BpmnWorkflowSerializer,
        )

        parser = BpmnParser()
        parser.add_bpmn_file(str(BPMN))
        self.spec = parser.get_spec(PROCESS)
        self.serializer = BpmnWorkflowSerializer()
        self.db = sqlite3.connect(path, isolation_level=None)
        for pragma in SQLITE_PRAGMAS:
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute(
            "CREATE TABLE workflows (id INTEGER PRIMARY KEY, ref TEXT NOT NULL UNIQUE, "
            "version INTEGER NOT NULL, updated_at TEXT NOT NULL, state TEXT NOT NULL)"
        )

    def open(self, ref: str) -> int:
        """Create a case's workflow, run it to its first user task, store it; its row id."""
        from SpiffWorkflow.bpmn.workflow import BpmnWorkflow  # type: ignore[import-untyped]

        self.db.execute("BEGIN IMMEDIATE")
        workflow = BpmnWorkflow(self.spec)
        workflow.do_engine_steps()
        row = self.db.execute(
            "INSERT INTO workflows (ref, version, updated_at, state) VALUES (?, 1, ?, ?)",
            (ref, NOW.isoformat(), self.serializer.serialize_json(workflow)),
        ).lastrowid
        self.db.execute("COMMIT")
        assert row is not None
        return row

    def step(self, row: int, task_name: str, data: dict[str, Any]) -> None:
        """Load a workflow, run its ready task `task_name` with `data`, store it if unchanged."""
        from SpiffWorkflow.util.task import TaskState  # type: ignore[import-untyped]

        self.db.execute("BEGIN IMMEDIATE")
        try:
            version, state = self.db.execute(
                "SELECT version, state FROM workflows WHERE id = ?", (row,)
            ).fetchone()
            workflow = self.serializer.deserialize_json(state)
            ready = [
                t
                for t in workflow.get_tasks(state=TaskState.READY)
                if t.task_spec.name == task_name
            ]
            if len(ready) != 1:
                raise RuntimeError(f"workflow {row}: {task_name} is not ready")
            ready[0].data.update(data)
            ready[0].run()
            workflow.do_engine_steps()
            state = self.serializer.serialize_json(workflow)
            updated = self.db.execute(
                "UPDATE workflows SET version = ?, updated_at = ?, state = ? "
                "WHERE id = ? AND version = ?",
                (version + 1, NOW.isoformat(), state, row, version),
            ).rowcount
            if updated != 1:
                raise RuntimeError(f"workflow {row} changed meanwhile")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def closed(self) -> int:
        """Workflows that reached the `closed` end event (each one deserialised and checked)."""
        from SpiffWorkflow.util.task import TaskState

        count = 0
        for (state,) in self.db.execute("SELECT state FROM workflows"):
            workflow = self.serializer.deserialize_json(state)
            ends = {t.task_spec.name for t in workflow.get_tasks(state=TaskState.COMPLETED)}
            count += workflow.is_completed() and "closed" in ends and "declined" not in ends
        return count


def peer(spiff: Spiff, first: int, count: int) -> float:
    """Cases first .. first + count - 1 through SpiffWorkflow; wall time."""
    started = time.perf_counter()
    for n in range(first, first + count):
        row = spiff.open(f"SME-{n:06d}")
        for step in STEPS:
            spiff.step(row, step, {"accepted": True} if step == GATE else {})
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------------
# One run


def run(cases: int, profile: Path | None = None) -> dict[str, object]:
    """Both engines over the same N cases, each on its own SQLite file."""
    with tempfile.TemporaryDirectory(prefix="bridgebsr-spiff-") as tmp:
        root = Path(tmp)
        rt = new_store(root)
        spiff = Spiff(root / "spiff.db")
        try:
            check_steps(rt.catalog)
            ours = Ours(rt, profile)
            # The two sides take turns, a chunk of cases each, so that both meet the same
            # load on a shared machine.
            ours_s = peer_s = 0.0
            for first in range(1, cases + 1, CHUNK):
                count = min(CHUNK, cases + 1 - first)
                if first // CHUNK % 2:
                    ours_s += ours.run(first, count)
                    peer_s += peer(spiff, first, count)
                else:
                    peer_s += peer(spiff, first, count)
                    ours_s += ours.run(first, count)
            if ours.profiler and profile:
                ours.profiler.dump_stats(str(profile))
            done = ours_outcome(rt.engine)
            closed = spiff.closed()
        finally:
            spiff.db.close()
            rt.engine.dispose()
    if done["completed"] != cases or closed != cases:
        raise RuntimeError(
            f"of {cases} cases, ours completed {done['completed']} and the peer closed {closed}"
        )
    return {
        "name": NAME,
        "size": cases,
        "ours_s": round(ours_s, 3),
        "floor_s": round(peer_s, 3),
        "ratio": round(ours_s / peer_s, 2),
        "target": TARGET,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "transactions_per_case": TRANSACTIONS_PER_CASE,
        "ours_cases_per_s": round(cases / ours_s, 1),
        "peer_cases_per_s": round(cases / peer_s, 1),
        "ours_events": done["events"],
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def table(results: Sequence[dict[str, Any]]) -> Table:
    """One row per run."""
    extra = [
        ("steps", lambda r: str(r["transactions_per_case"])),
        ("ours, cases/s", lambda r: f"{r['ours_cases_per_s']:.1f}"),
        ("Spiff, cases/s", lambda r: f"{r['peer_cases_per_s']:.1f}"),
    ]
    title = "the SME lifecycle, a transaction a step: ours against SpiffWorkflow"
    return results_table(title, results, size_label="cases", floor_label="Spiff, s", extra=extra)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cases", type=int, default=1_000, help="SME requests (1,000)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the result here")
    parser.add_argument(
        "--profile", type=Path, metavar="PSTATS", help="cProfile ours into this file"
    )
    args = parser.parse_args(argv)
    if args.cases < 1:
        parser.error("--cases must be at least 1")
    result = run(args.cases, args.profile)
    out.print(table([result]))
    if args.profile:
        print_profile(args.profile, 40)
    if args.json:
        write_json(args.json, result)
    return 0 if within_target(result) else 1


if __name__ == "__main__":
    sys.exit(main())
