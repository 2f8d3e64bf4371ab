"""The people and organisations a case is worked by, as every rule sees them: one `Person`,
one `Directory` snapshot (built by `store.people.load_directory`), and who holds a role for a
case (`rules.roles`) and which calendar someone works by (`rules.calendars.work_area`); and
absences: who is away on a day, who stands in for them (`acting_for`), which absences a new
one may not overlap (`check_absence`)."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from bridgebsr.errors import InvalidInput
from bridgebsr.rules.calendars import WorkCalendar, calendar_for, work_area
from bridgebsr.rules.roles import Team, case_role_holders, led_kinds
from bridgebsr.rules.rows import Organisation


@dataclass(frozen=True, slots=True)
class Person:
    """A contact with what rules read about them: role, partner, place, the kinds they lead."""

    id: int
    email: str
    name: str
    role: str
    partner_id: int
    partner_code: str
    country: str
    timezone: str
    leads: tuple[str, ...]
    area: tuple[str, str | None]  # (country, holidays subdivision): see `work_area`

    @property
    def calendar(self) -> WorkCalendar:
        """The working days this person keeps (calendars are shared, built once per area)."""
        return calendar_for(*self.area)


def person(
    row: tuple[int, str, str, str, int, str, str, str],
    org: Organisation,
    leads: str = "",
) -> Person:
    """A `Person` from a contact's (id, email, name, role, partner_id, country, timezone) and
    their partner: the one place a contact row becomes a person."""
    cid, email, name, role, partner_id, country, timezone = row[:7]
    return Person(
        cid,
        email,
        name,
        role,
        partner_id,
        org.code,
        country,
        timezone,
        tuple(led_kinds(leads)),
        work_area(country, org.country, org.region),
    )


@dataclass(frozen=True)
class Directory:
    """Everyone a pass, an import or an opening reads, in the order they were added."""

    people: dict[int, Person]
    orgs: dict[int, Organisation]
    by_email: dict[str, Person] = field(default_factory=dict)
    by_role: dict[str, list[Person]] = field(default_factory=dict)
    leads: dict[str, list[Person]] = field(default_factory=dict)  # by pilot kind
    orgs_by_code: dict[str, Organisation] = field(default_factory=dict)

    @classmethod
    def of(cls, people: Iterable[Person], orgs: Iterable[Organisation]) -> "Directory":
        """The snapshot of `people` (in the order given: the first holder of a role comes
        first) and `orgs`, with its indexes."""
        d = cls({p.id: p for p in people}, {o.id: o for o in orgs})
        for p in d.people.values():
            d.by_email[p.email] = p
            d.by_role.setdefault(p.role, []).append(p)
            for kind in p.leads:
                d.leads.setdefault(kind, []).append(p)
        d.orgs_by_code.update((o.code, o) for o in d.orgs.values())
        return d

    def role_holders(
        self, role: str, lead_partner_id: int, kind: str, team: Team | None = None
    ) -> list[Person]:
        """Who holds `role` for a case of `kind` led by `lead_partner_id`, with its `team`
        (role -> contact id) when it has one (`case_role_holders`)."""
        member = team.get(role) if team else None
        return case_role_holders(
            self.by_role.get(role, []),
            lead_partner_id,
            self.leads.get(kind, []),
            self.people.get(member) if member is not None else None,
        )

    def case_calendar(self, country: str, lead_partner_id: int) -> WorkCalendar:
        """A case's calendar: its country's, with its lead partner's region when it is there."""
        lead = self.orgs[lead_partner_id]
        return calendar_for(*work_area(country, lead.country, lead.region))


@dataclass(frozen=True, slots=True)
class Away:
    """An absence as rules read it: who is away (their address and time zone), the first and
    last day away (both inclusive, in their own local dates), and who stands in for them."""

    contact_id: int
    email: str
    zone: str
    starts: date
    ends: date
    deputy_id: int

    def local_day(self, now: datetime) -> date:
        """The absent person's own date at `now`."""
        return now.astimezone(ZoneInfo(self.zone)).date()

    def covers(self, now: datetime) -> bool:
        """Whether the person is away at `now` (by their own date)."""
        return self.starts <= self.local_day(now) <= self.ends


def away_now(absences: Iterable[Away], now: datetime) -> dict[int, Away]:
    """Who is away at `now`: each absent contact's id and the absence in force (a person's
    absences never overlap; should they, the one that started first counts)."""
    found: dict[int, Away] = {}
    for a in sorted(absences, key=lambda a: (a.starts, a.contact_id)):
        if a.covers(now):
            found.setdefault(a.contact_id, a)
    return found


def acting_for(absences: Iterable[Away], deputy_id: int, now: datetime) -> list[Away]:
    """The absences in force at `now` whose deputy is `deputy_id`: the people they may act
    for (receive notices for, progress items of, vote for), those away longest first."""
    return [a for a in away_now(absences, now).values() if a.deputy_id == deputy_id]


def check_absence(
    contact_id: int, starts: date, ends: date, deputy_id: int, existing: Iterable[Away]
) -> None:
    """Refuse an absence that ends before it starts, names the person as their own deputy, or
    overlaps one of the person's `existing` absences."""
    if ends < starts:
        raise InvalidInput(f"--to {ends} is before --from {starts}; give the last day away")
    if deputy_id == contact_id:
        raise InvalidInput("--deputy is the person who is away; name someone else")
    for a in existing:
        if a.contact_id == contact_id and a.starts <= ends and starts <= a.ends:
            raise InvalidInput(
                f"{a.email} is already away {a.starts} to {a.ends}; cancel that absence "
                "(`bridgebsr contacts away EMAIL --cancel --from DAY`) or pick other days"
            )
