"""Why a network does not learn: a diagnosis of the data before any training.

:func:`diagnose` reads a table and its target and reports, in numbers, what makes a
neural network struggle on it: features far from zero or on wildly different scales,
constant columns, heavy tails, missing values, class imbalance, a single feature that
separates the classes (leakage, or a problem a threshold solves), duplicate and
contradicting rows. Its central piece quantifies the classic failure: with steadyclf's
default initialisation, the share of first-layer pre-activations that land where the
activation is flat, and the size of the initial gradient, on raw versus standardised
inputs.

The same failure, while it happens during training, is the job of the stall detector
(:mod:`steadyclf.train.stall`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats
import torch
from numpy.typing import NDArray
from sklearn.metrics import roc_auc_score
from torch import nn

from .exceptions import DataError, ParameterError
from .io.tables import from_polars
from .nn.modules import SteadyNet
from .nn.spec import ACTIVATIONS, Architecture
from .schema.encoder import TabularEncoder
from .schema.labels import encode_labels
from .schema.roles import NUMERIC_ROLES
from .schema.stats import RunningStats
from .schema.values import column_values
from .train.stall import SATURATION_ROWS, saturated_share, saturation_region

__all__ = [
    "Diagnosis",
    "FeatureSummary",
    "Finding",
    "SaturationCheck",
    "diagnose",
]

# -- thresholds: each one is a judgement call, kept in one place ---------------------------
#: A feature is "far from zero" when |mean| exceeds this many standard deviations ...
OFFSET_RATIO = 3.0
#: ... and this absolute value (weights are initialised for inputs of order 1).
OFFSET_ABS = 1.0
#: Standard deviations differing by this factor or more are "orders of magnitude apart".
SCALE_SPREAD = 100.0
#: One value this frequent makes a feature near-constant.
NEAR_CONSTANT_SHARE = 0.99
#: |skewness| above this is a heavy tail worth a transform.
SKEW_LIMIT = 2.0
#: The rarer class below this share is an imbalance worth a word.
IMBALANCE_SHARE = 0.2
#: A single feature with an AUC this close to 1 (or 0) separates the classes by itself.
SEPARATION_AUC = 0.99


# == the data diagnosis =====================================================================
@dataclass
class FeatureSummary:
    """Statistics of one input column (numeric statistics are ``None`` for categoricals)."""

    name: str
    role: str
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    offset_ratio: float | None
    missing_share: float
    n_distinct: int
    skew: float | None


@dataclass
class Finding:
    """One problem found in the data: what, the numbers, why it matters, the fix."""

    kind: str
    features: list[str]
    evidence: dict[str, float]
    summary: str
    why: str
    fix: str
    severity: str = "warning"  # "warning": acts on training; "info": worth knowing
    action: str = ""  # the fix in a few words, for the verdict; empty: nothing to do

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


@dataclass
class SaturationCheck:
    """First-layer saturation and initial gradient, raw versus standardised inputs.

    Shares are fractions of first-layer pre-activations (rows x units) in the flat region
    of ``activation``; gradient norms are taken at initialisation on the whole sample:
    ``grad_preact`` with respect to the first-layer pre-activations (the signal that
    reaches the first weights), ``grad_total`` with respect to every weight.
    """

    activation: str
    hidden: list[int]
    region: str
    seed: int
    raw_share: float
    standardized_share: float
    raw_grad_preact: float
    standardized_grad_preact: float
    raw_grad_total: float
    standardized_grad_total: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


@dataclass
class Diagnosis:
    """The report of :func:`diagnose`; ``str()`` renders it as text, ``to_dict`` as data."""

    n_rows: int
    classes: list[Any]
    positive_rate: float
    features: list[FeatureSummary]
    findings: list[Finding]
    saturation: SaturationCheck | None
    verdict: str
    headline: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Everything in the report as JSON-compatible data (NaN becomes ``None``)."""
        return _json_safe(
            {
                "n_rows": self.n_rows,
                "classes": [_plain(c) for c in self.classes],
                "positive_rate": self.positive_rate,
                "features": [asdict(f) for f in self.features],
                "findings": [f.to_dict() for f in self.findings],
                "saturation": None if self.saturation is None else self.saturation.to_dict(),
                "headline": self.headline,
                "verdict": self.verdict,
                "notes": list(self.notes),
            }
        )

    def __str__(self) -> str:
        return render_diagnosis(self)


