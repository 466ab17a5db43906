"""Cold start: a diverse random sample, chosen before any model exists.

Texts are drawn uniformly at random, turned into hashed TF-IDF-like vectors, and a greedy
k-centre pass (farthest point first) picks the most spread-out subset, so the first labels cover
the corpus instead of its densest corner.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def diverse_sample(
    texts: Sequence[str], n: int, rng: np.random.Generator, candidates: int = 4000
) -> list[int]:
    """Indices of ``n`` diverse texts (all of them when there are fewer).

    Args:
        texts: the unlabelled pool (or a uniform sample of it).
        n: how many to pick.
        rng: random source; the first centre and the candidate sample come from it.
        candidates: at most this many texts are considered (a uniform sample).
    """
    if n >= len(texts):
        return list(rng.permutation(len(texts)))
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

    pool = rng.choice(len(texts), size=min(candidates, len(texts)), replace=False)
    vectors = HashingVectorizer(
        n_features=2**18, alternate_sign=False, norm=None, stop_words="english"
    ).transform([texts[i] for i in pool])
    vectors = TfidfTransformer(sublinear_tf=True).fit_transform(vectors)  # rows are L2-normed
    first = int(rng.integers(len(pool)))
    chosen = [first]
    # distance = 1 - cosine similarity to the nearest chosen centre
    nearest = 1.0 - np.asarray((vectors @ vectors[first].T).todense()).ravel()
    nearest[first] = -1.0
    while len(chosen) < n:
        nxt = int(np.argmax(nearest))
        chosen.append(nxt)
        sim = np.asarray((vectors @ vectors[nxt].T).todense()).ravel()
        nearest = np.minimum(nearest, 1.0 - sim)
        nearest[chosen] = -1.0
    return [int(pool[i]) for i in chosen]
