"""A child process that reads a SQLite case store through Arrow (ADBC) for the KPI load.

The ADBC SQLite driver carries its own copy of SQLite. Two copies of SQLite in one process
release each other's file locks (POSIX locks belong to the process), which can corrupt the
database, so the driver only ever runs here, in its own process, and hands the rows back as
Arrow IPC over a pipe. It imports nothing of the project.

Protocol, one line per message on stdin and stdout:

- the child starts and says `ready`;
- `pin`: the child begins its read transaction (every answer comes from this snapshot) and
  says `pinned`;
- a JSON string: a SELECT; the child answers `ok N` and N bytes of an Arrow IPC stream;
- anything going wrong: `error MESSAGE`, and the child ends.

    python -m bridgebsr.arrow_fetch PATH
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any
from urllib.parse import quote


def _say(out: IO[bytes], line: str, payload: bytes = b"") -> None:
    out.write(line.encode("utf-8") + b"\n" + payload)
    out.flush()


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
            statement.set_sql_query(sql)
            stream, _ = statement.execute_query()
            return pa.RecordBatchReader._import_from_c(stream.address).read_all()
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
            rows = table(json.loads(line))
            with pa.ipc.new_stream(sink, rows.schema) as writer:
                writer.write_table(rows)
            payload = sink.getvalue().to_pybytes()
            _say(out, f"ok {len(payload)}", payload)
    except Exception as exc:
        _say(out, f"error {type(exc).__name__}: {exc}".replace("\n", " "))
    finally:
        conn.rollback()
        conn.close()
        database.close()


if __name__ == "__main__":
    serve(sys.argv[1], sys.stdin, sys.stdout.buffer)
