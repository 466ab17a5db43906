"""The GPU probe runs (here on a CPU, with a tiny model) and records every figure it names."""

from __future__ import annotations

import json
from pathlib import Path

from bench import probe_gpu
from learner import tokens


def test_the_probe_times_every_part_and_leaves_the_product_as_it_was(
        tiny_model_dir: Path, tmp_path: Path) -> None:
    batches, core = tokens.Tokens.batches, tokens._core
    figures = probe_gpu.run(tmp_path, "cpu", 40, str(tiny_model_dir))
    assert tokens.Tokens.batches is batches and tokens._core is core
    saved = json.loads((tmp_path / "probe.json").read_text())
    assert saved == figures
    assert len(saved["fit_s"]) == 3 and len(saved["encode_core_s"]) == 2
    for size in (256, 512, 1024):
        for key in (f"model_copied_{size}_s", f"model_resident_{size}_s",
                    f"predict_proba_{size}_s"):
            assert len(saved[key]) == 3 and all(s > 0 for s in saved[key])
            assert saved["texts_per_s_best"][key] == round(40 / min(saved[key]))
    assert "aten::" in (tmp_path / "probe-profile.txt").read_text()
