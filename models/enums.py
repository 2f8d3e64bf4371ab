"""Closed vocabularies of the case store."""

from enum import StrEnum


class PartnerKind(StrEnum):
    """What sort of organisation a partner is."""

    CLUSTER = "cluster"
    PUBLIC_AUTHORITY = "public-authority"
    TECH_TRANSFER = "tech-transfer"
    NATIONAL_CONTACT_POINT = "national-contact-point"
    TRANSNATIONAL_COLLABORATION = "transnational-collaboration"
    UNIVERSITY = "university"
    SME = "sme"
    INVESTOR = "investor"


class CaseStatus(StrEnum):
    """Where a case is in its life."""

    DRAFT = "draft"
    ACTIVE = "active"
    ON_HOLD = "on_hold"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class MilestoneStatus(StrEnum):
    """Progress of one milestone."""

    PLANNED = "planned"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    WAIVED = "waived"
    BLOCKED = "blocked"


class GateStatus(StrEnum):
    """Progress of one gate: waiting for its predecessors, open for decisions, decided."""

    PENDING = "pending"
    OPEN = "open"
    APPROVED = "approved"
    REJECTED = "rejected"


class Decision(StrEnum):
    """One approver's vote on a gate."""

    APPROVE = "approve"
    REJECT = "reject"


class TimeoutOutcome(StrEnum):
    """What happens when a gate's deadline passes without a decision."""

    ESCALATE = "escalate"
    REJECT = "reject"
    APPROVE = "approve"


class DayKind(StrEnum):
    """How a duration or lag is counted."""

    WORKING = "working"
    CALENDAR = "calendar"


class Source(StrEnum):
    """Where a change came from, recorded on every audit event."""

    CLI = "cli"
    FLOW = "flow"
    IMPORT = "import"
    DEMO = "demo"
    API = "api"
    WEB = "web"


class NotificationStatus(StrEnum):
    """Where an outbox row is on its way to its recipient."""

    PENDING = "pending"
    HELD = "held"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    OBSOLETE = "obsolete"  # dropped at dispatch: its item was finished or moved, its case stopped


FINISHED_MILESTONE = frozenset({MilestoneStatus.DONE, MilestoneStatus.WAIVED})
CLOSED_CASE = frozenset({CaseStatus.COMPLETED, CaseStatus.CANCELLED})
OPEN_MILESTONE = frozenset(
    {MilestoneStatus.PLANNED, MilestoneStatus.IN_PROGRESS, MilestoneStatus.BLOCKED}
)
