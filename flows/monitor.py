"""monitor-milestones: the scheduled pass over the portfolio, published for pilot leads."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.events import emit_event
from prefect.exceptions import ObjectNotFound
from prefect.utilities.annotations import opaque

from bridgebsr.monitor.report import LateItem, MonitorReport, Signal
from bridgebsr.monitor.sweep import run_monitor
from bridgebsr.office import queries
from bridgebsr.store.db import read_session
from flows.case_page import publish_case_page
from flows.common import log, named, resolve_now, run_id, runtime
from flows.gates import sync_gate_runs
from models import Source

DISPATCH = "dispatch-notifications/dispatch-notifications"
LATE_TABLE_LIMIT = 500
EVENT_CAP = 1000  # events per pass; a first pass over a backlog would otherwise flood the server
RELATED_CAP = 50  # items named per event
CASE_PAGE_CAP = 10  # case pages republished per pass (a query and an API call each)
_URGENCY = {"bridgebsr.gate.expired": 0, "bridgebsr.case.escalated": 1}


# Retried: the pass is idempotent (outbox rows are unique by dedupe key, marks are set only
# where still empty), so a retry after a lost connection writes nothing twice.
@task(name="monitor-pass", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=30)
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
        channels=rt.channels(),
    )


# Retried: it only reads the store and publishes artifacts under fixed keys (a new version).
@task(name="publish-artifacts", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def publish(report: MonitorReport) -> None:
    """Publish the late-items table, one markdown summary per pilot and the page of each case
    the pass changed (`case-<key>`)."""
    rows = [late_row(item) for item in report.late[:LATE_TABLE_LIMIT]]
    more = len(report.late) - len(rows)
    note = f" (the {LATE_TABLE_LIMIT} most late of {len(report.late)})" if more > 0 else ""
    create_table_artifact(
        key="late-items",
        table=rows or [dict.fromkeys(("case", "milestone", "owner", "days late"), "-")],
        description=f"Late milestones and expired gates as of {report.today}{note}.",
    )
    summary = report.summary()
    with read_session(runtime().engine) as session:
        status = {p: queries.pilot_status(session=session, pilot=p) for p in report.pilots()}
    for pilot in report.pilots():
        create_markdown_artifact(
            key=f"pilot-{pilot}",
            markdown=pilot_markdown(report, pilot, summary["pilots"][pilot], status[pilot]),
            description=f"{pilot}: where it stands as of {report.today}",
        )
    touched = touched_cases(report)
    for case_key in touched[:CASE_PAGE_CAP]:
        publish_case_page(case_key, report.now)
    if len(touched) > CASE_PAGE_CAP:
        log().info("%s case page(s) left for their next change", len(touched) - CASE_PAGE_CAP)


def touched_cases(report: MonitorReport) -> list[str]:
    """The cases whose items the pass marked late, expired, timed out or escalated."""
    return [] if report.dry_run else sorted({s.case_key for s in report.signals})


@dataclass(frozen=True)
class CaseEvent:
    """One Prefect event: one kind of news about one case, its items as related resources."""

    event: str
    resource: dict[str, str]
    related: list[dict[str, str]]
    payload: dict[str, Any]


def case_events(signals: list[Signal], cap: int = EVENT_CAP) -> tuple[list[CaseEvent], int]:
    """Group signals per case and kind, most urgent kinds first, at most `cap` events.

    Returns the events and how many were left out (a first pass over a large backlog);
    what is left out still shows in the `late-items` table and the pass summary event.
    """
    grouped: dict[tuple[str, str], list[Signal]] = {}
    for signal in signals:
        grouped.setdefault((signal.event, signal.case_key), []).append(signal)
    order = sorted(grouped, key=lambda k: (_URGENCY.get(k[0], 9), k[1]))
    events = []
    for event, case_key in order[:cap]:
        items = grouped[(event, case_key)]
        first = items[0]
        events.append(
            CaseEvent(
                event=event,
                resource={
                    "prefect.resource.id": f"bridgebsr.case.{case_key}",
                    "prefect.resource.name": case_key,
                    "bridgebsr.pilot": first.pilot,
                    "bridgebsr.country": first.country,
                },
                related=[
                    {
                        "prefect.resource.id": f"bridgebsr.item.{case_key}.{s.subject}",
                        "prefect.resource.role": "item",
                        "prefect.resource.name": s.subject,
                    }
                    for s in items[:RELATED_CAP]
                ],
                payload={"items": {s.subject: s.payload for s in items[:RELATED_CAP]}},
            )
        )
    return events, max(len(order) - cap, 0)


# Not retried: a retry would emit the events again, and automations act on each one.
@task(name="emit-events", cache_policy=NO_CACHE)
def announce(report: MonitorReport) -> int:
    """Emit one Prefect event per case and kind of news, then one event for the pass."""
    events, left_out = case_events(report.signals)
    for event in events:
        emit_event(
            event=event.event,
            resource=event.resource,
            related=event.related,
            payload=event.payload,
        )
    emit_event(
        event="bridgebsr.monitor.pass",
        resource={"prefect.resource.id": "bridgebsr.monitor", "prefect.resource.name": "monitor"},
        payload={**_counts(report), "events": len(events), "events_left_out": left_out},
    )
    if left_out:
        log().warning("%s case event(s) left out this pass (cap %s)", left_out, EVENT_CAP)
    return len(events)


def _whole(report: MonitorReport) -> MonitorReport:
    """Pass the report to a task without Prefect walking its (possibly 100,000) rows."""
    return cast(MonitorReport, opaque(report))


def _counts(report: MonitorReport) -> dict[str, Any]:
    return {
        "as_of": report.now.isoformat(),
        "notifications": report.notifications,
        "newly_overdue": report.newly_overdue,
        "newly_expired": report.newly_expired,
        "late": len(report.late),
    }


@flow(
    name="monitor-milestones",
    flow_run_name=named("monitor"),
    log_prints=False,
    # A first pass over 100,000 never-monitored cases takes minutes (benchmarks/); an hour's
    # pass that has not ended in half an hour is stuck, and its timeout alerts the operators.
    timeout_seconds=1800,
)
def monitor_milestones(
    now: datetime | None = None,
    dry_run: bool = False,
    sync_gates: bool = True,
    dispatch: bool = False,
) -> dict[str, Any]:
    """Find what is due, late or expired as of `now`; notify once; publish what is late.

    Delivery follows by the automation `dispatch after each monitor pass`; with `dispatch`,
    the pass starts a dispatch run itself (for a setup without the automations, whose
    notices otherwise wait for the 15-minute dispatch schedule)."""
    logger = log()
    rt = runtime()
    at = resolve_now(now, rt)
    report = monitor_pass(at, dry_run)
    publish(_whole(report))
    if not dry_run:
        announce(_whole(report))
    if sync_gates and not dry_run:
        sync_gate_runs()
    if dispatch and report.notifications and not dry_run:
        deliver_soon()
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
    if report.unheld:
        logger.warning(
            "%s role(s) of a case held by no one: their notices told no one (pilot summaries)",
            len(report.unheld),
        )
    return report.summary()


def deliver_soon() -> None:
    """Start a dispatch run now when that deployment exists (else the schedule delivers)."""
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(DISPATCH)
        except ObjectNotFound:
            return
    run_deployment(DISPATCH, timeout=0, as_subflow=False, tags=["after-monitor"])


def late_row(item: LateItem) -> dict[str, Any]:
    """One row of the `late-items` table: `due` is the date lateness counts from."""
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


def pilot_markdown(
    report: MonitorReport,
    pilot: str,
    counts: dict[str, int],
    status: dict[str, list[dict[str, Any]]] | None = None,
) -> str:
    """The per-pilot summary pilot leads read in the UI: counts, gates waiting, cases with
    their stage and next milestone, and what is late."""
    late = [item for item in report.late if item.pilot == pilot]
    lines = [
        f"# {pilot} as of {report.today}",
        "",
        f"- active cases: **{counts['active_cases']}**",
        f"- late milestones and expired gates: **{counts['late_items']}**",
        f"- gates waiting for a decision: **{counts['open_gates']}**",
        f"- notifications written this pass: **{counts['notifications']}**",
        "- the KPI report: the `portfolio-report` flow (weekly) or `bridgebsr report`",
    ]
    status = status or {"cases": [], "gates": []}
    if status["gates"]:
        lines += ["", "## Gates waiting for a decision", "", "| case | gate | deadline | who |"]
        lines += ["|---|---|---|---|"]
        lines += [
            f"| {g['case']} | {g['gate']} | {g['deadline']} | {g['who']} |" for g in status["gates"]
        ]
    if status["cases"]:
        lines += ["", "## Cases", ""]
        lines += ["| case | stage | next milestone | its forecast | forecast end |"]
        lines += ["|---|---|---|---|---|"]
        lines += [
            f"| {c['case']} | {c['stage']} | {c['next']} | {c['next_due']} | {c['forecast']} |"
            for c in status["cases"]
        ]
    lines += _unheld_lines(report, pilot)
    if late:
        lines += ["", "## Late"]
        # Five columns, not six: the page the UI gives an artifact is narrow, and the next
        # step (a sentence) must not be the column cut off.
        lines += ["", "| case | item | owner | late since | next step |"]
        lines += ["|---|---|---|---|---|"]
        lines += [
            f"| {i.case_key} | {i.item} | {i.owner} | {i.due} ({_days(i.days_late)}) "
            f"| {i.next_step} |"
            for i in late[:20]
        ]
        if len(late) > 20:
            lines.append(f"\n…and {len(late) - 20} more in the `late-items` table.")
    return "\n".join(lines)


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def _unheld_lines(report: MonitorReport, pilot: str) -> list[str]:
    """The cases whose notices found no one to tell a role, once per case and role."""
    unheld = report.unheld_roles(pilot)
    if not unheld:
        return []
    lines = ["", "## No one to tell", ""]
    lines += [
        "No one holds these roles for these cases, so their steps told no one: add a holder "
        "at the case's lead partner, or name a lead of this pilot (the `leads` column of "
        "`bridgebsr contacts import`).",
        "",
        "| case | role |",
        "|---|---|",
    ]
    lines += [f"| {u['case']} | {u['role']} |" for u in unheld[:20]]
    if len(unheld) > 20:
        lines.append(f"\n…and {len(unheld) - 20} more in the pass summary.")
    return lines
