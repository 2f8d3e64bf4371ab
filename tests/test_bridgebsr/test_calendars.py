"""Working days per country and German state: known holidays, arithmetic and its laws."""

from datetime import date

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridgebsr.errors import InvalidInput
from bridgebsr.rules.calendars import (
    FIRST_DAY,
    LAST_DAY,
    SCANBALT_COUNTRIES,
    WorkCalendar,
    Workdays,
    calendar_for,
    calendar_of,
    out_of_range,
    subdivision_of,
    supports_country,
    work_area,
)
from models import DayKind

D = date.fromisoformat


def test_scanbalt_countries_are_the_eleven_of_the_bioregion() -> None:
    assert sorted(SCANBALT_COUNTRIES) == sorted(
        ["DK", "SE", "FI", "NO", "IS", "EE", "LV", "LT", "PL", "DE", "RU"]
    )
    assert all(supports_country(c) for c in SCANBALT_COUNTRIES)
    assert not supports_country("XX")


@pytest.mark.parametrize(
    ("day", "name"),
    [
        ("2026-01-01", "New Year's Day"),  # Thursday
        ("2026-04-02", "Maundy Thursday"),
        ("2026-04-03", "Good Friday"),
        ("2026-04-06", "Easter Monday"),  # Easter Sunday 2026 is 5 April
        ("2026-05-14", "Ascension Day"),  # Easter + 39 days, a Thursday
        ("2026-05-25", "Pentecost Monday"),  # Easter + 50 days
        ("2026-12-25", "Christmas Day"),  # Friday
    ],
)
def test_danish_holidays_2026_are_not_working_days(day: str, name: str) -> None:
    dk = calendar_for("DK")
    assert dk.holiday_name(D(day)) == name
    assert not dk.is_working_day(D(day))


def test_danish_weekdays_around_easter_and_christmas_2026() -> None:
    dk = calendar_for("DK")
    # Wed 1 April and Tue 7 April frame the Easter break; Christmas Eve is not a public
    # holiday in Denmark's calendar, so Thu 24 December 2026 is a working day there.
    for day in ("2026-04-01", "2026-04-07", "2026-12-24", "2026-12-28"):
        assert dk.is_working_day(D(day)), day
        assert dk.holiday_name(D(day)) is None
    assert not dk.is_working_day(D("2026-12-26"))  # Saturday (and Second Day of Christmas)
    assert not dk.is_working_day(D("2026-12-27"))  # Sunday, no holiday
    assert dk.holiday_name(D("2026-12-27")) is None


def test_polish_christmas_eve_is_a_holiday_since_2025() -> None:
    pl = calendar_for("PL")
    assert not pl.is_working_day(D("2025-12-24"))  # Wednesday
    assert not pl.is_working_day(D("2026-12-24"))  # Thursday
    assert not pl.is_working_day(D("2027-01-06"))  # Epiphany, a Wednesday


@pytest.mark.parametrize(
    ("country", "day"),
    [
        ("DK", "2025-12-25"),  # Thursday: Christmas Day
        ("SE", "2025-06-06"),  # Friday: National Day
        ("FI", "2024-12-06"),  # Friday: Independence Day
        ("NO", "2024-05-17"),  # Friday: Constitution Day
        ("IS", "2025-06-17"),  # Tuesday: National Day
        ("EE", "2025-02-24"),  # Monday: Independence Day
        ("LV", "2025-11-18"),  # Tuesday: Proclamation Day
        ("LT", "2026-02-16"),  # Monday: Restoration of the State
        ("PL", "2025-11-11"),  # Tuesday: Independence Day
        ("DE", "2025-10-03"),  # Friday: German Unity Day
        ("RU", "2025-06-12"),  # Thursday: Russia Day
    ],
)
def test_each_scanbalt_country_knows_its_national_day(country: str, day: str) -> None:
    cal = calendar_for(country)
    assert D(day).weekday() < 5
    assert not cal.is_working_day(D(day))
    assert cal.holiday_name(D(day)) is not None


def test_reformation_day_is_a_holiday_in_mecklenburg_vorpommern_only() -> None:
    # 31 October 2025 is a Friday (in 2026 it is a Saturday and would prove nothing).
    day = D("2025-10-31")
    mv, bw, de = calendar_for("DE", "MV"), calendar_for("DE", "BW"), calendar_for("DE")
    assert mv.holiday_name(day) == "Reformation Day"
    assert not mv.is_working_day(day)
    assert bw.is_working_day(day)
    assert bw.holiday_name(day) is None
    assert de.is_working_day(day)
    # Epiphany (Tue 6 January 2026) is the other way round.
    assert not bw.is_working_day(D("2026-01-06"))
    assert mv.is_working_day(D("2026-01-06"))


