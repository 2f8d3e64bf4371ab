"""The people and organisations a case is worked by, as every rule sees them: one `Person`,
one `Directory` snapshot (built by `store.people.load_directory`), and who holds a role for a
case (`rules.roles`) and which calendar someone works by (`rules.calendars.work_area`)."""

from collections.abc import Iterable
from dataclasses import dataclass, field

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
