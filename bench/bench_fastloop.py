"""Benchmark the fast loop between rounds: one re-rank of the queue on stored embeddings.

Usage::

    .venv/bin/python -m bench.bench_fastloop --out bench/out/fastloop.json
    .venv/bin/python -m bench.bench_fastloop --quick      # the 20,000-text pool only

For each pool size a fresh SQLite database gets the BBC News demo texts (repeated with a
counter appended until there are enough, as in ``bench_round``): ``--labels`` of them with their
label, the others unlabelled, then a model version and one stored float16 embedding per text, as
a round leaves them. Then ``fast_rerank`` (what the worker calls after every few answers) runs
``--repeats`` times per strategy: read the embeddings and labels, fit the logistic regression,
rank the pool with the strategy, write the queue. Its own timings are recorded, and the wall
time around the call. At the first size ``diverse`` also runs side by side with modAL's own
ranked batch sampling on the same shortlist.

The embeddings are 384-dimensional (MiniLM-L6's width) LSA vectors of the texts (TF-IDF, then a
truncated SVD fitted on the corpus), each repeat of a text with a little noise: computing the
model's own for 20,000 texts takes minutes on a CPU, and the re-rank's cost depends on the
vectors' number and width, not on where they came from.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import insert, select

from bench.bench_round import write_pool
from bench.jsonfile import emit
from db.demo import iter_corpus
from db.engine import dispose_all, read_unit, write_unit
from db.importing import import_file
from db.migrate import upgrade
from db.models import Embedding, Example, ModelVersion
from db.projects import ProjectConfig, update_project
from db.settings import Settings

DIM = 384
STRATEGIES = ("margin", "entropy", "least_confidence", "diverse", "random")


def corpus_vectors(dim: int = DIM, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """The demo corpus's labels in ``write_pool``'s order and its texts' unit-length LSA vectors."""
    import random

    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    rows = list(iter_corpus())
    random.Random(0).shuffle(rows)  # write_pool's order
    texts = [row["text"] for row in rows]
    tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2).fit_transform(texts)
    vectors = TruncatedSVD(dim, random_state=seed).fit_transform(tfidf)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return [row["label"] for row in rows], vectors.astype(np.float32)


def store_vectors(settings: Settings, project_id: int, base: np.ndarray, seed: int = 0) -> int:
    """A model version and one embedding per example (text ``i`` gets ``base[i % len(base)]``
    plus noise), as a round stores them; returns the version's id."""
    rng = np.random.default_rng(seed)
    with write_unit(settings) as session:
        version = ModelVersion(project_id=project_id, version=1, base_model="bench",
                               artefact_path="(none: bench_fastloop)", n_labels=0)
        session.add(version)
        session.flush()
        ids = session.scalars(select(Example.id).where(Example.project_id == project_id)
                              .order_by(Example.id)).all()
        for start in range(0, len(ids), 5000):
            chunk = ids[start:start + 5000]
            noise = rng.normal(0.0, 0.02, size=(len(chunk), base.shape[1]))
            vectors = (base[np.arange(start, start + len(chunk)) % len(base)] + noise)
            session.execute(insert(Embedding), [
                {"example_id": i, "model_version_id": version.id,
                 "vector": v.astype(np.float16).tobytes()} for i, v in zip(chunk, vectors)])
        return int(version.id)


