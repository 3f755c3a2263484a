"""Hot-path statements run on the driver's cursor, each compiled once per dialect.

SQLAlchemy still writes the SQL (so it stays portable); this skips its per-execution
bookkeeping (cache keys, result wrappers), which costs more than a small SQLite statement
itself. Only for statements built once, at import, with bind parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

Pick = Callable[[dict[str, Any]], tuple[Any, ...]]
_Compiled = tuple[str, Pick | None, dict[str, Any]]
_COMPILED: dict[tuple[int, str], _Compiled] = {}


def _compiled(connection: Connection, statement: Any) -> _Compiled:
    dialect = connection.dialect
    key = (id(statement), dialect.name)
    found = _COMPILED.get(key)
    if found is None:
        compiled = statement.compile(dialect=dialect)
        order = tuple(compiled.positiontup) if dialect.positional and compiled.positiontup else None
        found = _COMPILED[key] = (compiled.string, _picker(order), dict(compiled.params))  # + literal binds
    return found


def _picker(order: tuple[str, ...] | None) -> Pick | None:
    """For a positional driver (sqlite3): the values in the statement's order, by name."""
    if order is None:
        return None
    if len(order) == 1:
        return lambda values: (values[order[0]],)
    return itemgetter(*order)


def _parameters(found: _Compiled, params: dict[str, Any]) -> Any:
    _, pick, defaults = found
    values = {**defaults, **params}
    return pick(values) if pick is not None else values


def execute_compiled(connection: Connection, statement: Any, params: dict[str, Any]) -> int:
    """Run a statement; returns the row count."""
    found = _compiled(connection, statement)
    values = _parameters(found, params)
    cursor = connection.connection.driver_connection.cursor()
    try:
        cursor.execute(found[0], values)
        return int(cursor.rowcount)
    except connection.dialect.loaded_dbapi.Error as exc:
        raise _wrapped(connection, found[0], values, exc) from exc
    finally:
        cursor.close()


def fetch_compiled(connection: Connection, statement: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Run a query; its rows as dicts keyed by column name."""
    found = _compiled(connection, statement)
    values = _parameters(found, params)
    cursor = connection.connection.driver_connection.cursor()
    try:
        cursor.execute(found[0], values)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    except connection.dialect.loaded_dbapi.Error as exc:
        raise _wrapped(connection, found[0], values, exc) from exc
    finally:
        cursor.close()


def execute_driver_sql(connection: Connection, sql: str) -> None:
    """Run a fixed statement without parameters (BEGIN IMMEDIATE) on the driver's cursor."""
    cursor = connection.connection.driver_connection.cursor()
    try:
        cursor.execute(sql)
    except connection.dialect.loaded_dbapi.Error as exc:
        raise _wrapped(connection, sql, (), exc) from exc
    finally:
        cursor.close()


def _wrapped(connection: Connection, sql: str, values: Any, error: Exception) -> BaseException:
    """The driver's error as SQLAlchemy's (OperationalError...), as from `connection.execute`:
    the writer and the store's error reporting recognise only those."""
    dbapi = connection.dialect.loaded_dbapi
    return DBAPIError.instance(sql, values, error, dbapi.Error, dialect=connection.dialect)
