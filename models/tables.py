"""The case store's tables. Statuses change by the lifecycle rules (`bridgebsr.rules.lifecycle`),
which the use cases check on every change they write."""

from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, LargeBinary, Text, UniqueConstraint, text
from sqlalchemy import Enum as SAEnum
from sqlmodel import Field, SQLModel

from models.enums import (
    CaseStatus,
    DayKind,
    Decision,
    GateStatus,
    MilestoneStatus,
    PartnerKind,
    Source,
    TimeoutOutcome,
)


def stored_enum(enum: type[StrEnum]) -> SAEnum:
    """An enum column stored as its readable value ('in_progress'), not the member name, as
    plain text."""
    return SAEnum(
        enum,
        values_callable=lambda members: [m.value for m in members],
        native_enum=False,
        length=40,
        validate_strings=True,
    )


def utcnow() -> datetime:
    """The current time, UTC-aware (default for row timestamps only; rules take `now`)."""
    return datetime.now(UTC)


def quiet_hours(start: time | None, end: time | None) -> tuple[time, time] | None:
    """A contact's quiet hours from its two columns: both ends, else none at all (None)."""
    return (start, end) if start is not None and end is not None else None


class Partner(SQLModel, table=True):
    """An organisation in the consortium or served by it."""

    __tablename__ = "partners"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, index=True, max_length=40)
    name: str = Field(max_length=200)
    kind: PartnerKind = Field(sa_type=stored_enum(PartnerKind))
    country: str = Field(max_length=2)
    region: str = Field(max_length=120)
    timezone: str = Field(max_length=64)


class Contact(SQLModel, table=True):
    """A person: owner of milestones, approver of gates, recipient of notices."""

    __tablename__ = "contacts"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True, index=True, max_length=254)
    name: str = Field(max_length=200)
    partner_id: int = Field(foreign_key="partners.id", index=True)
    role: str = Field(max_length=60, index=True)
    country: str = Field(max_length=2)
    timezone: str = Field(max_length=64)
    channels: str = Field(
        default="email,chat",
        max_length=40,
        description="Where notices may reach this person: email, chat or both.",
    )
    digest: bool = Field(
        default=False, description="Gather what is not urgent into one message a day."
    )
    # None means no quiet hours; the ORM would replace a None by a column default, so the
    # defaults live on the model only.
    quiet_from: time | None = Field(
        default=time(21, 0), sa_column_kwargs={"default": None}, description="Night starts."
    )
    quiet_until: time | None = Field(
        default=time(7, 0), sa_column_kwargs={"default": None}, description="Night ends."
    )
    daily_cap: int = Field(
        default=20, description="Messages a day at most; the rest in one summary (0: no cap)."
    )
    leads: str = Field(
        default="",
        max_length=300,
        description=(
            "The pilot kinds this person leads, comma separated: for a case of such a kind they "
            "stand in for a role no one at the case's lead partner holds."
        ),
    )
    retired_at: datetime | None = Field(
        default=None,
        description="When this person left: their history stays, no notice reaches them.",
    )
    successor_id: int | None = Field(
        default=None,
        foreign_key="contacts.id",
        description="Who took over their open items, team roles and pending votes.",
    )
    link_generation: int = Field(
        default=1,
        sa_column_kwargs={"server_default": "1"},
        description="Generation of this person's signed links: raising it revokes every link "
        "issued before.",
    )

    @property
    def quiet(self) -> tuple[time, time] | None:
        """Their quiet hours (`quiet_hours`), None for none."""
        return quiet_hours(self.quiet_from, self.quiet_until)


class TemplateVersion(SQLModel, table=True):
    """The exact template a case was opened with, kept so later edits never change it."""

    __tablename__ = "template_versions"
    __table_args__ = (UniqueConstraint("kind", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=60)
    version: int
    checksum: str = Field(max_length=64)
    body: dict[str, Any] = Field(sa_type=JSON)
    first_used_at: datetime = Field(default_factory=utcnow)


class KeySequence(SQLModel, table=True):
    """Last number handed out per key prefix and year (IP-2026-0001, ...)."""

    __tablename__ = "key_sequences"

    prefix: str = Field(primary_key=True, max_length=6)
    year: int = Field(primary_key=True)
    last: int = 0


class Case(SQLModel, table=True):
    """One tracked case of a pilot kind, pinned to its template version."""

    __tablename__ = "cases"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, index=True, max_length=24)
    kind: str = Field(index=True, max_length=60)
    template_version: int
    title: str = Field(max_length=300)
    lead_partner_id: int = Field(foreign_key="partners.id", index=True)
    owner_id: int = Field(foreign_key="contacts.id", index=True)
    country: str = Field(max_length=2, index=True)
    status: CaseStatus = Field(
        default=CaseStatus.ACTIVE, index=True, sa_type=stored_enum(CaseStatus)
    )
    current_stage: str | None = Field(default=None, max_length=60)
    start_date: date
    target_date: date
    forecast_date: date
    baseline_target: date = Field(description="The target date the case was opened with.")
    fields: dict[str, Any] = Field(
        default_factory=dict,
        sa_type=JSON,
        description="The case's typed fields by name.",
    )
    opened_at: datetime
    closed_at: datetime | None = None
    updated_at: datetime
    version: int = Field(default=1)


