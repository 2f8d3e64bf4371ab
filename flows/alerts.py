"""operator-alert: what the automations start to tell the operators that something broke.

The automations (`flows/automations.py`) pass what the triggering event says (the flow, the
run, the state it entered) or a note (the monitor went silent); this flow turns it into one
line with the Prefect UI link and hands it to the post office for the Apprise tag `operators`.
"""

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.settings import get_current_settings

from bridgebsr.bootstrap import build_runtime
from bridgebsr.office.alerts import alert_operators, note_line, run_line
from bridgebsr.settings import Settings
from flows.common import log

RUN_PREFIX = "prefect.flow-run."


# Retried: a retry may repeat the alert on a service that took the first try, and nothing
# else changes; an alert told twice is better than one told to no one.
@task(name="alert-operators", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=20)
def send_alert(line: str) -> list[str]:
    """Send the line to every service tagged `operators` (else the local log)."""
    rt = build_runtime(Settings.load())  # no case store needed: it may be what broke
    try:
        results = alert_operators(rt, line)
    finally:
        rt.engine.dispose()
    reached = [r.channel for r in results if r.ok]
    failed = [f"{r.channel}: {r.detail}" for r in results if not r.ok]
    if not reached:
        raise RuntimeError(f"the alert reached no one ({'; '.join(failed) or 'no channel'})")
    if failed:
        log().warning("the alert failed on %s", "; ".join(failed))
    if reached == ["local"]:
        log().warning(
            "no Apprise service is tagged `operators`: the alert went to the local log only"
        )
    return reached


def _alert_name() -> str:
    from prefect.runtime import flow_run

    params = flow_run.parameters
    return f"alert {params.get('flow_name') or 'monitor'} {params.get('run_name') or 'silent'}"


@flow(name="operator-alert", flow_run_name=_alert_name, timeout_seconds=300)
def operator_alert(
    event: str = "",
    flow_name: str = "",
    run_name: str = "",
    run_id: str = "",
    note: str = "",
    deployment_id: str = "",
) -> str:
    """Tell the operators (Apprise tag `operators`) that a run of ours failed or crashed, or
    that the monitor has gone silent."""
    ui = get_current_settings().ui_url
    if note:
        link = f"{ui}/deployments/deployment/{deployment_id}" if ui and deployment_id else None
        line = note_line(note, link)
    else:
        state = event.rsplit(".", 1)[-1] or "in trouble"
        run_uuid = run_id.removeprefix(RUN_PREFIX)
        link = f"{ui}/runs/flow-run/{run_uuid}" if ui and run_uuid else None
        line = run_line(flow=flow_name or "a flow", run=run_name, state=state, link=link)
    send_alert(line)
    log().info("%s", line)
    return line
