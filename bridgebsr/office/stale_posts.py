"""Whether a team channel's post is still wanted when it is about to go.

A channel post may wait for hours (the channel's quiet hours, its digest, a retry), as a
notice may; before it goes, dispatch asks here which of the posts it claimed are no longer
wanted, by the notices' own rule (`stale.why_obsolete`): the case no longer active, the item
finished, decided, reopened or moved to another date since the post was written. A post has
no reader of its own, so a gate's moved deadline is judged by the date alone.
"""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine, and_, bindparam, select
from sqlmodel import col

from bridgebsr.office.stale import NoticeFacts, why_obsolete
from bridgebsr.store.due import GATE_DUE, MILESTONE_DUE
from models import Case, ChannelPost, Gate, Milestone

_CHUNK = 5000  # posts looked up at a time
_ITEM = col(ChannelPost.payload)["item"].as_string()
_FACTS = (
    select(
        col(ChannelPost.id),
        col(ChannelPost.rule),
        col(ChannelPost.payload),
        col(Case.key),
        col(Case.status),
        col(Milestone.status),
        MILESTONE_DUE,
        col(Gate.status),
        col(Gate.round),
        GATE_DUE,
        col(Milestone.round),
    )
    .join(Case, col(Case.id) == col(ChannelPost.case_id))
    .outerjoin(
        Milestone,
        and_(col(Milestone.case_id) == col(ChannelPost.case_id), col(Milestone.key) == _ITEM),
    )
    .outerjoin(Gate, and_(col(Gate.case_id) == col(ChannelPost.case_id), col(Gate.key) == _ITEM))
    .where(col(ChannelPost.id).in_(bindparam("ids", expanding=True)))
)


def obsolete_posts(engine: Engine, ids: Sequence[int], now: datetime) -> dict[int, str]:
    """The channel posts among `ids` no longer wanted as of `now`, each with why."""
    found: dict[int, str] = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), _CHUNK):
            rows = conn.execute(_FACTS, {"ids": list(ids[start : start + _CHUNK])})
            for (
                pid,
                rule,
                payload,
                case,
                status,
                m_status,
                m_due,
                g_status,
                g_round,
                g_due,
                m_round,
            ) in rows:
                facts = NoticeFacts(
                    id=pid,
                    rule=rule,
                    due_on=None,  # the payload's due date is the one the post was written for
                    payload=payload,
                    case=case,
                    case_status=status,
                    milestone_status=m_status,
                    milestone_due=m_due,
                    gate_status=g_status,
                    gate_round=g_round,
                    gate_deadline=g_due,
                    country="",
                    zone="UTC",
                    partner_country="",
                    region=None,
                    milestone_round=m_round,
                )
                why = why_obsolete(facts, now)
                if why is not None:
                    found[int(pid)] = why
    return found
