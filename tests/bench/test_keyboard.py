"""bench_keyboard end to end: the real app in a real browser, a few answers timed and stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.bench_keyboard import CHROMIUM, measure


def test_each_answer_is_timed_in_the_browser_and_every_one_is_stored():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is needed for the browser benchmark ({CHROMIUM}); .ci/run installs it")
    result = measure(n_texts=200, n_answers=4, warm_up=1, pause_s=0.05)
    assert (result["texts"], result["answers"], result["warm_up"]) == (200, 4, 1)
    assert result["stored"] == 5 and len(result["waits_ms"]) == 5  # the warm-up's answer too
    assert 0 <= result["lost_presses"] < 5
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["max_ms"] == max(result["waits_ms"][1:])
