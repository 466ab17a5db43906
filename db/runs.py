"""Training runs as rows: requested, claimed by a worker, heartbeating, finished or failed.

One run at a time per project: a request while one is queued joins it (coalesces); a request
while one is running queues exactly one follow-up, which later requests join.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.annotations import labels_since
from db.engine import read_unit, write_unit
from db.errors import NotFound
from db.jobs import ACTIVE, cancel, fail_silent
from db.models import ModelVersion, Project, RunStatus, TrainingRun, utcnow
from db.settings import Settings
from db.users import require_admin

_REQUEST_LOCK = 0x4C58  # PostgreSQL advisory-lock namespace for run requests


@dataclass(frozen=True)
class RunInfo:
    id: int
    project_id: int
    status: str
    trigger: str
    stage: str | None
    progress: float
    error: str | None
    metrics: dict[str, Any] | None
    timings: dict[str, Any] | None
    n_labels: int | None
    model_version: int | None
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None


def _info(session: Session, run: TrainingRun) -> RunInfo:
    version = None
    if run.model_version_id is not None:
        version = session.scalar(
            select(ModelVersion.version).where(ModelVersion.id == run.model_version_id)
        )
    return RunInfo(
        id=run.id,
        project_id=run.project_id,
        status=run.status,
        trigger=run.trigger,
        stage=run.stage,
        progress=run.progress,
        error=run.error,
        metrics=run.metrics,
        timings=run.timings,
        n_labels=run.n_labels,
        model_version=version,
        created_at=run.created_at,
        started_at=run.started_at,
        heartbeat_at=run.heartbeat_at,
        finished_at=run.finished_at,
    )


def request_training(
    settings: Settings,
    project_id: int,
    trigger: str = "manual",
    requested_by: str | None = None,
    *,
    actor: str | None = None,
) -> RunInfo:
    """Queue a round for the project, or return the queued one it coalesces with.

    ``actor``, when given (the web app), must be an active admin; the CLI and the worker act
    with the machine owner's authority and pass none.
    """
    if actor is not None:
        require_admin(settings, actor)
        requested_by = actor
    with write_unit(settings) as session:
        if session.get_bind().dialect.name == "postgresql":  # SQLite: BEGIN IMMEDIATE did it
            session.execute(select(func.pg_advisory_xact_lock(_REQUEST_LOCK, project_id)))
        if session.get(Project, project_id) is None:
            raise NotFound(f"No project with id {project_id}.")
        queued = session.scalar(
            select(TrainingRun).where(
                TrainingRun.project_id == project_id,
                TrainingRun.status == RunStatus.QUEUED.value,
            )
        )
        if queued is None:
            queued = TrainingRun(project_id=project_id, trigger=trigger, requested_by=requested_by)
            session.add(queued)
            session.flush()
        return _info(session, queued)


def claim_next_run(settings: Settings, worker_id: str) -> RunInfo | None:
    """Atomically take the oldest queued run of a project with nothing running, or None."""
    with write_unit(settings) as session:
        running = select(TrainingRun.project_id).where(
            TrainingRun.status == RunStatus.RUNNING.value
        )
        query = (
            select(TrainingRun)
            .where(
                TrainingRun.status == RunStatus.QUEUED.value,
                TrainingRun.project_id.not_in(running),
            )
            .order_by(TrainingRun.created_at, TrainingRun.id)
            .limit(1)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        run = session.scalar(query)
        if run is None:
            return None
        now = utcnow()
        run.status = RunStatus.RUNNING.value
        run.worker_id = worker_id
        run.started_at = now
        run.heartbeat_at = now
        run.stage = "starting"
        session.flush()
        return _info(session, run)


def heartbeat(settings: Settings, run_id: int, stage: str | None = None,
              progress: float | None = None) -> bool:
    """Record that the run is alive (and where it is); False if it was cancelled or failed."""
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if stage is not None:
        values["stage"] = stage
    if progress is not None:
        values["progress"] = max(0.0, min(1.0, float(progress)))
    with write_unit(settings) as session:
        result = session.execute(
            update(TrainingRun)
            .where(TrainingRun.id == run_id, TrainingRun.status == RunStatus.RUNNING.value)
            .values(**values)
        )
        return bool(result.rowcount)


def finish_run(
    session: Session,
    run_id: int,
    status: RunStatus,
    *,
    error: str | None = None,
    metrics: dict[str, Any] | None = None,
    timings: dict[str, Any] | None = None,
    n_labels: int | None = None,
    model_version_id: int | None = None,
) -> bool:
    """Close a running run inside the caller's unit; False if it was no longer running."""
    values: dict[str, Any] = {"status": status.value, "finished_at": utcnow(), "error": error}
    if status == RunStatus.DONE:
        values.update(progress=1.0, stage="done")
    for key, value in (("metrics", metrics), ("timings", timings), ("n_labels", n_labels),
                       ("model_version_id", model_version_id)):
        if value is not None:
            values[key] = value
    result = session.execute(
        update(TrainingRun)
        .where(TrainingRun.id == run_id, TrainingRun.status == RunStatus.RUNNING.value)
        .values(**values)
    )
    return bool(result.rowcount)


