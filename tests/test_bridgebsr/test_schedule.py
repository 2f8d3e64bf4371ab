"""Finish-to-start scheduling: plan, forecast, today's floor and the driving path."""

from dataclasses import replace
from datetime import date

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridgebsr.rules.calendars import SCANBALT_COUNTRIES, Workdays, calendar_for, calendar_of
from bridgebsr.rules.schedule import Item, Link, Slot, Step, order, schedule, schedule_many
from models import DayKind

D = date.fromisoformat
DK = calendar_for("DK")
W, C = DayKind.WORKING, DayKind.CALENDAR
START = D("2026-03-30")  # a Monday, the week before Easter 2026 (DK: 2, 3 and 6 April off)


def _dag() -> list[Item]:
    """Five items across the Danish Easter break.

    a: 3 working days from Mon 30 Mar: Tue 31 = 1, Wed 1 Apr = 2, (Thu 2, Fri 3, weekend,
       Mon 6 off), Tue 7 = 3  -> 30 Mar .. 7 Apr.
    b: after a, 2 working days: Wed 8, Thu 9                -> 7 Apr .. 9 Apr.
    c: after a + 2 working days (Wed 8, Thu 9), 5 working days: Fri 10, Mon 13, Tue 14,
       Wed 15, Thu 16                                         -> 9 Apr .. 16 Apr.
    d: after b (due 9 Apr) and c (due 16 Apr), c drives; 1 working day: Fri 17
                                                              -> 16 Apr .. 17 Apr.
    e: after b + 3 calendar days (Sun 12 Apr), 4 calendar days -> 12 Apr .. 16 Apr.
    The end is d on 17 Apr, reached through a -> c -> d: the critical path.
    """
    return [
        Item("a", 3, W, DK),
        Item("b", 2, W, DK, after=(Link("a"),)),
        Item("c", 5, W, DK, after=(Link("a", 2),)),
        Item("d", 1, W, DK, after=(Link("b"), Link("c"))),
        Item("e", 4, C, DK, after=(Link("b", 3, C),)),
    ]


PLAN = {
    "a": Slot(D("2026-03-30"), D("2026-04-07"), None, True),
    "b": Slot(D("2026-04-07"), D("2026-04-09"), "a", False),
    "c": Slot(D("2026-04-09"), D("2026-04-16"), "a", True),
    "d": Slot(D("2026-04-16"), D("2026-04-17"), "c", True),
    "e": Slot(D("2026-04-12"), D("2026-04-16"), "b", False),
}


def _with(items: list[Item], key: str, **changes: object) -> list[Item]:
    return [replace(i, **changes) if i.key == key else i for i in items]  # type: ignore[arg-type]


def test_plan_of_a_hand_built_dag() -> None:
    assert schedule(_dag(), START) == PLAN


def test_plan_ignores_actual_dates() -> None:
    items = _with(_dag(), "a", started_on=D("2026-04-01"), finished_on=D("2026-04-20"))
    assert schedule(items, START) == PLAN


def test_the_driving_path_is_the_chain_that_sets_the_end_date() -> None:
    slots = schedule(_dag(), START)
    assert {k for k, s in slots.items() if s.critical} == {"a", "c", "d"}
    # Lengthen b to 7 working days from Tue 7 Apr: Wed 8, Thu 9, Fri 10, Mon 13, Tue 14,
    # Wed 15, Thu 16. d's two links now tie on 16 Apr (the later link, c, is named), but e
    # (after b + 3 calendar days: Sun 19 Apr, + 4 calendar days: Thu 23 Apr) becomes the end.
    longer = schedule(_with(_dag(), "b", duration=7), START)
    assert longer["d"] == Slot(D("2026-04-16"), D("2026-04-17"), "c", False)
    assert longer["e"] == Slot(D("2026-04-19"), D("2026-04-23"), "b", True)
    assert {k for k, s in longer.items() if s.critical} == {"a", "b", "e"}


