"""What a template upgrade writes besides `case_rows.save_case`: the items' shape (keys,
stages, durations, links, roles), gates added or removed, the case's template version, and
the rows that name a renamed item (outbox, team channel posts, evidence, date requests, plan
changes)."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, update
from sqlmodel import Session, SQLModel, col, select

from bridgebsr.rules import rows
from bridgebsr.rules.rows import GateRow, MilestoneRow
from bridgebsr.store.case_rows import Loaded, pinned_template
from bridgebsr.store.prepared import Prepared
from models import (
    Case,
    ChannelPost,
    DateRequest,
    Evidence,
    Gate,
    Milestone,
    Notification,
    NotificationStatus,
    PlanChange,
    Template,
    TemplateVersion,
)

_T = SQLModel.metadata.tables
_MILESTONES = _T[str(Milestone.__tablename__)]
_GATES = _T[str(Gate.__tablename__)]
_CASES = _T[str(Case.__tablename__)]
_OUTBOX = _T[str(Notification.__tablename__)]
_POSTS = _T[str(ChannelPost.__tablename__)]
MILESTONE_SHAPE = (
    "key", "seq", "title", "stage", "owner_role", "duration", "days", "strict", "depends_on",
)  # fmt: skip
GATE_SHAPE = (
    "key", "seq", "title", "stage", "approver_role", "required", "deadline_days", "days",
    "on_timeout", "rework_stage", "depends_on",
)  # fmt: skip
_SHAPE = {
    "milestones": Prepared(
        update(_MILESTONES).where(_MILESTONES.c.id == bindparam("row_id")), MILESTONE_SHAPE
    ),
    "gates": Prepared(update(_GATES).where(_GATES.c.id == bindparam("row_id")), GATE_SHAPE),
}
_DELETE_GATE = Prepared(delete(_GATES).where(_GATES.c.id == bindparam("row_id")))
_INSERT_GATE = Prepared(insert(_GATES).returning(_GATES.c.id), rows.columns(GateRow)[1:])
_VERSION = Prepared(update(_CASES).where(_CASES.c.id == bindparam("row_id")), ("template_version",))


def write_shape(loaded: Loaded, gates_before: Sequence[GateRow]) -> None:
    """Before `save_case`: delete the gates no longer in the plan, write the shape of every
    item kept (what `save_case` leaves alone), insert the gates added (each gets its id) and
    set the case's template version. Milestones added or removed are `save_case`'s."""
    conn, plan = loaded.conn, loaded.plan
    kept = {g.id for g in plan.gates if g.id is not None}
    gone = [{"row_id": g.id} for g in gates_before if g.id not in kept]
    if gone:
        _DELETE_GATE.many(conn, gone)
    for table, names, group in (
        ("milestones", MILESTONE_SHAPE, plan.milestones),
        ("gates", GATE_SHAPE, plan.gates),
    ):
        params = [_params(r, names, row_id=r.id) for r in group if r.id is not None]
        if params:
            _SHAPE[table].many(conn, params)
    for gate in plan.gates:
        if gate.id is None:
            found = _INSERT_GATE.first(conn, _params(gate, rows.columns(GateRow)[1:]))
            assert found is not None
            gate.id = found[0]
            loaded.read[id(gate)] = rows.values(gate, rows.GATE_CHANGES)
    case = loaded.case
    _VERSION.run(conn, {"row_id": case.id, "template_version": case.template_version})


def _params(row: MilestoneRow | GateRow, names: tuple[str, ...], **more: Any) -> dict[str, Any]:
    return {**dict(zip(names, rows.values(row, names), strict=True)), **more}


def item_notices(conn: Connection, case_id: int, item: str) -> list[tuple[Any, ...]]:
    """The outbox rows about one item of a case: id, dedupe key, status, payload."""
    query = select(_OUTBOX.c.id, _OUTBOX.c.dedupe_key, _OUTBOX.c.status, _OUTBOX.c.payload).where(
        _OUTBOX.c.case_id == case_id, _OUTBOX.c.subject == item
    )
    return [tuple(r) for r in conn.execute(query)]


def case_posts(conn: Connection, case_id: int) -> list[tuple[Any, ...]]:
    """A case's team channel posts: id, dedupe key, status, payload."""
    query = select(_POSTS.c.id, _POSTS.c.dedupe_key, _POSTS.c.status, _POSTS.c.payload).where(
        _POSTS.c.case_id == case_id
    )
    return [tuple(r) for r in conn.execute(query)]


_REKEY_POST = Prepared(
    update(_POSTS).where(_POSTS.c.id == bindparam("row_id")), ("dedupe_key", "payload")
)


def rekey_posts(conn: Connection, changes: Sequence[dict[str, Any]]) -> None:
    """Give team channel posts their renamed item (row_id, dedupe_key, payload)."""
    if changes:
        _REKEY_POST.many(conn, changes)


_REKEY_NOTICE = Prepared(
    update(_OUTBOX).where(_OUTBOX.c.id == bindparam("row_id")),
    ("subject", "dedupe_key", "payload"),
)


def rekey_notices(conn: Connection, changes: Sequence[dict[str, Any]]) -> None:
    """Give outbox rows their renamed item (row_id, subject, dedupe_key, payload)."""
    if changes:
        _REKEY_NOTICE.many(conn, changes)


_KEYED = [_T[str(t.__tablename__)] for t in (Evidence, DateRequest, PlanChange)]


def rekey_facts(conn: Connection, case_id: int, renamed: dict[str, str]) -> None:
    """The evidence, date requests and plan changes of renamed items under their new keys."""
    for table in _KEYED:
        for old, new in renamed.items():
            conn.execute(
                update(table)
                .where(table.c.case_id == case_id, table.c.item_key == old)
                .values(item_key=new)
            )


def pinned_versions(session: Session, kind: str) -> list[Template]:
    """Every pinned version of a pilot kind, oldest first."""
    found = session.exec(
        select(TemplateVersion.version)
        .where(TemplateVersion.kind == kind)
        .order_by(col(TemplateVersion.version))
    )
    return [pinned_template(session, kind, v) for v in found]


_WAITING = (NotificationStatus.PENDING, NotificationStatus.HELD)


def suppress_steps(conn: Connection, case_id: int, steps: Sequence[str], why: str) -> int:
    """Suppress a case's notices not delivered yet of these ladder steps, with why; how many."""
    if not steps:
        return 0
    statement = (
        update(_OUTBOX)
        .where(
            _OUTBOX.c.case_id == case_id,
            _OUTBOX.c.rule.in_(list(steps)),
            _OUTBOX.c.status.in_(list(_WAITING)),
        )
        .values(status=NotificationStatus.SUPPRESSED, last_error=why, next_attempt_at=None)
    )
    return conn.execute(statement).rowcount