def test_calendar_for_is_shared_and_named() -> None:
    assert calendar_for("DE", "MV") is calendar_for("DE", "MV")
    assert repr(calendar_for("DE", "MV")) == "WorkCalendar(DE-MV)"
    assert repr(calendar_for("DK")) == "WorkCalendar(DK)"


@pytest.mark.parametrize(
    ("region", "code"),
    [
        ("Mecklenburg-Vorpommern", "MV"),
        ("mecklenburg-vorpommern", "MV"),
        ("MV", "MV"),
        ("mv", "MV"),
        ("Baden-Württemberg", "BW"),
        ("Atlantis", None),
        ("", None),
        (None, None),
    ],
)
def test_subdivision_of_germany(region: str | None, code: str | None) -> None:
    assert subdivision_of("DE", region) == code


def test_subdivision_of_a_country_without_subdivisions_is_none() -> None:
    assert subdivision_of("DK", "Hovedstaden") is None


def test_roll_forward() -> None:
    dk = calendar_for("DK")
    assert dk.roll_forward(D("2026-04-01")) == D("2026-04-01")  # already a working day
    # Thu 2 .. Mon 6 April 2026 are holidays or weekend days.
    assert dk.roll_forward(D("2026-04-02")) == D("2026-04-07")
    assert dk.roll_forward(D("2026-12-25")) == D("2026-12-28")


@pytest.mark.parametrize(
    ("country", "start", "count", "expected"),
    [
        # DK: Thu 24 Dec = 1, Fri 25 holiday, weekend, Mon 28 = 2, Tue 29 = 3.
        ("DK", "2026-12-23", 3, "2026-12-29"),
        # PL: Thu 24 and Fri 25 holidays, weekend, Mon 28 = 1, Tue 29 = 2, Wed 30 = 3.
        ("PL", "2026-12-23", 3, "2026-12-30"),
        # DK: 24, 28, 29, 30, 31 = 5; Fri 1 Jan holiday, weekend; Mon 4 = 6, Tue 5 = 7.
        ("DK", "2026-12-23", 7, "2027-01-05"),
        # PL: 28, 29, 30, 31 = 4; Fri 1 Jan; Mon 4 = 5, Tue 5 = 6; Wed 6 Epiphany; Thu 7 = 7.
        ("PL", "2026-12-23", 7, "2027-01-07"),
        # Backwards over the same break.
        ("DK", "2026-12-29", -3, "2026-12-23"),
        ("PL", "2026-12-30", -3, "2026-12-23"),
        # Zero moves nothing, even from a holiday.
        ("DK", "2026-12-25", 0, "2026-12-25"),
        # From a holiday: Mon 28 = 1.
        ("DK", "2026-12-25", 1, "2026-12-28"),
        # DK Easter: Tue 31 Mar = 1, Wed 1 Apr = 2, Thu 2 .. Mon 6 off, Tue 7 Apr = 3.
        ("DK", "2026-03-30", 3, "2026-04-07"),
    ],
)
def test_add_working_days_across_holidays(
    country: str, start: str, count: int, expected: str
) -> None:
    assert calendar_for(country).add_working_days(D(start), count) == D(expected)


def test_add_counts_working_or_calendar_days() -> None:
    dk = calendar_for("DK")
    assert dk.add(D("2026-12-23"), 3, DayKind.WORKING) == D("2026-12-29")
    assert dk.add(D("2026-12-23"), 3, DayKind.CALENDAR) == D("2026-12-26")
    assert dk.add(D("2026-12-23"), -30, DayKind.CALENDAR) == D("2026-11-23")


@pytest.mark.parametrize(
    ("country", "start", "end", "expected"),
    [
        ("DK", "2026-12-23", "2026-12-29", 3),  # 24, 28, 29
        ("PL", "2026-12-23", "2026-12-29", 2),  # 28, 29
        ("DK", "2026-12-29", "2026-12-23", -3),
        ("PL", "2026-12-29", "2026-12-23", -2),
        ("DK", "2026-12-23", "2026-12-23", 0),
        ("DK", "2026-03-30", "2026-04-07", 3),  # 31 Mar, 1 Apr, 7 Apr
        ("DK", "2026-04-07", "2026-03-30", -3),
        ("DK", "2026-12-24", "2026-12-27", 0),  # Fri 25 .. Sun 27 all off
    ],
)
def test_working_days_between(country: str, start: str, end: str, expected: int) -> None:
    assert calendar_for(country).working_days_between(D(start), D(end)) == expected