def test_a_start_on_a_holiday_rolls_to_the_next_working_day() -> None:
    # Sat 4 Apr -> Sun 5 -> Mon 6 (Easter Monday) -> Tue 7 Apr; 3 working days: 8, 9, 10.
    slots = schedule([Item("a", 3, W, DK)], D("2026-04-04"))
    assert slots["a"] == Slot(D("2026-04-07"), D("2026-04-10"), None, True)
    # A calendar-day item starts on the day itself: 4 Apr + 3 days.
    slots = schedule([Item("a", 3, C, DK)], D("2026-04-04"))
    assert slots["a"] == Slot(D("2026-04-04"), D("2026-04-07"), None, True)


def test_lag_counts_working_or_calendar_days() -> None:
    # p: 1 working day from Thu 16 Apr -> due Fri 17 Apr.
    # Working lag 2: Mon 20, Tue 21 -> start Tue 21; 1 working day -> Wed 22.
    # Calendar lag 2: Sun 19 -> start Sun 19; 1 working day -> Mon 20.
    p = Item("p", 1, W, DK)
    working = Item("s", 1, W, DK, after=(Link("p", 2, W),))
    calendar = Item("s", 1, W, DK, after=(Link("p", 2, C),))
    assert schedule([p, working], D("2026-04-16"))["s"] == Slot(
        D("2026-04-21"), D("2026-04-22"), "p", True
    )
    assert schedule([p, calendar], D("2026-04-16"))["s"] == Slot(
        D("2026-04-19"), D("2026-04-20"), "p", True
    )


def test_a_zero_duration_item_is_due_when_it_starts() -> None:
    items = [Item("a", 3, W, DK), Item("sign-off", 0, W, DK, after=(Link("a"),))]
    slot = schedule(items, START)["sign-off"]
    assert (slot.start, slot.due, slot.driver) == (D("2026-04-07"), D("2026-04-07"), "a")


def test_a_zero_duration_end_item_is_on_the_driving_path() -> None:
    # a ends Tue 7 Apr; sign-off (0 days) ends the case the same day, driven by a.
    items = [Item("a", 3, W, DK), Item("sign-off", 0, W, DK, after=(Link("a"),))]
    slots = schedule(items, START)
    assert {k for k, s in slots.items() if s.critical} == {"a", "sign-off"}


def test_forecast_with_no_actuals_on_the_start_day_is_the_plan() -> None:
    assert schedule(_dag(), START, today=START) == PLAN


def test_a_late_finish_moves_every_dependent_by_the_same_working_days() -> None:
    # a was due Tue 7 Apr and finished Thu 9 Apr: two working days late (Wed 8, Thu 9).
    items = _with(_dag(), "a", finished_on=D("2026-04-09"))
    slots = schedule(items, START, today=D("2026-04-09"))
    assert slots == {
        "a": Slot(D("2026-03-30"), D("2026-04-09"), None, True),
        # b: 9 Apr + 2 = Fri 10, Mon 13 (plan 9 Apr: two working days later).
        "b": Slot(D("2026-04-09"), D("2026-04-13"), "a", False),
        # c: 9 Apr + 2 = 13 Apr; + 5 = 14, 15, 16, 17, 20 (plan 16 Apr: Fri 17, Mon 20).
        "c": Slot(D("2026-04-13"), D("2026-04-20"), "a", True),
        # d: after c's 20 Apr; + 1 = Tue 21 (plan Fri 17 Apr: Mon 20, Tue 21).
        "d": Slot(D("2026-04-20"), D("2026-04-21"), "c", True),
        # e: b's 13 Apr + 3 calendar = 16 Apr; + 4 calendar = 20 Apr (plan 16 Apr).
        "e": Slot(D("2026-04-16"), D("2026-04-20"), "b", False),
    }


def test_an_early_finish_pulls_dependents_in() -> None:
    # a finished Wed 1 Apr instead of Tue 7 Apr; today is that day.
    items = _with(_dag(), "a", finished_on=D("2026-04-01"))
    slots = schedule(items, START, today=D("2026-04-01"))
    assert slots["a"] == Slot(D("2026-03-30"), D("2026-04-01"), None, True)
    # b: from Wed 1 Apr, 2 working days: Tue 7, Wed 8.
    assert slots["b"] == Slot(D("2026-04-01"), D("2026-04-08"), "a", False)


