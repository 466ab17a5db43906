"""kill -9 in the middle of submitting: each annotation is entirely there or not at all."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import insert

from db.engine import sqlite_path, write_unit
from db.models import Example
from db.projects import create_project
from db.texts import text_hash

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import sys
from pathlib import Path
from db.annotations import annotate
from db.settings import Settings
settings = Settings(database_url=sys.argv[1], data_dir=Path(sys.argv[2]))
for example_id in range(1, 2001):
    annotate(settings, "p", example_id, "ann", "a" if example_id % 2 else "b", seconds_spent=1.5)
    print(example_id, flush=True)
"""


@pytest.mark.slow
def test_killed_mid_submit_leaves_whole_annotations_only(settings):
    with write_unit(settings) as session:
        project = create_project(session, "p", labels=["a", "b"])
        session.execute(insert(Example), [
            {"project_id": project.id, "text": f"t{i}", "text_hash": text_hash(f"t{i}")}
            for i in range(2000)])
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, settings.database_url, str(settings.data_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    confirmed = []
    deadline = time.monotonic() + 120
    while len(confirmed) < 150 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        confirmed.append(int(line))
    os.kill(child.pid, signal.SIGKILL)  # somewhere inside the next submit
    child.wait(timeout=10)
    confirmed += [int(line) for line in child.stdout.read().split()]
    assert len(confirmed) >= 150

    db = sqlite3.connect(sqlite_path(settings.database_url))
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = db.execute("SELECT example_id, label_id, created_at, updated_at, seconds_spent "
                      "FROM annotations ORDER BY example_id").fetchall()
    db.close()
    stored = [r[0] for r in rows]
    assert stored[: len(confirmed)] == confirmed  # everything confirmed was committed
    assert len(stored) - len(confirmed) <= 1  # at most the one in flight, and then whole
    assert all(None not in (label, created, updated) and spent == 1.5
               for _, label, created, updated, spent in rows)
