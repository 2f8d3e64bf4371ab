"""Who holds a role for a case: the one rule every path that picks role holders calls (the
milestone owners a case opens with, in `case open` and `case import`, and the people the
monitor tells about a case's items), and the rule of who may take over an item."""

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

from bridgebsr.errors import IllegalTransition, InvalidInput
from models import CASE_OWNER, OPEN_MILESTONE, MilestoneStatus


class Holder(Protocol):
    """A contact as the rule sees them: the partner they work at."""

    @property
    def partner_id(self) -> int: ...


H = TypeVar("H", bound=Holder)

Team = Mapping[str, int]  # one case's team: role -> contact id

# The consortium's coordinator: the directory role that sees every case in the partners' door
# (and the role the shipped templates escalate to).
COORDINATOR = "coordinator"


def is_coordinator(role: str) -> bool:
    """Whether a contact's directory `role` is the coordinator's."""
    return role.strip().lower() == COORDINATOR


def case_role_holders(
    holders: Sequence[H],
    lead_partner_id: int,
    pilot_leads: Sequence[H],
    team_holder: H | None = None,
) -> list[H]:
    """Who holds a role for one case: the case team's holder of the role (`team_holder`),
    else the role's `holders` at the case's lead partner, else the leads of the case's pilot
    kind (`pilot_leads`); never every holder of the role anywhere. Empty when none has
    anyone. Order is kept: the first is a milestone's owner."""
    if team_holder is not None:
        return [team_holder]
    local = [h for h in holders if h.partner_id == lead_partner_id]
    return local or list(pilot_leads)


def check_team_role(role: str, roles: Iterable[str], where: str, kind: str) -> str:
    """A team role named for a case of `kind` (`where` says where it was given): one of the
    roles its template names, other than the case owner's (the case's own owner)."""
    name = role.strip()
    known = sorted(set(roles) - {CASE_OWNER})
    if name == CASE_OWNER:
        raise InvalidInput(
            f"{where}: '{CASE_OWNER}' is the case's owner, not a team role; "
            "change it with `bridgebsr case reassign KEY --owner EMAIL`"
        )
    if name not in known:
        raise InvalidInput(
            f"{where}: '{role}' is not a role of {kind}; give one of: {', '.join(known) or 'none'}"
        )
    return name


def check_handover(case_key: str, item: str, status: MilestoneStatus) -> None:
    """Only an open milestone (planned, in progress, blocked) changes hands."""
    if status not in OPEN_MILESTONE:
        raise IllegalTransition(
            f"cannot reassign milestone {item} of {case_key}: it is {status.value}; "
            "only planned, in_progress or blocked items change hands"
        )


def parse_assignments(values: Iterable[str], where: str) -> dict[str, str]:
    """`ROLE=EMAIL` pairs (`--team`, `--set`, an import's `team` cell split on `;`) as a
    role -> email mapping; a role named twice is refused."""
    found: dict[str, str] = {}
    for value in values:
        role, sep, email = value.partition("=")
        role, email = role.strip(), email.strip()
        if not sep or not role or not email:
            raise InvalidInput(f"{where} '{value}' is not ROLE=EMAIL (ip-expert=anna@example.org)")
        if role in found:
            raise InvalidInput(f"{where}: role '{role}' is named twice; give it once")
        found[role] = email
    return found


def led_kinds(leads: str) -> list[str]:
    """The pilot kinds a contact's `leads` column names."""
    return [kind for kind in leads.split(",") if kind]


def leads_text(kinds: Iterable[str]) -> str:
    """Pilot kinds as a contact's `leads` column stores them: sorted, comma separated."""
    return ",".join(sorted(set(kinds)))
