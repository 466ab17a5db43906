"""The labelling queue: what an annotator sees next, and why.

Serving is one short write unit (the claim and its lease) and never waits for training: rounds
replace the whole queue of a project in one short write unit, and when the queue runs dry an
unlabelled text is served at random until the worker builds the next one.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, bindparam, delete, exists, func, insert, select, true
from sqlalchemy.orm import Session

from db.annotations import labels_since
from db.engine import dialect_insert, read_unit, write_unit
from db.models import (
    Annotation,
    Annotator,
    Example,
    Lease,
    ModelVersion,
    QueueItem,
    QueueReason,
    utcnow,
)
from db.projects import get_or_create_annotator
from db.settings import Settings


@dataclass(frozen=True)
class QueueEntry:
    """One ranked position to write into the queue."""

    example_id: int
    reason: str
    score: float | None = None
    predicted_label: str | None = None
    confidence: float | None = None
    needed: int = 1


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
    """Swap the project's whole queue for ``entries`` (ranked first to last), in the caller's unit.

    Queued texts that some but not all of their ``needed`` annotators have labelled stay, ahead
    of ``entries`` and as they were queued: rankings are built from the texts nobody has
    labelled, so without this a text of an overlap (or of the agreement share) that one
    annotator has labelled would never get its other labels.
    """
    unfinished = _unfinished(session, project_id)
    kept = {row["example_id"] for row in unfinished}
    session.execute(delete(QueueItem).where(QueueItem.project_id == project_id))
    rows = unfinished + [
        {
            "example_id": e.example_id,
            "score": e.score,
            "reason": e.reason,
            "model_version_id": model_version_id,
            "predicted_label": e.predicted_label,
            "confidence": e.confidence,
            "needed": e.needed,
        }
        for e in entries if e.example_id not in kept
    ]
    if rows:
        session.execute(insert(QueueItem), [
            {**row, "project_id": project_id, "rank": rank} for rank, row in enumerate(rows)])


def _unfinished(session: Session, project_id: int) -> list[dict[str, Any]]:
    """The project's queued texts with at least one label but fewer than ``needed``, in rank
    order, as `replace_queue` writes rows (without project and rank)."""
    answers = (select(func.count()).select_from(Annotation)
               .where(Annotation.example_id == QueueItem.example_id).scalar_subquery())
    columns = (QueueItem.example_id, QueueItem.score, QueueItem.reason,
               QueueItem.model_version_id, QueueItem.predicted_label, QueueItem.confidence,
               QueueItem.needed)
    found = session.execute(
        select(*columns)
        .where(QueueItem.project_id == project_id, answers > 0, answers < QueueItem.needed)
        .order_by(QueueItem.rank))
    return [dict(row._mapping) for row in found]


def assign_overlap(
    entries: Sequence[QueueEntry], overlap: int, agreement_share: float, rng: Any
) -> list[QueueEntry]:
    """Set how many annotators label each entry: ``overlap``, and at least two for a random
    ``agreement_share`` of them (to measure agreement)."""
    from dataclasses import replace

    double = rng.random(len(entries)) < agreement_share
    return [replace(e, needed=max(overlap, 2) if d else overlap) for e, d in zip(entries, double)]


def split_audit(pool_size: int, chosen: Sequence[int], share: float, rng: Any
                ) -> tuple[list[int], list[int]]:
    """The ranked pool positions ``chosen`` and the audit slice, as two lists of positions.

    The audit slice is ``share`` of ``chosen`` (rounded up), uniform over the pool outside
    ``chosen``; where the pool is too small for that (no larger than the queue, say, when every
    text is ranked), the rest is drawn uniformly from ``chosen`` and taken out of the ranking.

    Returns:
        ``chosen`` without the audit picks (in its order), and the audit picks.
    """
    import numpy as np

    wanted = math.ceil(len(chosen) * share) if share > 0 else 0
    if not wanted:
        return list(chosen), []
    rest = np.setdiff1d(np.arange(pool_size), np.asarray(chosen, dtype=int))
    picks = [int(i) for i in rng.choice(rest, size=min(wanted, len(rest)), replace=False)]
    short = min(wanted - len(picks), len(chosen) - 1)  # the ranking keeps at least one text
    if short > 0:
        picks += [int(i) for i in rng.choice(np.asarray(chosen, dtype=int), size=short,
                                             replace=False)]
    audited = set(picks)
    return [i for i in chosen if i not in audited], picks


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


LEASE_SECONDS = 600
_CLAIM_LOCK = 0x4C57  # PostgreSQL advisory-lock namespace for claims ("LW")


def _served_to_others(example_id: Any, me: Any, now: Any):  # type: ignore[no-untyped-def]
    """How many annotators other than me have labelled the text or hold a live lease on it."""
    labelled = (
        select(func.count()).select_from(Annotation)
        .where(Annotation.example_id == example_id, Annotation.annotator_id != me)
        .scalar_subquery()
    )
    leased = (
        select(func.count()).select_from(Lease)
        .where(*_leased_to_others(example_id, me, now))
        .scalar_subquery()
    )
    return labelled + leased


def _leased_to_others(example_id: Any, me: Any, now: Any) -> tuple[Any, ...]:
    """The conditions on a `Lease` row: a live lease on the text held by someone but ``me``."""
    return Lease.example_id == example_id, Lease.expires_at > now, Lease.annotator_id != me


def _serialise_claims(session: Session, project_id: int) -> None:
    """Make this write unit the project's only claim-like one until it ends: ``BEGIN
    IMMEDIATE`` did it on SQLite, an advisory lock does it on PostgreSQL."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(_CLAIM_LOCK, project_id)))


