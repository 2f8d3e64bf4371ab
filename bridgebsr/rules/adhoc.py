"""Items added to one case only (ad-hoc milestones, CMMN's discretionary items) and their
removal: pure rules over a case's `Plan`.

An added milestone follows one item of the case (`--after ITEM[+lag]`) and is dated by the
schedule rule every item follows (`rules.schedule`, through `planning.items`): it starts `lag`
days after its predecessor's forecast, in its owner's calendar, and no earlier than today; its
original baseline and its agreed plan are those dates as it is added. It may be removed only
while it has not started and nothing depends on it.
"""

from datetime import date

from pydantic import ValidationError

from bridgebsr.errors import IllegalTransition, InvalidInput, NotFound
from bridgebsr.rules import planning
from bridgebsr.rules.lifecycle import Change
from bridgebsr.rules.opening import links
from bridgebsr.rules.rows import MilestoneRow, Node
from bridgebsr.rules.schedule import schedule
from models import DayKind, Dependency, MilestoneSpec, MilestoneStatus, Template


def parse_after(text: str) -> Dependency:
    """`--after ITEM[+lag]` as a dependency (the short form templates use)."""
    try:
        return Dependency.model_validate(Dependency.parse(text.strip()))
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "value"
        why = exc.errors()[0]["msg"]
        raise InvalidInput(
            f"--after '{text}': {where}: {why}; give ITEM or ITEM+DAYS (0-500), e.g. kickoff+5"
        ) from None


def add_milestone(
    plan: planning.Plan,
    template: Template,
    *,
    key: str,
    title: str,
    owner_role: str,
    owner_id: int,
    owner: str,
    duration: int,
    after: Dependency,
    stage: str | None,
    days: DayKind | None,
    today: date,
) -> tuple[MilestoneRow, Change]:
    """A new milestone of this case only, after `after`, dated and appended to the plan (the
    caller's plan calendars must hold the owner's); the `milestone.add` change. The caller
    reforecasts the case."""
    case = plan.case
    nodes = {n.key: n for n in plan.nodes()}
    key = key.strip()
    if key in nodes:
        raise IllegalTransition(
            f"case {case.key} already has an item '{key}'; choose another --key"
        )
    predecessor = nodes.get(after.key)
    if predecessor is None:
        known = ", ".join(nodes)
        raise NotFound(f"--after: case {case.key} has no item '{after.key}' (it has: {known})")
    stages = [s.key for s in template.stages]
    if stage is not None and stage not in stages:
        raise InvalidInput(f"--stage '{stage}' is no stage of {case.kind}: {', '.join(stages)}")
    spec = _spec(key, title, stage or predecessor.stage, owner_role, duration, after, days)
    seq = max((m.seq for m in plan.milestones), default=-1) + 1
    row = MilestoneRow(
        id=None,  # given when the row is written
        case_id=case.id,
        key=spec.key,
        seq=seq,
        title=spec.title,
        stage=spec.stage,
        owner_role=owner_role,
        owner_id=owner_id,
        duration=spec.duration,
        days=template.day_kind(spec),
        strict=template.is_strict(spec),
        depends_on=links(spec, template),
        baseline_start=today,
        baseline_due=today,
        planned_start=today,
        planned_due=today,
        forecast_start=today,
        forecast_due=today,
        adhoc=True,
    )
    plan.milestones.append(row)  # type: ignore[attr-defined]
    start, due = _dates(plan, row, today)
    row.baseline_start = row.planned_start = row.forecast_start = start
    row.baseline_due = row.planned_due = row.forecast_due = due
    change = Change(
        "milestone.add",
        row.key,
        {},
        {
            "title": row.title,
            "stage": row.stage,
            "owner": owner,
            "owner_role": owner_role,
            "after": after.key,
            "lag": after.lag,
            "duration": row.duration,
            "days": row.days.value,
            "planned_start": start.isoformat(),
            "planned_due": due.isoformat(),
        },
    )
    return row, change


def _spec(
    key: str,
    title: str,
    stage: str,
    owner_role: str,
    duration: int,
    after: Dependency,
    days: DayKind | None,
) -> MilestoneSpec:
    """The new item as a template would declare it, checked by the same schema."""
    fields = {
        "key": key,
        "title": title.strip(),
        "stage": stage,
        "owner": owner_role,
        "duration": duration,
        "after": [after],
        "days": days,
    }
    try:
        return MilestoneSpec.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = str(error["loc"][0]) if error["loc"] else "value"
        raise InvalidInput(
            f"--{where} '{fields.get(where, '')}': {error['msg']}"
            + (" (a key is lower case words joined by -)" if where == "key" else "")
        ) from None


def _dates(plan: planning.Plan, row: MilestoneRow, today: date) -> tuple[date, date]:
    """The new item's start and due: where the schedule rule places it after its
    predecessor's forecast, and no earlier than today (an item added after finished work
    starts now), in its owner's calendar."""
    slot = schedule(planning.items(plan, actual=True), plan.case.start_date, today)[row.key]
    calendar = plan.calendar(row)
    earliest = calendar.roll_forward(today) if row.days is DayKind.WORKING else today
    start = max(slot.start, earliest)
    return start, calendar.add(start, row.duration, row.days)


def remove_milestone(plan: planning.Plan, milestone: MilestoneRow, owner: str | None) -> Change:
    """Take an ad-hoc milestone that has not started out of the plan (refused for a template
    item, one started or finished, or one other items depend on); the `milestone.remove`
    change. The caller reforecasts the case."""
    what = f"milestone {milestone.key} of {plan.case.key}"
    if not milestone.adhoc:
        raise IllegalTransition(
            f"cannot remove {what}: it comes from the case's template; waive it instead"
        )
    if milestone.status is not MilestoneStatus.PLANNED:
        raise IllegalTransition(
            f"cannot remove {what}: it is {milestone.status.value} (only a planned item that "
            "has not started may be removed); waive it instead"
        )
    dependents = [n.key for n in plan.nodes() if _depends_on(n, milestone.key)]
    if dependents:
        raise IllegalTransition(
            f"cannot remove {what}: {', '.join(dependents)} depend(s) on it; remove or "
            "reschedule those first"
        )
    plan.milestones.remove(milestone)  # type: ignore[attr-defined]
    return Change(
        "milestone.remove",
        milestone.key,
        {
            "title": milestone.title,
            "status": milestone.status.value,
            "owner": owner,
            "planned_due": milestone.planned_due.isoformat(),
        },
        {},
    )


def _depends_on(node: Node, key: str) -> bool:
    return any(d["key"] == key for d in node.depends_on)
