"""The lifecycle template schema: what a pilot kind's YAML file may say."""

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from models.enums import DayKind, TimeoutOutcome

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$", max_length=60)]
Loc = tuple[str | int, ...]
FieldName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]

CASE_OWNER = "case-owner"
NODE_OWNER = "owner"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dependency(_Spec):
    """Finish-to-start link: this item starts `lag` days after `key` finishes."""

    key: Slug
    lag: int = Field(default=0, ge=0, le=500)
    days: DayKind | None = None

    @classmethod
    def parse(cls, value: object) -> object:
        """Accept the short forms `key` and `key+3` beside the mapping form."""
        if isinstance(value, str):
            key, _, lag = value.partition("+")
            return {"key": key.strip(), "lag": lag.strip() or 0}
        return value


class Stage(_Spec):
    """A named phase of the lifecycle; the case's current stage is the first unfinished one."""

    key: Slug
    title: str = Field(min_length=1)
    description: str = ""


class _Node(_Spec):
    key: Slug
    title: str = Field(min_length=1)
    stage: Slug
    description: str = ""
    days: DayKind | None = None
    after: list[Dependency] = Field(default_factory=list)
    was: Slug | None = None  # the key this item had in an earlier version (a rename)

    @field_validator("after", mode="before")
    @classmethod
    def _short_forms(cls, value: object) -> object:
        if isinstance(value, list):
            return [Dependency.parse(item) for item in value]
        return value


class FieldKind(StrEnum):
    """What a case field holds (`bridgebsr.rules.fields` parses and checks each)."""

    TEXT = "text"
    INTEGER = "integer"
    DECIMAL = "decimal"
    DATE = "date"
    CHOICE = "choice"
    EMAIL = "email"
    URL = "url"
    BOOL = "bool"


class FieldSpec(_Spec):
    """A typed value a case carries: declared for the case (`fields:`) or captured when a
    milestone completes (`capture:`). `min`/`max` bound numbers and dates, `max_length` text."""

    key: FieldName
    kind: FieldKind
    label: str = ""
    help: str = ""
    required: bool = False
    choices: list[Annotated[str, StringConstraints(min_length=1, max_length=60)]] = Field(
        default_factory=list
    )
    min: Decimal | date | None = None
    max: Decimal | date | None = None
    max_length: int | None = Field(default=None, ge=1, le=2000)

    def title(self) -> str:
        """The label people read: the declared one, else the key in words."""
        return self.label or self.key.replace("_", " ").capitalize()


class Direction(StrEnum):
    """Which way an indicator improves: `up`, higher is better; `down`, lower is better."""

    UP = "up"
    DOWN = "down"


class IndicatorSpec(_Spec):
    """An indicator a case measures per region and day (the IP pilot's bench marks): its
    unit, which way is better and, optionally, the value aimed at."""

    key: Slug
    label: str = Field(min_length=1, max_length=120)
    unit: str = Field(default="", max_length=30)
    direction: Direction = Direction.UP
    target: float | None = Field(default=None, allow_inf_nan=False)


class FieldRef(_Spec):
    """A case field captured at a milestone: `required` says whether completing the
    milestone needs a value (one the case already holds counts)."""

    key: FieldName
    required: bool = False


