"""Probabilities that mean what they say: temperature and Platt scaling of the logit.

A network's probabilities are often too confident (or not confident enough) even when
it ranks rows well. A one- or two-parameter map of its logit ``z``, fitted on rows the
network did not train on, fixes most of that without changing the ranking:

- **temperature** scaling: ``sigmoid(scale * z)``;
- **Platt** scaling: ``sigmoid(scale * z + bias)``, which also moves the base rate (e.g.
  after ``pos_weight`` shifted it).

Both minimise the log loss of the held-out rows (a convex problem in one or two
parameters, solved by :func:`scipy.optimize.minimize`), with Platt's targets
``(n_pos + 1) / (n_pos + 2)`` and ``1 / (n_neg + 2)`` instead of 1 and 0 so that rows the
logit separates perfectly do not send the scale to infinity. A fit whose scale is not
positive (the logit ranks the held-out rows backwards) is refused: the map would reverse
every prediction.

:func:`calibrate` is what a fit calls with the held-out logits and labels (the
validation rows, or out-of-fold predictions): with ``'auto'`` on validation rows it
decides between no map, temperature and Platt by **cross-fitting** on those rows (fit on one half, score
on the other, both ways), so that the choice is judged on rows its parameters were not
fitted on, keeps a map only when it beats the simpler ones (no map, then temperature) by
more than the noise of that comparison, and then fits the chosen map on all the rows; on
the out-of-fold logits of small data it fits Platt scaling (:data:`OUT_OF_FOLD_AUTO`). The result is a plain dict,
stored as the estimator's ``calibration_`` and in ``model.json``; predictions are
``sigmoid(scale * logit + bias)``.

:func:`expected_calibration_error` uses the :func:`reliability_bins`: bins of equal mass
(each holds about the same number of rows, rows of one probability in one bin), so that it
is not dominated by a few sparsely populated bins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import expit

from .evaluation import log_loss
from .exceptions import ParameterError
from .policy import CALIBRATIONS

__all__ = [
    "AUTO_MARGIN_SE",
    "CALIBRATION_METHODS",
    "IDENTITY_CALIBRATION",
    "MIN_CALIBRATION_ROWS",
    "OUT_OF_FOLD_AUTO",
    "OUT_OF_FOLD_MARGIN_SE",
    "calibrate",
    "calibration_metrics",
    "decision_weight",
    "default_threshold",
    "describe_calibration",
    "expected_calibration_error",
    "fit_scaling",
    "reliability_bins",
    "without_held_out_rows",
]

#: ``calibration`` parameter values: ``'auto'`` chooses among the others by cross-fitting.
CALIBRATION_METHODS = CALIBRATIONS
#: No calibration: probabilities are the sigmoid of the network's logit.
IDENTITY_CALIBRATION: dict[str, Any] = {"method": "none", "scale": 1.0, "bias": 0.0}
#: Fewest held-out rows to fit a map on (and 10 of each class). The per-row differences of
#: log loss that decide ``'auto'`` are heavy-tailed: on halves of fewer than about 125
#: rows their standard error is itself unreliable. On the development tables
#: (benchmarks/calibration.py) the one map kept on fewer rows (201) raised the test log
#: loss by 0.017 in its fold.
MIN_CALIBRATION_ROWS = 250
#: Fewest held-out rows of each class to fit a map on.
MIN_CALIBRATION_CLASS_ROWS = 10
#: ``'auto'`` keeps a map only when its cross-fitted log loss is below the simpler one's by
#: more than this many standard errors of the mean per-row difference (a one-sided test
#: at about 84 %), on held-out rows that early stopping also looked at (the validation
#: split): the epoch was picked on them, so they flatter the network and a map that only
#: fits their noise is easily found (benchmarks/calibration.py: with no margin, maps kept
#: on such rows raised the test log loss by up to 0.0026).
AUTO_MARGIN_SE = 1.0
#: A margin of 0 (the lowest cross-fitted log loss wins), for ``'auto'`` choosing on
#: out-of-fold logits: what ``benchmarks/calibration.py --mode oof`` measured before the
#: fit settled on :data:`OUT_OF_FOLD_AUTO` (no choice) for them.
OUT_OF_FOLD_MARGIN_SE = 0.0
#: What ``'auto'`` fits on the out-of-fold logits of small data's cross-fitted members
#: (with enough rows; see MIN_CALIBRATION_ROWS): Platt scaling, without a choice. On the
#: development tables (benchmarks/calibration.py --mode defaults) choosing by cross-fitting
#: halves of those rows lowered the test log loss on 7 of 17 tables and raised it on 5 (by
#: at most 0.0013); Platt always, on 11, raising it on 4 by at most 0.0009. Chosen on those
#: tables, so they are not an independent test of it.
OUT_OF_FOLD_AUTO = "platt"
#: Bins of :func:`expected_calibration_error` (equal mass).
ECE_BINS = 10
#: Logits are clipped to +-this before fitting and comparing maps: the logit of the
#: probabilities 1 - eps and eps, where scikit-learn's log loss clips too. A row the
#: network extrapolates wildly on (a logit of -4e6 on a value far outside the training
#: range) otherwise costs millions in the mean log loss and decides the map by itself.
LOGIT_LIMIT = float(np.log((1 - np.finfo(np.float64).eps) / np.finfo(np.float64).eps))


# -- metrics ---------------------------------------------------------------------------------
def _log_loss_of_logits(z: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per-row log loss of logits ``z`` (exact for any magnitude: no clipping needed)."""
    return np.logaddexp(0.0, z) - y * z


