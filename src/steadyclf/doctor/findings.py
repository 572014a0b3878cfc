"""What the doctor looks for in a table, one rule per kind of problem.

Each rule looks at every column and returns at most one :class:`Finding`: the columns
with that problem, each with its figures (``per_feature``), and the explanation and the
fix once for all of them. Advice that depends on how the model scales its inputs (the
offset, scale and heavy-tail fixes) is written by :func:`scaling_fix` and
:func:`heavy_tail_advice` from the model's ``normalize`` setting, so it never tells a
user to do by hand what the model already does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats
from numpy.typing import NDArray
from sklearn.metrics import roc_auc_score

from ..schema.encoder import TabularEncoder
from ..schema.roles import NUMERIC_ROLES, code_candidates
from ..schema.stats import RunningStats
from ..schema.values import column_values

__all__ = [
    "IMBALANCE_SHARE",
    "LISTED_COLUMNS",
    "NEAR_CONSTANT_SHARE",
    "OFFSET_ABS",
    "OFFSET_RATIO",
    "SCALE_SPREAD",
    "SEPARATION_AUC",
    "SKEW_LIMIT",
    "TAIL_SAFE_SCALINGS",
    "FeatureSummary",
    "Finding",
    "code_findings",
    "constant_findings",
    "duplicate_findings",
    "heavy_tail_advice",
    "imbalance_findings",
    "missing_findings",
    "numeric_summaries",
    "offset_findings",
    "plain",
    "scale_findings",
    "scaling_fix",
    "separation_findings",
    "short_number",
    "skew_findings",
    "summarise_column",
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
#: A column missing in more than this share of rows is "mostly missing".
MOSTLY_MISSING = 0.5
#: Columns named in a finding's one-line summary; the rest are counted (all are in
#: ``per_feature`` and the JSON report).
LISTED_COLUMNS = 12
#: Input scalings (``normalize`` values) that tame heavy tails themselves, with how: for
#: them the doctor gives no transform to apply by hand. Standardising is not one: it
#: divides by a standard deviation the tail inflates.
TAIL_SAFE_SCALINGS: dict[str, str] = {
    "robust": "centres on the median, scales by the 5-95 % spread and clips extreme "
    "values smoothly",
}


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
    """One kind of problem found in the data: which columns, their numbers, why, the fix.

    ``features`` lists the columns concerned, most severe first, and ``per_feature`` their
    figures; ``evidence`` holds the figures of the table for findings about the whole
    table (imbalance, duplicates, scales) and, for findings about columns, those of the
    first column listed. ``why`` and ``fix`` are said once for all of them.
    """

    kind: str
    features: list[str]
    evidence: dict[str, float]
    summary: str
    why: str
    fix: str
    severity: str = "warning"  # "warning": acts on training; "info": worth knowing
    action: str = ""  # the fix in a few words, for the verdict; empty: nothing to do
    per_feature: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


# -- formatting shared with the renderer ---------------------------------------------------
def short_number(value: float | None) -> str:
    """Three significant digits, ``-`` for none."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.3g}"


def plain(value: Any) -> Any:
    """A NumPy scalar as the Python value."""
    return value.item() if isinstance(value, np.generic) else value


def _listing(items: Sequence[str]) -> str:
    """``a, b, c`` naming at most :data:`LISTED_COLUMNS` items, then how many more."""
    shown = list(items[:LISTED_COLUMNS])
    more = len(items) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def _group(
    kind: str,
    rows: list[tuple[str, dict[str, float], str]],
    one: str,
    many: str,
    *,
    why: str,
    fix: str,
    severity: str = "warning",
    action: str = "",
) -> list[Finding]:
    """One finding for the ``(column, figures, text)`` rows of one kind (none if no row).

    ``one`` is the summary for a single column (its text is the whole sentence);
    ``many`` the start of the summary for several, followed by each column's text.
    """
    if not rows:
        return []
    names = [name for name, _, _ in rows]
    summary = one if len(rows) == 1 else f"{many}: {_listing([t for _, _, t in rows])}"
    return [
        Finding(
            kind=kind,
            features=names,
            evidence=dict(rows[0][1]),
            summary=summary,
            why=why,
            fix=fix,
            severity=severity,
            action=action,
            per_feature={name: dict(figures) for name, figures, _ in rows},
        )
    ]


