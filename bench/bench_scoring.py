"""Benchmark pool scoring: texts/s of the default model, plain fp32 against the optimised path.

Usage::

    .venv/bin/python -m bench.bench_scoring --out bench/out/scoring.json
    .venv/bin/python -m bench.bench_scoring --quick            # 256 texts, a smoke run

A classifier is fine-tuned briefly on BBC News texts (the demo corpus) so that its predictions
mean something, then ``--texts`` texts are scored by each variant, alternating, ``--repeats``
times (the median counts). Each repeat takes the next ``--texts`` texts of the corpus (wrapping
around), so that on a CPU three repeats of 1,024 cover the whole corpus: every variant scores the
same texts within a repeat, and agreement counts each text of the corpus once. The variants:

- ``plain_fp32``: the straightforward loop: batches in input order, padded to the longest
  text of the batch, ``torch.no_grad``, fp32. The baseline, in the product's batch size.
- ``optimised_fp32``: ``TransformerClassifier.predict_proba`` in fp32: length-sorted batches,
  ``torch.inference_mode``, long texts tokenised from a prefix, the next chunk tokenised in a
  thread while this one is scored, and the outputs copied to the host once per chunk.
- ``optimised_auto``: ``predict_proba`` as the product runs it (``precision="auto"``): bf16
  autocast on CUDA; on a CPU, the fastest of bf16 (CPUs with bf16 units: AMX, AVX-512 BF16),
  torch's int8 and OpenVINO's int8 (CPUs with more than AVX2) that agrees with fp32 on at
  least 99% of a sample and scores it at least 1.1x as fast; fp32 when none does. Its first
  call takes that decision, on ``OV_INT8_MIN_TEXTS`` texts (the corpus, repeated) where
  OpenVINO is among the candidates, so that it is weighed as in a round; elsewhere, and with
  ``--quick``, on ``2 * AGREEMENT_SAMPLE``, the fewest that get the same check as a round's
  (and never fewer than ``--texts``). It is timed apart (``auto_decision_s``,
  ``auto_decision_texts``).
- ``forced_bf16``, ``forced_int8`` and ``forced_ov_int8``, for each candidate the product weighs
  on this CPU (`scoring_candidates`: bf16 where it has bf16 units, OpenVINO where it has more
  than AVX2): the optimised path in bf16 autocast, over the product's int8 copy of the model
  (linear layers quantised per output channel), or over its OpenVINO int8 twin (weights and
  activations in int8, calibrated on the pool), whatever the check says, to show what the
  check weighed.

Each variant's agreement is the share of the texts scored (each once) whose predicted class equals
plain fp32's.
Alongside, ``host``: the same texts through the product's path with the model left out
(tokenising, length-sorted collation, the copies to the device and back): the most texts/s any
precision could reach on this machine, so on a GPU it tells the host's share from the model's.
Before the variants, once the product's path has decided its precision, ``--stream`` texts
(the corpus repeated with a counter appended, so each is distinct) are scored through
``predict_proba_stream`` from a generator: peak RSS before, after the first
chunk and after the last shows whether memory stays bounded (the first chunk pays for the
scoring shapes' buffers once; later chunks must add nothing). Absolute texts/s mean something
only on a quiet machine (the GPU machine); on a shared CPU compare the ratios, measured side by
side.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.jsonfile import emit
from db.demo import iter_corpus
from db.settings import Settings
from learner.model import (
    AGREEMENT_SAMPLE,
    OV_INT8_MIN_TEXTS,
    SCORING_CHUNK,
    TrainConfig,
    TransformerClassifier,
    _run_sorted,
    scoring_batch,
)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def corpus() -> tuple[list[str], list[str]]:
    rows = list(iter_corpus())
    rng = np.random.default_rng(0)
    order = rng.permutation(len(rows))
    return [rows[i]["text"] for i in order], [rows[i]["label"] for i in order]


def plain_fp32(clf: TransformerClassifier, texts: list[str], batch_size: int) -> np.ndarray:
    """The baseline: input order, pad to the batch's longest, no_grad, fp32."""
    import torch

    model, tokenizer = clf._fitted()
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], truncation=True, padding=True,
                              max_length=clf.config.max_length, return_tensors="pt").to(device)
            out.append(torch.softmax(model(**batch).logits.float(), dim=-1).cpu().numpy())
    return np.concatenate(out)


