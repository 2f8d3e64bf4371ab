"""`bridgebsr up --demo`: the embedded default a new user starts with `make run`.

The stack is the one the browser walkthrough uses (no browser needed here); what Ctrl-C must
leave behind (exit 0, no marker, schedules kept, the server gone) is checked when the
folder's last test is done and the stack stops (`assert_stopped` in conftest.py).
"""

import urllib.request

import pytest

from bridgebsr.cli.orchestration import UP_FILE
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.slow


def test_up_serves_the_demo(stack: Stack) -> None:
    assert f"Prefect UI {stack.ui_url}" in stack.output()  # said with `bridgebsr is up`
    with urllib.request.urlopen(f"{stack.api_url}/health", timeout=5) as reply:
        assert reply.status == 200
    # The first monitor pass runs, then the gate waiting for the council is a paused run.
    stack.wait_for_output(r"Finished in state Suspended", timeout=120)
    assert (stack.home / UP_FILE).exists()
