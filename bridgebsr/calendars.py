"""Working days per country (and German state), from the `holidays` package."""

from datetime import date, timedelta
from functools import lru_cache

import holidays

from models import DayKind

SCANBALT_COUNTRIES = ("DK", "SE", "FI", "NO", "IS", "EE", "LV", "LT", "PL", "DE", "RU")


class WorkCalendar:
    """Monday to Friday minus the public holidays of one country or subdivision."""

    def __init__(self, country: str, subdivision: str | None = None) -> None:
        self.country = country
        self.subdivision = subdivision
        self._holidays = holidays.country_holidays(country, subdiv=subdivision)

    def __repr__(self) -> str:
        where = f"{self.country}-{self.subdivision}" if self.subdivision else self.country
        return f"WorkCalendar({where})"

    def is_working_day(self, day: date) -> bool:
        """Whether `day` is a working day here."""
        return day.weekday() < 5 and day not in self._holidays

    def holiday_name(self, day: date) -> str | None:
        """The public holiday on `day`, if any."""
        name = self._holidays.get(day)
        return None if name is None else str(name)

    def roll_forward(self, day: date) -> date:
        """`day` itself if it is a working day, else the next one."""
        while not self.is_working_day(day):
            day += timedelta(days=1)
        return day

    def add_working_days(self, day: date, count: int) -> date:
        """The date `count` working days after `day` (before it when negative)."""
        step = timedelta(days=1 if count >= 0 else -1)
        remaining = abs(count)
        while remaining:
            day += step
            if self.is_working_day(day):
                remaining -= 1
        return day

    def add(self, day: date, count: int, kind: DayKind) -> date:
        """Move `count` days of the given kind from `day`."""
        if kind is DayKind.CALENDAR:
            return day + timedelta(days=count)
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
