"""stage-gate: a gate waiting for its decision is a suspended run with a decision form.

Resuming re-runs the flow from the top, so everything before the wait reads the case store
first. The suspension key names the gate's round, votes and refused submissions so far: a
resumed run finds its own input under that key, and a run whose key no longer matches the
store (someone decided on the CLI meanwhile) is closed and replaced by `sync_gate_runs`.

A decision submitted in the UI is recorded even when a vote from the CLI lands between the
submission and the resumed run reading the store: the run looks for answers it was given
under earlier keys of the round before it waits again, and deletes each answer it records.
"""

from collections import defaultdict
from typing import Any
from uuid import UUID

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput, keyset_from_base_key
from prefect.states import Completed
from pydantic import Field

from bridgebsr.errors import BridgeError
from bridgebsr.office.gate_views import GateView, gate_view, waiting_gates
from bridgebsr.office.progress import Actor, decide_gate, refuse_decision
from bridgebsr.store.db import read_session, write_session
from flows.case_page import publish_case_page
from flows.common import log, resolve_now, run_id, runtime
from models import Decision, Source

STAGE_GATE = "stage-gate/stage-gate"
UNFINISHED = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED]


class GateDecisionForm(RunInput):
    """An approver's decision on this gate, entered by a pilot lead of the case for them.

    The Prefect UI has one shared login, so the form cannot tell who submits it: the vote is
    recorded as entered by the pilot lead named in `entered_by` (refused unless they lead
    this case) on behalf of the approver named, and the audit trail says both."""

    decision: Decision = Field(description="approve or reject")
    approver_email: str = Field(description="The approver whose decision this is")
    entered_by: str = Field(
        description="Your address: a pilot lead of this case, entering the decision for them"
    )
    comment: str = Field(default="", description="Why; it goes into the case's audit trail")


def decision_key(view: GateView) -> str:
    """The suspension key for the decision this gate waits for now."""
    return f"{view.gate_key}-r{view.round}-v{view.votes}-x{view.refused}"


def _form_description(view: GateView) -> str:
    deadline = view.deadline.isoformat() if view.deadline else "none"
    return (
        f"## {view.case_key} · {view.title}\n\n"
        f"Needs **{view.required}** approval(s) from a **{view.approver_role}**; "
        f"{view.approvals} so far in round {view.round}. Deadline: **{deadline}**.\n\n"
        f"{_to_look_at(view)}"
        "As a pilot lead of this case, enter the decision an approver gave you: their address, "
        "and yours (the vote is recorded as entered by you on their behalf). Approvers may "
        "also vote themselves from their notice's link or with `bridgebsr gate approve`. One "
        "rejection sends the case back for rework or cancels it, as the pilot's template says."
    )


def _to_look_at(view: GateView) -> str:
    """The gate's template text on what to look at before deciding, as a paragraph."""
    return f"**Before deciding, look at:** {view.to_look_at}\n\n" if view.to_look_at else ""


def _view(case_key: str, gate_key: str) -> GateView:
    with read_session(runtime().engine) as session:
        return gate_view(session=session, case_key=case_key, gate_key=gate_key)


# The timeout bounds each stretch of work: a run waiting for its decision is suspended, not
# running, and each resume starts the clock again.
@flow(name="stage-gate", flow_run_name="{case_key} · {gate_key}", timeout_seconds=600)
def stage_gate(case_key: str, gate_key: str) -> dict[str, Any]:
    """Wait for a gate's decision in the UI and record it as the CLI would."""
    logger = log()
    while True:
        view = _view(case_key, gate_key)
        if not view.waiting:
            logger.info("%s %s is %s; nothing to wait for", case_key, gate_key, view.status.value)
            reconcile_gates(case_key)  # a decision may have opened the case's next gate
            return {"case": view.case_key, "gate": view.gate_key, "status": view.status.value}
        earlier = _unrecorded_answers(view)
        if earlier:
            for key, form in earlier:
                _record(view, form)
                _forget(key)
            continue
        form = suspend_flow_run(
            wait_for_input=GateDecisionForm.with_initial_data(description=_form_description(view)),
            key=decision_key(view),
        )
        _record(view, form)
        _forget(_answer_key(decision_key(view)))


def _answer_key(pause_key: str) -> str:
    """Where Prefect keeps the form submitted to a run suspended under `pause_key`."""
    return keyset_from_base_key(f"suspended-{pause_key}")["response"]


def _unrecorded_answers(view: GateView) -> list[tuple[str, GateDecisionForm]]:
    """Forms this run was given under earlier keys of the gate's current round and has not
    recorded (oldest first): the store changed between the submission and the resume."""
    flow_run = run_id()
    if flow_run is None:
        return []
    prefix = f"suspended-{view.gate_key}-r{view.round}-"  # as _answer_key builds them
    with get_client(sync_client=True) as client:
        found = client.filter_flow_run_input(
            flow_run_id=UUID(flow_run),
            key_prefix=prefix,
            limit=100,
            exclude_keys={_answer_key(decision_key(view))},
        )
    answers = sorted(
        (i for i in found if i.key.endswith("-response")),
        key=lambda i: i.created.timestamp() if i.created else 0.0,
    )
    return [(i.key, GateDecisionForm(**i.decoded_value)) for i in answers]


