"""One engine and one session factory per database URL.

SQLite gets WAL, ``synchronous=FULL``, foreign keys and a busy timeout on every connection,
and SQLAlchemy's documented recipe for pysqlite so that transactions are really begun by us:
write units start with ``BEGIN IMMEDIATE`` (they take the write lock up front and so never fail
half-way on a lock upgrade), read units with a plain ``BEGIN``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from db.errors import LabelwiseError, StorageError
from db.settings import Settings, get_settings

_IMMEDIATE = "labelwise_immediate"
_lock = threading.Lock()
_factories: dict[str, sessionmaker[Session]] = {}
_checkpoints: list[threading.Thread] = []
_WAL_KEEP_BYTES = 64 * 1024 * 1024


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for other backends and in-memory databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def create_db_engine(url: str, busy_timeout_ms: int = 10_000, **kwargs: Any) -> Engine:
    """Build an engine with the Labelwise connection settings (use `get_engine` to share one)."""
    if not is_sqlite(url):
        return create_engine(url, pool_pre_ping=True, **kwargs)
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would otherwise defer it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        # Takes effect only while the file is still empty: news-length texts pack better.
        cursor.execute("PRAGMA page_size = 16384")
        if path is not None:
            cursor.execute("PRAGMA journal_mode = WAL")
            # Once checkpointed, a log grown by a large import shrinks back to this size.
            cursor.execute(f"PRAGMA journal_size_limit = {_WAL_KEEP_BYTES}")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def session_factory(settings: Settings | None = None) -> sessionmaker[Session]:
    """The process-wide session factory for the settings' database (created once per URL)."""
    settings = settings or get_settings()
    url = settings.database_url
    with _lock:
        factory = _factories.get(url)
        if factory is None:
            engine = create_db_engine(url, settings.sqlite_busy_timeout_ms)
            factory = sessionmaker(bind=engine, expire_on_commit=False)
            _factories[url] = factory
        return factory


def get_engine(settings: Settings | None = None) -> Engine:
    bind = session_factory(settings).kw["bind"]
    assert isinstance(bind, Engine)
    return bind


def dialect_insert(session: Session, table: Any) -> Any:
    """The session's dialect's INSERT construct, which knows ``ON CONFLICT`` (upserts)."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise LabelwiseError(f"Unsupported database backend {dialect!r} (SQLite or PostgreSQL).")


def dispose_all() -> None:
    """Close every pooled connection (tests, and before copying a database file), once the
    background checkpoints have finished."""
    wait_for_checkpoints()
    with _lock:
        for factory in _factories.values():
            factory.kw["bind"].dispose()
        _factories.clear()


@contextmanager
def write_unit(settings: Settings | None = None) -> Iterator[Session]:
    """A short write transaction: ``BEGIN IMMEDIATE`` on SQLite, committed on success.

    Everything done in the block is committed together or, on any exception, not at all.
    """
    factory = session_factory(settings)
    with _storage_errors(), factory() as session, session.begin():
        session.connection(execution_options={_IMMEDIATE: True})
        yield session


@contextmanager
def _storage_errors() -> Iterator[None]:
    """The database's refusals (read-only, disk full, locked too long) as `StorageError`."""
    try:
        yield
    except (OperationalError, sqlite3.OperationalError) as exc:  # the latter: raw driver calls
        raise StorageError(_storage_message(exc)) from exc


