"""Apply Alembic migrations, backing a SQLite file up first (online backup API)."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from db.engine import create_db_engine, sqlite_path
from db.errors import MigrationFailed
from db.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["url"] = url
    return config


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(url: str) -> str | None:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def backup_sqlite(db_file: Path, dest_dir: Path, tag: str = "") -> Path:
    """Copy a live SQLite database with the online backup API; returns the copy's path."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    dest = dest_dir / f"{db_file.stem}-{stamp}{'-' + tag if tag else ''}.db"
    src = sqlite3.connect(str(db_file))
    try:
        dst = sqlite3.connect(str(dest))
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    return dest


def _has_tables(db_file: Path) -> bool:
    if not db_file.exists():
        return False
    conn = sqlite3.connect(str(db_file))
    try:
        return conn.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0] > 0
    finally:
        conn.close()


def upgrade(settings: Settings | None = None, revision: str = "head") -> Path | None:
    """Bring the database to ``revision``; returns the backup taken first, if any.

    A SQLite file that already holds tables is backed up before any pending migration runs.
    """
    settings = settings or get_settings()
    url = settings.database_url
    current = current_revision(url)
    if current == head_revision() and revision == "head":
        return None
    backup = None
    db_file = sqlite_path(url)
    if db_file is not None and _has_tables(db_file):
        backup = backup_sqlite(db_file, settings.backups_dir, tag=f"before-{revision}")
    try:
        command.upgrade(alembic_config(url), revision)
    except Exception as exc:  # noqa: BLE001 - any failure is reported with the backup's path
        where = f" The database was backed up first to {backup}." if backup else ""
        raise MigrationFailed(f"Migration to {revision} failed: {exc}.{where}") from exc
    return backup


def downgrade(settings: Settings, revision: str) -> None:
    command.downgrade(alembic_config(settings.database_url), revision)
