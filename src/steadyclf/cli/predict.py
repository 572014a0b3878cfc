"""``steadyclf predict`` and ``steadyclf evaluate``: use a saved model on new data."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..exceptions import DataError, ParameterError
from ..io.atomic import staged_files
from . import cli
from .common import Output, fmt, load_training_data, names, to_jsonable, writing

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from numpy.typing import NDArray

    from ..estimator import BinaryClassifier

__all__ = ["check_inputs", "evaluate", "predict", "predict_probabilities"]

EVALUATION_FILES = ("metrics.json", "roc.png", "precision_recall.png", "calibration.png")


# -- predicting ------------------------------------------------------------------------------
def check_inputs(
    clf: BinaryClassifier, frame: pd.DataFrame, *, known: set[str], output: Output
) -> None:
    """Schema check, a note on extra columns and warnings on far out-of-range values."""
    encoder = clf.encoder_
    encoder.check_columns(frame)
    expected = {c.name for c in encoder.columns_} | known
    extra = [c for c in frame.columns if c not in expected]
    if extra:
        output.note(f"ignoring {len(extra)} column(s) the model does not know: {names(extra)}")
    x_num, _ = encoder.transform(frame)
    for name, count in encoder.unexpected_missing(x_num).items():
        output.warn(
            f"{count} missing value{'s' if count > 1 else ''} in {name!r}, which had none in training; filled with the training median"
        )
    ranges = {c.name: c for c in encoder.columns_}
    for name, count in encoder.out_of_range(x_num).items():
        info = ranges[name]
        output.warn(
            f"{count} value{'s' if count > 1 else ''} of {name!r} far outside the training range [{info.low:.6g}, {info.high:.6g}]; predictions there are extrapolations"
        )


def predict_probabilities(clf: BinaryClassifier, frame: pd.DataFrame) -> NDArray[np.float64]:
    """Probability of the positive class ``classes_[1]`` per row, from ``predict_proba``.

    The estimator sees exactly the columns it was fitted on: extra ones are left out and
    the ones dropped in training (which it ignores) are filled with missing values.
    """
    import numpy as np

    fitted = getattr(clf, "feature_names_in_", None)
    if fitted is not None:
        return clf.predict_proba(frame.reindex(columns=list(fitted)))[:, 1]
    columns = [f"x{j}" for j in range(clf.n_features_in_)]  # fitted on an array
    return clf.predict_proba(frame.reindex(columns=columns).to_numpy(dtype=np.float64))[:, 1]


def _threshold(clf: BinaryClassifier, threshold: float | None) -> float:
    if threshold is None:
        return float(clf.threshold_)
    if not 0.0 <= threshold <= 1.0:
        raise ParameterError(f"--threshold must be between 0 and 1; got {threshold}")
    return float(threshold)


def _model_metadata(model_dir: str) -> dict[str, Any]:
    from ..persistence import read_index

    metadata = read_index(model_dir).get("metadata")
    return metadata if isinstance(metadata, dict) else {}


@cli.command()
@click.argument("model_dir")
@click.argument("data")
@click.option("--out", help="File for the predictions (.csv, .csv.gz, .tsv, .parquet).")
@click.option("--threshold", type=float, help="Decision threshold (default: the model's).")
@click.option("--id", "id_column", help="Column to copy into the output to identify rows.")
@click.option(
    "--drift-report",
    metavar="FILE",
    help="Write how DATA differs from the training data, per column (.json or .md).",
)
@click.option("--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--json", "as_json", is_flag=True, help="Print only JSON on stdout.")
def predict(
    model_dir: str,
    data: str,
    out: str | None,
    threshold: float | None,
    id_column: str | None,
    drift_report: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Write the probability and predicted label of each row of DATA.

    Columns: [ID], probability (of the positive class), label. To --out, or CSV on stdout.
    """
    import pandas as pd

    from ..drift import DriftReport, drift_format
    from ..estimator import load
    from ..io.tables import read_table, table_format, write_table

    output = Output(as_json=as_json, quiet=quiet)
    if out is not None:
        table_format(out)  # an unknown suffix fails before any work
    if drift_report is not None:
        drift_format(drift_report)  # .json or .md, checked before any work
    clf = load(model_dir)
    cut = _threshold(clf, threshold)
    frame = read_table(data)
    if id_column is not None and id_column not in frame.columns:
        raise DataError(
            f"--id column {id_column!r} is not in the data; columns: {names(frame.columns, 20)}"
        )
    target = _model_metadata(model_dir).get("target")
    known = {c for c in (id_column, target) if c}
    check_inputs(clf, frame, known=known, output=output)
    proba = predict_probabilities(clf, frame)
    drift = None if drift_report is None else DriftReport(clf.encoder_)
    if drift is not None:
        drift.update(frame)  # per batch when predicting in chunks: the counts add up
    result = pd.DataFrame({"probability": proba, "label": clf.classes_[(proba > cut).astype(int)]})
    if id_column is not None:
        result.insert(0, id_column, frame[id_column].to_numpy())
    if out is not None:
        with writing(out):
            write_table(result, out)
    summary = {"model": model_dir, "data": data, "rows": len(result), "threshold": cut}
    if drift is not None and drift_report is not None:
        with writing(drift_report):
            drift.write(drift_report)
        (output.warn if drift.flagged() else output.note)(
            f"{drift.summary()}; wrote {drift_report}"
        )
        summary["drift_report"] = drift_report
    if out is not None:
        output.result(summary | {"out": out}, lambda: f"wrote {len(result)} predictions to {out}")
    elif as_json:
        output.result(summary | {"predictions": result.to_dict(orient="records")}, str)
    else:
        click.echo(result.to_csv(index=False), nl=False)