def reliability_bins(
    y: ArrayLike,
    proba: ArrayLike,
    n_bins: int = ECE_BINS,
    sample_weight: ArrayLike | None = None,
) -> list[dict[str, float]]:
    """Rows in up to ``n_bins`` bins of equal mass by probability, as a reliability
    diagram shows them: per bin its ``rows``, ``weight``, probability range (``low``,
    ``high``), mean ``predicted`` probability and ``observed`` rate of class 1.

    Rows are sorted by probability and a row goes to the bin where its share of the
    cumulative weight (of the row count, without ``sample_weight``) starts; rows of the
    same probability all go to the bin of the first of them, so that no bin's contents
    depend on the order of tied rows (a table with repeated rows ties many). Means are
    weighted. Empty bins are left out.

    Examples
    --------
    >>> [b["rows"] for b in reliability_bins([0, 1, 0, 1], [0.1, 0.2, 0.2, 0.9], n_bins=2)]
    [3, 1]
    """
    labels = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(proba, dtype=np.float64).ravel()
    order = np.argsort(p, kind="stable")
    w = (
        np.ones(p.size)
        if sample_weight is None
        else np.asarray(sample_weight, dtype=np.float64).ravel()[order]
    )
    if not w.sum() > 0:  # no rows, or none that weigh anything
        return []
    before = np.cumsum(w) - w
    ids = np.minimum((n_bins * before / w.sum()).astype(np.int64), n_bins - 1)
    sorted_p = p[order]
    starts = np.r_[True, sorted_p[1:] != sorted_p[:-1]]  # the first row of each value
    ids = ids[starts][np.cumsum(starts) - 1]
    bins = []
    for b in np.unique(ids):
        inside = ids == b
        rows, weight = order[inside], w[inside]
        if weight.sum() <= 0:
            continue
        bins.append(
            {
                "rows": int(rows.size),
                "weight": float(weight.sum()),
                "low": float(sorted_p[inside][0]),
                "high": float(sorted_p[inside][-1]),
                "predicted": float(np.average(p[rows], weights=weight)),
                "observed": float(np.average(labels[rows], weights=weight)),
            }
        )
    return bins


def expected_calibration_error(
    y: ArrayLike,
    proba: ArrayLike,
    n_bins: int = ECE_BINS,
    sample_weight: ArrayLike | None = None,
) -> float:
    """Mean |predicted - observed| rate over the :func:`reliability_bins` (up to
    ``n_bins`` of equal mass, tied probabilities in one), each weighted by its share of
    the rows (of the weight, with ``sample_weight``).

    Examples
    --------
    >>> expected_calibration_error([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], n_bins=2)
    0.0
    """
    bins = reliability_bins(y, proba, n_bins, sample_weight)
    if not bins:
        return math.nan
    total = sum(b["weight"] for b in bins)
    return float(sum(abs(b["predicted"] - b["observed"]) * b["weight"] for b in bins) / total)


