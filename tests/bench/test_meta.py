"""The machine, commit and date that go with every benchmark figure."""

from __future__ import annotations

import re

from bench import meta

KEYS = {"cpu_model", "logical_cores", "avx512_bf16", "amx_bf16", "ram_bytes", "os", "python",
        "sqlite", "torch", "cuda_gpu"}


def test_machine_has_every_key(monkeypatch):
    monkeypatch.setattr(meta, "torch_info", lambda: {"torch": "2.0", "cuda_gpu": None})
    info = meta.machine()
    assert set(info) == KEYS
    assert info["logical_cores"] >= 1 and info["ram_bytes"] > 2**20
    assert isinstance(info["avx512_bf16"], bool) and isinstance(info["amx_bf16"], bool)
    assert re.fullmatch(r"3\.\d+\.\d+", info["sqlite"])


def test_torch_that_cannot_be_imported_is_said_so(monkeypatch):
    monkeypatch.setattr(meta, "_TORCH_PROBE", "raise ImportError('No module named torch')")
    assert meta.torch_info() == {"torch": "not importable: ImportError: No module named torch",
                                 "cuda_gpu": None}


def test_machine_tag():
    assert meta.machine_tag({"logical_cores": 2, "cuda_gpu": None}) == "cpu-2core"
    assert meta.machine_tag({"logical_cores": 2, "cuda_gpu": None,
                             "cpu_model": "Intel(R) Xeon(R) Processor"}) == "cpu-intel-2core"
    assert meta.machine_tag({"logical_cores": 2, "cuda_gpu": None, "amx_bf16": True,
                             "cpu_model": "Intel(R) Xeon(R) Processor"}) == "cpu-intel-amx-2core"
    assert meta.machine_tag({"logical_cores": 2, "cuda_gpu": None,
                             "cpu_model": "AMD EPYC"}) == "cpu-amd-2core"
    assert meta.machine_tag({"logical_cores": 16, "cuda_gpu": "NVIDIA H100 80GB HBM3"}) \
        == "gpu-h100-80gb-hbm3"


def test_commit_and_date_formats():
    assert re.fullmatch(r"[0-9a-f]{7,}(\+dirty)?", meta.git_commit() or "")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta.utc_now())
