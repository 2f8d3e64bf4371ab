"""Upgrading a running case to a newer version of its template: the plan, and applying it.

Pure: the case's template version, the new one and the case's rows in; the plan (`Upgrade`:
items added, removed, renamed, moved to another stage, retimed; new case fields; refusals)
out, and `apply` changes the case's `Plan` by it. An item of the case is the new version's
item with the same key, or the one that names it in `was:` (a rename); an item of the old
version that neither names is removed, which is refused once it has started. Items not
started take the new durations, links and owners' roles; started and finished ones keep
their dates and facts (only their key, title and stage follow the new version). Items added
to one case only (`adhoc`) stay as they are.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from bridgebsr.errors import IllegalTransition
from bridgebsr.rules import fields as field_rules
from bridgebsr.rules import planning, progress
from bridgebsr.rules.lifecycle import Change
from bridgebsr.rules.opening import rows_of
from bridgebsr.rules.planning import Moved, Plan
from bridgebsr.rules.rows import GateRow, MilestoneRow, Node
from models import CaseStatus, GateStatus, MilestoneStatus, Template

RUNNING = frozenset({CaseStatus.ACTIVE, CaseStatus.ON_HOLD})
_MILESTONE_SHAPE = ("duration", "days", "strict", "depends_on", "owner_role")
_GATE_SHAPE = (
    "deadline_days", "days", "depends_on", "approver_role", "required", "on_timeout",
    "rework_stage",
)  # fmt: skip


@dataclass(frozen=True)
class Upgrade:
    """The plan of one case's upgrade: what it changes, and why it cannot be done if not."""

    case: str
    old: int
    new: int
    added: dict[str, str] = field(default_factory=dict)  # key -> "milestone" | "gate"
    removed: dict[str, str] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)  # old key -> new key
    moved: dict[str, list[str]] = field(default_factory=dict)  # new key -> [old, new stage]
    retimed: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> what -> [a, b]
    fields: list[str] = field(default_factory=list)  # fields the new version adds
    kept_fields: list[str] = field(default_factory=list)  # values kept, no longer declared
    ladder: dict[str, list[str]] = field(default_factory=dict)  # added / removed steps
    refusals: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The plan as JSON (the `case.migrate` event's `after`, `--json`)."""
        return {
            "case": self.case,
            "template_version": self.new,
            "added": self.added,
            "removed": self.removed,
            "renamed": self.renamed,
            "moved": self.moved,
            "retimed": self.retimed,
            "fields": self.fields,
            "kept_fields": self.kept_fields,
            "ladder": self.ladder,
        }


def started(node: Node) -> bool:
    """Whether an item has any progress to keep: begun, finished, voted on or reworked."""
    if node.round > 1:
        return True
    if isinstance(node, MilestoneRow):
        return node.status is not MilestoneStatus.PLANNED or node.started_on is not None
    return node.status is not GateStatus.PENDING or node.opened_on is not None


def plan_upgrade(old: Template, new: Template, plan: Plan) -> Upgrade:
    """What upgrading the case of `plan` from `old` (its pinned version) to `new` changes."""
    case = plan.case
    up = Upgrade(case.key, old.version, new.version)
    if case.status not in RUNNING:
        up.refusals.append(f"{case.key}: it is {case.status.value}; only running cases migrate")
    if new.kind != case.kind or new.version <= case.template_version:
        up.refusals.append(
            f"{case.key}: it is at {case.kind} version {case.template_version}; "
            "give a newer --to-version"
        )
    _items(new, plan, up)
    _adhoc(new, plan, up)
    _fields(old, new, case.fields, up)
    steps_old, steps_new = {s.key for s in old.ladder}, {s.key for s in new.ladder}
    up.ladder.update(added=sorted(steps_new - steps_old), removed=sorted(steps_old - steps_new))
    return up


def _kind(node: object) -> str:
    return "milestone" if isinstance(node, MilestoneRow) else "gate"


def target(new: Template, node: Node) -> str | None:
    """The key of the new version's item this template item becomes (None: removed)."""
    specs = {n.key: n for n in new.nodes()}
    renames = {n.was: n.key for n in new.nodes() if n.was}
    key = node.key if node.key in specs else renames.get(node.key)
    if key is None or _kind(node) != _kind_of(new, key):
        return None
    return key


def _kind_of(new: Template, key: str) -> str:
    return "milestone" if any(m.key == key for m in new.milestones) else "gate"


def _items(new: Template, plan: Plan, up: Upgrade) -> None:
    fresh = _fresh(new)
    kept: set[str] = set()
    items = [n for n in plan.nodes() if not (isinstance(n, MilestoneRow) and n.adhoc)]
    targets = {n.key: target(new, n) for n in items}
    up.renamed.update((k, t) for k, t in targets.items() if t is not None and t != k)
    for node in items:
        key = targets[node.key]
        if key is None:
            up.removed[node.key] = _kind(node)
            if started(node):
                up.refusals.append(
                    f"{plan.case.key}: {_kind(node)} {node.key} is {node.status.value} and "
                    f"version {new.version} drops it; a started item is never removed"
                )
            continue
        kept.add(key)
        row = fresh[key]
        if row.stage != node.stage:
            up.moved[key] = [node.stage, row.stage]
        if not started(node):
            was = {n: _shape(node, n, up.renamed) for n in _names(node)}
            now = {n: _shape(row, n, {}) for n in _names(node)}
            if diff := {n: [was[n], now[n]] for n in was if was[n] != now[n]}:
                up.retimed[key] = diff
    up.added.update((k, _kind(r)) for k, r in fresh.items() if k not in kept)


def _names(node: Node) -> tuple[str, ...]:
    return _MILESTONE_SHAPE if isinstance(node, MilestoneRow) else _GATE_SHAPE


def _shape(node: Node, name: str, renamed: Mapping[str, str]) -> Any:
    value = getattr(node, name)
    if name == "depends_on":
        return [f"{renamed.get(d['key'], d['key'])}+{d['lag']} {d['days']}" for d in value]
    return value.value if hasattr(value, "value") else value


def _adhoc(new: Template, plan: Plan, up: Upgrade) -> None:
    """Items added to this case only must still fit: their key free, stage there, and
    the item they follow kept."""
    keys = {n.key for n in new.nodes()}
    stages = {s.key for s in new.stages}
    for m in plan.milestones:
        if not m.adhoc:
            continue
        where = f"{plan.case.key}: added milestone {m.key}"
        if m.key in keys:
            up.refusals.append(f"{where} has a key version {new.version} gives a template item")
        if m.stage not in stages:
            up.refusals.append(f"{where} is in stage {m.stage}, which version {new.version} drops")
        for d in m.depends_on:
            if d["key"] in up.removed:
                up.refusals.append(f"{where} follows {d['key']}, which version {new.version} drops")


def _fields(old: Template, new: Template, held: Mapping[str, Any], up: Upgrade) -> None:
    """The case's values must hold under the new declarations; a value of a field the new
    version no longer declares is kept (a recorded fact is never lost)."""
    specs = new.field_specs()
    before = old.field_specs()
    up.fields.extend(k for k in specs if k not in before)  # the case's, then captures
    for name, value in held.items():
        spec = specs.get(name)
        if spec is None:
            up.kept_fields.append(name)
            continue
        try:
            field_rules.parse(spec, value)
        except ValueError as exc:
            up.refusals.append(
                f"{up.case}: field {name}: {exc} under version {new.version}; "
                "change it with `bridgebsr case set` first"
            )


def _fresh(new: Template) -> dict[str, Node]:
    milestones, gates = rows_of(new)
    nodes: list[Node] = [*milestones, *gates]
    return {r.key: r for r in nodes}


def apply(
    up: Upgrade,
    plan: Plan,
    new: Template,
    owners: Mapping[str, int | None],
    today: date,
) -> tuple[list[Change], list[Moved]]:
    """Change the case's rows by the plan (refused if it has refusals), re-pin the case,
    reforecast it (`progress.settle`) and make the forecast the agreed plan of what was
    added or retimed and the open items after them. `owners` holds, for each owner role of
    an added or re-roled milestone, who holds it for this case. Returns the audit changes
    (`case.migrate` first) and the items whose agreed dates moved."""
    if up.refusals:
        raise IllegalTransition(up.refusals[0])
    fresh = _fresh(new)
    milestones = [m for m in plan.milestones if m.adhoc or m.key not in up.removed]
    gates = [g for g in plan.gates if g.key not in up.removed]
    kept: list[Node] = [*milestones, *gates]
    for node in kept:
        if isinstance(node, MilestoneRow) and node.adhoc:
            node.depends_on = _rekeyed(node.depends_on, up)
            continue
        _follow(node, fresh[up.renamed.get(node.key, node.key)], up, owners)
    for key in up.added:
        row = fresh[key]
        row.case_id = plan.case.id
        if isinstance(row, MilestoneRow):
            row.owner_id = owners.get(row.owner_role)
            milestones.append(row)
        else:
            gates.append(row)
    for i, m in enumerate(m for m in milestones if m.adhoc):
        m.seq = len(new.milestones) + i
    plan.milestones[:] = sorted(milestones, key=lambda m: m.seq)  # type: ignore[index]
    plan.gates[:] = sorted(gates, key=lambda g: g.seq)  # type: ignore[index]
    plan.case.template_version = new.version
    change = Change("case.migrate", None, {"template_version": up.old}, up.summary())
    more = progress.settle(plan, new, today, [change])
    moved = _agree(up, plan, today)
    change.after["items"] = {
        m.node.key: {
            "start": m.node.planned_start.isoformat(),
            "due": m.node.planned_due.isoformat(),
        }
        for m in moved
    }
    return [change, *more], moved


def _follow(node: Node, row: Node, up: Upgrade, owners: Mapping[str, int | None]) -> None:
    """A kept item takes its new key, place, title and stage; one not started also its new
    durations, links and roles; a started one keeps them (its links re-keyed), but a gate
    takes its new outcomes (on timeout, on rejection: the new version's stages)."""
    node.key, node.seq, node.title, node.stage = row.key, row.seq, row.title, row.stage
    if started(node):
        node.depends_on = _rekeyed(node.depends_on, up)
        if isinstance(node, GateRow) and isinstance(row, GateRow):  # what happens from now on
            node.on_timeout, node.rework_stage = row.on_timeout, row.rework_stage
        return
    for name in _names(node):
        setattr(node, name, getattr(row, name))
    if isinstance(node, MilestoneRow) and node.key in up.retimed:
        if "owner_role" in up.retimed[node.key]:
            node.owner_id = owners.get(node.owner_role)


def _rekeyed(depends_on: list[dict[str, Any]], up: Upgrade) -> list[dict[str, Any]]:
    """Links with renamed predecessors' new keys; links to removed items dropped."""
    return [
        {**d, "key": up.renamed.get(d["key"], d["key"])}
        for d in depends_on
        if d["key"] not in up.removed
    ]


def _agree(up: Upgrade, plan: Plan, today: date) -> list[Moved]:
    """Added items: their forecast is their original and agreed plan (as an item added to one
    case). Retimed items and the open items after them not started: the forecast becomes
    their agreed plan (`planning.agree_forecast`)."""
    by_key = {n.key: n for n in plan.nodes()}
    for key in up.added:
        n = by_key[key]
        n.baseline_start = n.planned_start = n.forecast_start
        n.baseline_due = n.planned_due = n.forecast_due
    moving = set(up.retimed) | set(up.added)
    for key in list(moving):
        moving |= planning.downstream(plan, key)
    moving = {k for k in moving - set(up.added) if not started(by_key[k])}
    return planning.agree_forecast(plan, moving, today)


def owner_roles(up: Upgrade, new: Template) -> set[str]:
    """The owner roles of milestones the plan adds or re-roles (whose holders `apply` needs)."""
    roles = {m.owner for m in new.milestones if m.key in up.added}
    roles |= {r["owner_role"][1] for r in up.retimed.values() if "owner_role" in r}
    return roles


def rename_problems(template: Template, earlier: Sequence[Template]) -> list[str]:
    """A `was:` must name an item of some earlier version of the kind (`earlier`: those
    known); one line per item that names none."""
    before = [t for t in earlier if t.kind == template.kind and t.version < template.version]
    keys = {n.key for t in before for n in t.nodes()}
    versions = ", ".join(str(t.version) for t in before) or "none"
    return [
        f"{template.kind} v{template.version}: {n.key}: was: '{n.was}' names no item of an "
        f"earlier version (known: {versions}); give the key it had"
        for n in template.nodes()
        if n.was is not None and n.was not in keys
    ]
