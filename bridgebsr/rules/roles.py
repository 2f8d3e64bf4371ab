"""Who holds a role for a case: the one rule every path that picks role holders calls (the
milestone owners a case opens with, in `case open` and `case import`, and the people the
monitor tells about a case's items)."""

from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar


class Holder(Protocol):
    """A contact as the rule sees them: the partner they work at."""

    @property
    def partner_id(self) -> int: ...


H = TypeVar("H", bound=Holder)


def case_role_holders(
    holders: Sequence[H], lead_partner_id: int, pilot_leads: Sequence[H]
) -> list[H]:
    """Who holds a role for one case: the role's `holders` at the case's lead partner, else
    the leads of the case's pilot kind (`pilot_leads`); never every holder of the role
    anywhere. Empty when neither has anyone. Order is kept: the first is a milestone's owner.
    """
    # Case teams, once cases have them, come first: the team's holders of the role, here.
    local = [h for h in holders if h.partner_id == lead_partner_id]
    return local or list(pilot_leads)


def led_kinds(leads: str) -> list[str]:
    """The pilot kinds a contact's `leads` column names."""
    return [kind for kind in leads.split(",") if kind]


def leads_text(kinds: Iterable[str]) -> str:
    """Pilot kinds as a contact's `leads` column stores them: sorted, comma separated."""
    return ",".join(sorted(set(kinds)))
