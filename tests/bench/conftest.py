"""Small fake benchmark results in the wrapped format ``bench.run`` writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from learner.simulate import summarise

MACHINE = {
    "cpu_model": "Test CPU", "logical_cores": 4, "avx512_bf16": True, "amx_bf16": False,
    "ram_bytes": 16 * 2**30, "os": "Linux-test", "python": "3.11.7", "sqlite": "3.40.1",
    "torch": "2.13.0+cpu", "cuda_gpu": None,
}


def wrapped(step: str, result: Any = None, skipped: str | None = None, **meta: Any
            ) -> dict[str, Any]:
    """A result file's content; ``meta`` overrides the defaults."""
    doc: dict[str, Any] = {"meta": {
        "step": step, "command": f".venv/bin/python -m bench.bench_{step} --out x.json",
        "date": "2026-11-24T10:00:00Z", "commit": "abc1234", "machine": MACHINE,
        "machine_tag": "cpu-4core", "quick": False, "exit_code": 0, **meta}}
    if skipped is None:
        doc["result"] = result
    else:
        doc["skipped"] = skipped
    return doc


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def import_result(rows_per_s: int = 25_000) -> dict[str, Any]:
    return {"rows": 100_000, "chars_per_text": 2000, "csv_bytes": 206_000_000,
            "batch_size": 2000, "import_s": 4.0, "rows_per_s": rows_per_s, "import_cpu_s": 3.9,
            "load_average_1min": 1.5, "peak_rss_mb": 150.0, "db_bytes": 240_000_000}


def export_result(csv_rows_per_s: int = 150_000) -> dict[str, Any]:
    def fmt(rate: int) -> dict[str, Any]:
        return {"rows": 100_000, "seconds": 100_000 / rate, "rows_per_s": rate,
                "cpu_seconds": 1.0, "rows_per_cpu_s": rate, "bytes": 200_000_000,
                "peak_rss_mb": 75.0}

    return {"benchmark": "export", "rows": 100_000, "text_chars": 2000,
            "target_rows_per_s": 50_000,
            "results": {"jsonl": fmt(100_000), "csv": fmt(csv_rows_per_s),
                        "parquet": fmt(140_000)}}


def queue_result(p95_small: float = 5.0, p95_large: float = 6.0) -> list[dict[str, Any]]:
    def size(n: int, p95: float) -> dict[str, Any]:
        figures = {"p50_ms": 3.0, "p95_ms": p95, "p99_ms": p95 + 1}
        return {"size": n, "answers": 700, "build_s": 1.0, "claim": figures,
                "submit": dict(figures)}

    return [size(10_000, p95_small), size(100_000, p95_large)]


def sim_result(active_gain: float = 0.25) -> dict[str, Any]:
    """Two repeats, margin and random, labels 20 to 100: margin ahead by ``active_gain`` after
    the seed set (0.25: margin reaches random's final accuracy at 60 labels, 60% of 100)."""
    def curve(accuracies: list[float]) -> list[dict[str, Any]]:
        return [{"n_labels": 20 * (i + 1), "accuracy": a, "macro_f1": a - 0.01, "seconds": 10.0}
                for i, a in enumerate(accuracies)]

    random_runs = [curve([0.5, 0.6, 0.7, 0.8, 0.9]), curve([0.5, 0.62, 0.72, 0.78, 0.88])]
    margin_runs = [curve([min(1.0, p["accuracy"] + (active_gain if i else 0))
                          for i, p in enumerate(run)]) for run in random_runs]
    curves = {"margin": margin_runs, "random": random_runs}
    return {"config": {"strategies": ["margin", "random"], "seed_size": 20, "batch": 20,
                       "budget": 100, "repeats": 2, "test_frac": 0.2, "pool_cap": None},
            "n_texts": 500, "labels": ["a", "b"], "wall_seconds": 200.0,
            "summary": summarise(curves), "curves": curves}


