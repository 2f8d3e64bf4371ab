"""A case's indicator measurements: one value per indicator, region and day."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlmodel import SQLModel

from bridgebsr.store.prepared import Prepared
from models import Measurement

_MEASUREMENTS = SQLModel.metadata.tables[str(Measurement.__tablename__)]
COLUMNS = (
    "case_id",
    "indicator",
    "region",
    "measured_on",
    "value",
    "note",
    "recorded_by",
    "at",
    "source",
)
_ADD = Prepared(insert(_MEASUREMENTS), COLUMNS)
_REPLACE = Prepared(
    update(_MEASUREMENTS)
    .where(_MEASUREMENTS.c.id == bindparam("row_id"))
    .values(
        value=bindparam("value"),
        note=bindparam("note"),
        recorded_by=bindparam("recorded_by"),
        at=bindparam("at"),
        source=bindparam("source"),
    )
)
_OF_CASE = Prepared(
    select(_MEASUREMENTS.c.id, *[_MEASUREMENTS.c[name] for name in COLUMNS[1:]])
    .where(_MEASUREMENTS.c.case_id == bindparam("case_id"))
    .order_by(
        _MEASUREMENTS.c.indicator,
        _MEASUREMENTS.c.region,
        _MEASUREMENTS.c.measured_on,
    )
)


def measurements_of(conn: Connection, case_id: int) -> list[dict[str, Any]]:
    """A case's measurements (with their row `id`), by indicator, region and day."""
    return [
        dict(zip(("id", *COLUMNS[1:]), row, strict=True))
        for row in _OF_CASE.all(conn, {"case_id": case_id})
    ]


def add_measurements(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert measurement rows (the keys of COLUMNS) in one driver call."""
    _ADD.many(conn, rows)


def replace_measurements(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Overwrite the value, note, recorder, time and source of existing rows (`row_id`)."""
    _REPLACE.many(conn, rows)
