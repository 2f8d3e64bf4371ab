"""The case page: one case's plan, gates and latest history as the markdown artifact
`case-<key>`, the page pilot leads read in the UI (Artifacts, search the case key).

`publish_case_page` is the one place that writes it. It is called after every change a flow
makes to a case (the desk flows, `pilot-lifecycle`, the monitor for the cases its pass
touched) and after the CLI's changes when a Prefect API is configured (`sync_case_runs`).
"""

from datetime import UTC, datetime
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.context import FlowRunContext, TaskRunContext

from bridgebsr.office import queries
from bridgebsr.store.db import read_session
from flows.common import resolve_now, runtime

HISTORY_SHOWN = 12  # the latest changes on the page; `bridgebsr case show` lists them all


def artifact_key(case_key: str) -> str:
    """The artifact key of a case's page (artifact keys are lower case)."""
    return f"case-{case_key.strip().lower()}"


def publish_case_page(case_key: str, now: datetime | None = None) -> str:
    """Publish the case's page as it stands now, as a new version of `case-<key>`; its key."""
    rt = runtime()
    today = resolve_now(now, rt).astimezone(rt.settings.zone()).date()
    with read_session(rt.engine) as session:
        shown = queries.show_case(session=session, key=case_key, today=today)
    key = artifact_key(shown["key"])
    # Through the client, so a page is published the same way inside a run (and belongs to
    # it) and outside one (the CLI after a change), where Prefect's artifact helpers warn.
    flow_run, task_run = FlowRunContext.get(), TaskRunContext.get()
    page = ArtifactCreate(
        key=key,
        type="markdown",
        data=case_markdown(shown),
        description=f"{shown['key']}: plan and progress as of {today} (version {shown['version']})",
        flow_run_id=flow_run.flow_run.id if flow_run and flow_run.flow_run else None,
        task_run_id=task_run.task_run.id if task_run else None,
    )
    with get_client(sync_client=True) as client:
        client.create_artifact(page)
    return key


def case_markdown(shown: dict[str, Any], history: int = HISTORY_SHOWN) -> str:
    """A case as markdown (`shown` as `queries.show_case` gives it): header, milestones with
    their original, agreed and forecast due dates, gates, rebaselines, the latest changes.
    Dates come first and people last: the UI's artifact page is narrow and cuts the right."""
    lines = [
        f"# {shown['key']} · {_text(shown['title'])}",
        "",
        f"{shown['kind']} · **{shown['status']}** · stage **{shown['stage'] or '-'}** · "
        f"owner {shown['owner']} ({shown['partner']}) · version **{shown['version']}**",
        "",
        f"Target {shown['target']} (originally {shown['baseline_target']}), "
        f"forecast **{shown['forecast']}** ({shown['slip_days']:+d} days).",
        "",
        "## Milestones",
        "",
        "| milestone | status | original | agreed | forecast | late | owner |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in shown["milestones"]:
        late = "LATE" if m["overdue"] else ""
        done = f" ({m['finished_on']})" if m["finished_on"] else ""
        lines.append(
            f"| {m['key']}{' *' if m['critical'] else ''} | {m['status']}{done} | "
            f"{m['baseline_due']} | {m['planned_due']} | {m['forecast_due']} | {late} | "
            f"{m['owner'] or m['owner_role']} |"
        )
    lines += ["", "\\* on the critical path", "", "## Gates", ""]
    lines += ["| gate | status | agreed | forecast | deadline | round | approvers |"]
    lines += ["|---|---|---|---|---|---|---|"]
    for g in shown["gates"]:
        lines.append(
            f"| {g['key']} | {g['status']} | {g['planned_due']} | {g['forecast_due']} | "
            f"{g['deadline'] or '-'} | {g['round']} | {g['approvers']} |"
        )
    if shown["baselines"]:
        lines += ["", "## Rebaselines", "", "| # | when | who | target | why |"]
        lines += ["|---|---|---|---|---|"]
        lines += [
            f"| {b['number']} | {b['at'][:10]} | {b['who']} | {b['target']} | {_text(b['why'])} |"
            for b in shown["baselines"]
        ]
    latest = shown["events"][-history:][::-1]
    lines += ["", f"## Latest changes ({len(latest)} of {len(shown['events'])}, newest first)"]
    lines += ["", "| when (UTC) | what | item | who | from | change | note |"]
    lines += ["|---|---|---|---|---|---|---|"]
    for e in latest:
        at = datetime.fromisoformat(e["at"]).astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        lines.append(
            f"| {at} | {e['kind']} | {e['subject'] or ''} | {e['actor']} | {e['source']} | "
            f"{_text(_after(e['after']))} | {_text(e['comment'] or '')} |"
        )
    return "\n".join(lines)


def _after(after: dict[str, Any] | None) -> str:
    """What a change set, `name=value`, briefly."""
    return ", ".join(f"{k}={v}" for k, v in (after or {}).items())[:120]


def _text(value: str) -> str:
    """Stored text as one markdown table cell: no line breaks, pipes escaped."""
    return " ".join(str(value).split()).replace("|", "\\|")
