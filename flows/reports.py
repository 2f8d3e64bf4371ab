"""portfolio-report (weekly) and daily-digest: what the portfolio and the outbox hold, in the UI.

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
from flows.common import named, resolve_now, runtime


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
