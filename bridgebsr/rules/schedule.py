"""Finish-to-start scheduling: planned and forecast dates, and the driving (critical) path.

Dates are points: an item with duration D starting on S is due D days after S, and a
successor linked with lag L may start L days after that due date. Pure: no database.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from bridgebsr.rules.calendars import WorkCalendar
from models import DayKind


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

    Without `today` this is the plan: actual dates are ignored. With `today` it is the
    forecast: actual starts and finishes count, and nothing unfinished is due before today.
    """
    slots: dict[str, Slot] = {}
    for item in order(items):
        slots[item.key] = _place(item, slots, start, today)
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
    due = max(cal.add(begin, item.duration, item.days), today)
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
