"""SQLAlchemy models: the whole schema of a Labelwise database."""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    LargeBinary,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone itself)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime()}


class Role(str, enum.Enum):
    ADMIN = "admin"
    ANNOTATOR = "annotator"
    SYSTEM = "system"


class RunStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class QueueReason(str, enum.Enum):
    UNCERTAIN = "uncertain"
    AUDIT = "audit"
    COLD_START = "cold_start"
    RANDOM = "random"


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    guidelines: Mapped[str] = mapped_column(Text, default="")
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    labels: Mapped[list["Label"]] = relationship(
        back_populates="project", order_by="Label.position", cascade="all, delete-orphan"
    )


class Label(Base):
    """One class of a project's label set; ``position`` orders buttons and shortcuts."""

    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer, default=0)

    project: Mapped[Project] = relationship(back_populates="labels")


class Example(Base):
    """A text to label. ``text_hash`` is of the normalised text, unique per project.

    ``reference_label`` is a true label kept aside (the demo corpus, simulations); it is never
    shown to annotators nor used for training outside a simulation. ``gold_label_id`` is a
    reviewer's adjudicated label: it overrides the annotators' vote in exports and training.
    """

    __tablename__ = "examples"
    __table_args__ = (
        UniqueConstraint("project_id", "text_hash"),
        # (project_id, id): a project's id range and id-ordered walks without scanning it all
        # (SQLite would append the rowid itself; PostgreSQL needs the id spelled out)
        Index("ix_examples_project_id", "project_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(String(32))
    source_row: Mapped[int | None] = mapped_column(Integer)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reference_label: Mapped[str | None] = mapped_column(String(200))
    gold_label_id: Mapped[int | None] = mapped_column(
        ForeignKey("labels.id", ondelete="SET NULL")
    )
    gold_by: Mapped[str | None] = mapped_column(String(100))
    gold_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Annotator(Base):
    """A person (or the ``import`` pseudo-user) who gives labels."""

    __tablename__ = "annotators"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20), default=Role.ANNOTATOR.value)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Advanced by sign-out, a new password or disabling: ends the sessions issued before."""


class Annotation(Base):
    """One annotator's label for one example: one row per pair, upserted."""

    __tablename__ = "annotations"
    __table_args__ = (
        UniqueConstraint("example_id", "annotator_id"),
        Index("ix_annotations_updated_at", "updated_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(
        ForeignKey("annotators.id", ondelete="RESTRICT"), index=True
    )
    label_id: Mapped[int] = mapped_column(
        ForeignKey("labels.id", ondelete="RESTRICT"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    seconds_spent: Mapped[float | None] = mapped_column(Float)
    queue_reason: Mapped[str | None] = mapped_column(String(20))


class ModelVersion(Base):
    """A trained model saved as an artefact directory (``save_pretrained``, safetensors)."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("project_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    base_model: Mapped[str] = mapped_column(String(500))
    artefact_path: Mapped[str] = mapped_column(String(1000))
    n_labels: Mapped[int] = mapped_column(Integer, default=0)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrainingRun(Base):
    """A request to train, and its life: queued, running (heartbeat, progress), done or failed."""

    __tablename__ = "training_runs"
    __table_args__ = (Index("ix_training_runs_project_status", "project_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.QUEUED.value)
    trigger: Mapped[str] = mapped_column(String(20), default="manual")
    requested_by: Mapped[str | None] = mapped_column(String(100))
    worker_id: Mapped[str | None] = mapped_column(String(200))
    stage: Mapped[str | None] = mapped_column(String(50))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    n_labels: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


class QueueItem(Base):
    """An example waiting to be labelled, ranked (lower ``rank`` is served first).

    ``needed`` is how many annotators should label it (the project's overlap, or two for the
    share double-labelled to measure agreement).
    """

    __tablename__ = "queue_items"
    __table_args__ = (
        UniqueConstraint("project_id", "example_id"),
        Index("ix_queue_items_project_rank", "project_id", "rank"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(20))
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    predicted_label: Mapped[str | None] = mapped_column(String(200))
    confidence: Mapped[float | None] = mapped_column(Float)
    needed: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Lease(Base):
    """An annotator's claim on a text while they label it; it lapses at ``expires_at``."""

    __tablename__ = "leases"
    __table_args__ = (UniqueConstraint("example_id", "annotator_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(
        ForeignKey("annotators.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime] = mapped_column()


class Embedding(Base):
    """A text's embedding from one model version (float16 bytes), for the fast loop between
    rounds: a cheap model on these re-ranks the pool after every few answers."""

    __tablename__ = "embeddings"

    example_id: Mapped[int] = mapped_column(
        ForeignKey("examples.id", ondelete="CASCADE"), primary_key=True
    )
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class Worker(Base):
    """A running training worker: seen every few seconds, and what it found when it warmed up.

    The row goes when its worker stops; one left by a worker that died goes stale (``seen_at``)
    and is removed by the next worker that starts.
    """

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column()
    device: Mapped[str | None] = mapped_column(String(50))
    device_name: Mapped[str | None] = mapped_column(String(200))
    precision: Mapped[str | None] = mapped_column(String(20))
    warmup_s: Mapped[float | None] = mapped_column(Float)
    problem: Mapped[str | None] = mapped_column(Text)


class PredictionJob(Base):
    """A request for a model version's predictions on a project's texts: queued by the web
    app, written by a worker into a file under ``data/predictions`` (heartbeating, with the
    texts scored so far), then done, failed or cancelled."""

    __tablename__ = "prediction_jobs"
    __table_args__ = (Index("ix_prediction_jobs_project_status", "project_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    model_version: Mapped[int] = mapped_column(Integer)
    unlabelled_only: Mapped[bool] = mapped_column(Boolean, default=False)
    fmt: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.QUEUED.value)
    requested_by: Mapped[str | None] = mapped_column(String(100))
    worker_id: Mapped[str | None] = mapped_column(String(200))
    n_done: Mapped[int] = mapped_column(Integer, default=0)
    n_total: Mapped[int | None] = mapped_column(Integer)
    n_rows: Mapped[int | None] = mapped_column(Integer)
    file_path: Mapped[str | None] = mapped_column(String(1000))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    retry_of: Mapped[int | None] = mapped_column(Integer)
    """The job this one took over when that one's worker died (a job is taken over once)."""
