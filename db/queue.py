"""The labelling queue: what an annotator sees next, and why.

Serving is one indexed query and never waits for training: rounds replace the whole queue of a
project in one short write unit, and when the queue runs dry an unlabelled text is served at
random until the worker builds the next one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, exists, func, insert, select
from sqlalchemy.orm import Session

from db.engine import read_unit
from db.models import Annotation, Example, ModelVersion, QueueItem, QueueReason
from db.settings import Settings


@dataclass(frozen=True)
class QueueEntry:
    """One ranked position to write into the queue."""

    example_id: int
    reason: str
    score: float | None = None
    predicted_label: str | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class QueuedItem:
    """The next text for an annotator, with why it was chosen and what the model thinks."""

    example_id: int
    text: str
    reason: str
    score: float | None
    predicted_label: str | None
    confidence: float | None
    model_version: int | None


def replace_queue(
    session: Session,
    project_id: int,
    entries: Sequence[QueueEntry],
    model_version_id: int | None = None,
) -> None:
    """Swap the project's whole queue for ``entries`` (ranked first to last), in the caller's unit."""
    session.execute(delete(QueueItem).where(QueueItem.project_id == project_id))
    if entries:
        session.execute(
            insert(QueueItem),
            [
                {
                    "project_id": project_id,
                    "example_id": e.example_id,
                    "rank": rank,
                    "score": e.score,
                    "reason": e.reason,
                    "model_version_id": model_version_id,
                    "predicted_label": e.predicted_label,
                    "confidence": e.confidence,
                }
                for rank, e in enumerate(entries)
            ],
        )


def interleave_audit(
    ranked: Sequence[QueueEntry], audit: Sequence[QueueEntry], share: float
) -> list[QueueEntry]:
    """Spread audit entries evenly through the ranking so they make up ``share`` of the head."""
    if not audit or share <= 0:
        return list(ranked)
    every = max(1, round(1 / share))
    out: list[QueueEntry] = []
    audit_iter = iter(audit)
    ranked_iter = iter(ranked)
    position = 0
    while True:
        source = audit_iter if position % every == every - 1 else ranked_iter
        item = next(source, None)
        if item is None:
            other = ranked_iter if source is audit_iter else audit_iter
            out.extend(other)
            return out
        out.append(item)
        position += 1


def _unlabelled(project_id: int):  # type: ignore[no-untyped-def]
    return (Example.project_id == project_id) & ~exists().where(
        Annotation.example_id == Example.id
    )


def next_item(
    settings: Settings, project_id: int, exclude: Sequence[int] = ()
) -> QueuedItem | None:
    """The best-ranked queued text nobody has labelled yet, else a random unlabelled one."""
    with read_unit(settings) as session:
        query = (
            select(
                QueueItem.example_id,
                Example.text,
                QueueItem.reason,
                QueueItem.score,
                QueueItem.predicted_label,
                QueueItem.confidence,
                ModelVersion.version,
            )
            .join(Example, Example.id == QueueItem.example_id)
            .outerjoin(ModelVersion, ModelVersion.id == QueueItem.model_version_id)
            .where(
                QueueItem.project_id == project_id,
                ~exists().where(Annotation.example_id == QueueItem.example_id),
            )
            .order_by(QueueItem.rank)
            .limit(1)
        )
        if exclude:
            query = query.where(QueueItem.example_id.not_in(list(exclude)))
        row = session.execute(query).first()
        if row is not None:
            return QueuedItem(*row)
        return _random_unlabelled(session, project_id, exclude)


def _random_unlabelled(
    session: Session, project_id: int, exclude: Sequence[int]
) -> QueuedItem | None:
    """A uniformly random unlabelled text, found with index range probes (no full scan)."""
    bounds = session.execute(
        select(func.min(Example.id), func.max(Example.id)).where(Example.project_id == project_id)
    ).one()
    if bounds[0] is None:
        return None
    condition = _unlabelled(project_id)
    if exclude:
        condition = condition & Example.id.not_in(list(exclude))
    for start in [random.randint(bounds[0], bounds[1]), bounds[0]]:
        row = session.execute(
            select(Example.id, Example.text)
            .where(condition, Example.id >= start)
            .order_by(Example.id)
            .limit(1)
        ).first()
        if row is not None:
            return QueuedItem(row.id, row.text, QueueReason.RANDOM.value, None, None, None, None)
    return None


def queue_remaining(session: Session, project_id: int) -> int:
    """Queued texts that nobody has labelled yet."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(QueueItem)
            .where(
                QueueItem.project_id == project_id,
                ~exists().where(Annotation.example_id == QueueItem.example_id),
            )
        )
        or 0
    )


def unlabelled_ids(session: Session, project_id: int) -> list[int]:
    return list(session.scalars(select(Example.id).where(_unlabelled(project_id)).order_by(Example.id)))


def item_for(settings: Settings, project_id: int, example_id: int) -> QueuedItem | None:
    """One text of the project as a queue item (its queue entry's reason if it has one)."""
    with read_unit(settings) as session:
        row = session.execute(
            select(
                Example.id,
                Example.text,
                func.coalesce(QueueItem.reason, QueueReason.RANDOM.value),
                QueueItem.score,
                QueueItem.predicted_label,
                QueueItem.confidence,
                ModelVersion.version,
            )
            .outerjoin(QueueItem, (QueueItem.example_id == Example.id)
                       & (QueueItem.project_id == project_id))
            .outerjoin(ModelVersion, ModelVersion.id == QueueItem.model_version_id)
            .where(Example.id == example_id, Example.project_id == project_id)
        ).first()
    return None if row is None else QueuedItem(*row)