# -- advice that follows the model's input scaling ----------------------------------------
def scaling_fix(normalize: str, default: str) -> tuple[str, str]:
    """The fix for offsets and differing scales under ``normalize``, and the action.

    ``default`` is the estimator's default scaling (named as such in the advice).
    """
    which = f"normalize={normalize!r}" + (" (the default)" if normalize == default else "")
    if normalize == "none":
        return (
            f"set normalize={default!r}: it scales every column with statistics of the "
            "training data, held inside the model, so predictions still take raw values",
            f"use normalize={default!r} (inputs are not scaled)",
        )
    if normalize == "batchnorm":
        return (
            f"keep {which}, which rescales inputs from mini-batch statistics; "
            f"normalize={default!r} fixes the scaling from the whole training data instead",
            "",
        )
    return (
        f"nothing to do with {which}: the model scales each column with statistics of the "
        "training data, held inside it, so predictions still take raw values",
        "",
    )


def heavy_tail_advice(
    normalize: str, rows: Sequence[tuple[str, float, float]]
) -> tuple[str, str, str]:
    """``(fix, action, severity)`` for heavy-tailed columns under ``normalize``.

    ``rows`` holds each column's name, minimum and typical magnitude (the median of its
    absolute values). When the scaling tames tails itself (:data:`TAIL_SAFE_SCALINGS`)
    there is nothing to do; otherwise each column gets the log transform to apply.
    """
    if normalize in TAIL_SAFE_SCALINGS:
        how = TAIL_SAFE_SCALINGS[normalize]
        return (
            f"nothing to do: normalize={normalize!r} {how}, so a few extreme rows do not dominate",
            "",
            "info",
        )
    transforms = []
    for name, low, unit in rows:
        inner = name if 0.1 <= unit <= 10 else f"{name} / {short_number(unit)}"
        transforms.append(f"log1p({inner})" if low >= 0 else f"sign({name}) * log1p(|{inner}|)")
    names = [name for name, _, _ in rows]
    it = "it" if len(rows) == 1 else "them"
    fix = f"transform {it} before training: {'; '.join(transforms)}"
    if any(low < 0 for _, low, _ in rows):
        fix += " (or clip extreme values)"
    return fix, f"log-transform {', '.join(names)} (heavy tail)", "warning"


# -- column statistics ---------------------------------------------------------------------
def summarise_column(series: pd.Series, role: str) -> FeatureSummary:
    """The statistics of one column as the doctor's table shows them."""
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


def numeric_summaries(summaries: list[FeatureSummary]) -> list[FeatureSummary]:
    """The numeric columns (with statistics)."""
    return [s for s in summaries if s.role in NUMERIC_ROLES and s.std is not None]


# -- the rules -----------------------------------------------------------------------------
def offset_findings(summaries: list[FeatureSummary], normalize: str, default: str) -> list[Finding]:
    """Columns far from zero, the largest |mean|/std first."""
    found = []
    for s in numeric_summaries(summaries):
        assert s.mean is not None and s.std is not None and s.offset_ratio is not None
        if s.std > 0 and s.offset_ratio > OFFSET_RATIO and abs(s.mean) > OFFSET_ABS:
            found.append(s)
    found.sort(key=lambda s: -(s.offset_ratio or 0.0))
    rows = [
        (
            s.name,
            {"mean": s.mean or 0.0, "std": s.std or 0.0, "offset_ratio": s.offset_ratio or 0.0},
            f"{s.name} (mean {short_number(s.mean)}, std {short_number(s.std)})",
        )
        for s in found
    ]
    fix, action = scaling_fix(normalize, default)
    first = found[0] if found else None
    one = (
        ""
        if first is None
        else f"{first.name} sits far from zero: mean {short_number(first.mean)}, std "
        f"{short_number(first.std)} (|mean|/std = {short_number(first.offset_ratio)})"
    )
    return _group(
        "offset",
        rows,
        one,
        f"{len(rows)} columns sit far from zero (|mean| above {OFFSET_RATIO:g} std)",
        why=(
            "weights are initialised for inputs near N(0, 1); an input this far from zero "
            "pushes every hidden unit the same way, into the flat part of sigmoid/tanh (or "
            "dead ReLU), and the gradient vanishes"
        ),
        fix=fix,
        action=action,
    )


def scale_findings(summaries: list[FeatureSummary], normalize: str, default: str) -> list[Finding]:
    """The largest and the smallest standard deviation, when far apart."""
    spread = [s for s in numeric_summaries(summaries) if s.std]
    if len(spread) < 2:
        return []
    small = min(spread, key=lambda s: s.std or 0.0)
    large = max(spread, key=lambda s: s.std or 0.0)
    assert small.std is not None and large.std is not None
    ratio = large.std / small.std
    if ratio < SCALE_SPREAD:
        return []
    fix, action = scaling_fix(normalize, default)
    return [
        Finding(
            kind="scales",
            features=[large.name, small.name],
            evidence={"largest_std": large.std, "smallest_std": small.std, "ratio": ratio},
            summary=(
                f"scales differ by {math.log10(ratio):.1f} orders of magnitude: std of "
                f"{large.name} is {short_number(large.std)}, std of {small.name} is "
                f"{short_number(small.std)}"
            ),
            why=(
                "one learning rate cannot suit both: steps that move the weights of the "
                "small feature are far too large for the big one (or the reverse)"
            ),
            fix=fix,
            action=action,
            per_feature={large.name: {"std": large.std}, small.name: {"std": small.std}},
        )
    ]


