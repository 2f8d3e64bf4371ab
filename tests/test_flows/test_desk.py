"""The pilot lead's desk against the session's Prefect server: a change recorded through its
flow lands in the case store with an audit event naming the flow run, and the case's page
`case-<key>` shows it; refusals fail the run with their one line and write nothing."""

import re
from datetime import datetime
from typing import Any
from uuid import UUID

from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from sqlalchemy import select

from bridgebsr.bootstrap import Runtime
from bridgebsr.office.queries import show_case
from bridgebsr.store.db import read_session
from flows.case_page import artifact_key, publish_case_page
from flows.desk import DESK, close_or_cancel_case, hold_or_resume_case, record_progress
from models import Case, CaseEvent, Source

SME, MILESTONE, OWNER = "SME-2026-0003", "triage-decision", "soren.ostergaard@scanbalt.example"


def _page(case_key: str) -> tuple[str, UUID | None]:
    """The latest markdown of the case's page and the flow run that published it."""
    found = Artifact.get(artifact_key(case_key))
    assert found is not None and isinstance(found.data, str)
    return found.data, found.flow_run_id


def _events(rt: Runtime) -> list[tuple[str, str | None, str, Source, str | None]]:
    with read_session(rt.engine) as session:
        rows = session.execute(
            select(
                CaseEvent.kind,
                CaseEvent.subject,
                CaseEvent.actor,
                CaseEvent.source,
                CaseEvent.source_ref,
            )
            .join(Case, Case.id == CaseEvent.case_id)  # type: ignore[arg-type]
            .where(Case.key == SME)
            .order_by(CaseEvent.id)  # type: ignore[arg-type]
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _case(rt: Runtime) -> dict[str, Any]:
    with read_session(rt.engine) as session:
        return show_case(session=session, key=SME, today=datetime.now(rt.settings.zone()).date())


def test_the_forms_offer_choices_and_dates() -> None:
    progress = DESK["record-progress"].parameters.model_dump()
    assert progress["properties"]["action"]["enum"] == ["start", "complete", "waive"]
    assert {"format": "date", "type": "string"} in progress["properties"]["on"]["anyOf"]
    assert progress["required"] == ["case_key", "milestone", "action", "by"]
    reschedule = DESK["reschedule-milestone"].parameters.model_dump()
    assert reschedule["properties"]["due"]["format"] == "date"
    added = DESK["add-milestone"].parameters.model_dump()
    assert added["definitions"]["DayKind"]["enum"] == ["working", "calendar"]
    closing = DESK["close-or-cancel-case"].parameters.model_dump()
    assert closing["properties"]["action"]["enum"] == ["close", "cancel"]
    edit = DESK["edit-case"].parameters.model_dump()
    assert {"format": "date", "type": "string"} in edit["properties"]["target"]["anyOf"]
    assert edit["required"] == ["case_key", "by"]
    assert DESK["remove-milestone"].parameters.required == ["case_key", "milestone", "reason", "by"]
    assert DESK["reassign-case"].parameters.required == ["case_key", "owner", "by"]
    assert all(f.parameters.properties["by"]["description"] for f in DESK.values())
    for desk_flow in DESK.values():  # every field has its help under it
        assert all(p.get("description") for p in desk_flow.parameters.properties.values())


def test_progress_recorded_in_a_flow_run_reaches_the_store_the_audit_and_the_case_page(
    prefect_api: str, store: Runtime
) -> None:
    publish_case_page(SME)  # the page as it was, published outside any run (as the CLI does)
    before, _ = _page(SME)
    assert re.search(rf"\| {MILESTONE}[ *]* \| planned \|", before)
    version = _case(store)["version"]

    state = record_progress(
        case_key=SME.lower(),
        milestone=MILESTONE,
        action="complete",
        by=OWNER.upper(),
        note="decided at the Tuesday call | minutes attached",
        if_version=version,
        return_state=True,
    )

    assert state.is_completed(), state.message
    run = UUID(str(state.state_details.flow_run_id))
    assert state.message and f"{SME} {MILESTONE} is done" in state.message
    shown = _case(store)
    done = next(m for m in shown["milestones"] if m["key"] == MILESTONE)
    assert done["status"] == "done" and shown["version"] > version
    assert ("milestone.complete", MILESTONE, OWNER, Source.FLOW, str(run)) in _events(store)
    after, published_by = _page(SME)
    assert published_by == run
    assert re.search(rf"\| {MILESTONE}[ *]* \| done \(\d{{4}}-\d\d-\d\d\) \|", after)
    assert f"version **{shown['version']}**" in after
    assert "decided at the Tuesday call \\| minutes attached" in after  # one table cell


def test_refused_changes_fail_the_run_with_one_line_and_write_nothing(
    prefect_api: str, store: Runtime
) -> None:
    stale = _case(store)["version"] - 1
    events = _events(store)
    refusals = {
        "stale": record_progress(
            case_key=SME,
            milestone="nda",
            action="start",
            by=OWNER,
            if_version=stale,
            return_state=True,
        ),
        "stranger": record_progress(
            case_key=SME,
            milestone="nda",
            action="start",
            by="nobody@example.org",
            return_state=True,
        ),
        "rule": hold_or_resume_case(
            case_key=SME, action="resume", reason="back to work", by=OWNER, return_state=True
        ),
        "no case": record_progress(
            case_key="SME-2099-0001", milestone="nda", action="start", by=OWNER, return_state=True
        ),
    }
    for what, state in refusals.items():
        assert state.is_failed(), what
        assert state.message and "\n" not in state.message and "Traceback" not in state.message
    assert str(stale) in str(refusals["stale"].message)
    assert "no contact nobody@example.org" in str(refusals["stranger"].message)
    assert "SME-2099-0001" in str(refusals["no case"].message)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(str(refusals["stale"].state_details.flow_run_id)))
    assert run.state is not None and run.state.is_failed()
    assert run.state.message == refusals["stale"].message  # what the UI shows
    assert _events(store) == events


def test_a_case_cancelled_at_the_desk_is_closed_in_the_store_and_on_its_page(
    prefect_api: str, store: Runtime
) -> None:
    unfinished = close_or_cancel_case(
        case_key=SME, action="close", reason="done", by=OWNER, return_state=True
    )
    assert unfinished.is_failed() and "still open" in str(unfinished.message)
    state = close_or_cancel_case(
        case_key=SME, action="cancel", reason="the SME withdrew", by=OWNER, return_state=True
    )
    assert state.is_completed(), state.message
    run = str(state.state_details.flow_run_id)
    assert _case(store)["status"] == "cancelled"
    assert ("case.cancel", None, OWNER, Source.FLOW, run) in _events(store)
    page, published_by = _page(SME)
    assert str(published_by) == run and "cancelled" in page
