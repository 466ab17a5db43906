"""Training workers as rows: which are running, and what each found when it warmed up.

A worker writes its row when it starts and again every few seconds (``report_worker``), and
deletes it when it stops. The web app reads the rows seen lately (``live_workers``) to tell a
lead whether a round they ask for will run, and on what.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from db.engine import read_unit, write_unit
from db.models import Worker, utcnow
from db.settings import Settings

LIVE_WITHIN_S = 30.0
"""A worker seen this recently counts as running (it reports every few seconds)."""
FORGET_AFTER_S = 3600.0
"""A row not seen for this long (its worker died) is deleted when a worker starts."""

READY_FIELDS = ("device", "device_name", "precision", "warmup_s", "problem")
"""What a worker reports once warmed up (see ``report_worker``)."""


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    started_at: datetime
    seen_at: datetime
    ready_at: datetime | None
    device: str | None
    device_name: str | None
    precision: str | None
    warmup_s: float | None
    problem: str | None


def register_worker(settings: Settings, worker_id: str) -> None:
    """A starting worker's row (replacing one of the same id), and stale rows forgotten."""
    now = utcnow()
    with write_unit(settings) as session:
        session.execute(delete(Worker).where(
            (Worker.seen_at < now - timedelta(seconds=FORGET_AFTER_S)) | (Worker.id == worker_id)))
        session.add(Worker(id=worker_id, started_at=now, seen_at=now))


def report_worker(settings: Settings, worker_id: str, **ready: Any) -> None:
    """Mark a worker seen now, with what its warm-up found where given (``READY_FIELDS``; the
    first time they are given, the worker counts as ready from now).

    A row that is gone (deleted as stale while its worker was suspended) is written again.
    """
    unknown = set(ready) - set(READY_FIELDS)
    if unknown:
        raise ValueError(f"Unknown worker fields: {', '.join(sorted(unknown))}")
    now = utcnow()
    with write_unit(settings) as session:
        row = session.get(Worker, worker_id)
        if row is None:
            row = Worker(id=worker_id, started_at=now)
            session.add(row)
        row.seen_at = now
        if ready and row.ready_at is None:
            row.ready_at = now
        for name, value in ready.items():
            setattr(row, name, value)


def unregister_worker(settings: Settings, worker_id: str) -> None:
    with write_unit(settings) as session:
        session.execute(delete(Worker).where(Worker.id == worker_id))


def live_workers(settings: Settings, now: datetime | None = None,
                 within_s: float = LIVE_WITHIN_S) -> list[WorkerInfo]:
    """The workers seen in the last ``within_s`` seconds, oldest first."""
    cutoff = (now or utcnow()) - timedelta(seconds=within_s)
    with read_unit(settings) as session:
        rows = session.scalars(select(Worker).where(Worker.seen_at >= cutoff)
                               .order_by(Worker.started_at, Worker.id))
        return [WorkerInfo(id=r.id, started_at=r.started_at, seen_at=r.seen_at,
                           ready_at=r.ready_at, device=r.device, device_name=r.device_name,
                           precision=r.precision, warmup_s=r.warmup_s, problem=r.problem)
                for r in rows]
