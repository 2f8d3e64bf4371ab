"""monitor-milestones and friends as real flow runs against the session's Prefect server."""

import json
import re
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.events.filters import (
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventRelatedFilter,
)
from sqlalchemy import func, select, text
from sqlmodel import col

from bridgebsr.bootstrap import Runtime
from bridgebsr.monitor.report import Signal
from bridgebsr.monitor.sweep import run_monitor
from bridgebsr.office import directory
from bridgebsr.office.cases import open_case as open_case_uc
from bridgebsr.office.gate_views import gate_view
from bridgebsr.store import reports as weekly_store
from bridgebsr.store.db import read_session, write_session
from flows.cases import open_case, pilot_lifecycle
from flows.gates import decision_key, stage_gate
from flows.monitor import case_events, late_row, monitor_milestones, pilot_markdown
from flows.reports import daily_digest, portfolio_report
from models import Case, CaseEvent, Milestone, Notification, Source

AS_OF = datetime(2026, 11, 26, 11, tzinfo=UTC)


def _task_runs(flow_run_id: UUID) -> list[str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return sorted(r.name.rsplit("-", 1)[0] for r in runs)


def _run_id(state: Any) -> UUID:
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    return UUID(str(flow_run_id))


def _count(rt: Runtime, model: Any) -> int:
    with read_session(rt.engine) as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def test_the_monitor_flow_writes_the_outbox_once_and_publishes_what_is_late(
    prefect_api: str, store: Runtime
) -> None:
    summary = monitor_milestones(now=AS_OF, sync_gates=False)
    assert summary["notifications"] > 0 and summary["late"] > 0
    assert summary["newly_overdue"] > 0
    written = _count(store, Notification)
    assert written == summary["notifications"]
    with read_session(store.engine) as session:
        sources = set(
            session.execute(
                select(CaseEvent.source, CaseEvent.source_ref).where(
                    CaseEvent.kind == "milestone.overdue"
                )
            ).all()
        )
    assert len(sources) == 1
    source, ref = sources.pop()
    assert source is Source.FLOW and ref  # the flow run that stamped them

    again = monitor_milestones(now=AS_OF, sync_gates=False)
    assert again["notifications"] == 0 and again["newly_overdue"] == 0
    assert _count(store, Notification) == written

    late = Artifact.get("late-items")
    assert late is not None and late.data is not None
    assert "SME-2026-0008" in str(late.data) and "days late" in str(late.data)
    summary_md = Artifact.get("pilot-shared-sme-service")
    assert summary_md is not None and "late milestones" in str(summary_md.data)
    # The pages of cases the pass marked late, as of the pass's day.
    with get_client(sync_client=True) as client:
        pages = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(like_="case-"))
        )
    pages = [p for p in pages if "as of 2026-11-26" in str(p.description)]
    assert pages and all("| LATE |" in str(p.data) for p in pages)


def test_the_number_of_task_runs_does_not_grow_with_the_portfolio(
    prefect_api: str, store: Runtime
) -> None:
    small = monitor_milestones(now=AS_OF, sync_gates=False, return_state=True)
    with write_session(store.engine) as session:
        for i in range(40):
            open_case_uc(
                session=session,
                catalog=store.catalog,
                kind="shared-sme-service",
                title=f"More requests {i}",
                owner_email="henrik.oberg@ostersjo-vita.example",
                start=(AS_OF - timedelta(days=60)).date(),
                now=AS_OF - timedelta(days=60),
            )
            session.commit()
    big = monitor_milestones(now=AS_OF, sync_gates=False, return_state=True)
    assert big.result()["late"] > small.result()["late"] + 40
    assert _task_runs(_run_id(big)) == _task_runs(_run_id(small))
    assert len(_task_runs(_run_id(big))) == 3


def test_overdue_and_escalation_events_reach_the_server(prefect_api: str, store: Runtime) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    state = monitor_milestones(now=AS_OF, sync_gates=False, return_state=True)
    # Only this run's events: other tests' monitors emit the same names into the same server.
    this_run = EventRelatedFilter(id=[f"prefect.flow-run.{_run_id(state)}"])
    deadline = time.monotonic() + 30
    names: set[str] = set()
    wanted = {"bridgebsr.milestone.overdue", "bridgebsr.case.escalated"}
    events: list[Any] = []
    while time.monotonic() < deadline:
        events = []
        with get_client(sync_client=True) as client:
            for name in sorted(wanted):
                page = client.read_events(
                    filter=EventFilter(
                        occurred=EventOccurredFilter(since=since, until=datetime.now(UTC)),
                        event=EventNameFilter(name=[name]),
                        related=this_run,
                    ),
                    limit=50,
                )
                events += page.events
        names = {e.event for e in events}
        if wanted <= names:
            break
        time.sleep(1)
    assert {"bridgebsr.milestone.overdue", "bridgebsr.case.escalated"} <= names
    # Every overdue event names its case and that case's own kind (the demo runs activities
    # beyond the three pilots, so the kind is read from the store, not from a fixed list).
    with read_session(store.engine) as session:
        kinds = dict(session.execute(select(Case.key, Case.kind)).all())
    overdue = [e for e in events if e.event == "bridgebsr.milestone.overdue"]
    assert overdue
    for event in overdue:
        assert event.resource.id == f"bridgebsr.case.{event.resource['prefect.resource.name']}"
        assert event.resource["bridgebsr.pilot"] == kinds[event.resource["prefect.resource.name"]]


