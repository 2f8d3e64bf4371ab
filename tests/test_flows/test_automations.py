"""The automations against the session's Prefect server, with every deployment served as
`bridgebsr up` serves them (which also applies the automations): a failed run alerts the
operators at a loopback webhook tagged `operators`, an escalation event runs pilot-lifecycle
for its case, a completed monitor run is followed by dispatch, a silent monitor alerts."""

import asyncio
import contextlib
import contextvars
import itertools
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterStartTime,
)
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.events import emit_event
from prefect.events.schemas.automations import Automation
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_RUNNER_POLL_FREQUENCY, temporary_settings
from sqlmodel import col, select

from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.demo import load_demo
from bridgebsr.monitor.report import Signal
from bridgebsr.office.gate_views import waiting_gates
from bridgebsr.settings import Settings
from bridgebsr.store import migrate
from bridgebsr.store.db import read_session
from flows import common
from flows.automations import (
    DISPATCH,
    LIFECYCLE,
    MONITOR,
    OPERATOR_ALERT,
    TAG,
    apply,
    plan,
    wanted,
    watched,
)
from flows.deployments import serve_all
from flows.monitor import case_events
from models import Case
from tests.test_flows.conftest import BIN, DEMO_DAY
from tests.test_notifications.conftest import HttpReceiver

ENV = ("BRIDGEBSR_HOME", "BRIDGEBSR_DATABASE_URL", "BRIDGEBSR_APPRISE_CONFIG")


@pytest.fixture(scope="module")
def operators() -> Iterator[HttpReceiver]:
    """The operators' webhook: a loopback receiver."""
    receiver = HttpReceiver()
    receiver.start()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def served(
    prefect_api: str, operators: HttpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runtime]:
    """The demo store, an Apprise config whose JSON webhook is tagged `operators`, and every
    deployment served from a thread of this process (`serve_all`, as `bridgebsr up`)."""
    folder = tmp_path_factory.mktemp("automations")
    config = folder / "apprise.yml"
    config.write_text(
        f"version: 1\nurls:\n  - json://127.0.0.1:{operators.port}/operators:\n"
        "      - tag: operators\n"
    )
    home, url = folder / "home", f"sqlite:///{folder / 'cases.db'}"
    rt = build_runtime(Settings(home=home, database_url=url))
    migrate.upgrade(rt.engine)
    load_demo(rt, date.fromisoformat(DEMO_DAY))
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(
        {
            "BRIDGEBSR_HOME": str(home),
            "BRIDGEBSR_DATABASE_URL": url,
            "BRIDGEBSR_APPRISE_CONFIG": str(config),
        }
    )
    started = datetime.now(UTC)
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    with temporary_settings(updates={PREFECT_RUNNER_POLL_FREQUENCY: 1}):
        context = contextvars.copy_context()  # the session's Prefect settings, in the thread

    async def serve() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await serve_all(lambda _: ready.set(), first_monitor=False)

    main = loop.create_task(serve(), context=context)
    thread = threading.Thread(target=loop.run_until_complete, args=(main,), daemon=True)
    thread.start()
    try:
        assert ready.wait(60), "the deployments were not served within 60 s"
        yield rt
    finally:
        loop.call_soon_threadsafe(main.cancel)
        thread.join(30)
        loop.close()
        _clean_up(started)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        common._RUNTIMES.clear()
        rt.engine.dispose()


def _clean_up(since: datetime) -> None:
    """Leave the session's server as other modules expect it: no automations of ours, and no
    run of this module left waiting."""
    with get_client(sync_client=True) as client:
        for automation in client.read_automations():
            if TAG in automation.tags:
                client.delete_automation(automation.id)
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)),
            limit=200,
        )
        for run in runs:
            if run.state is None or not run.state.is_final():
                with contextlib.suppress(Exception):
                    client.delete_flow_run(run.id)


def _until(what: str, found: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := found()):
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.5)
    return result


def _alerts(receiver: HttpReceiver, words: str) -> list[str]:
    said = [str(hit.data["message"]) for hit in receiver.received("/operators")]
    return [line for line in said if words in line]


def _runs_of(deployment: str, **parameters: Any) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name(f"{deployment}/{deployment}")
        # Filtered on the server: the session's server holds hundreds of runs by now.
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[dep.id])),
            limit=200,
        )
    return [
        r
        for r in runs
        if all(r.parameters.get(k) == v for k, v in parameters.items())
        and r.state is not None
        and r.state.is_completed()
    ]


def test_an_equal_automation_is_kept_whatever_order_the_server_lists_a_set_in() -> None:
    """The server returns a trigger's `expect` set as a JSON list in the order it was sent,
    which follows the string hashes of the process that sent it."""
    ids = {name: uuid4() for name in (OPERATOR_ALERT, MONITOR, DISPATCH, LIFECYCLE)}
    failed = wanted(ids, watched())[0]
    assert len(failed.trigger.expect) == 3
    sent = failed.model_dump(mode="json")
    for order in itertools.permutations(sorted(failed.trigger.expect)):
        sent["trigger"]["expect"] = list(order)
        listed = Automation.model_validate({**sent, "id": uuid4()})
        assert [c.action for c in plan([listed], [failed])] == ["keep"], order