def test_an_in_progress_item_runs_from_its_actual_start() -> None:
    # a started Wed 1 Apr (two days late); 3 working days: Tue 7, Wed 8, Thu 9.
    items = _with(_dag(), "a", started_on=D("2026-04-01"))
    slots = schedule(items, START, today=D("2026-04-01"))
    assert slots["a"] == Slot(D("2026-04-01"), D("2026-04-09"), None, True)
    assert slots["b"] == Slot(D("2026-04-09"), D("2026-04-13"), "a", False)


def test_a_finished_item_keeps_its_actual_dates() -> None:
    items = _with(_dag(), "a", started_on=D("2026-03-31"), finished_on=D("2026-04-08"))
    slots = schedule(items, START, today=D("2026-05-04"))
    # b is held at today (Mon 4 May); e follows b + 3 calendar days (Thu 7 May) for 4
    # calendar days to Mon 11 May, the end: a -> b -> e drives.
    assert slots["a"] == Slot(D("2026-03-31"), D("2026-04-08"), None, True)
    assert slots["b"] == Slot(D("2026-04-08"), D("2026-05-04"), "a", True)
    assert slots["e"] == Slot(D("2026-05-07"), D("2026-05-11"), "b", True)


def test_nothing_unfinished_is_due_before_today() -> None:
    # Nothing has started by Mon 4 May 2026. a is due today; then
    # b: 4 May + 2 = Tue 5, Wed 6; c: 4 May + 2 = 6 May, + 5 = 7, 8, 11, 12, 13 May;
    # d: after c, + 1: Thu 14 May is Ascension Day, so Fri 15; e: 6 May + 3 = 9, + 4 = 13.
    today = D("2026-05-04")
    slots = schedule(_dag(), START, today=today)
    assert slots == {
        "a": Slot(D("2026-03-30"), today, None, True),
        "b": Slot(today, D("2026-05-06"), "a", False),
        "c": Slot(D("2026-05-06"), D("2026-05-13"), "a", True),
        "d": Slot(D("2026-05-13"), D("2026-05-15"), "c", True),
        "e": Slot(D("2026-05-09"), D("2026-05-13"), "b", False),
    }


def test_a_finished_item_may_be_due_before_today() -> None:
    items = _with(_dag(), "a", finished_on=D("2026-04-07"))
    slots = schedule(items, START, today=D("2026-05-04"))
    assert slots["a"].due == D("2026-04-07")
    assert slots["b"].due == D("2026-05-04")


# --- the agreed plan set by hand: floors of the forecast ----------------------------------------


def test_a_rescheduled_item_is_forecast_due_on_its_agreed_due() -> None:
    # c was agreed due Fri 24 Apr instead of Thu 16 Apr: the forecast keeps to the agreed date
    # (from its start, still driven by a), and d follows it: Mon 27 Apr.
    agreed = D("2026-04-24")
    items = _with(_dag(), "c", due_not_before=agreed)
    slots = schedule(items, START, today=START)
    assert slots["c"] == Slot(D("2026-04-09"), agreed, "a", True)
    assert slots["d"] == Slot(agreed, D("2026-04-27"), "c", True)
    assert schedule(items, START) == PLAN  # the plan ignores it
    # An agreed due date earlier than the forecast does not pull it in.
    early = schedule(_with(_dag(), "c", due_not_before=D("2026-04-10")), START, today=START)
    assert early["c"].due == D("2026-04-16")


def test_a_started_item_is_due_no_earlier_than_its_agreed_due() -> None:
    items = _with(_dag(), "a", started_on=START, due_not_before=D("2026-04-14"))
    slots = schedule(items, START, today=D("2026-04-01"))
    assert slots["a"] == Slot(START, D("2026-04-14"), None, True)


def test_an_added_item_is_forecast_from_its_agreed_start_not_its_predecessors_finish() -> None:
    # a finished Wed 1 Apr; b was added on Mon 27 Apr after it: it starts on the day it was
    # added, for 2 working days (Tue 28, Wed 29), no longer driven by a; e follows b and
    # ends the case (Wed 6 May): the driving path starts at b.
    added = D("2026-04-27")
    items = _with(_with(_dag(), "a", finished_on=D("2026-04-01")), "b", not_before=added)
    slots = schedule(items, START, today=added)
    assert slots["b"] == Slot(added, D("2026-04-29"), None, True)
    assert slots["e"] == Slot(D("2026-05-02"), D("2026-05-06"), "b", True)
    assert not slots["a"].critical
    assert schedule(items, START) == PLAN  # the plan ignores it
    # Before the agreed start, it is still forecast from it.
    assert schedule(items, START, today=D("2026-04-02"))["b"].start == added


