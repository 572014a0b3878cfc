"""Cross-fitting on small data: the folds, the members and their out-of-fold scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from steadyclf import BinaryClassifier
from steadyclf.train.crossfit import stratified_folds


def test_folds_are_stratified_and_follow_the_rows_not_their_order() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(103) < 0.3).astype(np.float32)
    positions = rng.permutation(10_000)[:103].astype(np.int64)
    folds = stratified_folds(y, positions, 5, seed=7)
    for label in (0, 1):
        sizes = np.bincount(folds[y == label], minlength=5)
        assert sizes.max() - sizes.min() <= 1  # each fold its share of each class, to a row
    order = rng.permutation(103)
    again = stratified_folds(y[order], positions[order], 5, seed=7)
    np.testing.assert_array_equal(again, folds[order])
    assert not np.array_equal(stratified_folds(y, positions, 5, seed=8), folds)


def test_out_of_fold_estimate_matches_a_fresh_test_set() -> None:
    """The estimate small data reports (no rows held out) is close to the test score."""
    rng = np.random.default_rng(3)
    n = 1600
    X = rng.normal(size=(n, 4))
    logit = 1.5 * X[:, 0] - X[:, 1] + 0.8 * np.sin(2 * X[:, 2])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    clf = BinaryClassifier(random_state=0).fit(X[:800], y[:800])
    estimate = clf.validation_metrics_["roc_auc"]
    test = roc_auc_score(y[800:], clf.predict_proba(X[800:])[:, 1])
    # 800 test rows at AUC ~0.85 give a standard error of about 0.014; the out-of-fold
    # estimate (each member scored on rows it did not train on) is a little pessimistic.
    assert estimate == pytest.approx(test, abs=0.03)


def test_a_class_too_small_to_fold_trains_one_network() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 2))
    y = np.zeros(60, dtype=int)
    y[:4] = 1  # 4 positives: not one in each of 5 folds' training rows
    clf = BinaryClassifier(random_state=0, max_epochs=5).fit(X, y)
    assert len(clf.module_.bodies) == 1 and "cross_fit" not in clf.data_


def test_selection_bias_removes_the_optimism_of_choosing_on_the_same_folds() -> None:
    """Candidates that are pure noise: the one of lowest out-of-fold log loss looks better
    than chance by the choice alone; the corrected estimate is back at chance."""
    from scipy.special import expit
    from sklearn.metrics import roc_auc_score

    from steadyclf.evaluation import selection_bias

    rng = np.random.default_rng(0)
    raw, corrected = [], []
    for _ in range(200):
        y = (rng.random(200) < 0.5).astype(int)
        folds = rng.permutation(np.arange(200) % 5)
        candidates = {c: expit(0.3 * rng.normal(size=200)) for c in range(6)}
        losses = {
            c: -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)) for c, p in candidates.items()
        }
        chosen = min(losses, key=losses.__getitem__)
        auc = roc_auc_score(y, candidates[chosen])
        raw.append(auc)
        bias = selection_bias(y, folds, candidates, chosen)
        corrected.append(auc - bias["roc_auc"])
        assert bias["log_loss"] >= 0 and bias["roc_auc"] >= 0
    # 200 draws of an AUC with sd ~0.04: the mean is known to about 0.003.
    assert np.mean(raw) > 0.51  # the choice alone flatters the noise
    assert abs(np.mean(corrected) - 0.5) < abs(np.mean(raw) - 0.5) / 2
    one = {0: candidates[0]}
    assert selection_bias(y, folds, one, 0) == dict.fromkeys(
        ("roc_auc", "pr_auc", "log_loss", "brier"), 0.0
    )
