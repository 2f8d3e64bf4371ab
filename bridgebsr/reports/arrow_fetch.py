"""A child process that reads a SQLite case store through Arrow (ADBC) for the KPI load.

The ADBC SQLite driver carries its own copy of SQLite. Two copies of SQLite in one process
release each other's file locks (POSIX locks belong to the process), which can corrupt the
database, so the driver only ever runs here, in its own process, and hands the rows back as
Arrow IPC over a pipe. It imports nothing of the project.

Protocol, one line per message on stdin and stdout:

- the child starts and says `ready`;
- `pin`: the child begins its read transaction (every answer comes from this snapshot) and
  says `pinned`;
- a JSON string: a SELECT; the child answers `ok N` and N bytes of an Arrow IPC stream, in
  batches of BATCH_ROWS rows (the driver's default of 1,024 would make a large table a
  thousand small messages), each integer column without NULLs in the narrowest type that
  holds its values (the driver reads every integer as 64 bits; the pipe then carries a third
  of that);
- anything going wrong: `error MESSAGE`, and the child ends.

    python -m bridgebsr.reports.arrow_fetch PATH
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any
from urllib.parse import quote

BATCH_ROWS = 1 << 16


def _say(out: IO[bytes], line: str, payload: Any = b"") -> None:
    """A line, then the payload as it is (any buffer: the rows are not copied again)."""
    out.write(line.encode("utf-8") + b"\n")
    out.write(memoryview(payload))
    out.flush()


def _narrowed(rows: Any) -> Any:
    """The table with each 64-bit integer column without NULLs in the narrowest signed type
    holding it. Done on the columns' buffers with numpy, which pyarrow loads anyway: the
    conversions of pyarrow itself load `pyarrow.compute` and pandas, which take longer to
    import than the rest of the child's work."""
    import numpy as np
    import pyarrow as pa

    columns = []
    for column in rows.columns:
        if pa.types.is_int64(column.type) and len(column) and not column.null_count:
            values = np.concatenate([_int64s(chunk) for chunk in column.chunks])
            low, high = int(values.min()), int(values.max())
            for narrow in (np.int8, np.int16, np.int32):
                if np.iinfo(narrow).min <= low and high <= np.iinfo(narrow).max:
                    data = pa.py_buffer(values.astype(narrow))
                    kind = pa.from_numpy_dtype(narrow)
                    column = pa.Array.from_buffers(kind, len(values), [None, data])
                    break
        columns.append(column)
    return pa.table(columns, names=rows.column_names)


def _int64s(chunk: Any) -> Any:
    """The values of an Arrow array of 64-bit integers without NULLs, as a numpy view."""
    import numpy as np

    data = chunk.buffers()[1]
    return np.frombuffer(data, dtype=np.int64, count=len(chunk), offset=chunk.offset * 8)


def serve(path: str, commands: IO[str], out: IO[bytes]) -> None:
    """Answer the commands on `commands` about the database at `path` until they end."""
    try:  # the driver manager's low-level API: its DB-API module would import pandas too
        import adbc_driver_manager as adbc
        import adbc_driver_sqlite
        import pyarrow as pa

        database: Any = adbc_driver_sqlite.connect(f"file:{quote(path)}?mode=rw")  # no create
        conn: Any = adbc.AdbcConnection(database)
        conn.set_autocommit(False)
    except Exception as exc:  # the parent falls back to reading through its own connection
        _say(out, f"error {type(exc).__name__}: {exc}".replace("\n", " "))
        return

    def table(sql: str) -> Any:
        statement = adbc.AdbcStatement(conn)
        try:
            statement.set_options(
                **{adbc_driver_sqlite.StatementOptions.BATCH_ROWS.value: str(BATCH_ROWS)}
            )
            statement.set_sql_query(sql)
            stream, _ = statement.execute_query()
            # The driver's stream handle speaks the Arrow PyCapsule interface.
            return pa.RecordBatchReader.from_stream(stream).read_all()
        finally:
            statement.close()

    try:
        _say(out, "ready")
        for line in commands:
            if line.strip() == "pin":
                table("SELECT count(*) FROM sqlite_schema")  # the read begins: the snapshot
                _say(out, "pinned")
                continue
            sink = pa.BufferOutputStream()
            rows = _narrowed(table(json.loads(line)))
            with pa.ipc.new_stream(sink, rows.schema) as writer:
                writer.write_table(rows)
            payload = sink.getvalue()
            _say(out, f"ok {payload.size}", payload)
    except Exception as exc:
        _say(out, f"error {type(exc).__name__}: {exc}".replace("\n", " "))
    finally:
        conn.rollback()
        conn.close()
        database.close()


if __name__ == "__main__":
    serve(sys.argv[1], sys.stdin, sys.stdout.buffer)
