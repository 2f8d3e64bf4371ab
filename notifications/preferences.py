"""Each recipient's preferences, as one pure rule (`plan`): what goes to them now, and which
rows wait until when.

- in their quiet hours (local night, 21:00 to 07:00 unless they chose otherwise) nothing goes;
  the rows are `held` until the night ends;
- with `digest` on, what is not urgent waits for one message at 08:00 local on a working day
  (the reader's working-day calendar when dispatch is given it, else Monday to Friday, not a
  public holiday of the reader's country);
- past their `daily_cap` of messages today, one overflow summary carries the rest; after that,
  rows wait for the next day.
"""

from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache, partial
from typing import Any
from zoneinfo import ZoneInfo

import holidays

QUIET_FROM, QUIET_UNTIL = time(21, 0), time(7, 0)  # the default local night
DIGEST_AT = time(8, 0)  # local time of the daily digest, on a working day
FIRST_RETRY = timedelta(minutes=2)
LONGEST_RETRY = timedelta(hours=6)
# Why a row is held: the reader's quiet hours, their morning digest, their daily cap.
QUIET, DIGEST, CAP = "quiet_hours", "digest", "cap"


@dataclass(frozen=True)
class Recipient:
    """A contact as dispatch sees them: address, tags and preferences."""

    id: int
    email: str
    partner: str
    zone: str
    channels: frozenset[str] = frozenset({"email", "chat"})
    digest: bool = False
    quiet: tuple[time, time] | None = (QUIET_FROM, QUIET_UNTIL)
    cap: int = 0
    country: str = ""  # whose public holidays have no digest ("" for none)
    partner_country: str = ""
    region: str | None = None
    # When this is a deputy reading an absent person's notices: that person's address, and
    # the last day they are away.
    for_whom: str = ""
    away_until: date | None = None
    # The generation of their signed links (`contacts.link_generation`): the links a message
    # carries are signed at it.
    link_generation: int = 1


@dataclass(frozen=True)
class Row:
    """An outbox row as dispatch needs it."""

    id: int
    attempts: int
    urgent: bool
    created_at: datetime
    payload: dict[str, Any]
    delivered: frozenset[str] = frozenset()
    sending: bool = False  # an earlier attempt's outcome was never recorded


@dataclass(frozen=True)
class Outgoing:
    """One message planned for one recipient: a `notice`, a `digest` or an `overflow` summary,
    and the rows it carries."""

    kind: str
    rows: tuple[Row, ...]


@dataclass
class Plan:
    """What to send to one recipient now, and which rows wait until when."""

    messages: list[Outgoing] = field(default_factory=list)
    holds: dict[int, datetime] = field(default_factory=dict)
    why: dict[int, str] = field(default_factory=dict)  # each held row's reason: QUIET, ...

    def hold(self, ids: Iterable[int], until: datetime, why: str) -> None:
        """Rows `ids` wait until `until`, for `why` (QUIET, DIGEST or CAP)."""
        for nid in ids:
            self.holds[nid] = until
            self.why[nid] = why


def backoff(attempts: int) -> timedelta:
    """Wait before attempt `attempts + 1`: 2 min, 4, 8, ... at most 6 hours."""
    wait: timedelta = FIRST_RETRY * (2 ** max(attempts - 1, 0))
    return min(wait, LONGEST_RETRY)


def quiet_until(
    now: datetime, zone: str, quiet: tuple[time, time] | None = (QUIET_FROM, QUIET_UNTIL)
) -> datetime | None:
    """When the recipient's quiet hours end, if `now` falls in them (None otherwise).

    Quiet hours may run over midnight (21:00-07:00) or lie within one day (12:00-13:00)."""
    if quiet is None:
        return None
    start, end = quiet
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    clock = local.time()
    if start > end:  # over midnight
        if end <= clock < start:
            return None
        day = local.date() + timedelta(days=1 if clock >= start else 0)
    else:
        if not start <= clock < end:
            return None
        day = local.date()
    return datetime.combine(day, end, tzinfo=tz).astimezone(UTC)


def digest_time(
    created: datetime,
    zone: str,
    country: str = "",
    working_day: Callable[[date], bool] | None = None,
) -> datetime:
    """The first digest (08:00 local on a working day: `working_day`'s, else Monday to
    Friday, not a public holiday of `country`) at or after `created`."""
    tz = ZoneInfo(zone)
    local = created.astimezone(tz)
    day = local.date() if local.time() <= DIGEST_AT else local.date() + timedelta(days=1)
    working = working_day or partial(_usual_working_day, country)
    for _ in range(366):  # a calendar with no working day in a year has none at all
        if working(day):
            break
        day += timedelta(days=1)
    return datetime.combine(day, DIGEST_AT, tzinfo=tz).astimezone(UTC)


def _usual_working_day(country: str, day: date) -> bool:
    """Monday to Friday, not a public holiday of `country`."""
    return day.weekday() < 5 and day not in _public_holidays(country)


@lru_cache(maxsize=64)
def _public_holidays(country: str) -> Container[date]:
    """A country's public holidays (none for an empty or unknown code)."""
    try:
        return holidays.country_holidays(country) if country else frozenset()
    except NotImplementedError:
        return frozenset()


def local_midnight(now: datetime, zone: str, days: int = 0) -> datetime:
    """The start of the recipient's local day (`days` after today's), in UTC."""
    tz = ZoneInfo(zone)
    day = now.astimezone(tz).date() + timedelta(days=days)
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def plan(
    recipient: Recipient,
    rows: Sequence[Row],
    now: datetime,
    *,
    sent_today: int = 0,
    summary_sent: bool = False,
    working_day: Callable[[date], bool] | None = None,
) -> Plan:
    """Decide, for one recipient, which messages go now and which rows wait (pure).

    `sent_today` counts the messages they already had today (their local day);
    `summary_sent` says whether today's overflow summary went already; `working_day` says
    which days a digest may come on (see `digest_time`)."""
    out = Plan()
    morning = quiet_until(now, recipient.zone, recipient.quiet)
    if morning is not None:
        out.hold((r.id for r in rows), morning, QUIET)
        return out
    ordered = sorted(rows, key=lambda r: (not r.urgent, r.id))
    urgent = [r for r in ordered if r.urgent or not recipient.digest]
    digest = [r for r in ordered if not r.urgent and recipient.digest]
    due_digest = []
    for r in digest:
        when = digest_time(r.created_at, recipient.zone, recipient.country, working_day)
        if when > now:
            out.hold((r.id,), when, DIGEST)
        else:
            due_digest.append(r)
    messages = [Outgoing("notice", (r,)) for r in urgent if r.urgent]
    if due_digest:
        messages.append(Outgoing("digest", tuple(due_digest)))
    messages += [Outgoing("notice", (r,)) for r in urgent if not r.urgent]
    if recipient.cap <= 0:
        out.messages = messages
        return out
    room = max(recipient.cap - sent_today, 0)
    out.messages, over = messages[:room], messages[room:]
    carried = tuple(r for m in over for r in m.rows)
    if not carried:
        return out
    if summary_sent:
        tomorrow = local_midnight(now, recipient.zone, days=1)
        out.hold((r.id for r in carried), tomorrow, CAP)
    else:
        out.messages.append(Outgoing("overflow", carried))
    return out
