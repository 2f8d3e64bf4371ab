"""Case teams: who holds which role on a case (`case_team`), read for many cases in one
statement (`load_teams`, `active_teams`) and written a row at a time or a batch at a time."""

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update
from sqlmodel import SQLModel

from bridgebsr.store.prepared import Prepared
from models import (
    CLOSED_CASE,
    OPEN_MILESTONE,
    Case,
    CaseStatus,
    Contact,
    Gate,
    GateDecision,
    GateStatus,
    Milestone,
    Notification,
    NotificationStatus,
    TeamMember,
)

_TEAM = SQLModel.metadata.tables[str(TeamMember.__tablename__)]
_CASES = SQLModel.metadata.tables[str(Case.__tablename__)]
_COLUMNS = (_TEAM.c.case_id, _TEAM.c.role, _TEAM.c.contact_id)
_ACTIVE = Prepared(
    select(*_COLUMNS)
    .join(_CASES, _CASES.c.id == _TEAM.c.case_id)
    .where(_CASES.c.status == CaseStatus.ACTIVE)
    .order_by(_TEAM.c.case_id, _TEAM.c.role)
)
_INSERT = Prepared(insert(_TEAM), ("case_id", "role", "contact_id", "since"))
_AT = (_TEAM.c.case_id == bindparam("at_case"), _TEAM.c.role == bindparam("at_role"))
_SET = (
    update(_TEAM)
    .where(*_AT)
    .values(contact_id=bindparam("to_contact"), since=bindparam("from_time"))
)
_UNSET = delete(_TEAM).where(*_AT)

Teams = dict[int, dict[str, int]]  # case id -> role -> contact id


def _gathered(rows: Iterable[Sequence[Any]]) -> Teams:
    found: Teams = {}
    for case_id, role, contact_id in rows:
        found.setdefault(case_id, {})[role] = contact_id
    return found


def load_teams(conn: Connection, case_ids: Iterable[int]) -> Teams:
    """The teams of these cases (a case without one is not in the answer), in one statement
    per thousand cases."""
    ids = sorted(set(case_ids))
    found: Teams = {}
    for lo in range(0, len(ids), 1000):
        query = select(*_COLUMNS).where(_TEAM.c.case_id.in_(ids[lo : lo + 1000]))
        found.update(_gathered(conn.execute(query)))
    return found


def active_teams(conn: Connection) -> Teams:
    """The team of every active case that has one, in one statement (the monitor's read)."""
    return _gathered(_ACTIVE.all(conn, {}))


def held_by(conn: Connection, contact_id: int) -> list[tuple[int, str]]:
    """The (case id, role) pairs this contact holds on case teams."""
    query = select(_TEAM.c.case_id, _TEAM.c.role).where(_TEAM.c.contact_id == contact_id)
    return [(case_id, role) for case_id, role in conn.execute(query)]


def set_member(
    conn: Connection, case_id: int, role: str, contact_id: int, since: datetime, *, new: bool
) -> None:
    """Make `contact_id` the holder of `role` on the case (`new`: the role had no holder)."""
    if new:
        _INSERT.run(
            conn, {"case_id": case_id, "role": role, "contact_id": contact_id, "since": since}
        )
    else:
        conn.execute(
            _SET,
            {"at_case": case_id, "at_role": role, "to_contact": contact_id, "from_time": since},
        )


def unset_member(conn: Connection, case_id: int, role: str) -> None:
    """The case's team no longer names a holder of `role`."""
    conn.execute(_UNSET, {"at_case": case_id, "at_role": role})


