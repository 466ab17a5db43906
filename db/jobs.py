"""What training runs and prediction jobs share: rows that are queued, then running with a
heartbeat, then done, failed or cancelled (`RunStatus`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.engine import write_unit
from db.models import PredictionJob, RunStatus, TrainingRun, utcnow
from db.settings import Settings
from db.users import require_admin

ACTIVE = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)

JobTable = type[TrainingRun] | type[PredictionJob]


def cancel(settings: Settings, table: JobTable, job_id: int, actor: str | None = None) -> bool:
    """Cancel a queued or running row; a running one's worker stops when its heartbeat sees it.

    ``actor``, when given (the web app), must be an active admin.
    """
    if actor is not None:
        require_admin(settings, actor)
    with write_unit(settings) as session:
        result = session.execute(
            update(table)
            .where(table.id == job_id, table.status.in_(ACTIVE))
            .values(status=RunStatus.CANCELLED.value, finished_at=utcnow())
        )
        return bool(result.rowcount)


def fail_silent(settings: Settings, table: JobTable, max_silence_s: float,
                then: str | Callable[[Session, Any], str]) -> list[tuple[int, int]]:
    """Mark running rows whose heartbeat stopped over ``max_silence_s`` ago (their worker died)
    as failed, saying so and then ``then``; returns their ``(id, project_id)``.

    ``then`` is the same words for every row, or a function of the write unit's session and
    the row, which may add rows in the same unit (a job queued again) and returns the words.
    """
    cutoff = utcnow() - timedelta(seconds=max_silence_s)
    with write_unit(settings) as session:
        rows = session.scalars(select(table).where(
            table.status == RunStatus.RUNNING.value, table.heartbeat_at < cutoff)
            .order_by(table.id)).all()
        now = utcnow()
        for row in rows:
            row.status, row.finished_at = RunStatus.FAILED.value, now
            row.error = (f"The worker stopped answering (no heartbeat for {max_silence_s:.0f} "
                         f"s); {then if isinstance(then, str) else then(session, row)}")
        session.flush()
        return [(row.id, row.project_id) for row in rows]