def test_a_dry_run_changes_nothing(prefect_api: str, store: Runtime) -> None:
    summary = monitor_milestones(now=AS_OF, dry_run=True)
    assert summary["dry_run"] and summary["notifications"] > 0
    assert _count(store, Notification) == 0


def test_stage_gate_returns_at_once_for_a_decided_gate(prefect_api: str, store: Runtime) -> None:
    # Everything before the wait reads the store first: a decided gate never suspends.
    result = stage_gate.fn("LSF-2026-0001", "founders-approval")
    assert result == {"case": "LSF-2026-0001", "gate": "founders-approval", "status": "approved"}


def test_the_decision_key_follows_round_votes_and_refusals(store: Runtime) -> None:
    with read_session(store.engine) as session:
        view = gate_view(session=session, case_key="IP-2025-0001", gate_key="council-approval")
    assert view.waiting
    assert decision_key(view) == f"council-approval-r{view.round}-v{view.votes}-x0"


def test_open_case_flow_opens_a_case_named_by_its_key(prefect_api: str, store: Runtime) -> None:
    state = open_case(
        kind="shared-sme-service",
        title="Cold-chain sensor start-up asks for IP advice",
        owner_email="oskar.lundback@lundback-dx.example",
        return_state=True,
    )
    key = state.result()
    with read_session(store.engine) as session:
        case = session.execute(select(Case).where(Case.key == key)).scalar_one()
        opened = session.execute(
            select(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.kind == "case.open")
        ).scalar_one()
    assert opened.source is Source.FLOW and opened.source_ref == str(_run_id(state))
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(_run_id(state))
    assert run.name == f"open {key}"
    assert {"shared-sme-service", "se"} <= set(run.tags)  # pilot kind and country
    plan = Artifact.get(f"case-{key.lower()}")
    assert plan is not None and "request-intake" in str(plan.data)


def test_pilot_lifecycle_publishes_the_case_plan(prefect_api: str, store: Runtime) -> None:
    result = pilot_lifecycle("IP-2025-0001")
    assert result["case"] == "IP-2025-0001"
    plan = Artifact.get("case-ip-2025-0001")
    assert plan is not None and "council-approval" in str(plan.data)


def test_report_and_digest_flows_publish_what_the_store_holds(
    prefect_api: str, store: Runtime
) -> None:
    rows = portfolio_report(now=AS_OF, send=False)  # the emails: tests/test_bridgebsr/test_weekly
    by_pilot = {r["pilot"]: r for r in rows}
    assert by_pilot["shared-sme-service"]["active"] == 12
    assert Artifact.get("portfolio") is not None
    with read_session(store.engine) as session:
        files = {f.filename: f.size for f in weekly_store.files_of(session, "weekly-2026-W48")}
    assert files["portfolio-2026-W48.html"] > 0 and files["portfolio-2026-W48.xlsx"] > 0
    assert not (store.settings.home / "reports").exists()  # nothing on the worker's disk
    forecast = Artifact.get("kpi-forecast")
    assert forecast is not None and "IP-2025-0001" in str(forecast.data)
    summary = Artifact.get("portfolio-report")
    assert summary is not None and "cases at risk" in str(summary.data)
    assert "bridgebsr reports fetch" in str(summary.data)  # no BRIDGEBSR_PUBLIC_URL here
    # A case owner, told of nothing urgent, asks for a daily digest.
    reader = "oskar.lundback@lundback-dx.example"
    with write_session(store.engine) as session:
        directory.set_preferences(
            session=session, email=reader, changes={"digest": True, "daily_cap": 0}
        )
    monitor_milestones(now=AS_OF, sync_gates=False)
    same_day = daily_digest(now=AS_OF)  # 12:00 in Copenhagen: the digest waits for 08:00
    assert same_day["held"] > 0 and same_day["digests"] == 0
    notices = [
        json.loads(x) for x in (store.settings.home / "notifications.log").read_text().splitlines()
    ]
    assert notices and reader not in {n["to"] for n in notices}
    # Every notice links to the run that found it, in the Prefect UI.
    assert all("/runs/flow-run/" in n["body"] for n in notices)

    morning = daily_digest(now=AS_OF + timedelta(hours=20, minutes=30))  # 08:30 next day
    assert morning["digests"] == 1 and morning["sent"] == same_day["held"]
    lines = [
        json.loads(x) for x in (store.settings.home / "notifications.log").read_text().splitlines()
    ]
    digests = [n for n in lines[len(notices) :] if n["to"] == reader]
    assert len(digests) == 1 and "Daily digest" in digests[0]["title"]
    assert digests[0]["body"].count("\n- ") == morning["sent"]
    artifact = Artifact.get("daily-digest")
    assert artifact is not None and f"{reader}: digest of {morning['sent']}" in str(artifact.data)


