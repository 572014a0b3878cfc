"""One self-contained HTML report on how far to trust a model on some data.

:func:`write_report` scores a fitted model on labelled rows (rows it did not train on)
and writes one HTML file holding: the data summary and the doctor's findings, the
training curves, the metrics at the model's threshold, the ROC, precision-recall and
calibration curves, the confusion matrix, the importance of each column with its
interval, the schema, and the drift of these rows from the training data.

The file needs nothing but a browser: pictures are SVG drawn by matplotlib (text as
paths, no font) inlined as data URIs, the style is inline, there is no script, and a
Content-Security-Policy forbids loading anything else. Every picture has alt text and
the numbers behind it in a table beside it. The page is rendered by a Jinja2 template
(``templates/report.html.j2``, shipped with the package; ``pip install
'steadyclf[report]'``) and written atomically.
"""

from __future__ import annotations

import base64
import datetime
import os
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.special import expit
from sklearn import metrics

from .calibration import calibration_metrics, describe_calibration, reliability_bins
from .drift import DriftReport
from .evaluation import binary_metrics, labels_to_binary
from .exceptions import DataError, SteadyclfError
from .io.atomic import atomic_write
from .schema.labels import positive_column

if TYPE_CHECKING:
    from .estimator import BinaryClassifier

__all__ = ["build_report", "render_report", "write_report"]

#: False-positive rates at which the ROC table reads the curve.
ROC_RATES = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5)
#: Recalls at which the precision-recall table reads the curve.
RECALLS = (0.1, 0.25, 0.5, 0.75, 0.9)
#: Bins (equal mass) of the reliability diagram and its table.
CALIBRATION_BINS = 10
TEMPLATE = "report.html.j2"


def write_report(
    clf: BinaryClassifier,
    X: pd.DataFrame,
    y: Any,
    path: str | os.PathLike[str],
    *,
    model_name: str = "model",
    data_name: str = "data",
    target: str = "target",
    n_repeats: int = 5,
    max_rows: int | None = None,
    random_state: int = 0,
    progress: bool | None = None,
) -> Path:
    """Write the HTML report of ``clf`` on the rows ``X, y`` to ``path``, atomically.

    Parameters are those of :func:`build_report`. Returns the path written.

    Examples
    --------
    >>> import tempfile, numpy as np, pandas as pd
    >>> from steadyclf import BinaryClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"a": rng.normal(size=300), "b": rng.choice(["x", "y"], 300)})
    >>> y = (X["a"] > 0).astype(int)
    >>> clf = BinaryClassifier(random_state=0).fit(X[:200], y[:200])
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     page = write_report(clf, X[200:], y[200:], f"{tmp}/report.html").read_text()
    >>> "<h2 id=\\"importance\\">" in page
    True
    """
    context = build_report(
        clf,
        X,
        y,
        model_name=model_name,
        data_name=data_name,
        target=target,
        n_repeats=n_repeats,
        max_rows=max_rows,
        random_state=random_state,
        progress=progress,
    )
    return atomic_write(path, render_report(context))


