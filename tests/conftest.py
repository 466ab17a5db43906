"""Shared fixtures: a migrated database per test, on SQLite and (where a server is given) PostgreSQL.

PostgreSQL tests need ``TEST_POSTGRES_URL`` (an account that may create databases), which
``.ci/run`` sets after starting a server on loopback. Without it they skip and say why; with
``LABELWISE_REQUIRE_POSTGRES=1`` (CI) a missing server fails instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from db.engine import dispose_all
from db.migrate import upgrade
from db.settings import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _postgres_admin_url() -> str:
    url = os.environ.get("TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("LABELWISE_REQUIRE_POSTGRES") == "1":
            pytest.fail("LABELWISE_REQUIRE_POSTGRES=1 but TEST_POSTGRES_URL is not set")
        pytest.skip("PostgreSQL tests need TEST_POSTGRES_URL (set by .ci/run); not set here")
    return url


def sqlite_settings(tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    return Settings(database_url=f"sqlite:///{data / 'labelwise.db'}", data_dir=data)


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    """A migrated SQLite database in a temporary folder."""
    s = sqlite_settings(tmp_path)
    upgrade(s)
    yield s
    dispose_all()


@pytest.fixture
def pg_settings(tmp_path: Path) -> Iterator[Settings]:
    """A migrated, fresh PostgreSQL database, dropped afterwards."""
    admin_url = _postgres_admin_url()
    name = f"lw_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    s = Settings(database_url=url, data_dir=tmp_path / "data")
    try:
        upgrade(s)
        yield s
    finally:
        dispose_all()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_settings(request: pytest.FixtureRequest) -> Settings:
    """The same test on SQLite and on PostgreSQL."""
    return request.getfixturevalue("settings" if request.param == "sqlite" else "pg_settings")
