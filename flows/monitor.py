"""monitor-milestones: the scheduled pass over the portfolio, published for pilot leads."""

from datetime import datetime
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from bridgebsr.monitor import MonitorReport, Signal, run_monitor
from flows.common import log, named, resolve_now, run_id, runtime
from flows.gates import sync_gate_runs
from models import Source

LATE_TABLE_LIMIT = 500


@task(name="monitor-pass", cache_policy=NO_CACHE)
def monitor_pass(now: datetime, dry_run: bool) -> MonitorReport:
    """Mark what is late or expired, apply gate timeouts, write due ladder steps to the outbox."""
    rt = runtime()
    return run_monitor(
        rt.engine,
        now=now,
        zone=rt.settings.timezone,
        dry_run=dry_run,
        source=Source.FLOW,
        source_ref=run_id(),
    )


@task(name="publish-artifacts", cache_policy=NO_CACHE)
def publish(report: MonitorReport) -> None:
    """Publish the late-items table and one markdown summary per pilot."""
    rows = [_late_row(item) for item in report.late[:LATE_TABLE_LIMIT]]
    more = len(report.late) - len(rows)
    note = f" (the {LATE_TABLE_LIMIT} most late of {len(report.late)})" if more > 0 else ""
    create_table_artifact(
        key="late-items",
        table=rows or [dict.fromkeys(("case", "milestone", "owner", "days late"), "-")],
        description=f"Late milestones and expired gates as of {report.today}{note}.",
    )
    summary = report.summary()
    for pilot in report.pilots():
        create_markdown_artifact(
            key=f"pilot-{pilot}",
            markdown=pilot_markdown(report, pilot, summary["pilots"][pilot]),
            description=f"{pilot}: where it stands as of {report.today}",
        )


@task(name="emit-events", cache_policy=NO_CACHE)
def announce(signals: list[Signal]) -> int:
    """Emit one Prefect event per new fact, with the case as resource, for automations."""
    for signal in signals:
        emit_event(
            event=signal.event,
            resource={
                "prefect.resource.id": f"bridgebsr.case.{signal.case_key}",
                "prefect.resource.name": signal.case_key,
                "bridgebsr.pilot": signal.pilot,
                "bridgebsr.country": signal.country,
            },
            related=[
                {
                    "prefect.resource.id": f"bridgebsr.item.{signal.case_key}.{signal.subject}",
                    "prefect.resource.role": "item",
                    "prefect.resource.name": signal.subject,
                }
            ],
            payload=signal.payload,
        )
    return len(signals)


@flow(
    name="monitor-milestones",
    flow_run_name=named("monitor"),
    log_prints=False,
)
def monitor_milestones(
    now: datetime | None = None, dry_run: bool = False, sync_gates: bool = True
) -> dict[str, Any]:
    """Find what is due, late or expired as of `now`; notify once; publish what is late."""
    logger = log()
    rt = runtime()
    at = resolve_now(now, rt)
    report = monitor_pass(at, dry_run)
    publish(report)
    announce(report.signals)
    if sync_gates and not dry_run:
        sync_gate_runs()
    logger.info(
        "%s notification(s) written, %s milestone(s) newly late, %s gate(s) newly expired, "
        "%s item(s) late",
        report.notifications,
        report.newly_overdue,
        report.newly_expired,
        len(report.late),
    )
    for failure in report.failures:
        logger.warning("not applied: %s", failure)
    return report.summary()


def _late_row(item: Any) -> dict[str, Any]:
    return {
        "case": item.case_key,
        "pilot": item.pilot,
        "milestone": item.item if item.item_kind == "milestone" else f"gate {item.item}",
        "owner": item.owner,
        "partner": item.partner,
        "due": item.due.isoformat(),
        "days late": item.days_late,
        "next escalation": item.next_step,
    }


def pilot_markdown(report: MonitorReport, pilot: str, counts: dict[str, int]) -> str:
    """The per-pilot summary pilot leads read in the UI."""
    late = [item for item in report.late if item.pilot == pilot]
    lines = [
        f"# {pilot} as of {report.today}",
        "",
        f"- active cases: **{counts['active_cases']}**",
        f"- late milestones and expired gates: **{counts['late_items']}**",
        f"- gates waiting for a decision: **{counts['open_gates']}**",
        f"- notifications written this pass: **{counts['notifications']}**",
    ]
    if late:
        lines += ["", "| case | item | owner | days late | next step |", "|---|---|---|---|---|"]
        lines += [
            f"| {i.case_key} | {i.item} | {i.owner} | {i.days_late} | {i.next_step} |"
            for i in late[:20]
        ]
        if len(late) > 20:
            lines.append(f"\n…and {len(late) - 20} more in the `late-items` table.")
    return "\n".join(lines)
