"""Prediction jobs as rows: the web app asks for a model version's predictions on a project's
texts, a worker writes them to a file (``learner.predicting``), the Export page offers it.

A job is queued, then running (heartbeating, with the texts scored so far), then done,
failed or cancelled, as a training run is; a job whose worker died is failed and queued again
once, as a training run is taken over. A request while the same one (version, texts,
format) is queued or running joins it. Each project keeps the files of its `KEEP_FILES`
latest finished jobs; older files are deleted as a newer one is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.engine import read_unit, write_unit
from db.errors import LabelwiseError
from db.exporting import FORMATS
from db.jobs import ACTIVE, cancel, fail_silent
from db.runs import find_version
from db.models import PredictionJob, RunStatus, utcnow
from db.settings import Settings
from db.users import require_admin

KEEP_FILES = 5
"""Finished prediction files kept per project; older ones are deleted."""


@dataclass(frozen=True)
class PredictionJobInfo:
    id: int
    project_id: int
    model_version: int
    unlabelled_only: bool
    fmt: str
    status: str
    requested_by: str | None
    n_done: int
    n_total: int | None
    n_rows: int | None
    file_path: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None
    retry_of: int | None = None

    @property
    def progress(self) -> float:
        """The share of its texts scored so far (1.0 once done)."""
        if self.status == RunStatus.DONE.value:
            return 1.0
        return min(1.0, self.n_done / self.n_total) if self.n_total else 0.0


def _info(job: PredictionJob) -> PredictionJobInfo:
    return PredictionJobInfo(
        id=job.id, project_id=job.project_id, model_version=job.model_version,
        unlabelled_only=job.unlabelled_only, fmt=job.fmt, status=job.status,
        requested_by=job.requested_by, n_done=job.n_done, n_total=job.n_total,
        n_rows=job.n_rows, file_path=job.file_path, error=job.error,
        created_at=job.created_at, started_at=job.started_at,
        heartbeat_at=job.heartbeat_at, finished_at=job.finished_at, retry_of=job.retry_of,
    )


def prediction_path(settings: Settings, job: PredictionJobInfo) -> Path:
    """Where a job's file is written."""
    return (settings.data_dir / "predictions" / f"project-{job.project_id}"
            / f"predictions-{job.id}-v{job.model_version}.{job.fmt}")


def request_predictions(
    settings: Settings,
    project_id: int,
    model_version: int,
    *,
    unlabelled_only: bool = False,
    fmt: str = "csv",
    actor: str | None = None,
) -> PredictionJobInfo:
    """Queue a prediction job, or return the same one already queued or running.

    ``actor``, when given (the web app), must be an active admin.

    Raises:
        NotFound: no such project, or no such model version of it.
        LabelwiseError: an unknown format.
    """
    if actor is not None:
        require_admin(settings, actor)
    fmt = fmt.lower().lstrip(".")
    if fmt not in FORMATS:
        raise LabelwiseError(f"Unknown format {fmt!r} (formats: {', '.join(FORMATS)}).")
    find_version(settings, project_id, model_version)  # NotFound, naming the versions there are
    with write_unit(settings) as session:
        same = _same_active(session, project_id, model_version, unlabelled_only, fmt)
        if same is None:
            same = PredictionJob(project_id=project_id, model_version=model_version,
                                 unlabelled_only=unlabelled_only, fmt=fmt, requested_by=actor,
                                 n_done=0)
            session.add(same)
            session.flush()
        return _info(same)


def _same_active(session: Session, project_id: int, model_version: int, unlabelled_only: bool,
                 fmt: str) -> PredictionJob | None:
    """A queued or running job that asks for the same file."""
    return session.scalar(
        select(PredictionJob).where(
            PredictionJob.project_id == project_id,
            PredictionJob.status.in_(ACTIVE),
            PredictionJob.model_version == model_version,
            PredictionJob.unlabelled_only == unlabelled_only,
            PredictionJob.fmt == fmt,
        ).limit(1)
    )


def claim_next_prediction(settings: Settings, worker_id: str) -> PredictionJobInfo | None:
    """Atomically take the oldest queued job, or None."""
    with write_unit(settings) as session:
        query = (select(PredictionJob)
                 .where(PredictionJob.status == RunStatus.QUEUED.value)
                 .order_by(PredictionJob.created_at, PredictionJob.id).limit(1))
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        job = session.scalar(query)
        if job is None:
            return None
        now = utcnow()
        job.status, job.worker_id = RunStatus.RUNNING.value, worker_id
        job.started_at = job.heartbeat_at = now
        session.flush()
        return _info(job)


