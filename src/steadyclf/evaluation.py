"""How good is a binary classifier: scikit-learn metrics and decision-threshold tuning.

Every metric comes from :mod:`sklearn.metrics`; this module only decides which ones a
report holds, makes them JSON-friendly (``None`` where a metric is undefined, e.g. ROC
AUC when the data hold one class), and picks a decision threshold on a validation split.

Thresholds follow :meth:`BinaryClassifier.predict`: a row is positive when its
probability is strictly above the threshold. Row weights (``sample_weight``) weigh every
metric and the threshold search, as scikit-learn's ``sample_weight`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn import metrics

from .exceptions import DataError, ParameterError
from .policy import THRESHOLD_METRICS

__all__ = [
    "CORRECTED_METRICS",
    "THRESHOLD_METRICS",
    "binary_metrics",
    "correct_for_selection",
    "labels_to_binary",
    "log_loss",
    "roc_auc",
    "selection_bias",
    "tune_threshold",
]


def binary_metrics(
    y_true: ArrayLike,
    proba: ArrayLike,
    threshold: float = 0.5,
    sample_weight: ArrayLike | None = None,
) -> dict[str, Any]:
    """Classification report for 0/1 labels and probabilities of class 1.

    Parameters
    ----------
    y_true : array of 0/1
    proba : array of float
        Probability of the positive class.
    threshold : float
        Rows with ``proba > threshold`` are predicted positive.
    sample_weight : array of float, optional
        Row weights: every metric weighs each row by them, as scikit-learn's metrics do
        with ``sample_weight`` (the confusion matrix then holds sums of weights).

    Returns
    -------
    dict
        ``n``, ``n_positive``, ``threshold``, ``accuracy``, ``balanced_accuracy``,
        ``precision``, ``recall``, ``f1``, ``roc_auc``, ``pr_auc`` (average precision),
        ``log_loss``, ``brier`` and ``confusion_matrix`` (``tn``, ``fp``, ``fn``, ``tp``);
        with weights also ``sum_of_weights``. ``n`` and ``n_positive`` count rows.
        Ranking metrics are ``None`` when ``y_true`` holds one class.

    Examples
    --------
    >>> report = binary_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
    >>> report["accuracy"], report["roc_auc"], report["confusion_matrix"]["fp"]
    (0.5, 0.75, 1)
    """
    y = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.clip(np.asarray(proba, dtype=np.float64).ravel(), 0.0, 1.0)
    if y.shape != p.shape:
        raise DataError(f"{y.size} labels but {p.size} probabilities")
    if y.size == 0:
        raise DataError("cannot evaluate on zero rows")
    w = _weights(sample_weight, y.size)
    predicted = (p > threshold).astype(np.int64)
    n_positive = int(y.sum())
    both_classes = 0 < n_positive < y.size
    matrix = metrics.confusion_matrix(y, predicted, labels=[0, 1], sample_weight=w)
    tn, fp, fn, tp = matrix.ravel().tolist()
    total = tn + fp + fn + tp
    if w is not None:  # rows of weight 0 do not make a class present
        both_classes = tp + fn > 0 and tn + fp > 0
    # The rates follow from the confusion matrix, as scikit-learn's functions compute them
    # (zero_division=0), without their checks of the labels once per metric.
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    report = {
        "n": int(y.size),
        "n_positive": n_positive,
        "threshold": float(threshold),
        "accuracy": (tp + tn) / total,
        "balanced_accuracy": (recall + tn / (tn + fp)) / 2 if both_classes else None,
        "precision": precision,
        "recall": recall,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
        "roc_auc": float(metrics.roc_auc_score(y, p, sample_weight=w)) if both_classes else None,
        "pr_auc": (
            float(metrics.average_precision_score(y, p, sample_weight=w)) if both_classes else None
        ),
        "log_loss": log_loss(y, p, w),
        "brier": float(np.average((p - y) ** 2, weights=w)),
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }
    if w is not None:
        report["sum_of_weights"] = float(total)
    return report


#: Metrics the selection-bias correction adjusts, with the direction in which they improve
#: (+1: higher is better).
CORRECTED_METRICS = {"roc_auc": 1, "pr_auc": 1, "log_loss": -1, "brier": -1}


def selection_bias(
    y_true: ArrayLike,
    folds: ArrayLike,
    candidates: Mapping[Any, ArrayLike],
    chosen: Any,
    sample_weight: ArrayLike | None = None,
) -> dict[str, float]:
    """How much choosing among ``candidates`` on the same out-of-fold scores flatters them.

    ``candidates[c]`` are the out-of-fold probabilities of candidate ``c`` (each row scored
    by the member that did not train on it), ``chosen`` the one kept. Tibshirani &
    Tibshirani (2009, "A bias correction for the minimum error rate in cross-validation"):
    on each fold ``k``, the candidate best on that fold alone beats the chosen one by
    ``metric_k(best_k) - metric_k(chosen)``; the mean over the folds estimates how much the
    choice itself adds to the chosen candidate's score. Returned per metric of
    :data:`CORRECTED_METRICS`, as an amount to subtract in the metric's better direction
    (always >= 0): a corrected AUC is ``auc - bias['roc_auc']``, a corrected log loss
    ``log_loss + bias['log_loss']``. No candidates to choose among: no bias.

    Examples
    --------
    >>> y = [0, 1, 0, 1, 0, 1, 0, 1]
    >>> folds = [0, 0, 0, 0, 1, 1, 1, 1]
    >>> a = [0.4, 0.6, 0.4, 0.6, 0.6, 0.4, 0.4, 0.6]  # right on fold 0, half on fold 1
    >>> b = [0.6, 0.4, 0.4, 0.6, 0.4, 0.6, 0.4, 0.6]  # the other way round
    >>> round(selection_bias(y, folds, {"a": a, "b": b}, "a")["roc_auc"], 3)
    0.25
    """
    y = np.asarray(y_true, dtype=np.int64).ravel()
    fold = np.asarray(folds).ravel()
    w = _weights(sample_weight, y.size)
    names = list(candidates)
    if len(names) < 2:
        return dict.fromkeys(CORRECTED_METRICS, 0.0)
    probas = np.column_stack(
        [np.clip(np.asarray(candidates[c], dtype=np.float64).ravel(), 0.0, 1.0) for c in names]
    )
    column = names.index(chosen)
    gaps: dict[str, list[float]] = {metric: [] for metric in CORRECTED_METRICS}
    for k in np.unique(fold):
        rows = fold == k
        yk, wk = y[rows], None if w is None else w[rows]
        weight = np.ones(yk.size) if wk is None else wk
        if not (weight[yk == 1].sum() > 0 and weight[yk == 0].sum() > 0):
            continue  # one class (of positive weight) on this fold: no ranking metric
        for metric, scores in _metrics_by_column(yk, probas[rows], wk).items():
            sign = CORRECTED_METRICS[metric]
            gaps[metric].append(float(np.max(sign * scores) - sign * scores[column]))
    return {metric: float(np.mean(g)) if g else 0.0 for metric, g in gaps.items()}


def _metrics_by_column(
    y: NDArray[np.int64], p: NDArray[np.float64], w: NDArray[np.float64] | None
) -> dict[str, NDArray[np.float64]]:
    """Each metric of :data:`CORRECTED_METRICS` for every column of ``p`` at once.

    ROC AUC and average precision as scikit-learn's ``roc_auc_score`` and
    ``average_precision_score`` compute them (tests/test_evaluation.py compares them within
    1e-12, ties and weights included): from the weighted true and false positives at each
    distinct score, one sort a column. scikit-learn's own calls cost 15-20 ms a fold here,
    almost all of it input checks: 0.1 s of a 0.6 s small-data fit.
    """
    labels = np.repeat(y[:, None], p.shape[1], axis=1)
    eps = np.finfo(np.float64).eps
    clipped = np.clip(p, eps, 1 - eps)
    losses = -(labels * np.log(clipped) + (1 - labels) * np.log1p(-clipped))
    roc_auc, pr_auc = _ranking_by_column(y, p, w)
    return {
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "log_loss": np.average(losses, axis=0, weights=w),
        "brier": np.average((p - labels) ** 2, axis=0, weights=w),
    }


def roc_auc(y: NDArray[np.int64], p: NDArray[np.float64]) -> float:
    """ROC AUC of the scores ``p`` for 0/1 labels ``y`` with both classes, as scikit-learn's
    ``roc_auc_score`` computes it (:func:`_ranking_by_column`), without its input checks
    (a thousand times per :func:`~steadyclf.importance.explain`, they cost more than it)."""
    return float(_ranking_by_column(y, p.reshape(-1, 1), None)[0][0])


def _ranking_by_column(
    y: NDArray[np.int64], p: NDArray[np.float64], w: NDArray[np.float64] | None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """ROC AUC and average precision of every column of ``p`` (both classes must have
    weight): scikit-learn's binary curve (rows of zero weight dropped, rows sorted by
    decreasing score, cumulative weights of positives and negatives at the last row of
    each distinct score), the ROC's trapezoids and the precision-recall steps."""
    weight = np.ones(y.size) if w is None else np.asarray(w, dtype=np.float64)
    kept = weight != 0
    y, p, weight = y[kept], p[kept], weight[kept]
    positive, negative = weight * y, weight * (1 - y)
    roc_auc, pr_auc = np.empty(p.shape[1]), np.empty(p.shape[1])
    for j in range(p.shape[1]):
        order = np.argsort(p[:, j], kind="mergesort")[::-1]
        score = p[order, j]
        last = np.r_[np.flatnonzero(np.diff(score)), score.size - 1]
        tps = np.cumsum(positive[order])[last]
        fps = np.cumsum(negative[order])[last]
        tpr, fpr = np.r_[0.0, tps] / tps[-1], np.r_[0.0, fps] / fps[-1]
        roc_auc[j] = np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2
        precision = np.divide(tps, tps + fps, out=np.zeros_like(tps), where=tps + fps != 0)
        pr_auc[j] = np.sum(np.diff(tpr) * precision)
    return roc_auc, pr_auc