# Properties over every ScanBalt calendar plus the two German states the consortium sits in.
CALENDARS = [calendar_for(c) for c in SCANBALT_COUNTRIES] + [
    calendar_for("DE", "MV"),
    calendar_for("DE", "BW"),
]
calendars = st.sampled_from(CALENDARS)
days = st.dates(min_value=D("2024-01-01"), max_value=D("2030-12-31"))
PROPS = settings(max_examples=300, deadline=None)


@PROPS
@given(cal=calendars, day=days, n=st.integers(min_value=1, max_value=60))
def test_adding_working_days_lands_on_a_working_day(cal: WorkCalendar, day: date, n: int) -> None:
    result = cal.add_working_days(day, n)
    assert result > day
    assert cal.is_working_day(result)


@PROPS
@given(cal=calendars, day=days, n=st.integers(min_value=-60, max_value=60))
def test_working_days_between_inverts_add(cal: WorkCalendar, day: date, n: int) -> None:
    start = cal.roll_forward(day)
    assert cal.working_days_between(start, cal.add_working_days(start, n)) == n


@PROPS
@given(
    cal=calendars,
    day=days,
    a=st.integers(min_value=0, max_value=40),
    b=st.integers(min_value=0, max_value=40),
)
def test_adding_working_days_composes(cal: WorkCalendar, day: date, a: int, b: int) -> None:
    assert cal.add_working_days(cal.add_working_days(day, a), b) == cal.add_working_days(day, a + b)


@PROPS
@given(
    cal=calendars,
    day=days,
    n=st.integers(min_value=-40, max_value=40),
    more=st.integers(min_value=1, max_value=20),
)
def test_adding_working_days_is_strictly_monotonic(
    cal: WorkCalendar, day: date, n: int, more: int
) -> None:
    assert cal.add_working_days(day, n) < cal.add_working_days(day, n + more)


@PROPS
@given(cal=calendars, a=days, b=days)
def test_working_days_between_is_antisymmetric(cal: WorkCalendar, a: date, b: date) -> None:
    assert cal.working_days_between(a, b) == -cal.working_days_between(b, a)


def test_the_planning_years_are_1900_to_2999() -> None:
    assert out_of_range(FIRST_DAY) is None and out_of_range(LAST_DAY) is None
    for day in (D("1899-12-31"), D("3000-01-01"), date.min, date.max):
        why = out_of_range(day)
        assert why is not None and why.startswith(f"{day} is outside the years 1900-2999")


@pytest.mark.parametrize(
    ("day", "count", "kind"),
    [
        ("9999-12-20", 30, DayKind.WORKING),
        ("0001-01-03", -30, DayKind.WORKING),
        ("9999-12-20", 30, DayKind.CALENDAR),
        ("0001-01-03", -30, DayKind.CALENDAR),
    ],
)
def test_moving_past_the_ends_of_the_calendar_is_refused(
    day: str, count: int, kind: DayKind
) -> None:
    with pytest.raises(InvalidInput, match="go past the ends of the calendar"):
        calendar_for("DE").add(D(day), count, kind)


def _stepped(cal: WorkCalendar, day: date, count: int) -> date:
    """Working-day arithmetic by walking the calendar a day at a time."""
    step = 1 if count >= 0 else -1
    while count:
        day = date.fromordinal(day.toordinal() + step)
        count -= step if cal.is_working_day(day) else 0
    return day


@PROPS
@given(
    cal=calendars,
    day=st.dates(min_value=D("1900-01-01"), max_value=D("2999-12-31")),
    n=st.integers(min_value=-700, max_value=700),
    seeded=st.integers(min_value=-3, max_value=3),
)
def test_tabulated_moves_match_walking_the_calendar(
    cal: WorkCalendar, day: date, n: int, seeded: int
) -> None:
    # A fresh calendar each time, its table started a few years before or after `day`, so
    # that moves extend it both ways (or, at 0, start it).
    fresh = WorkCalendar(cal.country, cal.subdivision)
    if seeded:
        fresh.roll_forward(date(day.year + seeded, 6, 1))
    assert fresh.add_working_days(day, n) == _stepped(cal, day, n)
    assert fresh.roll_forward(day) == (day if cal.is_working_day(day) else _stepped(cal, day, 1))


def test_a_move_across_many_years_extends_the_table() -> None:
    cal = WorkCalendar("DK")
    start = D("2026-03-02")
    assert cal.add_working_days(start, 2_600) == _stepped(cal, start, 2_600)
    assert cal.add_working_days(start, -2_600) == _stepped(cal, start, -2_600)
    assert cal.add_working_days(start, 0) == start