def calibration_metrics(
    y: ArrayLike, proba: ArrayLike, sample_weight: NDArray[np.float64] | None = None
) -> dict[str, float]:
    """``log_loss``, ``brier`` and ``ece`` (equal-mass bins) of probabilities of class 1,
    means weighted by ``sample_weight`` if given."""
    labels = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(proba, dtype=np.float64).ravel()
    return {
        "log_loss": log_loss(labels, p, sample_weight),
        "brier": float(np.average((p - labels) ** 2, weights=sample_weight)),
        "ece": expected_calibration_error(labels, p, sample_weight=sample_weight),
    }


# -- fitting ---------------------------------------------------------------------------------
def _platt_targets(
    y: NDArray[np.float64], w: NDArray[np.float64] | None = None
) -> NDArray[np.float64]:
    """Platt's smoothed targets: a finite optimum even when the logit separates the rows
    (class sizes are sums of ``w``, weights of mean 1, when rows are weighted)."""
    n_pos = float(y.sum() if w is None else w[y > 0.5].sum())
    n_neg = float(y.size - n_pos if w is None else w[y <= 0.5].sum())
    return np.where(y > 0.5, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))


def _unit_mean(sample_weight: ArrayLike | None) -> NDArray[np.float64] | None:
    """Weights rescaled to mean 1 (the map and its tests do not depend on their scale)."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64).ravel()
    return w / w.mean()


def fit_scaling(
    logits: ArrayLike, y: ArrayLike, method: str, sample_weight: ArrayLike | None = None
) -> tuple[float, float] | None:
    """``(scale, bias)`` minimising the log loss of ``sigmoid(scale * logits + bias)``
    (its mean weighted by ``sample_weight``, if given).

    ``method`` is ``'temperature'`` (bias fixed at 0) or ``'platt'``. Returns ``None``
    when the optimum scale is not positive (or the optimiser failed): such a map would
    reverse the model's ranking, so no map is better.
    """
    if method not in ("temperature", "platt"):
        raise ParameterError(f"fit_scaling fits 'temperature' or 'platt'; got {method!r}")
    z = np.clip(np.asarray(logits, dtype=np.float64).ravel(), -LOGIT_LIMIT, LOGIT_LIMIT)
    labels = np.asarray(y, dtype=np.float64).ravel()
    w = _unit_mean(sample_weight)
    target = _platt_targets(labels, w)
    with_bias = method == "platt"

    def loss_and_grad(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        scale, bias = theta[0], theta[1] if with_bias else 0.0
        a = scale * z + bias
        residual = expit(a) - target
        value = float(np.average(_log_loss_of_logits(a, target), weights=w))
        grad = [float(np.average(residual * z, weights=w))]
        if with_bias:
            grad.append(float(np.average(residual, weights=w)))
        return value, np.array(grad)

    start = np.array([1.0, 0.0] if with_bias else [1.0])
    found = minimize(loss_and_grad, start, jac=True, method="L-BFGS-B")
    scale = float(found.x[0])
    bias = float(found.x[1]) if with_bias else 0.0
    if not (math.isfinite(scale) and math.isfinite(bias)) or scale <= 0:
        return None
    return scale, bias


def _halves(y: NDArray[np.float64], seed: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Two halves of the rows, each class split evenly between them (seeded)."""
    rng = np.random.default_rng(seed)
    first: list[NDArray[np.intp]] = []
    second: list[NDArray[np.intp]] = []
    for value in (0.0, 1.0):
        rows = rng.permutation(np.flatnonzero(y == value))
        first.append(rows[: rows.size // 2])
        second.append(rows[rows.size // 2 :])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def _cross_fitted_losses(
    z: NDArray[np.float64],
    y: NDArray[np.float64],
    method: str,
    seed: int,
    w: NDArray[np.float64] | None = None,
) -> NDArray[np.float64] | None:
    """Per-row log loss of ``method`` fitted on the other half of the rows."""
    a, b = _halves(y, seed)
    out = np.empty(z.size)
    for fit_on, score_on in ((a, b), (b, a)):
        found = fit_scaling(z[fit_on], y[fit_on], method, None if w is None else w[fit_on])
        if found is None:
            return None
        scale, bias = found
        out[score_on] = _log_loss_of_logits(scale * z[score_on] + bias, y[score_on])
    return out


def _mean_and_se(diff: NDArray[np.float64], w: NDArray[np.float64] | None) -> tuple[float, float]:
    """Mean of per-row values and its standard error (weighted: the ratio estimator's)."""
    if w is None:
        return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(diff.size))
    mean = float(np.average(diff, weights=w))
    n = diff.size
    spread = np.sum((w * (diff - mean)) ** 2) * n / max(n - 1, 1)
    return mean, float(math.sqrt(spread) / w.sum())


def _choose(
    z: NDArray[np.float64],
    y: NDArray[np.float64],
    seed: int,
    margin: float,
    w: NDArray[np.float64] | None = None,
) -> tuple[str, str, dict[str, float]]:
    """``'auto'``: the simplest map whose cross-fitted log loss beats the simpler ones'.

    Candidates in order of parameters (none, temperature, Platt); each replaces the
    current choice only when its per-row cross-fitted losses are lower by more than
    ``margin`` standard errors of the mean difference. Returns the choice, why, and the
    cross-fitted log loss of every candidate (means weighted by ``w``, if given).
    """
    current, current_losses = "none", _log_loss_of_logits(z, y)
    crossed = {"none": float(np.average(current_losses, weights=w))}
    near: tuple[str, float, float] | None = None  # the best gain that was within the noise
    for candidate in ("temperature", "platt"):
        losses = _cross_fitted_losses(z, y, candidate, seed, w)
        if losses is None:
            continue
        crossed[candidate] = float(np.average(losses, weights=w))
        gain, se = _mean_and_se(current_losses - losses, w)
        if gain > 0 and gain > margin * se:
            current, current_losses = candidate, losses
        elif gain > 0 and (near is None or gain > near[1]):
            near = (candidate, gain, se)
    if current != "none":
        reason = (
            f"lowest cross-fitted log loss ({crossed[current]:.4f}; none {crossed['none']:.4f})"
        )
    elif near is not None:
        reason = (
            f"{near[0]} lowered the cross-fitted log loss by {near[1]:.2g}, within the noise "
            f"({near[2]:.2g})"
        )
    else:
        reason = "no map lowered the cross-fitted log loss"
    return current, reason, crossed


def calibrate(
    logits: ArrayLike,
    y: ArrayLike,
    method: str = "auto",
    *,
    seed: int = 0,
    margin: float = AUTO_MARGIN_SE,
    sample_weight: ArrayLike | None = None,
    auto_method: str | None = None,
) -> dict[str, Any]:
    """The calibration of a model from its logits on held-out rows and their 0/1 labels.

    Parameters
    ----------
    logits : array of float
        The network's logits on rows it did not train on (validation or out-of-fold).
    y : array of 0/1
    method : {'auto', 'none', 'temperature', 'platt'}
        ``'auto'`` cross-fits temperature and Platt scaling on two halves of the rows and
        keeps the simplest map that beats the simpler ones by more than the noise of the
        comparison (``margin`` standard errors), else ``'none'``.
    seed : int
        Seed of the halves.
    margin : float
        :data:`AUTO_MARGIN_SE` for validation rows (early stopping looked at them),
        :data:`OUT_OF_FOLD_MARGIN_SE` for out-of-fold predictions.
    auto_method : str, optional
        What ``'auto'`` fits, without a choice (:data:`OUT_OF_FOLD_AUTO` on out-of-fold
        logits); ``None``: choose as above.
    sample_weight : array of float, optional
        Row weights: the log losses that fit and choose the map are weighted means (the
        minimum row counts still count rows).

    Returns
    -------
    dict
        ``method`` ('none', 'temperature' or 'platt'), ``scale``, ``bias`` (probabilities
        are ``sigmoid(scale * logit + bias)``), ``requested``, ``reason``, ``n_rows``,
        ``before`` and ``after`` (:func:`calibration_metrics` on these rows without and
        with the map, the latter fitted on them), and with ``'auto'``
        ``cross_fitted_log_loss`` per candidate.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> z = 3 * rng.normal(size=20_000)
    >>> y = (rng.random(20_000) < 1 / (1 + np.exp(-z / 3))).astype(float)  # 3x too confident
    >>> result = calibrate(z, y)
    >>> result["method"] in ("temperature", "platt"), round(result["scale"], 1)
    (True, 0.3)
    """
    if method not in CALIBRATION_METHODS:
        options = ", ".join(map(repr, CALIBRATION_METHODS))
        raise ParameterError(f"calibration must be one of {options}; got {method!r}")
    z = np.clip(np.asarray(logits, dtype=np.float64).ravel(), -LOGIT_LIMIT, LOGIT_LIMIT)
    labels = np.asarray(y, dtype=np.float64).ravel()
    n_pos = int(labels.sum())
    base: dict[str, Any] = {**IDENTITY_CALIBRATION, "requested": method, "n_rows": int(z.size)}
    if method == "none":
        return base | {"reason": "calibration='none'"}
    if z.size < MIN_CALIBRATION_ROWS or min(n_pos, z.size - n_pos) < MIN_CALIBRATION_CLASS_ROWS:
        return base | {
            "reason": f"too few held-out rows to fit a map on ({z.size}, {n_pos} positive; "
            f"{MIN_CALIBRATION_ROWS} needed, {MIN_CALIBRATION_CLASS_ROWS} of each class)"
        }
    w = _unit_mean(sample_weight)
    before = calibration_metrics(labels, expit(z), w)
    base["before"] = before
    chosen = method
    crossed: dict[str, float] = {}
    reason = f"calibration={method!r}"
    if method == "auto" and auto_method is not None:
        chosen, reason = auto_method, f"calibration='auto' on out-of-fold logits: {auto_method}"
    elif method == "auto":
        chosen, reason, crossed = _choose(z, labels, seed, margin, w)
    result = base | {"reason": reason, "after": before}
    if crossed:
        result["cross_fitted_log_loss"] = crossed
    if chosen == "none":
        return result
    found = fit_scaling(z, labels, chosen, w)
    if found is None:
        return result | {"reason": f"{chosen} scaling would reverse the ranking (scale <= 0)"}
    scale, bias = found
    after = calibration_metrics(labels, expit(scale * z + bias), w)
    return result | {"method": chosen, "scale": scale, "bias": bias, "after": after}


def decision_weight(
    pos_weight: float | None, class_weight: tuple[float, float] | None
) -> float | None:
    """How much more the loss weighs a positive than a negative: ``pos_weight``, or the
    ratio of the class weights (``None``: equally)."""
    if pos_weight is not None:
        return pos_weight
    if class_weight is not None and class_weight[0] != class_weight[1]:
        return class_weight[1] / class_weight[0]
    return None


def default_threshold(pos_weight: float | None, calibration: Mapping[str, Any]) -> float:
    """The decision threshold when none is tuned: 0.5, or where ``pos_weight`` put it.

    A loss weighting positives by ``w`` moves the network's 0.5 to the true probability
    ``1 / (1 + w)`` (the Bayes decision for an error on a positive costing ``w`` times
    one on a negative). A calibration map gives back true probabilities, so the threshold
    moves there: the decisions the weighting asked for, with calibrated probabilities.
    """
    if pos_weight is None or calibration.get("method", "none") == "none":
        return 0.5
    return 1.0 / (1.0 + float(pos_weight))


def without_held_out_rows(method: str) -> dict[str, Any]:
    """The calibration of a fit that had no held-out rows to fit one on: the identity."""
    return {**IDENTITY_CALIBRATION, "requested": method, "n_rows": 0, "reason": "no held-out rows"}


def describe_calibration(calibration: dict[str, Any]) -> str:
    """One line for summaries, e.g. ``platt (scale 0.8, bias -0.1) on 512 held-out rows:
    log loss 0.4123 -> 0.4051, ...``."""
    method = str(calibration.get("method", "none"))
    if method == "none":
        return f"none ({calibration.get('reason') or 'identity'})"
    head = f"{method} (scale {float(calibration['scale']):.3g}"
    if method == "platt":
        head += f", bias {float(calibration['bias']):+.3g}"
    head += ")"
    before, after = calibration.get("before"), calibration.get("after")
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return head
    n = calibration.get("n_rows")
    return (
        f"{head} fitted on {n} {calibration.get('rows', 'held-out')} rows: log loss "
        f"{before['log_loss']:.4f} -> "
        f"{after['log_loss']:.4f}, Brier {before['brier']:.4f} -> {after['brier']:.4f}, "
        f"ECE {before['ece']:.4f} -> {after['ece']:.4f}"
    )