def run(size: int, n_labels: int, repeats: int, labels: list[str], base: np.ndarray,
        against_modal: bool = True) -> dict[str, object]:
    """Every strategy's re-rank timings on a pool of ``size`` unlabelled texts (and, with
    ``against_modal``, `diverse_against_modal`)."""
    from db.queue import labels_since_queue
    from learner.fastloop import fast_rerank

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        settings = Settings(database_url=f"sqlite:///{folder / 'fastloop.db'}", data_dir=folder)
        upgrade(settings)
        t0 = time.perf_counter()
        write_pool(folder / "pool.jsonl", n_labels, size)
        import_file(settings, folder / "pool.jsonl", "bench", label_field="label",
                    add_labels=True)
        with write_unit(settings) as session:
            project_id = update_project(session, "bench", settings={}).id
        store_vectors(settings, project_id, base)
        build_s = time.perf_counter() - t0
        t = time.perf_counter()  # the first call imports scikit-learn and modAL (and torch)
        fast_rerank(settings, project_id, ProjectConfig(), rng=np.random.default_rng(0))
        first_call_s = time.perf_counter() - t
        strategies = {}
        for strategy in STRATEGIES:
            config = ProjectConfig(strategy=strategy)
            calls = []
            for repeat in range(repeats):
                rng = np.random.default_rng([repeat, size])
                t = time.perf_counter()
                timings = fast_rerank(settings, project_id, config, rng=rng)
                wall = time.perf_counter() - t
                if timings is None:
                    raise RuntimeError(f"fast_rerank found nothing to rank ({strategy})")
                calls.append({**timings, "wall_s": wall})
            strategies[strategy] = _summary(calls)
        t = time.perf_counter()
        with read_unit(settings) as session:
            labels_since_queue(session, project_id)
        check_s = time.perf_counter() - t
        dispose_all()
    return {"pool": size, "labels": n_labels, "dim": int(base.shape[1]), "repeats": repeats,
            "queue_size": ProjectConfig().queue_size, "build_s": round(build_s, 1),
            "due_check_s": round(check_s, 4), "first_call_s": round(first_call_s, 3),
            "strategies": strategies,
            "diverse_against_modal": diverse_against_modal(
                labels, base, n_labels, size, ProjectConfig().queue_size) if against_modal
            else None}


def diverse_against_modal(labels: list[str], base: np.ndarray, n_labels: int, size: int,
                          queue_size: int) -> dict[str, object]:
    """The ``diverse`` ranking of a ``size`` pool, side by side: the product's against modAL's.

    Both rank the same shortlist (the ``10 * queue_size`` least confident texts, as
    ``diverse_uncertainty`` picks it) of unit-length vectors under a logistic regression fitted
    on ``n_labels`` labelled ones, and must pick the same texts in the same order.
    """
    from modAL.batch import uncertainty_batch_sampling
    from sklearn.linear_model import LogisticRegression

    from learner.strategies import PrecomputedProba, diverse_uncertainty, least_confidence

    class Learner(PrecomputedProba):  # what modAL's ranked batch reads from a learner
        on_transformed = False

        def __init__(self, proba: np.ndarray, X_training: np.ndarray) -> None:
            super().__init__(proba)
            self.X_training = X_training

    rng = np.random.default_rng(1)
    rows = base[np.arange(n_labels + size) % len(base)]
    vectors = rows + rng.normal(0.0, 0.02, size=rows.shape)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    train, pool = vectors[:n_labels], vectors[n_labels:]
    train_y = [labels[i % len(base)] for i in range(n_labels)]
    proba = LogisticRegression(C=10.0, max_iter=2000).fit(train, train_y).predict_proba(pool)
    t = time.perf_counter()
    ours = diverse_uncertainty(proba, queue_size, embeddings=pool, labeled_embeddings=train,
                               normalize=False)
    ours_s = time.perf_counter() - t
    t = time.perf_counter()
    cand = least_confidence(proba, 10 * queue_size)
    picked, _ = uncertainty_batch_sampling(Learner(proba[cand], train), pool[cand],
                                           n_instances=queue_size)
    modal_s = time.perf_counter() - t
    return {"pool": size, "picks": len(ours), "shortlist": len(cand),
            "product_s": round(ours_s, 4), "modal_s": round(modal_s, 4),
            "speedup": round(modal_s / ours_s, 1),
            "same_picks": bool(np.array_equal(ours, cand[np.asarray(picked)]))}


def _summary(calls: list[dict[str, float]]) -> dict[str, object]:
    keys = ("read_s", "rank_s", "write_s", "wall_s")
    return {
        "queued": int(calls[0]["queued"]), "pool": int(calls[0]["pool"]),
        "median": {k: round(statistics.median(c[k] for c in calls), 4) for k in keys},
        "max": {k: round(max(c[k] for c in calls), 4) for k in keys},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the 20,000-text pool only")
    parser.add_argument("--sizes", help="comma-separated pool sizes (default 20000,100000)")
    parser.add_argument("--labels", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ("20000" if args.quick else "20000,100000"))
             .split(",")]
    labels, base = corpus_vectors()
    # modAL's side of the comparison takes seconds and ranks the same shortlist at any size
    result = {"runs": [run(size, args.labels, args.repeats, labels, base, against_modal=not k)
                       for k, size in enumerate(sizes)]}
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
