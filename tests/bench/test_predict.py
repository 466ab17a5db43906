"""bench_predict end to end on a tiny model: the product's path against scoring alone."""

from __future__ import annotations

from pathlib import Path


def test_predictions_are_timed_beside_the_stream_and_agree_with_it(tiny_model_dir: Path) -> None:
    from bench.bench_predict import run

    result = run(n_texts=40, n_train=20, repeats=2, model=str(tiny_model_dir))
    assert (result["device"], result["texts"], result["train"], result["repeats"]) == (
        "cpu", 40, 20, 2)
    assert result["rows"] == 40 and result["bytes"] > 0  # every unlabelled text, none other
    assert all(len(result["seconds"][k]) == 2 for k in ("stream", "predict"))
    assert result["ratio"] == round(result["texts_per_s"]["predict"]
                                    / result["texts_per_s"]["stream"], 3)
    assert result["precisions"] == {"stream": ["fp32", "fp32"], "predict": ["fp32", "fp32"]}
    assert result["same_label_share"] == 1.0
