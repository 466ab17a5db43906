"""Two worker processes against one PostgreSQL server: atomic claims, one round per project at
a time, and a dead worker's round taken over."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from db.engine import write_unit
from db.models import RunStatus, TrainingRun, utcnow
from db.runs import claim_next_run, list_runs, request_training
from tests.learner.test_rounds_worker import label, make_project

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_two_workers_share_rounds_and_take_over_a_dead_one(pg_settings, tiny_model_dir):
    settings = pg_settings
    first, rows = make_project(settings, tiny_model_dir, retrain_every=0)
    label(settings, first, rows, 12)
    # a round whose worker died: running, heartbeat long silent
    dead = request_training(settings, first)
    claim_next_run(settings, "dead-worker:1")
    with write_unit(settings) as session:
        session.execute(update(TrainingRun).where(TrainingRun.id == dead.id)
                        .values(heartbeat_at=utcnow() - timedelta(minutes=10)))
    env = {**os.environ, "DATABASE_URL": settings.database_url,
           "LABELWISE_DATA_DIR": str(settings.data_dir), "PYTHONPATH": str(ROOT)}
    workers = [subprocess.Popen(
        [sys.executable, "-m", "app", "worker", "--poll", "0.2", "--heartbeat", "0.5",
         "--stale-after", "30"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            runs = list_runs(settings, first)
            if any(r.status == "done" for r in runs):
                break
            time.sleep(0.3)
        # while one worker may be busy, ask again: requests coalesce, rounds never overlap
        for _ in range(3):
            request_training(settings, first)
        while time.monotonic() < deadline:
            runs = list_runs(settings, first)
            if all(r.status not in ("queued", "running") for r in runs):
                break
            time.sleep(0.3)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=30)
    runs = sorted(list_runs(settings, first), key=lambda r: r.id)
    assert runs[0].id == dead.id and runs[0].status == RunStatus.FAILED.value
    assert runs[1].trigger == "takeover" and runs[1].status == "done"
    assert all(r.status == "done" for r in runs[1:]) and 2 <= len(runs) - 1 <= 3
    done = runs[1:]
    for earlier, later in zip(done, done[1:]):  # one round at a time per project
        assert later.started_at >= earlier.finished_at
