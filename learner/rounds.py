"""A training round, in two layers.

`train_and_rank` is the pure core: train a fresh model from a factory, evaluate it on held-out
labelled texts, score the pool and rank it with a query strategy. The simulation calls it with an
oracle; `run_round` calls it on a snapshot of the database and then, in one short write unit,
records the model version, the run's metrics and timings, and replaces the queue.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from db.engine import read_unit, write_unit
from db.errors import LabelwiseError
from db.models import Annotation, Example, Label, ModelVersion, QueueReason, RunStatus
from db.projects import ProjectConfig
from db.queue import QueueEntry, assign_overlap, interleave_audit, replace_queue, split_audit
from db.runs import finish_run, last_round_timings
from db.settings import Settings
from learner.errors import LearnerError

Progress = Callable[[str, float], None]

STAGE_SHARES = {"snapshot": 0.0, "train": 0.70, "evaluate": 0.05, "score": 0.20, "write": 0.05}
"""Each stage's share of a round's progress where the project has no timed round yet."""


def stage_shares(timings: dict[str, Any] | None) -> dict[str, float]:
    """Each stage's share of a round's progress: its share of the time the project's last
    round took (so the progress moves with the clock, and the time left can be told from it),
    or ``STAGE_SHARES`` without such a round."""
    if not timings or not timings.get("train_s") or "score_s" not in timings:
        return dict(STAGE_SHARES)
    seconds = {stage: max(0.0, float(timings.get(f"{stage}_s") or 0.0)) for stage in STAGE_SHARES}
    total = sum(seconds.values())
    return {stage: s / total for stage, s in seconds.items()}


class StagedProgress:
    """Reports a round's overall progress from each stage's own: ``(stage, fraction of that
    stage done)`` becomes ``(stage, start of the stage + its share * fraction)``."""

    def __init__(self, report: Progress, shares: dict[str, float]) -> None:
        self.report, self.shares, self.starts = report, shares, {}
        start = 0.0
        for stage, share in shares.items():
            self.starts[stage] = start
            start += share

    def __call__(self, stage: str, fraction: float = 0.0) -> None:
        self.report(stage, min(1.0, self.starts[stage] + self.shares[stage] * fraction))


class Estimator(Protocol):
    classes_: np.ndarray

    def fit(self, X: Sequence[str], y: Sequence[str], classes: Sequence[str] | None = None,
            progress: Callable[[float], None] | None = None) -> "Estimator": ...

    def predict_proba(self, X: Sequence[str]) -> np.ndarray: ...

    def predict_proba_and_embed(self, X: Sequence[str],
                                progress: Callable[[float], None] | None = None
                                ) -> tuple[np.ndarray, np.ndarray]: ...


class RoundCancelled(LearnerError):
    """The run was cancelled (or taken as failed) while it ran."""


class NotEnoughLabels(LearnerError):
    pass


@dataclass
class RoundInput:
    """What a round sees: the label set, training and held-out texts, the pool to rank."""

    labels: tuple[str, ...]
    train_texts: list[str]
    train_y: list[str]
    eval_texts: list[str]
    eval_y: list[str]
    pool_ids: list[int]
    pool_texts: list[str]
    train_ids: list[int] = field(default_factory=list)  # given: look for likely mislabels


@dataclass
class RoundResult:
    model: Any
    metrics: dict[str, Any]
    ranking: list[QueueEntry]
    timings: dict[str, float] = field(default_factory=dict)
    pool_embeddings: np.ndarray | None = None  # rows as data.pool_ids
    train_embeddings: np.ndarray | None = None  # rows as data.train_ids


def evaluate(labels: Sequence[str], y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class F1 and the confusion matrix (rows: truth, in label order)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    if not y_true:
        return {"n_eval": 0}
    labels = list(labels)
    present = sorted(set(y_true) | set(y_pred), key=labels.index)
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "n_eval": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "per_class_f1": {label: float(f) for label, f in zip(labels, per_class)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "labels": labels,
    }


def missing_labels(labels: Sequence[str], train_y: Sequence[str], k: int) -> dict[str, int]:
    """Labels with fewer than ``k`` training examples, with their counts."""
    counts = Counter(train_y)
    return {label: counts.get(label, 0) for label in labels if counts.get(label, 0) < k}


def _labels_and_train_y(session: Any, project_id: int) -> tuple[list[str], list[str]]:
    """The project's labels, and the final labels of its texts outside the audit slice."""
    from db.models import Project

    labels = [label.name for label in session.get(Project, project_id).labels]
    train_y = [label for label, audit in final_labels(session, project_id).values() if not audit]
    return labels, train_y


