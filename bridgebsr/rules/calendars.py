"""Working days per country (and German state), from the `holidays` package."""

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import holidays

from bridgebsr.errors import InvalidInput
from models import DayKind

SCANBALT_COUNTRIES = ("DK", "SE", "FI", "NO", "IS", "EE", "LV", "LT", "PL", "DE", "RU")
# The days a case may start on or be looked at from: far enough from the ends of Python's
# calendar (years 1 and 9999) that planning forward or back from them never leaves it.
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2999, 12, 31)


def out_of_range(day: date) -> str | None:
    """Why cases cannot be planned from `day`, or None when it is FIRST_DAY..LAST_DAY."""
    if FIRST_DAY <= day <= LAST_DAY:
        return None
    return (
        f"{day} is outside the years {FIRST_DAY.year}-{LAST_DAY.year} that cases are planned "
        f"in; give a date from {FIRST_DAY} to {LAST_DAY}"
    )


def _past_the_end(day: date, count: int, kind: str) -> InvalidInput:
    return InvalidInput(
        f"{count} {kind} days from {day} go past the ends of the calendar "
        f"({date.min}..{date.max}); plan from a date from {FIRST_DAY} to {LAST_DAY}"
    )


# Moves from days in these years (and by at most this many working days) are answered from a
# table of each calendar's working days, built for the years asked about; anything else, such
# as a move towards the ends of Python's calendar, steps day by day.
_TABULATED = (FIRST_DAY.year - 100, LAST_DAY.year + 100)
_TABULATED_COUNT = 100_000


@dataclass(frozen=True, slots=True)
class _Span:
    """A calendar's working days over whole years from `lo` (an ordinal)."""

    first_year: int
    last_year: int
    lo: int
    days: list[date]  # the working days, in order
    next: list[int]  # per day from `lo`: the index in `days` of the first on or after it


