"""Projects, their label sets, annotators and counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from db.annotations import in_project
from db.errors import LabelwiseError, NotFound
from db.models import Annotation, Annotator, Example, Label, Project, QueueItem, Role

IMPORT_ANNOTATOR = "import"


STRATEGY_NAMES = ("margin", "least_confidence", "entropy", "diverse", "random")


@dataclass(frozen=True)
class ProjectConfig:
    """A project's active-learning settings, stored as JSON in ``projects.settings``.

    Attributes:
        strategy: query strategy (one of ``STRATEGY_NAMES``).
        batch_size: texts between two model rounds in simulation; UI batch hint.
        retrain_every: start a round automatically after this many new labels (0: never).
        audit_share: share of queued items drawn uniformly at random and held out for evaluation.
        cold_start_k: until every label has this many examples, serve a diverse random sample.
        model_path: backbone (``builtin:minilm-l6``, a local checkpoint, or a cached hub id).
        max_length: tokens per text for the model.
        pool_cap: score at most this many unlabelled texts per round (sampled uniformly).
        queue_size: how many ranked items a round leaves in the queue.
        warm_start: start each round from the last version instead of the backbone.
        seed: random seed for sampling and training.
        fast_loop_every: between rounds, re-rank the queue with a cheap model on the last
            round's embeddings after this many new labels (0: off).
        overlap: how many annotators label each text.
        agreement_share: share of texts labelled by at least two annotators (agreement).
    """

    strategy: str = "margin"
    batch_size: int = 20
    retrain_every: int = 50
    audit_share: float = 0.1
    cold_start_k: int = 3
    model_path: str = "builtin:minilm-l6"
    max_length: int = 128
    pool_cap: int = 20_000
    queue_size: int = 500
    warm_start: bool = False
    seed: int = 0
    fast_loop_every: int = 5
    overlap: int = 1
    agreement_share: float = 0.1

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "ProjectConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known}).validated()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validated(self) -> "ProjectConfig":
        if self.strategy not in STRATEGY_NAMES:
            raise LabelwiseError(
                f"Unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGY_NAMES)}."
            )
        if not 0.0 <= self.audit_share < 1.0:
            raise LabelwiseError("The audit share must be at least 0 and below 1.")
        for name in ("batch_size", "max_length", "pool_cap", "queue_size", "cold_start_k"):
            if int(getattr(self, name)) < 1:
                raise LabelwiseError(f"{name} must be at least 1.")
        if not 1 <= self.overlap <= 20:
            raise LabelwiseError("overlap must be between 1 and 20 annotators.")
        if not 0.0 <= self.agreement_share <= 1.0:
            raise LabelwiseError("The agreement share must be between 0 and 1.")
        if self.retrain_every < 0 or self.fast_loop_every < 0:
            raise LabelwiseError("retrain_every and fast_loop_every cannot be negative.")
        return self

    def with_changes(self, **changes: Any) -> "ProjectConfig":
        return replace(self, **changes).validated()


@dataclass(frozen=True)
class ProjectInfo:
    """A project as the rest of the program sees it: plain data, no ORM state."""

    id: int
    name: str
    labels: tuple[str, ...]
    guidelines: str
    settings: dict[str, Any]
    label_ids: tuple[int, ...] = ()
    """The labels' ids, in the order of ``labels``: they stay the same through a rename."""

    @property
    def config(self) -> ProjectConfig:
        return ProjectConfig.from_dict(self.settings)


@dataclass(frozen=True)
class ProjectStats:
    project: str
    examples: int
    labelled: int
    annotations: int
    label_counts: dict[str, int]


def _info(project: Project) -> ProjectInfo:
    return ProjectInfo(
        id=project.id,
        name=project.name,
        labels=tuple(label.name for label in project.labels),
        guidelines=project.guidelines,
        settings=dict(project.settings or {}),
        label_ids=tuple(label.id for label in project.labels),
    )


def clean_label(name: str) -> str:
    """A label name as stored: trimmed, non-empty, printable, at most 200 characters."""
    cleaned = name.strip()
    if not cleaned:
        raise LabelwiseError("A label name cannot be empty.")
    if len(cleaned) > 200:
        raise LabelwiseError(f"Label name too long ({len(cleaned)} characters, at most 200).")
    if any(not ch.isprintable() for ch in cleaned):
        raise LabelwiseError(f"Label name {cleaned!r} contains control characters.")
    return cleaned


def create_project(
    session: Session,
    name: str,
    labels: Sequence[str] = (),
    guidelines: str = "",
    settings: dict[str, Any] | None = None,
) -> ProjectInfo:
    name = name.strip()
    if not name:
        raise LabelwiseError("A project needs a name.")
    if session.scalar(select(Project.id).where(Project.name == name)) is not None:
        raise LabelwiseError(f"A project named {name!r} already exists.")
    project = Project(name=name, guidelines=guidelines, settings=dict(settings or {}))
    session.add(project)
    session.flush()
    add_labels(session, project.id, labels)
    session.refresh(project)
    return _info(project)


def _project(session: Session, name: str) -> Project:
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        known = ", ".join(session.scalars(select(Project.name).order_by(Project.name))) or "none"
        raise NotFound(f"No project named {name!r} (projects: {known}).")
    return project


def get_project(session: Session, name: str) -> ProjectInfo:
    return _info(_project(session, name))


