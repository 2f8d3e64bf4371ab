"""`bridgebsr monitor`: one pass of the monitor, without Prefect (the flow runs the same pass)."""

from typing import Annotated

import typer

from bridgebsr.cli._common import (
    JSON_OPTION,
    AsOf,
    emit_json,
    emit_table,
    parse_when,
    runtime,
    say,
    working,
)
from bridgebsr.monitor.report import MonitorReport
from bridgebsr.monitor.sweep import run_monitor

LATE_COLUMNS = ("case", "pilot", "item", "owner", "partner", "due", "days_late", "next_step")


def monitor(
    as_of: AsOf = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what the pass would do; change nothing.")
    ] = False,
    as_json: bool = JSON_OPTION,
) -> None:
    """Find what is due, late or expired; write each ladder step to the outbox once."""
    rt = runtime()
    now = parse_when(as_of, rt)
    with working("monitor pass: finding what is due, late or expired", quiet=as_json):
        report = run_monitor(
            rt.engine,
            now=now,
            zone=rt.settings.timezone,
            dry_run=dry_run,
            channels=rt.channels(),
        )
    if as_json:
        emit_json({**report.summary(), "late_items": late_rows(report)})
        return
    print_report(report)


def late_rows(report: MonitorReport) -> list[dict[str, object]]:
    """The late milestones and expired gates as plain rows, most late first."""
    return [
        {
            "case": item.case_key,
            "pilot": item.pilot,
            "item": item.item,
            "kind": item.item_kind,
            "owner": item.owner,
            "partner": item.partner,
            "due": item.due.isoformat(),
            "days_late": item.days_late,
            "next_step": item.next_step,
        }
        for item in report.late
    ]


def print_report(report: MonitorReport) -> None:
    """A one-paragraph summary, then the table of late items."""
    verb = "would write" if report.dry_run else "wrote"
    say(
        f"monitor as of {report.now:%Y-%m-%d %H:%M} UTC: {verb} {report.notifications} "
        f"notification(s); {report.newly_overdue} milestone(s) newly late, "
        f"{report.newly_expired} gate(s) newly expired, {len(report.late)} item(s) late"
    )
    for line in report.timed_out:
        say(f"  gate {'would time out' if report.dry_run else 'timed out'}: {line}")
    for line in report.failures:
        say(f"  not applied: {line}", err=True)
    if report.late:
        emit_table(f"Late as of {report.today}", late_rows(report), LATE_COLUMNS)
