"""A pilot lead's day in the Prefect UI: a real browser against a real `bridgebsr up --demo`.

Find the ip-integration case's gate waiting in Runs, open it, Resume, fill the decision form
(first a council member typing their own address in, who is no pilot lead of the case:
refused, and the form asks again; then the pilot lead entering each council member's decision
the gate needs, on their behalf), and see the decisions land in the case store with an audit
trail naming the pilot lead, the approver each vote is for, and the flow run. Then read the
pilot's status artifact.
Each step leaves a screenshot in build/screenshots/ (`make screenshots`: docs/screenshots/, which
the README's walkthrough shows).
"""

import re
import time
from collections.abc import Callable
from typing import TypeVar
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, LogFilter
from prefect.client.schemas.filters import LogFilterFlowRunId as LogFlowRunId
from prefect.client.schemas.objects import FlowRun
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlmodel import col, select

from bridgebsr.office.gate_views import GateView, gate_view, waiting_gates
from bridgebsr.office.team import show_team
from bridgebsr.store.db import read_session
from flows.gates import decision_key
from models import Case, CaseEvent, Contact, Decision, Gate, GateDecision, GateStatus, Source
from tests.e2e.conftest import Stack, require_browser, screenshot

require_browser()  # skipped here without Chromium or Playwright; failed in CI

from playwright.sync_api import Locator, Page, expect  # noqa: E402

# UI assertions wait up to 30 s, not Playwright's 5: on a busy machine a submitted decision
# (validated by the server, then a new flow process) takes several seconds to show.
expect.set_options(timeout=30_000)

pytestmark = pytest.mark.slow
PILOT = "ip-integration"
VOTES = ("gate.vote", "gate.approve", "gate.reject", "gate.refused")
SELECT = "button.p-select-button__control"  # the UI's select boxes have no accessible name
T = TypeVar("T")


def poll(what: str, probe: Callable[[], T | None], timeout: float = 60) -> T:
    """Ask `probe` until it answers (not None); fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.25)


def gate_run(stack: Stack, name: str, ready: Callable[[FlowRun], bool], what: str) -> FlowRun:
    """The stage-gate run called `name` once `ready` holds for it, read with Prefect's client."""
    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        with get_client(sync_client=True) as client:

            def probe() -> FlowRun | None:
                runs = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
                )
                return next((run for run in runs if ready(run)), None)

            return poll(f"{name} {what}", probe, timeout=90)


def paused_at(view: GateView) -> Callable[[FlowRun], bool]:
    """Whether a run waits suspended for the decision `view` is waiting for now."""
    key = decision_key(view)
    return lambda run: bool(
        run.state and run.state.is_paused() and run.state.state_details.pause_key == key
    )


def run_logged(stack: Stack, run_id: UUID, text: str) -> None:
    """Wait until the run's logs, as the UI reads them from the API, contain `text`."""
    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        with get_client(sync_client=True) as client:

            def probe() -> bool | None:
                logs = client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFlowRunId(any_=[run_id])), limit=200
                )
                return True if any(text in log.message for log in logs) else None

            poll(f"log '{text}' of run {run_id}", probe)


def current_view(stack: Stack, case_key: str, gate_key: str) -> GateView:
    with read_session(stack.rt.engine) as session:
        return gate_view(session=session, case_key=case_key, gate_key=gate_key)


Trail = list[tuple[str, str, str, str | None]]


def audit(stack: Stack, case_key: str, gate_key: str) -> Trail:
    """The case's audit trail about this gate's decisions: kind, actor, source, flow run."""
    with read_session(stack.rt.engine) as session:
        rows = session.exec(
            select(CaseEvent.kind, CaseEvent.actor, CaseEvent.source, CaseEvent.source_ref)
            .join(Case, col(Case.id) == CaseEvent.case_id)
            .where(
                Case.key == case_key,
                CaseEvent.subject == gate_key,
                col(CaseEvent.kind).in_(VOTES),
            )
            .order_by(col(CaseEvent.id))
        ).all()
    return [(kind, actor, source, ref) for kind, actor, source, ref in rows]


