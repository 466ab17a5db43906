"""bench_round end to end on a tiny model: one real round, its timings and scoring precision."""

from __future__ import annotations

from pathlib import Path


def test_one_round_records_its_timings_and_how_it_scored(tiny_model_dir: Path) -> None:
    from bench.bench_round import run

    result = run(n_labels=30, pool=40, model=str(tiny_model_dir), n_rounds=1)
    assert (result["device"], result["labels"], result["pool"]) == ("cpu", 30, 40)
    assert result["imported"] == 70 and result["labelled"] == 30
    first = result["first"]
    assert first["version"] == 1 and first["total_s"] > 0
    assert set(first["timings"]) >= {"snapshot_s", "train_s", "evaluate_s", "score_s", "write_s"}
    # 40 texts are too few for the check against fp32: scored in fp32, undecided
    assert first["scoring"] == {"device": "cpu", "precision": "fp32", "checks": {}, "failures": {}}