def labels_short(session: Any, project_id: int, k: int) -> tuple[int, dict[str, int]]:
    """What a round would find missing now: the project's number of labels, and its labels with
    fewer than ``k`` labelled texts outside the audit slice, with their counts (reads every
    label: for a click or a due round, not for a poll)."""
    labels, train_y = _labels_and_train_y(session, project_id)
    return len(labels), missing_labels(labels, train_y, k)


def shortfall(labels: Sequence[str], train_y: Sequence[str], k: int) -> str | None:
    """Why a round on these labels would fail for want of labels, or None: the one wording of
    the Model page, ``python -m app train`` and a round's `NotEnoughLabels`."""
    if len(labels) < 2:
        return "training needs a project with at least two labels."
    short = missing_labels(labels, train_y, k)
    if short:
        counts = ", ".join(f"{label} ({n})" for label, n in short.items())
        return (f"every label needs at least {k} labelled texts outside the audit slice (the "
                f"project's cold-start setting). Still short, with the texts each has: {counts}.")
    return None


def why_not_trainable(session: Any, project_id: int, k: int) -> str | None:
    """`shortfall` of the project as it is now: what the Model page and ``python -m app train``
    say instead of queueing a round that would fail at once."""
    return shortfall(*_labels_and_train_y(session, project_id), k)


def likely_mislabels(model: Any, data: RoundInput, proba: np.ndarray,
                     min_confidence: float = 0.8, limit: int = 100) -> list[dict[str, Any]]:
    """Labelled texts the model confidently puts elsewhere, most confident first (for review)."""
    best = np.argmax(proba, axis=1)
    found = [
        {"example_id": data.train_ids[i], "given": data.train_y[i],
         "predicted": str(model.classes_[best[i]]), "confidence": float(proba[i, best[i]])}
        for i in range(len(data.train_texts))
        if str(model.classes_[best[i]]) != data.train_y[i] and proba[i, best[i]] >= min_confidence
    ]
    return sorted(found, key=lambda s: -s["confidence"])[:limit]