def constant_findings(frame: pd.DataFrame, encoder: TabularEncoder) -> list[Finding]:
    """Columns the model leaves out (with the reason), and near-constant ones."""
    dropped: list[tuple[str, dict[str, float], str]] = []
    near: list[tuple[str, dict[str, float], str]] = []
    sentences: dict[str, str] = {}
    for info in encoder.columns_:
        series = frame[info.name]
        if info.role == "dropped":
            dropped.append(
                (
                    info.name,
                    {"n_distinct": float(series.nunique(dropna=True))},
                    f"{info.name} ({info.reason})",
                )
            )
            sentences[info.name] = f"{info.name} is not used: {info.reason}"
            continue
        counts = series.value_counts(dropna=True)
        top_share = float(counts.iloc[0]) / max(int(series.notna().sum()), 1)
        if top_share < NEAR_CONSTANT_SHARE or len(frame) < 100:
            continue
        top = f"{plain(counts.index[0])!r} in {top_share:.1%} of the rows"
        near.append(
            (
                info.name,
                {"top_share": top_share, "n_distinct": float(len(counts))},
                f"{info.name} ({top})",
            )
        )
        sentences[info.name] = f"{info.name} is near-constant: {top}"
    near.sort(key=lambda r: -r[1]["top_share"])
    out = _group(
        "dropped",
        dropped,
        sentences[dropped[0][0]] if dropped else "",
        f"{len(dropped)} columns are not used",
        why="steadyclf leaves out columns that cannot help a model generalise",
        fix="nothing to do, unless one matters: then set its role explicitly "
        "(numeric=[...] or categorical=[...])",
        severity="info",
    )
    out += _group(
        "constant",
        near,
        sentences[near[0][0]] if near else "",
        f"{len(near)} columns are near-constant",
        why="a feature that almost never changes explains little and adds noise",
        fix="keep such a column only if its rare values matter; otherwise drop it",
        severity="info",
        action=f"consider dropping {', '.join(name for name, _, _ in near)} (near-constant)",
    )
    return out


def skew_findings(
    frame: pd.DataFrame, summaries: list[FeatureSummary], normalize: str
) -> list[Finding]:
    """Heavy-tailed numeric columns that a log transform would tame, most skewed first."""
    rows = []
    tails = []
    for s in numeric_summaries(summaries):
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
        rows.append(
            (
                s.name,
                {"skew": s.skew, "min": s.min, "max": s.max},
                f"{s.name} (skew {short_number(s.skew)}, {short_number(s.min)} to "
                f"{short_number(s.max)})",
            )
        )
        tails.append((s.name, s.min, unit))
    order = sorted(range(len(rows)), key=lambda i: -abs(rows[i][1]["skew"]))
    rows = [rows[i] for i in order]
    tails = [tails[i] for i in order]
    fix, action, severity = heavy_tail_advice(normalize, tails)
    first = rows[0] if rows else None
    one = (
        ""
        if first is None
        else f"{first[0]} has a heavy tail: skew {short_number(first[1]['skew'])}, range "
        f"{short_number(first[1]['min'])} to {short_number(first[1]['max'])}"
    )
    return _group(
        "heavy_tail",
        rows,
        one,
        f"{len(rows)} columns have heavy tails",
        why=(
            "after standardisation most rows are squeezed near one value while a few "
            "extreme rows dominate the gradient"
        ),
        fix=fix,
        severity=severity,
        action=action,
    )


def missing_findings(summaries: list[FeatureSummary]) -> list[Finding]:
    """Columns with missing values, the most missing first."""
    found = [s for s in summaries if s.missing_share > 0 and s.role != "dropped"]
    found.sort(key=lambda s: (-s.missing_share, s.name))
    rows = [
        (s.name, {"missing_share": s.missing_share}, f"{s.name} {s.missing_share:.1%}")
        for s in found
    ]
    roles = {"numeric" if s.role in NUMERIC_ROLES else "categorical" for s in found}
    fills = []
    if "numeric" in roles:
        fills.append(
            "a numeric column gets the training median plus a 0/1 'was missing' input, so "
            "missingness itself can be learned"
        )
    if "categorical" in roles:
        fills.append("a missing category gets its own level")
    fix = "nothing to do: " + "; ".join(fills)
    mostly = [s.name for s in found if s.missing_share > MOSTLY_MISSING]
    action = ""
    if mostly:
        fix += (
            f". {', '.join(mostly)} {'is' if len(mostly) == 1 else 'are'} mostly missing: "
            "drop them unless their absence itself means something"
        )
        action = f"consider dropping {', '.join(mostly)} (mostly missing)"
    first = found[0] if found else None
    one = (
        "" if first is None else f"{first.name} is missing in {first.missing_share:.1%} of the rows"
    )
    return _group(
        "missing",
        rows,
        one,
        f"{len(rows)} columns have missing values",
        why="networks cannot take NaN: missing values must be filled in some way",
        fix=fix,
        severity="info",
        action=action,
    )


