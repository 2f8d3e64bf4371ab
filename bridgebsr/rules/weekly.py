"""The weekly report's rules: which week a day is in, what that week's stored files are named,
who reads which version, and how many weeks are kept.

- Week: the ISO week of the day in the office's time zone (`2026-W49`); a report is built once
  a week and named after it (`weekly-2026-W49`), so a second run the same week finds it.
- Readers: the coordinator(s) (role `coordinator`) and the pilot leads (a `leads` entry in the
  directory) get the whole portfolio; every other contact of a partner that leads at least one
  open case gets that partner's version (the cases it leads). Retired contacts and contacts
  who take no email (`channels` without `email`) get nothing.
- Retention: the reports of the last `KEEP_WEEKS` weeks stay in the store; older weekly
  reports are deleted when a new week's report is stored.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, time, timedelta

from bridgebsr.rules.roles import led_kinds

COORDINATOR = "coordinator"  # the role that gets the whole portfolio, with the pilot leads
WHOLE = ""  # the scope of the whole portfolio (a partner's version is scoped by its code)
KEEP_WEEKS = 12  # weeks of weekly reports the store keeps
PREFIX = "weekly-"


@dataclass(frozen=True, slots=True)
class Reader:
    """A contact as the rule sees them."""

    id: int
    email: str
    name: str
    role: str
    leads: str
    partner: str
    channels: str
    retired: bool = False
    zone: str = "UTC"  # their time zone, for their quiet hours
    quiet: tuple[time, time] | None = None  # their local night: no email then


def week_of(day: date) -> str:
    """The ISO week `day` falls in, as `2026-W49`."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def report_name(day: date) -> str:
    """The stored name of the weekly report of `day`'s week (`weekly-2026-W49`); names sort
    in week order."""
    return PREFIX + week_of(day)


def oldest_kept(day: date, keep: int = KEEP_WEEKS) -> str:
    """The name of the oldest weekly report kept when `day`'s week is the newest: the weeks
    before it are deleted."""
    return report_name(day - timedelta(weeks=max(keep, 1) - 1))


def delivery_kind(day: date) -> str:
    """What a receipt of the weekly report of `day`'s week is recorded as (`report
    2026-W49`): one ok receipt per reader and week means that reader has it."""
    return f"report {week_of(day)}"


def whole_portfolio(reader: Reader) -> bool:
    """Whether `reader` gets the whole portfolio: a coordinator or a pilot lead."""
    return reader.role == COORDINATOR or bool(led_kinds(reader.leads))


def readers(people: Iterable[Reader], leading: Iterable[str]) -> dict[str, tuple[Reader, str]]:
    """Who gets the weekly report, by email: each reader and their version's scope (`WHOLE`,
    or the code of their partner, one of `leading`, the partners leading an open case)."""
    active = set(leading)
    out: dict[str, tuple[Reader, str]] = {}
    for person in people:
        if person.retired or "email" not in {c.strip() for c in person.channels.split(",")}:
            continue
        if whole_portfolio(person):
            out[person.email] = (person, WHOLE)
        elif person.partner in active:
            out[person.email] = (person, person.partner)
    return out


def may_read(reader: Reader, scope: str) -> bool:
    """Whether `reader` may open a stored report of `scope` (the web app's rule): the whole
    portfolio's readers any, anyone else only their own partner's version."""
    if reader.retired:
        return False
    return whole_portfolio(reader) or (scope != WHOLE and scope == reader.partner)
