"""portfolio-report, daily-digest and dispatch-notifications: the portfolio and the outbox.

Notices link to the Prefect UI: a gate notice to the gate's waiting stage-gate run, any other
to the monitor run that found it.
"""

import json
from collections import defaultdict
from datetime import datetime
from typing import Any
from uuid import UUID

from prefect import flow, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.settings import get_current_settings

from bridgebsr.office import notices, queries, weekly
from bridgebsr.office.delivery import deliver
from bridgebsr.reports import portfolio as report
from bridgebsr.reports import sheets
from bridgebsr.reports.weekly import render
from bridgebsr.store.db import read_session
from flows.common import log, named, resolve_now, runtime
from flows.gates import gate_runs
from notifications.outbox import DispatchReport, RunLinks


# Retried: it reads the store and publishes under a fixed key.
@task(name="portfolio-table", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=30)
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


# Retried: each version is stored once a week and each reader is sent it once (a receipt
# per reader and week), and the artifacts are keyed.
@task(name="portfolio-files", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=30)
def portfolio_files(now: datetime, send: bool) -> list[str]:
    """Store this week's KPI report (HTML and XLSX, the whole portfolio and each partner's
    version) in the case store, email it (with `send`) and publish its main views and the
    links to the stored files as artifacts; each week's version stays in their history."""
    rt = runtime()
    today = now.astimezone(rt.settings.zone()).date()
    progress = create_progress_artifact(
        progress=0.0, key="portfolio-report-progress", description="Building the KPI report"
    )
    assert isinstance(progress, UUID)  # called from a sync task: the id, not a coroutine
    done = weekly.weekly_report(rt, now=now, render=render, send=send)
    update_progress_artifact(progress, progress=75.0)
    built = report.build(rt.engine, as_of=today)
    update_progress_artifact(progress, progress=90.0)
    for name in ("milestones_by_pilot", "forecast", "sla_breaches_by_month"):
        frame = built.views[name]
        table = json.loads(
            sheets.neutralised(sheets.flat(frame))
            .head(500)
            .to_json(orient="records", date_format="iso")
        )
        create_table_artifact(
            key=f"kpi-{name.replace('_', '-')}",
            table=table or [{"-": "nothing yet"}],
            description=f"{name.replace('_', ' ')} as of {today}",
        )
    at_risk = built.views["forecast"]
    at_risk = at_risk[at_risk["at_risk"]]
    create_markdown_artifact(
        key="portfolio-report",
        markdown="\n".join(_summary(done, rt.settings.public_url, at_risk)),
        description=f"KPI report {today}",
    )
    update_progress_artifact(progress, progress=100.0)
    log().info("portfolio report %s: %d file(s) stored", done.name, len(done.files))
    return [f.filename for f in done.files]


def _summary(done: weekly.Weekly, public_url: str | None, at_risk: Any) -> list[str]:
    """The report artifact: where the stored files are, who got them, the cases at risk."""
    lines = [f"# Portfolio report, {done.day:%d %B %Y} ({done.name})", ""]
    for stored, url in done.links(public_url):
        scope = stored.scope or "whole portfolio"
        where = f"[{stored.filename}]({url})" if url else f"`bridgebsr reports fetch {stored.id}`"
        lines.append(f"- {scope}: {where} ({stored.size:,} bytes)")
    if not public_url:
        lines += ["", "Set BRIDGEBSR_PUBLIC_URL to link the files to the web app."]
    ok = sum(s.ok for s in done.sent)
    lines += [
        "",
        f"- emailed to {ok} reader(s), failed {len(done.sent) - ok}, "
        f"had it already {len(done.already)}, in their quiet hours {len(done.held)} "
        "(the next run sends theirs)",
        f"- cases at risk of missing their target: {len(at_risk)}",
        "",
        *[
            f"- **{row.case}** ({row.pilot}, {row.partner}): forecast {row.forecast_date:%Y-%m-%d}"
            f", target {row.target_date:%Y-%m-%d}, chase `{row.driving_item}`"
            for row in at_risk.head(20).itertuples()
        ],
    ]
    return lines


@flow(name="portfolio-report", flow_run_name=named("portfolio"), timeout_seconds=3600)
def portfolio_report(now: datetime | None = None, send: bool = True) -> list[dict[str, Any]]:
    """Publish the weekly portfolio: the table by pilot, the KPI report stored as HTML and
    XLSX and emailed to its readers (with `send`), its main views and the cases at risk."""
    when = resolve_now(now, runtime())
    rows = portfolio_table(when)
    portfolio_files(when, send)
    return rows


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
    for line in (report.channels.errors if report.channels else [])[:50]:
        log().warning("%s", line)
    return report


# Not retried (nor `dispatch`): a retry could send again what went out unrecorded; the
# outbox retries each failed message itself, with backoff.
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
        waiting = notices.pending_notices(session=session)
    by_recipient: dict[str, int] = defaultdict(int)
    for row in waiting:
        by_recipient[row["recipient"]] += 1
    lines += ["", f"## Still waiting: {len(waiting)} notice(s)", ""]
    lines += [f"- {who}: {n}" for who, n in sorted(by_recipient.items())]
    create_markdown_artifact(
        key="daily-digest", markdown="\n".join(lines), description="Digests sent; what waits"
    )
    return report.summary()


@flow(name="daily-digest", flow_run_name=named("digest"), timeout_seconds=1800)
def daily_digest(now: datetime | None = None) -> dict[str, int]:
    """Send the morning's digests (each reader's at 08:00 their time) and report on them."""
    return send_digests(resolve_now(now, runtime()))


@task(name="dispatch", cache_policy=NO_CACHE)
def dispatch_task(now: datetime) -> dict[str, int]:
    """Deliver the pending notices due by `now`; failures retry with backoff."""
    return _deliver(now).summary()


# The outbox leases what a pass claims, so a pass stopped by its timeout leaves its rows to
# the next one.
@flow(name="dispatch-notifications", flow_run_name=named("dispatch"), timeout_seconds=1800)
def dispatch_notifications(now: datetime | None = None) -> dict[str, int]:
    """Deliver what waits in the outbox, by email, chat or the local log."""
    return dispatch_task(resolve_now(now, runtime()))
