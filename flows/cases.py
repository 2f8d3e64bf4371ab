"""open-case and pilot-lifecycle: a case opened from the UI; its dates and gate runs kept true."""

from datetime import date
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext

from bridgebsr.office import cases
from bridgebsr.office.progress import reforecast_case
from bridgebsr.store import case_rows as store
from bridgebsr.store.db import read_session, write_session
from flows.case_page import publish_case_page
from flows.common import flow_actor, log, resolve_now, run_id, runtime
from flows.gates import reconcile_gates
from models import Source


# Not retried: each try opens a new case.
@task(name="open-case", cache_policy=NO_CACHE)
def open_case_task(
    kind: str, title: str, owner_email: str, partner_code: str | None, start: date | None
) -> str:
    """Open the case through the same use case as the CLI; returns its key."""
    rt = runtime()
    with write_session(rt.engine) as session:
        case = cases.open_case(
            session=session,
            catalog=rt.catalog,
            kind=kind,
            title=title,
            owner_email=owner_email,
            partner_code=partner_code,
            start=start,
            now=resolve_now(None, rt),
            source=Source.FLOW,
            source_ref=run_id(),
        )
        return case.key


# Retried: forecasts are computed from the store, so a second try finds nothing more to move.
@task(name="reforecast", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def reforecast(case_key: str) -> None:
    """Move the case's forecasts to what today knows; opens gates whose predecessors finished."""
    rt = runtime()
    with write_session(rt.engine) as session:
        reforecast_case(
            session=session,
            case_key=case_key,
            actor=flow_actor("pilot-lifecycle"),
            now=resolve_now(None, rt),
        )


# Retried: it reads the store and publishes the artifact under its fixed key.
@task(name="publish-case", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def publish_case(case_key: str) -> None:
    """Publish the case's page (`case-<key>`): its plan, gates and latest history."""
    publish_case_page(case_key)


@flow(name="pilot-lifecycle", flow_run_name="{case_key}", timeout_seconds=600)
def pilot_lifecycle(case_key: str) -> dict[str, Any]:
    """Bring one case up to date: forecasts, its plan in the UI, a waiting run per open gate."""
    _label_run(case_key)
    reforecast(case_key)
    publish_case(case_key)
    gates = reconcile_gates(case_key)
    return {"case": case_key, "gate_runs": gates}


@flow(name="open-case", flow_run_name="open {kind}", timeout_seconds=600)
def open_case(
    kind: str,
    title: str,
    owner_email: str,
    partner_code: str | None = None,
    start: date | None = None,
) -> str:
    """Open a case of a pilot kind, as `bridgebsr case open` does, and follow it."""
    key = open_case_task(kind, title, owner_email, partner_code, start)
    _label_run(key, name=f"open {key}")
    log().info("opened %s: %s", key, title)
    pilot_lifecycle(key)
    return key


def _label_run(case_key: str, name: str | None = None) -> None:
    """Tag this run with the case's pilot kind and country (and rename it) for the UI."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    with read_session(runtime().engine) as session:
        case = store.case_by_key(session, case_key)
        tags = sorted({*ctx.flow_run.tags, case.kind, case.country.lower()})
    with get_client(sync_client=True) as client:
        if name is None:
            client.update_flow_run(ctx.flow_run.id, tags=tags)
        else:
            client.update_flow_run(ctx.flow_run.id, name=name, tags=tags)