@pytest.fixture(autouse=True)
def _settle() -> None:
    """Artifacts are keyed; each test reads what its own flow run published."""


def _signal(event: str, case: str, subject: str) -> Signal:
    return Signal(event, case, "shared-sme-service", "LT", subject, {"days_late": 3})


def test_events_are_one_per_case_and_kind_most_urgent_first_and_capped() -> None:
    signals = [
        _signal("bridgebsr.milestone.overdue", "SME-2026-0002", "nda"),
        _signal("bridgebsr.milestone.overdue", "SME-2026-0002", "service-plan"),
        _signal("bridgebsr.milestone.overdue", "SME-2026-0001", "nda"),
        _signal("bridgebsr.case.escalated", "SME-2026-0002", "nda"),
        _signal("bridgebsr.gate.expired", "SME-2026-0003", "sme-acceptance"),
    ]
    events, left_out = case_events(signals)
    assert [(e.event, e.resource["prefect.resource.name"]) for e in events] == [
        ("bridgebsr.gate.expired", "SME-2026-0003"),
        ("bridgebsr.case.escalated", "SME-2026-0002"),
        ("bridgebsr.milestone.overdue", "SME-2026-0001"),
        ("bridgebsr.milestone.overdue", "SME-2026-0002"),
    ]
    assert left_out == 0
    both = events[-1]
    assert [r["prefect.resource.name"] for r in both.related] == ["nda", "service-plan"]
    assert both.payload["items"]["service-plan"] == {"days_late": 3}
    assert both.resource["bridgebsr.country"] == "LT"

    capped, left_out = case_events(signals, cap=2)
    assert [e.event for e in capped] == ["bridgebsr.gate.expired", "bridgebsr.case.escalated"]
    assert left_out == 2


def test_late_items_show_the_due_date_lateness_counts_from_and_readable_steps(
    store: Runtime,
) -> None:
    report = run_monitor(store.engine, now=AS_OF, zone="Europe/Copenhagen", dry_run=True)
    rows = {(r["case"], r["milestone"]): r for r in map(late_row, report.late)}
    with read_session(store.engine) as session:
        nda = session.execute(
            select(Milestone)
            .join(Case, col(Case.id) == Milestone.case_id)
            .where(Case.key == "SME-2026-0008", Milestone.key == "nda")
        ).scalar_one()
    late = rows[("SME-2026-0008", "nda")]
    assert nda.forecast_due != nda.planned_due  # the forecast moved; lateness did not
    assert late["due"] == nda.planned_due.isoformat()
    assert date.fromisoformat(late["due"]) + timedelta(days=late["days late"]) == report.today
    steps = {r["next escalation"] for r in rows.values()} - {"-"}
    assert steps, "some late item has a step still to come"
    for step in steps:
        assert re.fullmatch(r"\d+ working days? late: .+ told, on \d{4}-\d\d-\d\d", step), step
    # The pilot summary says the same in five columns, the next step last and whole.
    pilot = "shared-sme-service"
    markdown = pilot_markdown(report, pilot, report.summary()["pilots"][pilot])
    since = f"{late['due']} ({late['days late']} days)"
    assert f"| SME-2026-0008 | nda | {late['owner']} | {since} | {late['next escalation']} |" in (
        markdown
    )


def test_the_pilot_summary_names_each_case_role_no_one_holds_once(store: Runtime) -> None:
    with store.engine.begin() as conn:  # the SME pilot without a lead
        conn.execute(text("UPDATE contacts SET leads = '' WHERE leads = 'shared-sme-service'"))
    report = run_monitor(store.engine, now=AS_OF, zone="Europe/Copenhagen", dry_run=True)
    pilot = "shared-sme-service"
    counts = report.summary()["pilots"][pilot]
    markdown = pilot_markdown(report, pilot, counts)

    unheld = report.unheld_roles(pilot)
    assert {u["role"] for u in unheld} == {"pilot-lead", "coordinator"}
    assert counts["unheld_roles"] == len(unheld) == len({(u["case"], u["role"]) for u in unheld})
    assert "## No one to tell" in markdown
    for u in unheld:
        assert markdown.count(f"| {u['case']} | {u['role']} |") == 1
    assert "No one to tell" not in pilot_markdown(
        report, "ip-integration", report.summary()["pilots"]["ip-integration"]
    )
