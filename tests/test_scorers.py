"""scikit-learn's scorers and model selection read the estimator as any classifier.

``classes_`` is sorted whichever class is ``positive``, ``predict_proba``'s columns
follow it and ``decision_function`` is in favour of ``classes_[1]``; the positive class
(``positive_class_``) is what the threshold, the metrics and the reports are about.
Each scorer is compared with the metric computed by hand from the probability of the
positive class, taken from the saved model state (:class:`steadyclf.predictor.Predictor`,
which never looks at ``classes_``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics
from sklearn.base import clone
from sklearn.metrics import get_scorer, make_scorer
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score

import steadyclf
from steadyclf import BinaryClassifier
from steadyclf.evaluation import labels_to_binary
from steadyclf.predictor import Predictor

#: The same probabilities from the same float64 NumPy forward pass; only how a metric
#: sums them may differ (1 - p against p, a column taken from a matrix): well within 1e-9.
RTOL = 1e-9
#: Small, fast fits: no cross-fitted candidates to choose among.
FAST = {
    "hidden": (4,),
    "max_epochs": 80,
    "random_state": 0,
    "weight_decay": 1e-2,
    "numeric_embedding": "none",
    "validation_fraction": 0.2,
}
LABELS = {"text": np.array(["default", "ok"]), "integers": np.array([0, 1])}
SCORERS = ["roc_auc", "neg_log_loss", "average_precision", "neg_brier_score", "accuracy"]


def _data(kind: str, n: int = 160) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, 3))
    signal = X[:, 0] - 0.5 * X[:, 1] + 0.7 * rng.normal(size=n)
    return X, LABELS[kind][(signal > 0.3).astype(int)]


def _positive_probability(clf: BinaryClassifier, X: np.ndarray) -> np.ndarray:
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
    return Predictor.from_state(clf.to_state()).probability(frame)


def _expected(name: str, clf: BinaryClassifier, X: np.ndarray, y: np.ndarray) -> float:
    """The metric of the positive class's probability, written in sorted classes."""
    classes = np.unique(y)  # LabelEncoder's order
    p = _positive_probability(clf, X)
    high = p if clf.positive_class_ == classes[1] else 1.0 - p  # P(classes[1])
    is_high = (y == classes[1]).astype(int)
    if name == "roc_auc":
        return float(metrics.roc_auc_score(is_high, high))
    if name == "neg_log_loss":
        return -float(metrics.log_loss(is_high, np.column_stack([1.0 - high, high])))
    if name == "average_precision":
        return float(metrics.average_precision_score(is_high, high))
    if name == "neg_brier_score":
        return -float(metrics.brier_score_loss(is_high, high))
    assert name == "accuracy"
    labels = np.where(
        p > clf.threshold_, clf.positive_class_, classes[classes != clf.positive_class_][0]
    )
    return float(np.mean(labels == y))


def _scorer(name: str, kind: str) -> Any:
    """scikit-learn's scorer by name; for text labels, the two that need ``pos_label``
    (scikit-learn refuses text labels without it, for any estimator) get ``classes[1]``."""
    if kind == "text" and name == "average_precision":
        return make_scorer(
            metrics.average_precision_score,
            response_method=("decision_function", "predict_proba"),
            pos_label="ok",
        )
    if kind == "text" and name == "neg_brier_score":
        return make_scorer(
            metrics.brier_score_loss,
            greater_is_better=False,
            response_method="predict_proba",
            pos_label="ok",
        )
    return get_scorer(name)


@pytest.fixture(scope="module")
def fitted() -> dict[tuple[str, int], BinaryClassifier]:
    models = {}
    for kind, labels in LABELS.items():
        X, y = _data(kind)
        for which in (0, 1):
            models[kind, which] = BinaryClassifier(positive=labels[which], **FAST).fit(X, y)
    return models


