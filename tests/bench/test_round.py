"""bench_round end to end on a tiny model: one real round, its timings and scoring precision."""

from __future__ import annotations

from pathlib import Path


def test_one_round_records_its_timings_and_how_it_scored(tiny_model_dir: Path) -> None:
    from bench.bench_round import run

    result = run(n_labels=30, pool=40, model=str(tiny_model_dir), n_rounds=1)
    assert (result["device"], result["labels"], result["pool"]) == ("cpu", 30, 40)
    assert result["warmup_s"] > 0  # the worker's warm-up first, timed apart
    assert result["imported"] == 70 and result["labelled"] == 30
    first = result["first"]
    assert first["version"] == 1 and first["total_s"] > 0
    assert set(first["timings"]) >= {"snapshot_s", "train_s", "evaluate_s", "score_s", "write_s"}
    # 40 texts are too few for the check against fp32: scored in fp32, undecided
    assert first["scoring"] == {"device": "cpu", "precision": "fp32", "checks": {}, "failures": {}}
    # the tiny model trains in fp32 (AMX aside), too small for a timed step to decide
    assert first["trained_in"] in ("fp32", "bf16") and first["training_bf16_speedup"] is None


def test_without_the_warm_up_the_first_round_pays_the_start_up(tiny_model_dir: Path) -> None:
    from bench.bench_round import run

    result = run(n_labels=30, pool=40, model=str(tiny_model_dir), n_rounds=1, warm_up=False)
    assert "warmup_s" not in result and result["first"]["version"] == 1


def test_a_model_that_cannot_be_trained_stops_the_benchmark_at_the_warm_up(tmp_path: Path) -> None:
    import pytest

    from bench.bench_round import run

    with pytest.raises(RuntimeError, match="The warm-up failed: .*missing"):
        run(n_labels=30, pool=40, model=str(tmp_path / "missing"), n_rounds=1)
