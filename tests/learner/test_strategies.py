"""Tests of learner.strategies, checked against modAL on a real scikit-learn classifier."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn
from modAL.batch import uncertainty_batch_sampling
from modAL.models import ActiveLearner
from modAL.uncertainty import (
    classifier_entropy,
    classifier_margin,
    classifier_uncertainty,
    entropy_sampling,
    margin_sampling,
    uncertainty_sampling,
)
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from learner.errors import LearnerError
from learner.strategies import (
    NEEDS_EMBEDDINGS,
    STRATEGIES,
    PrecomputedProba,
    diverse_uncertainty,
    entropy,
    least_confidence,
    margin,
    random_sampling,
    select,
    uncertainty_scores,
)

NAMES = ["least_confidence", "margin", "entropy", "diverse", "random"]

# Rows chosen so that the three measures rank differently.
PROBA = np.array(
    [
        [0.90, 0.05, 0.05],  # 0: confident
        [0.50, 0.49, 0.01],  # 1: small margin, low entropy
        [0.40, 0.30, 0.30],  # 2: least confident, highest entropy
        [0.45, 0.45, 0.10],  # 3: zero margin
        [0.70, 0.20, 0.10],  # 4
    ]
)


@pytest.fixture(scope="module")
def sklearn_problem() -> tuple[LogisticRegression, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=300, n_features=6, n_informative=4, n_redundant=0, n_classes=3, random_state=0
    )
    X_train, y_train, X_pool, y_pool = X[:30], y[:30], X[30:], y[30:]
    clf = LogisticRegression(max_iter=500).fit(X_train, y_train)
    return clf, X_train, y_train, X_pool, y_pool


# --------------------------------------------------------------------------- the registry


def test_registry_names() -> None:
    assert list(STRATEGIES) == NAMES
    assert NEEDS_EMBEDDINGS == {"diverse"}


@pytest.mark.parametrize("name", NAMES)
def test_every_strategy_takes_the_uniform_keyword_call(name: str) -> None:
    emb = np.random.default_rng(0).normal(size=(len(PROBA), 4))
    picked = STRATEGIES[name](PROBA, 3, rng=np.random.default_rng(1), embeddings=emb, labeled_embeddings=None)
    assert picked.dtype == np.intp
    assert len(picked) == 3 and len(set(picked.tolist())) == 3
    assert all(0 <= i < len(PROBA) for i in picked)
    np.testing.assert_array_equal(select(name, PROBA, 3, rng=np.random.default_rng(1), embeddings=emb), picked)


@pytest.mark.parametrize("name", NAMES)
def test_n_is_clamped_and_empty_pools_give_nothing(name: str) -> None:
    emb = np.eye(len(PROBA))
    assert len(select(name, PROBA, 50, rng=0, embeddings=emb)) == len(PROBA)
    assert len(select(name, PROBA, 0, rng=0, embeddings=emb)) == 0
    assert len(select(name, PROBA, -3, rng=0, embeddings=emb)) == 0
    assert len(select(name, np.zeros((0, 3)), 5, rng=0, embeddings=np.zeros((0, 4)))) == 0


def test_select_rejects_unknown_names_and_missing_embeddings() -> None:
    with pytest.raises(LearnerError, match="Unknown strategy"):
        select("bald", PROBA, 2)
    with pytest.raises(LearnerError, match="embeddings"):
        select("diverse", PROBA, 2)


@pytest.mark.parametrize("bad", [np.array([0.5, 0.5]), np.array([[0.5, np.nan]]), np.zeros((3, 0))])
def test_malformed_probabilities_are_rejected(bad: np.ndarray) -> None:
    with pytest.raises(LearnerError):
        least_confidence(bad, 1)


def test_n_must_be_an_integer() -> None:
    with pytest.raises(LearnerError):
        margin(PROBA, 2.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- rankings and scores


def test_rankings_on_hand_made_probabilities() -> None:
    assert least_confidence(PROBA, 5).tolist() == [2, 3, 1, 4, 0]
    assert margin(PROBA, 5).tolist() == [3, 1, 2, 4, 0]
    assert entropy(PROBA, 2).tolist() == [2, 3]


def test_uncertainty_scores_values() -> None:
    np.testing.assert_allclose(uncertainty_scores(PROBA, "least_confidence"), 1 - PROBA.max(axis=1))
    top2 = np.sort(PROBA, axis=1)[:, ::-1][:, :2]
    np.testing.assert_allclose(uncertainty_scores(PROBA, "margin"), 1 - (top2[:, 0] - top2[:, 1]))
    np.testing.assert_allclose(uncertainty_scores(PROBA, "entropy"), -(PROBA * np.log(PROBA)).sum(axis=1))
    for name in ("diverse", "random"):
        np.testing.assert_allclose(uncertainty_scores(PROBA, name), 1 - PROBA.max(axis=1))
    with pytest.raises(LearnerError):
        uncertainty_scores(PROBA, "nope")
    assert uncertainty_scores(np.zeros((0, 2)), "entropy").shape == (0,)


@pytest.mark.parametrize("name", ["least_confidence", "margin", "entropy"])
def test_ranking_follows_scores_higher_first(name: str) -> None:
    proba = np.random.default_rng(3).dirichlet(np.ones(4), size=200)
    scores = uncertainty_scores(proba, name)
    picked = STRATEGIES[name](proba, 200)
    assert np.all(np.diff(scores[picked]) <= 0)


def test_ties_break_by_pool_order_without_rng_and_at_random_with_it() -> None:
    proba = np.full((20, 2), 0.5)
    assert least_confidence(proba, 5).tolist() == [0, 1, 2, 3, 4]
    a = least_confidence(proba, 20, rng=1)
    assert sorted(a.tolist()) == list(range(20))
    np.testing.assert_array_equal(a, least_confidence(proba, 20, rng=np.random.default_rng(1)))
    assert not np.array_equal(a, least_confidence(proba, 20, rng=2))
    # Random tie-breaking never reorders items whose scores differ.
    mixed = np.array([[0.9, 0.1], [0.5, 0.5], [0.8, 0.2], [0.5, 0.5]])
    for seed in range(5):
        assert set(least_confidence(mixed, 2, rng=seed).tolist()) == {1, 3}
        assert least_confidence(mixed, 4, rng=seed).tolist()[2:] == [2, 0]


def test_random_sampling_is_seeded_and_without_replacement() -> None:
    proba = np.full((100, 3), 1 / 3)
    a = random_sampling(proba, 30, rng=5)
    assert len(set(a.tolist())) == 30
    np.testing.assert_array_equal(a, random_sampling(proba, 30, rng=np.random.default_rng(5)))
    assert not np.array_equal(a, random_sampling(proba, 30, rng=6))


# --------------------------------------------------------------------------- against modAL


def test_precomputed_adaptor_feeds_modal_measures() -> None:
    rows = np.arange(len(PROBA))[:, None]
    est = PrecomputedProba(PROBA)
    np.testing.assert_allclose(classifier_uncertainty(est, rows), 1 - PROBA.max(axis=1))
    with pytest.raises(ValueError):
        est.predict_proba(rows[:2])


@pytest.mark.parametrize(
    ("ours", "theirs", "measure", "higher_first"),
    [
        (least_confidence, uncertainty_sampling, classifier_uncertainty, True),
        (margin, margin_sampling, classifier_margin, False),
        (entropy, entropy_sampling, classifier_entropy, True),
    ],
)
def test_same_choice_as_modal_on_a_real_sklearn_classifier(
    sklearn_problem: tuple[LogisticRegression, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ours: object,
    theirs: object,
    measure: object,
    higher_first: bool,
) -> None:
    clf, _, _, X_pool, _ = sklearn_problem
    proba = clf.predict_proba(X_pool)
    for n in (1, 10, 40):
        modal_idx, _ = theirs(clf, X_pool, n_instances=n)  # type: ignore[operator]
        picked = ours(proba, n)  # type: ignore[operator]
        assert set(picked.tolist()) == set(np.asarray(modal_idx).tolist())
    # The full ranking is modAL's measure sorted (continuous scores: no ties).
    values = measure(clf, X_pool)  # type: ignore[operator]
    expected = np.argsort(-values if higher_first else values, kind="stable")
    np.testing.assert_array_equal(ours(proba, len(X_pool)), expected)  # type: ignore[operator]


@pytest.mark.filterwarnings("ignore:.*force_all_finite.*:FutureWarning")
def test_modal_active_learner_teach_works_with_pinned_sklearn(
    sklearn_problem: tuple[LogisticRegression, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """modAL 0.4.2.1 passes ``force_all_finite`` to check_X_y, which scikit-learn 1.8 removed."""
    assert sklearn.__version__.startswith("1.7."), sklearn.__version__
    _, X_train, y_train, X_pool, y_pool = sklearn_problem
    learner = ActiveLearner(
        estimator=LogisticRegression(max_iter=500),
        X_training=X_train,
        y_training=y_train,
        query_strategy=uncertainty_sampling,
    )
    before = learner.score(X_pool, y_pool)
    pool = np.arange(len(X_pool))
    for _ in range(5):
        query_idx, _ = learner.query(X_pool[pool], n_instances=10)
        chosen = pool[query_idx]
        learner.teach(X_pool[chosen], y_pool[chosen])
        pool = np.setdiff1d(pool, chosen)
    assert learner.X_training.shape[0] == len(X_train) + 50
    assert len(pool) == len(X_pool) - 50
    assert learner.score(X_pool, y_pool) >= before - 0.05


# --------------------------------------------------------------------------- diverse


def test_diverse_equals_modal_ranked_batch_over_the_whole_pool(
    sklearn_problem: tuple[LogisticRegression, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    clf, X_train, y_train, X_pool, _ = sklearn_problem
    learner = ActiveLearner(
        estimator=LogisticRegression(max_iter=500),
        X_training=X_train,
        y_training=y_train,
        query_strategy=uncertainty_batch_sampling,
    )
    modal_idx, _ = learner.query(X_pool, n_instances=8)
    proba = learner.predict_proba(X_pool)
    ours = diverse_uncertainty(
        proba, 8, embeddings=X_pool, labeled_embeddings=X_train, candidates=len(X_pool), normalize=False
    )
    np.testing.assert_array_equal(ours, np.asarray(modal_idx))


class _ModalLearner(PrecomputedProba):
    """What modAL's ranked batch reads from a learner: probabilities and the labelled items."""

    on_transformed = False

    def __init__(self, proba: np.ndarray, X_training: np.ndarray | None) -> None:
        super().__init__(proba)
        self.X_training = X_training


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("seed", range(3))
def test_diverse_picks_what_modal_picks_for_a_long_batch(seed: int, metric: str) -> None:
    # Every pick changes the nearest chosen item and alpha: a long batch checks both.
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(4), size=400)
    emb, labeled = rng.normal(size=(400, 16)), rng.normal(size=(25, 16))
    modal_idx, _ = uncertainty_batch_sampling(_ModalLearner(proba, labeled), emb,
                                              n_instances=150, metric=metric)
    ours = diverse_uncertainty(proba, 150, embeddings=emb, labeled_embeddings=labeled,
                               candidates=400, metric=metric, normalize=False)
    np.testing.assert_array_equal(ours, modal_idx)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_diverse_picks_what_modal_picks_among_near_duplicates(metric: str) -> None:
    # Copies of a text are alike in uncertainty and place: a pick makes all its copies' bounds
    # stale at once, which the lazy ranking brings up to date several at a time.
    rng = np.random.default_rng(7)
    base, base_proba = rng.normal(size=(40, 12)), rng.dirichlet(np.ones(3), size=40)
    copies = np.repeat(np.arange(40), 6)
    emb = base[copies] + rng.normal(scale=1e-3, size=(240, 12))
    proba = base_proba[copies]
    labeled = rng.normal(size=(10, 12))
    ours = diverse_uncertainty(proba, 120, embeddings=emb, labeled_embeddings=labeled,
                               candidates=240, metric=metric, normalize=False)
    modal_idx, _ = uncertainty_batch_sampling(_ModalLearner(proba, labeled), emb,
                                              n_instances=120, metric=metric)
    np.testing.assert_array_equal(ours, modal_idx)


