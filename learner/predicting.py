"""A model version's predictions for a project's texts, written as an export with added columns.

This is what the loop is for in the end: the texts nobody labelled get the trained model's
label. Each row is the export's own by example (``id, text, label, source_row, n_annotations,
meta``; ``label`` is the human one, empty where there is none) followed by ``predicted``,
``confidence`` (the predicted label's probability), ``probabilities`` (every label's, as a
JSON object) and ``model_version``. The texts stream from the database through
`TransformerClassifier.predict_proba_stream` in chunks, so a pool of any size is scored in
bounded memory, with the next chunk tokenised while this one is scored; the output file is
written beside its target and renamed at the end, as an export is, so a failed or stopped run
leaves nothing half-written.

On a CPU a large pool takes hours, so unlike an export the run does not read one snapshot of
the database: each batch of texts is read in a short transaction of its own (``snapshot=False``
of `db.exporting.export`), and a row's human label is the one it had when its batch was read.
One read transaction held for the whole run would keep SQLite's write-ahead log from
restarting (it would grow with every label and queue refresh meanwhile) and PostgreSQL's vacuum
from removing the rows those writes replace.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from db.engine import read_unit
from db.exporting import BATCH_ROWS, Extension, ExportFilters, export
from db.projects import get_project, project_stats
from db.runs import find_version
from db.settings import Settings
from learner.errors import LearnerError

PREDICTION_COLUMNS = ("predicted", "confidence", "probabilities", "model_version")
DIGITS = 6
"""Decimals kept of each probability."""

Progress = Callable[[int, int], None]
"""Called with (texts scored so far, texts to score) before the first batch and after each."""


class PredictionCancelled(LearnerError):
    """A prediction job was cancelled while it ran."""


@dataclass(frozen=True)
class PredictionReport:
    """What a prediction run wrote, and with what.

    Attributes:
        rows: rows written.
        version: the model version that predicted.
        classes: the labels it predicts (those it was trained on).
        warning: how its labels differ from the project's now (`label_drift`), if they do.
        scoring: the device and precision it scored in (`scoring_summary`).
        seconds: the run's wall time.
    """

    rows: int
    version: int
    classes: tuple[str, ...]
    warning: str | None = None
    scoring: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def label_drift(version: int, classes: Sequence[str], labels: Sequence[str]) -> str | None:
    """What a user must know when a model's labels are not the project's any more, or None.

    Args:
        version: the model version.
        classes: the labels it was trained on (and predicts).
        labels: the project's labels now.
    """
    gone = [c for c in classes if c not in labels]
    new = [label for label in labels if label not in classes]
    if not gone and not new:
        return None
    parts = []
    if gone:
        parts.append(f"it predicts {', '.join(gone)}, which the project no longer has (renamed "
                     "or removed since)")
    if new:
        parts.append(f"it never predicts {', '.join(new)} (added since)")
    return (f"Model v{version} was trained on another label set: {'; '.join(parts)}. Train a "
            "new round for predictions under the current labels.")


def predict_to_file(
    settings: Settings,
    project: str,
    out: Path | str | BinaryIO,
    fmt: str,
    *,
    version: int | None = None,
    unlabelled_only: bool = False,
    device: str | None = None,
    chunk_size: int | None = None,
    batch_rows: int = BATCH_ROWS,
    progress: Progress | None = None,
) -> PredictionReport:
    """Write a model version's predictions for a project's texts (see the module's docstring).

    Args:
        settings: which database (and where the models are).
        project: the project's name.
        out: a path (written beside it, then renamed) or a binary stream.
        fmt: ``jsonl``, ``csv`` or ``parquet``.
        version: the model version; the latest when None.
        unlabelled_only: only the texts without a label (the others are not scored).
        device: ``cpu``, ``cuda``, ...; None picks CUDA where there is a GPU.
        chunk_size: texts tokenised and scored at a time (the model's default when None).
        batch_rows: rows read from the database at a time (as an export reads them).
        progress: called before the first batch and after each with (texts scored, texts to
            score); an exception it raises stops the run at that batch, and nothing is
            written.

    Returns:
        What was written, and with which model.

    Raises:
        NotFound: no such project, or it has no such model version (or none).
        InvalidArtefact: the version's files are missing or damaged.
        LabelwiseError: unknown format.
        ExportFailed: the output could not be written.
    """
    from learner.model import SCORING_CHUNK, TransformerClassifier

    started = time.perf_counter()
    with read_unit(settings) as session:
        info = get_project(session, project)
        stats = project_stats(session, project)
    chosen = find_version(settings, info.id, version)
    model = TransformerClassifier.load(chosen.artefact_path, device=device)
    classes = tuple(str(c) for c in model.classes_)
    total = stats.examples - stats.labelled if unlabelled_only else stats.examples
    report = progress or (lambda done, total: None)
    size = chunk_size or SCORING_CHUNK
    report(0, total)

    def predicted(batches: Iterator[list[tuple[Any, ...]]]) -> Iterator[list[tuple[Any, ...]]]:
        # The model reads the texts a chunk ahead of the probabilities it yields: the rows
        # wait here, in order, until their probabilities come.
        waiting: deque[list[tuple[Any, ...]]] = deque()

        def texts() -> Iterator[str]:
            for rows in batches:
                if unlabelled_only:
                    rows = [row for row in rows if row[2] is None]
                if rows:
                    waiting.append(rows)
                    for row in rows:
                        yield row[1]

        done = 0

        def batch_scored(n: int) -> None:
            nonlocal done
            done += n
            report(done, total)

        scored = np.zeros((0, len(classes)))
        for proba in model.predict_proba_stream(texts(), size, batch_scored):
            scored = np.concatenate([scored, proba]) if len(scored) else proba
            while waiting and len(waiting[0]) <= len(scored):
                rows = waiting.popleft()
                yield _with_predictions(rows, scored[: len(rows)], classes, chosen.version)
                scored = scored[len(rows):]

    written = export(
        settings, project, out, fmt, ExportFilters(include_unlabelled=True),
        batch_rows=batch_rows,
        extend=Extension(PREDICTION_COLUMNS, ("name", "float", "json", "int"), predicted),
        snapshot=False,
    )
    return PredictionReport(
        rows=written,
        version=chosen.version,
        classes=classes,
        warning=label_drift(chosen.version, classes, info.labels),
        scoring=model.scoring_summary(),
        seconds=time.perf_counter() - started,
    )


def _with_predictions(rows: list[tuple[Any, ...]], proba: np.ndarray, classes: tuple[str, ...],
                      version: int) -> list[tuple[Any, ...]]:
    rounded = np.round(proba, DIGITS).tolist()
    best = np.argmax(proba, axis=1).tolist()
    return [
        row + (classes[k], p[k], json.dumps(dict(zip(classes, p)), ensure_ascii=False), version)
        for row, k, p in zip(rows, best, rounded)
    ]