def claim_next(
    settings: Settings,
    project_id: int,
    annotator: str,
    exclude: Sequence[int] = (),
    lease_s: float = LEASE_SECONDS,
) -> QueuedItem | None:
    """Atomically give ``annotator`` the next text and a lease on it; None when all is done.

    In rank order, the first queued text that ``annotator`` has not labelled and that still
    needs labels once the others' labels and live leases are counted (``needed`` is the
    overlap). A live lease of their own (after a page refresh, say) comes back first. When the
    queue is spent, a random text nobody has labelled or holds. Claims of one project are
    serialised (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), so two
    annotators never receive the same text beyond the overlap.
    """
    now = utcnow()
    with write_unit(settings) as session:
        _serialise_claims(session, project_id)
        me = get_or_create_annotator(session, annotator)
        params: dict[str, Any] = {"me": me, "project_id": project_id, "now": now}
        if exclude:
            params["exclude"] = list(exclude)
        example_id = session.scalar(_next_in_queue(bool(exclude)), params)
        if example_id is None:
            example_id = _random_free(session, params)
        if example_id is None:
            return None
        _lease(session, example_id, me, now + timedelta(seconds=lease_s))
        return _item(session, project_id, example_id)


@functools.cache
def _next_in_queue(excluding: bool) -> Select[tuple[int | None]]:
    """The claim's lookup: ``me``'s own live lease on a text of ``project_id`` they have not
    labelled, else the first queued text they have not labelled that still needs labels at
    ``now`` (and with ``excluding``, neither is in ``exclude``): one round trip, as COALESCE
    evaluates the queue lookup only when there is no own lease.

    Built once per shape with bound parameters rather than per claim: side by side on a 2-core
    Xeon (10,000 texts, 700 claims, 3 alternating runs) the claim's p50 went from 10.7-12.2 ms
    to 7.1-7.4 ms on SQLite.
    """
    me, project_id, now = bindparam("me"), bindparam("project_id"), bindparam("now")
    mine = ~exists().where(Annotation.example_id == Example.id, Annotation.annotator_id == me)
    skip = _not_excluded(excluding)
    own_lease = (
        select(Lease.example_id)
        .join(Example, Example.id == Lease.example_id)
        .where(Lease.annotator_id == me, Lease.expires_at > now,
               Example.project_id == project_id, mine, skip)
        .order_by(Lease.id.desc()).limit(1)
        .scalar_subquery()
    )
    queued = (
        select(QueueItem.example_id)
        .join(Example, Example.id == QueueItem.example_id)
        .where(QueueItem.project_id == project_id, mine, skip,
               _served_to_others(QueueItem.example_id, me, now) < QueueItem.needed)
        .order_by(QueueItem.rank).limit(1)
        .scalar_subquery()
    )
    return select(func.coalesce(own_lease, queued))


def _lease(session: Session, example_id: int, me: int, until: datetime) -> None:
    """Take or renew the lease of ``me`` on the text, in one upsert."""
    stmt = dialect_insert(session, Lease).values(
        example_id=example_id, annotator_id=me, expires_at=until)
    session.execute(stmt.on_conflict_do_update(
        index_elements=[Lease.example_id, Lease.annotator_id],
        set_={"expires_at": stmt.excluded.expires_at}))


def undo_answer(
    settings: Settings,
    project_id: int,
    example_id: int,
    annotator: str,
    lease_s: float = LEASE_SECONDS,
) -> QueuedItem | None:
    """Take back ``annotator``'s answer to a text of the project and give them its lease again.

    One unit, serialised with the claims: the text goes from answered to leased with no moment
    in which another annotator could be served it (beyond the overlap).

    Returns:
        The text, to show again; None if it is not one of the project's texts.
    """
    with write_unit(settings) as session:
        _serialise_claims(session, project_id)
        item = _item(session, project_id, example_id)
        if item is None:
            return None
        me = get_or_create_annotator(session, annotator)
        session.execute(delete(Annotation).where(
            Annotation.example_id == example_id, Annotation.annotator_id == me))
        _lease(session, example_id, me, utcnow() + timedelta(seconds=lease_s))
        return item