def _plain_ranked_batch(uncertainty: np.ndarray, pool: np.ndarray, labeled: np.ndarray | None,
                        k: int) -> list[int]:
    """The greedy loop ``_ranked_batch`` stands for: every candidate scored afresh per pick."""
    dist = np.sqrt(((pool[:, None, :] - pool[None, :, :]) ** 2).sum(-1))
    if labeled is None:
        first = int(np.argmin(dist.mean(axis=0)))
        ranking, nearest, n_labeled = [first], dist[:, first].copy(), 1
    else:
        nearest = np.sqrt(((pool[:, None, :] - labeled[None]) ** 2).sum(-1)).min(axis=1)
        ranking, n_labeled = [], len(labeled)
    while len(ranking) < k:
        n_free = len(pool) - len(ranking)
        alpha = n_free / (n_free + n_labeled)
        scores = alpha * (1 - 1 / (1 + nearest)) + (1 - alpha) * uncertainty
        scores[ranking] = -np.inf
        best = int(np.argmax(scores))
        ranking.append(best)
        nearest = np.minimum(nearest, dist[:, best])
        n_labeled += 1
    return ranking


def test_diverse_ranking_equals_scoring_every_candidate_afresh() -> None:
    # The lazy ranking against the plain greedy loop it stands for, cold start included.
    from learner.strategies import _ranked_batch

    rng = np.random.default_rng(3)
    for copies in (1, 5):
        pool = np.repeat(rng.normal(size=(300 // copies, 8)), copies, axis=0)
        pool += rng.normal(scale=1e-3, size=pool.shape)
        uncertainty = np.repeat(rng.uniform(0, 0.7, size=300 // copies), copies)
        for labeled in (None, rng.normal(size=(20, 8))):
            assert _ranked_batch(uncertainty, pool, labeled, 150, "euclidean").tolist() == \
                _plain_ranked_batch(uncertainty, pool, labeled, 150)


def test_diverse_ranking_with_more_exact_ties_than_it_refreshes_at_once() -> None:
    # 40 identical copies of each text: more tied bounds than REFRESH, so the best one need
    # not be among those argpartition returns; it must be refreshed all the same.
    from learner.strategies import REFRESH, _ranked_batch

    rng = np.random.default_rng(5)
    assert 40 > REFRESH
    pool = np.repeat(rng.normal(size=(6, 8)), 40, axis=0)
    uncertainty = np.repeat(rng.uniform(0, 0.7, size=6), 40)
    labeled = rng.normal(size=(3, 8))
    ours = _ranked_batch(uncertainty, pool, labeled, 120, "euclidean").tolist()
    plain = _plain_ranked_batch(uncertainty, pool, labeled, 120)
    # Identical copies are interchangeable (rounding decides among them): the same texts, in
    # the same order, each copy picked once.
    assert [i // 40 for i in ours] == [i // 40 for i in plain] and len(set(ours)) == 120


def test_diverse_cold_start_begins_where_modal_does_and_never_repeats() -> None:
    from modAL.batch import select_cold_start_instance

    rng = np.random.default_rng(4)
    proba, emb = rng.dirichlet(np.ones(3), size=200), rng.normal(size=(200, 8))
    first, _ = select_cold_start_instance(emb, "euclidean", None)
    ours = diverse_uncertainty(proba, 60, embeddings=emb, candidates=200, normalize=False)
    assert ours[0] == first and len(set(ours.tolist())) == 60


def two_clusters() -> tuple[np.ndarray, np.ndarray]:
    """Forty near-duplicates that are a little more uncertain, and seven distinct items."""
    rng = np.random.default_rng(0)
    dup = np.eye(8)[0] + rng.normal(scale=1e-3, size=(40, 8))
    other = np.eye(8)[1:] + rng.normal(scale=1e-3, size=(7, 8))
    emb = np.vstack([dup, other])
    p = np.concatenate([np.full(40, 0.52), np.full(7, 0.55)])
    proba = np.column_stack([p, 1 - p])
    return proba, emb


def test_diverse_spreads_a_batch_where_plain_uncertainty_does_not() -> None:
    proba, emb = two_clusters()
    plain = least_confidence(proba, 6)
    assert set(plain.tolist()) <= set(range(40))  # all near-duplicates
    for labeled in (None, -np.eye(8)[:1]):
        picked = diverse_uncertainty(proba, 6, embeddings=emb, labeled_embeddings=labeled)
        assert len(set(picked.tolist())) == 6
        assert sum(i < 40 for i in picked) <= 1  # one of the near-duplicates at most
        assert sum(i >= 40 for i in picked) >= 5  # the distinct items get in


def test_diverse_cold_start_and_validation() -> None:
    proba, emb = two_clusters()
    cold = diverse_uncertainty(proba, 5, embeddings=emb, rng=0)
    assert len(set(cold.tolist())) == 5
    np.testing.assert_array_equal(cold, diverse_uncertainty(proba, 5, embeddings=emb, rng=0))
    assert len(diverse_uncertainty(proba, 5, embeddings=emb, labeled_embeddings=np.zeros((0, 8)))) == 5
    with pytest.raises(LearnerError, match="embeddings"):
        diverse_uncertainty(proba, 5, embeddings=emb[:10])
    with pytest.raises(LearnerError, match="dimension"):
        diverse_uncertainty(proba, 5, embeddings=emb, labeled_embeddings=np.zeros((2, 3)))
    with pytest.raises(TypeError, match="keyword"):
        diverse_uncertainty(proba, 5, np.random.default_rng(0))  # type: ignore[arg-type]


def test_diverse_shortlist_limits_choice_to_the_most_uncertain() -> None:
    proba = np.random.default_rng(1).dirichlet(np.ones(3), size=500)
    emb = np.random.default_rng(2).normal(size=(500, 8))
    picked = diverse_uncertainty(proba, 5, embeddings=emb, candidates=20)
    assert set(picked.tolist()) <= set(least_confidence(proba, 20).tolist())
