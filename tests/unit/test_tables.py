"""`engine/tables.py`, the Core mirror the store uses, is exactly the SQLModel schema of
`engine/schema.py`: the generated source is current, and both give the same DDL on both
databases, the same column defaults and the same indexes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.types import TypeDecorator, TypeEngine

from engine import schema, tables
from engine.tables_render import TARGET, render

ROOT = Path(__file__).resolve().parents[2]


def test_the_mirror_is_generated_from_the_current_schema() -> None:
    assert TARGET.read_text() == render(), "run `python -m engine.tables_render` after changing the schema"


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "postgresql"])
def test_the_mirror_gives_the_same_ddl(dialect: object) -> None:
    assert [t.name for t in tables.ALL_TABLES] == [t.name for t in schema.ALL_TABLES]
    assert sorted(tables.metadata.tables) == sorted(schema.metadata.tables)
    for ours, theirs in zip(tables.ALL_TABLES, schema.ALL_TABLES, strict=True):
        assert str(CreateTable(ours).compile(dialect=dialect)) == str(
            CreateTable(theirs).compile(dialect=dialect)
        )
        index_ddl = [
            sorted(str(CreateIndex(index).compile(dialect=dialect)) for index in table.indexes)
            for table in (ours, theirs)
        ]
        assert index_ddl[0] == index_ddl[1]


def _plain(kind: TypeEngine[object]) -> TypeEngine[object]:
    """SQLModel's `AutoString` is a decorated `String`: compare what it decorates."""
    return kind.impl_instance if isinstance(kind, TypeDecorator) else kind


def test_the_mirror_has_the_same_columns_and_defaults() -> None:
    for ours, theirs in zip(tables.ALL_TABLES, schema.ALL_TABLES, strict=True):
        for mine, model in zip(ours.columns, theirs.columns, strict=True):
            assert (mine.name, mine.nullable, mine.primary_key, mine.autoincrement) == (
                model.name,
                model.nullable,
                model.primary_key,
                model.autoincrement,
            )
            assert type(_plain(mine.type)) is type(_plain(model.type))
            assert getattr(mine.type, "length", None) == getattr(model.type, "length", None)
            assert (mine.default is None) == (model.default is None)
            if mine.default is not None:
                assert mine.default.arg == model.default.arg  # type: ignore[union-attr]


def test_a_running_engine_does_not_import_sqlmodel() -> None:
    """The point of the mirror: the store, the engine and the worker command load without
    SQLModel, pydantic and the ORM."""
    code = (
        "import sys; import mcp_server.cli, engine.engine, engine.sql_store; "
        "print(sorted(m for m in ('sqlmodel', 'pydantic', 'sqlalchemy.orm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