@pytest.mark.parametrize("kind", list(LABELS))
@pytest.mark.parametrize("which", [0, 1])
def test_classes_are_sorted_and_the_positive_class_is_kept(
    fitted: dict[tuple[str, int], BinaryClassifier], kind: str, which: int
) -> None:
    clf, labels = fitted[kind, which], LABELS[kind]
    X, y = _data(kind)
    assert clf.classes_.tolist() == labels.tolist()
    assert clf.positive_class_ == labels[which]
    p = _positive_probability(clf, X)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba[:, which], p, rtol=RTOL)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=RTOL)
    # decision_function is in favour of classes_[1], as scikit-learn reads it.
    assert np.all(np.sign(clf.decision_function(X)) == np.sign(proba[:, 1] - 0.5))
    # The threshold is about the positive class.
    expected = np.where(p > clf.threshold_, labels[which], labels[1 - which])
    np.testing.assert_array_equal(clf.predict(X), expected)
    assert (
        labels_to_binary(y, clf.classes_, clf.positive_class_).tolist()
        == (y == labels[which]).astype(int).tolist()
    )
    # The model learned something in either direction (the scorers below are not at chance).
    assert metrics.roc_auc_score(y == labels[which], p) > 0.8


@pytest.mark.parametrize("kind", list(LABELS))
@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("name", SCORERS)
def test_get_scorer_equals_the_metric_of_sorted_classes(
    fitted: dict[tuple[str, int], BinaryClassifier], kind: str, which: int, name: str
) -> None:
    clf = fitted[kind, which]
    X, y = _data(kind)
    got = _scorer(name, kind)(clf, X, y)
    assert got == pytest.approx(_expected(name, clf, X, y), rel=RTOL)


@pytest.mark.parametrize("kind", list(LABELS))
@pytest.mark.parametrize("which", [0, 1])
def test_cross_val_score_and_grid_search_score_as_by_hand(kind: str, which: int) -> None:
    X, y = _data(kind, n=120)
    clf = BinaryClassifier(positive=LABELS[kind][which], **FAST)
    cv = StratifiedKFold(n_splits=2)
    splits = list(cv.split(X, y))
    candidates = [{"hidden": (1,), "max_epochs": 1}, {"hidden": (8,), "max_epochs": 30}]
    grid = [{k: [v] for k, v in c.items()} for c in candidates]
    scoring = {name: _scorer(name, kind) for name in SCORERS}
    search = GridSearchCV(clf, grid, scoring=scoring, refit="roc_auc", cv=cv).fit(X, y)
    by_hand = []
    for params in candidates:
        fits = [clone(clf).set_params(**params).fit(X[train], y[train]) for train, _ in splits]
        by_hand.append(
            {
                name: [
                    _expected(name, m, X[test], y[test])
                    for m, (_, test) in zip(fits, splits, strict=True)
                ]
                for name in SCORERS
            }
        )
    assert search.cv_results_["params"] == candidates
    for name in SCORERS:
        expected = [np.mean(scores[name]) for scores in by_hand]
        np.testing.assert_allclose(search.cv_results_[f"mean_test_{name}"], expected, rtol=RTOL)
    best = int(np.argmax([np.mean(scores["roc_auc"]) for scores in by_hand]))
    assert search.best_params_ == candidates[best]
    assert search.best_score_ > 0.8  # the better network, not the worst
    good = clf.set_params(**candidates[1])
    for name in SCORERS:
        folds = cross_val_score(good, X, y, scoring=scoring[name], cv=cv)
        np.testing.assert_allclose(folds, by_hand[1][name], rtol=RTOL)


def test_a_model_saved_with_the_positive_class_last_predicts_the_same() -> None:
    """model.json has always held the classes as [negative, positive]: a model saved
    before ``classes_`` was sorted loads with sorted ``classes_`` and the same answers."""
    here = Path(__file__).parent / "data" / "model_v_positive_last"
    expected = json.loads((here / "expected.json").read_text())
    assert expected["classes"] == ["ok", "default"]  # the old order, positive last
    rows = pd.read_csv(here / "rows.csv")
    clf = steadyclf.load(here / "model")
    assert clf.classes_.tolist() == ["default", "ok"] and clf.positive_class_ == "default"
    assert clf.predict(rows).tolist() == expected["labels"]
    # Same weights, same NumPy forward pass: the saved probabilities to float64 rounding
    # of a different column order (1 - p computed once either way).
    np.testing.assert_allclose(clf.predict_proba(rows)[:, 0], expected["probability"], rtol=1e-12)
    predictor = Predictor.load(here / "model")
    assert predictor.classes.tolist() == ["ok", "default"]  # the state keeps code order
    assert predictor.labels(predictor.probability(rows)).tolist() == expected["labels"]
