"""A case, its milestones and its gates as plain rows: what the use cases change.

The use cases read a case with Core statements into these rows, apply the lifecycle rules
and the planner to them, and write back what moved (`bridgebsr.store.case_rows.load_case`,
`store.save_case`). Plain slotted objects cost a fraction of ORM instances to build, read and
compare, which is most of a change's time on a store close to the database. Each class has
exactly its table's columns (a test holds them to that), so a row read is a whole row.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from functools import lru_cache
from operator import attrgetter
from typing import Any, NamedTuple, TypeVar

from models import CaseStatus, DayKind, GateStatus, MilestoneStatus, TimeoutOutcome


@dataclass(slots=True, eq=False)
class CaseRow:
    """One row of `cases`."""

    id: int
    key: str
    kind: str
    template_version: int
    title: str
    lead_partner_id: int
    owner_id: int
    country: str
    status: CaseStatus
    current_stage: str | None
    start_date: date
    target_date: date
    forecast_date: date
    baseline_target: date
    fields: dict[str, Any]
    opened_at: datetime
    closed_at: datetime | None
    updated_at: datetime
    version: int


@dataclass(slots=True, eq=False)
class MilestoneRow:
    """One row of `milestones` (`id` is None until it is written)."""

    id: int | None
    case_id: int
    key: str
    seq: int
    title: str
    stage: str
    owner_role: str
    owner_id: int | None
    duration: int
    days: DayKind
    strict: bool
    depends_on: list[dict[str, Any]]
    baseline_start: date
    baseline_due: date
    planned_start: date
    planned_due: date
    forecast_start: date
    forecast_due: date
    critical: bool = False
    adhoc: bool = False
    round: int = 1
    status: MilestoneStatus = MilestoneStatus.PLANNED
    started_on: date | None = None
    finished_on: date | None = None
    overdue_on: date | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class GateRow:
    """One row of `gates` (`id` is None until it is written)."""

    id: int | None
    case_id: int
    key: str
    seq: int
    title: str
    stage: str
    approver_role: str
    required: int
    deadline_days: int
    days: DayKind
    on_timeout: TimeoutOutcome
    rework_stage: str | None
    depends_on: list[dict[str, Any]]
    baseline_start: date
    baseline_due: date
    planned_start: date
    planned_due: date
    forecast_start: date
    forecast_due: date
    critical: bool = False
    status: GateStatus = GateStatus.PENDING
    round: int = 1
    opened_on: date | None = None
    deadline: date | None = None
    decided_on: date | None = None
    expired_on: date | None = None


Node = MilestoneRow | GateRow


class Organisation(NamedTuple):
    """The columns of a partner a change reads."""

    id: int
    code: str
    country: str
    region: str
    timezone: str


# What a change may move on each row, status first (`store.save_case` checks it against the
# lifecycle rules); the rest is fixed when the case is opened.
CASE_CHANGES = (
    "status",
    "current_stage",
    "forecast_date",
    "closed_at",
    "title",
    "target_date",
    "lead_partner_id",
    "owner_id",
    "fields",  # a change assigns a new dict (never edits the one read), so it is compared
)
MILESTONE_CHANGES = (
    "status",
    "owner_id",
    "planned_start",
    "planned_due",
    "round",
    "started_on",
    "finished_on",
    "overdue_on",
    "forecast_start",
    "forecast_due",
    "critical",
    "fields",  # assigned a new dict on completion, like the case's
)
GATE_CHANGES = (
    "status",
    "planned_start",
    "planned_due",
    "round",
    "opened_on",
    "deadline",
    "decided_on",
    "expired_on",
    "forecast_start",
    "forecast_due",
    "critical",
)


def columns(row_type: type[Any]) -> tuple[str, ...]:
    """A row class's columns, in declaration order."""
    return tuple(f.name for f in fields(row_type))


R = TypeVar("R", CaseRow, MilestoneRow, GateRow)


def clone(row: R) -> R:
    """A row of its own with the same values (a shallow copy: `depends_on` is shared, and
    rows only read it)."""
    row_type = type(row)
    names = _COLUMNS.get(row_type)
    if names is None:
        names = _COLUMNS[row_type] = columns(row_type)
    return row_type(*_getter(names)(row))


_COLUMNS: dict[type[Any], tuple[str, ...]] = {}


def values(row: Any, names: tuple[str, ...]) -> tuple[Any, ...]:
    """The row's values of these columns."""
    found = _getter(names)(row)
    return found if len(names) > 1 else (found,)  # one name gives the bare value


@lru_cache(maxsize=32)
def _getter(names: tuple[str, ...]) -> Callable[[Any], Any]:
    return attrgetter(*names)
