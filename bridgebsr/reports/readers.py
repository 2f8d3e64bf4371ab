"""How the KPI load reads the store: its SELECTs' rows as numpy columns, in one snapshot.

`reader(engine)` gives the fastest reader the database allows: on PostgreSQL, ADBC (Arrow)
on two connections sharing one exported snapshot; on a SQLite file, ADBC in two child
processes (`arrow_fetch`) pinned to one snapshot; otherwise the engine's own connection.
Statements are SQLAlchemy Core, compiled with their (few, literal) parameters inline for the
Arrow readers: public SQLAlchemy API only.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager, suppress
from itertools import chain
from pathlib import Path
from threading import Thread
from typing import Any, Final, Protocol

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Dialect, Engine, func, select

from bridgebsr.errors import InvalidInput
from bridgebsr.reports.frames import NULL, IntArray

_CHUNK_ROWS: Final = 100_000


class Reader(Protocol):
    """Runs the load's SELECTs (Core statements) and hands back their rows as columns."""

    @property
    def dialect(self) -> Dialect: ...

    @property
    def arrow(self) -> bool:
        """Whether rows come through Arrow, which parses ISO dates itself (see `Sql`)."""
        ...

    def integers(self, query: Any, columns: Sequence[str]) -> pd.DataFrame:
        """Rows of integers (no NULLs: the SELECT gives -1) as int64 columns."""
        ...

    def records(self, query: Any, columns: Sequence[str]) -> pd.DataFrame:
        """Rows of mixed values; text as Python strings (no NULLs: the SELECT turns them into
        empty strings or -1)."""
        ...

    def integers_soon(self, query: Any, columns: Sequence[str]) -> Callable[[], pd.DataFrame]:
        """`integers`, possibly fetched (on a second connection, in the same snapshot) while
        the caller works on: call the result for the rows."""
        ...

    def integers_next(self, query: Any, columns: Sequence[str]) -> Callable[[], pd.DataFrame]:
        """`integers`, asked now on the first connection after what is asked there already,
        possibly fetched while the caller waits for something else: call for the rows."""
        ...

    def integers_large(
        self, query: Any, columns: Sequence[str], key: Any
    ) -> Callable[[], pd.DataFrame]:
        """`integers_soon` for the largest SELECT, rows in `key`'s order (`key`: an integer
        column of its one table, the rowid's): a reader whose connections are processes of
        their own reads two ranges of `key` at once. Call the result for the rows."""
        ...

    def records_next(self, query: Any, columns: Sequence[str]) -> Callable[[], pd.DataFrame]:
        """`records`, asked as `integers_next` asks."""
        ...


class CursorReader:
    """Reads through a SQLAlchemy connection, inside its transaction."""

    arrow = False

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @property
    def dialect(self) -> Dialect:
        return self.conn.dialect

    def integers(self, query: Any, columns: Sequence[str]) -> pd.DataFrame:
        result = self.conn.execute(query)
        cursor = result.cursor
        width = len(columns)
        parts = [np.empty((0, width), dtype=np.int64)]
        try:
            while chunk := cursor.fetchmany(_CHUNK_ROWS):
                flat = np.fromiter(
                    chain.from_iterable(chunk), dtype=np.int64, count=len(chunk) * width
                )
                parts.append(flat.reshape(-1, width))
        finally:
            result.close()
        return pd.DataFrame(np.concatenate(parts), columns=list(columns))

    def records(self, query: Any, columns: Sequence[str]) -> pd.DataFrame:
        result = self.conn.execute(query)
        try:
            rows = result.cursor.fetchall()
        finally:
            result.close()
        frame = pd.DataFrame.from_records(rows, columns=list(columns), coerce_float=False)
        return frame.astype({c: object for c in frame.columns if frame[c].dtype != np.int64})

    def integers_soon(self, query: Any, columns: Sequence[str]) -> Callable[[], pd.DataFrame]:
        rows = self.integers(query, columns)
        return lambda: rows

    def integers_next(self, query: Any, columns: Sequence[str]) -> Callable[[], pd.DataFrame]:
        return self.integers_soon(query, columns)

    def integers_large(
        self, query: Any, columns: Sequence[str], key: Any
    ) -> Callable[[], pd.DataFrame]:
        return self.integers_soon(query, columns)

    def records_next(self, query: Any, columns: Sequence[str]) -> Callable[[], pd.DataFrame]:
        rows = self.records(query, columns)
        return lambda: rows