def find_project(session: Session, name: str) -> ProjectInfo | None:
    project = session.scalar(select(Project).where(Project.name == name))
    return None if project is None else _info(project)


def update_project(
    session: Session,
    name: str,
    *,
    guidelines: str | None = None,
    settings: dict[str, Any] | None = None,
) -> ProjectInfo:
    """Change a project's guidelines and/or merge keys into its settings.

    A new overlap applies to the queue as it is, not only from the next round on: each queued
    text needs the new number of annotators (at least two where the agreement share had given
    it one more than the old overlap).
    """
    project = _project(session, name)
    if guidelines is not None:
        project.guidelines = guidelines
    if settings:
        old = ProjectConfig.from_dict(project.settings).overlap
        merged = {**(project.settings or {}), **settings}
        new = ProjectConfig.from_dict(merged).overlap  # raises on a bad value
        project.settings = merged
        if new != old:
            session.execute(
                update(QueueItem).where(QueueItem.project_id == project.id)
                .values(needed=case((QueueItem.needed > old, max(new, 2)), else_=new)))
    session.flush()
    return _info(project)


def list_projects(session: Session) -> list[ProjectInfo]:
    return [_info(p) for p in session.scalars(select(Project).order_by(Project.name))]


def add_labels(session: Session, project_id: int, names: Sequence[str]) -> list[str]:
    """Append labels not yet in the set, in the order given; returns those added."""
    existing = dict(
        session.execute(
            select(Label.name, Label.position).where(Label.project_id == project_id)
        ).all()
    )
    position = max(existing.values(), default=-1) + 1
    added = []
    for raw in names:
        name = clean_label(raw)
        if name in existing:
            continue
        session.add(Label(project_id=project_id, name=name, position=position))
        existing[name] = position
        position += 1
        added.append(name)
    session.flush()
    return added


class LabelInUse(LabelwiseError):
    """Removing this label would delete annotations; ``count`` says how many."""

    def __init__(self, name: str, count: int) -> None:
        super().__init__(
            f"{count} annotation(s) use the label {name!r}. Removing it deletes them, and those "
            "texts go back to the unlabelled pool."
        )
        self.count = count


def _label_row(session: Session, project_id: int, name: str) -> Label:
    label = session.scalar(select(Label).where(Label.project_id == project_id, Label.name == name))
    if label is None:
        raise NotFound(f"No label {name!r} in this project.")
    return label


def rename_label(session: Session, project_id: int, old: str, new: str) -> None:
    """Rename a label; its annotations follow (they point at the label, not its name)."""
    new = clean_label(new)
    label = _label_row(session, project_id, old)
    if new != old and new in label_ids(session, project_id):
        raise LabelwiseError(f"The project already has a label {new!r}.")
    label.name = new
    session.flush()


def reorder_labels(session: Session, project_id: int, names: Sequence[str]) -> None:
    """Set the label order (buttons and shortcuts 1-9 follow it); ``names`` must be the whole set."""
    labels = {label.name: label for label in session.scalars(
        select(Label).where(Label.project_id == project_id))}
    if sorted(names) != sorted(labels):
        raise LabelwiseError("The new order must list every label exactly once.")
    for position, name in enumerate(names):
        labels[name].position = position
    session.flush()


def remove_label(session: Session, project_id: int, name: str, force: bool = False) -> int:
    """Remove a label; if annotations use it, raise `LabelInUse` unless ``force`` (then delete them).

    Returns:
        The number of annotations deleted.
    """
    from sqlalchemy import delete

    label = _label_row(session, project_id, name)
    used = session.scalar(
        select(func.count()).select_from(Annotation).where(Annotation.label_id == label.id)
    ) or 0
    if used and not force:
        raise LabelInUse(name, used)
    session.execute(delete(Annotation).where(Annotation.label_id == label.id))
    session.delete(label)
    session.flush()
    return int(used)


def label_ids(session: Session, project_id: int) -> dict[str, int]:
    return dict(session.execute(select(Label.name, Label.id).where(Label.project_id == project_id)).all())


def get_or_create_annotator(session: Session, name: str, role: Role = Role.ANNOTATOR) -> int:
    """The id of the annotator called ``name``, created on first use."""
    annotator_id = session.scalar(select(Annotator.id).where(Annotator.name == name))
    if annotator_id is None:
        annotator = Annotator(name=name, role=role.value)
        session.add(annotator)
        session.flush()
        annotator_id = annotator.id
    return annotator_id


def project_stats(session: Session, name: str) -> ProjectStats:
    project = _project(session, name)
    examples = session.scalar(
        select(func.count()).select_from(Example).where(Example.project_id == project.id)
    )
    ours = in_project(project.id)
    labelled = session.scalar(select(func.count(Annotation.example_id.distinct())).where(ours))
    annotations = session.scalar(select(func.count()).select_from(Annotation).where(ours))
    counts = dict(
        session.execute(
            select(Label.name, func.count(Annotation.id))
            .join(Annotation, Annotation.label_id == Label.id, isouter=True)
            .where(Label.project_id == project.id)
            .group_by(Label.name)
        ).all()
    )
    ordered = {label.name: int(counts.get(label.name, 0)) for label in project.labels}
    return ProjectStats(
        project=project.name,
        examples=int(examples or 0),
        labelled=int(labelled or 0),
        annotations=int(annotations or 0),
        label_counts=ordered,
    )
