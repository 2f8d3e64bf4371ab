"""Who sees what in the partners' door, and who may act there: one rule each, pure.

A person sees a case (its page, its items, its history) when they own it, own one of its
items, hold a role on its team, lead its pilot kind, work at its lead partner, or are a
coordinator; nothing else, ever. Who may vote on a gate is `may_decide` (the rule
`office.progress.decide_gate` applies): a person who may vote on a gate of a case they do not
otherwise see gets only what the vote needs (`Access.VOTE`). The same scope as a SQL filter
for many cases at once is `store.access.visible`, tied to `sees_case` by a test (a deputy's
cover widens one case's page only, not the lists). Who may progress an item is
`may_progress`, the one rule of the CLI, the desk flows and the web."""

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from itertools import chain

from bridgebsr.rules.people import Person
from bridgebsr.rules.roles import is_coordinator


class Access(StrEnum):
    """How much of one case a person is shown."""

    NONE = "none"  # nothing: the page is refused
    VOTE = "vote"  # the gates they may vote on, with their evidence, and the vote form
    FULL = "full"  # the whole case page


@dataclass(frozen=True, slots=True)
class CaseFacts:
    """What the scope rule reads about one case."""

    owner_id: int
    lead_partner_id: int
    kind: str
    team: Mapping[str, int]  # role -> contact id
    item_owners: Collection[int]  # owners of its milestones


def sees_case(person: Person, case: CaseFacts, covering: Collection[int] = ()) -> bool:
    """Whether `person` is shown the whole of `case` (a coordinator sees every case); a
    deputy also sees the cases whose items are owned by someone they stand in for now
    (`covering`)."""
    return (
        is_coordinator(person.role)
        or case.owner_id == person.id
        or case.lead_partner_id == person.partner_id
        or case.kind in person.leads
        or person.id in case.team.values()
        or person.id in case.item_owners
        or any(absent in case.item_owners for absent in covering)
    )


def may_decide(person: Person, approver_role: str, team: Mapping[str, int]) -> bool:
    """Whether `person` may vote on a gate needing `approver_role` of a case with `team`:
    a holder of the role anywhere, or the case team's holder of it."""
    return person.role == approver_role or team.get(approver_role) == person.id


def whose_vote(
    reader: Person, absent: Iterable[Person], may: Callable[[Person], bool]
) -> Person | None:
    """Whose vote `reader` casts on a gate: their own when `may` (they hold its role and have
    not voted this round), else that of the first of `absent` (the people they stand in for
    now, in the order their absences are tried) who `may`; None when no one may. `absent` is
    read only as far as needed."""
    return next((p for p in chain((reader,), absent) if may(p)), None)


def access(
    person: Person,
    case: CaseFacts,
    open_gate_roles: Collection[str],
    covering: Collection[int] = (),
    absent: Collection[Person] = (),
) -> Access:
    """How much of `case` `person` is shown: all of it within their scope, else its open
    gates they, or the `absent` people they stand in for, may vote on (`open_gate_roles`:
    the approver roles of its open gates)."""
    if sees_case(person, case, covering):
        return Access.FULL
    voters = (person, *absent)
    if any(may_decide(p, role, case.team) for p in voters for role in open_gate_roles):
        return Access.VOTE
    return Access.NONE


def may_progress(
    person: Person,
    item_owner_id: int | None,
    case: CaseFacts,
    *,
    item_role: str | None = None,
    covering: Collection[int] = (),
    leads: Collection[int] = (),
) -> bool:
    """Whether `person` may start, complete or waive a milestone (owned by `item_owner_id`,
    through the template's `item_role`) or ask for a new date for it: its owner, their deputy
    while they are away (`covering`: whom `person` stands in for now), the case's owner, the
    case team's holder of the item's role, a pilot lead of the case (`leads`: its holders of
    `pilot-lead`) or of its pilot kind, or a coordinator. The CLI, the desk flows and the web
    ask this one rule (`office.progress.progress_milestone`)."""
    return (
        is_coordinator(person.role)
        or (item_owner_id is not None and item_owner_id in {person.id, *covering})
        or case.owner_id == person.id
        or (item_role is not None and case.team.get(item_role) == person.id)
        or person.id in leads
        or case.kind in person.leads
    )
