"""Workers' rows: registered, seen, ready, stale, gone; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from db.engine import read_unit, write_unit
from db.models import Worker, utcnow
from db.workers import (
    FORGET_AFTER_S,
    LIVE_WITHIN_S,
    live_workers,
    register_worker,
    report_worker,
    unregister_worker,
)


def _age(settings, worker_id: str, seconds: float) -> None:
    with write_unit(settings) as session:
        session.execute(update(Worker).where(Worker.id == worker_id)
                        .values(seen_at=utcnow() - timedelta(seconds=seconds)))


def _rows(settings) -> int:
    with read_unit(settings) as session:
        return session.scalar(select(func.count()).select_from(Worker))


def test_a_worker_is_live_from_registration_ready_once_it_reports_and_gone_when_it_stops(any_settings):
    register_worker(any_settings, "host:1")
    (worker,) = live_workers(any_settings)
    assert worker.id == "host:1" and worker.ready_at is None and worker.device is None

    report_worker(any_settings, "host:1")  # a heartbeat before the warm-up is done
    assert live_workers(any_settings)[0].ready_at is None
    report_worker(any_settings, "host:1", device="cpu", device_name="Some CPU, 2 logical cores",
                  precision="fp32", warmup_s=4.5, problem=None)
    ready = live_workers(any_settings)[0]
    assert (ready.device, ready.device_name, ready.precision, ready.warmup_s, ready.problem) == (
        "cpu", "Some CPU, 2 logical cores", "fp32", 4.5, None)
    assert ready.ready_at is not None and ready.seen_at >= ready.ready_at >= ready.started_at

    report_worker(any_settings, "host:1", device="cpu", warmup_s=4.5)  # later heartbeats
    assert live_workers(any_settings)[0].ready_at == ready.ready_at  # ready from the first time

    unregister_worker(any_settings, "host:1")
    assert live_workers(any_settings) == [] and _rows(any_settings) == 0


def test_silent_workers_are_not_live_and_long_silent_rows_are_forgotten(any_settings):
    for worker_id in ("a:1", "b:2", "c:3"):
        register_worker(any_settings, worker_id)
    _age(any_settings, "a:1", LIVE_WITHIN_S + 5)  # died a moment ago
    _age(any_settings, "b:2", FORGET_AFTER_S + 5)  # died long ago
    assert [w.id for w in live_workers(any_settings)] == ["c:3"]
    assert _rows(any_settings) == 3

    register_worker(any_settings, "d:4")  # a worker starting forgets the long-dead
    with read_unit(any_settings) as session:
        assert sorted(session.scalars(select(Worker.id))) == ["a:1", "c:3", "d:4"]

    report_worker(any_settings, "a:1")  # it was only suspended: seen again, live again
    assert [w.id for w in live_workers(any_settings)] == ["a:1", "c:3", "d:4"]


def test_a_report_writes_a_forgotten_row_again_and_a_restart_replaces_its_row(any_settings):
    report_worker(any_settings, "host:1", device="cuda", precision="bf16")  # no row yet
    (worker,) = live_workers(any_settings)
    assert worker.device == "cuda" and worker.ready_at is not None

    register_worker(any_settings, "host:1")  # the same id starting again starts afresh
    (worker,) = live_workers(any_settings)
    assert worker.device is None and worker.ready_at is None


def test_unknown_fields_are_refused(settings):
    with pytest.raises(ValueError, match="colour"):
        report_worker(settings, "host:1", colour="red")
    assert _rows(settings) == 0