def diagnose(
    X: Any,
    y: Any,
    *,
    activation: str = "sigmoid",
    hidden: Sequence[int] = (10,),
    seed: int = 0,
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
    frame = _as_frame(X)
    labels = encode_labels(_as_target(y, len(frame)))
    target = labels.encoded
    encoder = TabularEncoder.fit(frame)
    summaries = [_summarise(frame[c.name], c.role) for c in encoder.columns_]
    findings = [
        *_offset_findings(summaries),
        *_scale_findings(summaries),
        *_constant_findings(frame, encoder),
        *_skew_findings(frame, summaries),
        *_missing_findings(summaries),
        *_imbalance_findings(target),
        *_separation_findings(frame, encoder, target),
        *_duplicate_findings(frame[encoder.input_columns], target),
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
        positive_rate=float(target.mean()),
        features=summaries,
        findings=findings,
        saturation=saturation,
        verdict="",
    )
    report.headline = _headline(report)
    report.verdict = _verdict(report)
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


def _summarise(series: pd.Series, role: str) -> FeatureSummary:
    missing = float(series.isna().mean())
    distinct = int(series.nunique(dropna=True))
    if role not in NUMERIC_ROLES:
        return FeatureSummary(
            str(series.name), role, None, None, None, None, None, missing, distinct, None
        )
    array = column_values(str(series.name), series, role)
    array = array[~np.isnan(array)]
    stats = RunningStats.from_array(array[:, None])
    mean, std = float(stats.mean[0]), float(stats.std[0])
    ratio = abs(mean) / std if std > 0 else (math.inf if mean != 0 else 0.0)
    skew = float(scipy.stats.skew(array, bias=False)) if array.size > 2 and std > 0 else 0.0
    return FeatureSummary(
        name=str(series.name),
        role=role,
        mean=mean,
        std=std,
        min=float(array.min()),
        max=float(array.max()),
        offset_ratio=ratio,
        missing_share=missing,
        n_distinct=distinct,
        skew=skew,
    )


def _numeric(summaries: list[FeatureSummary]) -> list[FeatureSummary]:
    return [s for s in summaries if s.role in NUMERIC_ROLES and s.std is not None]


def _offset_findings(summaries: list[FeatureSummary]) -> list[Finding]:
    out = []
    for s in _numeric(summaries):
        assert s.mean is not None and s.std is not None and s.offset_ratio is not None
        if s.std > 0 and s.offset_ratio > OFFSET_RATIO and abs(s.mean) > OFFSET_ABS:
            out.append(
                Finding(
                    kind="offset",
                    features=[s.name],
                    evidence={"mean": s.mean, "std": s.std, "offset_ratio": s.offset_ratio},
                    summary=(
                        f"{s.name} sits far from zero: mean {_num(s.mean)}, std {_num(s.std)} "
                        f"(|mean|/std = {_num(s.offset_ratio)})"
                    ),
                    why=(
                        "weights are initialised for inputs near N(0, 1); an input this far "
                        "from zero pushes every hidden unit the same way, into the flat part "
                        "of sigmoid/tanh (or dead ReLU), and the gradient vanishes"
                    ),
                    fix=(
                        "keep normalize='standardize' (the default); it subtracts the training "
                        "mean inside the model, so predictions still take raw values"
                    ),
                )
            )
    return out


def _scale_findings(summaries: list[FeatureSummary]) -> list[Finding]:
    spread = [s for s in _numeric(summaries) if s.std]
    if len(spread) < 2:
        return []
    small = min(spread, key=lambda s: s.std or 0.0)
    large = max(spread, key=lambda s: s.std or 0.0)
    assert small.std is not None and large.std is not None
    ratio = large.std / small.std
    if ratio < SCALE_SPREAD:
        return []
    return [
        Finding(
            kind="scales",
            features=[large.name, small.name],
            evidence={"largest_std": large.std, "smallest_std": small.std, "ratio": ratio},
            summary=(
                f"scales differ by {math.log10(ratio):.1f} orders of magnitude: std of "
                f"{large.name} is {_num(large.std)}, std of {small.name} is {_num(small.std)}"
            ),
            why=(
                "one learning rate cannot suit both: steps that move the weights of the "
                "small feature are far too large for the big one (or the reverse)"
            ),
            fix="keep normalize='standardize' (the default), which puts every feature on std 1",
        )
    ]


def _constant_findings(frame: pd.DataFrame, encoder: TabularEncoder) -> list[Finding]:
    out = []
    for info in encoder.columns_:
        series = frame[info.name]
        if info.role == "dropped":
            out.append(
                Finding(
                    kind="dropped",
                    features=[info.name],
                    evidence={"n_distinct": float(series.nunique(dropna=True))},
                    summary=f"{info.name} is not used: {info.reason}",
                    why="steadyclf leaves out columns that cannot help a model generalise",
                    fix=f"nothing to do, unless {info.name} matters: then set its role "
                    "explicitly (numeric=[...] or categorical=[...])",
                    severity="info",
                )
            )
            continue
        counts = series.value_counts(dropna=True)
        top_share = float(counts.iloc[0]) / max(int(series.notna().sum()), 1)
        if top_share < NEAR_CONSTANT_SHARE or len(frame) < 100:
            continue
        out.append(
            Finding(
                kind="constant",
                features=[info.name],
                evidence={"top_share": top_share, "n_distinct": float(len(counts))},
                summary=(
                    f"{info.name} is near-constant: {_plain(counts.index[0])!r} in {top_share:.1%} of "
                    "the rows"
                ),
                why="a feature that almost never changes explains little and adds noise",
                fix=f"keep {info.name} only if its rare values matter; otherwise drop it",
                severity="info",
                action=f"consider dropping {info.name} (near-constant)",
            )
        )
    return out


def _skew_findings(frame: pd.DataFrame, summaries: list[FeatureSummary]) -> list[Finding]:
    out = []
    for s in _numeric(summaries):
        if s.skew is None or abs(s.skew) <= SKEW_LIMIT or s.n_distinct <= 2:
            continue
        values = column_values(s.name, frame[s.name], s.role)
        values = values[~np.isnan(values)]
        unit = float(np.median(np.abs(values))) or 1.0
        logged = np.sign(values) * np.log1p(np.abs(values) / unit)
        # A tail a log transform tames; two clusters (e.g. a rare level) are not a tail.
        if abs(float(scipy.stats.skew(logged, bias=False))) > abs(s.skew) / 2:
            continue
        assert s.min is not None and s.max is not None
        inner = s.name if 0.1 <= unit <= 10 else f"{s.name} / {_num(unit)}"
        fix = (
            f"transform it: log1p({inner})"
            if s.min >= 0
            else f"transform it: sign({s.name}) * log1p(|{inner}|), or clip extreme values"
        )
        out.append(
            Finding(
                kind="heavy_tail",
                features=[s.name],
                evidence={"skew": s.skew, "min": s.min, "max": s.max},
                summary=(
                    f"{s.name} has a heavy tail: skew {_num(s.skew)}, range {_num(s.min)} to "
                    f"{_num(s.max)}"
                ),
                why=(
                    "after standardisation most rows are squeezed near one value while a few "
                    "extreme rows dominate the gradient"
                ),
                fix=fix,
                action=f"log-transform {s.name} (heavy tail)",
            )
        )
    return out


def _missing_findings(summaries: list[FeatureSummary]) -> list[Finding]:
    out = []
    for s in summaries:
        if s.missing_share <= 0 or s.role == "dropped":
            continue
        fix = (
            "nothing to do: steadyclf imputes the training median and adds a 0/1 "
            "'was missing' input, so missingness itself can be learned"
            if s.role in NUMERIC_ROLES
            else "nothing to do: a missing category gets its own code"
        )
        action = ""
        if s.missing_share > 0.5:
            fix = f"consider dropping {s.name}: most of it is missing; otherwise, {fix}"
            action = f"consider dropping {s.name} (mostly missing)"
        out.append(
            Finding(
                kind="missing",
                features=[s.name],
                evidence={"missing_share": s.missing_share},
                summary=f"{s.name} is missing in {s.missing_share:.1%} of the rows",
                why="networks cannot take NaN: missing values must be filled in some way",
                fix=fix,
                severity="info",
                action=action,
            )
        )
    return out


def _imbalance_findings(target: NDArray[np.float32]) -> list[Finding]:
    rate = float(target.mean())
    minority = min(rate, 1 - rate)
    if minority >= IMBALANCE_SHARE:
        return []
    n_pos = float(target.sum())
    weight = (len(target) - n_pos) / max(n_pos, 1.0)
    return [
        Finding(
            kind="imbalance",
            features=[],
            evidence={"positive_rate": rate, "balanced_pos_weight": weight},
            summary=(
                f"classes are imbalanced: {rate:.1%} positive (prior log-odds "
                f"{math.log(max(rate, 1e-12) / max(1 - rate, 1e-12)):.2f})"
            ),
            why=(
                f"predicting the majority class alone is {1 - minority:.1%} accurate, so "
                "accuracy hides a useless model and the loss is dominated by the majority"
            ),
            fix=(
                f"pos_weight='balanced' weighs each positive {weight:.3g} times, raising "
                "recall of the rare class at the cost of precision; or keep the default and "
                "choose the decision threshold on validation data; judge with ROC AUC, not "
                "accuracy"
            ),
            action="judge by ROC AUC and consider pos_weight='balanced' or a tuned threshold "
            "(imbalance)",
        )
    ]


def _separation_findings(
    frame: pd.DataFrame, encoder: TabularEncoder, target: NDArray[np.float32]
) -> list[Finding]:
    out = []
    x_num, x_cat = encoder.transform(frame)
    for j, name in enumerate(encoder.numeric_columns):
        values = x_num[:, j]
        known = ~np.isnan(values)
        if np.unique(target[known]).size < 2 or np.unique(values[known]).size < 2:
            continue
        auc = float(roc_auc_score(target[known], values[known]))
        strength = max(auc, 1 - auc)
        if strength < SEPARATION_AUC:
            continue
        cut, accuracy = _best_threshold(values[known], target[known])
        out.append(
            _separation_finding(
                name,
                {"auc": strength, "threshold": cut, "accuracy": accuracy},
                f"{name} alone separates the classes: AUC {strength:.3f}; the rule "
                f"{name} {'>=' if auc >= 0.5 else '<'} {_num(cut)} is {accuracy:.1%} accurate",
            )
        )
    for j, info in enumerate(encoder.categorical_columns):
        codes = pd.Series(x_cat[:, j])
        majority = pd.Series(target).groupby(codes).transform(lambda t: round(t.mean()))
        accuracy = float((majority.to_numpy() == target).mean())
        if accuracy >= SEPARATION_AUC and codes.nunique() <= max(2, len(codes) // 20):
            out.append(
                _separation_finding(
                    info.name,
                    {"accuracy": accuracy},
                    f"{info.name} alone separates the classes: its majority class per level "
                    f"is {accuracy:.1%} accurate",
                )
            )
    return out


def _separation_finding(name: str, evidence: dict[str, float], summary: str) -> Finding:
    return Finding(
        kind="separates",
        features=[name],
        evidence=evidence,
        summary=summary,
        why=(
            "either the feature leaks the answer (it is computed from the target, or only "
            "known afterwards) or the problem is a single threshold, which a network solves "
            "only once its inputs are scaled"
        ),
        fix=(
            f"check how {name} is produced; if it is legitimate, a threshold rule (or "
            "logistic regression) may be all you need"
        ),
        action=f"check {name} for leakage, or use a threshold rule ({name} alone separates "
        "the classes)",
    )


def _best_threshold(
    values: NDArray[np.float64], target: NDArray[np.float32]
) -> tuple[float, float]:
    """The cut ``x >= c`` (or ``x < c``) with the best accuracy, and that accuracy."""
    order = np.argsort(values, kind="stable")
    v, t = values[order], target[order].astype(np.float64)
    n, n_pos = len(v), float(t.sum())
    # Rows strictly below position i are predicted negative, the rest positive.
    pos_below = np.concatenate([[0.0], np.cumsum(t)])
    idx = np.arange(n + 1)
    correct_up = (idx - pos_below) + (n_pos - pos_below)
    valid = np.r_[True, v[1:] != v[:-1], True]
    correct = np.where(valid, np.maximum(correct_up, n - correct_up), -1)
    i = int(np.argmax(correct))
    cut = float(v[min(i, n - 1)]) if i < n else float(v[-1])
    if 0 < i < n:
        cut = float((v[i - 1] + v[i]) / 2)
    return cut, float(correct[i]) / n


def _duplicate_findings(features: pd.DataFrame, target: NDArray[np.float32]) -> list[Finding]:
    duplicated = features.duplicated(keep="first")
    n_dup = int(duplicated.sum())
    if n_dup == 0:
        return []
    out = [
        Finding(
            kind="duplicates",
            features=[],
            evidence={"duplicate_rows": float(n_dup), "share": n_dup / len(features)},
            summary=f"{n_dup} rows ({n_dup / len(features):.1%}) repeat an earlier feature row",
            why=(
                "duplicates weigh some rows more than others, and when copies fall on both "
                "sides of a validation split the validation score is optimistic"
            ),
            fix="remove exact duplicates unless they are genuine repeated observations",
            severity="info",
            action="remove duplicate rows unless they are genuine",
        )
    ]
    keys = [features[c].to_numpy() for c in features.columns]
    per_key = pd.Series(target).groupby(keys, dropna=False).agg(["min", "max", "size"])
    conflicted = per_key[per_key["min"] != per_key["max"]]
    n_conflict = int(conflicted["size"].sum())
    if n_conflict:
        out.append(
            Finding(
                kind="contradictions",
                features=[],
                evidence={"rows": float(n_conflict), "groups": float(len(conflicted))},
                summary=(
                    f"{n_conflict} rows in {len(conflicted)} groups of identical features "
                    "carry different labels"
                ),
                why=(
                    "no model can tell these rows apart: they set a floor on the loss and on "
                    "the error rate"
                ),
                fix="check the labels of these rows, or add the feature that tells them apart",
                action="check the labels of rows with identical features",
            )
        )
    return out


# -- the central explanation: saturation and gradient at initialisation --------------------
def check_saturation(
    x_num: NDArray[np.float64],
    x_cat: NDArray[np.int64],
    target: NDArray[np.float32],
    encoder: TabularEncoder,
    *,
    activation: str,
    hidden: Sequence[int],
    seed: int = 0,
) -> SaturationCheck:
    """Saturation and initial gradients of a freshly initialised :class:`SteadyNet`."""
    rows = np.random.default_rng(seed).permutation(len(target))[:SATURATION_ROWS]
    x_num, x_cat, target = x_num[rows], x_cat[rows], target[rows]
    raw = _initial_state(x_num, x_cat, target, encoder, activation, hidden, seed, False)
    std = _initial_state(x_num, x_cat, target, encoder, activation, hidden, seed, True)
    return SaturationCheck(
        activation=activation,
        hidden=[int(h) for h in hidden],
        region=saturation_region(activation),
        seed=seed,
        raw_share=raw[0],
        standardized_share=std[0],
        raw_grad_preact=raw[1],
        standardized_grad_preact=std[1],
        raw_grad_total=raw[2],
        standardized_grad_total=std[2],
    )


def _initial_state(
    x_num: NDArray[np.float64],
    x_cat: NDArray[np.int64],
    target: NDArray[np.float32],
    encoder: TabularEncoder,
    activation: str,
    hidden: Sequence[int],
    seed: int,
    standardize: bool,
) -> tuple[float, float, float]:
    """(saturated share, |dL/dz| of the first layer, |dL/dw| overall) at initialisation."""
    had_missing = np.isnan(x_num).any(axis=0)
    rate = float(np.clip(target.mean(), 1e-6, 1 - 1e-6))
    arch = Architecture(
        x_num.shape[1],
        int(had_missing.sum()),
        tuple(encoder.vocab_sizes),
        tuple(int(h) for h in hidden),
        activation,
    )
    generator = torch.Generator().manual_seed(seed)
    net = SteadyNet(arch, prior_logit=math.log(rate / (1 - rate)), generator=generator)
    median = np.nan_to_num(np.nanmedian(np.where(had_missing, x_num, 0.0), axis=0))
    net.encoder.impute.median.copy_(torch.from_numpy(median))
    net.encoder.impute.missing_columns.copy_(torch.from_numpy(np.flatnonzero(had_missing)))
    if standardize:
        stats = RunningStats.from_array(np.where(np.isnan(x_num), median, x_num))
        net.encoder.normalize.mean.copy_(torch.from_numpy(stats.mean))
        net.encoder.normalize.scale.copy_(torch.from_numpy(stats.scale))
    with torch.no_grad():
        features = net.encoder(torch.from_numpy(x_num), torch.from_numpy(x_cat))
    if not hidden:
        return 0.0, math.nan, math.nan
    first, rest = net.body[0], net.body[1:]
    z = first(features)
    z.retain_grad()
    logits = rest(z).reshape(-1)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(target))
    loss.backward()
    assert z.grad is not None
    total = torch.sqrt(
        sum(
            ((p.grad**2).sum() for p in net.body.parameters() if p.grad is not None),
            torch.zeros(()),
        )
    )
    return saturated_share(z.detach(), activation), float(z.grad.norm()), float(total)


# -- verdict and rendering -------------------------------------------------------------------
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
        numeric = _numeric(report.features)
        worst = max((s.offset_ratio or 0.0 for s in numeric), default=0.0)
        parts.append(f"no scale problem (largest |mean|/std {_num(worst)})")
    return "; ".join(parts)


def _verdict(report: Diagnosis) -> str:
    handled = {"offset", "scales", "missing"}
    kinds = {f.kind for f in report.findings}
    default = (
        "steadyclf's defaults (standardisation fitted on the training data and stored in "
        "the model, ReLU, BCEWithLogitsLoss on logits, early stopping)"
    )
    fixed = sorted(kinds & handled)
    first = (
        f"{default} handle the {', '.join(_KIND_WORDS[k] for k in fixed)} found here"
        if fixed
        else f"{default} suit this data"
    )
    todo = [f.action for f in report.findings if f.action]
    if not todo:
        return f"{first}; nothing to change."
    return f"{first}. You should: " + "; ".join(dict.fromkeys(todo)) + "."


_KIND_WORDS = {
    "offset": "offset from zero",
    "scales": "differing scales",
    "missing": "missing values",
}


def render_diagnosis(report: Diagnosis) -> str:
    """The report as plain text: table, findings, saturation contrast, verdict."""
    lines = [
        f"steadyclf doctor: {report.n_rows} rows, {len(report.features)} "
        f"feature{'s' if len(report.features) != 1 else ''}, "
        f"target classes {report.classes!r} ({report.positive_rate:.1%} positive)",
        "",
        _feature_table(report.features),
        "",
    ]
    if report.findings:
        lines.append("Findings")
        for i, f in enumerate(report.findings, 1):
            lines += [
                f"  {i}. [{f.kind}] {f.summary}",
                f"     why: {f.why}",
                f"     fix: {f.fix}",
            ]
    else:
        lines.append("Findings: none")
    sat = report.saturation
    if sat is not None:
        hidden = ", ".join(str(h) for h in sat.hidden)
        lines += [
            "",
            f"Why raw inputs stall a network: {sat.activation} network, hidden=({hidden},), "
            f"default initialisation (seed {sat.seed})",
            f"  {'':44}{'raw inputs':>14}{'standardised':>14}",
            f"  {f'pre-activations in the flat region ({sat.region})':44}"
            f"{sat.raw_share:>14.1%}{sat.standardized_share:>14.1%}",
            f"  {'initial gradient at the first layer |dL/dz|':44}"
            f"{sat.raw_grad_preact:>14.3g}{sat.standardized_grad_preact:>14.3g}",
            f"  {'initial gradient of all weights |dL/dw|':44}"
            f"{sat.raw_grad_total:>14.3g}{sat.standardized_grad_total:>14.3g}",
        ]
    lines += ["", f"Verdict: {report.verdict}"]
    return "\n".join(lines)


def _feature_table(features: list[FeatureSummary]) -> str:
    header = [
        "feature",
        "role",
        "mean",
        "std",
        "min",
        "max",
        "|mean|/std",
        "missing",
        "distinct",
        "skew",
    ]
    rows = [
        [
            f.name,
            f.role,
            _num(f.mean),
            _num(f.std),
            _num(f.min),
            _num(f.max),
            _num(f.offset_ratio),
            f"{f.missing_share:.1%}",
            str(f.n_distinct),
            _num(f.skew),
        ]
        for f in features
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = [
        (lambda s, w: s.ljust(w)) if i < 2 else (lambda s, w: s.rjust(w))
        for i in range(len(header))
    ]
    return "\n".join(
        "  ".join(fmt[i](cell, widths[i]) for i, cell in enumerate(row)) for row in [header, *rows]
    )


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.3g}"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return _plain(value)
