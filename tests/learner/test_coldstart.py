"""The cold-start sample: representative texts from every part of the corpus, odd ones last."""

from __future__ import annotations

import numpy as np

from learner.coldstart import FIRST, TEXTS_PER_CLUSTER, diverse_sample

TOPICS = {
    "sport": "match goal team coach league season player score cup final stadium win",
    "money": "bank shares market profit investor price economy stock trade growth rates firm",
    "music": "album band singer concert chart song tour guitar record label fans stage",
}
COMMON = "said year people time week told new".split()  # every topic shares these
ODD = ["zyxomat quibbleflux", "norvangle trepidix", "plooferant gazzwick"]


def corpus(per_topic: int = 40, seed: int = 0) -> tuple[list[str], list[str]]:
    rnd = np.random.default_rng(seed)
    texts, kinds = [], []
    for topic, words in TOPICS.items():
        vocab = words.split()
        for _ in range(per_topic):
            texts.append(" ".join([*rnd.choice(vocab, size=6), *rnd.choice(COMMON, size=3)]))
            kinds.append(topic)
    texts += ODD
    kinds += ["odd"] * len(ODD)
    order = rnd.permutation(len(texts))
    return [texts[i] for i in order], [kinds[i] for i in order]


def test_one_medoid_per_topic_and_no_odd_text():
    texts, kinds = corpus()
    for seed in range(5):
        picked = diverse_sample(texts, 3, np.random.default_rng(seed))
        assert sorted(kinds[i] for i in picked) == ["money", "music", "sport"], seed


def test_every_prefix_spreads_over_the_topics_and_odd_texts_come_last():
    texts, kinds = corpus()
    picked = diverse_sample(texts, 9, np.random.default_rng(1))
    assert len(set(picked)) == 9
    assert {kinds[i] for i in picked[:3]} == {"money", "music", "sport"}
    assert "odd" not in {kinds[i] for i in picked[:6]}


def test_the_rest_past_the_medoids_is_distinct_and_in_range():
    texts, _ = corpus(per_topic=30)
    picked = diverse_sample(texts, FIRST + 20, np.random.default_rng(2))
    assert len(picked) == FIRST + 20 == len(set(picked))
    assert all(0 <= i < len(texts) for i in picked)


def test_deterministic_for_a_seed_and_all_texts_when_asked_for_more():
    texts, _ = corpus(per_topic=10)
    a = diverse_sample(texts, 5, np.random.default_rng(3))
    assert a == diverse_sample(texts, 5, np.random.default_rng(3))
    everything = diverse_sample(texts, len(texts) + 5, np.random.default_rng(3))
    assert sorted(everything) == list(range(len(texts)))


def test_degenerate_texts_still_give_distinct_picks():
    texts = ["the and of"] * 5 + ["same words here"] * 5 + ["", ""]
    picked = diverse_sample(texts, 4, np.random.default_rng(4))
    assert len(picked) == 4 == len(set(picked))


def test_a_small_pool_gets_fewer_clusters_so_odd_texts_still_come_last():
    """93 texts: 50 clusters would be pairs and singletons, and the odd texts' group, far from
    the rest, came first (in the first 10 for all 10 draws, the topics covered by the first 3
    in 1); with 8 texts per cluster neither happens."""
    covered = 0
    for seed in range(10):
        texts, kinds = corpus(per_topic=30, seed=seed)
        picked = diverse_sample(texts, FIRST, np.random.default_rng(seed))
        assert len(set(picked)) == FIRST
        assert "odd" not in {kinds[i] for i in picked[:10]}, seed
        covered += {kinds[i] for i in picked[:3]} == {"money", "music", "sport"}
    assert covered >= 9
    assert len(texts) // TEXTS_PER_CLUSTER < FIRST
