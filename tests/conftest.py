"""Shared fixtures: a migrated database per test, on SQLite and (where a server is given) PostgreSQL.

PostgreSQL tests need ``TEST_POSTGRES_URL`` (an account that may create databases), which
``.ci/run`` sets after starting a server on loopback. Without it they skip and say why; with
``LABELWISE_REQUIRE_POSTGRES=1`` (CI) a missing server fails instead of skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from db.engine import dispose_all, throwaway_database
from db.migrate import upgrade
from db.settings import Settings
from tests.tiny_bert import build_tiny_bert

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
    with throwaway_database(_postgres_admin_url(), "lw_test") as url:
        s = Settings(database_url=url, data_dir=tmp_path / "data")
        upgrade(s)
        yield s


@pytest.fixture(params=["sqlite", "postgresql"])
def any_settings(request: pytest.FixtureRequest) -> Settings:
    """The same test on SQLite and on PostgreSQL."""
    return request.getfixturevalue("settings" if request.param == "sqlite" else "pg_settings")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local checkpoint of a tiny random BERT with its tokenizer, built once per session."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))