def correct_for_selection(report: dict[str, Any], bias: Mapping[str, float]) -> dict[str, Any]:
    """``report`` (of :func:`binary_metrics`) with the metrics of ``bias`` (of
    :func:`selection_bias`) moved by it in their worse direction, the amounts kept under
    ``'selection_bias'``; metrics that are ``None`` stay so."""
    out = dict(report)
    for metric, sign in CORRECTED_METRICS.items():
        if out.get(metric) is not None and bias.get(metric):
            value = float(out[metric]) - sign * float(bias[metric])
            out[metric] = min(1.0, max(0.0, value)) if sign > 0 else max(0.0, value)
    out["selection_bias"] = {k: float(v) for k, v in bias.items()}
    return out


def _weights(sample_weight: ArrayLike | None, n: int) -> NDArray[np.float64] | None:
    """Row weights as float64, checked: one per row, finite, >= 0, not all 0."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64).ravel()
    if w.shape != (n,):
        raise DataError(f"{n} rows but {w.size} sample weights")
    if not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
        raise DataError("sample weights must be finite numbers >= 0, not all zero")
    return w


def log_loss(
    y: ArrayLike, proba: ArrayLike, sample_weight: NDArray[np.float64] | None = None
) -> float:
    """Mean binary cross-entropy of probabilities of class 1, clipped to [eps, 1 - eps] as
    scikit-learn's ``log_loss`` does (its checks of the labels left out: 0/1 here); a mean
    weighted by ``sample_weight`` if given."""
    labels = np.asarray(y, dtype=np.float64)
    eps = np.finfo(np.float64).eps
    p = np.clip(np.asarray(proba, dtype=np.float64), eps, 1 - eps)
    losses = -(labels * np.log(p) + (1 - labels) * np.log1p(-p))
    return float(np.average(losses, weights=sample_weight))


def tune_threshold(
    y_true: ArrayLike, proba: ArrayLike, metric: str, sample_weight: ArrayLike | None = None
) -> float:
    """The decision threshold that maximises ``metric`` on ``(y_true, proba)`` (each row
    weighted by ``sample_weight``, if given).

    Candidates are the midpoints between consecutive distinct probabilities (every
    distinct way to split the rows), scored from scikit-learn's precision-recall curve
    (``'f1'``) or ROC curve (``'balanced_accuracy'``). Ties go to the threshold closest
    to 0.5.

    Parameters
    ----------
    y_true : array of 0/1
    proba : array of float
    metric : {'f1', 'balanced_accuracy'}
    sample_weight : array of float, optional

    Returns
    -------
    float in [0, 1]

    Examples
    --------
    >>> tune_threshold([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.9], "f1")
    0.25
    """
    if metric not in THRESHOLD_METRICS:
        raise ParameterError(
            f"threshold_metric must be one of {', '.join(map(repr, THRESHOLD_METRICS))}; got {metric!r}"
        )
    y = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(proba, dtype=np.float64).ravel()
    w = _weights(sample_weight, y.size)
    if np.unique(y if w is None else y[w > 0]).size < 2:
        return 0.5
    if metric == "f1":
        # Scores positive when p >= thresholds[i]; the last point (recall 0) has none.
        precision, recall, cut = metrics.precision_recall_curve(
            y, p, sample_weight=w, drop_intermediate=False
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            score = np.nan_to_num(2 * precision[:-1] * recall[:-1] / (precision[:-1] + recall[:-1]))
    else:
        fpr, tpr, cut = metrics.roc_curve(y, p, sample_weight=w, drop_intermediate=False)
        score, cut = ((tpr + 1.0 - fpr) / 2.0)[1:], cut[1:]  # cut[0] = inf: nothing positive
    return _best_cut(score, cut, p)


def _best_cut(
    score: NDArray[np.float64], cut: NDArray[np.float64], p: NDArray[np.float64]
) -> float:
    """Threshold for ``p > t`` equivalent to the best ``p >= cut`` rule, halfway down."""
    distinct = np.unique(p)
    below = np.searchsorted(distinct, cut, side="left") - 1
    lower = np.where(below >= 0, distinct[np.maximum(below, 0)], 0.0)
    thresholds = (cut + lower) / 2.0
    best = np.flatnonzero(score >= score.max() - 1e-12)
    choice = best[np.argmin(np.abs(thresholds[best] - 0.5))]
    return float(np.clip(thresholds[choice], 0.0, 1.0))


def labels_to_binary(y: ArrayLike, classes: ArrayLike, positive: Any = None) -> NDArray[np.int64]:
    """0/1 codes of labels ``y`` (1 for ``positive``) for a model with two ``classes``.

    ``positive`` defaults to ``classes[1]``: give it for an estimator, whose ``classes_``
    are sorted (``labels_to_binary(y, clf.classes_, clf.positive_class_)``).

    A label matches a class when equal to it or when their text is equal (``1`` and
    ``'1'``, or ``1.0`` read from a column with missing values).

    Raises
    ------
    DataError
        Some labels are neither class; the message lists them.
    """
    values = np.asarray(y, dtype=object).ravel()
    names = [_label_key(c) for c in np.asarray(classes, dtype=object).tolist()]
    if positive is not None and _label_key(positive) == names[0]:
        names = names[::-1]
    keys = np.array([_label_key(v) for v in values.tolist()], dtype=object)
    positive, negative = keys == names[1], keys == names[0]
    unknown = ~(positive | negative)
    if unknown.any():
        seen = sorted({str(v) for v in values[unknown].tolist()})[:10]
        raise DataError(
            f"target values {', '.join(map(repr, seen))} are not classes of the model ({', '.join(map(repr, names))})"
        )
    return positive.astype(np.int64)


def _label_key(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    return str(value)
