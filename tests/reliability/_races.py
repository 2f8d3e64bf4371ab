"""Worker processes for the race tests (test_races.py): a pool started once, whose workers
each get one change per race, get ready for it (engine connected, templates parsed, the case's
statements compiled), wait at one shared barrier and then all make their change at once,
through the same use cases as the CLI, and report how it ended.

A change ends `ok`, `refused` (one of bridgebsr.errors: the CLI prints its one line and exits
1) or `crashed` (anything else, such as a raw database error: the CLI would show a traceback).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.errors import BridgeError
from bridgebsr.monitor.sweep import run_monitor
from bridgebsr.office import cases, items, plan, progress, requests, team
from bridgebsr.settings import Settings
from bridgebsr.store import case_rows as store
from bridgebsr.store.db import read_session, write_session
from models import Decision, Source

ZONE = "Europe/Copenhagen"
WAIT = 60.0  # seconds a worker waits for the others at the barrier, the pool for a result


@dataclass(frozen=True)
class Store:
    """Where a worker makes its change: the store's URL, home and extra template folders."""

    url: str
    home: Path
    template_dirs: str = ""


@dataclass(frozen=True)
class Job:
    """One change: `what` is gate, milestone, reschedule, case, open, add, reassign, monitor
    or idle; `args` its words (gate: key, gate, approve|reject, email; milestone: key,
    milestone, action, email; reschedule: key, milestone, due, email, version; case: key,
    action, email; open: kind, owner email; add: key, new item, after, email; reassign: key,
    milestone, the new owner's email, the case version it expects; answer: request number,
    accept|decline, email)."""

    store: Store
    what: str
    args: tuple[str, ...]
    now: datetime


@dataclass(frozen=True)
class Ended:
    """How one worker's change ended."""

    job: Job
    outcome: str  # ok | refused | crashed | idle
    error: str = ""  # the exception's class name
    detail: str = ""  # the refusal's message, the traceback, or what the change returned

    @property
    def who(self) -> str:
        """The change, for assertion messages."""
        return f"{self.job.what} {' '.join(self.job.args)}"


@dataclass
class Pool:
    """Worker processes started once; `race` hands each worker one job and releases them all
    at the same instant."""

    size: int
    _workers: list[Any] = field(default_factory=list)
    _barrier: Barrier | None = None  # kept: its semaphores live as long as this reference
    _inboxes: list[Queue[Job | None]] = field(default_factory=list)
    _results: Queue[tuple[int, Ended]] | None = None

    def start(self) -> None:
        """Start the workers (spawned: a clean interpreter, no state copied from pytest)."""
        ctx = multiprocessing.get_context("spawn")
        barrier = self._barrier = ctx.Barrier(self.size)
        self._results = ctx.Queue()
        for index in range(self.size):
            inbox: Queue[Job | None] = ctx.Queue()
            worker = ctx.Process(
                target=serve, args=(barrier, inbox, self._results), name=f"racer-{index}"
            )
            worker.start()
            self._inboxes.append(inbox)
            self._workers.append(worker)

    def race(self, jobs: Sequence[Job]) -> list[Ended]:
        """Run the jobs at once, one per worker (the others wait idle); how each ended, in
        the order given."""
        assert self._results is not None and 0 < len(jobs) <= self.size
        padded = [*jobs, *(Job(jobs[0].store, "idle", (), jobs[0].now),) * (self.size - len(jobs))]
        for inbox, job in zip(self._inboxes, padded, strict=True):
            inbox.put(job)
        ended = dict(self._result() for _ in padded)
        return [ended[i] for i in range(len(jobs))]

    def _result(self) -> tuple[int, Ended]:
        """The next worker's report; a worker that died fails the race at once."""
        assert self._results is not None
        for _ in range(int(2 * WAIT)):
            try:
                return self._results.get(timeout=1)
            except queue.Empty:
                dead = [w.name for w in self._workers if not w.is_alive()]
                assert not dead, f"race workers died: {dead}"
        raise TimeoutError("no race worker reported within two minutes")

    def stop(self) -> None:
        """Ask every worker to finish, and wait for them."""
        for inbox in self._inboxes:
            inbox.put(None)
        for worker in self._workers:
            worker.join(timeout=WAIT)
            if worker.is_alive():
                worker.kill()


