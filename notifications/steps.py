"""Escalation-ladder steps as people say them: "10 working days late: coordinator told",
not `late-10`. The monitor's list of late items says a step this way; it lives in the post
office so that notices can say it the same way."""

from collections.abc import Sequence

from models import CASE_OWNER, NODE_OWNER

EXPIRED_STEP = "expired"  # the notice of a gate past its deadline


def step_label(step: str, offset: int, told: Sequence[str] = (), *, gate: bool = False) -> str:
    """When a ladder step falls, relative to the item's due date (a gate's deadline), and
    who it tells (`told`: the step's roles, as the template names them)."""
    when = _when(step, offset, gate)
    if not told:
        return when
    who = [_role_name(role, gate) for role in dict.fromkeys(told)]
    listed = who[0] if len(who) == 1 else f"{', '.join(who[:-1])} and {who[-1]}"
    return f"{when}: {listed} {'reminded' if offset < 0 else 'told'}"


def _when(step: str, offset: int, gate: bool) -> str:
    due = "the deadline" if gate else "due"
    days = f"{abs(offset)} working day{'' if abs(offset) == 1 else 's'}"
    if step == EXPIRED_STEP:
        return "deadline passed"
    if offset < 0:
        return f"{days} before {due}"
    if offset == 0:
        return "on the deadline" if gate else "on the due day"
    return f"{days} past the deadline" if gate else f"{days} late"


def _role_name(role: str, gate: bool) -> str:
    """A template's role as a person reads it (an item's owner: a gate's approvers)."""
    if role == NODE_OWNER:
        return "approvers" if gate else "owner"
    if role == CASE_OWNER:
        return "case owner"
    return role.replace("-", " ")