def fail_run(settings: Settings, run_id: int, error: str) -> bool:
    with write_unit(settings) as session:
        return finish_run(session, run_id, RunStatus.FAILED, error=error)


def cancel_run(settings: Settings, run_id: int, actor: str | None = None) -> bool:
    """Cancel a queued or running run; a running one stops at its next heartbeat."""
    return cancel(settings, TrainingRun, run_id, actor)


def fail_stale_runs(settings: Settings, max_silence_s: float) -> list[int]:
    """Mark running runs whose heartbeat stopped as failed (their worker died), and queue a
    takeover round for their projects, which any live worker then claims."""
    rows = fail_silent(settings, TrainingRun, max_silence_s,
                       "the previous model and queue are still in use.")
    for project_id in sorted({project_id for _, project_id in rows}):
        request_training(settings, project_id, trigger="takeover")
    return [run_id for run_id, _ in rows]


def get_run(settings: Settings, run_id: int) -> RunInfo:
    with read_unit(settings) as session:
        run = session.get(TrainingRun, run_id)
        if run is None:
            raise NotFound(f"No training run {run_id}.")
        return _info(session, run)


def list_runs(settings: Settings, project_id: int, limit: int = 50) -> list[RunInfo]:
    with read_unit(settings) as session:
        runs = session.scalars(
            select(TrainingRun)
            .where(TrainingRun.project_id == project_id)
            .order_by(TrainingRun.id.desc())
            .limit(limit)
        ).all()
        return [_info(session, run) for run in runs]


def _last_timed_round(settings: Settings, project_id: int) -> RunInfo | None:
    """The project's latest finished round (which records its stage timings), or None."""
    with read_unit(settings) as session:
        run = session.scalar(
            select(TrainingRun)
            .where(TrainingRun.project_id == project_id,
                   TrainingRun.status == RunStatus.DONE.value,
                   TrainingRun.timings.is_not(None))
            .order_by(TrainingRun.id.desc())
            .limit(1)
        )
        return None if run is None else _info(session, run)


def last_round_timings(settings: Settings, project_id: int) -> dict[str, Any] | None:
    """The stage timings (``train_s``, ``score_s``, ...) of the project's latest finished round,
    or None before its first."""
    run = _last_timed_round(settings, project_id)
    return None if run is None else run.timings


def seconds_left(settings: Settings, run: RunInfo, now: datetime) -> float | None:
    """The time a running round has left, by its progress so far: the elapsed time times
    (1 - progress) / progress. None where that would be no estimate: before the project's first
    finished round timed its stages (until then a round's progress does not move with the
    clock; see ``learner.rounds.stage_shares``), and before 5% of the run, when the guess is
    still mostly noise."""
    if run.status != RunStatus.RUNNING.value or run.progress < 0.05 or run.started_at is None:
        return None
    if last_round_timings(settings, run.project_id) is None:
        return None
    elapsed = (now - run.started_at).total_seconds()
    return max(0.0, elapsed * (1 - run.progress) / run.progress)


@dataclass(frozen=True)
class RoundEstimate:
    """How long a round would take with a pool of ``pool`` texts, from the last timed round."""

    pool: int
    seconds: float
    last_pool: int
    last_seconds: float
    texts_per_s: float