# --- many days at once: the same rule over arrays ------------------------------------------------

# The calendars the KPIs count in, as people and cases get them (`work_area`): a German state
# only where the partner is in Germany too.
ARRAY_CALENDARS = [
    calendar_of("DE", "DE", "Mecklenburg-Vorpommern"),
    calendar_of("DE", "DK", "Mecklenburg-Vorpommern"),
    calendar_of("DE", "DE", "Baden-Württemberg"),
    calendar_of("DK", "DK", "Hovedstaden"),
    calendar_of("SE", None, None),
    calendar_of("PL", "DE", "Mecklenburg-Vorpommern"),
    calendar_of("NO", "NO", None),
    calendar_of("LT", "LT", None),
    calendar_of("FI", "SE", "Skåne"),
]
spans = st.dates(min_value=D("1990-01-01"), max_value=D("2070-12-31"))
many = st.lists(
    st.tuples(st.integers(0, len(ARRAY_CALENDARS) - 1), spans, spans), min_size=1, max_size=30
)


def test_the_array_calendars_are_the_work_areas_of_the_rule() -> None:
    names = [c.name for c in ARRAY_CALENDARS]
    assert names == ["DE-MV", "DE", "DE-BW", "DK", "SE", "PL", "NO", "LT", "FI"]
    assert work_area("DE", "DE", "Mecklenburg-Vorpommern") == ("DE", "MV")
    assert work_area("DE", "DK", "Mecklenburg-Vorpommern") == ("DE", None)


def _workdays(first: str = "2026-01-01", last: str = "2026-12-31") -> Workdays:
    """Over a narrow span of years at first: the days asked about widen it."""
    return Workdays(ARRAY_CALENDARS, D(first), D(last))


def _arrays(rows: list[tuple[int, date, date]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    codes = np.array([r[0] for r in rows], dtype=np.int64)
    return (
        codes,
        np.array([r[1] for r in rows], dtype="datetime64[D]"),
        np.array([r[2] for r in rows], dtype="datetime64[D]"),
    )


@PROPS
@given(rows=many)
def test_working_days_between_over_arrays_is_the_calendars_count(
    rows: list[tuple[int, date, date]],
) -> None:
    codes, start, end = _arrays(rows)
    got = _workdays().between(start, end, codes)
    expected = [ARRAY_CALENDARS[c].working_days_between(a, b) for c, a, b in rows]
    assert got.tolist() == expected


@PROPS
@given(rows=many, count=st.integers(min_value=-400, max_value=400), calendar_days=st.booleans())
def test_adding_days_over_arrays_is_the_calendars_move(
    rows: list[tuple[int, date, date]], count: int, calendar_days: bool
) -> None:
    codes, days, _ = _arrays(rows)
    kind = DayKind.CALENDAR if calendar_days else DayKind.WORKING
    work = _workdays()
    got = work.add(days, count, kind, codes).astype(object).tolist()
    assert got == [ARRAY_CALENDARS[c].add(day, count, kind) for c, day, _ in rows]
    rolled = work.roll_forward(days, codes).astype(object).tolist()
    assert rolled == [ARRAY_CALENDARS[c].roll_forward(day) for c, day, _ in rows]


def test_missing_days_and_calendars_give_missing_answers() -> None:
    work = _workdays()
    nat = np.datetime64("NaT", "D")
    days = np.array([nat, "2026-04-02", "2026-04-02"], dtype="datetime64[D]")
    codes = np.array([3, -1, 3], dtype=np.int64)
    later = np.array(["2026-04-07"] * 3, dtype="datetime64[D]")
    assert np.isnan(work.between(days, later, codes)[:2]).all()
    assert work.between(days, later, codes)[2] == 1  # DK: Thu 2 .. Mon 6 April off
    moved = work.add(days, 1, DayKind.WORKING, codes)
    assert np.isnat(moved[:2]).all() and moved[2] == np.datetime64("2026-04-07")
    assert np.isnat(work.roll_forward(days, codes)[:2]).all()


@pytest.mark.parametrize("calendar", ARRAY_CALENDARS, ids=lambda c: c.name)
def test_numpys_form_of_a_calendar_has_its_working_days(calendar: WorkCalendar) -> None:
    days = np.arange(np.datetime64("2025-01-01"), np.datetime64("2027-01-01"))
    working = np.is_busday(days, busdaycal=calendar.busdaycalendar(2025, 2026))
    assert working.tolist() == [calendar.is_working_day(d) for d in days.astype(object)]
    assert all(not calendar.is_working_day(d) for d in calendar.holidays_in(2025, 2026))