class MilestoneSpec(_Node):
    """A milestone: owned by a role, lasting `duration` days after its predecessors finish;
    `capture` names the fields its completion records (a case field's name, or a field of
    its own declared in full)."""

    owner: Slug = CASE_OWNER
    duration: int = Field(ge=0, le=2000)
    strict: bool | None = None
    capture: list[FieldSpec | FieldRef] = Field(default_factory=list)

    @field_validator("capture", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        if isinstance(value, list):
            return [{"key": item} if isinstance(item, str) else item for item in value]
        return value


class ApproverRule(_Spec):
    """N-of-M: `required` approvals from contacts holding `role`."""

    role: Slug
    required: int = Field(default=1, ge=1, le=50)


class RejectRule(_Spec):
    """Where a rejection sends the case: back to a stage for rework, or to cancellation."""

    rework: Slug | None = None
    cancel: bool = False


class GateSpec(_Node):
    """A decision point: opens when its predecessors finish, decided within `deadline` days."""

    approvers: ApproverRule
    deadline: int = Field(default=10, ge=1, le=500)
    on_timeout: TimeoutOutcome = TimeoutOutcome.ESCALATE
    on_reject: RejectRule = RejectRule(cancel=True)
    evidence: str = ""


class LadderStep(_Spec):
    """One rung of the escalation ladder, relative to a milestone's or gate's due date."""

    key: Slug
    offset: int = Field(ge=-250, le=250, description="working days after due (negative: before)")
    notify: list[Slug] = Field(min_length=1)
    urgent: bool = False


class Template(_Spec):
    """A pilot kind's lifecycle: stages, milestones, gates, roles and its escalation ladder."""

    kind: Slug
    version: int = Field(ge=1)
    title: str = Field(min_length=1)
    description: str = ""
    key_prefix: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2,6}$")]
    days: DayKind = DayKind.WORKING
    strict_dependencies: bool = True
    roles: list[Slug] = Field(min_length=1)
    stages: list[Stage] = Field(min_length=1)
    milestones: list[MilestoneSpec] = Field(min_length=1)
    gates: list[GateSpec] = Field(default_factory=list)
    ladder: list[LadderStep] = Field(default_factory=list)
    fields: list[FieldSpec] = Field(default_factory=list)
    indicators: list[IndicatorSpec] = Field(default_factory=list)

    def field_specs(self) -> dict[str, FieldSpec]:
        """Every field a case of this kind may hold, by key: the case's own, then those its
        milestones capture, in file order."""
        found = {f.key: f for f in self.fields}
        for m in self.milestones:
            for c in m.capture:
                if isinstance(c, FieldSpec):
                    found.setdefault(c.key, c)
        return found

    def captured(self, milestone: str) -> list[FieldSpec]:
        """The fields completing `milestone` records, each as declared, with `required` as
        the capture says (empty for a milestone of no template, such as an added one)."""
        specs = self.field_specs()
        for m in self.milestones:
            if m.key == milestone:
                return [
                    c
                    if isinstance(c, FieldSpec)
                    else specs[c.key].model_copy(update={"required": c.required})
                    for c in m.capture
                    if c.key in specs
                ]
        return []

    def nodes(self) -> Iterator[MilestoneSpec | GateSpec]:
        """Milestones and gates in file order."""
        yield from self.milestones
        yield from self.gates

    def stage_index(self, stage: str) -> int:
        """Position of a stage in the lifecycle."""
        return [s.key for s in self.stages].index(stage)

    def is_strict(self, spec: MilestoneSpec) -> bool:
        """Whether a milestone may start only after its predecessors finish."""
        return self.strict_dependencies if spec.strict is None else spec.strict

    def day_kind(self, spec: MilestoneSpec | GateSpec | Dependency) -> DayKind:
        """How an item's days are counted: its own setting, else the template's."""
        return spec.days or self.days


def template_problems(t: Template) -> list[tuple[Loc, str]]:
    """Cross-reference checks a schema cannot express, each with where it is."""
    problems: list[tuple[Loc, str]] = []
    stages = {s.key for s in t.stages}
    roles = set(t.roles) | {CASE_OWNER}
    problems += _duplicates("stages", [s.key for s in t.stages])
    problems += _duplicates("ladder", [step.key for step in t.ladder])
    keys: dict[str, Loc] = {}
    for section, items in (("milestones", t.milestones), ("gates", t.gates)):
        for i, node in enumerate(items):
            loc: Loc = (section, i)
            if node.key in keys:
                problems.append(((*loc, "key"), f"key '{node.key}' is used twice"))
            keys[node.key] = loc
            if node.stage not in stages:
                problems.append(((*loc, "stage"), f"unknown stage '{node.stage}'"))
    for section, items in (("milestones", t.milestones), ("gates", t.gates)):
        for i, node in enumerate(items):
            assert isinstance(node, MilestoneSpec | GateSpec)
            problems += _node_problems(t, (section, i), node, keys, roles, stages)
    for i, step in enumerate(t.ladder):
        for j, role in enumerate(step.notify):
            if role not in roles | {NODE_OWNER}:
                problems.append((("ladder", i, "notify", j), _unknown_role(role, t)))
    problems += _field_problems(t)
    problems += _duplicates("indicators", [i.key for i in t.indicators])
    problems += _rename_problems(t, keys)
    if not problems:
        problems += _cycles(t, keys)
    return problems


def _field_problems(t: Template) -> list[tuple[Loc, str]]:
    """Field declarations: unique keys, choices for a choice, bounds that fit the kind, and
    captures that name a case field or declare one of their own."""
    problems = _duplicates("fields", [f.key for f in t.fields])
    problems = [(loc, msg.replace("key '", "field '")) for loc, msg in problems]
    case_fields = {f.key for f in t.fields}
    declared = set(case_fields)
    for i, spec in enumerate(t.fields):
        problems += _spec_problems(("fields", i), spec)
    for i, m in enumerate(t.milestones):
        for j, c in enumerate(m.capture):
            loc: Loc = ("milestones", i, "capture", j)
            if isinstance(c, FieldRef):
                if c.key not in case_fields:
                    problems.append(
                        (
                            (*loc, "key"),
                            f"'{c.key}' is no case field; declare it under fields, "
                            "or give its kind here",
                        )
                    )
            elif c.key in declared:
                problems.append(
                    (
                        (*loc, "key"),
                        f"field '{c.key}' is declared twice; name it only "
                        "(capture: [" + c.key + "]) to capture a case field",
                    )
                )
            else:
                declared.add(c.key)
                problems += _spec_problems(loc, c)
    return problems


