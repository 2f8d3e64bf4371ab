"""The partners' door's refusals: one `access_denials` row per refused link or page, and how
many came from one address lately (the rate limit every worker reads the same way)."""

from datetime import datetime

from sqlalchemy import Connection, func, insert, select

from models import AccessDenial

_TABLE = AccessDenial.__table__  # type: ignore[attr-defined]
ADDRESS_MAX = 64
PATH_MAX = 300
REASON_MAX = 40


def record(
    conn: Connection,
    *,
    at: datetime,
    address: str,
    reason: str,
    path: str,
    contact_id: int | None = None,
) -> None:
    """One refusal, on the caller's transaction; `path` must already be free of tokens."""
    conn.execute(
        insert(_TABLE).values(
            at=at,
            address=address[:ADDRESS_MAX],
            reason=reason[:REASON_MAX],
            path=path[:PATH_MAX],
            contact_id=contact_id,
        )
    )


def count_since(conn: Connection, address: str, since: datetime) -> int:
    """Refusals of `address` at or after `since`."""
    query = select(func.count()).where(
        _TABLE.c.address == address[:ADDRESS_MAX], _TABLE.c.at >= since
    )
    return int(conn.execute(query).scalar_one())
