"""The pilot lead's desk: a form in the Prefect UI (Deployments, Run, Custom run) for each
change a case lives through, recorded as the CLI records it.

Each flow is a thin call of the use case its CLI command calls, with the audit source `flow`
and the flow run's id as its reference; `by` names who makes the change and must be an active
contact of the directory. A refused change (an unknown case or milestone, a stale
`if_version`, a lifecycle rule) ends the run Failed with the one-line reason as its state
message and nothing written. Every recorded change is followed by the case's gate runs being
brought up to date and its page `case-<key>` being published again.

The forms come from the parameters: a `Literal` is a drop-down, a `date` a date picker, and
the docstring's Args are the help under each field.
"""

from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Literal

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed
from sqlmodel import Session

from bridgebsr.errors import BridgeError, InvalidInput
from bridgebsr.office import cases, items, plan, progress, team
from bridgebsr.office.progress import Actor
from bridgebsr.rules.texts import email_key, fitting
from bridgebsr.store.db import write_session
from flows.case_page import publish_case_page
from flows.common import log, resolve_now, run_id, runtime
from flows.gates import reconcile_gates
from models import DayKind, Milestone, Source

# What a change does, given the session, the actor and the time; returns what it did, in words.
Change = Callable[[Session, Actor, datetime], str]


def record(case_key: str, by: str, change: Change, note: str = "") -> State[Any]:
    """Make one change as `by` in one transaction, then refresh the case's gate runs and page.

    A refusal fails the run with the refusal's one line as its message (nothing written).
    """
    rt = runtime()
    now = resolve_now(None, rt)
    logger = log()
    try:
        with write_session(rt.engine) as session:
            person = team.active_person(session, _address(by))
            actor = Actor(person.email, Source.FLOW, run_id(), note.strip())
            said = change(session, actor, now)
    except BridgeError as exc:
        logger.error("not recorded: %s", exc)
        return Failed(message=str(exc))
    logger.info(said)
    reconcile_gates(case_key)
    page = publish_case_page(case_key)
    logger.info("case page %s published", page)
    return Completed(message=said)


def _address(by: str) -> str:
    if not by.strip():
        raise InvalidInput("by is empty: give your e-mail address as the project office knows it")
    return email_key(by)


def _upper(key: str) -> str:
    return key.strip().upper()


@flow(name="record-progress", flow_run_name="{case_key} · {action} {milestone}")
def record_progress(
    case_key: str,
    milestone: str,
    action: Literal["start", "complete", "waive"],
    by: str,
    on: date | None = None,
    note: str = "",
    if_version: int | None = None,
) -> State[Any]:
    """Start, complete or waive a milestone of a case, as `bridgebsr milestone start |
    complete | waive` does.

    Args:
        case_key: The case, e.g. IP-2025-0001 (its page: artifact case-ip-2025-0001).
        milestone: The milestone's key, e.g. kickoff (the case page lists them).
        action: What happened to it.
        by: Your e-mail address as the project office knows it.
        on: The day it happened; empty means today. Not in the future.
        note: A note for the case's audit trail.
        if_version: Refuse unless the case is still at this version (shown on its page).
    """

    def change(session: Session, actor: Actor, now: datetime) -> str:
        m = progress.progress_milestone(
            session=session,
            case_key=case_key,
            milestone_key=milestone,
            action=action,
            actor=actor,
            now=now,
            on=on,
            expected_version=if_version,
        )
        return f"{_upper(case_key)} {m.key} is {m.status.value}; forecast due {m.forecast_due}"

    return record(case_key, by, change, note)


@flow(name="hold-or-resume-case", flow_run_name="{case_key} · {action}")
def hold_or_resume_case(
    case_key: str,
    action: Literal["hold", "resume"],
    reason: str,
    by: str,
    if_version: int | None = None,
) -> State[Any]:
    """Put a case on hold or resume it, as `bridgebsr case hold | resume` does.

    Args:
        case_key: The case, e.g. IP-2025-0001.
        action: Hold the case (no reminders, no escalations) or resume it.
        reason: Why; kept on the case's audit trail.
        by: Your e-mail address as the project office knows it.
        if_version: Refuse unless the case is still at this version (shown on its page).
    """
    return _change_case(case_key, action, reason, by, if_version)


def _change_case(
    case_key: str, action: str, reason: str, by: str, if_version: int | None
) -> State[Any]:
    """Hold, resume, close or cancel a case through `office.cases.change_case`."""

    def change(session: Session, actor: Actor, now: datetime) -> str:
        case = cases.change_case(
            session=session,
            key=case_key,
            action=action,
            reason=reason,
            actor=actor.email,
            now=now,
            source=actor.source,
            source_ref=actor.source_ref,
            expected_version=if_version,
        )
        return f"{case.key} is {case.status.value} (version {case.version})"

    return record(case_key, by, change)


