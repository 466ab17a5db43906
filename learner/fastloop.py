"""The fast loop between rounds: a cheap model on the last round's embeddings re-ranks the pool.

Fine-tuning the transformer takes minutes on a CPU; an annotator gives a label every few
seconds. So after every few answers (``fast_loop_every``) a logistic regression, trained on the
embeddings the current model version computed for the labelled texts, scores the unlabelled
pool's embeddings and the queue is re-ranked with the project's strategy: the queue follows the
newest labels, and the next transformer round refreshes the embeddings.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import select

from db.engine import read_unit, write_unit
from db.models import Embedding, ModelVersion, QueueReason
from db.projects import ProjectConfig
from db.queue import QueueEntry, assign_overlap, interleave_audit, replace_queue, split_audit
from db.settings import Settings


def rank_on_embeddings(
    train_vectors: np.ndarray,
    train_y: Sequence[str],
    pool_vectors: np.ndarray,
    strategy: str,
    n: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit a logistic regression on labelled embeddings and rank the pool.

    Returns:
        ``(order, proba, classes)``: pool indices best first, the pool's probabilities and
        their column labels.
    """
    from sklearn.linear_model import LogisticRegression

    from learner.strategies import select as select_strategy

    def unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    train, pool = unit(train_vectors), unit(pool_vectors)
    model = LogisticRegression(C=10.0, max_iter=2000).fit(train, list(train_y))
    # Float32 weights: float64 ones (lbfgs's) make the product copy the whole pool to float64.
    model.coef_ = model.coef_.astype(np.float32)
    model.intercept_ = model.intercept_.astype(np.float32)
    proba = model.predict_proba(pool)
    order = select_strategy(strategy, proba, n, rng=rng, embeddings=pool,
                            labeled_embeddings=train)
    return order, proba, model.classes_


def fast_rerank(settings: Settings, project_id: int, config: ProjectConfig,
                rng: np.random.Generator | None = None) -> dict[str, float] | None:
    """Re-rank the project's queue on the latest version's embeddings; None if it cannot.

    Safe while a round trains: if that round commits a newer version before this ranking is
    written, the ranking is dropped and the round's queue stays.

    Returns:
        Timings in seconds (``read_s``, ``rank_s``, ``write_s``, the last with its commit)
        and the queue size.
    """
    from learner.rounds import final_labels
    from learner.strategies import uncertainty_scores

    t0 = time.perf_counter()
    with read_unit(settings) as session:
        version = _latest_version(session, project_id)
        if version is None:
            return None
        # Core rows through the session's connection: no ORM row loading for 100,000s of rows.
        stored = session.connection().execute(
            select(Embedding.example_id, Embedding.vector)
            .where(Embedding.model_version_id == version)).all()
        finals = final_labels(session, project_id)
    if not stored:
        return None
    example_ids, blobs = zip(*stored)
    vectors = np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(len(example_ids), -1)
    labelled = [k for k, i in enumerate(example_ids) if i in finals and not finals[i][1]]
    pool = [k for k, i in enumerate(example_ids) if i not in finals]
    train_y = [finals[example_ids[k]][0] for k in labelled]
    if len(set(train_y)) < 2 or not pool:
        return None
    read_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    rng = rng or np.random.default_rng([config.seed, project_id, len(finals)])
    n = min(config.queue_size, len(pool))
    order, proba, classes = rank_on_embeddings(vectors[labelled], train_y, vectors[pool],
                                               config.strategy, n, rng)
    scores = uncertainty_scores(proba, config.strategy)
    reason = QueueReason.RANDOM.value if config.strategy == "random" else QueueReason.UNCERTAIN.value

    def entry(k: int, why: str) -> QueueEntry:
        best = int(np.argmax(proba[k]))
        return QueueEntry(example_ids[pool[k]], why, float(scores[k]), str(classes[best]),
                          float(proba[k, best]))

    chosen, audit = split_audit(len(pool), [int(k) for k in order], config.audit_share, rng)
    entries = assign_overlap(interleave_audit(
        [entry(k, reason) for k in chosen],
        [entry(k, QueueReason.AUDIT.value) for k in audit],
        config.audit_share), config.overlap, config.agreement_share, rng)
    rank_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    with write_unit(settings) as session:
        if _latest_version(session, project_id) != version:
            return None  # a round committed meanwhile: its queue is newer than this ranking
        replace_queue(session, project_id, entries, version)
    write_s = time.perf_counter() - t0  # with the commit
    return {"read_s": read_s, "rank_s": rank_s, "write_s": write_s,
            "queued": float(len(entries)), "pool": float(len(pool))}


def _latest_version(session: Any, project_id: int) -> int | None:
    """The id of the project's newest model version, if any."""
    return session.execute(
        select(ModelVersion.id).where(ModelVersion.project_id == project_id)
        .order_by(ModelVersion.version.desc()).limit(1)).scalar()
