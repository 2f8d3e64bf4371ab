"""Asking for a new due date, and answering: who may ask, which dates may be asked for, who
may answer. An owner (or whoever stands in for them) asks; a pilot lead of the case (or the
coordinator) accepts, which is a reschedule, or declines. One request waits per item at a
time."""

from collections.abc import Collection
from datetime import date

from bridgebsr.errors import IllegalTransition, InvalidInput
from bridgebsr.rules.people import Directory, Person
from bridgebsr.rules.roles import Team
from models import OPEN_MILESTONE, MilestoneStatus

PILOT_LEAD = "pilot-lead"  # the template role whose holders for a case answer its requests
COORDINATOR = "coordinator"  # the contact role that may answer any case's requests

PENDING, ACCEPTED, DECLINED, WITHDRAWN = "pending", "accepted", "declined", "withdrawn"
ANSWERS = {True: ACCEPTED, False: DECLINED}


def check_reason(reason: str) -> str:
    """The reason given, stripped; an empty one is refused."""
    if not reason.strip():
        raise InvalidInput("say why: --reason 'why the item needs a new date'")
    return reason.strip()


def check_asker(
    what: str,
    who: str,
    person_id: int,
    owner_id: int | None,
    holder_id: int | None,
    covering: Collection[int],
) -> None:
    """Only the item's owner, the case team's holder of the item's role, or a deputy standing
    in for the owner while they are away asks for a new date."""
    if person_id in {owner_id, holder_id} or (owner_id is not None and owner_id in covering):
        return
    raise IllegalTransition(
        f"{who} cannot ask for a new date for {what}: only its owner (or their deputy while "
        "they are away) may; ask the owner, or `bridgebsr case team` to see who holds it"
    )


def check_item(what: str, status: MilestoneStatus) -> None:
    """Only an open item (planned, in progress, blocked) gets a new date."""
    if status not in OPEN_MILESTONE:
        raise IllegalTransition(
            f"cannot ask for a new date for {what}: it is {status.value}; only open items move"
        )


def check_due(what: str, due: date, current: date, today: date) -> None:
    """A new due date is after today and differs from the agreed one."""
    if due <= today:
        raise InvalidInput(f"--due {due} is not after today ({today}); give a later date")
    if due == current:
        raise InvalidInput(f"{what} is already due on {due}; give another --due")


def check_still_ahead(number: int, due: date, today: date) -> None:
    """An accepted date must still be after today when it is accepted."""
    if due <= today:
        raise IllegalTransition(
            f"request #{number} asks for {due}, which is no longer after today ({today}); "
            "decline it, and the owner may ask for a later date"
        )


def check_none_waiting(what: str, waiting: tuple[int, str, date] | None) -> None:
    """One request per item at a time: (id, asker, asked on) of the one waiting, if any."""
    if waiting is not None:
        number, asker, on = waiting
        raise IllegalTransition(
            f"request #{number} for {what} (asked by {asker} on {on}) is still waiting for an "
            "answer; only one request per item at a time"
        )


def case_leads(
    directory: Directory, lead_partner_id: int, kind: str, team: Team | None
) -> list[Person]:
    """A case's pilot leads: the holders of `PILOT_LEAD` for a case of `kind` led by
    `lead_partner_id` (`Directory.role_holders`: its team's, else its lead partner's, else
    the leads of its pilot kind)."""
    return directory.role_holders(PILOT_LEAD, lead_partner_id, kind, team)


def may_answer(person_id: int, role: str, leads: Collection[int]) -> bool:
    """Whether a person answers a case's requests: one of its pilot leads
    (`rules.roles.case_role_holders` of `PILOT_LEAD`), or the coordinator."""
    return person_id in leads or role == COORDINATOR


def check_answerer(
    who: str, person_id: int, role: str, leads: Collection[int], case_key: str
) -> None:
    """Refuse an answer from someone who is neither a pilot lead of the case nor the
    coordinator."""
    if not may_answer(person_id, role, leads):
        raise IllegalTransition(
            f"{who} cannot answer requests of {case_key}: only its pilot lead or the "
            "coordinator may (`bridgebsr case team` shows who leads it)"
        )


def check_pending(number: int, status: str, by: str | None, doing: str = "answer") -> None:
    """Only a waiting request is answered (or withdrawn)."""
    if status != PENDING:
        who = f" by {by}" if by else ""
        raise IllegalTransition(f"request #{number} was already {status}{who}; nothing to {doing}")


def check_withdrawer(number: int, who: str, asked_by: str) -> None:
    """Only whoever asked withdraws a request (a deputy who asked for someone away, the
    deputy): the others answer it."""
    if who != asked_by:
        raise IllegalTransition(
            f"{who} cannot withdraw request #{number}: only {asked_by}, who asked, may; a "
            "pilot lead declines it instead"
        )


def check_comment(accept: bool, comment: str) -> str:
    """A decline says why; an acceptance may."""
    if not accept and not comment.strip():
        raise InvalidInput("say why you decline: --comment 'why the date stays'")
    return comment.strip()
