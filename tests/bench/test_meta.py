"""The machine, commit and date that go with every benchmark figure."""

from __future__ import annotations

import re

from bench import meta

KEYS = {"cpu_model", "logical_cores", "avx512f", "avx512_bf16", "amx_bf16", "ram_bytes", "os",
        "python", "sqlite", "torch", "cuda_gpu"}


def test_machine_has_every_key(monkeypatch):
    monkeypatch.setattr(meta, "torch_info", lambda: {"torch": "2.0", "cuda_gpu": None})
    info = meta.machine()
    assert set(info) == KEYS
    assert info["logical_cores"] >= 1 and info["ram_bytes"] > 2**20
    assert isinstance(info["avx512f"], bool) and isinstance(info["avx512_bf16"], bool)
    assert isinstance(info["amx_bf16"], bool)
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
    # A CPU without AVX-512 gets its own tag; a record without the flag (older runs) keeps the
    # vendor's plain tag, and AMX wins over the flag.
    assert meta.machine_tag({"logical_cores": 2, "cuda_gpu": None, "avx512f": False,
                             "cpu_model": "AMD EPYC"}) == "cpu-amd-avx2-2core"
    assert meta.machine_tag({"logical_cores": 2, "cuda_gpu": None, "avx512f": True,
                             "cpu_model": "AMD EPYC"}) == "cpu-amd-2core"
    assert meta.machine_tag({"logical_cores": 2, "cuda_gpu": None, "avx512f": False,
                             "cpu_model": "Intel(R) Core(TM) i5"}) == "cpu-intel-avx2-2core"
    assert meta.machine_tag({"logical_cores": 2, "cuda_gpu": None, "avx512f": False,
                             "cpu_model": "ARM Neoverse"}) == "cpu-arm-2core"
    assert meta.machine_tag({"logical_cores": 16, "cuda_gpu": "NVIDIA H100 80GB HBM3"}) \
        == "gpu-h100-80gb-hbm3"


def test_commit_and_date_formats():
    assert re.fullmatch(r"[0-9a-f]{7,}(\+dirty)?", meta.git_commit() or "")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta.utc_now())


def test_cpu_times_from_proc_stat(monkeypatch, tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  4718500 1315 409858 1876023 38428 0 13558 151022 0 0\n"
                    "cpu0 2134576 658 173637 1209032 7658 0 4354 72872 0 0\n")
    monkeypatch.setattr(meta, "PROC_STAT", stat)
    assert meta.cpu_times() == {"user": 4718500, "nice": 1315, "system": 409858,
                                "idle": 1876023, "iowait": 38428, "irq": 0, "softirq": 13558,
                                "steal": 151022}
    monkeypatch.setattr(meta, "PROC_STAT", tmp_path / "absent")
    assert meta.cpu_times() is None


def test_steal_share():
    before = dict.fromkeys(("user", "nice", "system", "idle", "iowait", "irq", "softirq",
                            "steal"), 100)
    after = {**before, "user": 160, "idle": 115, "steal": 125}  # 100 ticks, 25 stolen
    assert meta.steal_share(before, after) == 0.25
    assert meta.steal_share(before, before) is None  # no time between the readings
    assert meta.steal_share(None, after) is None and meta.steal_share(before, None) is None
