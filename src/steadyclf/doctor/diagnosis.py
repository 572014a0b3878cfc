"""The diagnosis of a table: its columns, the findings by kind, saturation, the verdict."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..exceptions import DataError, ParameterError
from ..io.tables import from_polars
from ..nn.spec import ACTIVATIONS, NORMALIZATIONS
from ..params import PARAMETERS
from ..schema.encoder import TabularEncoder
from ..schema.labels import encode_labels
from ..schema.weights import weight_values
from .findings import (
    code_findings,
    constant_findings,
    duplicate_findings,
    imbalance_findings,
    missing_findings,
    numeric_summaries,
    offset_findings,
    scale_findings,
    separation_findings,
    short_number,
    skew_findings,
    summarise_column,
)
from .render import Diagnosis
from .saturation import check_saturation

__all__ = ["default_normalize", "diagnose"]


def default_normalize() -> str:
    """The input scaling :class:`~steadyclf.BinaryClassifier` uses by default."""
    return str(PARAMETERS["normalize"].default)


def diagnose(
    X: Any,
    y: Any,
    *,
    activation: str = "sigmoid",
    hidden: Sequence[int] = (10,),
    seed: int = 0,
    normalize: str | None = None,
    sample_weight: Any = None,
) -> Diagnosis:
    """Diagnose a table for training a neural binary classifier.

    Parameters
    ----------
    X : DataFrame or array of shape (n_rows, n_features)
        Raw features, as they would be given to :class:`~steadyclf.BinaryClassifier`.
    y : array-like of shape (n_rows,)
        Binary target.
    activation : str, default='sigmoid'
        Activation for the saturation check. The default, with ``hidden=(10,)``, is the
        network of the original question (Linear -> sigmoid -> Linear).
    hidden : tuple of int, default=(10,)
        Hidden layer sizes for the saturation check.
    seed : int, default=0
        Seed of the initialisation used by the saturation check.
    normalize : str, optional
        The input scaling of the model you will train (``BinaryClassifier``'s
        ``normalize``; default: its default): the advice on offsets, scales and heavy
        tails follows it (no transform by hand for what the model does itself).
    sample_weight : array-like of shape (n_rows,), optional
        Row weights, as ``fit`` takes them: rows of weight 0 are left out (as training
        leaves them out) and the class balance is the weighted one; the other checks look
        at the values of the rows kept, whatever their weight.

    Returns
    -------
    Diagnosis

    Examples
    --------
    >>> from steadyclf.datasets import heart_rate
    >>> report = diagnose(*heart_rate(n=300, random_state=0))
    >>> [f.kind for f in report.findings][:1]
    ['offset']
    """
    if activation not in ACTIVATIONS:
        raise ParameterError(f"activation must be one of {tuple(ACTIVATIONS)}; got {activation!r}")
    default = default_normalize()
    normalize = default if normalize is None else normalize
    if normalize not in NORMALIZATIONS:
        raise ParameterError(f"normalize must be one of {NORMALIZATIONS}; got {normalize!r}")
    frame = _as_frame(X)
    values = _as_target(y, len(frame))
    weights = None
    if sample_weight is not None:
        given = np.asarray(sample_weight).ravel()
        if len(given) != len(frame):
            raise DataError(f"sample_weight has {len(given)} values for {len(frame)} rows")
        weights = weight_values(
            "sample_weight", pd.Series(given), np.arange(len(frame)), "sample_weight"
        )
        kept = weights > 0  # as in training: a row of weight 0 is not in the data
        frame, values, weights = frame[kept], values[kept], weights[kept]
        if not len(frame):
            raise DataError("every row has weight 0: nothing to diagnose")
    labels = encode_labels(values)
    target = labels.encoded
    encoder = TabularEncoder.fit(frame)
    summaries = [summarise_column(frame[c.name], c.role) for c in encoder.columns_]
    findings = [
        *offset_findings(summaries, normalize, default),
        *scale_findings(summaries, normalize, default),
        *constant_findings(frame, encoder),
        *skew_findings(frame, summaries, normalize),
        *missing_findings(summaries),
        *imbalance_findings(target, weights),
        *separation_findings(frame, encoder, target),
        *duplicate_findings(frame[encoder.input_columns], target),
        *code_findings(encoder),
    ]
    findings.sort(key=lambda f: f.severity != "warning")
    x_num, x_cat = encoder.transform(frame)
    saturation = None
    if x_num.shape[1]:
        saturation = check_saturation(
            x_num, x_cat, target, encoder, activation=activation, hidden=hidden, seed=seed
        )
    report = Diagnosis(
        n_rows=len(frame),
        classes=list(labels.classes.tolist()),
        positive_rate=float(
            target.mean() if weights is None else np.average(target, weights=weights)
        ),
        features=summaries,
        findings=findings,
        saturation=saturation,
        weighted=weights is not None,
        verdict="",
        normalize=normalize,
    )
    report.headline = _headline(report)
    report.verdict = _verdict(report, default)
    return report


def _as_frame(X: Any) -> pd.DataFrame:
    X = from_polars(X)
    if isinstance(X, pd.DataFrame):
        frame = X
    else:
        array = np.asarray(X)
        if array.ndim != 2:
            raise DataError(f"X must be a 2-D table; got shape {array.shape}")
        frame = pd.DataFrame(array, columns=[f"x{j}" for j in range(array.shape[1])])
    if len(frame) == 0:
        raise DataError("the data has no rows")
    return frame.set_axis([str(c) for c in frame.columns], axis=1)


def _as_target(y: Any, n_rows: int) -> NDArray[Any]:
    y = from_polars(y)
    values = np.asarray(y.to_numpy() if isinstance(y, (pd.Series, pd.DataFrame)) else y)
    values = values.ravel() if values.ndim == 2 and values.shape[1] == 1 else values
    if values.ndim != 1 or len(values) != n_rows:
        raise DataError(f"the target must be one column of {n_rows} values; got {values.shape}")
    if pd.isna(values).any():
        rows = np.flatnonzero(pd.isna(values))
        raise DataError(
            f"the target has {rows.size} missing values (first rows: {rows[:5].tolist()})"
        )
    return values


def _headline(report: Diagnosis) -> str:
    warnings = [f for f in report.findings if f.severity == "warning"]
    parts = [warnings[0].summary] if warnings else []
    sat = report.saturation
    if sat is not None and sat.raw_share - sat.standardized_share >= 0.25:
        parts.append(
            f"raw inputs saturate {sat.raw_share:.0%} of {sat.activation} pre-activations "
            f"at initialisation, standardised {sat.standardized_share:.0%}"
        )
    if not parts:
        numeric = numeric_summaries(report.features)
        worst = max((s.offset_ratio or 0.0 for s in numeric), default=0.0)
        parts.append(f"no scale problem (largest |mean|/std {short_number(worst)})")
    return "; ".join(parts)


#: Kinds of findings the model's own processing takes care of, in words for the verdict.
_HANDLED = {
    "offset": "offset from zero",
    "scales": "differing scales",
    "heavy_tail": "heavy tails",
    "missing": "missing values",
}


def _verdict(report: Diagnosis, default: str) -> str:
    kinds = {f.kind: f for f in report.findings}
    scaled = report.normalize != "none"
    handled = [
        words
        for kind, words in _HANDLED.items()
        if kind in kinds and (kind == "missing" or (scaled and not kinds[kind].action))
    ]
    who = (
        "steadyclf's defaults"
        if report.normalize == default
        else f"steadyclf with normalize={report.normalize!r}"
    )
    parts = ["inputs scaled with statistics of the training data, kept in the model"] * scaled
    parts += [
        "missing values imputed with an indicator",
        "BCEWithLogitsLoss on logits",
        "early stopping",
    ]
    model = f"{who} ({', '.join(parts)})"
    plural = report.normalize == default  # "defaults"
    first = (
        f"{model} {'handle' if plural else 'handles'} the {', '.join(handled)} found here"
        if handled
        else f"{model} {'suit' if plural else 'suits'} this data"
    )
    todo = [f.action for f in report.findings if f.action]
    if not todo:
        return f"{first}; nothing to change."
    return f"{first}. You should: " + "; ".join(dict.fromkeys(todo)) + "."