def release(settings: Settings, example_id: int, annotator: str) -> None:
    """Give a text back (skip): others may be served it at once."""
    with write_unit(settings) as session:
        session.execute(delete(Lease).where(
            Lease.example_id == example_id,
            Lease.annotator_id.in_(select(Annotator.id).where(Annotator.name == annotator))))


def _random_free(session: Session, params: dict[str, Any]) -> int | None:
    """A uniformly random text nobody has labelled or leased, found by index range probes.

    ``params`` are the claim's (``me``, ``project_id``, ``now`` and, where given, ``exclude``).
    """
    bounds = session.execute(_id_bounds(), params).one()
    if bounds[0] is None:
        return None
    probe = _free_from(excluding="exclude" in params)
    for start in (random.randint(bounds[0], bounds[1]), bounds[0]):
        found = session.scalar(probe, {**params, "start": start})
        if found is not None:
            return int(found)
    return None


@functools.cache
def _id_bounds() -> Select[tuple[int | None, int | None]]:
    """The smallest and largest text id of ``project_id``: one round trip of two
    single-aggregate subqueries, each of which SQLite answers from the index."""
    of_project = Example.project_id == bindparam("project_id")
    return select(select(func.min(Example.id)).where(of_project).scalar_subquery(),
                  select(func.max(Example.id)).where(of_project).scalar_subquery())


@functools.cache
def _free_from(excluding: bool) -> Select[tuple[int]]:
    """The first text of ``project_id`` from id ``start`` on that nobody has labelled and
    nobody but ``me`` holds a live lease on at ``now`` (with ``excluding``, not in
    ``exclude``); built once per shape, as `_next_in_queue` is."""
    unlabelled = ~exists().where(Annotation.example_id == Example.id)
    unleased = ~exists().where(*_leased_to_others(Example.id, bindparam("me"), bindparam("now")))
    return (
        select(Example.id)
        .where(Example.project_id == bindparam("project_id"), _not_excluded(excluding),
               unlabelled, unleased, Example.id >= bindparam("start"))
        .order_by(Example.id).limit(1)
    )


def _not_excluded(excluding: bool) -> Any:
    """Texts not in the claim's ``exclude`` list (an expanding parameter), or all of them."""
    return Example.id.not_in(bindparam("exclude", expanding=True)) if excluding else true()


def queue_version(session: Session, project_id: int) -> int | None:
    """The model version the project's queue comes from (None: cold start or no queue)."""
    return session.scalar(
        select(func.max(ModelVersion.version))
        .join(QueueItem, QueueItem.model_version_id == ModelVersion.id)
        .where(QueueItem.project_id == project_id)
    )


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


def _written_at(session: Session, project_id: int) -> datetime | None:
    """When the project's queue was last written (by a round or the fast loop)."""
    return session.scalar(
        select(func.max(QueueItem.created_at)).where(QueueItem.project_id == project_id))


def labels_since_queue(session: Session, project_id: int) -> int:
    """Labels given since the project's queue was last written."""
    return labels_since(session, project_id, _written_at(session, project_id))


@dataclass(frozen=True)
class QueueStatus:
    """How fresh a project's queue is, for the people watching the loop.

    Attributes:
        ranked_at: when the queue was last written (UTC).
        model_version: the version whose predictions ranked it (a round's, or the fast loop's
            on that version's embeddings); None for a cold-start sample.
        remaining: queued texts nobody has labelled yet.
        labels_since: labels given since it was written.
    """

    ranked_at: datetime
    model_version: int | None
    remaining: int
    labels_since: int


def queue_status(settings: Settings, project_id: int) -> QueueStatus | None:
    """The project's `QueueStatus`; None while it has no queue."""
    with read_unit(settings) as session:
        ranked_at = _written_at(session, project_id)
        if ranked_at is None:
            return None
        return QueueStatus(ranked_at, queue_version(session, project_id),
                           queue_remaining(session, project_id),
                           labels_since(session, project_id, ranked_at))


def unlabelled_ids(session: Session, project_id: int) -> list[int]:
    return list(session.scalars(select(Example.id).where(_unlabelled(project_id)).order_by(Example.id)))


def item_for(settings: Settings, project_id: int, example_id: int) -> QueuedItem | None:
    """One text of the project as a queue item (its queue entry's reason if it has one)."""
    with read_unit(settings) as session:
        return _item(session, project_id, example_id)


def _item(session: Session, project_id: int, example_id: int) -> QueuedItem | None:
    row = session.execute(
        _item_query(), {"example_id": example_id, "project_id": project_id}).first()
    return None if row is None else QueuedItem(*row)


@functools.cache
def _item_query() -> Select[Any]:
    """A text of ``project_id`` with its queue entry's reason, score and prediction, if any."""
    project_id = bindparam("project_id")
    return (
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
        .where(Example.id == bindparam("example_id"), Example.project_id == project_id)
    )
