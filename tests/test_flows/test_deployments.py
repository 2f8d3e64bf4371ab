"""The scale path for real: `prefect deploy --all` from prefect.yaml, a process worker on the
`bridgebsr` pool, flow runs it executes against the case store (PostgreSQL in CI), and the
gate round trip through the decision form, as pilot leads and the CLI drive it."""

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import pytest
import yaml
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.flow_runs import resume_flow_run
from sqlalchemy import create_engine, select, text

from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.cli.orchestration import interruptible
from bridgebsr.demo import load_demo
from bridgebsr.office.gate_views import gate_view
from bridgebsr.office.progress import Actor, decide_gate
from bridgebsr.settings import Settings
from bridgebsr.store import migrate
from bridgebsr.store.db import read_session, write_session
from flows.deployments import DEPLOYMENTS, TIMEZONE, WORK_POOL
from models import (
    CaseEvent,
    Decision,
    GateDecision,
    GateStatus,
    Milestone,
    Notification,
    Source,
)
from tests.conftest import IN_CI, PG_ADMIN_URL, postgres_available
from tests.test_flows.conftest import BIN, DEMO_DAY, REPO

IP_KEY, COUNCIL = "IP-2025-0001", "council-approval"
COUNCIL_MEMBERS = (
    "peter.moller-jensen@mva.example",
    "juergen.weiss@bioconvalley.example",
    "malgorzata.zurawska@ippt-pan.example",
)
SME_ADVISOR = "elin.sjoberg@mva.example"
IP_LEAD = "karin.astrom@mva.example"  # the pilot lead of IP-2025-0001 (its lead partner's)


def test_prefect_yaml_declares_what_the_code_serves() -> None:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    declared = {d["name"]: d for d in spec["deployments"]}
    assert set(declared) == set(DEPLOYMENTS)
    for name, (flow, cron, _tags) in DEPLOYMENTS.items():
        entry = declared[name]
        module, func = entry["entrypoint"].split(":")
        assert (REPO / module).exists() and flow.fn.__name__ == func
        assert flow.name == name
        assert entry["work_pool"]["name"] == WORK_POOL
        schedules = entry.get("schedules") or []
        assert [s["cron"] for s in schedules] == ([cron] if cron else [])
        assert all(s["timezone"] == TIMEZONE for s in schedules)
    text_ = yaml.safe_dump(spec).lower()  # what Prefect reads, comments aside
    assert not any(word in text_ for word in ("password", "secret", "token", "mailto"))


def _admin(statement: str) -> None:
    engine = create_engine(PG_ADMIN_URL)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def e2e_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runtime, dict[str, str]]]:
    """The demo portfolio on PostgreSQL when it answers (always in CI), else a SQLite file."""
    home = tmp_path_factory.mktemp("e2e-home")
    schema = None
    if postgres_available():
        schema = f"e2e_{uuid.uuid4().hex[:10]}"
        _admin(f"CREATE SCHEMA {schema}")
        url = f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    elif IN_CI:
        pytest.fail(f"PostgreSQL is required in CI but {PG_ADMIN_URL} does not answer")
    else:
        url = f"sqlite:///{home / 'cases.db'}"
    rt = build_runtime(Settings(home=home, database_url=url))
    migrate.upgrade(rt.engine)
    load_demo(rt, date.fromisoformat(DEMO_DAY))
    env = {"BRIDGEBSR_HOME": str(home), "BRIDGEBSR_DATABASE_URL": url}
    yield rt, env
    rt.engine.dispose()
    if schema:
        _admin(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="module")
