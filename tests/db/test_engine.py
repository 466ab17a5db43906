"""The SQLite connection settings and write units really are what the engine promises."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event, select, text

from db.engine import get_engine, read_unit, write_unit
from db.models import Project
from db.projects import create_project


def test_sqlite_pragmas(settings):
    with read_unit(settings) as session:
        pragma = lambda name: session.execute(text(f"PRAGMA {name}")).scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("synchronous") == 2  # FULL
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") == settings.sqlite_busy_timeout_ms


def test_write_unit_begins_immediate_and_read_unit_deferred(settings):
    seen: list[str] = []
    engine = get_engine(settings)

    def record(conn, cursor, statement, *args):
        if statement.startswith("BEGIN"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        with write_unit(settings) as session:
            create_project(session, "p")
        with read_unit(settings) as session:
            session.execute(select(Project.id)).all()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert seen == ["BEGIN IMMEDIATE", "BEGIN"]


def test_write_unit_rolls_back_everything_on_error(any_settings):
    with pytest.raises(RuntimeError):
        with write_unit(any_settings) as session:
            create_project(session, "half", labels=["a", "b"])
            raise RuntimeError("boom")
    with read_unit(any_settings) as session:
        assert session.scalars(select(Project)).all() == []


def test_foreign_keys_enforced(any_settings):
    from sqlalchemy.exc import IntegrityError

    from db.models import Label

    with pytest.raises(IntegrityError):
        with write_unit(any_settings) as session:
            session.add(Label(project_id=999, name="x", position=0))


def test_concurrent_writers_serialise_without_lost_updates(settings):
    """Eight threads each add labels in read-modify-write units: none is lost or duplicated."""
    with write_unit(settings) as session:
        create_project(session, "p")
    from db.projects import add_labels, get_project

    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(10):
                with write_unit(settings) as session:
                    project = get_project(session, "p")
                    add_labels(session, project.id, [f"l{i}-{j}"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with read_unit(settings) as session:
        labels = get_project(session, "p").labels
    assert len(labels) == 80 and len(set(labels)) == 80


def _annotate_one(settings) -> None:
    from sqlalchemy import insert as sql_insert

    from db.annotations import annotate
    from db.models import Example
    from db.texts import text_hash

    with write_unit(settings) as session:
        project = create_project(session, "p", labels=["a"])
        session.execute(sql_insert(Example), [{"project_id": project.id, "text": "t",
                                               "text_hash": text_hash("t")}])
    annotate(settings, "p", 1, "ann", "a")


def _integrity(settings) -> str:
    import sqlite3

    from db.engine import sqlite_path

    db = sqlite3.connect(sqlite_path(settings.database_url))
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def test_read_only_database_is_a_clear_error_and_nothing_breaks(settings):
    from dataclasses import replace

    from db.annotations import annotate
    from db.engine import dispose_all
    from db.errors import StorageError

    _annotate_one(settings)
    dispose_all()
    path = settings.database_url.removeprefix("sqlite:///")
    read_only = replace(settings, database_url=f"sqlite:///file:{path}?mode=ro&uri=true")
    with pytest.raises(StorageError, match="Nothing was saved: the database is read-only"):
        annotate(read_only, "p", 1, "bob", "a")
    dispose_all()
    assert _integrity(settings) == "ok"
    annotate(settings, "p", 1, "bob", "a")  # writable again: works


def test_full_disk_is_a_clear_error_and_nothing_is_half_written(settings):
    from db.errors import StorageError
    from db.importing import import_file

    _annotate_one(settings)
    with read_unit(settings) as session:
        pages = session.execute(text("PRAGMA page_count")).scalar()
    engine = get_engine(settings)

    @event.listens_for(engine, "connect")
    def cap(dbapi_connection, _record):  # the "disk" holds one more page than now
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages + 1}")

    engine.dispose()
    import tempfile
    from pathlib import Path

    big = Path(tempfile.mkdtemp()) / "big.txt"
    big.write_text("\n".join(f"a long enough line of text number {i} " * 20 for i in range(2000)))
    with pytest.raises(StorageError, match="full"):
        import_file(settings, big, "p")
    event.remove(engine, "connect", cap)
    engine.dispose()
    assert _integrity(settings) == "ok"
    from db.projects import project_stats

    with read_unit(settings) as session:
        assert project_stats(session, "p").examples == 1  # the import left nothing behind


def test_a_background_checkpoint_retries_while_another_one_runs(monkeypatch) -> None:
    """SQLite turns a checkpoint away ("busy") while another runs; the import's pages must
    still be copied, not left to the next annotator's commit."""
    import db.engine as engine

    answers = iter([(1, -1, -1), (1, -1, -1), (0, 40, 40)])
    calls: list[str] = []

    class Conn:
        def execute(self, sql: str):
            calls.append(sql)
            row = next(answers)
            return type("Cursor", (), {"fetchone": lambda self: row})()

    monkeypatch.setattr(engine, "_CHECKPOINT_RETRY_S", 0.0)
    engine._checkpoint_until_done(Conn())
    assert calls == ["PRAGMA wal_checkpoint(PASSIVE)"] * 3
