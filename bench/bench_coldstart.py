"""Benchmark the cold start: test accuracy of a model trained on the first texts it picks.

Usage::

    .venv/bin/python -m bench.bench_coldstart --out bench/out/coldstart.json   # ~8 min on 2 cores

On the BBC News demo corpus (duplicates removed), for each of ``--splits`` splits of the
simulation (``learner.simulate``: the same stratified 20% test part per split), the simulation's
two seed sets of ``--size`` texts are drawn from the training part: ``uniform``, a uniform
sample, and ``cold_start`` (the simulation's default), the head of the product's cold-start
queue (``diverse_sample``). The default model is trained on each with the product's settings, as a
round would, and scored on the test part. Accuracy only: not a speed benchmark, so it is not
part of ``make bench``.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.jsonfile import emit
from db.demo import iter_corpus
from db.settings import Settings
from learner.model import TrainConfig, TransformerClassifier
from learner.rounds import RoundInput, train_and_rank
from learner.simulate import SimulationConfig, dedupe, split_and_seed

METHODS = ("uniform", "cold_start")


def seed_texts(texts: Sequence[str], labels: Sequence[str], split: int, size: int,
               method: str) -> tuple[np.ndarray, list[int]]:
    """The test part of ``split`` and the simulation's seed set of ``size`` texts by ``method``
    (``learner.simulate.split_and_seed``, seed 0, repeat ``split``)."""
    config = SimulationConfig(seed_size=size, budget=size, seed_method=method)
    _, test_idx, seed = split_and_seed(texts, labels, config, split)
    return test_idx, seed


def run(texts: Sequence[str], labels: Sequence[str], model: str, splits: int, size: int,
        max_length: int = 128) -> dict[str, Any]:
    """Accuracy per method and split, and the mean and range per method."""
    texts, labels = dedupe(texts, labels)
    label_set = tuple(sorted(set(labels)))
    factory = functools.partial(TransformerClassifier, model,
                                TrainConfig(max_length=max_length, seed=0))
    accuracy: dict[str, list[float]] = {method: [] for method in METHODS}
    for split in range(splits):
        for method in METHODS:
            test_idx, seed = seed_texts(texts, labels, split, size, method)
            data = RoundInput(labels=label_set, train_texts=[texts[i] for i in seed],
                              train_y=[labels[i] for i in seed],
                              eval_texts=[texts[i] for i in test_idx],
                              eval_y=[labels[i] for i in test_idx],
                              pool_ids=[], pool_texts=[], train_ids=[])
            result = train_and_rank(data, factory, "random", 0, np.random.default_rng(7))
            accuracy[method].append(round(float(result.metrics["accuracy"]), 4))
            print(f"split {split} {method:>10}: {accuracy[method][-1]:.3f}", file=sys.stderr,
                  flush=True)
    return {"model": model, "texts": len(texts), "size": size, "splits": splits,
            "accuracy": accuracy,
            "summary": {method: {"mean": round(statistics.fmean(values), 4),
                                 "min": min(values), "max": max(values)}
                        for method, values in accuracy.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=4)
    parser.add_argument("--size", type=int, default=50, help="texts picked per seed set")
    parser.add_argument("--model", default=Settings.from_env().model_path,
                        help="model spec (default: LABELWISE_MODEL or the builtin MiniLM)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = list(iter_corpus())
    emit(run([r["text"] for r in rows], [r["label"] for r in rows], args.model, args.splits,
             args.size), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