def train_and_rank(
    data: RoundInput,
    factory: Callable[[], Any],
    strategy: str,
    n_queue: int,
    rng: np.random.Generator,
    audit_share: float = 0.0,
    progress: Progress | None = None,
) -> RoundResult:
    """Train a fresh model, evaluate it, and rank the pool (most informative first).

    ``progress`` is called with a stage (``train``, ``evaluate``, ``score``) and the fraction
    of that stage done (see `StagedProgress` for the round's overall fraction).
    """
    from learner.strategies import NEEDS_EMBEDDINGS, select, uncertainty_scores

    report = progress or (lambda stage, fraction: None)
    if len(set(data.train_y)) < 2:
        raise NotEnoughLabels("Training needs labelled examples of at least two labels.")
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    report("train", 0.0)
    model = factory()
    model.fit(data.train_texts, data.train_y, classes=list(data.labels),
              progress=lambda f: report("train", f))
    timings["train_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    report("evaluate", 0.0)
    metrics: dict[str, Any] = {}
    if data.eval_texts:
        predicted = model.classes_[np.argmax(model.predict_proba(data.eval_texts), axis=1)]
        metrics = evaluate(data.labels, data.eval_y, [str(p) for p in predicted])
    trained_in = getattr(model, "training_precision_", None)
    if trained_in:  # fp32, or bf16 autocast (CUDA, a CPU with AMX, or one timed faster in it)
        metrics["training_precision"] = trained_in
    speedup = getattr(model, "training_bf16_speedup_", None)
    if speedup is not None:
        metrics["training_bf16_speedup"] = speedup
    metrics["label_counts"] = dict(Counter(data.train_y))
    metrics["n_train"] = len(data.train_y)
    metrics["n_pool"] = len(data.pool_texts)  # texts scored (at most the project's pool_cap)
    train_embeddings = None
    if data.train_ids:
        train_proba, train_embeddings = model.predict_proba_and_embed(data.train_texts)
        metrics["suspects"] = likely_mislabels(model, data, train_proba)
    timings["evaluate_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    report("score", 0.0)
    ranking: list[QueueEntry] = []
    pool_embeddings = None
    if data.pool_texts:
        n_ranked = min(n_queue, len(data.pool_texts))
        # the longest stage on a CPU (minutes for 20,000 texts): its progress moves per batch,
        # and a cancelled run stops at the next batch
        proba, pool_embeddings = model.predict_proba_and_embed(
            data.pool_texts, progress=lambda f: report("score", f))
        labelled_embeddings = None
        if strategy in NEEDS_EMBEDDINGS:
            labelled_embeddings = (train_embeddings if train_embeddings is not None
                                   else model.embed(data.train_texts))
        order = select(strategy, proba, n_ranked, rng=rng, embeddings=pool_embeddings,
                       labeled_embeddings=labelled_embeddings)
        scores = uncertainty_scores(proba, strategy)
        reason = QueueReason.RANDOM.value if strategy == "random" else QueueReason.UNCERTAIN.value

        def entry(i: int, why: str) -> QueueEntry:
            best = int(np.argmax(proba[i]))
            return QueueEntry(
                example_id=data.pool_ids[i],
                reason=why,
                score=float(scores[i]),
                predicted_label=str(model.classes_[best]),
                confidence=float(proba[i, best]),
            )

        chosen, audit = split_audit(len(data.pool_texts), [int(i) for i in order],
                                    audit_share, rng)
        ranking = interleave_audit(
            [entry(i, reason) for i in chosen],
            [entry(i, QueueReason.AUDIT.value) for i in audit],
            audit_share,
        )
    timings["score_s"] = time.perf_counter() - t0
    summary = getattr(model, "scoring_summary", None)
    if callable(summary):  # the precision the pool was scored in, and the check behind it
        metrics["scoring"] = summary()
    return RoundResult(model=model, metrics=metrics, ranking=ranking, timings=timings,
                       pool_embeddings=pool_embeddings, train_embeddings=train_embeddings)


# ---------------------------------------------------------------------------------------------
# The database round


@dataclass
class Snapshot:
    project_id: int
    config: ProjectConfig
    data: RoundInput
    n_labels: int
    last_artefact: str | None


def final_labels(session: Any, project_id: int) -> dict[int, tuple[str, bool]]:
    """Per labelled example: (final label, whether it was labelled from the audit slice).

    The final label is a reviewer's gold label where there is one, else the vote of
    `db.annotations.final_label`: the rules exports use too.
    """
    from sqlalchemy import select

    from db.annotations import final_label

    rows = session.execute(
        select(Annotation.example_id, Label.name, Annotation.queue_reason)
        .join(Label, Label.id == Annotation.label_id)
        .join(Example, Example.id == Annotation.example_id)
        .where(Example.project_id == project_id)
        .order_by(Annotation.example_id, Annotation.updated_at, Annotation.id)
    ).all()
    given: dict[int, list[str]] = {}
    audit: set[int] = set()
    for example_id, label, reason in rows:
        given.setdefault(example_id, []).append(label)
        if reason == QueueReason.AUDIT.value:
            audit.add(example_id)
    gold = dict(session.execute(
        select(Example.id, Label.name)
        .join(Label, Label.id == Example.gold_label_id)
        .where(Example.project_id == project_id)
    ).all())
    return {i: (gold.get(i) or final_label(labels), i in audit) for i, labels in given.items()}


def take_snapshot(settings: Settings, project_id: int, rng: np.random.Generator) -> Snapshot:
    """Read everything a round needs in one consistent read unit."""
    from sqlalchemy import select

    from db.models import Project
    from db.queue import unlabelled_ids

    with read_unit(settings) as session:
        project = session.get(Project, project_id)
        if project is None:
            raise LabelwiseError(f"No project with id {project_id}.")
        config = ProjectConfig.from_dict(project.settings)
        labels = tuple(label.name for label in project.labels)
        finals = final_labels(session, project_id)
        ids = sorted(finals)
        texts = dict(session.execute(select(Example.id, Example.text).where(Example.id.in_(ids))).all()) if ids else {}
        train = [(i, texts[i], finals[i][0]) for i in ids if not finals[i][1]]
        held = [(texts[i], finals[i][0]) for i in ids if finals[i][1]]
        pool = unlabelled_ids(session, project_id)
        if len(pool) > config.pool_cap:
            pool = sorted(rng.choice(pool, size=config.pool_cap, replace=False).tolist())
        pool_texts = dict(session.execute(select(Example.id, Example.text).where(Example.id.in_(pool))).all()) if pool else {}
        last = session.execute(
            select(ModelVersion.artefact_path)
            .where(ModelVersion.project_id == project_id)
            .order_by(ModelVersion.version.desc())
            .limit(1)
        ).scalar()
    data = RoundInput(
        labels=labels,
        train_texts=[t for _, t, _ in train],
        train_y=[y for _, _, y in train],
        train_ids=[i for i, _, _ in train],
        eval_texts=[t for t, _ in held],
        eval_y=[y for _, y in held],
        pool_ids=list(pool),
        pool_texts=[pool_texts[i] for i in pool],
    )
    return Snapshot(project_id, config, data, n_labels=len(ids), last_artefact=last)


def model_factory(config: ProjectConfig, init_from: str | None = None) -> Callable[[], Any]:
    """A factory building a fresh estimator per round (small-text's shape)."""

    def build() -> Any:
        from learner.model import TrainConfig, TransformerClassifier

        return TransformerClassifier(
            config.model_path,
            TrainConfig(max_length=config.max_length, seed=config.seed),
            init_from=init_from,
        )

    return build


def run_round(
    settings: Settings,
    run_id: int,
    project_id: int,
    progress: Progress | None = None,
    factory: Callable[[], Any] | None = None,
) -> int:
    """Run one database round for a claimed run; returns the new model version number.

    Nothing is written until the very end: the artefact is saved under a temporary name, then
    one write unit adds the model version, replaces the queue and closes the run. A worker killed
    before that leaves the previous model and queue serving and every label untouched.

    ``progress`` gets the stage and the round's overall fraction, each stage weighted by its
    share of the project's last round's time (`stage_shares`).
    """
    report = StagedProgress(progress or (lambda stage, fraction: None),
                            stage_shares(last_round_timings(settings, project_id)))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    report("snapshot")
    rng = np.random.default_rng(run_id)
    snap = take_snapshot(settings, project_id, rng)
    config = snap.config
    why = shortfall(snap.data.labels, snap.data.train_y, config.cold_start_k)
    if why is not None:
        raise NotEnoughLabels(f"Not enough labels to train: {why}")
    timings["snapshot_s"] = time.perf_counter() - t0
    if factory is None:
        factory = model_factory(config, snap.last_artefact if config.warm_start else None)
    result = train_and_rank(
        snap.data,
        factory,
        config.strategy,
        config.queue_size,
        rng,
        audit_share=config.audit_share,
        progress=report,
    )
    timings.update(result.timings)
    result.ranking = assign_overlap(result.ranking, config.overlap, config.agreement_share, rng)

    t0 = time.perf_counter()
    report("write")
    final_dir = settings.models_dir / f"project-{project_id}" / f"run-{run_id}"
    tmp_dir = final_dir.with_name(final_dir.name + ".partial")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    result.model.save(tmp_dir)
    shutil.rmtree(final_dir, ignore_errors=True)
    tmp_dir.rename(final_dir)
    try:
        version = _commit_round(settings, run_id, project_id, snap, result, final_dir, timings, t0)
    except BaseException:
        shutil.rmtree(final_dir, ignore_errors=True)
        raise
    return version


def _stability(session: Any, project_id: int, ranking: Sequence[QueueEntry],
               top: int = 50) -> dict[str, float] | None:
    """How much the new round changed predictions and the head of the queue (a stopping hint).

    Compares with the queue the previous model left: the share of texts in both whose predicted
    label changed, and the overlap of the two queues' top ``top`` texts.
    """
    from sqlalchemy import select

    from db.models import QueueItem

    previous = session.execute(
        select(QueueItem.example_id, QueueItem.predicted_label)
        .where(QueueItem.project_id == project_id, QueueItem.model_version_id.is_not(None))
        .order_by(QueueItem.rank)
    ).all()
    if not previous or not ranking:
        return None
    before = dict(previous)
    shared = [e for e in ranking if e.example_id in before]
    changed = sum(before[e.example_id] != e.predicted_label for e in shared)
    head_before = {example_id for example_id, _ in previous[:top]}
    head_now = {e.example_id for e in ranking[:top]}
    return {
        "prediction_change": changed / len(shared) if shared else 1.0,
        "top_overlap": len(head_before & head_now) / max(1, min(len(head_before), len(head_now))),
        "compared": len(shared),
    }


def store_embeddings(session: Any, project_id: int, version_id: int, data: RoundInput,
                     result: RoundResult) -> None:
    """Keep this version's embeddings of the scored pool and the training texts (float16), for
    the fast loop; the previous version's go."""
    from sqlalchemy import delete, insert, select

    from db.models import Embedding

    session.execute(delete(Embedding).where(Embedding.example_id.in_(
        select(Example.id).where(Example.project_id == project_id))))
    rows = []
    for ids, vectors in ((data.pool_ids, result.pool_embeddings),
                         (data.train_ids, result.train_embeddings)):
        if vectors is not None:
            half = np.asarray(vectors, dtype=np.float16)
            rows += [{"example_id": i, "model_version_id": version_id, "vector": v.tobytes()}
                     for i, v in zip(ids, half)]
    for start in range(0, len(rows), 5000):
        session.execute(insert(Embedding), rows[start:start + 5000])


def _commit_round(
    settings: Settings,
    run_id: int,
    project_id: int,
    snap: Snapshot,
    result: RoundResult,
    artefact: Path,
    timings: dict[str, float],
    write_started: float,
) -> int:
    from sqlalchemy import func, select

    with write_unit(settings) as session:
        version = 1 + int(
            session.scalar(
                select(func.coalesce(func.max(ModelVersion.version), 0)).where(
                    ModelVersion.project_id == project_id
                )
            )
        )
        row = ModelVersion(
            project_id=project_id,
            version=version,
            base_model=snap.config.model_path,
            artefact_path=str(artefact),
            n_labels=snap.n_labels,
            metrics=result.metrics,
        )
        stability = _stability(session, project_id, result.ranking)
        if stability is not None:
            result.metrics["stability"] = stability
        row.metrics = result.metrics
        session.add(row)
        session.flush()
        replace_queue(session, project_id, result.ranking, row.id)
        store_embeddings(session, project_id, row.id, snap.data, result)
        timings["write_s"] = time.perf_counter() - write_started
        closed = finish_run(
            session,
            run_id,
            RunStatus.DONE,
            metrics=result.metrics,
            timings={k: round(v, 3) for k, v in timings.items()},
            n_labels=snap.n_labels,
            model_version_id=row.id,
        )
        if not closed:
            raise RoundCancelled("The run was cancelled or failed while it trained; nothing kept.")
    return version