class _ArrowTables:
    """A reader whose rows arrive as Arrow tables: the driver builds the columns in C, and
    they become numpy arrays without a Python object per value. Statements are sent as SQL
    with their parameters inline (they hold only codes, names and dates the load writes)."""

    arrow = True

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    def _table_next(self, statement: str) -> Callable[[], Any]:
        """The rows of a SELECT, asked now on the first connection (after what is asked there
        already)."""
        raise NotImplementedError

    def _table(self, statement: str) -> Any:
        """The rows of a SELECT, on the first connection."""
        return self._table_next(statement)()

    def _table_soon(self, statement: str) -> Callable[[], Any]:
        """The rows of a SELECT, fetched meanwhile on the second connection."""
        raise NotImplementedError

    def _sql(self, query: Any) -> str:
        return str(query.compile(dialect=self._dialect, compile_kwargs={"literal_binds": True}))

    def integers(self, query: Any, columns: Sequence[str]) -> pd.DataFrame:
        return _integer_frame(self._table(self._sql(query)), columns)

    def records(self, query: Any, columns: Sequence[str]) -> pd.DataFrame:
        return _record_frame(self._table(self._sql(query)), columns)

    def integers_soon(self, query: Any, columns: Sequence[str]) -> Callable[[], pd.DataFrame]:
        table = self._table_soon(self._sql(query))
        return lambda: _integer_frame(table(), columns)

    def integers_next(self, query: Any, columns: Sequence[str]) -> Callable[[], pd.DataFrame]:
        table = self._table_next(self._sql(query))
        return lambda: _integer_frame(table(), columns)

    def integers_large(
        self, query: Any, columns: Sequence[str], key: Any
    ) -> Callable[[], pd.DataFrame]:
        return self.integers_soon(query, columns)

    def records_next(self, query: Any, columns: Sequence[str]) -> Callable[[], pd.DataFrame]:
        table = self._table_next(self._sql(query))
        return lambda: _record_frame(table(), columns)


class _PostgresReader(_ArrowTables):
    """ADBC on PostgreSQL: two connections on one exported snapshot, each answering in a
    thread of its own in the order asked (the driver does not hold the GIL meanwhile)."""

    def __init__(self, dialect: Dialect, first: Any, second: Any) -> None:
        super().__init__(dialect)
        self.connections = (first, second)
        self.pools = (ThreadPoolExecutor(1), ThreadPoolExecutor(1))

    @staticmethod
    def _fetch(conn: Any, statement: str) -> Any:
        with conn.cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetch_arrow_table()

    def _ask(self, which: int, statement: str) -> Callable[[], Any]:
        return self.pools[which].submit(self._fetch, self.connections[which], statement).result

    def _table_next(self, statement: str) -> Callable[[], Any]:
        return self._ask(0, statement)

    def _table_soon(self, statement: str) -> Callable[[], Any]:
        return self._ask(1, statement)

    def close(self) -> None:
        for pool in self.pools:
            pool.shutdown(wait=True)
        for conn in self.connections:
            conn.rollback()
            conn.close()


class _Child:
    """`bridgebsr.reports.arrow_fetch` in a child process on a SQLite file (see its protocol)."""

    def __init__(self, path: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bridgebsr.reports.arrow_fetch", path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            # numpy (loaded by pyarrow) would start a BLAS thread per core, for nothing here.
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        )
        self.pool = ThreadPoolExecutor(1)  # reads answers in the order they were asked for

    def line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode("utf-8").rstrip("\n")
        if not line or line.startswith("error "):
            raise InvalidInput(
                f"the store could not be read through Arrow: {line[6:] or 'no answer'}; "
                "check that the case store file is readable and writable"
            )
        return line

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode("utf-8") + b"\n")
        self.process.stdin.flush()

    def ask(self, statement: str) -> Callable[[], Any]:
        """Send a SELECT; call the result for its rows (an Arrow table)."""
        self.send(json.dumps(statement))
        return self.pool.submit(self._answer).result

    def _answer(self) -> Any:
        import pyarrow as pa

        size = int(self.line().removeprefix("ok "))
        assert self.process.stdout is not None
        payload = self.process.stdout.read(size)
        return pa.ipc.open_stream(pa.py_buffer(payload)).read_all()

    def close(self) -> None:
        """End the child: its input closes and it exits by itself. Nobody waits for that
        here (an interpreter with pyarrow loaded takes a while to go); the reader's thread
        collects it after any answer still coming in."""
        with suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        self.pool.submit(self._collect)
        self.pool.shutdown(wait=False)

    def _collect(self) -> None:
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class _ProcessReader(_ArrowTables):
    """Two `reports.arrow_fetch` children on the SQLite file, their read transactions begun
    while writers wait behind a BEGIN IMMEDIATE, so both read one snapshot; each answers in the
    order asked, the second what is fetched beside the rest."""

    def __init__(self, dialect: Dialect, path: str) -> None:
        super().__init__(dialect)
        self.path = path
        self.first, self.second = _Child(path), _Child(path)

    def start(self) -> bool:
        """Whether both children began their reads (False: they cannot read Arrow here)."""
        try:
            if self.first.line() != "ready" or self.second.line() != "ready":
                return False
            with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as fence:
                fence.execute("BEGIN IMMEDIATE")  # no writer commits until both have begun
                try:
                    for child in (self.first, self.second):
                        child.send("pin")
                    return self.first.line() == "pinned" and self.second.line() == "pinned"
                finally:
                    fence.execute("ROLLBACK")
        except (InvalidInput, OSError, sqlite3.Error):
            return False

    def _table_next(self, statement: str) -> Callable[[], Any]:
        return self.first.ask(statement)

    def _table_soon(self, statement: str) -> Callable[[], Any]:
        return self.second.ask(statement)

    def integers_large(
        self, query: Any, columns: Sequence[str], key: Any
    ) -> Callable[[], pd.DataFrame]:
        """Two ranges of `key` at once, one per child: each child is a process, so the two
        SQLite scans and Arrow conversions run on two cores. The second child takes the
        larger share: the first also answers every other SELECT of the load."""
        bounds = self._table(self._sql(select(func.min(key), func.max(key))))
        low, high = (bounds.column(i)[0].as_py() for i in (0, 1))
        if low is None:
            return self.integers_soon(query, columns)
        cut = low + (high - low + 1) * 3 // 5
        first = self._table_soon(self._sql(query.where(key < cut)))
        rest = self._table_next(self._sql(query.where(key >= cut)))
        return lambda: _joined([first(), rest()], columns)

    def close(self) -> None:
        self.first.close()
        self.second.close()


