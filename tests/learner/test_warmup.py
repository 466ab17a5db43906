"""The worker's warm-up and its row: seen while it runs, rounds only once warm, gone when stopped."""

from __future__ import annotations

import threading
import time

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
