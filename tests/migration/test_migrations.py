"""Migrations create exactly the declared schema, and upgrading keeps every row, on both backends."""

from __future__ import annotations

import threading

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from engine import migrate
from engine.records import Run
from engine.schema import metadata
from engine.sql_store import SqlStore


def test_migrations_produce_the_declared_schema(shared_db_url: str) -> None:
    store = SqlStore(shared_db_url)
    store.migrate()
    with store.sa_engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    store.close()
    assert differences == []


def test_upgrade_on_start_keeps_data_and_is_idempotent(shared_db_url: str) -> None:
    old = SqlStore(shared_db_url)
    migrate.upgrade(old.sa_engine, "0001")  # the first released schema
    old.create_runs([Run("run_1", "s", 1, "invoke", "completed", {"name": "e"}, 1.0, 1.0, output=[1, 2])])
    old.close()

    current = SqlStore(shared_db_url)
    current.migrate()
    current.migrate()
    assert migrate.current_revision(current.sa_engine) == migrate.head_revision()
    assert current.get_run("run_1").output == [1, 2]
    current.close()


def test_the_fast_path_head_is_alembics_head() -> None:
    assert migrate.head_revision() == migrate.HEAD  # a new migration must move HEAD too


def test_processes_starting_together_on_a_new_database_migrate_in_turn(shared_db_url: str) -> None:
    stores = [SqlStore(shared_db_url) for _ in range(3)]
    barrier, failures = threading.Barrier(len(stores)), []

    def start(store: SqlStore) -> None:
        barrier.wait()
        try:
            store.migrate()
        except Exception as exc:  # the failure this test exists to catch
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert migrate.current_revision(stores[0].sa_engine) == migrate.HEAD
    for store in stores:
        store.close()
