"""Many rows in one statement: the rows travel as one JSON array of arrays (bound as `rows`),
which the database unpacks (`json_each` on SQLite, `jsonb_array_elements` on PostgreSQL),
each array element giving one row's values in order. The outboxes' inserts
(`notifications.json_insert`) and the audit trail's (`bridgebsr.store.case_rows`) select
their new rows from it. This builds statements and does no IO."""

from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, cast, func, literal_column
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import Text

# The values of a row, in the order each row's array gives them: (name, type).
PerRow = tuple[tuple[str, Any], ...]


@lru_cache(maxsize=16)
def json_rows(dialect: str, per_row: PerRow) -> tuple[Any, ...]:
    """The columns of the rows in the JSON array bound as `rows`, typed as `per_row` says,
    for `select(*json_rows(...))`. On PostgreSQL each value is read as text and cast; on
    SQLite `json_extract` gives it as its JSON type (a string as text, a number as a number,
    null as NULL)."""
    if dialect == "postgresql":
        rows = func.jsonb_array_elements(cast(bindparam("rows", type_=Text), postgresql.JSONB))
        value = rows.table_valued("value").c.value
        return tuple(
            cast(value.op("->>")(literal_column(str(i))), kind)
            for i, (_, kind) in enumerate(per_row)
        )
    rows = func.json_each(bindparam("rows", type_=Text))
    value = rows.table_valued("value").c.value
    return tuple(func.json_extract(value, literal_column(f"'$[{i}]'")) for i in range(len(per_row)))