class WorkCalendar:
    """Monday to Friday minus the public holidays of one country or subdivision."""

    def __init__(self, country: str, subdivision: str | None = None) -> None:
        self.country = country
        self.subdivision = subdivision
        self._holidays = holidays.country_holidays(country, subdiv=subdivision)
        self._working: dict[date, bool] = {}  # answers so far: holidays never move
        self._span: _Span | None = None  # working days tabulated for a span of years

    def __repr__(self) -> str:
        where = f"{self.country}-{self.subdivision}" if self.subdivision else self.country
        return f"WorkCalendar({where})"

    def is_working_day(self, day: date) -> bool:
        """Whether `day` is a working day here."""
        known = self._working.get(day)
        if known is None:
            known = self._working[day] = day.weekday() < 5 and day not in self._holidays
        return known

    def holiday_name(self, day: date) -> str | None:
        """The public holiday on `day`, if any."""
        name = self._holidays.get(day)
        return None if name is None else str(name)

    def roll_forward(self, day: date) -> date:
        """`day` itself if it is a working day, else the next one."""
        if _TABULATED[0] <= day.year <= _TABULATED[1]:
            while True:
                span = self._span
                if span is not None:
                    offset = day.toordinal() - span.lo
                    if 0 <= offset < len(span.next) - 1 and span.next[offset] < len(span.days):
                        return span.days[span.next[offset]]
                self._cover(day.year, day.year + 1)
        start = day
        try:
            while not self.is_working_day(day):
                day += timedelta(days=1)
        except OverflowError:
            raise _past_the_end(start, 1, "working") from None
        return day

    def add_working_days(self, day: date, count: int) -> date:
        """The date `count` working days after `day` (before it when negative); InvalidInput
        when that is beyond the ends of the calendar."""
        if count == 0:
            return day
        if _TABULATED[0] <= day.year <= _TABULATED[1] and abs(count) <= _TABULATED_COUNT:
            years = abs(count) // 200 + 1
            while True:
                span = self._span
                if span is not None:
                    offset = day.toordinal() - span.lo
                    if 0 <= offset < len(span.next) - 1:
                        # Forward: from the first working day after `day`. Back: the working
                        # days before `day` are those listed before the first on or after it.
                        at = (
                            span.next[offset + 1] + count - 1
                            if count > 0
                            else span.next[offset] + count
                        )
                        if 0 <= at < len(span.days):
                            return span.days[at]
                if count > 0:
                    self._cover(day.year, day.year + years)
                else:
                    self._cover(day.year - years, day.year)
                years += 1
        start = day
        step = timedelta(days=1 if count >= 0 else -1)
        remaining = abs(count)
        try:
            while remaining:
                day += step
                if self.is_working_day(day):
                    remaining -= 1
        except OverflowError:
            raise _past_the_end(start, count, "working") from None
        return day

    def _cover(self, first_year: int, last_year: int) -> None:
        """Tabulate the working days of these years, and of those already tabulated. The
        table is replaced whole, so a thread reading the old one meanwhile stays right."""
        span = self._span
        if span is not None:
            first_year, last_year = min(first_year, span.first_year), max(last_year, span.last_year)
        lo = date(first_year, 1, 1).toordinal()
        hi = date(last_year, 12, 31).toordinal()
        days: list[date] = []
        nxt: list[int] = []
        for ordinal in range(lo, hi + 1):
            nxt.append(len(days))
            day = date.fromordinal(ordinal)
            if self.is_working_day(day):
                days.append(day)
        nxt.append(len(days))  # one past the span
        self._span = _Span(first_year, last_year, lo, days, nxt)

    def add(self, day: date, count: int, kind: DayKind) -> date:
        """Move `count` days of the given kind from `day`."""
        if kind is DayKind.CALENDAR:
            try:
                return day + timedelta(days=count)
            except OverflowError:
                raise _past_the_end(day, count, "calendar") from None
        return self.add_working_days(day, count)

    def working_days_between(self, start: date, end: date) -> int:
        """Working days in (start, end]; negative when `end` is before `start`."""
        if end < start:
            return -self.working_days_between(end, start)
        return sum(
            self.is_working_day(start + timedelta(days=i)) for i in range(1, (end - start).days + 1)
        )


@lru_cache(maxsize=256)
def calendar_for(country: str, subdivision: str | None = None) -> WorkCalendar:
    """The shared calendar of a country, or of one of its subdivisions."""
    return WorkCalendar(country, subdivision)


def work_area(
    country: str, partner_country: str | None, region: str | None
) -> tuple[str, str | None]:
    """Where someone works, as a calendar sees it: their `country`, with the `region` of
    their partner (for a case: of its lead partner) only when that partner is in the same
    country. The one home of that rule: people, cases, the monitor, bulk import and the KPIs
    all ask it."""
    return country, subdivision_of(country, region if partner_country == country else None)


def calendar_of(country: str, partner_country: str | None, region: str | None) -> WorkCalendar:
    """The working calendar of someone (or a case) in `country` whose partner (lead partner)
    is in `partner_country`, `region` (see `work_area`)."""
    return calendar_for(*work_area(country, partner_country, region))


@lru_cache(maxsize=1024)
def subdivision_of(country: str, region: str | None) -> str | None:
    """The `holidays` subdivision code a region names (Mecklenburg-Vorpommern -> MV), if any."""
    if not region:
        return None
    cls = holidays.country_holidays(country).__class__
    codes = {str(code).upper(): str(code) for code in getattr(cls, "subdivisions", ())}
    aliases = {
        str(k).casefold(): str(v) for k, v in getattr(cls, "subdivisions_aliases", {}).items()
    }
    return codes.get(region.upper()) or aliases.get(region.casefold())


def supports_country(country: str) -> bool:
    """Whether the `holidays` package knows this ISO 3166-1 alpha-2 code."""
    return country in holidays.list_supported_countries()
