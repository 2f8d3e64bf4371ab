"""Working days per country (and German state), from the `holidays` package."""

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


class WorkCalendar:
    """Monday to Friday minus the public holidays of one country or subdivision."""

    def __init__(self, country: str, subdivision: str | None = None) -> None:
        self.country = country
        self.subdivision = subdivision
        self._holidays = holidays.country_holidays(country, subdiv=subdivision)
        self._working: dict[date, bool] = {}  # answers so far: holidays never move

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
