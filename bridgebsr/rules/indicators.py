"""Indicator measurements: the one rule that checks a value a case records for an indicator
of its template, in one region on one day (`case measure` and its sheet import both call it).

- the indicator is one the case's template declares (`indicators:`), by its key;
- the region is a non-empty line of text that fits the store (120 characters);
- the value is a finite number (a dot for decimals; a comma is read as the decimal mark
  when it is the only separator, as spreadsheets of the region write it);
- the day is an ISO date (2026-05-01), not after today and within the calendars' range;
- the note is one line of at most 500 characters.

A bad value is an InvalidInput of one line naming what is wrong and how to fix it, prefixed
by `where` (the option or the sheet's row and column).
"""

import math
import re
from dataclasses import dataclass
from datetime import date

from bridgebsr.errors import InvalidInput
from bridgebsr.rules.calendars import out_of_range
from bridgebsr.rules.texts import is_control
from models import IndicatorSpec, Template

REGION_MAX = 120
NOTE_MAX = 500
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Reading:
    """One checked measurement: an indicator's value for a region on a day."""

    indicator: str
    region: str
    on: date
    value: float
    note: str = ""

    def values(self) -> dict[str, object]:
        """What its audit event records."""
        return {
            "indicator": self.indicator,
            "region": self.region,
            "on": self.on.isoformat(),
            "value": self.value,
            "note": self.note,
        }


def indicator_of(template: Template, key: str, where: str = "--indicator ") -> IndicatorSpec:
    """The template's indicator `key`, else InvalidInput listing the ones it declares."""
    for spec in template.indicators:
        if spec.key == key.strip():
            return spec
    known = ", ".join(i.key for i in template.indicators)
    if not known:
        raise InvalidInput(
            f"{where}'{key}': template {template.kind} version {template.version} declares no "
            "indicators; add them under `indicators:` in a new template version"
        )
    raise InvalidInput(f"{where}'{key}' is no indicator of {template.kind}; give one of: {known}")


def region(text: str, where: str = "--region ") -> str:
    """A region's name: one non-empty line that fits the store."""
    name = text.strip()
    if not name:
        raise InvalidInput(f"{where}is empty; name the region (Skane, Pomorskie, ...)")
    if any(is_control(ch) for ch in name):
        raise InvalidInput(f"{where}contains a control character; give one line")
    if len(name) > REGION_MAX:
        raise InvalidInput(f"{where}{len(name)} characters; at most {REGION_MAX} fit; shorten it")
    return name


def number(text: str, where: str = "--value ") -> float:
    """A finite number from what a person typed (`12`, `12.5`, `12,5`)."""
    raw = text.strip()
    typed = raw.replace(",", ".") if raw.count(",") == 1 and "." not in raw else raw
    value = float(typed) if _NUMBER.match(typed) else math.nan
    if not math.isfinite(value):
        shown = repr(raw if len(raw) <= 40 else raw[:40] + "...")
        raise InvalidInput(f"{where}{shown} is not a number; give one like 12 or 37.5")
    return value


def day(text: str, today: date, where: str = "--on ") -> date:
    """The day a value was measured: an ISO date, not in the future."""
    try:
        found = date.fromisoformat(text.strip())
    except ValueError:
        shown = repr(text.strip()[:40])
        raise InvalidInput(f"{where}{shown} is not an ISO date; give one like 2026-05-01") from None
    if why := out_of_range(found):
        raise InvalidInput(f"{where}{why}")
    if found > today:
        raise InvalidInput(
            f"{where}{found} is in the future (today is {today}); record a value once measured"
        )
    return found


def note(text: str, where: str = "--note ") -> str:
    """A measurement's note: one line of at most NOTE_MAX characters (may be empty)."""
    found = text.strip()
    if any(is_control(ch) for ch in found):
        raise InvalidInput(f"{where}contains a control character; give one line")
    if len(found) > NOTE_MAX:
        raise InvalidInput(f"{where}{len(found)} characters; at most {NOTE_MAX} fit; shorten it")
    return found


def reading(
    template: Template,
    *,
    indicator: str,
    region_name: str,
    value: str,
    on: str,
    today: date,
    note_text: str = "",
    where: dict[str, str] | None = None,
) -> Reading:
    """One measurement checked against the case's template: every rule above, each problem
    named by `where` (field -> prefix; the options by default)."""
    at = {
        "indicator": "--indicator ",
        "region": "--region ",
        "value": "--value ",
        "on": "--on ",
        "note": "--note ",
        **(where or {}),
    }
    spec = indicator_of(template, indicator, at["indicator"])
    return Reading(
        indicator=spec.key,
        region=region(region_name, at["region"]),
        on=day(on, today, at["on"]),
        value=number(value, at["value"]),
        note=note(note_text, at["note"]),
    )


def doubled(readings: list[tuple[int, Reading]]) -> tuple[int, int, Reading] | None:
    """The first reading that repeats an earlier one's indicator, region and day (row
    numbers of both), or None."""
    seen: dict[tuple[str, str, date], int] = {}
    for row, r in readings:
        key = (r.indicator, r.region, r.on)
        if key in seen:
            return seen[key], row, r
        seen[key] = row
    return None
