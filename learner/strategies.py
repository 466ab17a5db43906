"""Query strategies: which unlabelled texts to ask the user about next.

Every strategy is a plain function over precomputed class probabilities (shape
``(n_pool, n_classes)``, as from ``predict_proba``) that returns pool indices, best first.
The uncertainty measures are modAL's own (:mod:`modAL.uncertainty`), reached through
:class:`PrecomputedProba`, a stand-in estimator whose ``predict_proba`` returns the
probabilities already computed, so the transformer scores the pool once per round. The ranked
batch-mode selection picks what :mod:`modAL.batch` picks, in far fewer distance computations
(see :func:`diverse_uncertainty`).

Call strategies from :data:`STRATEGIES` with keywords, all alike::

    STRATEGIES[name](proba, n, rng=rng, embeddings=emb, labeled_embeddings=lab)

or use :func:`select`. Only ``"diverse"`` (see :data:`NEEDS_EMBEDDINGS`) needs embeddings;
the others ignore them.

modAL is imported inside the functions: it imports torch at module level, and importing this
module must stay cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from learner.errors import LearnerError

RngLike = np.random.Generator | int | None
"""A numpy Generator, a seed, or ``None``. For the uncertainty strategies ``None`` breaks ties
by pool order (deterministic) and a Generator or seed breaks them at random; for
``random_sampling`` ``None`` means fresh OS entropy."""

MEASURES: tuple[str, ...] = ("least_confidence", "margin", "entropy")


class PrecomputedProba:
    """A stand-in for a fitted classifier that returns probabilities computed beforehand.

    modAL's sampling functions take ``(classifier, X)`` and call
    ``classifier.predict_proba(X)``; they never validate ``X`` themselves. With this adaptor
    ``X`` can be anything of the pool's length (row indices, embeddings).

    Attributes:
        proba: The probabilities, one row per pool item.
    """

    def __init__(self, proba: np.ndarray) -> None:
        """Wraps probabilities of shape ``(n_pool, n_classes)``."""
        self.proba = proba

    def predict_proba(self, X: Any, **_: Any) -> np.ndarray:
        """Returns the wrapped probabilities, checking that ``X`` has one row per pool item.

        Args:
            X: Anything with ``len(X) == len(proba)``.

        Returns:
            The wrapped probabilities.
        """
        if len(X) != len(self.proba):
            raise ValueError(f"X has {len(X)} rows but the precomputed probabilities have {len(self.proba)}")
        return self.proba


# --------------------------------------------------------------------------- scores


def uncertainty_scores(proba: np.ndarray, strategy: str) -> np.ndarray:
    """Per-item uncertainty under a strategy's measure, higher meaning more uncertain.

    Args:
        proba: Array of shape ``(n_pool, n_classes)``.
        strategy: A key of :data:`STRATEGIES`. ``"least_confidence"``: ``1 - max p``;
            ``"margin"``: ``1 - (p_first - p_second)``; ``"entropy"``: Shannon entropy in nats
            (at most ``log(n_classes)``). ``"diverse"`` and ``"random"`` store the
            least-confidence score (what ranked batch sampling weighs, and an informative
            number for randomly picked items).

    Returns:
        float64 array of shape ``(n_pool,)``.

    Raises:
        LearnerError: Unknown strategy or malformed probabilities.
    """
    if strategy not in STRATEGIES:
        raise LearnerError(f"Unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    measure = strategy if strategy in MEASURES else "least_confidence"
    return _scores(_check_proba(proba), measure)


def _scores(proba: np.ndarray, measure: str) -> np.ndarray:
    if len(proba) == 0:
        return np.zeros(0, dtype=np.float64)
    from modAL.uncertainty import classifier_entropy, classifier_margin, classifier_uncertainty

    estimator = PrecomputedProba(proba)
    rows = np.arange(len(proba))[:, None]
    if measure == "least_confidence":
        scores = classifier_uncertainty(estimator, rows)
    elif measure == "margin":
        scores = 1.0 - classifier_margin(estimator, rows)
    elif measure == "entropy":
        scores = classifier_entropy(estimator, rows)
    else:  # pragma: no cover - guarded by callers
        raise LearnerError(f"Unknown uncertainty measure {measure!r}")
    return np.asarray(scores, dtype=np.float64)


# --------------------------------------------------------------------------- strategies


def least_confidence(
    proba: np.ndarray,
    n: int,
    rng: RngLike = None,
    *,
    embeddings: np.ndarray | None = None,
    labeled_embeddings: np.ndarray | None = None,
) -> np.ndarray:
    """The ``n`` items whose most probable class is least probable (modAL's uncertainty).

    Args:
        proba: Array of shape ``(n_pool, n_classes)``.
        n: How many to pick; clamped to ``[0, n_pool]``.
        rng: Tie-breaking: ``None`` keeps pool order, a Generator or seed shuffles ties.
        embeddings: Ignored (uniform signature).
        labeled_embeddings: Ignored (uniform signature).

    Returns:
        Pool indices (``np.intp``), most uncertain first.
    """
    return _ranked(proba, n, rng, "least_confidence")


def margin(
    proba: np.ndarray,
    n: int,
    rng: RngLike = None,
    *,
    embeddings: np.ndarray | None = None,
    labeled_embeddings: np.ndarray | None = None,
) -> np.ndarray:
    """The ``n`` items with the smallest gap between the two most probable classes.

    Args:
        proba: Array of shape ``(n_pool, n_classes)``.
        n: How many to pick; clamped to ``[0, n_pool]``.
        rng: Tie-breaking: ``None`` keeps pool order, a Generator or seed shuffles ties.
        embeddings: Ignored (uniform signature).
        labeled_embeddings: Ignored (uniform signature).

    Returns:
        Pool indices (``np.intp``), smallest margin first.
    """
    return _ranked(proba, n, rng, "margin")


def entropy(
    proba: np.ndarray,
    n: int,
    rng: RngLike = None,
    *,
    embeddings: np.ndarray | None = None,
    labeled_embeddings: np.ndarray | None = None,
) -> np.ndarray:
    """The ``n`` items whose class distribution has the highest entropy.

    Args:
        proba: Array of shape ``(n_pool, n_classes)``.
        n: How many to pick; clamped to ``[0, n_pool]``.
        rng: Tie-breaking: ``None`` keeps pool order, a Generator or seed shuffles ties.
        embeddings: Ignored (uniform signature).
        labeled_embeddings: Ignored (uniform signature).

    Returns:
        Pool indices (``np.intp``), highest entropy first.
    """
    return _ranked(proba, n, rng, "entropy")


def random_sampling(
    proba: np.ndarray,
    n: int,
    rng: RngLike = None,
    *,
    embeddings: np.ndarray | None = None,
    labeled_embeddings: np.ndarray | None = None,
) -> np.ndarray:
    """``n`` items uniformly at random without replacement (the passive baseline).

    Args:
        proba: Array of shape ``(n_pool, n_classes)``; only its length is used.
        n: How many to pick; clamped to ``[0, n_pool]``.
        rng: A Generator or seed; ``None`` draws fresh OS entropy.
        embeddings: Ignored (uniform signature).
        labeled_embeddings: Ignored (uniform signature).

    Returns:
        Pool indices (``np.intp``) in random order.
    """
    proba = _check_proba(proba)
    k = _clamp(n, len(proba))
    return np.random.default_rng(rng).permutation(len(proba))[:k].astype(np.intp)


def diverse_uncertainty(
    proba: np.ndarray,
    n: int,
    embeddings: np.ndarray | None = None,
    rng: RngLike = None,
    *,
    labeled_embeddings: np.ndarray | None = None,
    candidates: int | None = None,
    metric: str = "euclidean",
    normalize: bool = True,
) -> np.ndarray:
    """A batch that is both uncertain and varied: modAL's ranked batch-mode sampling.

    First keeps the ``candidates`` most uncertain items (least confidence), then ranks them
    as :func:`modAL.batch.uncertainty_batch_sampling` does (Cardoso et al., "Ranked batch-mode
    active learning"): each pick maximises ``alpha * (1 - similarity to the labelled and
    already picked items) + (1 - alpha) * uncertainty``, with
    ``alpha = |candidates left| / (|candidates left| + |labelled|)``. Without labelled
    embeddings (cold start) it starts from the candidate closest to all others. The picks are
    modAL's (a test checks it), computed by :func:`_ranked_batch`, which keeps each
    candidate's distance to its nearest chosen item instead of recomputing it against all of
    them for every pick.

    Call with keywords (``rng=...``): the third positional parameter is ``embeddings``.

    Args:
        proba: Array of shape ``(n_pool, n_classes)``.
        n: How many to pick; clamped to ``[0, n_pool]``.
        embeddings: Array of shape ``(n_pool, dim)``, e.g. from ``TransformerClassifier.embed``.
        rng: Tie-breaking: ``None`` keeps pool order, a Generator or seed shuffles ties.
        labeled_embeddings: Array of shape ``(n_labelled, dim)`` of the labelled texts, or
            ``None``/empty for a cold start.
        candidates: Size of the uncertain shortlist; default ``max(10 * n, 100)``. The cold
            start computes all pairwise distances of the shortlist, so keep it in the
            thousands at most.
        metric: Distance passed to scikit-learn's pairwise distances.
        normalize: L2-normalise embeddings first, so euclidean distance follows cosine.

    Returns:
        Pool indices (``np.intp``) in modAL's ranking order.

    Raises:
        LearnerError: Embeddings missing or not matching the probabilities.
    """
    proba = _check_proba(proba)
    if embeddings is None:
        raise LearnerError("The 'diverse' strategy needs embeddings of the pool (embeddings=...)")
    if isinstance(embeddings, (np.random.Generator, int)):
        raise TypeError("diverse_uncertainty's third parameter is embeddings; pass rng by keyword")
    emb = _check_embeddings(embeddings, "embeddings")
    if len(emb) != len(proba):
        raise LearnerError(f"{len(emb)} embeddings for {len(proba)} probability rows")
    labeled = None
    if labeled_embeddings is not None and len(labeled_embeddings):
        labeled = _check_embeddings(labeled_embeddings, "labeled_embeddings")
        if labeled.shape[1] != emb.shape[1]:
            raise LearnerError(
                f"labeled_embeddings have dimension {labeled.shape[1]}, the pool's have {emb.shape[1]}"
            )
    k = _clamp(n, len(proba))
    if k == 0:
        return np.zeros(0, dtype=np.intp)
    shortlist = max(10 * k, 100) if candidates is None else max(int(candidates), k)
    cand = _ranked(proba, shortlist, rng, "least_confidence")
    pool_emb = emb[cand].astype(np.float64)  # only the shortlist: float64 as modAL's
    labeled = None if labeled is None else labeled.astype(np.float64)
    if normalize:
        pool_emb = _l2_normalize(pool_emb)
        labeled = None if labeled is None else _l2_normalize(labeled)

    uncertainty = _scores(proba[cand], "least_confidence")
    return cand[_ranked_batch(uncertainty, pool_emb, labeled, k, metric)]


REFRESH = 16
"""How many of the best stale bounds :func:`_ranked_batch` brings up to date at a time when
bringing the best one up to date was not enough."""


def _ranked_score(alpha: float, nearest: np.ndarray, uncertainty: np.ndarray) -> np.ndarray:
    """modAL's ranked-batch score: far from the labelled and picked items, and uncertain."""
    return alpha * (1 - 1 / (1 + nearest)) + (1 - alpha) * uncertainty


def _ranked_batch(uncertainty: np.ndarray, pool: np.ndarray, labeled: np.ndarray | None,
                  k: int, metric: str) -> np.ndarray:
    """modAL's ``ranked_batch``: the same picks from far fewer distance computations.

    modAL recomputes every candidate's distance to all labelled and picked items for each pick
    (``k * len(pool) * (|labelled| + k)`` distances). Here each candidate keeps its distance
    to the nearest item it has been compared with, and is compared with the items picked
    since only when it could be the next pick: a stale distance is never smaller than the
    true one, and the score grows with it, so a score from a stale distance bounds the true
    score from above (lazy greedy). The candidate with the best bound is brought up to date
    until the best one is current: that is the pick, the same one, ties to the lowest index
    included, as scoring every candidate afresh.
    The one departure: at a cold start modAL leaves its first pick among the candidates (it
    can be picked again); here it is taken out like every other pick.
    """
    from sklearn.metrics.pairwise import pairwise_distances, pairwise_distances_argmin_min

    squared = np.einsum("ij,ij->i", pool, pool)
    picked = np.empty((k, pool.shape[1]), dtype=pool.dtype)  # the picks' rows, in order
    picked_squared = np.empty(k, dtype=squared.dtype)

    def refresh(items: np.ndarray, stop: int) -> None:
        """Bring nearest[items] up to date with picks seen[items]..stop-1."""
        start = int(seen[items].min())
        rows = picked[start:stop]
        if metric == "euclidean":  # scikit-learn's formula, without its per-call checks
            dots = pool[items] @ rows.T
            d = np.sqrt(np.maximum(squared[items, None] - 2 * dots + picked_squared[start:stop], 0))
        else:
            d = pairwise_distances(pool[items], rows, metric=metric)
        d[np.arange(start, stop) < seen[items, None]] = np.inf  # picks nearest[] accounts for
        nearest[items] = np.minimum(nearest[items], d.min(axis=1))
        seen[items] = stop

    free = np.ones(len(pool), dtype=bool)
    ranking: list[int] = []
    if labeled is None:
        pairwise = pairwise_distances(pool, metric=metric)
        first = int(np.argmin(np.mean(pairwise, axis=0)))
        ranking.append(first)
        picked[0], picked_squared[0] = pool[first], squared[first]
        free[first] = False
        nearest = pairwise[:, first].copy()
        n_labeled = 1
    else:
        _, nearest = pairwise_distances_argmin_min(pool, labeled, metric=metric)
        n_labeled = len(labeled)
    seen = np.full(len(pool), len(ranking))  # how many picks each nearest[] accounts for
    while len(ranking) < k:
        n_free = len(pool) - len(ranking)
        alpha = n_free / (n_free + n_labeled)
        bound = _ranked_score(alpha, nearest, uncertainty)
        bound[~free] = -np.inf
        best, alone_tried = int(np.argmax(bound)), False
        while seen[best] < len(ranking):
            stale = np.array([best])
            if alone_tried:  # the best alone was not enough: the best few at once, as
                # near-duplicates of a pick go stale together
                top = np.argpartition(-bound, min(REFRESH, len(bound)) - 1)[:REFRESH]
                stale = np.union1d(stale, top[(seen[top] < len(ranking)) & free[top]])
            refresh(stale, len(ranking))
            bound[stale] = _ranked_score(alpha, nearest[stale], uncertainty[stale])
            best, alone_tried = int(np.argmax(bound)), True
        picked[len(ranking)], picked_squared[len(ranking)] = pool[best], squared[best]
        ranking.append(best)
        free[best] = False
        n_labeled += 1
    return np.asarray(ranking, dtype=np.intp)


Strategy = Callable[..., np.ndarray]

STRATEGIES: dict[str, Strategy] = {
    "least_confidence": least_confidence,
    "margin": margin,
    "entropy": entropy,
    "diverse": diverse_uncertainty,
    "random": random_sampling,
}
"""Strategy name -> function; call with keywords (see the module docstring)."""

NEEDS_EMBEDDINGS: frozenset[str] = frozenset({"diverse"})
"""Strategies that need ``embeddings`` (and may use ``labeled_embeddings``)."""


def select(
    strategy: str,
    proba: np.ndarray,
    n: int,
    rng: RngLike = None,
    embeddings: np.ndarray | None = None,
    labeled_embeddings: np.ndarray | None = None,
) -> np.ndarray:
    """Runs a strategy by name.

    Args:
        strategy: A key of :data:`STRATEGIES`.
        proba: Array of shape ``(n_pool, n_classes)``.
        n: How many to pick.
        rng: Generator, seed or ``None`` (see :data:`RngLike`).
        embeddings: Pool embeddings; needed by the strategies in :data:`NEEDS_EMBEDDINGS`.
        labeled_embeddings: Embeddings of the labelled texts, for ``"diverse"``.

    Returns:
        Pool indices, best first.

    Raises:
        LearnerError: Unknown strategy, or embeddings missing where needed.
    """
    try:
        fn = STRATEGIES[strategy]
    except KeyError:
        raise LearnerError(f"Unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}") from None
    return fn(proba, n, rng=rng, embeddings=embeddings, labeled_embeddings=labeled_embeddings)


# --------------------------------------------------------------------------- helpers


def _ranked(proba: np.ndarray, n: int, rng: RngLike, measure: str) -> np.ndarray:
    proba = _check_proba(proba)
    k = _clamp(n, len(proba))
    scores = _scores(proba, measure)
    if rng is None:
        order = np.argsort(-scores, kind="stable")
    else:
        perm = np.random.default_rng(rng).permutation(len(scores))
        order = perm[np.argsort(-scores[perm], kind="stable")]
    return order[:k].astype(np.intp)


def _clamp(n: int, size: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise LearnerError(f"n must be an integer, not {n!r}")
    return int(min(max(int(n), 0), size))


def _check_proba(proba: np.ndarray) -> np.ndarray:
    arr = np.asarray(proba, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise LearnerError(f"Probabilities must have shape (n_pool, n_classes), not {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise LearnerError("Probabilities contain NaN or infinite values")
    return arr


def _check_embeddings(embeddings: np.ndarray, name: str) -> np.ndarray:
    """The embeddings as a float array, in their own precision (float32 stays float32)."""
    arr = np.asarray(embeddings)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if arr.ndim != 2:
        raise LearnerError(f"{name} must have shape (n, dim), not {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise LearnerError(f"{name} contain NaN or infinite values")
    return arr


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)
