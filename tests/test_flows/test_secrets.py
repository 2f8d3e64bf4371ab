"""A canary password in the email URL and in the Apprise config stays out of everything a
dispatch run leaves behind: its Prefect logs, task results and artifacts, the case store, the
local log and the flow's own output."""

import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogHandler
from sqlalchemy import text

from bridgebsr.bootstrap import Runtime
from bridgebsr.monitor import run_monitor
from flows.reports import daily_digest, dispatch_notifications
from tests.test_flows.test_monitor_flow import AS_OF
from tests.test_notifications.conftest import free_port

CANARY = "canary-Pr3fect-S3cr3t"


def test_a_failing_dispatch_run_never_shows_the_canary(
    prefect_api: str, store: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = free_port()  # nothing listens: every channel fails and says why
    config = tmp_path / "apprise.yml"
    config.write_text(
        f"urls:\n  - json://bridge:{CANARY}@127.0.0.1:{dead}/hook:\n      tag: SCANBALT\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("BRIDGEBSR_EMAIL_URL", f"mailto://office:{CANARY}@127.0.0.1:{dead}")
    monkeypatch.setenv("BRIDGEBSR_APPRISE_CONFIG", str(config))
    run_monitor(store.engine, now=AS_OF, zone=store.settings.timezone)

    state = dispatch_notifications(now=AS_OF, return_state=True)
    result = state.result()
    assert result["retrying"] > 0 and result["sent"] == 0  # the failures were real
    digest = daily_digest(now=AS_OF, return_state=True)
    APILogHandler().flush()

    assert state.state_details.flow_run_id is not None
    assert digest.state_details.flow_run_id is not None
    runs = [state.state_details.flow_run_id, digest.state_details.flow_run_id]
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=runs)), limit=200
        )
        artifacts = client.read_artifacts(limit=200)
    messages = [entry.message for entry in logs]
    assert any("retry" in m or "failure" in m or "email" in m for m in messages), messages
    assert all(CANARY not in m for m in messages)
    assert all(CANARY not in json.dumps(a.data, default=str) for a in artifacts)
    assert CANARY not in json.dumps(result) + str(state.message)

    with store.engine.connect() as conn:
        for table in ("notifications", "deliveries", "case_events", "contacts"):
            dump = repr(conn.execute(text(f"SELECT * FROM {table}")).all())
            assert CANARY not in dump, table
    for path in store.settings.home.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
