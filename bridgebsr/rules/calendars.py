"""Working days per country (and German state), from the `holidays` package.

A working day is one of WORKING_WEEKDAYS that is not a public holiday of the calendar's
country (or subdivision). `WorkCalendar` answers for one day at a time; `Workdays` applies the
same rule to arrays of days (numpy, for the KPIs), from each calendar's `busdaycalendar`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import holidays

from bridgebsr.errors import InvalidInput
from models import DayKind

if TYPE_CHECKING:  # numpy is imported where arrays are asked for, not with the calendars
    import numpy as np
    import numpy.typing as npt

    DayArray = npt.NDArray[np.datetime64]
    IntArray = npt.NDArray[np.int64]
    FloatArray = npt.NDArray[np.float64]
    BoolArray = npt.NDArray[np.bool_]

SCANBALT_COUNTRIES = ("DK", "SE", "FI", "NO", "IS", "EE", "LV", "LT", "PL", "DE", "RU")
WORKING_WEEKDAYS = range(5)  # Monday (0) to Friday (4), as `date.weekday` numbers them
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
        self._holidays = _public_holidays(country, subdivision)
        self._working: dict[date, bool] = {}  # answers so far: holidays never move
        self._span: _Span | None = None  # working days tabulated for a span of years
        self._numpy: dict[tuple[int, int], Any] = {}  # busdaycalendar by span of years

    def __repr__(self) -> str:
        return f"WorkCalendar({self.name})"

    def __reduce__(self) -> tuple[Any, tuple[str, str | None]]:
        """Pickled as its country and subdivision: unpickled, the shared calendar of those."""
        return (calendar_for, (self.country, self.subdivision))

    @property
    def name(self) -> str:
        """The country, and its subdivision after a hyphen: "DK", "DE-MV"."""
        return f"{self.country}-{self.subdivision}" if self.subdivision else self.country

    def is_working_day(self, day: date) -> bool:
        """Whether `day` is a working day here."""
        known = self._working.get(day)
        if known is None:
            known = self._working[day] = (
                day.weekday() in WORKING_WEEKDAYS and day not in self._holidays
            )
        return known

    def holidays_in(self, first_year: int, last_year: int) -> list[date]:
        """The public holidays of these years (both included), in order: with the weekend,
        the days that are not working days here."""
        years = range(first_year, last_year + 1)
        return sorted(_public_holidays(self.country, self.subdivision, years))

    def busdaycalendar(self, first_year: int, last_year: int) -> np.busdaycalendar:
        """This calendar in numpy's terms for these years (a day outside them counts as a
        working day on any of WORKING_WEEKDAYS): for arrays of days (see `Workdays`)."""
        span = (first_year, last_year)
        found = self._numpy.get(span)
        if found is None:
            import numpy as np

            found = self._numpy[span] = np.busdaycalendar(
                weekmask=[day in WORKING_WEEKDAYS for day in range(7)],
                holidays=np.array(self.holidays_in(first_year, last_year), dtype="datetime64[D]"),
            )
        return found

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


def _public_holidays(
    country: str, subdivision: str | None, years: Iterable[int] | None = None
) -> holidays.HolidayBase:
    """The public holidays of a country or subdivision (of `years`, else of any year asked
    about): the `holidays` package's, the one source of them."""
    return holidays.country_holidays(country, subdiv=subdivision, years=years)


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