def lifecycle_runs(stack: Stack, case_key: str) -> int:
    """The case's pilot-lifecycle runs, once finished: the automation starts one when the
    first monitor pass of `bridgebsr up` escalates the case (event `bridgebsr.case.escalated`)."""
    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        with get_client(sync_client=True) as client:
            escalated = client.read_events(
                filter=EventFilter(
                    event=EventNameFilter(name=["bridgebsr.case.escalated"]),
                    resource=EventResourceFilter(id=[f"bridgebsr.case.{case_key}"]),
                ),
                limit=1,
            ).events
            if not escalated:
                return 0

            def probe() -> int | None:
                runs = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[case_key]))
                )
                return (
                    len(runs)
                    if runs and all(r.state and r.state.is_final() for r in runs)
                    else None
                )

            return poll(f"the pilot-lifecycle run of {case_key}", probe, timeout=120)


def audited(stack: Stack, case_key: str, gate_key: str, count: int) -> Trail:
    """Poll the case store until the gate's audit trail has `count` decision events."""
    return poll(
        f"{count} decision event(s) on {case_key} {gate_key}",
        lambda: trail if len(trail := audit(stack, case_key, gate_key)) >= count else None,
    )


def field(form: Locator, label: str) -> Locator:
    """A property of Prefect's schema form, by the label shown above it."""
    return form.locator(".schema-form-property").filter(
        has=form.page.locator(".schema-form-property__label", has_text=re.compile(f"^{label}"))
    )


def choose(select: Locator, option: str) -> None:
    """Pick `option` in one of the UI's select boxes: focus, arrow down, click the choice."""
    select.focus()
    select.press("ArrowDown")  # opens the choices (a plain click does not, headless)
    select.page.get_by_role("option", name=option, exact=True).click()
    expect(select).to_have_text(option)


def fill_decision(
    page: Page,
    email: str,
    by: str,
    comment: str,
    *,
    asks: str = "",
    shot: str | None = None,
) -> None:
    """Resume the run and submit the decision form: approver `email`'s decision, entered by
    `by`; the form first shows `asks` (the gate's description, with the approvals so far)."""
    page.get_by_role("button", name="Resume").click()
    form = page.get_by_role("dialog")
    expect(form).to_contain_text("Resume Flow Run")
    expect(form).to_contain_text(asks)
    choose(field(form, "Decision").locator(SELECT), "approve")
    field(form, "Approver Email").locator("textarea").fill(email)
    field(form, "Entered By").locator("textarea").fill(by)
    field(form, "Comment").locator("textarea").fill(comment)
    if shot:
        screenshot(page, shot)
    form.get_by_role("button", name="Submit").click()
    # The UI closes the form once the server took the input: a busy server takes its time.
    expect(form).to_be_hidden(timeout=60_000)


