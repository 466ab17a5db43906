"""Migrations: empty to head, head matches the models, down and up again, backups first."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from alembic import command
from sqlalchemy import inspect

from db.engine import create_db_engine, dispose_all, sqlite_path, write_unit
from db.errors import MigrationFailed
from db.migrate import (
    alembic_config,
    backup_sqlite,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from db.models import Base
from db.projects import create_project
from tests.conftest import sqlite_settings


def _tables(url: str) -> set[str]:
    engine = create_db_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_empty_to_head_creates_every_table(tmp_path):
    s = sqlite_settings(tmp_path)
    assert upgrade(s) is None  # nothing to back up on an empty database
    assert current_revision(s.database_url) == head_revision()
    assert set(Base.metadata.tables) <= _tables(s.database_url)


def test_head_matches_models(any_settings):
    # alembic check raises if autogenerate finds any difference between models and schema.
    command.check(alembic_config(any_settings.database_url))


def test_downgrade_then_upgrade(any_settings):
    downgrade(any_settings, "base")
    assert current_revision(any_settings.database_url) is None
    assert not (set(Base.metadata.tables) & _tables(any_settings.database_url))
    upgrade(any_settings)
    assert current_revision(any_settings.database_url) == head_revision()
    command.check(alembic_config(any_settings.database_url))


def test_pending_migration_backs_up_sqlite_first_and_failure_names_backup(settings):
    """A populated SQLite file is copied before migrating; a failed migration says where."""
    with write_unit(settings) as session:
        create_project(session, "keep me", labels=["a"])
    dispose_all()
    # Forget the revision while the tables stay: the upgrade must back up, then fail cleanly.
    command.stamp(alembic_config(settings.database_url), "base")
    with pytest.raises(MigrationFailed) as info:
        upgrade(settings)
    message = str(info.value)
    assert "backed up first to" in message
    backup = Path(message.split("backed up first to ")[1].rstrip("."))
    assert backup.exists()
    copy = sqlite3.connect(backup)
    assert copy.execute("SELECT name FROM projects").fetchall() == [("keep me",)]
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    copy.close()


def test_backup_of_a_live_database_while_writing(settings):
    with write_unit(settings) as session:
        create_project(session, "p", labels=["a"])
    with write_unit(settings) as session:  # a writer holds the lock: the backup still completes
        create_project(session, "q")
        path = backup_sqlite(sqlite_path(settings.database_url), settings.backups_dir)
    copy = sqlite3.connect(path)
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert copy.execute("SELECT name FROM projects").fetchall() == [("p",)]
    copy.close()


def test_upgrade_of_a_populated_database_keeps_every_row_and_backs_up(tmp_path):
    """Data written under 0001 survives the upgrade to head; the file was copied first."""
    s = sqlite_settings(tmp_path)
    upgrade(s, "0001")
    engine = create_db_engine(s.database_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO projects (id, name, guidelines, settings, created_at) "
                             "VALUES (1, 'p', '', '{}', '2026-01-01 00:00:00')")
        for i in range(1, 51):
            conn.exec_driver_sql(
                "INSERT INTO examples (id, project_id, text, text_hash, created_at) VALUES "
                f"({i}, 1, 'text {i}', 'h{i}', '2026-01-01 00:00:00')")
            conn.exec_driver_sql(
                "INSERT INTO queue_items (project_id, example_id, rank, reason, created_at) VALUES "
                f"(1, {i}, {i}, 'cold_start', '2026-01-01 00:00:00')")
        conn.exec_driver_sql("INSERT INTO labels (id, project_id, name, position) VALUES (1,1,'a',0)")
        conn.exec_driver_sql("INSERT INTO annotators (id, name, role, is_active, created_at) "
                             "VALUES (1, 'ann', 'annotator', 1, '2026-01-01 00:00:00')")
        for i in range(1, 21):
            conn.exec_driver_sql(
                "INSERT INTO annotations (example_id, annotator_id, label_id, created_at, updated_at)"
                f" VALUES ({i}, 1, 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00')")
    engine.dispose()
    backup = upgrade(s)
    assert backup is not None and backup.exists()
    assert current_revision(s.database_url) == head_revision()
    db = sqlite3.connect(sqlite_path(s.database_url))
    assert db.execute("SELECT count(*) FROM examples").fetchone() == (50,)
    assert db.execute("SELECT count(*), min(needed), max(needed) FROM queue_items").fetchone() == (
        50, 1, 1)
    assert db.execute("SELECT count(*) FROM annotations").fetchone() == (20,)
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    db.close()
    copy = sqlite3.connect(backup)
    assert copy.execute("SELECT count(*) FROM examples").fetchone() == (50,)
    copy.close()
