"""portfolio-report, daily-digest and dispatch-notifications: the portfolio and the outbox.

Notices link to the Prefect UI: a gate notice to the gate's waiting stage-gate run, any other
to the monitor run that found it.
"""

from collections import defaultdict
from datetime import datetime
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.settings import get_current_settings

from bridgebsr import queries
from bridgebsr.db import read_session
from bridgebsr.delivery import deliver
from flows.common import log, named, resolve_now, runtime
from flows.gates import gate_runs
from notifications.outbox import DispatchReport, RunLinks


@task(name="portfolio-table", cache_policy=NO_CACHE)
def portfolio_table(now: datetime) -> list[dict[str, Any]]:
    """Publish cases by pilot and status, late cases, gates waiting and mean slip."""
    rt = runtime()
    today = now.astimezone(rt.settings.zone()).date()
    with read_session(rt.engine) as session:
        rows = queries.portfolio(session=session, today=today)
    create_table_artifact(
        key="portfolio",
        table=rows or [{"pilot": "-"}],
        description=f"The portfolio by pilot as of {today}",
    )
    return rows


@flow(name="portfolio-report", flow_run_name=named("portfolio"))
def portfolio_report(now: datetime | None = None) -> list[dict[str, Any]]:
    """Publish the weekly portfolio table for pilot leads and the project office."""
    return portfolio_table(resolve_now(now, runtime()))


def ui_links() -> RunLinks | None:
    """Where each notice can be followed in the Prefect UI (None without a UI address)."""
    ui = get_current_settings().ui_url
    if not ui:
        return None
    return RunLinks(ui=ui, gates={gate: str(run) for gate, run in gate_runs().items()})


def _deliver(now: datetime) -> DispatchReport:
    rt = runtime()
    report = deliver(rt, now=now, links=ui_links())
    for line in report.errors[:50]:
        log().warning("%s", line)
    return report


@task(name="send-digests", cache_policy=NO_CACHE)
def send_digests(now: datetime) -> dict[str, int]:
    """Deliver what is due, digests included, and publish who got which digest or summary."""
    report = _deliver(now)
    lines = [f"# Digests and summaries sent at {now:%Y-%m-%d %H:%M} UTC", ""]
    lines += [
        f"- {b['recipient']}: {b['kind']} of {b['notices']} notice(s), "
        f"{'delivered' if b['ok'] else 'not delivered yet'}"
        for b in report.bundles
    ] or ["- none due now (digests go at 08:00 in each reader's time zone, Monday to Friday)"]
    rt = runtime()
    with read_session(rt.engine) as session:
        waiting = queries.pending_notices(session=session)
    by_recipient: dict[str, int] = defaultdict(int)
    for row in waiting:
        by_recipient[row["recipient"]] += 1
    lines += ["", f"## Still waiting: {len(waiting)} notice(s)", ""]
    lines += [f"- {who}: {n}" for who, n in sorted(by_recipient.items())]
    create_markdown_artifact(
        key="daily-digest", markdown="\n".join(lines), description="Digests sent; what waits"
    )
    return report.summary()


@flow(name="daily-digest", flow_run_name=named("digest"))
def daily_digest(now: datetime | None = None) -> dict[str, int]:
    """Send the morning's digests (each reader's at 08:00 their time) and report on them."""
    return send_digests(resolve_now(now, runtime()))


@task(name="dispatch", cache_policy=NO_CACHE)
def dispatch_task(now: datetime) -> dict[str, int]:
    """Deliver the pending notices due by `now`; failures retry with backoff."""
    return _deliver(now).summary()


@flow(name="dispatch-notifications", flow_run_name=named("dispatch"))
def dispatch_notifications(now: datetime | None = None) -> dict[str, int]:
    """Deliver what waits in the outbox, by email, chat or the local log."""
    return dispatch_task(resolve_now(now, runtime()))
