"""A worker's warm-up: the one-off start-up of a process's first round, paid before a round asks.

A fresh process's first round first imports torch and transformers, loads the model's code
and files, and on a GPU creates the CUDA context and loads its kernels: seconds that the
annotators who asked for the round would wait through. The worker pays them when it starts,
by fitting each model its projects use on two made-up texts, on the device and in the
precision a round will use, and scoring them. That is the round's own path, so it also
finds a model that cannot be loaded before any round fails on it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from learner.errors import LearnerError

MAX_MODELS = 3
"""At most this many distinct models are warmed up (each is a load and a training step)."""


@dataclass(frozen=True)
class WarmupReport:
    """What the warm-up found.

    Attributes:
        device: The torch device rounds run on (``"cuda"``, ``"cpu"``).
        device_name: The GPU's name, or the CPU's model and logical cores.
        precision: What rounds of the first model train in, ``"fp32"`` or ``"bf16"``
            (autocast).
        seconds: How long the warm-up took.
        problem: Why a model could not be trained (one line per model), else ``None``.
    """

    device: str
    device_name: str
    precision: str
    seconds: float
    problem: str | None = None


def warm_up(model_specs: Sequence[str]) -> WarmupReport:
    """Import the learning stack, pick the device and precision, and try each model once.

    Args:
        model_specs: Models to warm up (see ``learner.model.resolve_model_path``); repeats are
            tried once, and only the first :data:`MAX_MODELS`.

    Returns:
        The device, its name, the training precision, the time taken, and any model that
        could not be trained, with the reason.
    """
    start = time.perf_counter()
    from learner.device import device_name, resolve_device, resolve_precision
    from learner.model import TrainConfig, TransformerClassifier

    device = resolve_device(None)
    problems, precisions = [], []
    for spec in list(dict.fromkeys(model_specs))[:MAX_MODELS]:
        try:
            model = TransformerClassifier(spec, TrainConfig(epochs=1, batch_size=2))
            model.fit(["warm up", "start up"], ["a", "b"]).predict_proba(["warm up"])
            precisions.append(model.training_precision_)
        except LearnerError as exc:
            problems.append(f"{spec}: {exc}")
    return WarmupReport(
        device=device,
        device_name=device_name(device),
        # the first model's (a CPU with AVX-512 BF16 times each model's step to decide)
        precision=precisions[0] if precisions else resolve_precision("auto", device),
        seconds=time.perf_counter() - start,
        problem="\n".join(problems) or None,
    )
