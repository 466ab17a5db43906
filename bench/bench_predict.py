"""Benchmark predictions for a project's texts: the product's path (``python -m app predict``, a
worker's prediction job) against scoring the same texts alone.

Usage::

    .venv/bin/python -m bench.bench_predict --out bench/out/predict.json
    .venv/bin/python -m bench.bench_predict --quick      # 256 texts

A fresh SQLite database gets ``--train`` labelled BBC News texts and ``--texts`` unlabelled ones
(as ``bench_round`` writes them); the default model, fine-tuned on the labelled ones for one
epoch (its speed, not its accuracy, is measured), is saved as the project's model version 1.
Then, alternating, ``--repeats`` times each:

* ``stream``: load the saved model and score the unlabelled texts (read from the database
  beforehand) through ``predict_proba_stream``: scoring alone;
* ``predict``: ``learner.predicting.predict_to_file(..., unlabelled_only=True)`` to a JSONL
  file: load the model, read the texts from the database as an export does, score them, write
  each row with its prediction, rename the file into place.

Both pay a fresh load and the scoring precision's decision, as a new ``predict`` process does.
The ratio of their medians is what the product's path costs beyond scoring. Every repeat's
predicted labels are compared with the stream's of the same repeat.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from bench.bench_round import write_pool
from bench.bench_scoring import peak_rss_mb, sync
from bench.jsonfile import emit
from db.engine import dispose_all, read_unit, write_unit
from db.importing import import_file
from db.migrate import upgrade
from db.models import Annotation, Example, ModelVersion
from db.settings import Settings


def build(folder: Path, n_train: int, n_texts: int, model: str, device: str
          ) -> tuple[Settings, list[str], float]:
    """The database, its project's model version 1 and the unlabelled texts in id order;
    returns them with the fine-tuning's seconds."""
    from learner.model import TrainConfig, TransformerClassifier

    settings = Settings(database_url=f"sqlite:///{folder / 'predict.db'}", data_dir=folder)
    upgrade(settings)
    write_pool(folder / "pool.jsonl", n_train, n_texts)
    import_file(settings, folder / "pool.jsonl", "bench", label_field="label", add_labels=True)
    with read_unit(settings) as session:
        labelled = set(session.scalars(select(Annotation.example_id)))
        rows = session.execute(select(Example.id, Example.text).order_by(Example.id)).all()
        project_id = session.scalar(select(Example.project_id).limit(1))
    lines = [json.loads(line) for line in (folder / "pool.jsonl").read_text("utf-8").splitlines()]
    train = [(r["text"], r["label"]) for r in lines if "label" in r]
    t = time.perf_counter()
    clf = TransformerClassifier(model, TrainConfig(max_length=128, epochs=1, device=device,
                                                   seed=0))
    clf.fit([text for text, _ in train], [label for _, label in train])
    fit_s = time.perf_counter() - t
    clf.save(folder / "model-v1")
    with write_unit(settings) as session:
        session.add(ModelVersion(project_id=project_id, version=1, base_model=model,
                                 artefact_path=str(folder / "model-v1"), n_labels=len(train)))
    return settings, [text for i, text in rows if i not in labelled], fit_s


def stream_once(artefact: Path, texts: list[str], device: str) -> tuple[float, np.ndarray, str]:
    from learner.model import TransformerClassifier

    t = time.perf_counter()
    clf = TransformerClassifier.load(artefact, device=device)
    best = np.concatenate([p.argmax(1) for p in clf.predict_proba_stream(texts)])
    sync(device)
    return time.perf_counter() - t, clf.classes_[best], clf.scoring_summary()["precision"]


def predict_once(settings: Settings, out: Path, device: str) -> tuple[float, np.ndarray, dict]:
    from learner.predicting import predict_to_file

    t = time.perf_counter()
    report = predict_to_file(settings, "bench", out, "jsonl", unlabelled_only=True,
                             device=device)
    seconds = time.perf_counter() - t
    with out.open(encoding="utf-8") as f:
        predicted = np.array([json.loads(line)["predicted"] for line in f])
    return seconds, predicted, {"rows": report.rows, "bytes": out.stat().st_size,
                                "precision": report.scoring.get("precision")}


def run(n_texts: int, n_train: int, repeats: int, model: str, device: str | None = None
        ) -> dict[str, Any]:
    from learner.device import resolve_device

    device = resolve_device(device)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        settings, texts, fit_s = build(folder, n_train, n_texts, model, device)
        seconds: dict[str, list[float]] = {"stream": [], "predict": []}
        precisions: dict[str, list[str]] = {"stream": [], "predict": []}
        agreement, written = [], {}
        rss_before = peak_rss_mb()
        for _ in range(repeats):
            s, from_stream, precision = stream_once(folder / "model-v1", texts, device)
            seconds["stream"].append(round(s, 3))
            precisions["stream"].append(precision)
            s, from_predict, written = predict_once(settings, folder / "predictions.jsonl",
                                                    device)
            seconds["predict"].append(round(s, 3))
            precisions["predict"].append(written.pop("precision"))
            agreement.append(float(np.mean(from_stream == from_predict)))
        dispose_all()
    rates = {k: round(n_texts / statistics.median(v), 1) for k, v in seconds.items()}
    return {
        "device": device, "model": model, "texts": n_texts, "train": n_train,
        "repeats": repeats, "fit_s": round(fit_s, 2), "seconds": seconds,
        "texts_per_s": rates, "ratio": round(rates["predict"] / rates["stream"], 3),
        "precisions": precisions, "same_label_share": min(agreement), **written,
        "peak_rss_before_mb": rss_before, "peak_rss_after_mb": peak_rss_mb(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 texts")
    parser.add_argument("--texts", type=int,
                        help="unlabelled texts (default: 512 on a CPU, 20,000 on a GPU)")
    parser.add_argument("--train", type=int, default=64,
                        help="labelled texts to fine-tune on (the model's quality is not what "
                             "is measured)")
    parser.add_argument("--repeats", type=int,
                        help="runs of each variant (default: 3 on a GPU, 2 on a CPU, where "
                             "make bench must stay under 30 minutes)")
    parser.add_argument("--model", default=Settings.from_env().model_path,
                        help="model spec (default: LABELWISE_MODEL or the builtin MiniLM)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if present)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from learner.device import resolve_device

    gpu = resolve_device(args.device).startswith("cuda")
    n = args.texts or (256 if args.quick else 20_000 if gpu else 512)
    repeats = args.repeats or (3 if gpu and not args.quick else 2)
    emit(run(n, args.train, repeats, args.model, args.device), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