def _integer_frame(table: Any, columns: Sequence[str]) -> pd.DataFrame:
    arrays = {name: _arrow_integers(table.column(i)) for i, name in enumerate(columns)}
    return pd.DataFrame(arrays, copy=False)  # fresh arrays: no copy into one block


def _joined(tables: Sequence[Any], columns: Sequence[str]) -> pd.DataFrame:
    """`_integer_frame` of the rows of `tables` one after the other (each child narrows its
    own columns, so their types may differ)."""
    parts = [_integer_frame(table, columns) for table in tables]
    joined = {name: np.concatenate([part[name].to_numpy() for part in parts]) for name in columns}
    return pd.DataFrame(joined, copy=False)


def _record_frame(table: Any, columns: Sequence[str]) -> pd.DataFrame:
    out = {}
    for i, name in enumerate(columns):
        values = table.column(i).to_numpy(zero_copy_only=False)
        integral = np.issubdtype(values.dtype, np.integer)
        out[name] = pd.Series(values, dtype=np.int64 if integral else object)
    return pd.DataFrame(out, copy=False)


def _arrow_integers(column: Any) -> IntArray:
    """An Arrow column of integers (of any width), dates or ISO date text (empty or NULL:
    -1) as int64, dates as days since 1970-01-01."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = pc.cast(pc.if_else(pc.equal(column, ""), None, column), pa.date32())
    if pa.types.is_date32(column.type):
        column = pc.cast(column, pa.int32())
    if column.null_count:
        column = pc.fill_null(pc.cast(column, pa.int64()), NULL)
    return np.asarray(column.to_numpy(), dtype=np.int64)


@contextmanager
def reader(engine: Engine) -> Iterator[Reader]:
    """The fastest reader the engine's database allows, each in one read-only snapshot.

    - PostgreSQL: ADBC, two connections on one exported snapshot.
    - A SQLite file: ADBC in two child processes on one snapshot (`bridgebsr.reports.arrow_fetch`).
      The driver carries its own copy of SQLite, and two copies in one process release each
      other's file locks.
    - Otherwise (an in-memory database, no driver): the engine's connection.
    """
    # The first holiday lookup in a process imports every country `holidays` knows, which
    # takes as long as connecting: in a thread meanwhile, and while the first rows come.
    if "holidays.countries" not in sys.modules:
        Thread(target=_import_holidays, daemon=True).start()
    url = engine.url
    backend = url.get_backend_name()
    arrow: _PostgresReader | _ProcessReader | None = None
    if backend == "postgresql":
        with suppress(ImportError):
            arrow = _PostgresReader(engine.dialect, *_postgres_pair(url))
    elif backend == "sqlite" and url.database and url.database != ":memory:":
        arrow = _ProcessReader(engine.dialect, str(Path(url.database).resolve()))
        if not arrow.start():
            arrow.close()
            arrow = None
    if arrow is not None:
        try:
            yield arrow
        finally:
            arrow.close()
        return
    with engine.connect() as conn:
        yield CursorReader(conn)


def _import_holidays() -> None:
    import holidays.countries  # noqa: F401


def _postgres_pair(url: Any) -> tuple[Any, Any]:
    """Two ADBC connections whose read transactions share one exported snapshot."""
    import adbc_driver_postgresql.dbapi as adbc_postgresql

    target = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with ThreadPoolExecutor(1) as pool:  # each connection reads the server's types first
        connecting = pool.submit(adbc_postgresql.connect, target)
        try:
            first = adbc_postgresql.connect(target)
        except BaseException:
            with suppress(Exception):
                connecting.result().close()
            raise
        try:
            second = connecting.result()
        except BaseException:
            first.close()
            raise
    with first.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute("SELECT pg_export_snapshot()")
        snapshot = cursor.fetchone()[0]
    with second.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
    return first, second
