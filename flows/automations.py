"""The Prefect automations bridgebsr relies on, as code, applied idempotently.

`bridgebsr up` applies them once its deployments are registered; on a deployed setup,
`bridgebsr automations apply` does (after `prefect deploy --all`). Each is named
`bridgebsr: ...` and tagged `bridgebsr`: applying creates the missing ones, updates the ones
that differ, leaves equal ones alone and deletes ours that are no longer wanted, so running it
twice changes nothing.

- a run of one of our flows Failed, Crashed or TimedOut: run `operator-alert` with the flow,
  the run and the state (the alert flow never watches itself, so a channel that is down
  cannot start a loop);
- no Completed run of the `monitor-milestones` deployment within `silence` (2 hours; a
  proactive trigger): run `operator-alert` with a note;
- the event `bridgebsr.case.escalated` (the monitor emits one per case, the case key as the
  resource's name): run `pilot-lifecycle` for that case;
- a Completed run of `monitor-milestones`: run `dispatch-notifications` as of the monitor's
  `now` (so a replayed pass delivers as of its own date; none means the current time).

Actions start deployments rather than call our code: the alert and the case update then run
where every flow runs (a worker, or `bridgebsr up`), with the operator's BRIDGEBSR_* settings,
and leave a flow run with logs in the UI.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect.automations import AutomationCore, EventTrigger, Posture, RunDeployment
from prefect.client.orchestration import get_client
from prefect.events.schemas.automations import Automation
from prefect.exceptions import ObjectNotFound

from bridgebsr.errors import BridgeError
from flows.deployments import DEPLOYMENTS

TAG = "bridgebsr"
OPERATOR_ALERT = "operator-alert"
MONITOR = "monitor-milestones"
DISPATCH = "dispatch-notifications"
LIFECYCLE = "pilot-lifecycle"
MONITOR_SILENCE = timedelta(hours=2)
BAD_ENDS = {"prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut"}
ANY_RUN = {"prefect.resource.id": "prefect.flow-run.*"}


@dataclass(frozen=True)
class Change:
    """What applying does to one automation: create, update, keep or delete (`id`: the
    server's automation it updates, keeps or deletes)."""

    name: str
    action: str
    id: UUID | None = None


def watched() -> list[str]:
    """The flows whose failures alert the operators: all of ours but the alert itself and the
    pilot lead's desk, whose runs fail when a change is refused (the lead reads the one line
    in the UI; it is no fault of the system)."""
    return sorted(
        flow.name
        for name, (flow, _cron, tags) in DEPLOYMENTS.items()
        if name != OPERATOR_ALERT and "desk" not in tags
    )


def _run(deployment: UUID, parameters: dict[str, Any]) -> RunDeployment:
    return RunDeployment(source="selected", deployment_id=deployment, parameters=parameters)


def wanted(
    ids: Mapping[str, UUID], flows: Iterable[str], silence: timedelta = MONITOR_SILENCE
) -> list[AutomationCore]:
    """Our automations, for the deployments `ids` (name -> id) and the watched `flows`."""
    monitor_runs = {
        "prefect.resource.role": "deployment",
        "prefect.resource.id": f"prefect.deployment.{ids[MONITOR]}",
    }
    hours = silence.total_seconds() / 3600
    span = f"{hours:g} hour(s)" if hours >= 1 else f"{silence.total_seconds():g} seconds"
    return [
        AutomationCore(
            name="bridgebsr: a run failed or crashed",
            description="Tell the operators (Apprise tag `operators`) when a run of ours "
            "fails, crashes or times out.",
            tags=[TAG],
            trigger=EventTrigger(
                expect=BAD_ENDS,
                match=ANY_RUN,
                match_related={"prefect.resource.role": "flow", "prefect.resource.name": [*flows]},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[
                _run(
                    ids[OPERATOR_ALERT],
                    {
                        "event": "{{ event.event }}",
                        "flow_name": "{{ event.resource_in_role.flow.name }}",
                        "run_name": "{{ event.resource.name }}",
                        "run_id": "{{ event.resource.id }}",
                    },
                )
            ],
        ),
        AutomationCore(
            name="bridgebsr: the monitor is silent",
            description=f"Tell the operators when monitor-milestones has not completed a run "
            f"for {span}.",
            tags=[TAG],
            trigger=EventTrigger(
                expect={"prefect.flow-run.Completed"},
                match=ANY_RUN,
                match_related=monitor_runs,
                posture=Posture.Proactive,
                threshold=1,
                within=silence,
            ),
            actions=[
                _run(
                    ids[OPERATOR_ALERT],
                    {
                        "note": f"monitor-milestones has not completed a run for {span}: "
                        "is its worker (or `bridgebsr up`) running?",
                        "deployment_id": str(ids[MONITOR]),
                    },
                )
            ],
        ),
        AutomationCore(
            name="bridgebsr: an escalated case is brought up to date",
            description="Run pilot-lifecycle for the case of each bridgebsr.case.escalated event.",
            tags=[TAG],
            trigger=EventTrigger(
                expect={"bridgebsr.case.escalated"},
                match={"prefect.resource.id": "bridgebsr.case.*"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[_run(ids[LIFECYCLE], {"case_key": "{{ event.resource.name }}"})],
        ),
        AutomationCore(
            name="bridgebsr: dispatch after each monitor pass",
            description="Deliver what a completed monitor run wrote to the outbox, as of that "
            "run's `now`.",
            tags=[TAG],
            trigger=EventTrigger(
                expect={"prefect.flow-run.Completed"},
                match=ANY_RUN,
                match_related=monitor_runs,
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[_run(ids[DISPATCH], {"now": "{{ flow_run.parameters.get('now') }}"})],
        ),
    ]


def _comparable(automation: AutomationCore) -> dict[str, Any]:
    """An automation as the server keeps it, without what the server adds (ids). Dumped as
    Python values, not JSON: a trigger's `expect` is a set, and as a JSON list its order
    follows the string hashes of the process, so two equal automations could differ."""
    core = AutomationCore.model_validate(automation.model_dump(exclude={"id"}))
    return core.model_dump(exclude={"owner_resource"})


def plan(existing: list[Automation], wanted: list[AutomationCore]) -> list[Change]:
    """What applying `wanted` over the server's `existing` automations does: one change per
    wanted automation, in order, then the deletions (ours no longer wanted, and copies)."""
    ours: dict[str, list[Automation]] = {}
    for automation in existing:
        if TAG in automation.tags:
            ours.setdefault(automation.name, []).append(automation)
    changes = []
    for want in wanted:
        found = ours.pop(want.name, [])
        ours[want.name] = found[1:]  # copies of one name: the first is kept or updated
        if not found:
            changes.append(Change(want.name, "create"))
        elif _comparable(found[0]) != _comparable(want):
            changes.append(Change(want.name, "update", found[0].id))
        else:
            changes.append(Change(want.name, "keep", found[0].id))
    for name in sorted(ours):
        changes += [Change(name, "delete", extra.id) for extra in ours[name]]
    return changes


def apply(silence: timedelta = MONITOR_SILENCE, *, dry_run: bool = False) -> list[Change]:
    """Bring the server's automations to what `wanted` says (or only say what that would do).

    Needs the deployments it starts on the server: a missing one is one clear error."""
    with get_client(sync_client=True) as client:
        ids = {}
        for name in (OPERATOR_ALERT, MONITOR, DISPATCH, LIFECYCLE):
            try:
                ids[name] = client.read_deployment_by_name(f"{name}/{name}").id
            except ObjectNotFound:
                raise BridgeError(
                    f"the Prefect server has no deployment {name}/{name}: run `prefect deploy "
                    "--all` from the project folder (or `bridgebsr up`) first"
                ) from None
        want = wanted(ids, watched(), silence)
        existing = client.read_automations()
        changes = plan(existing, want)
        if dry_run:
            return changes
        for change, automation in zip(changes, want, strict=False):  # `want` first, in order
            if change.action == "create":
                client.create_automation(automation)
            elif change.action == "update" and change.id is not None:
                client.update_automation(change.id, automation)
        for change in changes[len(want) :]:
            if change.id is not None:
                client.delete_automation(change.id)
    return changes