def estimate_round(settings: Settings, project_id: int, pool: int) -> RoundEstimate | None:
    """The project's next round's time if it scored ``pool`` texts: the last finished round's
    other stages as they were, and scoring at that round's texts/s; None where that round did
    not record how many texts it scored (or there is none)."""
    run = _last_timed_round(settings, project_id)
    timings, metrics = (run.timings or {}, run.metrics or {}) if run else ({}, {})
    if not timings.get("score_s") or not metrics.get("n_pool"):
        return None
    stages = {k: float(v) for k, v in timings.items() if k.endswith("_s") and k != "total_s"}
    rate = metrics["n_pool"] / stages["score_s"]
    last = sum(stages.values())
    return RoundEstimate(pool=pool, seconds=last - stages["score_s"] + pool / rate,
                         last_pool=int(metrics["n_pool"]), last_seconds=last, texts_per_s=rate)


def active_run(settings: Settings, project_id: int) -> RunInfo | None:
    """The running run of the project, else its queued one, else None."""
    with read_unit(settings) as session:
        runs = session.scalars(
            select(TrainingRun).where(
                TrainingRun.project_id == project_id, TrainingRun.status.in_(ACTIVE)
            )
        ).all()
        runs = sorted(runs, key=lambda r: r.status != RunStatus.RUNNING.value)
        return _info(session, runs[0]) if runs else None


def labels_since_last_version(session: Session, project_id: int) -> int:
    """Annotations given or changed since the project's latest model version took its labels.

    Counted from the start of the round that made it (its snapshot of the labels is the round's
    first step), so that labels given while it trained count as new; a version no round made
    counts from its creation. All annotations where there is no version.
    """
    latest = session.execute(
        select(ModelVersion.id, ModelVersion.created_at)
        .where(ModelVersion.project_id == project_id)
        .order_by(ModelVersion.version.desc()).limit(1)).first()
    if latest is None:
        return labels_since(session, project_id, None)
    started = session.scalar(select(func.min(TrainingRun.started_at))
                             .where(TrainingRun.model_version_id == latest.id))
    return labels_since(session, project_id, started or latest.created_at)


@dataclass(frozen=True)
class StoppedRun:
    """A round that ended without a model: cancelled, or failed."""

    id: int
    status: str
    finished_at: datetime


def last_stopped_run(session: Session, project_id: int) -> StoppedRun | None:
    """The project's last finished round, if it ended without a model (None if it made one)."""
    row = session.execute(
        select(TrainingRun.id, TrainingRun.status, TrainingRun.finished_at)
        .where(TrainingRun.project_id == project_id, TrainingRun.finished_at.is_not(None))
        .order_by(TrainingRun.finished_at.desc(), TrainingRun.id.desc()).limit(1)
    ).first()
    if row is None or row.status == RunStatus.DONE.value:
        return None
    return StoppedRun(*row)


@dataclass(frozen=True)
class VersionInfo:
    version: int
    n_labels: int
    metrics: dict[str, Any]
    created_at: datetime
    artefact_path: str


def list_versions(settings: Settings, project_id: int, latest_only: bool = False
                  ) -> list[VersionInfo]:
    """The project's model versions, oldest first (one point per round on the learning curve)."""
    query = select(ModelVersion).where(ModelVersion.project_id == project_id)
    if latest_only:
        query = query.order_by(ModelVersion.version.desc()).limit(1)
    with read_unit(settings) as session:
        rows = session.scalars(query.order_by(ModelVersion.version)).all()
        return [VersionInfo(r.version, r.n_labels, dict(r.metrics or {}), r.created_at,
                            r.artefact_path) for r in rows]


def find_version(settings: Settings, project_id: int, version: int | None = None) -> VersionInfo:
    """The project's model ``version``, or its latest when None.

    Raises:
        NotFound: no such version (or none at all).
    """
    versions = list_versions(settings, project_id)
    if not versions:
        raise NotFound("This project has no model yet: label some texts and train a round "
                       "(python -m app train --project NAME, or Train now on the Model page).")
    if version is None:
        return versions[-1]
    for found in versions:
        if found.version == version:
            return found
    raise NotFound(f"This project has no model version {version} "
                   f"(it has {', '.join(str(v.version) for v in versions)}).")


def latest_version(settings: Settings, project_id: int) -> VersionInfo | None:
    versions = list_versions(settings, project_id, latest_only=True)
    return versions[0] if versions else None
