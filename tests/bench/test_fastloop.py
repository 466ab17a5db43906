"""bench_fastloop at a tiny size: every strategy re-ranks, and diverse picks what modAL picks."""

from __future__ import annotations

from bench.bench_fastloop import STRATEGIES, corpus_vectors, run


def test_every_strategy_reranks_and_diverse_matches_modal():
    labels, base = corpus_vectors(dim=32)
    result = run(size=400, n_labels=60, repeats=1, labels=labels, base=base)
    assert result["pool"] == 400 and result["dim"] == 32
    assert list(result["strategies"]) == list(STRATEGIES)
    for figures in result["strategies"].values():
        assert figures["pool"] == 400 and figures["queued"] > 0
        assert figures["median"]["wall_s"] >= figures["median"]["rank_s"] > 0
    compared = result["diverse_against_modal"]
    assert compared["shortlist"] == 400 and compared["picks"] == 400
    assert compared["same_picks"] is True
