import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from steadyclf import BinaryClassifier, DataError, ParameterError
from steadyclf.evaluation import binary_metrics, labels_to_binary, roc_auc, tune_threshold


def test_binary_metrics_on_a_small_case() -> None:
    y = [0, 0, 0, 1, 1]
    p = [0.1, 0.5, 0.7, 0.4, 0.9]
    report = binary_metrics(y, p, threshold=0.5)
    # 0.5 is not above the threshold: predictions are 0, 0, 1, 0, 1.
    assert report["confusion_matrix"] == {"tn": 2, "fp": 1, "fn": 1, "tp": 1}
    assert report["accuracy"] == pytest.approx(3 / 5)
    assert report["precision"] == pytest.approx(1 / 2)
    assert report["recall"] == pytest.approx(1 / 2)
    assert report["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert report["roc_auc"] == pytest.approx(4 / 6)
    assert report["brier"] == pytest.approx(np.mean((np.array(p) - np.array(y)) ** 2))
    assert report["n"] == 5 and report["n_positive"] == 2
    assert set(report) >= {"f1", "pr_auc", "log_loss", "threshold"}


def test_one_class_leaves_ranking_metrics_undefined() -> None:
    report = binary_metrics([1, 1, 1], [0.2, 0.8, 0.9])
    assert report["roc_auc"] is None and report["pr_auc"] is None
    assert report["balanced_accuracy"] is None
    assert report["accuracy"] == pytest.approx(2 / 3)


def test_binary_metrics_input_errors() -> None:
    with pytest.raises(DataError, match="3 labels but 2 probabilities"):
        binary_metrics([0, 1, 1], [0.1, 0.2])
    with pytest.raises(DataError, match="zero rows"):
        binary_metrics([], [])


@pytest.mark.parametrize(
    ("metric", "score"), [("f1", f1_score), ("balanced_accuracy", balanced_accuracy_score)]
)
def test_tuned_threshold_is_the_best_split(metric: str, score) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    y = (rng.random(300) < 0.2).astype(int)
    p = np.clip(0.25 * y + rng.normal(0.3, 0.15, size=300), 0, 1)
    best = tune_threshold(y, p, metric)
    candidates = np.unique(np.concatenate([[0.0], p]))
    brute = max(score(y, (p > t).astype(int)) for t in candidates)
    assert score(y, (p > best).astype(int)) == pytest.approx(brute)
    assert 0.0 <= best <= 1.0 and best not in p  # halfway between two probabilities


def test_tune_threshold_edge_cases() -> None:
    assert tune_threshold([1, 1], [0.3, 0.9], "f1") == 0.5
    with pytest.raises(ParameterError, match="threshold_metric must be one of 'f1'"):
        tune_threshold([0, 1], [0.1, 0.9], "auc")


def test_labels_to_binary_matches_text_and_numbers() -> None:
    assert labels_to_binary(["no", "yes"], np.array(["no", "yes"])).tolist() == [0, 1]
    assert labels_to_binary([1.0, 0.0, 1], np.array([0, 1])).tolist() == [1, 0, 1]
    assert labels_to_binary(["1", "0"], np.array([0, 1])).tolist() == [1, 0]
    assert labels_to_binary([True, False], np.array([False, True])).tolist() == [1, 0]
    with pytest.raises(DataError, match=r"target values 'maybe' are not classes of the model"):
        labels_to_binary(["yes", "maybe"], np.array(["no", "yes"]))


def test_estimator_tunes_its_threshold_on_the_validation_split() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    y = (X[:, 0] + rng.normal(scale=1.0, size=400) > 1.6).astype(int)  # about 10% positive
    params = dict(hidden=(8,), max_epochs=20, random_state=0, validation_fraction=0.3)
    plain = BinaryClassifier(**params).fit(X, y)  # type: ignore[arg-type]
    tuned = BinaryClassifier(threshold_metric="balanced_accuracy", **params).fit(X, y)  # type: ignore[arg-type]
    assert plain.threshold_ == 0.5 and tuned.threshold_ < 0.5
    tuned_score = tuned.validation_metrics_["balanced_accuracy"]
    assert tuned_score > plain.validation_metrics_["balanced_accuracy"]
    assert tuned.validation_metrics_["threshold"] == tuned.threshold_
    np.testing.assert_array_equal(
        tuned.predict(X), (tuned.predict_proba(X)[:, 1] > tuned.threshold_)
    )


def test_estimator_positive_class() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = np.where(X[:, 0] > 0, "ill", "well")
    clf = BinaryClassifier(max_epochs=30, random_state=0, positive="ill").fit(X, y)
    # classes_ sorted as scikit-learn sorts them; the positive class is kept apart.
    assert clf.classes_.tolist() == ["ill", "well"] and clf.positive_class_ == "ill"
    assert clf.score(X, y) > 0.9
    with pytest.raises(ParameterError, match="threshold_metric must be None or one of"):
        BinaryClassifier(threshold_metric="auc").fit(X, y)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_per_column_ranking_metrics_are_scikit_learn_s(weighted: bool) -> None:
    # selection_bias scores every candidate on every fold without scikit-learn's per-call
    # checks: the same ROC AUC and average precision, ties, zero and fractional weights
    # included (only the summation order of equal weights may differ: 1e-12).
    from sklearn.metrics import average_precision_score, roc_auc_score

    from steadyclf.evaluation import _metrics_by_column

    rng = np.random.default_rng(0)
    for n, decimals in [(7, 1), (60, 1), (200, 2), (500, 6)]:
        y = (rng.random(n) < 0.3).astype(np.int64)
        y[:2] = [0, 1]
        p = np.round(rng.random((n, 4)), decimals)  # few decimals: many ties
        p[:, 3] = 0.5  # every score tied
        w = None
        if weighted:
            w = rng.choice([0.0, 0.5, 1.0, 3.25], size=n)
            w[:2] = 1.0
        got = _metrics_by_column(y, p, w)
        for j in range(p.shape[1]):
            expected_auc = roc_auc_score(y, p[:, j], sample_weight=w)
            expected_ap = average_precision_score(y, p[:, j], sample_weight=w)
            assert got["roc_auc"][j] == pytest.approx(expected_auc, rel=0, abs=1e-12)
            assert got["pr_auc"][j] == pytest.approx(expected_ap, rel=0, abs=1e-12)
        assert got["roc_auc"][3] == pytest.approx(0.5)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "tied-scores"])
def test_roc_auc_is_scikit_learn_s(ties: bool) -> None:
    rng = np.random.default_rng(7)
    y = (rng.random(501) < 0.3).astype(np.int64)
    p = rng.random(501) + 0.3 * y
    if ties:  # few distinct scores: the ties between classes count a half
        p = np.round(p, 1)
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-14)
    assert roc_auc(y, -p) == pytest.approx(1 - roc_auc_score(y, p), abs=1e-14)