@contextmanager
def bulk_write_unit(settings: Settings | None = None, cache_kib: int | None = None) -> Iterator[Session]:
    """A `write_unit` for one large write (an import), whose commit does not wait for the
    SQLite checkpoint.

    In WAL mode every committed page is written twice: to the write-ahead log at the commit
    (which makes it durable), then into the database file by a checkpoint, which SQLite runs
    in the committing call once the log is long. For a million imported texts that second
    copy takes as long as a fifth of the import. Here the unit's connection skips it, and a
    background thread checkpoints once the unit has committed, ``PASSIVE``: it blocks neither
    readers nor writers (their own automatic checkpoints skip while it runs).
    `wait_for_checkpoints` waits for it. With ``cache_kib``, the connection's page cache is
    that large for the unit (it is allocated only as used). On PostgreSQL this is `write_unit`.
    """
    settings = settings or get_settings()
    path = sqlite_path(settings.database_url)
    if path is None:
        with write_unit(settings) as session:
            yield session
        return
    unit = {"wal_autocheckpoint": 0} | ({"cache_size": -int(cache_kib)} if cache_kib else {})
    with _storage_errors(), get_engine(settings).connect() as conn:
        raw = conn.connection.driver_connection  # outside SQLAlchemy: no autobegin
        assert raw is not None
        before = {name: raw.execute(f"PRAGMA {name}").fetchone()[0] for name in unit}
        _set_pragmas(raw, unit)
        try:
            conn.execution_options(**{_IMMEDIATE: True})
            with Session(bind=conn, expire_on_commit=False) as session, session.begin():
                yield session
        finally:
            try:
                _set_pragmas(raw, before)
            except sqlite3.Error:  # never hide the unit's own error, nor pool this connection
                conn.invalidate()
    _checkpoint_in_background(path, settings.sqlite_busy_timeout_ms)


def _set_pragmas(raw: sqlite3.Connection, values: dict[str, int]) -> None:
    for name, value in values.items():
        raw.execute(f"PRAGMA {name} = {int(value)}")


def _checkpoint_in_background(path: Path, busy_timeout_ms: int) -> None:
    def checkpoint() -> None:
        with suppress(sqlite3.Error):  # a checkpoint left undone is done by a later one
            conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None)
            try:
                _checkpoint_until_done(conn)
            finally:
                conn.close()

    thread = threading.Thread(target=checkpoint, name=f"checkpoint {path.name}", daemon=True)
    with _lock:
        _checkpoints[:] = [t for t in _checkpoints if t.is_alive()] + [thread]
    thread.start()


_CHECKPOINT_RETRY_S = 0.5
_CHECKPOINT_TRIES = 1200


def _checkpoint_until_done(conn: sqlite3.Connection) -> None:
    """One ``PASSIVE`` checkpoint that was not turned away, retrying while another runs.

    Another checkpoint (an earlier import's) makes SQLite answer "busy" without copying the
    newer pages; left alone, they would be checkpointed by the next commit that finds the log
    long: an annotator's label, which would then wait for the whole copy.
    """
    for _ in range(_CHECKPOINT_TRIES):
        busy = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0]
        if not busy:
            return
        time.sleep(_CHECKPOINT_RETRY_S)


def wait_for_checkpoints() -> None:
    """Wait until the checkpoints `bulk_write_unit` started have finished."""
    with _lock:
        running = list(_checkpoints)
    for thread in running:
        thread.join()


def _storage_message(exc: Exception) -> str:
    cause = str(getattr(exc, "orig", exc)).strip()
    lowered = cause.lower()
    if "readonly" in lowered or "read-only" in lowered:
        why = "the database is read-only"
    elif "full" in lowered:
        why = "the disk (or the database's size limit) is full"
    elif "locked" in lowered or "busy" in lowered:
        why = "the database stayed busy too long; try again"
    else:
        why = cause
    return f"Nothing was saved: {why}."


@contextmanager
def read_unit(settings: Settings | None = None) -> Iterator[Session]:
    """A read-only unit: one consistent snapshot, rolled back at the end."""
    factory = session_factory(settings)
    with factory() as session:
        try:
            yield session
        finally:
            session.rollback()


@contextmanager
def throwaway_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A fresh, empty database ``<prefix>_<random>`` on a PostgreSQL server; yields its URL.

    ``admin_url`` is an account that may create databases. The database is dropped afterwards
    (forcing other sessions off it), also when the block raises; every pooled engine is
    disposed first.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            dispose_all()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
