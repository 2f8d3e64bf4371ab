"""A canary password in the email URL and in the Apprise config stays out of everything the
flows and the commands leave behind, while every channel fails and says why.

One pass of every scheduled flow (monitor, dispatch, daily digest, portfolio report) and one
pilot-lifecycle run go against the session's Prefect server; the dispatch and export commands
run in this process. Then the sweep: the runs' Prefect logs, artifacts and results, all the
Prefect server keeps on disk (its database, results and log), every table of the case store,
every file under the bridgebsr home (the local log, the portfolio report's HTML and XLSX) and
the exports (`bridgebsr report` as CSV, XLSX and HTML, `bridgebsr ical`), and the commands'
output. The signed links each message carried (its reader's token) are swept for the same way.
"""

import json
import os
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogHandler
from sqlalchemy import text
from sqlmodel import SQLModel
from typer.testing import CliRunner

from bridgebsr.bootstrap import Runtime
from bridgebsr.cli import app
from bridgebsr.web import tokens
from bridgebsr.web.links import NoticeLinks
from flows.cases import pilot_lifecycle
from flows.monitor import monitor_milestones
from flows.reports import daily_digest, dispatch_notifications, portfolio_report
from tests.test_flows.test_monitor_flow import AS_OF
from tests.test_notifications.conftest import free_port

CANARY = "canary-Pr3fect-S3cr3t"
TOKEN_MARK = "eyJjIjo"  # base64 of '{"c":', the start of every signed link's claims
CASE = "IP-2025-0001"


def _contents(path: Path) -> Iterator[tuple[str, bytes]]:
    """A file's bytes; for a zip (an XLSX workbook), each member's, uncompressed."""
    data = path.read_bytes()
    yield str(path), data
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                yield f"{path}!{member}", archive.read(member)


def _files(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob("*") if p.is_file()]


def _run(args: list[str]) -> str:
    """One `bridgebsr` command in this process; what it printed (stdout and stderr)."""
    done = CliRunner().invoke(app, args)
    if done.exc_info is not None and done.exit_code != 0:
        raise AssertionError(f"bridgebsr {' '.join(args)} failed") from done.exc_info[1]
    assert done.exit_code == 0, (args, done.output)
    return done.output


