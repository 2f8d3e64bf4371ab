"""A child process that reads a SQLite case store through Arrow (ADBC) for the KPI load.

The ADBC SQLite driver carries its own copy of SQLite. Two copies of SQLite in one process
release each other's file locks (POSIX locks belong to the process), which can corrupt the
database, so the driver only ever runs here, in its own process, and hands the rows back as
Arrow IPC over a pipe. It imports nothing of the project.

Protocol, one line per message on stdin and stdout:

- the child starts, begins its read transaction (every answer comes from this snapshot) and
  says `ready`;
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
    try:
        import adbc_driver_sqlite.dbapi as adbc_sqlite
        import pyarrow as pa

        conn: Any = adbc_sqlite.connect(f"file:{quote(path)}?mode=rw")  # never creates one
    except Exception as exc:  # the parent falls back to reading through its own connection
        _say(out, f"error {type(exc).__name__}: {exc}".replace("\n", " "))
        return
    try:
        with conn.cursor() as cursor:  # the read transaction begins: this is the snapshot
            cursor.execute("SELECT count(*) FROM sqlite_schema")
            cursor.fetchall()
        _say(out, "ready")
        for line in commands:
            with conn.cursor() as cursor:
                cursor.execute(json.loads(line))
                table = cursor.fetch_arrow_table()
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            payload = sink.getvalue().to_pybytes()
            _say(out, f"ok {len(payload)}", payload)
    except Exception as exc:
        _say(out, f"error {type(exc).__name__}: {exc}".replace("\n", " "))
    finally:
        conn.rollback()
        conn.close()


if __name__ == "__main__":
    serve(sys.argv[1], sys.stdin, sys.stdout.buffer)
