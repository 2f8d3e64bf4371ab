"""The outboxes' set-based insert: many new rows in one statement.

The rows travel as one JSON array of arrays (bound as `rows`), which the database unpacks
(`json_each` on SQLite, `jsonb_array_elements` on PostgreSQL): INSERT ... SELECT ... ON
CONFLICT (dedupe_key) DO NOTHING (a key another writer took meanwhile is skipped) RETURNING
the keys that went in. The columns every new row shares (`pending`, created `now`, bound as
`now`, and the table's defaults) are bound once per statement, not once per row. Both the
notices' outbox and the channels' (`channel_posts`) are written this way.
"""

from functools import lru_cache
from typing import Any

from sqlalchemy import Table, bindparam, cast, func, literal, literal_column, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import Text

from models import NotificationStatus

# The columns of a new row that differ from row to row, in the order each row's array gives
# them, with their types.
PerRow = tuple[tuple[str, Any], ...]


@lru_cache(maxsize=8)
def insert_from_json(dialect: str, table: Table, per_row: PerRow) -> Any:
    """The insert of `table`'s new rows from the JSON array `rows` (each row's values as
    `per_row` names them), `pending` and created at `now`, built once per backend and table.
    The columns no row sets are the table's defaults, rendered once into the statement."""
    if dialect == "postgresql":
        rows = func.jsonb_array_elements(cast(bindparam("rows", type_=Text), postgresql.JSONB))
        value = rows.table_valued("value").c.value
        values: list[Any] = [
            cast(value.op("->>")(literal_column(str(i))), kind)
            for i, (_, kind) in enumerate(per_row)
        ]
        insert: Any = postgresql.insert
    else:
        rows = func.json_each(bindparam("rows", type_=Text))
        value = rows.table_valued("value").c.value
        values = [
            func.json_extract(value, literal_column(f"'$[{i}]'")) for i in range(len(per_row))
        ]
        insert = sqlite.insert
    created = bindparam("now", type_=table.c.created_at.type)
    pending = literal(NotificationStatus.PENDING, type_=table.c.status.type)
    names = [*(name for name, _ in per_row), "status", "created_at"]
    # WHERE true: SQLite reads an upsert's SELECT only with a WHERE clause.
    source = select(*values, pending, created).where(true())
    statement = insert(table).from_select(names, source)
    return statement.on_conflict_do_nothing(index_elements=[table.c.dedupe_key]).returning(
        table.c.dedupe_key
    )
