"""Picking the torch device and the numeric precision for training and scoring.

torch is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

from learner.errors import LearnerError
from learner.openvino_int8 import openvino_available

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


def resolve_device(device: str | None = None) -> str:
    """Returns the device to run on.

    Args:
        device: ``None`` or ``"auto"`` for CUDA when available, else CPU; otherwise a torch
            device string such as ``"cpu"``, ``"cuda"`` or ``"cuda:1"``, which is checked.

    Returns:
        A torch device string.

    Raises:
        LearnerError: The device is unknown or not available on this machine.
    """
    import torch

    if device is None or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise LearnerError(f"Unknown device {device!r}: {exc}") from exc
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise LearnerError(f"Device {device!r} was asked for but CUDA is not available here")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise LearnerError(f"Device {device!r} was asked for but MPS is not available here")
    return str(parsed)


def resolve_precision(precision: str, device: str) -> str:
    """Returns ``"fp32"`` or ``"bf16"`` for a requested precision on a resolved device.

    ``"auto"`` means bf16 autocast on a CUDA device that supports bf16 and on a CPU with AMX
    tiles (:func:`cpu_has_amx`), fp32 elsewhere. On a 2-core Xeon with AMX, fine-tuning MiniLM
    on 200 BBC texts took 1.31x and 1.32x less time in bf16 (2 seeds, side by side), and the
    models' test accuracy was the same (0.940 and 0.940 against 0.942 and 0.940 on 600 texts).
    A CPU with AVX-512 BF16 but no AMX can run bf16 slower than fp32 (a Xeon) or much faster
    (an AMD EPYC), so this says fp32 there and ``TransformerClassifier.fit`` times a training
    step in each to decide (``learner.model.training_precision``). bf16 on any CPU is allowed
    when asked for explicitly.

    Args:
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"``.
        device: A device string as returned by :func:`resolve_device`.

    Returns:
        ``"fp32"`` or ``"bf16"``.

    Raises:
        LearnerError: The precision is unknown, or bf16 was asked for on a CUDA device without
            bf16 support.
    """
    import torch

    if precision not in PRECISIONS:
        raise LearnerError(f"Unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    is_cuda = torch.device(device).type == "cuda"
    if precision == "auto":
        if is_cuda:
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if torch.device(device).type == "cpu" and cpu_has_amx() else "fp32"
    if precision == "bf16" and is_cuda and not torch.cuda.is_bf16_supported():
        raise LearnerError("bf16 was asked for but this GPU does not support it; use fp32")
    return precision


def device_name(device: str) -> str:
    """A resolved device in words: the GPU's name, else the CPU's model and logical cores."""
    import os
    import platform

    import torch

    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    model = _cpuinfo("model name") or platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} logical cores"


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Returns the autocast context for a resolved device and precision.

    Args:
        device: A device string as returned by :func:`resolve_device`.
        precision: ``"fp32"`` or ``"int8"`` (no autocast), or ``"bf16"``.

    Returns:
        A context manager: ``torch.autocast`` for bf16, a no-op otherwise.
    """
    import torch

    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


OV_INT8 = "ov-int8"
"""Scoring through OpenVINO with int8 weights and activations (`learner.openvino_int8`)."""

CHECK = "check"
"""Scoring precision still to be decided: the fastest candidate (see `scoring_candidates`)
that agrees with fp32 on a sample and beats it, else fp32."""


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (bf16 and int8 matrix units: Xeon since Sapphire Rapids)."""
    import torch

    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has bf16 matrix units (AMX tiles or AVX-512 BF16)."""
    import torch

    return cpu_has_amx() or bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())


def cpu_has_int8() -> bool:
    """Whether torch can run int8 dynamically quantised linear layers on this CPU."""
    import torch

    engines = torch.backends.quantized.supported_engines
    return any(engine in ("x86", "fbgemm", "qnnpack") for engine in engines)


X86_MACHINES = frozenset({"x86_64", "amd64", "i386", "i686", "x86"})


def _cpuinfo(field: str) -> str | None:
    """The first CPU's ``field`` in Linux's /proc/cpuinfo (None where it is not there)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith(field):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where /proc/cpuinfo is not there)."""
    return frozenset((_cpuinfo("flags") or "").split())


def cpu_has_wide_int8() -> bool:
    """Whether OpenVINO's int8 kernels have more than AVX2 to run on: on x86, AVX-512, VNNI
    (AVX-512 VNNI or AVX-VNNI) or AMX; other architectures are left to the check (True).

    On an x86 CPU with AVX2 alone OpenVINO's int8 lost to fp32: 0.68x plain fp32 on a 2-core
    AMD EPYC (Zen 2), where building it took part of every round's decision for nothing.
    """
    import platform

    import torch

    if platform.machine().lower() not in X86_MACHINES:
        return True
    has = lambda name: bool(getattr(torch.cpu, name, lambda: False)())  # noqa: E731
    return (has("_is_avx512_supported") or has("_is_vnni_supported") or cpu_has_amx()
            or "avx_vnni" in cpu_flags())


def scoring_candidates(device: str) -> tuple[str, ...]:
    """The faster precisions a CPU may score in once they pass the check against fp32.

    ``"bf16"`` (autocast) where the CPU has bf16 units; ``"int8"`` (the linear layers
    dynamically quantised per output channel) where torch has an int8 engine; ``"ov-int8"``
    (OpenVINO, weights and activations in int8) where OpenVINO and NNCF are installed and the
    CPU has more than AVX2 (`cpu_has_wide_int8`). None on other devices: CUDA scores in bf16
    without a check.
    """
    import torch

    if torch.device(device).type != "cpu":
        return ()
    return ((("bf16",) if cpu_has_fast_bf16() else ()) + (("int8",) if cpu_has_int8() else ())
            + ((OV_INT8,) if openvino_available() and cpu_has_wide_int8() else ()))


def scoring_precision(precision: str, device: str) -> str:
    """Returns the precision to score (not train) in: ``"fp32"``, ``"bf16"`` or :data:`CHECK`.

    Scoring may take a faster precision than training: on a CPU with
    `scoring_candidates`, ``"auto"`` gives :data:`CHECK`, and the classifier uses a candidate
    only after it has agreed with fp32 on a sample of the texts it scores and scored that
    sample faster (see ``TransformerClassifier``).

    Args:
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"``.
        device: A device string as returned by :func:`resolve_device`.

    Returns:
        ``"fp32"``, ``"bf16"`` or :data:`CHECK`.
    """
    resolved = resolve_precision(precision, device)
    if precision == "auto" and scoring_candidates(device):
        return CHECK
    return resolved