def serve(barrier: Barrier, inbox: Queue[Job | None], results: Queue[tuple[int, Ended]]) -> None:
    """A worker's life: for each job, get ready, wait for the others, change, report."""
    index = int(multiprocessing.current_process().name.rsplit("-", 1)[1])
    runtimes: dict[Store, Runtime] = {}
    while (job := inbox.get()) is not None:
        rt = runtimes.get(job.store)
        if rt is None:
            rt = runtimes[job.store] = _runtime(job.store)
        results.put((index, _one(rt, job, barrier)))
    for rt in runtimes.values():
        rt.engine.dispose()


def _runtime(where: Store) -> Runtime:
    settings = Settings(home=where.home, database_url=where.url, template_dirs=where.template_dirs)
    return build_runtime(settings)


def _one(rt: Runtime, job: Job, barrier: Barrier) -> Ended:
    try:
        _warm(rt, job)
    except Exception as exc:  # reported, and the others are still released
        barrier.wait(timeout=WAIT)
        return Ended(job, "crashed", type(exc).__name__, traceback.format_exc())
    barrier.wait(timeout=WAIT)
    try:
        return Ended(job, "ok", detail=_act(rt, job))
    except BridgeError as exc:
        return Ended(job, "refused", type(exc).__name__, str(exc))
    except Exception as exc:
        return Ended(job, "crashed", type(exc).__name__, traceback.format_exc())


def _warm(rt: Runtime, job: Job) -> None:
    """Everything a change does before its first statement that could wait for another:
    a connection in the pool, the templates parsed, the case's statements compiled."""
    with rt.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    if job.what == "open":
        rt.catalog.get(job.args[0])
    elif job.what in {"gate", "milestone", "case", "add", "reschedule", "reassign"}:
        with read_session(rt.engine) as session:
            store.load_case(session, job.args[0], for_update=False)
    elif job.what == "answer":
        with read_session(rt.engine) as session:
            requests.pending_requests(session=session)


def _act(rt: Runtime, job: Job) -> str:
    """Make the change through its use case; what it returned, as text."""
    if job.what == "idle":
        return ""
    if job.what == "monitor":
        report = run_monitor(rt.engine, now=job.now, zone=ZONE)
        return f"timed out {report.timed_out}, failures {report.failures}"
    with write_session(rt.engine) as session:
        return _change(rt, session, job)


def _change(rt: Runtime, session: Any, job: Job) -> str:
    a = job.args
    if job.what == "gate":
        gate = progress.decide_gate(
            session=session,
            case_key=a[0],
            gate_key=a[1],
            decision=Decision(a[2]),
            actor=progress.Actor(a[3], comment=f"race {os.getpid()}"),
            now=job.now,
        )
        return gate.status.value
    if job.what == "milestone":
        milestone = progress.progress_milestone(
            session=session,
            case_key=a[0],
            milestone_key=a[1],
            action=a[2],
            actor=progress.Actor(a[3]),
            now=job.now,
        )
        return milestone.status.value
    if job.what == "reschedule":  # key, milestone, new due, email, the version seen
        moved, _ = plan.reschedule_milestone(
            session=session,
            case_key=a[0],
            milestone_key=a[1],
            due=date.fromisoformat(a[2]),
            reason="race",
            actor=progress.Actor(a[3]),
            now=job.now,
            expected_version=int(a[4]),
        )
        return moved.planned_due.isoformat()
    if job.what == "reassign":
        moved = team.reassign_milestone(
            session=session,
            key=a[0],
            milestone_key=a[1],
            to=a[2],
            actor=progress.Actor(a[2]),
            now=job.now,
            expected_version=int(a[3]),
        )
        return f"{moved.key} to {a[2]}"
    if job.what == "answer":  # request number, accept|decline, email
        answered = requests.answer_date_request(
            session=session,
            request_id=int(a[0]),
            accept=a[1] == "accept",
            actor=a[2],
            comment=f"race {os.getpid()}",
            source=Source.CLI,
            now=job.now,
        )
        return answered.status
    if job.what == "case":
        case = cases.change_case(
            session=session, key=a[0], action=a[1], reason="race", actor=a[2], now=job.now
        )
        return case.status.value
    if job.what == "add":
        added = items.add_milestone(
            session=session,
            case_key=a[0],
            key=a[1],
            title="raced",
            owner=a[3],
            duration=5,
            after=a[2],
            actor=progress.Actor(a[3]),
            now=job.now,
        )
        return str(added.milestone.seq)
    assert job.what == "open", job.what
    opened = cases.open_case(
        session=session, catalog=rt.catalog, kind=a[0], title="race", owner_email=a[1], now=job.now
    )
    return opened.key