def build_report(
    clf: BinaryClassifier,
    X: pd.DataFrame,
    y: Any,
    *,
    model_name: str = "model",
    data_name: str = "data",
    target: str = "target",
    n_repeats: int = 5,
    max_rows: int | None = None,
    random_state: int = 0,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Everything the report shows, as plain data (figures as SVG data URIs).

    Parameters
    ----------
    clf : BinaryClassifier
        A fitted model.
    X : DataFrame
        Rows it did not train on, with the columns it was fitted on.
    y : array-like
        Their labels (values of ``clf.classes_``).
    model_name, data_name, target : str
        How the report names the model, the data and the label column.
    n_repeats, max_rows, random_state, progress
        Of the column importance (:func:`steadyclf.importance.explain`).
    """
    from .doctor import diagnose
    from .importance import explain

    if not isinstance(X, pd.DataFrame):
        raise DataError("the report needs the rows as a DataFrame (column names are shown)")
    clf.encoder_.check_columns(X)
    labels = labels_to_binary(np.asarray(y), clf.classes_, clf.positive_class_)
    if np.unique(labels).size < 2:
        raise DataError("the report needs rows of both classes (ROC and precision-recall curves)")
    # decision_function is in favour of classes_[1] (sorted): of the positive class here.
    column = positive_column(clf.classes_, clf.positive_class_)
    logits = clf.decision_function(_model_columns(clf, X)) * (1.0 if column == 1 else -1.0)
    proba = expit(logits)
    classes = [str(clf.classes_[1 - column]), str(clf.positive_class_)]  # negative, positive
    threshold = float(clf.threshold_)
    scores = binary_metrics(labels, proba, threshold)
    importance = explain(
        clf,
        X,
        y,
        n_repeats=n_repeats,
        max_rows=max_rows,
        random_state=random_state,
        progress=progress,
    )
    drift = DriftReport(clf.encoder_)
    drift.update(X)
    doctor = diagnose(X, y, normalize=str(clf.normalize))
    context: dict[str, Any] = {
        "title": f"steadyclf report: {model_name} on {data_name}",
        "model_name": model_name,
        "data_name": data_name,
        "target": target,
        "classes": classes,
        "positive": classes[1],
        "n_rows": len(X),
        "n_positive": int(labels.sum()),
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "version": _version(),
        "threshold": threshold,
        "doctor": _doctor(doctor),
        "training": _training(clf),
        "metrics": _metrics(scores),
        "roc": _roc(labels, proba, clf.positive_class_),
        "pr": _precision_recall(labels, proba, clf.positive_class_),
        "calibration": _calibration(clf, labels, logits),
        "confusion": _confusion(scores, classes),
        "importance": _importance(importance),
        "schema": _schema(clf),
        "drift": drift.to_dict() | {"summary": drift.summary()},
    }
    context["highlights"] = _highlights(context, scores, importance, drift)
    return context


def render_report(context: dict[str, Any]) -> str:
    """The HTML page for a :func:`build_report` context."""
    try:
        import jinja2
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise SteadyclfError(
            "the HTML report needs Jinja2: pip install 'steadyclf[report]'"
        ) from exc
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("steadyclf", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["num"] = _number
    environment.filters["pct"] = _percent
    return environment.get_template(TEMPLATE).render(**context)


# -- sections ------------------------------------------------------------------------------
def _picture(fig: Any, alt: str) -> dict[str, str]:
    """A figure as an inline SVG data URI with its alt text."""
    from .plots import figure_svg

    svg = figure_svg(fig)
    encoded = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return {"src": f"data:image/svg+xml;base64,{encoded}", "alt": alt}


def _model_columns(clf: BinaryClassifier, X: pd.DataFrame) -> Any:
    fitted = getattr(clf, "feature_names_in_", None)
    if fitted is not None:
        return X.reindex(columns=[str(c) for c in fitted])
    columns = [f"x{j}" for j in range(int(clf.n_features_in_))]
    return X.reindex(columns=columns).to_numpy(dtype=np.float64)


def _doctor(report: Any) -> dict[str, Any]:
    return {
        "headline": report.headline,
        "verdict": report.verdict,
        "positive_rate": report.positive_rate,
        "features": [vars(f) for f in report.features],
        "findings": [
            {
                "kind": f.kind.replace("_", " "),
                "severity": f.severity,
                "summary": f.summary,
                "why": f.why,
                "fix": f.fix,
            }
            for f in report.findings
        ],
    }


def _training(clf: BinaryClassifier) -> dict[str, Any]:
    history = list(clf.history_)
    plan = dict(getattr(clf, "plan_", {}) or {})
    data = dict(getattr(clf, "data_", {}) or {})
    folds = int(plan.get("folds") or 1)
    crossed = folds > 1  # small data: members cross-fitted, each with its own epochs
    facts = [
        ("rows trained on", data.get("n_train", plan.get("n_train"))),
        ("rows held out", data.get("n_valid", plan.get("n_valid"))),
        ("cross-fitted members", folds if crossed else None),
        ("epochs, all members" if crossed else "epochs", clf.n_iter_),
        ("median best epoch" if crossed else "best epoch", clf.best_epoch_),
        ("learning rate", clf.lr_),
        ("batch size", clf.batch_size_ or "full batch"),
        ("weight decay", getattr(clf, "weight_decay_", None)),
        ("input scaling", clf.normalize),
        ("numeric embedding", getattr(clf, "numeric_embedding_", None)),
        ("hidden layers", ", ".join(str(h) for h in clf.hidden) or "none"),
    ]
    validation = dict(clf.validation_metrics_)
    picture = None
    if history:
        from .plots import member_histories, training_figure

        runs = member_histories(history)
        if len(runs) > 1:
            lengths = sorted(len(run) for run in runs)
            text = (
                f"Training curves of {len(runs)} members ({lengths[0]} to {lengths[-1]} "
                "epochs each, one line per member): log loss, accuracy and learning rate per "
                "epoch. The table below lists every epoch of every member."
            )
        else:
            last = history[-1]
            valid = f", validation loss {last['valid_loss']:.4f}" if "valid_loss" in last else ""
            text = (
                f"Training curves over {len(history)} epochs: log loss, accuracy and learning "
                f"rate per epoch; last training loss {last['train_loss']:.4f}{valid}. The "
                "table below lists every epoch."
            )
        picture = _picture(training_figure(history), text)
    columns = [
        c
        for c in (
            "member",
            "epoch",
            "train_loss",
            "valid_loss",
            "train_accuracy",
            "valid_accuracy",
            "lr",
        )
        if any(c in r for r in history)
    ]
    return {
        "facts": [(k, v) for k, v in facts if v is not None],
        "validation": {
            k: validation[k]
            for k in ("roc_auc", "accuracy", "log_loss", "brier")
            if validation.get(k) is not None
        },
        "picture": picture,
        # Small data's metrics are out of fold (validation_metrics_["estimate"]).
        "validation_name": "out-of-fold" if "estimate" in validation else "validation",
        "columns": columns,
        "history": [[r.get(c) for c in columns] for r in history],
        "warnings": [w.get("message", "") for w in getattr(clf, "warnings_", [])],
    }


def _metrics(scores: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("accuracy", scores["accuracy"]),
        ("balanced accuracy", scores["balanced_accuracy"]),
        ("precision", scores["precision"]),
        ("recall", scores["recall"]),
        ("F1", scores["f1"]),
        ("ROC AUC", scores["roc_auc"]),
        ("PR AUC (average precision)", scores["pr_auc"]),
        ("log loss", scores["log_loss"]),
        ("Brier score", scores["brier"]),
    ]


def _roc(y: NDArray[np.int64], proba: NDArray[np.float64], positive: Any) -> dict[str, Any]:
    from .plots import roc_figure

    fpr, tpr, cut = metrics.roc_curve(y, proba)
    auc = float(metrics.roc_auc_score(y, proba))
    rows = []
    for rate in ROC_RATES:
        i = int(np.searchsorted(fpr, rate, side="right") - 1)  # last point with fpr <= rate
        rows.append({"fpr": rate, "tpr": float(tpr[i]), "threshold": _finite_cut(cut[i])})
    alt = (
        f"ROC curve with area {auc:.3f}: the true-positive rate against the false-positive "
        "rate as the threshold moves, with the diagonal of chance. The table below reads it "
        "at fixed false-positive rates."
    )
    return {
        "auc": auc,
        "rows": rows,
        "picture": _picture(roc_figure(y, proba, positive=positive), alt),
    }


def _precision_recall(
    y: NDArray[np.int64], proba: NDArray[np.float64], positive: Any
) -> dict[str, Any]:
    from .plots import precision_recall_figure

    precision, recall, cut = metrics.precision_recall_curve(y, proba)
    average = float(metrics.average_precision_score(y, proba))
    rows = []
    for target in RECALLS:
        reached = np.flatnonzero(recall[:-1] >= target)  # the last point has no threshold
        if reached.size:
            i = int(reached[np.argmax(precision[reached])])
            rows.append(
                {"recall": target, "precision": float(precision[i]), "threshold": float(cut[i])}
            )
    base = float(y.mean())
    alt = (
        f"Precision-recall curve with average precision {average:.3f} (chance level "
        f"{base:.3f}, the positive rate). The table below gives the best precision at "
        "fixed recalls."
    )
    return {
        "average_precision": average,
        "base_rate": base,
        "rows": rows,
        "picture": _picture(precision_recall_figure(y, proba, positive=positive), alt),
    }


def _calibration(
    clf: BinaryClassifier, y: NDArray[np.int64], logits: NDArray[np.float64]
) -> dict[str, Any]:
    from .plots import calibration_figure

    proba = expit(logits)
    bins = reliability_bins(y, proba, CALIBRATION_BINS)  # the figure's bins, and the ECE's
    fitted = dict(clf.calibration_)
    scale, bias = float(fitted["scale"]), float(fitted["bias"])
    raw = expit((logits - bias) / scale)  # the network's own probabilities
    here = {"before": calibration_metrics(y, raw), "after": calibration_metrics(y, proba)}
    worst = max(bins, key=lambda b: abs(b["predicted"] - b["observed"]))
    alt = (
        f"Reliability diagram in {len(bins)} bins of about equal size (rows of one "
        "probability share a bin): the observed share of "
        f"{clf.positive_class_!s} against the mean predicted probability; the diagonal is "
        f"perfect calibration. The largest gap is {abs(worst['predicted'] - worst['observed']):.3f}"
        f" (predicted {worst['predicted']:.3f}, observed {worst['observed']:.3f}). The table "
        "below lists every bin."
    )
    return {
        "method": fitted["method"],
        "description": describe_calibration(fitted),
        "here": here,
        "bins": bins,
        "picture": _picture(
            calibration_figure(y, proba, CALIBRATION_BINS, positive=clf.positive_class_), alt
        ),
    }


def _confusion(scores: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    from .plots import confusion_figure

    cm = scores["confusion_matrix"]
    matrix = [[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]]
    alt = (
        f"Confusion matrix at threshold {scores['threshold']:.3f}: of the true {classes[0]} "
        f"rows, {cm['tn']} predicted {classes[0]} and {cm['fp']} predicted {classes[1]}; of "
        f"the true {classes[1]} rows, {cm['fn']} predicted {classes[0]} and {cm['tp']} "
        f"predicted {classes[1]}. The same numbers are in the table below."
    )
    return {"matrix": matrix, "picture": _picture(confusion_figure(matrix, classes), alt)}


def _importance(found: Any) -> dict[str, Any]:
    from .plots import importance_figure

    columns = found.columns
    picture = None
    if columns:
        top = columns[0]
        alt = (
            f"Bar chart of column importance ({found.what}), most important first: "
            f"{top.column} ({top.importance:.4f}) leads; "
            + (
                "whiskers show mean +- 2 standard deviations over the repeats"
                if found.n_repeats > 1
                else "one shuffle per column, so no interval"
            )
            + ". The table below lists every column."
        )
        picture = _picture(
            importance_figure(
                [c.column for c in columns],
                [c.importance for c in columns],
                [c.low for c in columns],
                [c.high for c in columns],
                xlabel=found.what,
            ),
            alt,
        )
    return {
        "what": found.what,
        "scoring": found.scoring,
        "baseline": found.baseline,
        "n_rows": found.n_rows,
        "n_repeats": found.n_repeats,
        "columns": [vars(c) for c in columns],
        "unused": found.unused,
        "picture": picture,
    }


def _schema(clf: BinaryClassifier) -> list[dict[str, Any]]:
    rows = []
    for info in clf.encoder_.columns_:
        if info.role == "dropped":
            detail = info.reason
        elif info.role == "categorical":
            kept = len(info.levels)
            shown = ", ".join(info.levels[:8]) + (", ..." if kept > 8 else "")
            detail = f"{kept} of {info.n_levels} levels kept: {shown}"
        elif info.low is not None and info.high is not None:
            detail = f"range {_number(info.low)} to {_number(info.high)}"
        else:
            detail = ""
        if info.read_as_category:
            read = f"integer with {info.n_values} values, read as a category too"
            detail = f"{detail}; {read}" if detail else read
        missing = info.n_missing / info.n_rows if info.n_rows else None
        rows.append(
            {
                "name": info.name,
                "role": info.role,
                "dtype": info.dtype,
                "detail": detail,
                "missing": missing if info.role != "dropped" else None,
            }
        )
    return rows


def _highlights(
    context: dict[str, Any], scores: dict[str, Any], importance: Any, drift: DriftReport
) -> list[tuple[str, str]]:
    top = importance.columns[0].column if importance.columns else "-"
    flagged = drift.flagged()
    return [
        ("ROC AUC", _number(scores["roc_auc"], 4)),
        (f"accuracy at threshold {context['threshold']:.3f}", _number(scores["accuracy"], 4)),
        ("log loss", _number(scores["log_loss"], 4)),
        ("calibration", str(context["calibration"]["method"])),
        ("most important column", top),
        (
            "columns drifted",
            f"{len(flagged)} of {len(drift.columns())}"
            + (f" ({', '.join(c['column'] for c in flagged[:4])})" if flagged else ""),
        ),
    ]


# -- formatting ----------------------------------------------------------------------------
def _number(value: Any, digits: int = 4) -> str:
    """Numbers for people: ``n/a`` for none, counts with thousands separators, whole floats
    as integers, others to ``digits`` digits (scientific when tiny or huge)."""
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if not np.isfinite(number):
            return str(number)
        if number.is_integer() and abs(number) < 1e6:
            return str(int(number))  # a value such as a year: no thousands separator
        if number != 0 and (abs(number) >= 1e6 or abs(number) < 1e-4):
            return f"{number:.{max(digits - 1, 1)}e}"
        return f"{number:.{digits}g}" if abs(number) >= 1 else f"{number:.{digits}f}"
    return str(value)


def _percent(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.1%}"


def _finite_cut(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _version() -> str:
    try:
        return metadata.version("steadyclf")
    except metadata.PackageNotFoundError:  # pragma: no cover - odd installs
        return "unknown"