def scoring_result(speedup: float = 3.5, gpu: bool = False, texts_per_s: float = 280.0
                   ) -> dict[str, Any]:
    def variant(rate: float, agreement: float = 1.0) -> dict[str, Any]:
        return {"texts_per_s": rate, "seconds": [1.0], "speedup": round(rate / (texts_per_s / speedup), 2),
                "agreement": agreement, "max_abs_diff": 0.001}

    return {"device": "cuda" if gpu else "cpu", "device_name": "GPU X" if gpu else "cpu",
            "torch_threads": 2, "model": "m", "max_length": 128, "batch_size": 64, "texts": 512,
            "repeats": 3, "fit_texts": 64, "fit_s": 1.0, "mean_tokens": 128.0,
            "share_at_max_length": 1.0, "auto_precision": "bf16", "auto_agreement_check": 0.996,
            "variants": {"plain_fp32": variant(texts_per_s / speedup),
                         "optimised_auto": variant(texts_per_s, 0.998)},
            "stream": {"texts": 4096, "seconds": 10.0, "texts_per_s": 409.6,
                       "peak_rss_before_mb": 1500.0, "peak_rss_after_mb": 1510.0,
                       "precision": "bf16"}}


def round_result(total_s: float = 12.0, device: str = "cuda") -> dict[str, Any]:
    return {"device": device, "labels": 200, "pool": 20_000, "imported": 20_200, "labelled": 200,
            "version": 2, "timings": {"snapshot_s": 0.5, "train_s": 8.0, "evaluate_s": 0.5,
                                      "score_s": 2.0, "write_s": 0.5},
            "total_s": total_s, "scoring": {"device": device, "precision": "bf16", "checks": {},
                                            "failures": {}},
            "trained_in": "bf16", "training_bf16_speedup": None,
            "first": {"version": 1, "timings": {"snapshot_s": 0.5, "train_s": 18.0, "evaluate_s": 0.5,
                                                "score_s": 2.0, "write_s": 0.5}, "total_s": 22.0}}


def fastloop_result(diverse_max_s: float = 0.6, pool: int = 20_000) -> dict[str, Any]:
    def strategy(wall_s: float) -> dict[str, Any]:
        parts = {"read_s": 0.1, "rank_s": wall_s - 0.12, "write_s": 0.02}
        return {"queued": 550, "pool": pool, "median": {**parts, "wall_s": wall_s},
                "max": {**parts, "wall_s": wall_s}}

    return {"runs": [{
        "pool": pool, "labels": 200, "dim": 384, "repeats": 5, "queue_size": 500,
        "build_s": 2.0, "due_check_s": 0.006, "first_call_s": 1.5,
        "strategies": {"margin": strategy(0.2), "diverse": strategy(diverse_max_s)},
        "diverse_against_modal": {"pool": pool, "picks": 500, "shortlist": 5000,
                                  "product_s": 0.28, "modal_s": 11.4, "speedup": 40.7,
                                  "same_picks": True}}]}


@pytest.fixture
def results_tree(tmp_path: Path) -> dict[str, Path]:
    """docs/results/cpu-4core with import, export, queue, sim (and its curve) and round; a
    bench/out run with scoring skipped. queue-postgresql is absent everywhere."""
    results, run = tmp_path / "docs" / "results", tmp_path / "bench" / "out"
    machine = results / "cpu-4core"
    write(machine / "import.json", wrapped("import", import_result()))
    write(machine / "export.json", wrapped("export", export_result(csv_rows_per_s=40_000)))
    write(machine / "queue.json", wrapped("queue", queue_result()))
    sim = wrapped("sim", sim_result(), notes=["A note kept with the figures."])
    sim["files"] = {"curve": "sim.curve.png"}
    write(machine / "sim.json", sim)
    (machine / "sim.curve.png").write_bytes(b"png")
    write(machine / "round.json", wrapped("round", round_result(total_s=12.0)))
    write(run / "scoring.json", wrapped("scoring", skipped="bench.bench_scoring does not exist yet"))
    return {"results": results, "run": run, "doc_dir": tmp_path / "docs"}
