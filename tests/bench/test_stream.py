"""bench_stream: a tiny network behind the default model's tokenizer, texts streamed in chunks."""

from __future__ import annotations

import json
from pathlib import Path


def test_a_short_stream_records_memory_after_each_chunk(tmp_path: Path) -> None:
    from bench.bench_stream import main

    out = tmp_path / "stream.json"
    assert main(["--texts", "300", "--device", "cpu", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    st = result["stream"]
    assert (result["model"], result["device"], st["texts"], st["chunks"]) == ("tiny", "cpu", 300, 1)
    [(done, peak, now)] = st["per_chunk"]
    assert done == 300 and peak >= st["peak_rss_before_mb"] and 0 < now <= peak