# -- evaluating ------------------------------------------------------------------------------
def write_evaluation(
    out_dir: str, report: Mapping[str, Any], y: NDArray[np.int64], proba: NDArray[np.float64]
) -> list[str]:
    """``metrics.json`` and the ROC, precision-recall and calibration plots in ``out_dir``.

    Everything is written to a temporary directory first, then moved into place.
    """
    import numpy as np

    from ..plots import plot_calibration, plot_precision_recall, plot_roc

    target = Path(out_dir)
    if target.exists() and not target.is_dir():
        raise DataError(f"--out {out_dir!r} is a file; give a directory")
    with writing(out_dir), staged_files(target) as staging:
        metrics_text = json.dumps(to_jsonable(report), indent=2, allow_nan=False)
        (staging / "metrics.json").write_text(metrics_text + "\n", encoding="utf-8")
        two_classes = np.unique(y).size == 2
        if two_classes:  # curves need both classes
            plot_roc(y, proba, staging / "roc.png")
            plot_precision_recall(y, proba, staging / "precision_recall.png")
        plot_calibration(y, proba, staging / "calibration.png")
        names = [n for n in EVALUATION_FILES if (staging / n).exists()]
    return [str(target / n) for n in names]


def format_evaluation(summary: Mapping[str, Any]) -> str:
    """The evaluation report for people."""
    r = summary["metrics"]
    neg, pos = (repr(c) for c in summary["classes"])
    rows = [
        ("accuracy", r["accuracy"]),
        ("balanced accuracy", r["balanced_accuracy"]),
        ("precision", r["precision"]),
        ("recall", r["recall"]),
        ("F1", r["f1"]),
        ("ROC AUC", r["roc_auc"]),
        ("PR AUC (average precision)", r["pr_auc"]),
        ("log loss", r["log_loss"]),
        ("Brier score", r["brier"]),
    ]
    cm = r["confusion_matrix"]
    width = max(len(neg), len(pos), 6) + 2
    lines = [
        f"evaluated {summary['model']!r} on {r['n']} rows of {summary['data']!r} "
        f"({r['n_positive']} positive, {pos}); threshold {r['threshold']:.3f}",
        *(f"  {name:<28}{fmt(value)}" for name, value in rows),
        "confusion matrix (rows: true class, columns: predicted class)",
        f"  {'':<{width}}{neg:>{width}}{pos:>{width}}",
        f"  {neg:<{width}}{cm['tn']:>{width}}{cm['fp']:>{width}}",
        f"  {pos:<{width}}{cm['fn']:>{width}}{cm['tp']:>{width}}",
    ]
    if summary.get("files"):
        lines.append(f"wrote {', '.join(summary['files'])}")
    return "\n".join(lines)


@cli.command()
@click.argument("model_dir")
@click.argument("data")
@click.option("--target", help="Column with the true labels (default: the training target).")
@click.option("--threshold", type=float, help="Decision threshold (default: the model's).")
@click.option("--drop-missing-target", is_flag=True, help="Drop rows whose target is missing.")
@click.option("--out", "out_dir", help="Directory for metrics.json and the plots.")
@click.option("--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--json", "as_json", is_flag=True, help="Print only JSON on stdout.")
def evaluate(
    model_dir: str,
    data: str,
    target: str | None,
    threshold: float | None,
    drop_missing_target: bool,
    out_dir: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Score the model on labelled DATA: metrics, confusion matrix and plots."""
    from ..estimator import load
    from ..evaluation import binary_metrics, labels_to_binary

    output = Output(as_json=as_json, quiet=quiet)
    clf = load(model_dir)
    cut = _threshold(clf, threshold)
    target = target or _model_metadata(model_dir).get("target")
    if not target:
        raise ParameterError("give the column with the true labels: --target COL")
    table = load_training_data(
        data, str(target), drop_missing_target=drop_missing_target, output=output
    )
    y = labels_to_binary(table.y.to_numpy(), clf.classes_)
    check_inputs(clf, table.X, known=set(), output=output)
    proba = predict_probabilities(clf, table.X)
    report = binary_metrics(y, proba, cut)
    summary: dict[str, Any] = {
        "model": model_dir,
        "data": data,
        "target": target,
        "classes": clf.classes_.tolist(),
        "metrics": report,
    }
    if out_dir is not None:
        summary["files"] = write_evaluation(out_dir, report, y, proba)
    output.result(summary, lambda: format_evaluation(summary))
