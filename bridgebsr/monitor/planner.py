"""Which ladder steps are due today, candidate by candidate, and for whom: the pass's typed
picks (`Pick`), and the late items for its list.

A large portfolio repeats the same few ladders, calendars, due dates and people, so what
depends only on those is worked out once: where a ladder stands by a calendar on a due date,
and which step each recipient of a milestone gets (the same for every milestone with the same
template, due date, owner, case owner and lead partner). A gate's recipients depend on its
votes, so gates are worked out one by one."""

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any, NamedTuple

from bridgebsr.monitor.candidates import Candidate
from bridgebsr.monitor.report import LateItem, MonitorReport, PassContext
from bridgebsr.rules.calendars import WorkCalendar
from bridgebsr.rules.ladder import ITEM_ROLES, Ladder, Rung, Standing, stand, step_day
from bridgebsr.rules.people import Directory, Person
from bridgebsr.store import case_rows as store
from bridgebsr.store.team import Teams
from models import CASE_OWNER, NODE_OWNER, LadderStep
from notifications.steps import step_label


class Pick(NamedTuple):
    """A recipient, the ladder step they get about an item, the day it fell on, and whether
    it is urgent: one notice to be."""

    person: Person
    step: LadderStep
    fire_on: date
    urgent: bool


Dues = list[tuple[Candidate, list[Pick]]]  # each candidate with its picks


