"""The few statements of a change, run on the driver's cursor.

A change to a case is five or six small statements (read the case, read its milestones,
write what moved, append the audit events). Through SQLAlchemy's execution each one costs
about 70 µs of Python (execution context, events, result objects) around 10-30 µs of work in
the database, which made the library most of a change's time. `Prepared` compiles a Core
statement once per dialect, keeps SQLAlchemy's own conversions for each parameter and result
column (so values are written and read exactly as a Core execution would), and runs it on the
transaction's driver connection. Driver errors are raised as SQLAlchemy's exceptions, as a
Core execution raises them.

Only statements whose every value comes from their parameters qualify: a statement that
needs a Python-side column default filled in is refused when it is compiled.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import ClauseElement

Convert = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Form:
    """A statement compiled for one dialect."""

    sql: str
    positional: bool  # qmark/format parameters in `names` order, else a mapping by name
    names: tuple[str, ...]
    binds: tuple[tuple[int, str, Convert], ...]  # (position, name, conversion) that convert
    fixed: dict[str, Any]  # values the statement carries itself, such as a literal `+ 1`
    results: tuple[tuple[int, Convert], ...] | None  # None until the first rows arrive


class Prepared:
    """A Core statement compiled once per dialect and run on the driver connection.

    `keys` names the parameters an INSERT or UPDATE sets (its column keys), as the
    parameters of a Core execution would. `convert` replaces the conversion of the returned
    columns of these names with a function of what the driver returns (None included)."""

    __slots__ = ("_convert", "_forms", "keys", "statement")

    def __init__(
        self,
        statement: ClauseElement,
        keys: Iterable[str] = (),
        *,
        convert: Mapping[str, Convert] | None = None,
    ) -> None:
        self.statement = statement
        self.keys = tuple(keys)
        self._convert = dict(convert or {})
        self._forms: dict[tuple[str, str], _Form] = {}

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Every row the statement returns, converted."""
        form, dialect = self._form(conn)
        cursor = self._execute(conn, form, dialect, params)
        found = cursor.fetchall()
        if not found:
            return []
        results = form.results
        if results is None:
            results = self._learn_results(form, dialect, cursor.description)
        if not results:
            return [tuple(row) for row in found]
        out = []
        for row in found:
            values = list(row)
            for position, convert in results:
                values[position] = convert(values[position])
            out.append(tuple(values))
        return out

    def first(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row, converted, or None."""
        found = self.all(conn, params)
        return found[0] if found else None

    def run(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Execute once; the rows it matched."""
        form, dialect = self._form(conn)
        cursor = self._execute(conn, form, dialect, params)
        return int(cursor.rowcount)

    def many(self, conn: Connection, params: Sequence[Mapping[str, Any]]) -> None:
        """Execute once per parameter set, in one driver call."""
        if not params:
            return
        form, dialect = self._form(conn)
        driver = conn.connection.driver_connection
        assert driver is not None
        converted = _bound_all(form, params)
        cursor = driver.cursor()
        try:
            cursor.executemany(form.sql, converted)
        except dialect.loaded_dbapi.Error as error:
            raise _wrapped(conn, form, converted, error, dialect, driver) from error
        finally:
            cursor.close()

    def _execute(
        self, conn: Connection, form: _Form, dialect: Dialect, params: Mapping[str, Any]
    ) -> Any:
        driver = conn.connection.driver_connection
        assert driver is not None
        bound = _bound(form, params)
        try:
            return driver.execute(form.sql, bound)
        except dialect.loaded_dbapi.Error as error:
            raise _wrapped(conn, form, bound, error, dialect, driver) from error

    def _form(self, conn: Connection) -> tuple[_Form, Dialect]:
        dialect = conn.dialect
        at = (dialect.name, dialect.driver)
        form = self._forms.get(at)
        if form is None:
            form = self._forms[at] = self._compile(dialect)
        return form, dialect

    def _compile(self, dialect: Dialect) -> _Form:
        compiled: Any = self.statement.compile(dialect=dialect, column_keys=list(self.keys))
        filled = [*compiled.insert_prefetch, *compiled.update_prefetch]
        if filled or compiled.post_compile_params or compiled.literal_execute_params:
            raise ValueError(
                f"statement needs values filled in at execution ({filled or 'expanding'}): "
                f"run it through Core: {compiled.string}"
            )
        positional = bool(compiled.positional)
        names = tuple(compiled.positiontup if positional else compiled.binds)
        binds = []
        for position, name in enumerate(names):
            kind = compiled.binds[name].type
            convert = kind.dialect_impl(dialect).bind_processor(dialect)
            if convert is not None:
                binds.append((position, name, convert))
        fixed = {
            name: compiled.binds[name].effective_value
            for name in names
            if not compiled.binds[name].required
        }
        return _Form(compiled.string, positional, names, tuple(binds), fixed, None)

    def _learn_results(
        self, form: _Form, dialect: Dialect, description: Sequence[Sequence[Any]]
    ) -> tuple[tuple[int, Convert], ...]:
        """Each returned column's conversion, as SQLAlchemy's result processing would do it,
        given the driver's type codes from the first execution that returned rows."""
        columns = list(self.statement.exported_columns)  # type: ignore[attr-defined]
        results = []
        for position, (column, described) in enumerate(zip(columns, description, strict=True)):
            convert = self._convert.get(column.name) or column.type.dialect_impl(
                dialect
            ).result_processor(dialect, described[1])
            if convert is not None:
                results.append((position, convert))
        learnt = tuple(results)
        self._forms[(dialect.name, dialect.driver)] = _Form(
            form.sql, form.positional, form.names, form.binds, form.fixed, learnt
        )
        return learnt


def _bound(form: _Form, params: Mapping[str, Any]) -> Any:
    if form.fixed:
        params = {**form.fixed, **params}
    if form.positional:
        values = [params[name] for name in form.names]
        for position, _, convert in form.binds:
            values[position] = convert(values[position])
        return values
    mapping = {name: params[name] for name in form.names}
    for _, name, convert in form.binds:
        mapping[name] = convert(mapping[name])
    return mapping


def _bound_all(form: _Form, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Each row's parameters as `_bound` gives them. A value that is the very object the row
    before had in its place (a change's moment, its actor, its source) is converted once:
    the conversions are functions of the value alone."""
    last: dict[int, tuple[Any, Any]] = {}  # position: (value, converted) of the row before

    def converted(position: int, value: Any, convert: Convert) -> Any:
        before = last.get(position)
        if before is not None and before[0] is value:
            return before[1]
        done = convert(value)
        last[position] = (value, done)
        return done

    out: list[Any] = []
    for row in rows:
        params = {**form.fixed, **row} if form.fixed else row
        if form.positional:
            values = [params[name] for name in form.names]
            for position, _, convert in form.binds:
                values[position] = converted(position, values[position], convert)
            out.append(values)
        else:
            mapping = {name: params[name] for name in form.names}
            for position, name, convert in form.binds:
                mapping[name] = converted(position, mapping[name], convert)
            out.append(mapping)
    return out


def _wrapped(
    conn: Connection, form: _Form, params: Any, error: Exception, dialect: Dialect, driver: Any
) -> BaseException:
    """The driver's error as SQLAlchemy raises it; a lost connection is invalidated, as a Core
    execution does, so that the pool does not hand it out again."""
    lost = dialect.is_disconnect(error, driver, None)  # type: ignore[arg-type]
    if lost:
        conn.invalidate(error)
    return DBAPIError.instance(
        form.sql,
        params,
        error,
        dialect.loaded_dbapi.Error,
        dialect=dialect,
        connection_invalidated=lost,
    )