def worker(
    prefect_api: str,
    e2e_store: tuple[Runtime, dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Runtime]:
    """Deployments from prefect.yaml and one process worker polling every second."""
    rt, store_env = e2e_store
    env = {**os.environ, **store_env, "PREFECT_API_URL": prefect_api, "PREFECT_CLI_PROMPT": "false"}
    for command in (
        ["work-pool", "create", WORK_POOL, "--type", "process", "--overwrite"],
        ["deploy", "--all"],
    ):
        done = subprocess.run(
            [str(BIN / "prefect"), *command],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", WORK_POOL],
            cwd=tmp_path_factory.mktemp("elsewhere"),  # flows load from the deploy folder
            env={
                **env,
                "PREFECT_WORKER_QUERY_SECONDS": "1",
                "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=interruptible,
        )
    yield rt
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()


def _wait(run_id: UUID, until: set[str], timeout: float = 120) -> FlowRun:
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            assert run.state is not None
            if run.state.type.value in until:
                return run
            assert not run.state.is_final() or run.state.type.value in until, (
                f"{run.name} ended {run.state.type.value}: {run.state.message}"
            )
            assert time.monotonic() < deadline, f"{run.name} still {run.state.type.value}"
            time.sleep(0.5)


def _gate_runs(case_key: str, gate_key: str) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("stage-gate/stage-gate")
        # Filtered on the server: the session's server holds hundreds of runs by now.
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id])
            ),
            limit=200,
        )
    return [
        r
        for r in runs
        if r.parameters.get("case_key") == case_key and r.parameters.get("gate_key") == gate_key
    ]


def _paused_run(case_key: str, gate_key: str, key_suffix: str, timeout: float = 120) -> FlowRun:
    deadline = time.monotonic() + timeout
    while True:
        for run in _gate_runs(case_key, gate_key):
            if run.state and run.state.is_paused():
                if (run.state.state_details.pause_key or "").endswith(key_suffix):
                    return run
        assert time.monotonic() < deadline, f"no run of {case_key} {gate_key} waits at {key_suffix}"
        time.sleep(0.5)


def _votes(rt: Runtime) -> list[tuple[str, Any, Any, Any, Any]]:
    """Each vote's event: kind, actor, source, flow run, and for whom it was entered."""
    with read_session(rt.engine) as session:
        rows = session.execute(
            select(
                CaseEvent.kind,
                CaseEvent.actor,
                CaseEvent.source,
                CaseEvent.source_ref,
                CaseEvent.after,
            )
            .where(
                CaseEvent.subject == COUNCIL,
                CaseEvent.kind.in_(["gate.vote", "gate.approve", "gate.refused"]),  # type: ignore[attr-defined]
            )
            .order_by(CaseEvent.id)  # type: ignore[arg-type]
        ).all()
    return [(*r[:4], (r[4] or {}).get("on_behalf_of")) for r in rows]


def test_a_deployed_monitor_run_completes_on_the_worker_and_changes_the_store(
    worker: Runtime,
) -> None:
    run = run_deployment(
        "monitor-milestones/monitor-milestones",
        parameters={"now": f"{DEMO_DAY}T11:00:00+00:00"},
        timeout=0,
    )
    done = _wait(run.id, {"COMPLETED"})
    assert done.name == f"monitor {DEMO_DAY} 11:00"
    with read_session(worker.engine) as session:
        stamped = session.execute(
            select(Milestone.key).where(Milestone.overdue_on.is_not(None))
        ).all()  # type: ignore[union-attr]
        written = session.execute(select(Notification.id)).all()
        sources = set(
            session.execute(
                select(CaseEvent.source, CaseEvent.source_ref).where(
                    CaseEvent.kind == "milestone.overdue"
                )
            ).all()
        )
    # The demo holds 38 milestones late on DEMO_DAY (35 before the six activities of the work
    # programme joined it).
    assert len(stamped) == 38 and len(written) > 0
    assert sources == {(Source.FLOW, str(run.id))}
    # The pass started one waiting stage-gate run per open gate, named after case and gate.
    waiting = _paused_run(IP_KEY, COUNCIL, "-r1-v0-x0")
    assert waiting.name == f"{IP_KEY} · {COUNCIL}"
    assert {"ip-integration", "gate"} <= set(waiting.tags)


