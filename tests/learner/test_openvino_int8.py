"""OpenVINO int8 scoring: several batches in flight, results in order, nothing left running."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.tiny_bert import synthetic_texts


def _batches(tiny_model_dir: Path, sizes: tuple[int, ...]) -> tuple[Any, list[dict[str, Any]]]:
    """The tiny BERT and batches of ``sizes`` texts, each padded to its own length."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    texts, _ = synthetic_texts(20, seed=5)
    batches, used = [], 0
    for n, words in zip(sizes, range(2, 2 + len(sizes))):
        chunk = [" ".join(t.split()[:words]) for t in texts[used : used + n]]
        used += n
        batches.append(dict(tokenizer(chunk, padding=True, return_tensors="pt")))
    return model.eval(), batches


def test_batches_in_flight_come_back_in_order_each_with_its_own_output(tiny_model_dir: Path) -> None:
    import torch

    from learner.openvino_int8 import IN_FLIGHT, OpenVINOInt8

    sizes = (5, 3, 4, 2, 6, 1, 3)  # more batches than requests; every shape differs
    model, batches = _batches(tiny_model_dir, sizes)
    lengths = {b["input_ids"].shape[1] for b in batches}
    assert len(lengths) > 1
    ov = OpenVINOInt8(model, batches[:2], threads=2)
    assert IN_FLIGHT > 1 and ov.in_flight == IN_FLIGHT
    taken: list[int] = []

    def given() -> Any:
        for i, batch in enumerate(batches):
            taken.append(i)
            yield batch

    for i, (batch, finished) in enumerate(ov.pipelined(given())):
        assert batch is batches[i]
        assert taken[-1] <= i + IN_FLIGHT  # the next one is taken while the others run
        out = finished(**batch, output_hidden_states=True)
        with torch.no_grad():
            exact = model(**batch, output_hidden_states=True)
        assert out.logits.shape == exact.logits.shape
        assert out.hidden_states[-1].shape == exact.hidden_states[-1].shape
        assert torch.allclose(out.logits, exact.logits, atol=0.1)
        # int8 moves each token's vector a little; another batch's would be far off
        cosine = torch.nn.functional.cosine_similarity(out.hidden_states[-1], exact.hidden_states[-1], dim=-1)
        assert cosine.min() > 0.98


def test_leaving_early_waits_for_what_runs_and_the_next_call_starts_clean(tiny_model_dir: Path) -> None:
    from learner.openvino_int8 import OpenVINOInt8

    model, batches = _batches(tiny_model_dir, (4, 4, 4, 4))
    ov = OpenVINOInt8(model, batches[:2], threads=2)
    run = ov.pipelined(iter(batches))
    next(run)  # the second batch is still in flight
    run.close()
    again = [finished().logits.numpy() for _, finished in ov.pipelined(iter(batches))]
    first = [finished().logits.numpy() for _, finished in ov.pipelined(iter(batches))]
    assert len(again) == len(batches)
    for a, b in zip(again, first):
        np.testing.assert_array_equal(a, b)


class _Pipelined:
    """A stand-in for OpenVINOInt8 in the scoring loop: doubles each batch's ids as logits."""

    training = False
    in_flight = 2

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at, self.closed, self.taken = fail_at, False, 0

    def pipelined(self, batches: Any) -> Any:
        from learner.openvino_int8 import Finished, _Output

        try:
            for batch in batches:
                self.taken += 1
                logits = batch["input_ids"][:, :1].float() * 2
                yield batch, Finished(_Output(logits, (logits,)))
        finally:
            self.closed = True

    def eval(self) -> _Pipelined:
        return self

    def train(self, mode: bool = True) -> _Pipelined:
        return self


def test_the_scoring_loop_hands_each_finished_output_to_fn_rows_in_the_order_asked(
    tiny_model_dir: Path,
) -> None:
    from transformers import AutoTokenizer

    from learner.model import _run_sorted
    from learner.tokens import encode

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    texts = [" ".join(["apple"] * n) for n in (3, 9, 1, 6, 4, 7, 2)]
    encoded = encode(tokenizer, texts, 32)
    idx = np.array([4, 0, 6, 2, 5])
    model, seconds = _Pipelined(), []
    out = _run_sorted(model, encoded, idx, 2, "cpu", "fp32",
                      lambda net, b: net(**b).logits, seconds)
    assert out[:, 0].tolist() == [2.0 * encoded.columns["input_ids"][i, 0] for i in idx]
    assert len(seconds) == 3 and all(s >= 0 for s in seconds)  # one per batch
    assert model.closed


def test_an_error_in_the_scoring_loop_closes_the_pipeline(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from learner.model import _run_sorted
    from learner.tokens import encode

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    encoded = encode(tokenizer, ["a b", "c", "d e f", "g"], 32)
    model = _Pipelined()

    def fail(net: Any, batch: Any) -> Any:
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        _run_sorted(model, encoded, np.arange(4), 1, "cpu", "fp32", fail)
    assert model.closed and model.taken == 1
