"""The worker's warm-up and its row: seen while it runs, rounds only once warm, gone when stopped."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from db.engine import read_unit
from db.models import Worker
from db.queue import queue_remaining
from db.runs import get_run, request_training
from db.workers import live_workers
from learner.device import resolve_precision
from learner.model import TransformerClassifier
from learner.warmup import warm_up
from learner.worker import WorkerOptions, run_worker
from tests.learner.test_rounds_worker import label, make_project


def _until(condition, timeout: float = 120.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_warm_up_trains_each_model_once_and_names_the_one_that_cannot_be_loaded(
        tiny_model_dir, tmp_path, monkeypatch):
    tried, fit = [], TransformerClassifier.fit

    def counting_fit(self, *args, **kwargs):
        tried.append(self.model_path)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(TransformerClassifier, "fit", counting_fit)
    missing = str(tmp_path / "missing")
    report = warm_up([str(tiny_model_dir), missing, str(tiny_model_dir)])
    assert tried == [str(tiny_model_dir), missing]  # each model once
    assert report.device == "cpu" and report.precision == resolve_precision("auto", "cpu")
    assert report.device_name.endswith("logical cores") and report.seconds > 0
    assert report.problem.startswith(f"{missing}: ") and "\n" not in report.problem

    assert warm_up([str(tiny_model_dir)]).problem is None


def _queued(settings, project_id: int) -> int:
    with read_unit(settings) as session:
        return queue_remaining(session, project_id)


def _start(settings, **options) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=run_worker, kwargs={
        "settings": settings, "stop": stop,
        "options": WorkerOptions(poll_s=0.05, heartbeat_s=0.1, **options)})
    thread.start()
    return stop, thread


def test_the_worker_is_seen_while_it_warms_up_and_claims_rounds_only_once_warm(
        settings, tiny_model_dir, monkeypatch):
    project_id, rows = make_project(settings, tiny_model_dir, retrain_every=0)
    label(settings, project_id, rows, 12)
    gate, asked = threading.Event(), []

    def held_warm_up(specs):
        asked.append(list(specs))
        assert gate.wait(60)
        return warm_up(specs)

    monkeypatch.setattr("learner.warmup.warm_up", held_warm_up)
    stop, thread = _start(settings)
    try:
        (worker,) = _until(lambda: live_workers(settings), what="the worker's row")
        assert worker.ready_at is None  # warming up
        _until(lambda: _queued(settings, project_id), what="a cold-start queue")  # meanwhile
        run = request_training(settings, project_id)
        time.sleep(0.5)  # ten passes of the loop
        assert get_run(settings, run.id).status == "queued"  # not claimed while warming up

        gate.set()
        _until(lambda: get_run(settings, run.id).status == "done", what="the round")
        (worker,) = live_workers(settings)
        assert (worker.device, worker.precision, worker.problem) == (
            "cpu", resolve_precision("auto", "cpu"), None)
        assert worker.ready_at is not None and worker.warmup_s > 0
        assert asked == [[str(tiny_model_dir)]]  # the project's model
    finally:
        gate.set()
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    with read_unit(settings) as session:
        assert session.scalar(select(func.count()).select_from(Worker)) == 0  # gone on stop


def test_a_failed_warm_up_is_said_on_the_row_and_rounds_still_run(settings, tiny_model_dir,
                                                                  monkeypatch):
    project_id, rows = make_project(settings, tiny_model_dir, retrain_every=0)
    label(settings, project_id, rows, 12)

    def broken(specs):
        raise RuntimeError("no device today")

    monkeypatch.setattr("learner.warmup.warm_up", broken)
    run = request_training(settings, project_id)
    stop, thread = _start(settings)
    try:
        _until(lambda: get_run(settings, run.id).status == "done", what="the round")
        (worker,) = live_workers(settings)
        assert worker.problem == "The warm-up failed: RuntimeError: no device today"
        assert worker.ready_at is not None and worker.device is None
    finally:
        stop.set()
        thread.join(60)


@pytest.mark.slow
def test_a_worker_stopped_with_sigterm_during_its_warm_up_exits_cleanly(settings):
    """`docker stop` or `kill` while the worker warms up: the interpreter's teardown met torch
    mid-operation in the warm-up thread and aborted ("terminate called without an active
    exception", SIGTERM 8 and 12 s after the start on a 2-core host) or hung past 30 s (a CI
    run). Stopped at several points of the warm-up, it exits with 0 and leaves no row."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    # no project: the warm-up loads the default model (MiniLM-L6), long enough to be caught
    env = {**os.environ, "DATABASE_URL": settings.database_url,
           "LABELWISE_DATA_DIR": str(settings.data_dir)}
    root = Path(__file__).resolve().parents[2]
    for delay in (3.0, 6.0, 9.0, 12.0):
        worker = subprocess.Popen([sys.executable, "-m", "app", "worker", "--poll", "0.2"],
                                  cwd=root, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        worker.send_signal(signal.SIGTERM)
        try:
            _, err = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            raise AssertionError(f"SIGTERM {delay} s after the start: still running 30 s later")
        assert worker.returncode == 0, (delay, worker.returncode, err[-2000:])
        assert "terminate called" not in err
    with read_unit(settings) as session:
        assert session.scalar(select(func.count()).select_from(Worker)) == 0
