"""The deployments, as prefect.yaml declares them, and `bridgebsr up`: the embedded default.

`bridgebsr up` starts (or reuses) a local Prefect server, serves every deployment on its
schedule from this process, applies the automations (`flows/automations.py`), triggers a
first monitor run and stops cleanly on Ctrl-C, leaving the schedules active for the next start.
"""

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from prefect import Flow
from prefect.deployments import arun_deployment
from prefect.deployments.runner import RunnerDeployment
from prefect.runner import Runner
from prefect.schedules import Cron

from flows.alerts import operator_alert
from flows.cases import open_case, pilot_lifecycle
from flows.desk import DESK
from flows.gates import stage_gate
from flows.monitor import monitor_milestones
from flows.reports import daily_digest, dispatch_notifications, portfolio_report

TIMEZONE = "Europe/Copenhagen"
WORK_POOL = "bridgebsr"
# name -> (flow, cron in TIMEZONE or None, tags); prefect.yaml says the same (a test checks).
DEPLOYMENTS: dict[str, tuple[Flow[..., Any], str | None, list[str]]] = {
    "monitor-milestones": (monitor_milestones, "0 * * * *", ["monitor"]),
    "dispatch-notifications": (dispatch_notifications, "*/15 * * * *", ["notifications"]),
    "daily-digest": (daily_digest, "15 8 * * 1-5", ["notifications"]),
    "portfolio-report": (portfolio_report, "0 7-11 * * 1", ["report"]),
    "stage-gate": (stage_gate, None, ["gate"]),
    "open-case": (open_case, None, ["case"]),
    "pilot-lifecycle": (pilot_lifecycle, None, ["case"]),
    "operator-alert": (operator_alert, None, ["operators"]),
    **{name: (desk_flow, None, ["case", "desk"]) for name, desk_flow in DESK.items()},
}
# One monitor at a time: a run started while another runs waits for it (prefect.yaml too).
CONCURRENCY = {"monitor-milestones": 1}


async def deployments() -> list[RunnerDeployment]:
    """Every deployment, for serving from one process (`bridgebsr up`)."""
    out = []
    for name, (flow, cron, tags) in DEPLOYMENTS.items():
        schedules = [Cron(cron, timezone=TIMEZONE)] if cron else None
        out.append(
            await flow.ato_deployment(
                name=name,
                schedules=schedules,
                tags=["bridgebsr", *tags],
                description=flow.description,
                concurrency_limit=CONCURRENCY.get(name),
            )
        )
    return out


async def serve_all(on_ready: Callable[[str], None], first_monitor: bool = True) -> None:
    """Serve every deployment from this process until interrupted; schedules stay active."""
    runner = Runner(name="bridgebsr-up", pause_on_shutdown=False, limit=8)
    for deployment in await deployments():
        await runner.aadd_deployment(deployment)
    from flows.automations import apply  # it reads DEPLOYMENTS from here

    await asyncio.to_thread(apply)  # once the deployments they start exist

    async def kickoff() -> None:
        run = None
        if first_monitor:
            run = await arun_deployment(
                "monitor-milestones/monitor-milestones", timeout=0, tags=["first-run"]
            )
        on_ready(str(run.id) if run else "")

    task = asyncio.get_running_loop().create_task(kickoff())
    try:
        await runner.start()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