def with_precision(clf: TransformerClassifier, precision: str) -> TransformerClassifier:
    """A view of ``clf`` (same weights) that scores in ``precision``."""
    twin = copy.copy(clf)
    twin.config = dataclasses.replace(clf.config, precision=precision)
    twin._reset_scoring()
    return twin


def forced(clf: TransformerClassifier, precision: str) -> TransformerClassifier:
    """A view of ``clf`` that scores in ``precision`` (``"int8"``, ``"ov-int8"``) without a check."""
    twin = with_precision(clf, "fp32")
    twin.scoring_precision_ = precision
    return twin


def host_only(clf: TransformerClassifier, texts: list[str]) -> np.ndarray:
    """``texts`` through ``predict_proba``'s path, its model call replaced by a column of ids."""
    model, _ = clf._fitted()
    device = clf._device or "cpu"
    batch = scoring_batch(clf.config, device)
    return np.concatenate([
        _run_sorted(model, tokens, np.arange(len(tokens)), batch, device, "fp32",
                    lambda net, b: b["input_ids"][:, :1].float())
        for tokens in clf._tokenised(texts, SCORING_CHUNK)])


def repeat_window(size: int, n: int, repeat: int) -> np.ndarray:
    """Indices of the ``n`` texts a repeat scores: the corpus's next ``n``, wrapping around."""
    return (np.arange(n) + repeat * n) % size


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def rss_mb() -> float:
    """The resident set now (not its peak), from /proc/self/statm; 0.0 where there is none."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return round(int(statm.read().split()[1]) * resource.getpagesize() / 2**20, 1)
    except OSError:
        return 0.0


def stream(clf: TransformerClassifier, base: list[str], n: int) -> dict[str, Any]:
    """``n`` texts (``base`` repeated, each made distinct by a counter) through
    ``predict_proba_stream`` from a generator; the peak RSS before, after the first chunk and
    at the end, and after each chunk its texts so far, peak RSS and RSS (``per_chunk``)."""
    def texts() -> Iterator[str]:
        for i, text in zip(range(n), itertools.cycle(base)):
            yield f"{text} {i}"

    before = peak_rss_mb()
    counts = np.zeros(len(clf.classes_), dtype=np.int64)
    per_chunk = []
    t = time.perf_counter()
    for proba in clf.predict_proba_stream(texts()):
        counts += np.bincount(proba.argmax(1), minlength=len(counts))
        per_chunk.append([int(counts.sum()), peak_rss_mb(), rss_mb()])
    sync(clf._device or "cpu")
    seconds = time.perf_counter() - t
    return {"texts": int(counts.sum()), "seconds": round(seconds, 2),
            "texts_per_s": round(n / seconds, 1), "peak_rss_before_mb": before,
            "peak_rss_after_first_chunk_mb": per_chunk[0][1] if per_chunk else before,
            "peak_rss_after_mb": peak_rss_mb(), "chunks": len(per_chunk),
            "precision": clf.scoring_precision_, "after_decision": True,
            "per_chunk": per_chunk}


def decision_texts(n: int, candidates: tuple[str, ...], quick: bool) -> int:
    """Texts in the product's first call, which decides its scoring precision.

    As many as a round's first chunk where OpenVINO is among ``candidates`` (a call of fewer
    texts would not build it, so a round's check would not be reproduced); otherwise, as in a
    quick run, the fewest that get the check, since a larger call checks the same sample. Never
    fewer than ``n``, the texts per variant.
    """
    from learner.device import OV_INT8

    weigh_openvino = OV_INT8 in candidates and not quick
    return max(n, OV_INT8_MIN_TEXTS if weigh_openvino else 2 * AGREEMENT_SAMPLE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="256 texts, 2 repeats, a 1,024-text stream (one chunk: it shows "
                             "the path works, not that memory stays bounded)")
    parser.add_argument("--texts", type=int, help="texts scored per variant and repeat")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--train", type=int, help="labelled texts to fine-tune on first")
    parser.add_argument("--stream", type=int, help="texts scored through the streaming path")
    parser.add_argument("--model", default=Settings.from_env().model_path,
                        help="model spec (default: LABELWISE_MODEL or the builtin MiniLM)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if present)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    import torch

    from learner.device import OV_INT8, resolve_device, scoring_candidates

    device = resolve_device(args.device)
    gpu = device.startswith("cuda")
    n = args.texts or (20_000 if gpu else 256 if args.quick else 1024)
    repeats = args.repeats or (2 if args.quick else 3)
    # On a CPU, two chunks: the second shows whether memory stays bounded after the first.
    n_stream = args.stream or (1024 if args.quick else 1_000_000 if gpu
                               else SCORING_CHUNK + 1024)
    texts, labels = corpus()
    n_train = args.train or (64 if args.quick else 200)
    config = TrainConfig(max_length=128, epochs=2 if args.quick else 3, device=device, seed=0)
    t = time.perf_counter()
    clf = TransformerClassifier(args.model, config).fit(texts[:n_train], labels[:n_train])
    fit_s = time.perf_counter() - t
    unseen = texts[n_train:]
    windows = [repeat_window(len(unseen), n, r) for r in range(repeats)]
    first = [unseen[i] for i in windows[0]]
    lengths = [len(ids) for ids in clf._fitted()[1](first[:2000], truncation=True, max_length=128)["input_ids"]]
    batch = scoring_batch(config, device)

    auto = with_precision(clf, "auto")
    candidates = scoring_candidates(device)
    deciding = list(itertools.islice(itertools.cycle(unseen),
                                     decision_texts(n, candidates, args.quick)))
    t = time.perf_counter()
    auto.predict_proba(deciding)
    auto_decision_s = time.perf_counter() - t
    # Streamed in the precision just decided: the decision is timed above, not twice.
    streamed = stream(auto, unseen, n_stream)
    print(json.dumps({"stream": streamed}), flush=True)

    variants: dict[str, Callable[[list[str]], np.ndarray]] = {
        "plain_fp32": lambda x: plain_fp32(clf, x, batch),
    }
    variants["optimised_fp32"] = with_precision(clf, "fp32").predict_proba
    variants["optimised_auto"] = auto.predict_proba
    # Each candidate the product weighs here, forced (none on a GPU).
    if "bf16" in candidates:
        variants["forced_bf16"] = with_precision(clf, "bf16").predict_proba
    if "int8" in candidates:
        variants["forced_int8"] = forced(clf, "int8").predict_proba
    if OV_INT8 in candidates:
        variants["forced_ov_int8"] = forced(clf, OV_INT8).predict_proba
    # Warm-up (the forced int8 copies are built here, OpenVINO's calibrated on these texts).
    warm_up = first[:64 if args.quick else max(64, min(n, 1024 if gpu else 256))]
    for fn in variants.values():
        fn(warm_up)
    times: dict[str, list[float]] = {name: [] for name in variants}
    preds: dict[str, np.ndarray] = {}
    host_s: list[float] = []
    for window in windows:
        pool = [unseen[i] for i in window]
        t = time.perf_counter()
        host_only(clf, pool)
        sync(device)
        host_s.append(time.perf_counter() - t)
        for name, fn in variants.items():
            sync(device)
            t = time.perf_counter()
            proba = fn(pool)
            sync(device)
            times[name].append(time.perf_counter() - t)
            if name not in preds:
                preds[name] = np.full((len(unseen), proba.shape[1]), np.nan, dtype=np.float64)
            preds[name][window] = proba
    scored = np.unique(np.concatenate(windows))
    base = preds["plain_fp32"][scored]
    results = {}
    for name, runs in times.items():
        med = statistics.median(runs)
        mine = preds[name][scored]
        results[name] = {
            "texts_per_s": round(n / med, 1), "seconds": [round(r, 3) for r in runs],
            "speedup": round(statistics.median(times["plain_fp32"]) / med, 2),
            "agreement": round(float(np.mean(mine.argmax(1) == base.argmax(1))), 4),
            "max_abs_diff": round(float(np.abs(mine - base).max()), 4),
        }
    report = {
        "device": device, "device_name": torch.cuda.get_device_name(0) if gpu else "cpu",
        "torch_threads": torch.get_num_threads(), "model": args.model, "max_length": 128,
        "batch_size": batch, "texts": n, "repeats": repeats, "agreement_texts": len(scored),
        "fit_texts": n_train,
        "fit_s": round(fit_s, 1), "mean_tokens": round(float(np.mean(lengths)), 1),
        "share_at_max_length": round(float(np.mean(np.array(lengths) >= 128)), 3),
        "auto_precision": auto.scoring_precision_,
        "auto_decision_s": round(auto_decision_s, 1), "auto_decision_texts": len(deciding),
        "auto_checks": {name: {k: round(v, 4) for k, v in check.items()}
                        for name, check in auto.scoring_checks_.items()},
        "auto_failures": auto.scoring_failures_,
        "variants": results, "stream": streamed,
        "host": {"texts_per_s": round(n / statistics.median(host_s), 1),
                 "seconds": [round(s, 3) for s in host_s]},
    }
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