def test_an_agreed_start_does_not_move_what_started_or_finished() -> None:
    late = D("2026-05-04")
    started = _with(_dag(), "b", started_on=D("2026-04-08"), not_before=late)
    assert schedule(started, START, today=D("2026-04-08"))["b"] == Slot(
        D("2026-04-08"), D("2026-04-10"), "a", False
    )
    done = _with(
        _dag(),
        "b",
        started_on=D("2026-04-08"),
        finished_on=D("2026-04-09"),
        not_before=late,
        due_not_before=late,
    )
    slots = schedule(done, START, today=D("2026-04-20"))
    assert (slots["b"].start, slots["b"].due) == (D("2026-04-08"), D("2026-04-09"))
    # An agreed start earlier than where its predecessors place it does not pull it in.
    early = _with(_dag(), "b", not_before=START)
    assert schedule(early, START, today=START)["b"] == PLAN["b"]


@pytest.mark.parametrize(
    "items",
    [
        [Item("a", 1, W, DK, after=(Link("b"),)), Item("b", 1, W, DK, after=(Link("a"),))],
        [Item("a", 1, W, DK, after=(Link("a"),))],
        [
            Item("x", 1, W, DK),
            Item("a", 1, W, DK, after=(Link("x"), Link("c"))),
            Item("b", 1, W, DK, after=(Link("a"),)),
            Item("c", 1, W, DK, after=(Link("b"),)),
        ],
    ],
    ids=["two", "self", "three"],
)
def test_a_cycle_is_refused(items: list[Item]) -> None:
    with pytest.raises(ValueError, match="dependency cycle"):
        schedule(items, START)


def test_order_puts_predecessors_first_and_keeps_independent_items_in_place() -> None:
    items = [
        Item("late", 1, W, DK, after=(Link("mid"),)),
        Item("x", 1, W, DK),
        Item("mid", 1, W, DK, after=(Link("first"),)),
        Item("first", 1, W, DK),
    ]
    assert [i.key for i in order(items)] == ["x", "first", "mid", "late"]


def test_an_empty_schedule_is_empty() -> None:
    assert schedule([], START) == {}


CALENDARS = [calendar_for(c) for c in SCANBALT_COUNTRIES]


@st.composite
def dags(draw: st.DrawFn) -> list[Item]:
    """Random DAGs: links only from lower to higher index, any calendar per item."""
    n = draw(st.integers(min_value=1, max_value=9))
    items: list[Item] = []
    for i in range(n):
        preds = draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=3)) if i else set()
        links = tuple(
            Link(f"m{p}", draw(st.integers(0, 10)), draw(st.sampled_from([W, C])))
            for p in sorted(preds)
        )
        items.append(
            Item(
                f"m{i}",
                draw(st.integers(0, 20)),
                draw(st.sampled_from([W, C])),
                draw(st.sampled_from(CALENDARS)),
                after=links,
            )
        )
    return draw(st.permutations(items))


@settings(max_examples=200, deadline=None)
@given(items=dags(), start=st.dates(min_value=D("2025-01-01"), max_value=D("2028-12-31")))
def test_random_dags_respect_every_link_and_forecast_equals_plan(
    items: list[Item], start: date
) -> None:
    plan = schedule(items, start)
    assert set(plan) == {i.key for i in items}
    for item in items:
        slot = plan[item.key]
        assert slot.start >= start
        assert slot.due >= slot.start
        for link in item.after:
            assert slot.start >= plan[link.key].due
            assert slot.start >= item.calendar.add(plan[link.key].due, link.lag, link.days)
        # No driver only when the case start itself is later than every link.
        assert slot.driver is None or slot.driver in {link.key for link in item.after}
    # The critical items form one chain of drivers ending at the latest due date.
    critical = {k for k, s in plan.items() if s.critical}
    assert max(plan[k].due for k in critical) == max(s.due for s in plan.values())
    for key in critical:
        driver = plan[key].driver
        assert driver is None or driver in critical
    assert sum(1 for k in critical if plan[k].driver is None) == 1
    assert schedule(items, start, today=start) == plan