class Planner:
    """The picks of a pass, over a directory snapshot and the votes cast on open gates."""

    def __init__(
        self,
        ladders: dict[tuple[str, int], Ladder],
        directory: Directory,
        voted: set[tuple[int, int, int]],
        ctx: PassContext,
        report: MonitorReport,
        teams: Teams | None = None,
    ) -> None:
        self.ladders = ladders
        # Each active case's team as a sorted tuple: cases without one share ().
        self.teams = {cid: tuple(sorted(t.items())) for cid, t in (teams or {}).items()}
        self.directory = directory
        self.voted = voted
        self.ctx = ctx
        self.report = report
        self.today = ctx.today
        self._standings: dict[tuple[int, WorkCalendar, date], Standing] = {}
        self._picks: dict[tuple[Any, ...], tuple[list[Pick], tuple[str, ...]]] = {}
        self._holders: dict[tuple[str, int, str, int | None], list[Person]] = {}
        self._dates: dict[str, date] = {}

    def dues(self, candidates: Sequence[Candidate]) -> Dues:
        """The picks the ladder asks for today: for each recipient, only the latest step
        reached in their working days fires; late items go to the report's list."""
        out: Dues = []
        for c in candidates:
            ladder = self.ladders[(c.pilot, c.template_version)]
            calendar = self.item_calendar(c)
            standing = self.standing(ladder, calendar, c.due)
            late = c.due < self.today
            if late:
                self.report.late.append(self.late_item(c, calendar, standing.upcoming))
            if c.item_kind == "gate" and late:
                expired = ladder.expired
                people = self.recipients(c, expired.notify)
                self._note_unheld(c, self._unheld(c, expired.notify))
                out.append((c, [Pick(person, expired, self.today, True) for person in people]))
            elif not standing.near:
                continue
            elif c.item_kind == "gate":
                self._note_unheld(c, self._unheld(c, standing.reached))
                out.append((c, self._latest(c, standing.near)))
            else:
                team = self.teams.get(c.case_id, ())
                key = (
                    id(ladder),
                    calendar,
                    c.due,
                    c.owner_id,
                    c.case_owner_id,
                    c.lead_partner_id,
                    team,
                )
                found = self._picks.get(key)
                if found is None:
                    found = self._picks[key] = (
                        self._latest(c, standing.near),
                        self._unheld(c, standing.reached),
                    )
                picks, unheld = found
                self._note_unheld(c, unheld)
                if picks:
                    out.append((c, picks))
        return out

    def standing(self, ladder: Ladder, calendar: WorkCalendar, due: date) -> Standing:
        """Where `ladder` stands today by `calendar` for an item due on `due` (`stand`)."""
        key = (id(ladder), calendar, due)
        found = self._standings.get(key)
        if found is None:
            found = self._standings[key] = stand(ladder, calendar, due, self.today)
        return found

    def item_calendar(self, c: Candidate) -> WorkCalendar:
        """A milestone follows its owner's calendar; a gate the case's."""
        owner = self.directory.people.get(c.owner_id) if c.owner_id is not None else None
        if c.item_kind == "milestone" and owner is not None:
            return owner.calendar
        return self.directory.case_calendar(c.country, c.lead_partner_id)

    def holders(self, role: str, c: Candidate) -> list[Person]:
        """Who holds a role for the candidate's case (`Directory.role_holders`: its team's
        holder first)."""
        member = self._member(role, c)
        key = (role, c.lead_partner_id, c.pilot, member)
        found = self._holders.get(key)
        if found is None:
            team = {role: member} if member is not None else None
            found = self._holders[key] = self.directory.role_holders(
                role, c.lead_partner_id, c.pilot, team
            )
        return found

    def _member(self, role: str, c: Candidate) -> int | None:
        """The contact id the candidate's case team names for `role`, if any."""
        for name, contact_id in self.teams.get(c.case_id, ()):
            if name == role:
                return contact_id
        return None

    def recipients(self, c: Candidate, roles: Iterable[str]) -> list[Person]:
        """Everyone the roles name for the candidate (a gate's owners: its approvers who have
        not voted this round), each once."""
        found: dict[int, Person] = {}
        people = self.directory.people
        for role in roles:
            if role == NODE_OWNER and c.item_kind == "gate":
                assert c.approver_role is not None
                approvers = list(self.directory.by_role.get(c.approver_role, []))
                member = people.get(self._member(c.approver_role, c) or 0)
                if member is not None:  # the case team's holder of the role decides too
                    approvers.append(member)
                told = [p for p in approvers if (c.item_id, c.round, p.id) not in self.voted]
            elif role == NODE_OWNER:
                owner = people.get(c.owner_id or c.case_owner_id)
                told = [owner] if owner else []
            elif role == CASE_OWNER:
                owner = people.get(c.case_owner_id)
                told = [owner] if owner else []
            else:
                told = self.holders(role, c)
            found.update((p.id, p) for p in told)
        return list(found.values())

    def local_today(self, zone: str) -> date:
        """The date in a recipient's time zone."""
        if zone not in self._dates:
            self._dates[zone] = store.local_date(self.ctx.now, zone)
        return self._dates[zone]

    def late_item(
        self, c: Candidate, calendar: WorkCalendar, upcoming: Sequence[LadderStep]
    ) -> LateItem:
        """A late candidate as the report lists it, with its next step."""
        owner = self.directory.people.get(c.owner_id or c.case_owner_id)
        if c.item_kind == "gate":
            who = f"{c.approver_role} (approvers)"
        else:
            who = owner.email if owner else "-"
        nxt = "-"
        if upcoming and c.item_kind == "milestone":  # a late gate's notice is its expiry
            nxt = self._next_step(c, calendar, upcoming[0])
        partner = owner.partner_code if owner and c.item_kind == "milestone" else ""
        case_owner = self.directory.people.get(c.case_owner_id)
        return LateItem(
            case_key=c.case_key,
            pilot=c.pilot,
            item=c.key,
            item_kind=c.item_kind,
            title=c.title,
            owner=who,
            partner=partner or (case_owner.partner_code if case_owner else ""),
            due=c.due,
            days_late=(self.today - c.due).days,
            next_step=nxt,
        )

    def _next_step(self, c: Candidate, calendar: WorkCalendar, step: LadderStep) -> str:
        """A late item's next ladder step as people say it, and the day the first of the
        people it tells reaches it in their own working days (the item's, when it tells no
        one)."""
        told = self.recipients(c, step.notify)
        days = [step_day(person.calendar, c.due, step.offset) for person in told]
        on = min(days) if days else step_day(calendar, c.due, step.offset)
        return f"{step_label(step.key, step.offset, step.notify)}, on {on.isoformat()}"

    def _unheld(self, c: Candidate, roles: Iterable[str]) -> tuple[str, ...]:
        """The roles among `roles` no one holds for the candidate's case."""
        return tuple(r for r in roles if r not in ITEM_ROLES and not self.holders(r, c))

    def _note_unheld(self, c: Candidate, roles: tuple[str, ...]) -> None:
        """Report each (case, role) once a pass, however many of its items reached a step."""
        for role in roles:
            self.report.unheld.add((c.pilot, c.case_key, role))

    def _latest(self, c: Candidate, steps: Sequence[Rung]) -> list[Pick]:
        """For each recipient, the latest step reached in their own working days and local
        date (steps sorted by offset)."""
        latest: dict[int, Pick] = {}
        for step, roles in steps:
            for person in self.recipients(c, roles):
                fire_on = step_day(person.calendar, c.due, step.offset)
                if fire_on <= self.local_today(person.timezone):
                    latest[person.id] = Pick(person, step, fire_on, step.urgent)
        return list(latest.values())