def test_a_pilot_lead_decides_the_waiting_gate_in_the_ui(stack: Stack, page: Page) -> None:
    # What the store says: the ip-integration case's waiting gate, who may and who may not decide.
    with read_session(stack.rt.engine) as session:
        view = next(v for v in waiting_gates(session=session) if v.pilot == PILOT)
        case = session.exec(select(Case).where(Case.key == view.case_key)).one()
        stage_before = case.current_stage
        owner = session.exec(select(Contact).where(Contact.id == case.owner_id)).one()
        approvers = list(
            session.exec(
                select(Contact.email)
                .where(Contact.role == view.approver_role)
                .order_by(col(Contact.email))
            ).all()
        )[: view.required]
        team = {r["role"]: r["who"] for r in show_team(session=session, key=case.key)["team"]}
    lead = team["pilot-lead"].split(", ")[0]
    case_key, gate_key = view.case_key, view.gate_key
    run_name = f"{case_key} · {gate_key}"
    assert owner.role != view.approver_role and len(approvers) == view.required > 1
    # The first monitor pass of `bridgebsr up` started the gate's run; it waits suspended.
    run = gate_run(stack, run_name, paused_at(view), "waiting for its first decision")

    # Runs, searched by the case key, lists the waiting gate (and the case's pilot-lifecycle
    # run when the first pass escalated it); the gate's run opens on its run page.
    listed = 1 + lifecycle_runs(stack, case_key)
    page.goto(f"{stack.ui_url}/runs")
    page.get_by_role("searchbox", name="Search by flow run name").fill(case_key)
    expect(page.get_by_text(re.compile(rf"^\s*{listed} runs?\s*$"))).to_be_visible()  # filtered
    link = page.get_by_role("link", name=run_name, exact=True)
    expect(link).to_be_visible()
    link.evaluate("link => link.scrollIntoView({block: 'center'})")
    screenshot(page, "01-runs")
    link.click()
    expect(page).to_have_url(re.compile(f"/runs/flow-run/{run.id}"))
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    expect(page.get_by_text("Suspended", exact=True).first).to_be_visible()
    screenshot(page, "02-gate-run")

    # A council member typing their own address in, who leads no case: refused, audited, and
    # the form asks again (the shared UI login cannot tell who submits the form).
    voter = approvers[0]
    fill_decision(page, voter, voter, "my own vote", asks=f"{case_key} · {view.title}")
    trail = audited(stack, case_key, gate_key, 1)
    assert trail == [("gate.refused", voter, Source.FLOW, str(run.id))]
    view = current_view(stack, case_key, gate_key)
    assert (view.status, view.votes, view.refused) == (GateStatus.OPEN, 0, 1)
    gate_run(stack, run_name, paused_at(view), "asking again after the refusal")
    run_logged(stack, run.id, "decision not recorded")
    page.reload()
    expect(page.get_by_text(re.compile("decision not recorded.*"))).to_be_visible()

    # The pilot lead enters each council member's decision; the last approval closes it.
    for n, email in enumerate(approvers, start=1):
        last = n == len(approvers)
        fill_decision(
            page,
            email,
            lead,
            f"vote {n} from the e2e walkthrough",
            asks=f"{n - 1} so far in round {view.round}",
            shot="03-resume-form" if n == 1 else None,
        )
        trail = audited(stack, case_key, gate_key, 1 + n)
        assert trail[-1] == (
            "gate.approve" if last else "gate.vote",
            lead,
            Source.FLOW,
            str(run.id),
        )
        view = current_view(stack, case_key, gate_key)
        if not last:
            gate_run(stack, run_name, paused_at(view), f"waiting after vote {n}")
            page.reload()

    # The run finished with the gate decided; its page says so.
    gate_run(stack, run_name, lambda r: bool(r.state and r.state.is_completed()), "completed")
    run_logged(stack, run.id, f"{lead} entered approve for {approvers[-1]}")
    page.reload()
    expect(page.get_by_text("Completed", exact=True).first).to_be_visible()
    choose(page.locator(SELECT, has_text=re.compile("oldest", re.I)), "Newest to oldest")
    expect(page.get_by_text(f"{lead} entered approve for {approvers[-1]}")).to_be_in_viewport()
    screenshot(page, "04-decided")

    # The case store: the gate is approved, every vote is audited with the pilot lead who
    # entered it and the flow run it came from, each decision is its approver's, and the case
    # moved on past the gate's stage.
    assert view.status is GateStatus.APPROVED and view.approvals == len(approvers)
    assert audit(stack, case_key, gate_key) == [
        ("gate.refused", voter, Source.FLOW, str(run.id)),
        *[("gate.vote", lead, Source.FLOW, str(run.id)) for _ in approvers[:-1]],
        ("gate.approve", lead, Source.FLOW, str(run.id)),
    ]
    with read_session(stack.rt.engine) as session:
        decisions = session.exec(
            select(Contact.email, GateDecision.decision, GateDecision.source, GateDecision.comment)
            .join(Contact, col(Contact.id) == GateDecision.approver_id)
            .join(Gate, col(Gate.id) == GateDecision.gate_id)
            .where(Gate.case_id == case.id, Gate.key == gate_key)
            .order_by(col(GateDecision.id))
        ).all()
        stage_after = session.exec(select(Case.current_stage).where(Case.id == case.id)).one()
    assert [(e, d, s) for e, d, s, _ in decisions] == [
        (email, Decision.APPROVE, Source.FLOW) for email in approvers
    ]
    assert [c for *_, c in decisions] == [
        f"vote {n} from the e2e walkthrough" for n in range(1, len(approvers) + 1)
    ]
    assert stage_after != stage_before

    # The pilot's status, as the monitor pass published it: Artifacts, search, open.
    page.goto(f"{stack.ui_url}/artifacts")
    page.get_by_placeholder("Search artifacts").fill(f"pilot-{PILOT}")
    page.get_by_text(f"pilot-{PILOT}", exact=True).click()
    expect(page).to_have_url(re.compile(f"/artifacts/key/pilot-{PILOT}$"))
    page.locator("a[href^='/artifacts/artifact/']").first.click()
    markdown = page.locator(".artifact-data-markdown")
    expect(markdown).to_contain_text(re.compile(rf"{PILOT} as of \d{{4}}-\d\d-\d\d"))
    shown = " ".join(markdown.inner_text().split())
    assert "active cases: 1" in shown
    assert "gates waiting for a decision: 1" in shown
    # The case, its stage and its next milestone; the gate it waited on, with who decides.
    assert case.key in shown and "council-member" in shown
    screenshot(page, "05-pilot-status")