# --- many cases of one shape at once: the same rule over columns of dates ----------------------

# The calendars of a case's items: the owners' (a German state only with a German partner).
MANY_CALENDARS = [
    calendar_of("DE", "DE", "Mecklenburg-Vorpommern"),
    calendar_of("DK", "DK", "Hovedstaden"),
    calendar_of("SE", "SE", None),
    calendar_of("PL", "DE", "Mecklenburg-Vorpommern"),
    calendar_of("NO", None, None),
]
case_days = st.dates(min_value=D("2025-01-01"), max_value=D("2027-12-31"))
maybe_days = st.one_of(st.none(), case_days)


@st.composite
def shapes(draw: st.DrawFn) -> list[Step]:
    """A template's steps: links only to earlier steps (lags may be negative), then shuffled."""
    n = draw(st.integers(min_value=1, max_value=7))
    steps: list[Step] = []
    for i in range(n):
        preds = draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=3)) if i else set()
        links = tuple(
            Link(f"s{p}", draw(st.integers(-3, 8)), draw(st.sampled_from([W, C])))
            for p in sorted(preds)
        )
        kind = draw(st.sampled_from([W, C]))
        steps.append(Step(f"s{i}", draw(st.integers(0, 15)), kind, links))
    return draw(st.permutations(steps))


@st.composite
def portfolios(draw: st.DrawFn) -> tuple[list[Step], list[tuple[date, list[Item]]]]:
    """Cases of one shape: each its start, and its items (a calendar each, some started, some
    finished, some with an agreed start or due date to keep to)."""
    steps = draw(shapes())
    cases = []
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        items = [
            Item(
                step.key,
                step.duration,
                step.days,
                draw(st.sampled_from(MANY_CALENDARS)),
                step.after,
                draw(maybe_days),
                draw(maybe_days),
                draw(maybe_days),
                draw(maybe_days),
            )
            for step in steps
        ]
        cases.append((draw(case_days), items))
    return steps, cases


def _columns(cases: list[tuple[date, list[Item]]], what: str) -> np.ndarray:
    return np.array([[getattr(i, what) for i in items] for _, items in cases], "datetime64[D]")


@settings(max_examples=200, deadline=None)
@given(portfolio=portfolios(), today=st.one_of(st.none(), case_days))
def test_scheduling_many_cases_at_once_is_scheduling_each(
    portfolio: tuple[list[Step], list[tuple[date, list[Item]]]], today: date | None
) -> None:
    steps, cases = portfolio
    codes = np.array([[MANY_CALENDARS.index(i.calendar) for i in items] for _, items in cases])
    work = Workdays(MANY_CALENDARS, D("2026-01-01"), D("2026-12-31"))
    many = schedule_many(
        steps,
        np.array([start for start, _ in cases], dtype="datetime64[D]"),
        codes,
        work,
        today=today,
        started=_columns(cases, "started_on"),
        finished=_columns(cases, "finished_on"),
        not_before=_columns(cases, "not_before"),
        due_not_before=_columns(cases, "due_not_before"),
    )
    keys = [step.key for step in steps]
    for row, (start, items) in enumerate(cases):
        each = schedule(items, start, today)
        got = {
            key: Slot(
                many.start[row, j].astype(object),
                many.due[row, j].astype(object),
                keys[many.driver[row, j]] if many.driver[row, j] >= 0 else None,
                bool(many.critical[row, j]),
            )
            for j, key in enumerate(keys)
        }
        assert got == each


def test_scheduling_no_case_at_once_gives_empty_columns() -> None:
    steps = [Step("a", 3, W), Step("b", 2, W, (Link("a"),))]
    work = Workdays(MANY_CALENDARS, START, START)
    none = np.zeros(0, dtype="datetime64[D]")
    many = schedule_many(steps, none, np.zeros((0, 2), dtype=np.int64), work)
    assert many.due.shape == many.critical.shape == (0, 2)
