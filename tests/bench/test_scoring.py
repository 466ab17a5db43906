"""bench_scoring: how many texts the product's deciding call gets, and a quick run end to end."""

from __future__ import annotations

import json
from pathlib import Path

from bench.bench_scoring import decision_texts, main
from learner.device import OV_INT8
from learner.model import AGREEMENT_SAMPLE, OV_INT8_MIN_TEXTS


def test_the_decision_takes_a_rounds_chunk_only_where_openvino_is_weighed() -> None:
    assert decision_texts(1024, ("bf16", "int8", OV_INT8), quick=False) == OV_INT8_MIN_TEXTS
    # an AVX2-only CPU (no OpenVINO) and a GPU get the same check from the fewest texts
    assert decision_texts(1024, ("int8",), quick=False) == 1024
    assert decision_texts(256, ("int8",), quick=False) == 2 * AGREEMENT_SAMPLE
    assert decision_texts(20_000, (), quick=False) == 20_000
    assert decision_texts(256, ("bf16", "int8", OV_INT8), quick=True) == 2 * AGREEMENT_SAMPLE


def test_a_quick_run_reports_every_variant_and_the_decision(tiny_model_dir: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "scoring.json"
    assert main(["--quick", "--model", str(tiny_model_dir), "--texts", "48", "--repeats", "1",
                 "--train", "16", "--stream", "40", "--device", "cpu", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    report = report.get("result", report)
    assert report["auto_decision_texts"] == 2 * AGREEMENT_SAMPLE
    assert report["auto_precision"] in {"fp32", "bf16", "int8"}  # decided: no longer "check"
    assert {"plain_fp32", "optimised_fp32", "optimised_auto"} <= set(report["variants"])
    assert report["variants"]["plain_fp32"]["agreement"] == 1.0
    assert report["stream"]["texts"] == 40