@flow(name="reassign-milestone", flow_run_name="{case_key} · {milestone} to {to}")
def reassign_milestone(
    case_key: str, milestone: str, to: str, by: str, if_version: int | None = None
) -> State[Any]:
    """Give an open milestone to someone else, as `bridgebsr milestone reassign` does; both
    are told.

    Args:
        case_key: The case, e.g. IP-2025-0001.
        milestone: The milestone's key (the case page lists them).
        to: The new owner's e-mail address.
        by: Your e-mail address as the project office knows it.
        if_version: Refuse unless the case is still at this version (shown on its page).
    """

    def change(session: Session, actor: Actor, now: datetime) -> str:
        m = team.reassign_milestone(
            session=session,
            key=case_key,
            milestone_key=milestone,
            to=to,
            actor=actor,
            now=now,
            expected_version=if_version,
        )
        return f"{_upper(case_key)} {m.key} handed over to {to.strip().lower()}"

    return record(case_key, by, change)


@flow(name="reschedule-milestone", flow_run_name="{case_key} · {milestone} due {due}")
def reschedule_milestone(
    case_key: str,
    milestone: str,
    due: date,
    reason: str,
    by: str,
    if_version: int | None = None,
) -> State[Any]:
    """Agree a new due date for an open milestone, as `bridgebsr milestone reschedule` does;
    its dependents move with it.

    Args:
        case_key: The case, e.g. IP-2025-0001.
        milestone: The milestone's key (the case page lists them).
        due: The new agreed due date.
        reason: Why; kept on the case's audit trail.
        by: Your e-mail address as the project office knows it.
        if_version: Refuse unless the case is still at this version (shown on its page).
    """

    def change(session: Session, actor: Actor, now: datetime) -> str:
        m, moved = plan.reschedule_milestone(
            session=session,
            case_key=case_key,
            milestone_key=milestone,
            due=due,
            reason=reason,
            actor=actor,
            now=now,
            expected_version=if_version,
        )
        return (
            f"{_upper(case_key)} {m.key} now due {m.planned_due}; forecast {m.forecast_due}; "
            f"{max(len(moved) - 1, 0)} other item(s) moved"
        )

    return record(case_key, by, change)


@flow(name="rebaseline-case", flow_run_name="{case_key} · rebaseline")
def rebaseline_case(
    case_key: str, reason: str, by: str, if_version: int | None = None
) -> State[Any]:
    """Make the case's current forecast its agreed plan (a new baseline), as `bridgebsr case
    rebaseline` does.

    Args:
        case_key: The case, e.g. IP-2025-0001.
        reason: Why; kept on the case's audit trail.
        by: Your e-mail address as the project office knows it.
        if_version: Refuse unless the case is still at this version (shown on its page).
    """

    def change(session: Session, actor: Actor, now: datetime) -> str:
        case, number, moved = plan.rebaseline_case(
            session=session,
            case_key=case_key,
            reason=reason,
            actor=actor,
            now=now,
            expected_version=if_version,
        )
        return (
            f"{case.key} baseline {number}: target {case.target_date}, "
            f"{len(moved)} item(s) moved (version {case.version})"
        )

    return record(case_key, by, change)


@flow(name="change-case-team", flow_run_name="{case_key} · team {role}")
def change_case_team(
    case_key: str, role: str, holder: str, by: str, if_version: int | None = None
) -> State[Any]:
    """Name who holds a role on a case, or clear it, as `bridgebsr case team --set | --unset`
    does; the role's open items are handed over.

    Args:
        case_key: The case, e.g. IP-2025-0001.
        role: A role of the case's pilot template, e.g. sme-advisor.
        holder: The e-mail address of who holds it on this case; empty clears the case's own
            holder (the lead partner's, else the pilot's leads, hold it again).
        by: Your e-mail address as the project office knows it.
        if_version: Refuse unless the case is still at this version (shown on its page).
    """

    def change(session: Session, actor: Actor, now: datetime) -> str:
        sets = {role.strip(): holder.strip()} if holder.strip() else {}
        work = team.set_team(
            session=session,
            key=case_key,
            sets=sets,
            unsets=[] if sets else [role.strip()],
            actor=actor,
            now=now,
            expected_version=if_version,
        )
        return (
            f"{work.key}: team changed, {len(work.handed)} open item(s) handed over "
            f"(version {work.loaded.case.version})"
        )

    return record(case_key, by, change)


@flow(name="add-milestone", flow_run_name="{case_key} · add {key}")
def add_milestone(
    case_key: str,
    key: str,
    title: str,
    owner: str,
    duration: int,
    after: str,
    by: str,
    stage: str | None = None,
    days: DayKind | None = None,
    note: str = "",
    if_version: int | None = None,
) -> State[Any]:
    """Add a milestone to this case only, as `bridgebsr milestone add` does; it is scheduled,
    monitored and reported like any other.

    Args:
        case_key: The case, e.g. IP-2025-0001.
        key: The new milestone's key, e.g. extra-review.
        title: What the milestone is.
        owner: Who owns it: an e-mail address, or a role of the pilot template.
        duration: How many days it takes.
        after: The item it follows: ITEM, or ITEM+LAG with a lag in days.
        by: Your e-mail address as the project office knows it.
        stage: Its stage; empty means that of the item it follows.
        days: Count its days as working or calendar days; empty means the template's way.
        note: A note for the case's audit trail.
        if_version: Refuse unless the case is still at this version (shown on its page).
    """

    def change(session: Session, actor: Actor, now: datetime) -> str:
        try:
            fitted = fitting(title.strip(), Milestone, "title")
        except ValueError as exc:
            raise InvalidInput(f"title: {exc}; shorten it") from None
        added = items.add_milestone(
            session=session,
            case_key=case_key,
            key=key,
            title=fitted,
            owner=owner,
            duration=duration,
            after=after,
            stage=stage or None,
            days=days,
            actor=actor,
            now=now,
            expected_version=if_version,
        )
        m = added.milestone
        return (
            f"{added.case.key} {m.key} added: owner {added.owner}, planned {m.planned_start} "
            f"to {m.planned_due}; case forecast {added.case.forecast_date}"
        )

    return record(case_key, by, change, note)