def test_no_run_file_export_or_output_ever_shows_the_canary(
    prefect_api: str, store: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = free_port()  # nothing listens: every channel fails and says why
    config = tmp_path / "apprise.yml"
    config.write_text(
        f"urls:\n  - json://bridge:{CANARY}@127.0.0.1:{dead}/hook:\n      tag: SCANBALT\n",
        encoding="utf-8",
    )
    monkeypatch.setenv(
        "BRIDGEBSR_EMAIL_URL",
        f"mailto://office:{CANARY}@127.0.0.1:{dead}?from=office@bridgebsr.example",
    )
    monkeypatch.setenv("BRIDGEBSR_APPRISE_CONFIG", str(config))

    states = {
        "monitor": monitor_milestones(now=AS_OF, sync_gates=False, return_state=True),
        "dispatch": dispatch_notifications(now=AS_OF, return_state=True),
        "digest": daily_digest(now=AS_OF, return_state=True),
        "portfolio": portfolio_report(now=AS_OF, return_state=True),
        "lifecycle": pilot_lifecycle(case_key=CASE, return_state=True),
    }
    results: dict[str, Any] = {name: state.result() for name, state in states.items()}
    assert results["dispatch"]["retrying"] > 0 and results["dispatch"]["sent"] == 0  # real
    runs = [UUID(str(s.state_details.flow_run_id)) for s in states.values()]

    exports = tmp_path / "exports"
    exports.mkdir()
    later = (AS_OF + timedelta(hours=1)).isoformat()  # the first retries are due
    latest = (AS_OF + timedelta(hours=2)).isoformat()  # and the second
    outputs = [
        _run(["notifications", "dispatch", "--as-of", later]),
        _run(["notifications", "dispatch", "--as-of", latest, "--json"]),
        _run(["notifications", "receipts"]),
        _run(["notifications", "list"]),
        _run(["report", "--format", "csv", "--out", str(exports / "csv"), "--as-of", later]),
        _run(["report", "--format", "xlsx", "--out", str(exports / "kpis.xlsx")]),
        _run(["report", "--format", "html", "--out", str(exports / "kpis.html")]),
        _run(["ical", "--partner", "MVA", "--out", str(exports / "mva.ics"), "--as-of", later]),
    ]
    assert "notice to recipient" in outputs[0] and '"errors": [\n    "' in outputs[1]  # reasons
    APILogHandler().flush()

    # The runs' logs and artifacts, as the Prefect API gives them.
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=runs)))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=runs))
        )
    messages = [entry.message for entry in logs]
    assert any("retry" in m or "failure" in m or "email" in m for m in messages), messages
    assert {"late-items", "portfolio", "kpi-forecast", "daily-digest", "portfolio-report"} <= {
        a.key for a in artifacts
    }
    assert f"case-{CASE.lower()}" in {a.key for a in artifacts}
    assert [m for m in messages if CANARY in m] == []
    assert [a.key for a in artifacts if CANARY in json.dumps(a.data, default=str)] == []
    assert CANARY not in json.dumps(results, default=str)
    assert all(CANARY not in str(s.message) for s in states.values())
    assert [out for out in outputs if CANARY in out] == []

    # The case store, every table.
    tables: dict[str, str] = {}
    with store.engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            dump = repr(conn.execute(text(f'SELECT * FROM "{table.name}"')).all())
            assert CANARY not in dump, table.name
            tables[table.name] = dump

    # The portfolio report's files, kept in the case store (the XLSX is zipped: read it
    # whole, as `reports fetch` gives it).
    stored = json.loads(_run(["reports", "list", "--json"]))
    assert {"portfolio-2026-W48.html", "portfolio-2026-W48.xlsx"} <= {f["filename"] for f in stored}
    for found in stored:
        _run(["reports", "fetch", str(found["id"]), "--out", str(exports / found["filename"])])

    # Every file: the home (local log), the exports, and all the Prefect server keeps (its
    # database with logs, states and artifacts; results).
    home = store.settings.home
    files = _files(home, exports, Path(os.environ["PREFECT_HOME"]))
    assert exports / "portfolio-2026-W48.xlsx" in files
    assert {exports / "kpis.xlsx", exports / "kpis.html", exports / "mva.ics"} <= set(files)
    assert any(p.parent == exports / "csv" and p.suffix == ".csv" for p in files)
    contents = [(name, data) for path in files for name, data in _contents(path)]
    assert [name for name, data in contents if CANARY.encode() in data] == []
    # The sweep sees what the runs logged: the server's files hold the monitor's log line.
    server = os.environ["PREFECT_HOME"]
    assert any(n.startswith(server) and b"notification(s) written" in d for n, d in contents)

    # The signed links the messages carried are in none of it either: not a log, artifact,
    # result, output, table or file. Every link's token starts with its signed claims
    # (`{"c": contact, ...}` in URL-safe base64), as the passes' own tokens show.
    passes = (AS_OF, AS_OF + timedelta(hours=1), AS_OF + timedelta(hours=2))
    with store.engine.connect() as conn:
        readers = conn.execute(
            text(
                "SELECT id, link_generation FROM contacts WHERE id IN "
                "(SELECT recipient_id FROM notifications)"
            )
        ).all()
    assert readers
    for now in passes:
        links = NoticeLinks(store.settings, now)
        for reader, generation in readers:
            token = links.page(reader, generation).rsplit("/", 1)[1]
            claims = tokens.read(token, secret=links.secret, purpose="page", now=now)
            assert claims.contact_id == reader and token.startswith(TOKEN_MARK)
    shown = [*messages, *outputs, json.dumps(results, default=str), *tables.values()]
    shown += [json.dumps(a.data, default=str) for a in artifacts]
    assert [text_[:80] for text_ in shown if TOKEN_MARK in text_] == []
    assert [name for name, data in contents if TOKEN_MARK.encode() in data] == []
