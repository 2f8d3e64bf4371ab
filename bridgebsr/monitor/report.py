"""What a monitor pass knows as it runs (`PassContext`: when, as whom) and what it found and
did (`MonitorReport`, with its `LateItem`s and `Signal`s)."""

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from bridgebsr.office.progress import Actor


@dataclass(frozen=True)
class PassContext:
    """When a pass runs and as whom: its moment `now`, the office's date `today`, the actor
    its changes are recorded by, and the flow run behind it (if a flow ran it)."""

    now: datetime
    today: date
    actor: Actor
    run: str | None = None
    channels: frozenset[str] = frozenset()  # the team channels posted to, one post per event


@dataclass(frozen=True, slots=True)
class Signal:
    """Something operators may automate on: an item newly late, a gate expired, an escalation."""

    event: str
    case_key: str
    pilot: str
    country: str
    subject: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LateItem:
    """One late milestone or expired gate, for the monitor's table."""

    case_key: str
    pilot: str
    item: str
    item_kind: str
    title: str
    owner: str
    partner: str
    due: date  # what lateness counts from: a milestone's planned due date, a gate's deadline
    days_late: int
    next_step: str  # the next ladder step as people say it, and its day; "-": none left


@dataclass
class MonitorReport:
    """What one pass found and did. `now`, `today` and `dry_run` say which pass it is, for its
    readers; the pass itself reads its moment from its `PassContext`."""

    now: datetime
    today: date
    dry_run: bool
    notifications: int = 0
    newly_overdue: int = 0
    newly_expired: int = 0
    timed_out: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    late: list[LateItem] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    active_cases: dict[str, int] = field(default_factory=dict)
    open_gates: Counter[str] = field(default_factory=Counter)
    notifications_by_pilot: Counter[str] = field(default_factory=Counter)
    # (pilot, case, role): a step reached for the case's items tells a role no one holds for it
    unheld: set[tuple[str, str, str]] = field(default_factory=set)
    run: str | None = None  # the Prefect flow run of this pass, if a flow ran it

    def pilots(self) -> list[str]:
        """Every pilot kind the pass saw, sorted."""
        seen = set(self.active_cases) | {item.pilot for item in self.late}
        seen |= {kind for kind, _, _ in self.unheld}
        return sorted(seen | set(self.open_gates) | set(self.notifications_by_pilot))

    def unheld_roles(self, pilot: str | None = None) -> list[dict[str, str]]:
        """Each case and role no one holds for it (of one pilot, or all), by case: the
        notices of that role's steps went to no one."""
        return [
            {"case": case, "role": role}
            for kind, case, role in sorted(self.unheld, key=lambda u: (u[1], u[2]))
            if pilot in (None, kind)
        ]

    def summary(self) -> dict[str, Any]:
        """Counts for scripts and the CLI's --json."""
        late = Counter(item.pilot for item in self.late)
        unheld = Counter(kind for kind, _, _ in self.unheld)
        return {
            "as_of": self.now.isoformat(),
            "today": self.today.isoformat(),
            "dry_run": self.dry_run,
            "notifications": self.notifications,
            "newly_overdue": self.newly_overdue,
            "newly_expired": self.newly_expired,
            "timed_out": self.timed_out,
            "failures": self.failures,
            "late": len(self.late),
            "unheld_roles": self.unheld_roles(),
            "pilots": {
                pilot: {
                    "active_cases": self.active_cases.get(pilot, 0),
                    "late_items": late[pilot],
                    "open_gates": self.open_gates[pilot],
                    "notifications": self.notifications_by_pilot[pilot],
                    "unheld_roles": unheld[pilot],
                }
                for pilot in self.pilots()
            },
        }