class Milestone(SQLModel, table=True):
    """A dated deliverable of a case, with planned and forecast dates."""

    __tablename__ = "milestones"
    # A person's open items (My items, the agenda by owner) are read by owner and status; the
    # monitor finds the open items not stamped late yet whose due date passed by status and
    # due date among the unstamped (without reading every open milestone to find none new).
    __table_args__ = (
        UniqueConstraint("case_id", "key"),
        Index("ix_milestones_owner_status", "owner_id", "status"),
        Index(
            "ix_milestones_unstamped",
            "status",
            "planned_due",
            sqlite_where=text("overdue_on IS NULL"),
            postgresql_where=text("overdue_on IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    key: str = Field(max_length=60)
    seq: int
    title: str = Field(max_length=300)
    stage: str = Field(max_length=60)
    owner_role: str = Field(max_length=60)
    owner_id: int | None = Field(default=None, foreign_key="contacts.id", index=True)
    duration: int
    days: DayKind = Field(sa_type=stored_enum(DayKind))
    strict: bool = True
    depends_on: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    baseline_start: date = Field(description="The original plan: set at open, never moved.")
    baseline_due: date
    planned_start: date = Field(description="The agreed plan in force (moved by a reschedule).")
    planned_due: date = Field(index=True)
    forecast_start: date
    forecast_due: date = Field(index=True)
    critical: bool = False
    adhoc: bool = Field(default=False, description="Added to this case only, not by its template.")
    round: int = Field(default=1, description="Goes up each time rework reopens the item.")
    status: MilestoneStatus = Field(
        default=MilestoneStatus.PLANNED, index=True, sa_type=stored_enum(MilestoneStatus)
    )
    started_on: date | None = None
    finished_on: date | None = None
    overdue_on: date | None = Field(
        default=None, description="First day the monitor saw it late (cleared on reopen)."
    )
    fields: dict[str, Any] = Field(
        default_factory=dict,
        sa_type=JSON,
        description="Values captured when it was completed, by field name.",
    )


class Gate(SQLModel, table=True):
    """A decision point of a case: N-of-M approvers by role, a deadline, a timeout outcome."""

    __tablename__ = "gates"
    __table_args__ = (UniqueConstraint("case_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    key: str = Field(max_length=60)
    seq: int
    title: str = Field(max_length=300)
    stage: str = Field(max_length=60)
    approver_role: str = Field(max_length=60)
    required: int
    deadline_days: int
    days: DayKind = Field(sa_type=stored_enum(DayKind))
    on_timeout: TimeoutOutcome = Field(sa_type=stored_enum(TimeoutOutcome))
    rework_stage: str | None = Field(default=None, max_length=60)
    depends_on: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    baseline_start: date = Field(description="The original plan: set at open, never moved.")
    baseline_due: date
    planned_start: date = Field(description="The agreed plan in force (moved by a reschedule).")
    planned_due: date
    forecast_start: date
    forecast_due: date = Field(index=True)
    critical: bool = False
    status: GateStatus = Field(
        default=GateStatus.PENDING, index=True, sa_type=stored_enum(GateStatus)
    )
    round: int = 1
    opened_on: date | None = None
    deadline: date | None = Field(default=None, index=True)
    decided_on: date | None = None
    expired_on: date | None = Field(
        default=None, description="Day the monitor found the deadline passed, this round."
    )


class GateDecision(SQLModel, table=True):
    """One approver's vote on one round of a gate."""

    __tablename__ = "gate_decisions"
    __table_args__ = (UniqueConstraint("gate_id", "round", "approver_id"),)

    id: int | None = Field(default=None, primary_key=True)
    gate_id: int = Field(foreign_key="gates.id", index=True)
    round: int
    approver_id: int = Field(foreign_key="contacts.id")
    decision: Decision = Field(sa_type=stored_enum(Decision))
    comment: str = Field(default="", sa_type=Text)
    at: datetime
    source: Source = Field(sa_type=stored_enum(Source))


class TeamMember(SQLModel, table=True):
    """Who holds a role on one case: before the case's lead partner and the pilot's lead."""

    __tablename__ = "case_team"
    __table_args__ = (UniqueConstraint("case_id", "role"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    role: str = Field(max_length=60)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    since: datetime


class Baseline(SQLModel, table=True):
    """A rebaseline of a case: the forecast made the agreed plan, by whom, when and why. The
    original plan is the items' `baseline_*` dates; rebaselines count from 1."""

    __tablename__ = "baselines"
    __table_args__ = (UniqueConstraint("case_id", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    number: int
    at: datetime
    actor: str = Field(max_length=254)
    reason: str = Field(default="", sa_type=Text)
    source: Source = Field(sa_type=stored_enum(Source))
    target_date: date


class PlanChange(SQLModel, table=True):
    """One item's agreed dates changing (a reschedule, a rebaseline, an item added), so a
    figure can ask which plan was in force on a day."""

    __tablename__ = "plan_changes"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    item_kind: str = Field(max_length=10)
    item_key: str = Field(max_length=60)
    at: datetime
    start: date
    due: date
    why: str = Field(max_length=20)
    baseline: int | None = Field(default=None, description="The rebaseline's number, if one.")


class Absence(SQLModel, table=True):
    """A person away from one day to another (inclusive): their deputy gets their notices and
    may act for them meanwhile."""

    __tablename__ = "absences"

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    starts: date
    ends: date
    deputy_id: int = Field(foreign_key="contacts.id")
    created_at: datetime


class CaseEvent(SQLModel, table=True):
    """Append-only audit trail: who changed what, when, from where, before and after."""

    __tablename__ = "case_events"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    at: datetime = Field(index=True)
    actor: str = Field(max_length=254)
    kind: str = Field(max_length=60, index=True)
    subject: str | None = Field(default=None, max_length=60)
    before: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    after: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    source: Source = Field(sa_type=stored_enum(Source))
    source_ref: str | None = Field(default=None, max_length=120)
    comment: str = Field(default="", sa_type=Text)


class DirectoryEvent(SQLModel, table=True):
    """Append-only audit trail of the directory: a person or partner added, changed, imported,
    away or back, retired; who did it, when, from where, the changed fields before and after."""

    __tablename__ = "directory_events"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    actor: str = Field(max_length=254)
    kind: str = Field(max_length=60, index=True)
    subject: str = Field(
        max_length=254, index=True, description="The contact's email or the partner's code."
    )
    before: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    after: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    source: Source = Field(sa_type=stored_enum(Source))
    source_ref: str | None = Field(default=None, max_length=120)
    comment: str = Field(default="", sa_type=Text)


class Evidence(SQLModel, table=True):
    """A link to what shows an item is done or supports a vote: added with a completion or a
    gate vote, never edited."""

    __tablename__ = "evidence"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    item_kind: str = Field(max_length=10)
    item_key: str = Field(max_length=60)
    round: int = 1
    url: str = Field(max_length=2000)
    note: str = Field(default="", sa_type=Text)
    added_by: str = Field(max_length=254)
    at: datetime
    source: Source = Field(sa_type=stored_enum(Source))


class DateRequest(SQLModel, table=True):
    """An owner asking for a new due date, with a reason; the pilot lead accepts it (a
    reschedule) or declines it."""

    __tablename__ = "date_requests"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    item_key: str = Field(max_length=60)
    requested_by_id: int = Field(foreign_key="contacts.id", index=True)
    requested_due: date
    current_due: date = Field(description="The agreed due date when it was asked.")
    reason: str = Field(sa_type=Text)
    status: str = Field(default="pending", max_length=20, index=True)
    at: datetime
    source: Source = Field(sa_type=stored_enum(Source))
    decided_by: str | None = Field(default=None, max_length=254)
    decided_at: datetime | None = None
    comment: str = Field(default="", sa_type=Text)


class AccessDenial(SQLModel, table=True):
    """A refused link or page in the partners' door: when, from which address, why. Rate
    limits count these rows, so every worker sees the same count."""

    __tablename__ = "access_denials"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    address: str = Field(max_length=64, index=True)
    reason: str = Field(max_length=40)
    path: str = Field(max_length=300, description="The path asked for, never with a token.")
    contact_id: int | None = Field(default=None, foreign_key="contacts.id")


class StoredReport(SQLModel, table=True):
    """A report file kept in the store, so every worker and the web app can serve it."""

    __tablename__ = "stored_reports"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120, index=True)
    scope: str = Field(default="", max_length=40, description="A partner's code, or '' for all.")
    filename: str = Field(max_length=200)
    media_type: str = Field(max_length=120)
    content: bytes = Field(sa_type=LargeBinary)
    size: int
    created_at: datetime = Field(index=True)


class Measurement(SQLModel, table=True):
    """One value of an indicator a case tracks, for one region on one day (the IP pilot's
    bench marks): the baseline is the first, the template says the unit and direction."""

    __tablename__ = "measurements"
    __table_args__ = (UniqueConstraint("case_id", "indicator", "region", "measured_on"),)

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    indicator: str = Field(max_length=60)
    region: str = Field(max_length=120)
    measured_on: date
    value: float
    note: str = Field(default="", sa_type=Text)
    recorded_by: str = Field(max_length=254)
    at: datetime
    source: Source = Field(sa_type=stored_enum(Source))