@flow(name="remove-milestone", flow_run_name="{case_key} · remove {milestone}")
def remove_milestone(
    case_key: str, milestone: str, reason: str, by: str, if_version: int | None = None
) -> State[Any]:
    """Remove an ad-hoc milestone that has not started and that nothing depends on, as
    `bridgebsr milestone remove` does; its pending notices are withdrawn.

    Args:
        case_key: The case, e.g. IP-2025-0001.
        milestone: The ad-hoc milestone's key (the case page lists them).
        reason: Why it is no longer needed; kept on the case's audit trail.
        by: Your e-mail address as the project office knows it.
        if_version: Refuse unless the case is still at this version (shown on its page).
    """

    def change(session: Session, actor: Actor, now: datetime) -> str:
        case = items.remove_milestone(
            session=session,
            case_key=case_key,
            milestone_key=milestone,
            reason=reason,
            actor=actor,
            now=now,
            expected_version=if_version,
        )
        return f"{case.key} {milestone.strip()} removed (version {case.version})"

    return record(case_key, by, change)


@flow(name="reassign-case", flow_run_name="{case_key} · owner {owner}")
def reassign_case(case_key: str, owner: str, by: str, if_version: int | None = None) -> State[Any]:
    """Make someone else the case owner, as `bridgebsr case reassign` does; the open items
    the old owner held as case owner follow, and both are told.

    Args:
        case_key: The case, e.g. IP-2025-0001.
        owner: The new owner's e-mail address.
        by: Your e-mail address as the project office knows it.
        if_version: Refuse unless the case is still at this version (shown on its page).
    """

    def change(session: Session, actor: Actor, now: datetime) -> str:
        work = team.reassign_case(
            session=session,
            key=case_key,
            owner=owner,
            actor=actor,
            now=now,
            expected_version=if_version,
        )
        return (
            f"{work.key} now owned by {owner.strip().lower()}, {len(work.handed)} open item(s) "
            f"handed over (version {work.loaded.case.version})"
        )

    return record(case_key, by, change)


@flow(name="edit-case", flow_run_name="{case_key} · edit")
def edit_case(
    case_key: str,
    by: str,
    title: str = "",
    target: date | None = None,
    partner: str = "",
    if_version: int | None = None,
) -> State[Any]:
    """Change a case's title, target date or lead partner, as `bridgebsr case edit` does;
    empty fields stay as they are.

    Args:
        case_key: The case, e.g. IP-2025-0001.
        by: Your e-mail address as the project office knows it.
        title: The case's new title; empty keeps it.
        target: The new target date; empty keeps it.
        partner: The code of the new lead partner, e.g. MVA; empty keeps it.
        if_version: Refuse unless the case is still at this version (shown on its page).
    """

    def change(session: Session, actor: Actor, now: datetime) -> str:
        if not (title.strip() or target or partner.strip()):
            raise InvalidInput("nothing to change: give a title, a target or a partner")
        case, _ = plan.edit_case(
            session=session,
            case_key=case_key,
            actor=actor,
            now=now,
            title=title.strip() or None,
            target=target,
            partner_code=partner.strip() or None,
            expected_version=if_version,
        )
        return f"{case.key} edited: target {case.target_date} (version {case.version})"

    return record(case_key, by, change)


@flow(name="close-or-cancel-case", flow_run_name="{case_key} · {action}")
def close_or_cancel_case(
    case_key: str,
    action: Literal["close", "cancel"],
    reason: str,
    by: str,
    if_version: int | None = None,
) -> State[Any]:
    """Close a finished case or cancel one, as `bridgebsr case close | cancel` does.

    Args:
        case_key: The case, e.g. IP-2025-0001.
        action: Close (every item finished or waived) or cancel the case.
        reason: Why; kept on the case's audit trail.
        by: Your e-mail address as the project office knows it.
        if_version: Refuse unless the case is still at this version (shown on its page).
    """
    return _change_case(case_key, action, reason, by, if_version)


# name -> flow: the desk's deployments, served by `bridgebsr up` and declared in prefect.yaml.
DESK = {
    f.name: f
    for f in (
        record_progress,
        hold_or_resume_case,
        reassign_milestone,
        reschedule_milestone,
        rebaseline_case,
        change_case_team,
        add_milestone,
        remove_milestone,
        reassign_case,
        edit_case,
        close_or_cancel_case,
    )
}