def _rename_problems(t: Template, keys: dict[str, Loc]) -> list[tuple[Loc, str]]:
    """A `was` names a key no item of this version uses, and only one item claims it."""
    problems: list[tuple[Loc, str]] = []
    claimed: set[str] = set()
    for node in t.nodes():
        if node.was is None:
            continue
        loc: Loc = (*keys[node.key], "was")
        if node.was in keys:
            problems.append(
                (
                    loc,
                    f"'{node.was}' is still an item of this version; a rename "
                    "names a key the new version no longer uses",
                )
            )
        elif node.was in claimed:
            problems.append((loc, f"'{node.was}' is claimed by two items; rename it once"))
        claimed.add(node.was)
    return problems


_NUMBERS = (FieldKind.INTEGER, FieldKind.DECIMAL)


def _spec_problems(loc: Loc, spec: FieldSpec) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    if spec.kind is FieldKind.CHOICE:
        if not spec.choices:
            problems.append(((*loc, "choices"), "a choice field needs `choices: [a, b, ...]`"))
        elif len({c.casefold() for c in spec.choices}) != len(spec.choices):
            problems.append(((*loc, "choices"), "a choice is listed twice"))
    elif spec.choices:
        problems.append(((*loc, "choices"), f"only a choice field has choices, not {spec.kind}"))
    for bound in ("min", "max"):
        value = getattr(spec, bound)
        if value is None:
            continue
        if spec.kind in _NUMBERS and not isinstance(value, Decimal):
            problems.append(((*loc, bound), f"{bound} of a {spec.kind} field is a number"))
        elif spec.kind is FieldKind.DATE and not isinstance(value, date):
            problems.append(((*loc, bound), f"{bound} of a date field is a date (2026-01-31)"))
        elif spec.kind not in (*_NUMBERS, FieldKind.DATE):
            problems.append(((*loc, bound), f"a {spec.kind} field has no {bound}"))
    if spec.min is not None and spec.max is not None and type(spec.min) is type(spec.max):
        if spec.min > spec.max:  # type: ignore[operator]
            problems.append(((*loc, "max"), f"max {spec.max} is below min {spec.min}"))
    if spec.max_length is not None and spec.kind is not FieldKind.TEXT:
        problems.append(((*loc, "max_length"), "only a text field has max_length"))
    return problems


def _node_problems(
    t: Template,
    loc: Loc,
    node: MilestoneSpec | GateSpec,
    keys: dict[str, Loc],
    roles: set[str],
    stages: set[str],
) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    for j, dep in enumerate(node.after):
        if dep.key not in keys:
            problems.append(((*loc, "after", j, "key"), f"unknown predecessor '{dep.key}'"))
        elif dep.key == node.key:
            problems.append(((*loc, "after", j, "key"), "an item cannot follow itself"))
    if isinstance(node, MilestoneSpec) and node.owner not in roles:
        problems.append(((*loc, "owner"), _unknown_role(node.owner, t)))
    if isinstance(node, GateSpec):
        if node.approvers.role not in roles:
            problems.append(((*loc, "approvers", "role"), _unknown_role(node.approvers.role, t)))
        rework = node.on_reject.rework
        if rework is not None and rework not in stages:
            problems.append(((*loc, "on_reject", "rework"), f"unknown stage '{rework}'"))
        if rework is None and not node.on_reject.cancel:
            problems.append(((*loc, "on_reject"), "say `rework: STAGE` or `cancel: true`"))
    return problems


def _unknown_role(role: str, t: Template) -> str:
    return f"unknown role '{role}'; declare it under roles ({', '.join(t.roles)})"


def _duplicates(section: str, keys: list[str]) -> list[tuple[Loc, str]]:
    seen: set[str] = set()
    problems: list[tuple[Loc, str]] = []
    for i, key in enumerate(keys):
        if key in seen:
            problems.append(((section, i, "key"), f"key '{key}' is used twice"))
        seen.add(key)
    return problems


def _cycles(t: Template, keys: dict[str, Loc]) -> list[tuple[Loc, str]]:
    graph = {node.key: [d.key for d in node.after] for node in t.nodes()}
    state: dict[str, int] = {}

    def visit(key: str, path: list[str]) -> list[str] | None:
        state[key] = 1
        for pred in graph[key]:
            if state.get(pred) == 1:
                return [*path[path.index(pred) :], pred] if pred in path else [key, pred]
            if pred not in state and (found := visit(pred, [*path, pred])):
                return found
        state[key] = 2
        return None

    for key in graph:
        if key not in state and (cycle := visit(key, [key])):
            return [((*keys[key], "after"), "dependency cycle: " + " <- ".join(cycle))]
    return []
