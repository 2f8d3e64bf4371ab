"""The stack a pilot lead starts (`bridgebsr up --demo`) and Debian's Chromium driven by Playwright.

One `bridgebsr up --demo` serves every test of this folder: the browser walkthrough and the
checks of `up` itself (test_up.py, which needs no browser). When the last of them is done it
is stopped with Ctrl-C, and what a stop must leave behind is checked then (`assert_stopped`).

No browser is downloaded: Playwright launches /usr/bin/chromium (Debian's `chromium` package)
with the flags that work on a machine without network. Without Chromium or Playwright the
browser tests are skipped with the reason, except in CI (CI=true), where they fail.
"""

import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bridgebsr.bootstrap import Runtime, build_runtime
from bridgebsr.cli.orchestration import UP_FILE, healthy, interruptible
from bridgebsr.settings import Settings
from tests.conftest import IN_CI
from tests.test_flows.conftest import BIN, REPO, free_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
# Headless, as root, and quiet on a closed network: no sandbox, no GPU, no calls home.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Every run writes its screenshots to build/screenshots (ignored by git), so testing leaves a
# clean checkout; `make screenshots` points this at docs/screenshots, the ones the README shows.
SHOTS = Path(os.environ.get("BRIDGEBSR_SCREENSHOTS") or REPO / "build" / "screenshots")
VIEWPORT: "ViewportSize" = {"width": 1280, "height": 800}


def browser_problem() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if find_spec("playwright") is None:
        missing.append("the playwright package (pip install -e '.[dev]')")
    return f"end-to-end tests need {' and '.join(missing)}" if missing else None


def require_browser() -> None:
    """At a test module's top: skip it without Chromium or Playwright; fail in CI."""
    problem = browser_problem()
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"{problem}; they are required in CI (CI=true)", pytrace=False)
    pytest.skip(problem, allow_module_level=True)


@dataclass
class Stack:
    """A running `bridgebsr up --demo`: its UI, API, case store and log."""

    home: Path
    ui_url: str
    api_url: str
    log: Path
    rt: Runtime
    process: "subprocess.Popen[bytes]"

    def output(self) -> str:
        """What `bridgebsr up` printed so far."""
        return self.log.read_text(errors="replace")

    def wait_for_output(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until `bridgebsr up` prints a line matching `pattern`."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.output())
            if found:
                return found
            assert self.process.poll() is None, f"`up` ended early:\n{self.output()[-3000:]}"
            assert time.monotonic() < deadline, (
                f"no '{pattern}' within {timeout:.0f} s:\n{self.output()[-3000:]}"
            )
            time.sleep(0.25)


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`bridgebsr up --demo --port <free>` as a pilot lead starts it, with its own home; shared
    by the tests of this folder, then stopped with Ctrl-C and checked (`assert_stopped`)."""
    base = tmp_path_factory.mktemp("e2e")
    home = base / "home"
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "BRIDGEBSR_"))
    }
    env |= {
        "BRIDGEBSR_HOME": str(home),
        # The served runner looks for resumed gate runs every second instead of every ten.
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        # No scheduled runs: an hourly monitor pass during the test would start or close gate
        # runs and republish the pilot status under the test's feet. The first pass that
        # `bridgebsr up` triggers itself still runs.
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    }
    log = base / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "bridgebsr"), "up", "--demo", "--port", str(port)],
            cwd=base,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=interruptible,
        )
    rt = build_runtime(Settings(home=home))
    running = Stack(
        home=home,
        ui_url=f"http://127.0.0.1:{port}",
        api_url=f"http://127.0.0.1:{port}/api",
        log=log,
        rt=rt,
        process=process,
    )
    try:
        running.wait_for_output(r"bridgebsr is up", timeout=150)
        # The first monitor pass escalates late demo cases, and each escalation starts a
        # pilot-lifecycle run (the automations), then dispatch: the tests start once that
        # burst is over, so a run they start is not queued behind it.
        wait_until_settled(running, timeout=300)
        yield running
    finally:
        rt.engine.dispose()
        process.send_signal(signal.SIGINT)  # Ctrl-C, as a pilot lead stops it
        try:
            code = process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    assert_stopped(running, code)


def _monitor_passes(stack: Stack) -> int:
    with closing(sqlite3.connect(stack.home / "prefect" / "prefect.db")) as db:
        found = db.execute(
            "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED' AND name LIKE 'monitor %'"
        ).fetchone()
    return int(found[0])


def _busy_runs(stack: Stack) -> int:
    """Flow runs scheduled, pending or running (a gate waiting for its decision is paused)."""
    with closing(sqlite3.connect(stack.home / "prefect" / "prefect.db")) as db:
        found = db.execute(
            "SELECT count(*) FROM flow_run WHERE state_type IN ('SCHEDULED', 'PENDING', 'RUNNING')"
        ).fetchone()
    return int(found[0])


def wait_until_settled(stack: Stack, timeout: float) -> None:
    """Wait until the monitor pass `bridgebsr up` started has completed and no run it set
    off is still waiting or running (twice in a row, a second apart)."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2:
        assert stack.process.poll() is None, f"`up` ended early:\n{stack.output()[-3000:]}"
        assert time.monotonic() < deadline, (
            f"the first pass and its runs did not finish within {timeout:.0f} s"
        )
        quiet = quiet + 1 if _monitor_passes(stack) >= 1 and _busy_runs(stack) == 0 else 0
        time.sleep(1)


def assert_stopped(stack: Stack, code: int) -> None:
    """What Ctrl-C must leave: exit 0 without a traceback, no `up.json` marker, the served
    deployments still scheduled for the next start, the first monitor pass (and only it, the
    scheduler being off) completed, and the Prefect server gone with `up`."""
    output = stack.output()
    assert code == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "bridgebsr stopped" in output
    assert not (stack.home / UP_FILE).exists()
    with closing(sqlite3.connect(stack.home / "prefect" / "prefect.db")) as db:
        rows = db.execute("SELECT name, paused FROM deployment").fetchall()
    completed = (_monitor_passes(stack),)
    assert {name for name, _ in rows} >= {"monitor-milestones", "stage-gate", "daily-digest"}
    assert not any(paused for _, paused in rows)  # schedules stay active for the next start
    assert completed == (1,)
    assert not healthy(stack.api_url), "the Prefect server is still running"


@pytest.fixture(scope="module")
def browser() -> Iterator["Browser"]:
    """Debian's Chromium, headless, driven by Playwright; no browser download."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: "Browser") -> Iterator["Page"]:
    """A fresh browser page at a README-friendly size; UI waits give up after 30 s."""
    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    context.close()


def screenshot(page: "Page", name: str) -> Path:
    """Save what the page shows as <name>.png in SHOTS."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=path)
    return path
