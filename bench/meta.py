"""What a benchmark figure needs beside itself: the machine, the commit and the date.

`machine` describes the computer (CPU, flags, memory, OS, Python, SQLite, torch and the CUDA
GPU torch sees); torch is asked in a child process, so this process never loads it nor holds
GPU memory while benchmarks run. `machine_tag` names the machine for ``docs/results/<tag>/``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from learner.device import cpu_flags

ROOT = Path(__file__).resolve().parent.parent

_TORCH_PROBE = (
    "import json, torch\n"
    "gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None\n"
    "print(json.dumps({'torch': torch.__version__, 'cuda_gpu': gpu}))\n"
)


def _cpu_model() -> str | None:
    """The CPU's model name from ``/proc/cpuinfo`` (None elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return model.group(1).strip() if model else None


PROC_STAT = Path("/proc/stat")
_CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def cpu_times() -> dict[str, int] | None:
    """The machine's CPU time so far, all cores together, in clock ticks, from ``/proc/stat``
    (None where there is none): ``user`` to ``steal``, each as the kernel counts it."""
    try:
        first = PROC_STAT.read_text(encoding="utf-8").splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if first[:1] != ["cpu"] or len(first) < 1 + len(_CPU_FIELDS):
        return None
    return dict(zip(_CPU_FIELDS, map(int, first[1:]), strict=False))


def steal_share(before: dict[str, int] | None, after: dict[str, int] | None) -> float | None:
    """The share of the CPU time between two `cpu_times` readings that the hypervisor gave to
    other guests while this machine's CPUs wanted to run ("steal"), rounded to 0.001; None
    without both readings or without time between them.

    On a shared virtual machine this is the noise that slows every timing by about
    1 / (1 - share) at full load: a figure measured at 25% steal reads a third slower.
    """
    if before is None or after is None:
        return None
    total = sum(after[k] - before[k] for k in _CPU_FIELDS)
    if total <= 0:
        return None
    return round((after["steal"] - before["steal"]) / total, 3)


def _ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def torch_info() -> dict[str, str | None]:
    """``torch`` (its version, or why it is not importable) and ``cuda_gpu`` (a name or None)."""
    try:
        done = subprocess.run([sys.executable, "-c", _TORCH_PROBE], capture_output=True,
                              text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return {"torch": "not importable: the import took over 300 s", "cuda_gpu": None}
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        return {"torch": f"not importable: {lines[-1]}", "cuda_gpu": None}
    info: dict[str, str | None] = json.loads(done.stdout.strip().splitlines()[-1])
    return info


def machine() -> dict[str, Any]:
    """This computer, as the report shows it; every key is always present."""
    model, flags = _cpu_model(), cpu_flags()
    return {
        "cpu_model": model or platform.processor() or None,
        "logical_cores": os.cpu_count(),
        "avx512f": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "ram_bytes": _ram_bytes(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        **torch_info(),
    }


def machine_tag(info: dict[str, Any]) -> str:
    """``gpu-<name>`` where torch sees a CUDA GPU (``gpu-h100-80gb-hbm3``), else
    ``cpu-<vendor>[-amx|-avx2]-<n>core`` (``cpu-intel-amx-2core``, ``cpu-intel-2core``,
    ``cpu-amd-avx2-2core``; ``cpu-<n>core`` for an unknown vendor).

    The vendor and the vector units are in the tag because machines of the same size differ a
    lot here: an Intel Xeon with AMX scores in bf16 at about 3x fp32, one with AVX-512 BF16 but
    no AMX is slower in bf16 than in fp32, and a CPU without AVX-512 at all (``-avx2``: the AMD
    EPYC Zen 2 hosts here) has neither bf16 nor VNNI int8 kernels. AMD EPYC hosts with AVX-512
    came both with AVX-512 BF16 (bf16 at about 2.4x fp32) and, before the ``-avx2`` tag (which
    needs ``machine.avx512f``, recorded since), without; those share ``cpu-amd-<n>core``, and the
    result files record which (``machine.avx512_bf16``).
    """
    gpu = info.get("cuda_gpu")
    if gpu:
        slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower().replace("nvidia", "")).strip("-")
        return f"gpu-{slug or 'unnamed'}"
    model = (info.get("cpu_model") or "").lower()
    vendor = next((name for name in ("intel", "amd", "arm") if name in model), None)
    cores = f"{info.get('logical_cores') or 0}core"
    if vendor and info.get("amx_bf16"):
        vendor += "-amx"
    elif vendor in ("intel", "amd") and info.get("avx512f") is False:
        vendor += "-avx2"
    return f"cpu-{vendor}-{cores}" if vendor else f"cpu-{cores}"


def git_commit() -> str | None:
    """The short hash of HEAD, with ``+dirty`` when the work tree has uncommitted changes.

    ``BENCH_COMMIT`` overrides it, for a copy of the tree without its git folder (the GPU
    machine gets one).
    """
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}+dirty" if status.strip() else head


def utc_now() -> str:
    """The date and time in UTC, ISO 8601 to the second: ``2026-11-23T08:42:32Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
