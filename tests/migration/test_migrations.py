"""Migrations create exactly the declared schema, and upgrading keeps every row."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from engine import migrate
from engine.records import Run
from engine.schema import metadata
from engine.sql_store import SqlStore


def test_migrations_produce_the_declared_schema(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'm.db'}")
    store.migrate()
    with store.sa_engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    store.close()
    assert differences == []


def test_upgrade_on_start_keeps_data_and_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = SqlStore(url)
    migrate.upgrade(old.sa_engine, "0001")  # the first released schema
    old.create_runs([Run("run_1", "s", 1, "invoke", "completed", {"name": "e"}, 1.0, 1.0, output=[1, 2])])
    old.close()

    current = SqlStore(url)
    current.migrate()
    current.migrate()
    assert migrate.current_revision(current.sa_engine) == migrate.head_revision()
    assert current.get_run("run_1").output == [1, 2]
    current.close()