def report_prediction(settings: Settings, job_id: int, n_done: int, n_total: int) -> bool:
    """Heartbeat a running job with its progress; False if it is no longer running
    (cancelled, or taken as failed)."""
    with write_unit(settings) as session:
        result = session.execute(
            update(PredictionJob)
            .where(PredictionJob.id == job_id, PredictionJob.status == RunStatus.RUNNING.value)
            .values(heartbeat_at=utcnow(), n_done=n_done, n_total=n_total)
        )
        return bool(result.rowcount)


def finish_prediction(settings: Settings, job_id: int, n_rows: int, file_path: str
                      ) -> tuple[bool, list[str]]:
    """Record a running job as done with its file.

    Returns:
        Whether it was still running (False: it was cancelled meanwhile, and its file should
        go), and the files of the project's older jobs beyond `KEEP_FILES`, which are no
        longer offered and should be deleted.
    """
    with write_unit(settings) as session:
        job = session.get(PredictionJob, job_id)
        if job is None or job.status != RunStatus.RUNNING.value:
            return False, []
        job.status, job.finished_at = RunStatus.DONE.value, utcnow()
        job.n_rows, job.file_path = n_rows, file_path
        job.n_done = job.n_total = n_rows
        session.flush()
        return True, _forget_old_files(session, job.project_id)


def _forget_old_files(session: Session, project_id: int) -> list[str]:
    old = session.scalars(
        select(PredictionJob)
        .where(PredictionJob.project_id == project_id, PredictionJob.file_path.is_not(None))
        .order_by(PredictionJob.finished_at.desc(), PredictionJob.id.desc())
        .offset(KEEP_FILES)
    ).all()
    paths = []
    for job in old:
        paths.append(job.file_path)
        job.file_path = None
    return paths


def fail_prediction(settings: Settings, job_id: int, error: str) -> bool:
    with write_unit(settings) as session:
        result = session.execute(
            update(PredictionJob)
            .where(PredictionJob.id == job_id, PredictionJob.status == RunStatus.RUNNING.value)
            .values(status=RunStatus.FAILED.value, finished_at=utcnow(), error=error)
        )
        return bool(result.rowcount)


def cancel_prediction(settings: Settings, job_id: int, actor: str | None = None) -> bool:
    """Cancel a queued or running job; a running one stops at its next batch."""
    return cancel(settings, PredictionJob, job_id, actor)


def fail_stale_predictions(settings: Settings, max_silence_s: float
                           ) -> list[tuple[int, int | None]]:
    """Fail running jobs whose heartbeat stopped (their worker died) and queue each again,
    once, first in line; in the same write unit.

    A job that was itself queued again is not queued a third time (it may be what kills its
    worker), nor one whose request is already queued or running again.

    Returns:
        ``(failed job, the job queued in its place or None)`` for each.
    """
    retries: dict[int, int | None] = {}

    def queue_again(session: Session, job: PredictionJob) -> str:
        retries[job.id] = None
        if job.retry_of is not None:
            return (f"it had already taken over job {job.retry_of}, so it is not queued a "
                    "third time: see the worker's log, then ask again.")
        same = _same_active(session, job.project_id, job.model_version, job.unlabelled_only,
                            job.fmt)
        if same is not None:
            return f"job {same.id} asks for the same."
        retry = PredictionJob(project_id=job.project_id, model_version=job.model_version,
                              unlabelled_only=job.unlabelled_only, fmt=job.fmt,
                              requested_by=job.requested_by, n_done=0, retry_of=job.id,
                              created_at=job.created_at)  # keeps its place in line
        session.add(retry)
        session.flush()
        retries[job.id] = retry.id
        return f"queued again as job {retry.id}."

    fail_silent(settings, PredictionJob, max_silence_s, queue_again)
    return list(retries.items())


def list_predictions(settings: Settings, project_id: int, limit: int = 10
                     ) -> list[PredictionJobInfo]:
    """The project's latest jobs, newest first."""
    with read_unit(settings) as session:
        return [_info(job) for job in session.scalars(
            select(PredictionJob).where(PredictionJob.project_id == project_id)
            .order_by(PredictionJob.id.desc()).limit(limit))]


def running_predictions(settings: Settings) -> list[PredictionJobInfo]:
    """Every project's running jobs (a round queued meanwhile waits for its worker's)."""
    with read_unit(settings) as session:
        return [_info(job) for job in session.scalars(
            select(PredictionJob).where(PredictionJob.status == RunStatus.RUNNING.value)
            .order_by(PredictionJob.id))]