def test_the_decision_form_records_votes_refusals_and_the_approval(worker: Runtime) -> None:
    run = _paused_run(IP_KEY, COUNCIL, "-r1-v0-x0")
    first, second, third = COUNCIL_MEMBERS

    def entered(approver: str, by: str = IP_LEAD, comment: str = "") -> None:
        answer = {"decision": "approve", "approver_email": approver, "entered_by": by}
        resume_flow_run(run.id, run_input={**answer, "comment": comment})

    # The pilot lead enters a council member's decision, on their behalf.
    entered(first, comment="sound model")
    _paused_run(IP_KEY, COUNCIL, "-r1-v1-x0")
    # Someone who is no lead of the case types their own address in: refused, audited, and
    # the form asks again.
    entered(second, by=SME_ADVISOR)
    _paused_run(IP_KEY, COUNCIL, "-r1-v1-x1")
    # A vote from the CLI lands after the form was submitted and before the resumed run reads
    # the store (the worker takes seconds to start it): the run's key no longer matches, and
    # the run still records the submitted form before it waits again.
    entered(second)
    with write_session(worker.engine) as session:
        decide_gate(
            session=session,
            case_key=IP_KEY,
            gate_key=COUNCIL,
            decision=Decision.APPROVE,
            actor=Actor(third, Source.CLI, None, "adopt"),
            now=datetime.now(UTC),
        )
    finished = _wait(run.id, {"COMPLETED"})
    assert finished.id == run.id

    ref = str(run.id)
    assert _votes(worker) == [
        ("gate.vote", IP_LEAD, Source.FLOW, ref, first),
        ("gate.refused", SME_ADVISOR, Source.FLOW, ref, second),
        ("gate.vote", third, Source.CLI, None, None),
        ("gate.approve", IP_LEAD, Source.FLOW, ref, second),
    ]
    with read_session(worker.engine) as session:
        view = gate_view(session=session, case_key=IP_KEY, gate_key=COUNCIL)
        comments = (
            session.execute(select(GateDecision.comment).order_by(GateDecision.id)).scalars().all()
        )  # type: ignore[arg-type]
        stage = session.execute(
            text("SELECT current_stage FROM cases WHERE key = :k"), {"k": IP_KEY}
        ).scalar_one()
    assert view.status is GateStatus.APPROVED and view.approvals == 3
    assert "sound model" in comments and "adopt" in comments
    assert stage != "council-review"  # the case moved on past the gate's stage
    page = Artifact.get(f"case-{IP_KEY.lower()}")  # the gate run published the case again
    assert page is not None and page.flow_run_id == run.id
    assert f"| {COUNCIL} | approved |" in str(page.data)


def test_cli_changes_start_and_close_gate_runs(
    worker: Runtime, e2e_store: tuple[Runtime, dict[str, str]], prefect_api: str
) -> None:
    _, store_env = e2e_store
    env = {**os.environ, **store_env, "PREFECT_API_URL": prefect_api}

    def cli(*args: str) -> str:
        done = subprocess.run(
            [str(BIN / "bridgebsr"), *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    # SME-2026-0004 has its match proposed; the signed NDA is all the gate waits for.
    key = "SME-2026-0004"
    with read_session(worker.engine) as session:
        assert gate_view(session=session, case_key=key, gate_key="sme-acceptance").status is (
            GateStatus.PENDING
        )
    assert "started 1" in cli("milestone", "complete", key, "nda")
    run = _paused_run(key, "sme-acceptance", "-r1-v0-x0")
    assert run.name == f"{key} · sme-acceptance"

    assert "closed 1 waiting gate run" in cli(
        "gate", "approve", key, "sme-acceptance", "--by", SME_ADVISOR
    )
    closed = _wait(run.id, {"COMPLETED"}, timeout=10)
    assert closed.state is not None and "decided" in (closed.state.message or "")
    assert not [r for r in _gate_runs(key, "sme-acceptance") if r.state and r.state.is_paused()]
    with read_session(worker.engine) as session:
        view = gate_view(session=session, case_key=key, gate_key="sme-acceptance")
        decided_by = (
            session.execute(
                select(CaseEvent.source).where(
                    CaseEvent.kind == "gate.approve", CaseEvent.subject == "sme-acceptance"
                )
            )
            .scalars()
            .all()
        )
    assert view.status is GateStatus.APPROVED and Source.CLI in decided_by
    page = Artifact.get("case-sme-2026-0004")  # published again by the CLI after its change
    assert page is not None and page.flow_run_id is None
    assert "| sme-acceptance | approved |" in str(page.data)
