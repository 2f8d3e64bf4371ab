"""Escalation ladders, as pure rules: on which working day each step of an item's ladder
falls (`step_day`), where the ladder stands on a day (`stand`), and how far ahead of today a
ladder can already speak (`horizon`)."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from bridgebsr.rules.calendars import WorkCalendar
from models import CASE_OWNER, NODE_OWNER, LadderStep, Template
from notifications.steps import EXPIRED_STEP

# The dates an item's ladder counts from, and its lateness: a milestone's planned due date, a
# gate's deadline (the outbox keeps the one a notice was written for, `due_on`). Queries read
# them as the columns `store.due` names after these fields.
MILESTONE_DUE_FIELD = "planned_due"
GATE_DUE_FIELD = "deadline"
EXPIRED_RULE = EXPIRED_STEP
HOLIDAY_SLACK = 14  # days a recipient's ladder step may come before the item's calendar says
ITEM_ROLES = (NODE_OWNER, CASE_OWNER)  # roles held by the item's or case's own people

Rung = tuple[LadderStep, tuple[str, ...]]  # a step with the roles it tells


@lru_cache(maxsize=200_000)
def step_day(calendar: WorkCalendar, due: date, offset: int) -> date:
    """The working day a ladder step falls on (a due date on a weekend speaks on Monday)."""
    return calendar.roll_forward(calendar.add_working_days(due, offset))


@dataclass(frozen=True)
class Ladder:
    """A template's ladder sorted by offset (each step with its roles as a tuple), and the
    notice a gate past its deadline gets instead: its approvers and the urgent steps' roles."""

    steps: tuple[Rung, ...]
    expired: LadderStep

    @classmethod
    def of(cls, template: Template) -> "Ladder":
        """The ladder of `template`."""
        ordered = sorted(template.ladder, key=lambda s: s.offset)
        urgent_roles = [r for s in ordered if s.urgent for r in s.notify]
        return cls(
            steps=tuple((s, tuple(s.notify)) for s in ordered),
            expired=LadderStep(key=EXPIRED_RULE, offset=0, notify=[NODE_OWNER, *urgent_roles]),
        )


@dataclass(frozen=True)
class Standing:
    """Where one item's ladder stands on a day by the item's own calendar."""

    upcoming: tuple[LadderStep, ...]  # the steps not reached yet, in order
    near: tuple[Rung, ...]  # the steps reached, or reached within HOLIDAY_SLACK days
    reached: frozenset[str]  # the roles of the steps reached, but an item's or case's owner


def stand(ladder: Ladder, calendar: WorkCalendar, due: date, today: date) -> Standing:
    """The steps `calendar` has not reached by `today` for an item due on `due`, and the steps
    within reach (a recipient with fewer holidays than that calendar reaches a step up to
    HOLIDAY_SLACK days sooner)."""
    within_reach = today + timedelta(days=HOLIDAY_SLACK)
    days = [(rung, step_day(calendar, due, rung[0].offset)) for rung in ladder.steps]
    reached = {role for (_, roles), day in days if day <= today for role in roles}
    return Standing(
        upcoming=tuple(step for (step, _), day in days if day > today),
        near=tuple(rung for rung, day in days if day <= within_reach),
        reached=frozenset(reached.difference(ITEM_ROLES)),
    )


def horizon(today: date, ladders: Iterable[Ladder]) -> date:
    """The latest due date any ladder could already speak about (earliest reminder offset)."""
    earliest = min((step.offset for ladder in ladders for step, _ in ladder.steps), default=0)
    ahead = max(-earliest, 0)
    # Working days to calendar days, with room for a fortnight of holidays.
    return today + timedelta(days=ahead * 7 // 5 + 16)
