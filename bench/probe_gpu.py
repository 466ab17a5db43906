"""Where scoring and training on a GPU spend their time: a probe for the GPU machine.

Usage (on the GPU machine, as ``bench/gpu.sh probe`` runs it)::

    OUT=out LABELWISE_MODEL=.gpu/minilm python3 -m bench.probe_gpu

Not a benchmark with targets: it takes the product's parts apart, side by side in one process,
to tell the host's share from the GPU's. It fine-tunes the model on 200 BBC News texts three
times (the first in a cold process pays for CUDA's start-up), profiles a fourth fit
(``probe-profile.txt``: the operators by CPU time), then times on ``PROBE_N`` texts (20,000):
tokenising through the copy of the tokenizer's Rust core against the tokenizer's own call; the
model alone in bf16 on tokenised texts, its batches copied to the GPU one by one against cut
there from one copy (``Tokens.batches``), at batches of 256, 512 and 1,024; and
``predict_proba`` and ``predict_proba_and_embed`` end to end at those batch sizes. Seconds per
repeat go to ``$OUT/probe.json``, written as it goes. ``PROBE_DEVICE=cpu`` runs it on a CPU, as
a check that it runs.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np


class Probe:
    """Times the parts on one device and writes each figure to ``out/probe.json`` at once."""

    def __init__(self, out: Path, device: str) -> None:
        import torch

        self.out, self.device, self.torch = out, device, torch
        self.figures: dict[str, Any] = {"torch": torch.__version__, "device": device}

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def timed(self, key: str, fn: Callable[[], object], repeats: int) -> list[float]:
        """Seconds of each of ``repeats`` calls of ``fn``, appended under ``key``."""
        times = self.figures.setdefault(key, [])
        for _ in range(repeats):
            self.sync()
            start = time.perf_counter()
            fn()
            self.sync()
            times.append(round(time.perf_counter() - start, 4))
        self.save()
        print(key, times, flush=True)
        return times

    def save(self) -> None:
        (self.out / "probe.json").write_text(json.dumps(self.figures, indent=1))


def texts_and_labels(n: int) -> tuple[list[str], list[str], list[str]]:
    """``n`` distinct BBC texts to score, and 200 others with their labels to fine-tune on."""
    from db.demo import iter_corpus

    rows = list(iter_corpus())
    random.Random(0).shuffle(rows)
    pool = [f"{r['text']} [{i}]" for i, r in zip(range(n), itertools.cycle(rows))]
    return pool, [r["text"] for r in rows[:200]], [r["label"] for r in rows[:200]]


def run(out: Path, device: str, n: int, model_path: str) -> dict[str, Any]:
    from learner import model as lm
    from learner import tokens
    from learner.model import TrainConfig, TransformerClassifier

    probe = Probe(out, device)
    texts, train_x, train_y = texts_and_labels(n)
    clf = TransformerClassifier(model_path, TrainConfig(device=device))
    probe.timed("fit_s", lambda: clf.fit(train_x, train_y), 3)
    probe.figures["training_precision"] = clf.training_precision_
    profile_fit(probe, clf, train_x, train_y)
    probe.timed("load_to_device_s",
                lambda: clf._load_for_training(sorted(set(train_y)))[0].to(device), 2)
    tokenizer = clf._tokenizer
    probe.timed("encode_200_s", lambda: tokens.encode(tokenizer, train_x, 128), 2)

    core = tokens._core
    for _ in range(2):  # alternating
        probe.timed("encode_core_s", lambda: tokens.encode(tokenizer, texts, 128), 1)
        tokens._core = lambda tokenizer, max_length: None  # the tokenizer's own call
        try:
            probe.timed("encode_call_s", lambda: tokens.encode(tokenizer, texts, 128), 1)
        finally:
            tokens._core = core

    encoded, everything = tokens.encode(tokenizer, texts, 128), np.arange(n)
    resident = tokens.Tokens.batches
    for batch_size in (256, 512, 1024):
        for name, how in (("copied", _copied_per_batch), ("resident", resident)):
            tokens.Tokens.batches = how  # type: ignore[method-assign]
            try:
                probe.timed(f"model_{name}_{batch_size}_s", lambda: lm._run_sorted(
                    clf._model, encoded, everything, batch_size, device, "bf16",
                    lambda net, batch: net(**batch).logits), 3)
            finally:
                tokens.Tokens.batches = resident  # type: ignore[method-assign]

    for batch_size in (256, 512, 1024):
        clf.config.scoring_batch_size = batch_size
        probe.timed(f"predict_proba_{batch_size}_s", lambda: clf.predict_proba(texts), 3)
        probe.timed(f"proba_and_embed_{batch_size}_s", lambda: clf.predict_proba_and_embed(texts), 2)
    probe.figures["scoring_precision"] = clf.scoring_precision_
    probe.figures["texts_per_s_best"] = {
        key: round(n / min(seconds)) for key, seconds in probe.figures.items()
        if key.startswith(("model_", "predict_", "proba_", "encode_core", "encode_call"))}
    probe.save()
    return probe.figures


def _copied_per_batch(self: Any, rows: np.ndarray, batch_size: int, device: str
                      ) -> Iterator[dict[str, Any]]:
    """``Tokens.batches`` as it was before bdf3b92: each batch copied to the device alone."""
    for start in range(0, len(rows), batch_size):
        yield self.batch(rows[start:start + batch_size], device)


def profile_fit(probe: Probe, clf: Any, texts: list[str], labels: list[str]) -> None:
    """One more fit under torch's profiler: ``probe-profile.txt``, operators by CPU time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if probe.device.startswith("cuda"):
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        clf.fit(texts, labels)
        probe.sync()
    averages = prof.key_averages()
    (probe.out / "probe-profile.txt").write_text(
        averages.table(sort_by="cpu_time_total", row_limit=40) + "\n\n"
        + averages.table(sort_by="self_cpu_time_total", row_limit=30))


def main() -> int:
    out = Path(os.environ.get("OUT", "bench/out"))
    out.mkdir(parents=True, exist_ok=True)
    figures = run(out, os.environ.get("PROBE_DEVICE", "cuda"),
                  int(os.environ.get("PROBE_N", "20000")), os.environ["LABELWISE_MODEL"])
    print(json.dumps(figures["texts_per_s_best"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
