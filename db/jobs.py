"""What training runs and prediction jobs share: rows that are queued, then running with a
heartbeat, then done, failed or cancelled (`RunStatus`)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

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


def fail_silent(settings: Settings, table: JobTable, max_silence_s: float, then: str
                ) -> list[tuple[int, int]]:
    """Mark running rows whose heartbeat stopped over ``max_silence_s`` ago (their worker died)
    as failed, saying so and then ``then``; returns their ``(id, project_id)``."""
    cutoff = utcnow() - timedelta(seconds=max_silence_s)
    with write_unit(settings) as session:
        rows = [tuple(row) for row in session.execute(
            select(table.id, table.project_id).where(
                table.status == RunStatus.RUNNING.value, table.heartbeat_at < cutoff))]
        if rows:
            session.execute(
                update(table).where(table.id.in_([job_id for job_id, _ in rows])).values(
                    status=RunStatus.FAILED.value, finished_at=utcnow(),
                    error=f"The worker stopped answering (no heartbeat for {max_silence_s:.0f} "
                    f"s); {then}"))
        return rows  # type: ignore[return-value]
