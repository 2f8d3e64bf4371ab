"""The KPI load's SELECTs of cases and milestones, and the expressions that hand dates,
times, statuses and optional values over as plain integers (or text) on either database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, Final, cast

from sqlalchemy import BigInteger, Date, Integer, String, func, literal, select
from sqlalchemy import case as sql_case
from sqlalchemy import cast as sql_cast
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from bridgebsr.reports.frames import COUNTRY, GATE_EVENTS, NULL, PILOT
from models import Case, CaseEvent, CaseStatus, Gate, GateStatus, Milestone, MilestoneStatus

_UNIX_JULIAN_DAY: Final = 2440587.5


class Sql:
    """Expressions that hand dates, times and statuses over as plain integers.

    With `dates_as_read` on PostgreSQL, a day is selected as stored (a date) and the reader
    turns it into a day number: Arrow converts a column of dates in C far faster than the
    server does row by row. SQLite keeps dates as ISO text, and its own `julianday` costs no
    more than handing the text over, so the day numbers come from the query there and the
    reading process parses nothing.
    """

    def __init__(self, dialect: str, *, dates_as_read: bool = False) -> None:
        self.sqlite = dialect == "sqlite"
        self.dates_as_read = dates_as_read and not self.sqlite

    def day(self, column: Any, *, in_sql: bool = False) -> ColumnElement[Any]:
        """Days since 1970-01-01 (NULL as -1); `in_sql` for `records`, which does not
        convert."""
        if self.dates_as_read and not in_sql:
            return cast(ColumnElement[Any], column)
        if self.sqlite:
            days = sql_cast(func.julianday(column) - _UNIX_JULIAN_DAY, Integer)
        else:
            days = sql_cast(sql_cast(column, Date) - literal(date(1970, 1, 1)), Integer)
        return func.coalesce(days, NULL)

    def seconds(self, column: Any) -> ColumnElement[Any]:
        """Seconds since 1970-01-01 UTC (NULL as -1); SQLite keeps UTC times naive."""
        if self.sqlite:
            seconds = sql_cast(func.strftime("%s", column), BigInteger)
        else:
            seconds = sql_cast(func.floor(func.date_part("epoch", column)), BigInteger)
        return func.coalesce(seconds, NULL)

    @staticmethod
    def code(column: Any, values: Sequence[str]) -> ColumnElement[Any]:
        """A text column as its position in `values` (-1 for anything else)."""
        if not values:
            return literal(-1)
        return sql_case({v: i for i, v in enumerate(values)}, value=column, else_=-1)

    @staticmethod
    def key(column: Any) -> ColumnElement[Any]:
        """An optional id (NULL as -1)."""
        return func.coalesce(column, NULL)

    @staticmethod
    def text(column: Any) -> ColumnElement[Any]:
        """Optional text (NULL as an empty string)."""
        return func.coalesce(column, "")


CASE_COLUMNS: Final = (
    *("case_id", "key", PILOT, "template_version", "lead_partner_id", COUNTRY, "status"),
    *("current_stage", "start_date", "target_date", "forecast_date", "closed_at", "version"),
    "fields",  # JSON text, parsed once per distinct text (`load`)
)


def case_query(sql: Sql) -> Any:
    return select(
        col(Case.id),
        col(Case.key),
        col(Case.kind),
        col(Case.template_version),
        col(Case.lead_partner_id),
        col(Case.country),
        sql.code(col(Case.status), [s.value for s in CaseStatus]),
        sql.text(col(Case.current_stage)),
        sql.day(col(Case.start_date), in_sql=True),
        sql.day(col(Case.target_date), in_sql=True),
        sql.day(col(Case.forecast_date), in_sql=True),
        sql.seconds(col(Case.closed_at)),
        col(Case.version),
        sql_cast(col(Case.fields), String),
    )


MILESTONE_COLUMNS: Final = (
    *("case_id", "seq", "status", "owner_id"),
    *("baseline_due", "planned_due", "started_on", "finished_on"),
    *("planned_start", "adhoc"),  # the agreed floors of the forecast (`schedule.Item`)
)


def milestone_query(sql: Sql) -> Any:
    return select(
        col(Milestone.case_id),
        col(Milestone.seq),
        sql.code(col(Milestone.status), [s.value for s in MilestoneStatus]),
        sql.key(col(Milestone.owner_id)),
        sql.day(col(Milestone.baseline_due)),
        sql.day(col(Milestone.planned_due)),
        sql.day(col(Milestone.started_on)),
        sql.day(col(Milestone.finished_on)),
        sql.day(col(Milestone.planned_start)),
        sql_cast(col(Milestone.adhoc), Integer),
    )


GATE_COLUMNS: Final = (
    *("case_id", "seq", "status", "round", "opened_on", "deadline"),
    *("decided_on", "baseline_due", "planned_due"),
)
EVENT_COLUMNS: Final = ("id", "case_id", "kind", "gate", "round", "at", "deadline")


def gate_query(sql: Sql) -> Any:
    return select(
        col(Gate.case_id),
        col(Gate.seq),
        sql.code(col(Gate.status), [s.value for s in GateStatus]),
        col(Gate.round),
        sql.day(col(Gate.opened_on)),
        sql.day(col(Gate.deadline)),
        sql.day(col(Gate.decided_on)),
        sql.day(col(Gate.baseline_due)),
        sql.day(col(Gate.planned_due)),
    )


def gate_event_query(sql: Sql, gates: Sequence[str]) -> Any:
    """The audit events of gates sent back for rework (`gates`: every gate key, coded by
    position)."""
    after: Any = col(CaseEvent.after)
    return (
        select(
            col(CaseEvent.id),
            col(CaseEvent.case_id),
            sql.code(col(CaseEvent.kind), GATE_EVENTS),
            sql.code(col(CaseEvent.subject), gates),
            sql.key(after["round"].as_integer()),
            sql.seconds(col(CaseEvent.at)),
            sql.day(after["deadline"].as_string()),
        )
        .join(
            Gate,
            (col(Gate.case_id) == col(CaseEvent.case_id))
            & (col(Gate.key) == col(CaseEvent.subject)),
        )
        .where(col(CaseEvent.kind).in_(GATE_EVENTS), col(Gate.round) > 1)
    )