class Workdays:
    """`WorkCalendar`'s arithmetic over arrays of days, each day in one of `calendars`.

    `codes` (per day) are positions in `calendars`; -1 (no calendar) gives a missing result,
    as does a missing day (NaT). The rule is each calendar's own (`busdaycalendar`): this is
    it applied to many days at once, with numpy. Spans are counted from a table of working
    days, one row per calendar; dates are moved with `numpy.busday_offset`. Both cover whole
    decades around the days asked about, and grow when a day falls outside.
    """

    def __init__(self, calendars: Sequence[WorkCalendar], first: date, last: date) -> None:
        self.calendars = list(calendars)
        # Whole decades with room after, so that successive uses share the holiday arrays.
        self._years = (first.year // 10 * 10 - 10, last.year // 10 * 10 + 19)
        self._table: tuple[np.datetime64, npt.NDArray[np.int32]] | None = None

    def prepare(self) -> None:
        """Make the table of working days now rather than at the first count."""
        self._counts()

    def _cover(self, days: DayArray) -> None:
        """Widen the years covered to hold every (known) day of `days`."""
        import numpy as np

        known = days[~np.isnat(days)]
        if not len(known):
            return
        low = int(known.min().astype("datetime64[Y]").astype(np.int64)) + 1970
        high = int(known.max().astype("datetime64[Y]").astype(np.int64)) + 1970
        first, last = self._years
        if low < first or high > last:
            self._years = (min(first, low // 10 * 10), max(last, high // 10 * 10 + 9))
            self._table = None

    def _counts(self) -> tuple[np.datetime64, npt.NDArray[np.int32]]:
        """The first day of the table, and per calendar the working days from it to each day."""
        import numpy as np

        table = self._table
        if table is None:
            first, last = self._years
            base = np.datetime64(f"{first:04d}-01-01", "D")
            days = np.arange(base, np.datetime64(f"{last + 1:04d}-01-01", "D"))
            counts = np.zeros((max(len(self.calendars), 1), len(days)), dtype=np.int32)
            for code, calendar in enumerate(self.calendars):
                counts[code] = np.cumsum(np.is_busday(days, busdaycal=self._numpy(calendar)))
            table = self._table = (base, counts)
        return table

    def _numpy(self, calendar: WorkCalendar) -> np.busdaycalendar:
        return calendar.busdaycalendar(*self._years)

    def _each(self, rows: BoolArray, codes: IntArray) -> Iterator[tuple[BoolArray, Any]]:
        import numpy as np

        for code in np.unique(codes[rows]):
            if code >= 0:
                yield rows & (codes == code), self._numpy(self.calendars[code])

    def between(self, start: DayArray, end: DayArray, codes: IntArray) -> FloatArray:
        """Working days in (start, end], negative when end is before start, as
        `WorkCalendar.working_days_between` counts them; NaN where anything is missing."""
        import numpy as np

        self._cover(start)
        self._cover(end)
        base, table = self._counts()
        width = table.shape[1]
        counts = table.ravel()
        known = ~(np.isnat(start) | np.isnat(end)) & (codes >= 0)
        row = np.where(known, codes, 0) * width
        i = np.where(known, (start - base).astype(np.int64), 0)
        j = np.where(known, (end - base).astype(np.int64), 0)
        out: FloatArray = (counts[row + j] - counts[row + i]).astype(np.float64)
        out[~known] = np.nan
        return out

    def add(self, days: DayArray, count: int, kind: DayKind, codes: IntArray) -> DayArray:
        """`count` days of the given kind after each day (`WorkCalendar.add`)."""
        import numpy as np

        if kind is DayKind.CALENDAR:
            return days + np.timedelta64(count, "D")
        if count == 0:
            return days.copy()
        self._cover(days)
        while True:
            out = np.full(len(days), np.datetime64("NaT", "D"))
            # From a day off, the working days after it are those after the working day before
            # it (and the working days before it those before the working day after it).
            roll: Literal["backward", "forward"] = "backward" if count > 0 else "forward"
            for rows, calendar in self._each(~np.isnat(days), codes):
                out[rows] = np.busday_offset(days[rows], count, roll=roll, busdaycal=calendar)
            covered = self._years
            self._cover(out)
            if self._years == covered:
                return out

    def roll_forward(self, days: DayArray, codes: IntArray) -> DayArray:
        """Each day if it is a working day, else the next one (`WorkCalendar.roll_forward`)."""
        import numpy as np

        self._cover(days)
        while True:
            out = np.full(len(days), np.datetime64("NaT", "D"))
            for rows, calendar in self._each(~np.isnat(days), codes):
                out[rows] = np.busday_offset(days[rows], 0, roll="forward", busdaycal=calendar)
            covered = self._years
            self._cover(out)
            if self._years == covered:
                return out