def _forget(key: str) -> None:
    """Delete a recorded answer, so no later pass of the run records it again."""
    flow_run = run_id()
    if flow_run is None:
        return
    with get_client(sync_client=True) as client:
        try:
            client.delete_flow_run_input(flow_run_id=UUID(flow_run), key=key)
        except ObjectNotFound:
            pass


def _record(view: GateView, form: GateDecisionForm) -> None:
    logger = log()
    rt = runtime()
    now = resolve_now(None, rt)
    actor = Actor(form.entered_by.strip().lower(), Source.FLOW, run_id(), form.comment)
    approver = form.approver_email.strip().lower()
    try:
        with write_session(rt.engine) as session:
            decide_gate(
                session=session,
                case_key=view.case_key,
                gate_key=view.gate_key,
                decision=form.decision,
                actor=actor,
                now=now,
                entered_for=approver,
            )
    except BridgeError as exc:
        logger.warning("decision not recorded: %s", exc)
        with write_session(rt.engine) as session:
            refuse_decision(
                session=session,
                case_key=view.case_key,
                gate_key=view.gate_key,
                actor=actor,
                reason=str(exc),
                now=now,
                entered_for=approver,
            )
        publish_case_page(view.case_key)
        return
    logger.info(
        "%s entered %s for %s on %s %s",
        actor.email,
        form.decision.value,
        approver,
        view.case_key,
        view.gate_key,
    )
    publish_case_page(view.case_key)


def _runs(client: SyncPrefectClient, deployment_id: UUID) -> list[FlowRun]:
    runs: list[FlowRun] = []
    while True:
        page = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=UNFINISHED)),
            ),
            limit=200,
            offset=len(runs),
        )
        runs += page
        if len(page) < 200:
            return runs


def reconcile_gates(case_key: str | None = None, gate_key: str | None = None) -> dict[str, int]:
    """Give every waiting gate one current waiting run; close runs whose wait is over.

    A run is closed (Completed, with the reason) when its gate was decided elsewhere or
    when its suspension key no longer matches the votes in the case store. `case_key` and
    `gate_key` narrow the work to one case or one gate.
    """

    def wanted(case: str, gate: str) -> bool:
        return (case_key is None or case == case_key.upper()) and (
            gate_key is None or gate == gate_key
        )

    counts = {"started": 0, "closed": 0, "kept": 0}
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(STAGE_GATE)
        except ObjectNotFound:
            return counts
        with read_session(runtime().engine) as session:
            views = {
                (v.case_key, v.gate_key): v
                for v in waiting_gates(session=session)
                if wanted(v.case_key, v.gate_key)
            }
        by_gate: dict[tuple[str, str], list[FlowRun]] = defaultdict(list)
        for run in _runs(client, deployment.id):
            gate = (str(run.parameters.get("case_key")), str(run.parameters.get("gate_key")))
            if wanted(*gate):
                by_gate[gate].append(run)
        for gate in set(views) | set(by_gate):
            view, runs = views.get(gate), by_gate.get(gate, [])  # view None: decided
            live = [r for r in runs if not (r.state and r.state.is_paused())]
            paused = [r for r in runs if r.state and r.state.is_paused()]
            current = [r for r in paused if view and _pause_key(r) == decision_key(view)]
            keep = current[:1]
            for run in paused:
                if run in keep:
                    continue
                reason = "the gate was decided" if view is None else "votes changed meanwhile"
                client.set_flow_run_state(
                    run.id,
                    Completed(name="Closed", message=f"no longer waiting: {reason}"),
                    force=True,
                )
                counts["closed"] += 1
            counts["kept"] += len(live) + len(keep)
            if view is not None and not live and not keep:
                _start(view)
                counts["started"] += 1
    return counts


def gate_runs() -> dict[tuple[str, str], UUID]:
    """The unfinished stage-gate run of each gate, by (case key, gate key)."""
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(STAGE_GATE)
        except ObjectNotFound:
            return {}
        return {
            (str(r.parameters.get("case_key")), str(r.parameters.get("gate_key"))): r.id
            for r in _runs(client, deployment.id)
        }


def _pause_key(run: FlowRun) -> str | None:
    return run.state.state_details.pause_key if run.state else None


def _start(view: GateView) -> None:
    run_deployment(
        STAGE_GATE,
        parameters={"case_key": view.case_key, "gate_key": view.gate_key},
        timeout=0,
        tags=[view.pilot, view.country.lower(), "gate"],
        as_subflow=False,
    )


# Retried: it compares the runs on the server with the store first, so a retry keeps what an
# interrupted try started and starts only what is still missing.
@task(name="sync-gate-runs", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def sync_gate_runs() -> dict[str, int]:
    """Start a waiting stage-gate run for each open gate; close runs whose wait is over."""
    counts = reconcile_gates()
    log().info("stage-gate runs: %s", counts)
    return counts
