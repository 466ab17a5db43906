"""Eight annotator processes label 2,000 texts at once, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert, select

from db.engine import read_unit, write_unit
from db.models import Annotation, Annotator, Example, QueueItem
from db.projects import create_project
from db.queue import QueueEntry, assign_overlap, replace_queue
from db.texts import text_hash

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
N_TEXTS, N_PROCS = 2000, 8


ANNOTATOR = """
import json, sys
from pathlib import Path
from db.annotations import annotate
from db.errors import StorageError
from db.queue import claim_next
from db.settings import Settings

url, data_dir, project_id, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
settings = Settings(database_url=url, data_dir=Path(data_dir), sqlite_busy_timeout_ms=30_000)


def retried(action, *args):  # a refused write is retried, as a person would
    for attempt in range(5):
        try:
            return action(*args)
        except StorageError:
            if attempt == 4:
                raise


done = []
while (item := retried(claim_next, settings, project_id, name)) is not None:
    retried(annotate, settings, project_id, item.example_id, name, "a")
    done.append(item.example_id)
print(json.dumps(done))
"""


def test_many_annotators_never_collide(any_settings):
    with write_unit(any_settings) as session:
        project = create_project(session, "crowd", labels=["a", "b"])
        session.execute(insert(Example), [
            {"project_id": project.id, "text": f"t{i}", "text_hash": text_hash(f"t{i}")}
            for i in range(N_TEXTS)])
    with read_unit(any_settings) as session:
        ids = list(session.scalars(select(Example.id).order_by(Example.id)))
    entries = assign_overlap([QueueEntry(i, "cold_start") for i in ids], 1, 0.1,
                             np.random.default_rng(0))
    with write_unit(any_settings) as session:
        replace_queue(session, project.id, entries)
    needed = {e.example_id: e.needed for e in entries}
    assert 100 < sum(n == 2 for n in needed.values()) < 300

    # Separate interpreters (not multiprocessing: it re-imports __main__, which in a test run
    # can be a Streamlit script that AppTest ran).
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = {f"ann{i}": subprocess.Popen(
        [sys.executable, "-c", ANNOTATOR, any_settings.database_url, str(any_settings.data_dir),
         str(project.id), f"ann{i}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for i in range(N_PROCS)}
    reported = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        reported[name] = json.loads(out)

    with read_unit(any_settings) as session:
        rows = session.execute(select(Annotation.example_id, Annotator.name)
                               .join(Annotator, Annotator.id == Annotation.annotator_id)).all()
        assert session.scalar(select(QueueItem.id).limit(1)) is not None
    per_item = Counter(example_id for example_id, _ in rows)
    assert per_item == Counter(needed)  # every text labelled exactly as often as needed
    for name, done in reported.items():  # what each process submitted is there, once
        assert len(done) == len(set(done))
        assert sorted(e for e, who in rows if who == name) == sorted(done)
    assert sum(len(d) for d in reported.values()) == len(rows)
    assert sum(bool(d) for d in reported.values()) == N_PROCS  # the work was shared
