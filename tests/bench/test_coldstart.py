"""bench_coldstart on a tiny model: both seed sets per split, each from the training part."""

from __future__ import annotations

from pathlib import Path

from bench.bench_coldstart import METHODS, run, seed_texts
from tests.tiny_bert import synthetic_texts


def test_seed_sets_come_from_the_training_part_and_differ_by_method():
    texts, labels = synthetic_texts(30, seed=5)
    for split in range(2):
        picks = {}
        for method in METHODS:
            test_idx, seed = seed_texts(texts, labels, split, 8, method)
            assert len(set(seed)) == 8 and not set(seed) & set(test_idx.tolist())
            picks[method] = seed
        assert picks["uniform"] != picks["cold_start"]


def test_accuracy_per_method_and_split(tiny_model_dir: Path):
    texts, labels = synthetic_texts(20, seed=5)
    result = run(texts, labels, str(tiny_model_dir), splits=2, size=8, max_length=32)
    assert set(result["accuracy"]) == set(METHODS)
    for method, values in result["accuracy"].items():
        assert len(values) == 2 and all(0.0 <= v <= 1.0 for v in values)
        assert result["summary"][method]["min"] <= result["summary"][method]["mean"] \
            <= result["summary"][method]["max"]
