"""Finish-to-start scheduling: planned and forecast dates, and the driving (critical) path.

Dates are points: an item with duration D starting on S is due D days after S, and a
successor linked with lag L may start L days after that due date. Pure: no database.
`schedule` places the items of one case; `schedule_many` places the same steps for many
cases at once (the KPI forecast), by the same rule on columns of dates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

from bridgebsr.rules.calendars import WorkCalendar
from models import DayKind

if TYPE_CHECKING:  # numpy is imported where many cases are scheduled at once
    import numpy as np
    import numpy.typing as npt

    DayArray = npt.NDArray[np.datetime64]
    IntArray = npt.NDArray[np.int64]
    BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Link:
    """This item starts `lag` days (of kind `days`) after `key` is due or finished."""

    key: str
    lag: int = 0
    days: DayKind = DayKind.WORKING


@dataclass(slots=True)
class Item:
    """One milestone or gate as the scheduler sees it (read, never changed: not frozen only
    because a frozen dataclass takes four times as long to build, and every change to a case
    builds one per item)."""

    key: str
    duration: int
    days: DayKind
    calendar: WorkCalendar
    after: tuple[Link, ...] = ()
    started_on: date | None = None
    finished_on: date | None = None
    # The agreed plan, where people set it by hand, as a floor for the forecast: an item
    # added to one case starts no earlier than its agreed start (`not_before`), and one
    # whose agreed due date was moved is due no earlier than it (`due_not_before`).
    not_before: date | None = None
    due_not_before: date | None = None


@dataclass(slots=True)
class Slot:
    """Where an item falls: start, due, the predecessor that drives its start, criticality."""

    start: date
    due: date
    driver: str | None = None
    critical: bool = False


def order(items: Iterable[Item]) -> list[Item]:
    """Items in dependency order (predecessors first), stable for independent items."""
    listed = list(items)
    shape = tuple((i.key, tuple(link.key for link in i.after)) for i in listed)
    return [listed[position] for position in _order(shape)]


@lru_cache(maxsize=1024)
def _order(shape: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[int, ...]:
    """Positions in dependency order of items given as (key, predecessor keys): in waves of
    the items whose predecessors are all placed, each wave in the given order. Cases of one
    template share a shape, so each shape is ordered once."""
    pending = list(range(len(shape)))
    placed: dict[str, int] = {}
    while pending:
        ready = [p for p in pending if all(key in placed for key in shape[p][1])]
        if not ready:
            raise ValueError("dependency cycle among " + ", ".join(shape[p][0] for p in pending))
        for p in ready:
            placed[shape[p][0]] = p
        pending = [p for p in pending if p not in ready]
    return tuple(placed.values())


def schedule(items: Iterable[Item], start: date, today: date | None = None) -> dict[str, Slot]:
    """Dates for every item from the case start.

    Without `today` this is the plan: actual dates and agreed floors are ignored. With
    `today` it is the forecast: actual starts and finishes count, nothing unfinished is due
    before today, an item not started starts no earlier than its `not_before` (then no
    predecessor drives it) and an unfinished one is due no earlier than its `due_not_before`.
    """
    slots: dict[str, Slot] = {}
    for item in order(items):
        slots[item.key] = _place(item, slots, start, today)
    _mark_critical(slots)
    return slots


def replan(items: Iterable[Item], start: date, fixed: Mapping[str, Slot]) -> dict[str, Slot]:
    """The plan with some items' dates kept as given (`fixed`): every other item is placed
    as `schedule` places it, after its predecessors as they now fall. A reschedule fixes the
    moved item and everything not downstream of it, so only its dependents move."""
    slots: dict[str, Slot] = {}
    for item in order(items):
        kept = fixed.get(item.key)
        slots[item.key] = Slot(kept.start, kept.due) if kept else _place(item, slots, start, None)
    _mark_critical(slots)
    return slots


def _place(item: Item, slots: Mapping[str, Slot], start: date, today: date | None) -> Slot:
    cal = item.calendar
    earliest = cal.roll_forward(start) if item.days is DayKind.WORKING else start
    driver = None
    for link in item.after:
        candidate = cal.add(slots[link.key].due, link.lag, link.days)
        if candidate >= earliest:
            earliest, driver = candidate, link.key
    if today is None:
        return Slot(earliest, cal.add(earliest, item.duration, item.days), driver)
    begin = item.started_on or earliest
    if item.finished_on is not None:
        return Slot(min(begin, item.finished_on), item.finished_on, driver)
    if item.started_on is None and item.not_before is not None and item.not_before > begin:
        begin, driver = item.not_before, None
    due = max(cal.add(begin, item.duration, item.days), today)
    if item.due_not_before is not None:
        due = max(due, item.due_not_before)
    return Slot(begin, due, driver)


def _mark_critical(slots: dict[str, Slot]) -> None:
    if not slots:
        return
    # The latest-finishing item; on a tie, the one furthest down the dependency order.
    last = max(reversed(list(slots)), key=lambda key: slots[key].due)
    key: str | None = last
    while key is not None:
        slots[key].critical = True
        key = slots[key].driver


# --- many cases of one shape at once ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """An item as every case of one template has it: an `Item` without its calendar and
    actual dates (those differ from case to case)."""

    key: str
    duration: int
    days: DayKind
    after: tuple[Link, ...] = ()


def step_order(steps: Sequence[Step]) -> list[int]:
    """Positions of the steps in dependency order, as `order` places items."""
    return list(_order(tuple((s.key, tuple(link.key for link in s.after)) for s in steps)))


class DayArithmetic(Protocol):
    """`WorkCalendar`'s moves over arrays of days, each in the calendar of its code
    (`calendars.Workdays`)."""

    def roll_forward(self, days: DayArray, codes: IntArray) -> DayArray: ...

    def add(self, days: DayArray, count: int, kind: DayKind, codes: IntArray) -> DayArray: ...


@dataclass(frozen=True, slots=True)
class Slots:
    """Many cases scheduled at once: a row per case, a column per step (in the order given);
    `driver` holds the column of the predecessor that drives each start (-1: none)."""

    start: DayArray
    due: DayArray
    driver: IntArray
    critical: BoolArray


def schedule_many(
    steps: Sequence[Step],
    start: DayArray,
    codes: IntArray,
    work: DayArithmetic,
    *,
    today: date | None = None,
    started: DayArray | None = None,
    finished: DayArray | None = None,
    not_before: DayArray | None = None,
    due_not_before: DayArray | None = None,
) -> Slots:
    """`schedule` for many cases of the same steps at once: what it gives each case, given
    the case starts (`start`, one per case) and, per case and step (rows and columns), the
    calendar `codes` of `work` and, for a forecast (`today`), the actual starts and finishes
    and the agreed floors `not_before` and `due_not_before` (`Item`'s; NaT or None: none).
    Each step is placed by `_place`'s rule, on columns of dates."""
    import numpy as np

    n_cases, n_steps = len(start), len(steps)
    column = {step.key: j for j, step in enumerate(steps)}
    begin = np.full((n_cases, n_steps), np.datetime64("NaT", "D"))
    due = begin.copy()
    driver = np.full((n_cases, n_steps), -1, dtype=np.int64)
    placed = step_order(steps)
    for j in placed if n_cases else ():
        step, cal = steps[j], codes[:, j]
        earliest = work.roll_forward(start, cal) if step.days is DayKind.WORKING else start
        drive = np.full(n_cases, -1, dtype=np.int64)
        for link in step.after:
            p = column[link.key]
            candidate = work.add(due[:, p], link.lag, link.days, cal)
            later = candidate >= earliest
            earliest = np.where(later, candidate, earliest)
            drive = np.where(later, p, drive)
        if today is None:
            driver[:, j] = drive
            begin[:, j] = earliest
            due[:, j] = work.add(earliest, step.duration, step.days, cal)
            continue
        assert started is not None and finished is not None
        unstarted = np.isnat(started[:, j])
        first = np.where(unstarted, earliest, started[:, j])
        end = finished[:, j]
        done = ~np.isnat(end)
        if not_before is not None:  # NaT compares false: no floor
            held = unstarted & ~done & (not_before[:, j] > first)
            first = np.where(held, not_before[:, j], first)
            drive = np.where(held, -1, drive)
        driver[:, j] = drive
        begin[:, j] = np.where(done, np.minimum(first, end), first)
        planned = work.add(first, step.duration, step.days, cal)
        planned = np.maximum(planned, np.datetime64(today, "D"))
        if due_not_before is not None:
            floor = due_not_before[:, j]
            planned = np.where(floor > planned, floor, planned)
        due[:, j] = np.where(done, end, planned)
    return Slots(begin, due, driver, _critical_many(due, driver, placed))


def _critical_many(due: DayArray, driver: IntArray, placed: Sequence[int]) -> BoolArray:
    """`_mark_critical` per row: from the latest-due step (on a tie, the one furthest down
    the dependency order) back along the predecessors that drove each start."""
    import numpy as np

    n_cases, n_steps = due.shape
    critical = np.zeros((n_cases, n_steps), dtype=bool)
    if not n_steps or not n_cases:
        return critical
    in_order = due[:, list(placed)]
    in_order = np.where(np.isnat(in_order), np.datetime64("0001-01-01", "D"), in_order)
    latest = in_order.max(axis=1)
    last = n_steps - 1 - np.argmax((in_order == latest[:, None])[:, ::-1], axis=1)
    current = np.asarray(placed, dtype=np.int64)[last]
    rows = np.arange(n_cases)
    for _ in range(n_steps):
        on = current >= 0
        if not on.any():
            break
        critical[rows[on], current[on]] = True
        current = np.where(on, driver[rows, np.maximum(current, 0)], -1)
    return critical
