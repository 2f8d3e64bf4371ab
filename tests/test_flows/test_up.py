"""`bridgebsr up --demo`: the embedded default a new user starts with `make run`."""

import os
import signal
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

from bridgebsr.cli.orchestration import interruptible
from tests.test_flows.conftest import BIN, free_port


def _wait_for(path: Path, text: str, process: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = path.read_text(errors="replace")
        if text in out:
            return out
        assert process.poll() is None, f"bridgebsr up ended early:\n{out[-3000:]}"
        time.sleep(0.5)
    raise AssertionError(f"no '{text}' within {timeout:.0f} s:\n{path.read_text()[-3000:]}")


def test_up_serves_the_demo_and_stops_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "BRIDGEBSR_"))
    }
    env |= {"BRIDGEBSR_HOME": str(home), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "bridgebsr"), "up", "--demo", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=interruptible,
        )
    try:
        shown = _wait_for(log, "bridgebsr is up", process, timeout=150)
        assert f"Prefect UI http://127.0.0.1:{port}" in shown
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as reply:
            assert reply.status == 200
        # The first monitor pass runs, then the gate waiting for the council is a paused run.
        _wait_for(log, "Finished in state Suspended", process, timeout=120)
        assert (home / "up.json").exists()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    output = log.read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert "Traceback" not in output
    assert "bridgebsr stopped" in output
    assert not (home / "up.json").exists()
    with sqlite3.connect(home / "prefect" / "prefect.db") as db:
        rows = db.execute("SELECT name, paused FROM deployment").fetchall()
        completed = db.execute(
            "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED' AND name LIKE 'monitor %'"
        ).fetchone()
    assert {name for name, _ in rows} >= {"monitor-milestones", "stage-gate", "daily-digest"}
    assert not any(paused for _, paused in rows)  # schedules stay active for the next start
    assert completed == (1,)
    # The server went down with it: nothing answers on the port any more.
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
    except OSError:
        pass
    else:
        raise AssertionError("the Prefect server is still running")
