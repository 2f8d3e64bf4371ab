"""portfolio-report, daily-digest and dispatch-notifications: the portfolio and the outbox.

The reports work adds KPIs and exports to the first; the notifications work delivers the
second. Both already publish what the case store knows.
"""

from collections import defaultdict
from datetime import datetime
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from bridgebsr import queries
from bridgebsr.db import read_session
from flows.common import log, named, resolve_now, runtime
from notifications.outbox import dispatch


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


@task(name="digest-preview", cache_policy=NO_CACHE)
def digest_preview() -> int:
    """Publish, per recipient, the notices waiting in the outbox."""
    rt = runtime()
    with read_session(rt.engine) as session:
        pending = queries.pending_notices(session=session)
    by_recipient: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in pending:
        by_recipient[row["recipient"]].append(row)
    lines = [f"# Waiting in the outbox: {len(pending)} notice(s)", ""]
    for recipient in sorted(by_recipient):
        rows = by_recipient[recipient]
        lines.append(f"## {recipient} ({len(rows)})")
        lines += [
            f"- {'**urgent** ' if r['urgent'] else ''}{r['case']} {r['item']}: {r['rule']} "
            f"(due {r['due']}, {r['status']})"
            for r in rows[:50]
        ]
        lines.append("")
    create_markdown_artifact(
        key="daily-digest", markdown="\n".join(lines), description="Notices per recipient"
    )
    return len(pending)


@flow(name="daily-digest", flow_run_name=named("digest"))
def daily_digest(now: datetime | None = None) -> int:
    """Gather the outbox's waiting notices per recipient (delivery comes with notifications)."""
    resolve_now(now, runtime())
    return digest_preview()


@task(name="dispatch", cache_policy=NO_CACHE)
def dispatch_task(now: datetime) -> dict[str, int]:
    """Deliver the pending notices due by `now`; failures retry with backoff."""
    rt = runtime()
    report = dispatch(rt.engine, now=now, post=rt.post_office())
    for line in report.errors[:50]:
        log().warning("%s", line)
    return report.summary()


@flow(name="dispatch-notifications", flow_run_name=named("dispatch"))
def dispatch_notifications(now: datetime | None = None) -> dict[str, int]:
    """Deliver what waits in the outbox, by email, chat or the local log."""
    return dispatch_task(resolve_now(now, runtime()))