def imbalance_findings(
    target: NDArray[np.float32], sample_weight: NDArray[np.float64] | None = None
) -> list[Finding]:
    """The rarer class below :data:`IMBALANCE_SHARE` (of the weight, with row weights)."""
    w = np.ones(len(target)) if sample_weight is None else sample_weight
    n_pos, total = float(np.dot(w, target)), float(w.sum())
    rate = n_pos / total
    minority = min(rate, 1 - rate)
    if minority >= IMBALANCE_SHARE:
        return []
    weight = (total - n_pos) / n_pos if n_pos > 0 else math.inf
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


def code_findings(encoder: TabularEncoder) -> list[Finding]:
    """Integer columns that may be codes (an hour, a weekday, an id): candidates to be read
    as categories too (:func:`steadyclf.schema.roles.code_candidates`)."""
    infos = {c.name: c for c in encoder.columns_}
    rows = [
        (
            name,
            {"n_values": float(infos[name].n_values)},
            f"{name}: integer with {infos[name].n_values} values",
        )
        for name in code_candidates(encoder.columns_)
    ]
    one = f"{rows[0][2]}, may be a code read as a category too" if rows else ""
    return _group(
        "codes",
        rows,
        one,
        "integer columns that may be codes, read as categories too",
        why="integers that name things (an hour, a weekday, an id) act through no one threshold",
        fix=(
            "integer_codes='category' reads them as categories too, beside the numbers; keep "
            "it if the validation loss is lower"
        ),
        severity="info",
    )


def separation_findings(
    frame: pd.DataFrame, encoder: TabularEncoder, target: NDArray[np.float32]
) -> list[Finding]:
    """Columns that separate the classes by themselves (leakage, or a threshold problem)."""
    rows: list[tuple[str, dict[str, float], str]] = []
    sentences = []
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
        cut, accuracy = best_threshold(values[known], target[known])
        rule = f"{name} {'>=' if auc >= 0.5 else '<'} {short_number(cut)}"
        rows.append(
            (
                name,
                {"auc": strength, "threshold": cut, "accuracy": accuracy},
                f"{name} (AUC {strength:.3f}; {rule} is {accuracy:.1%} accurate)",
            )
        )
        sentences.append(
            f"{name} alone separates the classes: AUC {strength:.3f}; the rule {rule} is "
            f"{accuracy:.1%} accurate"
        )
    for j, info in enumerate(encoder.categorical_columns):
        codes = pd.Series(x_cat[:, j])
        majority = pd.Series(target).groupby(codes).transform(lambda t: round(t.mean()))
        accuracy = float((majority.to_numpy() == target).mean())
        if accuracy >= SEPARATION_AUC and codes.nunique() <= max(2, len(codes) // 20):
            rows.append(
                (
                    info.name,
                    {"accuracy": accuracy},
                    f"{info.name} (its majority class per level is {accuracy:.1%} accurate)",
                )
            )
            sentences.append(
                f"{info.name} alone separates the classes: its majority class per level is "
                f"{accuracy:.1%} accurate"
            )
    names = ", ".join(name for name, _, _ in rows)
    single = len(rows) == 1
    return _group(
        "separates",
        rows,
        sentences[0] if sentences else "",
        f"{len(rows)} columns each separate the classes alone",
        why=(
            "either the feature leaks the answer (it is computed from the target, or only "
            "known afterwards) or the problem is a single threshold, which a network solves "
            "only once its inputs are scaled"
        ),
        fix=(
            f"check how {names} {'is' if single else 'are'} produced; if legitimate, a "
            "threshold rule (or logistic regression) may be all you need"
        ),
        action=f"check {names} for leakage, or use a threshold rule ({names} "
        f"{'alone separates' if single else 'each separate'} the classes)",
    )


def best_threshold(values: NDArray[np.float64], target: NDArray[np.float32]) -> tuple[float, float]:
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


def duplicate_findings(features: pd.DataFrame, target: NDArray[np.float32]) -> list[Finding]:
    """Repeated feature rows, and those among them with different labels."""
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
