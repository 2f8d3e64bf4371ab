"""A pilot lead records progress in the Prefect UI: the `record-progress` deployment's form
(a drop-down for the action), the run `bridgebsr up` executes, the case store and the case's
page `case-<key>` after it. Screenshots: build/screenshots/11-desk-progress-form.png and
12-desk-case-page.png.
"""

import re

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    DeploymentFilter,
    DeploymentFilterId,
)
from prefect.client.schemas.objects import ArtifactCollection, FlowRun
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlmodel import col, select

from bridgebsr.store.db import read_session
from models import Case, CaseEvent, Milestone, MilestoneStatus, Source
from tests.e2e.conftest import Stack, require_browser, screenshot

require_browser()  # skipped here without Chromium or Playwright; failed in CI

from playwright.sync_api import Page, expect  # noqa: E402

from tests.e2e.test_pilot_lead_day import SELECT, choose, field, poll  # noqa: E402

pytestmark = pytest.mark.slow
MILESTONE, OWNER = "request-intake", "soren.ostergaard@scanbalt.example"


def latest_page(case_key: str) -> ArtifactCollection | None:
    """The latest version of the case's page `case-<key>`, read with Prefect's client."""
    key = ArtifactCollectionFilterKey(any_=[f"case-{case_key.lower()}"])
    with get_client(sync_client=True) as client:
        found = client.read_latest_artifacts(artifact_filter=ArtifactCollectionFilter(key=key))
    return found[0] if found else None


def test_a_pilot_lead_records_progress_in_the_form_and_the_case_page_shows_it(
    stack: Stack, page: Page
) -> None:
    # A shared-sme-service case whose intake is still planned, as the demo has it today.
    with read_session(stack.rt.engine) as session:
        case_key = session.exec(
            select(Case.key)
            .join(Milestone, col(Milestone.case_id) == Case.id)
            .where(Milestone.key == MILESTONE, Milestone.status == MilestoneStatus.PLANNED)
            .order_by(col(Case.key))
        ).first()
    assert case_key is not None
    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("record-progress/record-progress")

    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        before = latest_page(case_key)  # the first monitor pass may have published it

    # Deployments › record-progress › Run › Custom run: the form, filled in and submitted.
    page.goto(f"{stack.ui_url}/deployments/deployment/{deployment.id}/run")
    form = page.locator("form")
    field(form, "case_key").locator("textarea, input").first.fill(case_key)
    field(form, "milestone").locator("textarea, input").first.fill(MILESTONE)
    choose(field(form, "action").locator(SELECT), "complete")
    field(form, "by").locator("textarea, input").first.fill(OWNER)
    field(form, "note").locator("textarea, input").first.fill("recorded in the Prefect UI")
    field(form, "case_key").scroll_into_view_if_needed()
    screenshot(page, "11-desk-progress-form")
    page.get_by_role("button", name="Submit").click()

    # `bridgebsr up` runs it; the run completes with what it did as its message.
    def finished() -> FlowRun | None:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
            )
        return next((r for r in runs if r.state and r.state.is_final()), None)

    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        try:
            run = poll("the record-progress run", finished, timeout=120)
        except AssertionError as exc:  # say where the run got to, and what `up` logged
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
                )
            states = [(r.name, r.state_name) for r in runs]
            raise AssertionError(f"{exc}; runs: {states}\n{stack.output()[-3000:]}") from None
        assert run.state is not None and run.state.is_completed(), run.state
        assert f"{case_key} {MILESTONE} is done" in str(run.state.message)
        case_page = latest_page(case_key)
    run_id = str(run.id)
    assert case_page is not None and str(case_page.flow_run_id) == run_id
    assert before is None or case_page.latest_id != before.latest_id
    assert re.search(rf"\| {MILESTONE}[ *]* \| done \(", str(case_page.data))

    # The case store: done, audited as the pilot lead's change from that flow run.
    with read_session(stack.rt.engine) as session:
        status = session.exec(
            select(Milestone.status)
            .join(Case, col(Case.id) == Milestone.case_id)
            .where(Case.key == case_key, Milestone.key == MILESTONE)
        ).one()
        event = session.exec(
            select(CaseEvent.actor, CaseEvent.source, CaseEvent.source_ref, CaseEvent.comment)
            .join(Case, col(Case.id) == CaseEvent.case_id)
            .where(Case.key == case_key, CaseEvent.kind == "milestone.complete")
            .order_by(col(CaseEvent.id).desc())
        ).first()
    assert status is MilestoneStatus.DONE
    assert event == (OWNER, Source.FLOW, run_id, "recorded in the Prefect UI")

    # The case's page in the UI: Artifacts › case-<key>, the milestone done.
    page.goto(f"{stack.ui_url}/artifacts/key/case-{case_key.lower()}")
    page.locator("a[href^='/artifacts/artifact/']").first.click()
    markdown = page.locator(".artifact-data-markdown")
    expect(markdown).to_contain_text(re.compile(rf"{MILESTONE}.*done", re.S))
    screenshot(page, "12-desk-case-page")