def insert_members(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """New team rows (case_id, role, contact_id, since), in one executemany."""
    if rows:
        _INSERT.many(conn, list(rows))


# --- people and the outbox around a handover --------------------------------------------------

_CONTACTS = SQLModel.metadata.tables[str(Contact.__tablename__)]
_OUTBOX = SQLModel.metadata.tables[str(Notification.__tablename__)]
_WAITING = (NotificationStatus.PENDING, NotificationStatus.HELD)


def emails_of(conn: Connection, ids: Iterable[int | None]) -> dict[int, str]:
    """The address of each of these contacts, retired ones too (history names them)."""
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    query = select(_CONTACTS.c.id, _CONTACTS.c.email).where(_CONTACTS.c.id.in_(wanted))
    return {int(cid): str(email) for cid, email in conn.execute(query)}


def retired_at(conn: Connection, contact_id: int) -> datetime | None:
    """When this contact retired, or None."""
    query = select(_CONTACTS.c.retired_at).where(_CONTACTS.c.id == contact_id)
    found: datetime | None = conn.execute(query).scalar_one_or_none()
    return found


def retire(conn: Connection, contact_id: int, successor_id: int, now: datetime) -> None:
    """Mark the contact retired as of `now`, succeeded by `successor_id`; their signed links
    stop working (their link generation moves on)."""
    conn.execute(
        update(_CONTACTS)
        .where(_CONTACTS.c.id == contact_id)
        .values(
            retired_at=now,
            successor_id=successor_id,
            link_generation=_CONTACTS.c.link_generation + 1,
        )
    )


def steps_sent(conn: Connection, case_id: int, item: str, recipient_id: int) -> list[Any]:
    """The payloads of the ladder notices about a milestone the outbox holds for one
    recipient (whatever became of them)."""
    query = select(_OUTBOX.c.payload).where(
        _OUTBOX.c.case_id == case_id,
        _OUTBOX.c.subject == item,
        _OUTBOX.c.recipient_id == recipient_id,
    )
    return [p for (p,) in conn.execute(query)]


def suppress(
    conn: Connection, *, keys: Sequence[str] = (), recipient_id: int | None = None, why: str
) -> int:
    """Mark waiting notices (pending or held) `suppressed` with `why`: those with these dedupe
    `keys`, or every one to `recipient_id`. Returns how many."""
    where: list[Any] = [_OUTBOX.c.status.in_(_WAITING)]
    if recipient_id is not None:
        where.append(_OUTBOX.c.recipient_id == recipient_id)
    else:
        if not keys:
            return 0
        where.append(_OUTBOX.c.dedupe_key.in_(list(keys)))
    statement = (
        update(_OUTBOX)
        .where(*where)
        .values(status=NotificationStatus.SUPPRESSED, last_error=why, next_attempt_at=None)
    )
    return int(conn.execute(statement).rowcount)


def cases_touching(conn: Connection, contact_id: int, role: str) -> list[str]:
    """The keys of the cases not closed where this contact owns the case or an open
    milestone, holds a team role, or may vote on an open or pending gate (its approver role
    is theirs), in id order (the order their locks are taken)."""
    milestones = SQLModel.metadata.tables[str(Milestone.__tablename__)]
    gates = SQLModel.metadata.tables[str(Gate.__tablename__)]
    ids = (
        select(milestones.c.case_id)
        .where(
            milestones.c.owner_id == contact_id,
            milestones.c.status.in_(list(OPEN_MILESTONE)),
        )
        .union(
            select(_TEAM.c.case_id).where(_TEAM.c.contact_id == contact_id),
            select(gates.c.case_id).where(
                gates.c.approver_role == role,
                gates.c.status.in_([GateStatus.OPEN, GateStatus.PENDING]),
            ),
            select(_CASES.c.id).where(_CASES.c.owner_id == contact_id),
        )
        .subquery()
    )
    query = (
        select(_CASES.c.key)
        .where(_CASES.c.id.in_(select(ids.c[0])), _CASES.c.status.not_in(list(CLOSED_CASE)))
        .order_by(_CASES.c.id)
    )
    return [key for (key,) in conn.execute(query)]


def voters(conn: Connection, gate_ids: Sequence[int | None]) -> set[tuple[int, int, int]]:
    """(gate, round, approver) of every vote on these gates."""
    decisions = SQLModel.metadata.tables[str(GateDecision.__tablename__)]
    wanted = [g for g in gate_ids if g is not None]
    if not wanted:
        return set()
    query = select(decisions.c.gate_id, decisions.c.round, decisions.c.approver_id).where(
        decisions.c.gate_id.in_(wanted)
    )
    return {(int(g), int(r), int(a)) for g, r, a in conn.execute(query)}


def waiting_steps(conn: Connection, case_id: int, item: str, recipient_id: int) -> list[Any]:
    """(dedupe key, rule) of the notices about an item still waiting (pending or held) for
    one recipient."""
    query = select(_OUTBOX.c.dedupe_key, _OUTBOX.c.rule).where(
        _OUTBOX.c.case_id == case_id,
        _OUTBOX.c.subject == item,
        _OUTBOX.c.recipient_id == recipient_id,
        _OUTBOX.c.status.in_(_WAITING),
    )
    return [(key, rule) for key, rule in conn.execute(query)]