def test_applying_twice_changes_nothing(served: Runtime) -> None:
    assert {c.action for c in apply()} == {"keep"}  # `up` applied them already
    shorter = apply(timedelta(minutes=5), dry_run=True)
    assert [c.action for c in shorter].count("update") == 1
    assert {c.action for c in apply()} == {"keep"}  # the dry run changed nothing
    with get_client(sync_client=True) as client:
        ours = [a for a in client.read_automations() if TAG in a.tags]
    assert len(ours) == 4
    assert [c.action for c in plan(ours, [])] == ["delete"] * 4
    copy = ours[0].model_copy(update={"id": uuid4()})  # two of one name: one stays
    changes = plan([*ours, copy], [ours[0]])
    assert [c.action for c in changes] == ["keep", "delete", "delete", "delete", "delete"]
    assert changes[0].id == ours[0].id and copy.id in {c.id for c in changes}


def test_the_command_says_what_applying_would_do(served: Runtime, prefect_api: str) -> None:
    def cli(api: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PREFECT_API_URL": api}
        command = [str(BIN / "bridgebsr"), "automations", "apply", "--dry-run"]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    done = cli(prefect_api)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == [
        f"keep          {name}" for name in sorted(a.name for a in wanted_now())
    ]
    down = cli("http://127.0.0.1:9/api")
    assert (down.returncode, down.stderr.strip()) == (
        1,
        "error: no Prefect server answers: set PREFECT_API_URL",
    )


def wanted_now() -> list[Any]:
    with get_client(sync_client=True) as client:
        return [a for a in client.read_automations() if TAG in a.tags]


@pytest.fixture(scope="module")
def started(served: Runtime) -> dict[str, Any]:
    """What the reactive automations react to, started at once so the runs overlap: a run of
    ours that fails, an escalation event, a completed monitor run."""
    failing = run_deployment(
        "pilot-lifecycle/pilot-lifecycle", parameters={"case_key": "IP-1999-0001"}, timeout=0
    )
    assert isinstance(failing, FlowRun)  # called from sync code: the run, not a coroutine
    with read_session(served.engine) as session:
        gated = {g.case_key for g in waiting_gates(session=session)}
        cases = session.exec(select(Case).order_by(col(Case.key))).all()
        case = next(c for c in cases if c.key not in gated)  # no gate run to start
        key, pilot, country = case.key, case.kind, case.country
    (event,), _ = case_events(
        [Signal("bridgebsr.case.escalated", key, pilot, country, "kickoff", {"step": "x"})]
    )
    emit_event(event=event.event, resource=event.resource, related=event.related)
    EventsWorker.drain_all()
    now = f"{DEMO_DAY}T11:00:00+00:00"
    run_deployment(
        "monitor-milestones/monitor-milestones",
        parameters={"now": now, "dry_run": True},
        timeout=0,
    )
    return {"failing": failing.id, "case": key, "now": now}


def test_a_failed_run_alerts_the_operators(
    started: dict[str, Any], operators: HttpReceiver
) -> None:
    (line,) = _until("alert", lambda: _alerts(operators, "IP-1999-0001"))
    assert line.startswith("bridgebsr: pilot-lifecycle run 'IP-1999-0001' is Failed: http")
    assert line.endswith(f"/runs/flow-run/{started['failing']}")


def test_an_escalation_runs_pilot_lifecycle_for_its_case(started: dict[str, Any]) -> None:
    key = started["case"]
    (run,) = _until("pilot-lifecycle run", lambda: _runs_of("pilot-lifecycle", case_key=key))
    assert run.name == key


def test_a_completed_monitor_run_is_followed_by_dispatch_as_of_its_now(
    started: dict[str, Any],
) -> None:
    (dispatch,) = _until("dispatch run", lambda: _runs_of("dispatch-notifications"))
    assert dispatch.parameters["now"] == started["now"]
    assert dispatch.name == f"dispatch {DEMO_DAY} 11:00"


def test_a_silent_monitor_alerts_the_operators(served: Runtime, operators: HttpReceiver) -> None:
    with get_client(sync_client=True) as client:
        monitor = client.read_deployment_by_name("monitor-milestones/monitor-milestones")
        client.pause_deployment(monitor.id)  # its schedule stopped
    try:
        apply(timedelta(seconds=10))  # the proactive trigger fires again every window: undone
        (line, *_) = _until("alert", lambda: _alerts(operators, "has not completed"))
    finally:
        apply()
        with get_client(sync_client=True) as client:
            client.resume_deployment(monitor.id)
    assert line.startswith("bridgebsr: monitor-milestones has not completed a run for 10 seconds")
    assert line.endswith(f"/deployments/deployment/{monitor.id}")
