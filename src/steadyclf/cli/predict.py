"""``steadyclf predict`` and ``steadyclf evaluate``: use a saved model on new data."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..exceptions import DataError, ParameterError
from ..io.atomic import staged_files
from . import cli
from .common import (
    Output,
    check_query_given,
    fmt,
    load_training_data,
    names,
    negative_positive,
    split_weight,
    to_jsonable,
    writing,
)

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
    from ..predictor import InputChecks

    encoder = clf.encoder_
    encoder.check_columns(frame)
    expected = {c.name for c in encoder.columns_} | known
    extra = [c for c in frame.columns if c not in expected]
    if extra:
        output.note(f"ignoring {len(extra)} column(s) the model does not know: {names(extra)}")
    checks = InputChecks(encoder)
    checks.add(*encoder.transform(frame))
    for message in checks.messages():
        output.warn(message)


def predict_probabilities(clf: BinaryClassifier, frame: pd.DataFrame) -> NDArray[np.float64]:
    """Probability of the positive class ``positive_class_`` per row, from ``predict_proba``.

    The estimator sees exactly the columns it was fitted on: extra ones are left out and
    the ones dropped in training (which it ignores) are filled with missing values.
    """
    import warnings

    import numpy as np

    from ..exceptions import UnseenLevelsWarning
    from ..schema.labels import positive_column

    positive = positive_column(clf.classes_, clf.positive_class_)  # classes_ are sorted
    fitted = getattr(clf, "feature_names_in_", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnseenLevelsWarning)  # check_inputs said it
        if fitted is not None:
            return clf.predict_proba(frame.reindex(columns=list(fitted)))[:, positive]
        columns = [f"x{j}" for j in range(clf.n_features_in_)]  # fitted on an array
        array = frame.reindex(columns=columns).to_numpy(dtype=np.float64)
        return clf.predict_proba(array)[:, positive]


def _threshold(default: float, threshold: float | None) -> float:
    if threshold is None:
        return float(default)
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
@click.option(
    "--out",
    help="File for the predictions (.csv, .csv.gz, .tsv, .parquet), or a database table: "
    "postgresql://user@host/db/table or data.duckdb::table (written in one transaction).",
)
@click.option("--threshold", type=float, help="Decision threshold (default: the model's).")
@click.option("--id", "id_column", help="Column to copy into the output to identify rows.")
@click.option(
    "--query",
    metavar="SQL",
    help="Predict the rows of this query; DATA is then the database (a DuckDB file, "
    "'duckdb:' or a postgresql:// URI).",
)
@click.option(
    "--memory-budget",
    metavar="SIZE",
    help="Memory for rows held at once, e.g. 200MB (default: half of the free memory).",
)
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
    memory_budget: str | None,
    drift_report: str | None,
    query: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Write the probability and predicted label of each row of DATA.

    DATA: a CSV/TSV/Parquet file, a directory or glob of Parquet files, or - for CSV on
    standard input; a database with --query. Rows are read in batches and written as
    they are predicted, so memory stays bounded whatever the size of DATA. Columns: [ID],
    probability (of the positive class), label. To --out (a file written under a
    temporary name, renamed when complete; a table written in one transaction), or CSV
    on stdout.
    """

    from ..drift import drift_format
    from ..io.sources import default_memory_budget, parse_memory_size
    from ..io.tables import TableWriter, table_format
    from ..predictor import PREDICTION_COLUMNS, Predictor, open_rows, predict_rows
    from .databases import open_query, output_table, prediction_sink, shown

    output = Output(as_json=as_json, quiet=quiet)
    table = output_table(out)
    if out is not None and table is None:
        table_format(out)  # an unknown suffix fails before any work
    if drift_report is not None:
        drift_format(drift_report)  # .json or .md, checked before any work
    budget = default_memory_budget() if memory_budget is None else parse_memory_size(memory_budget)
    predictor = Predictor.load(model_dir)
    cut = _threshold(predictor.threshold, threshold)
    check_query_given(data, query, "to predict")
    rows = open_rows(data, budget) if query is None else open_query(data, query, table)
    columns = [*([id_column] if id_column else []), *PREDICTION_COLUMNS]
    collect = out is None and as_json
    with (
        writing(shown(out) if out else "standard output"),
        prediction_sink(table, columns, data, rows)
        if table is not None
        else TableWriter(out, stream=sys.stdout if out is None and not as_json else None) as writer,
    ):
        done = predict_rows(
            predictor,
            rows,
            None if collect else writer.write,
            budget=budget,
            threshold=cut,
            id_column=id_column,
            drift=drift_report is not None,
            where=shown(data),
        )
        if done.drift is not None and drift_report is not None:
            # Before the predictions are renamed into place: a report that cannot be
            # written leaves --out as it was.
            with writing(drift_report):
                done.drift.write(drift_report)
    if done.ignored:
        output.note(
            f"ignoring {len(done.ignored)} column(s) the model does not know: {names(done.ignored)}"
        )
    for message in done.warnings:
        output.warn(message)
    n_rows, drift = done.n_rows, done.drift
    summary = {"model": model_dir, "data": shown(data), "rows": n_rows, "threshold": cut}
    if drift is not None and drift_report is not None:
        (output.warn if drift.flagged() else output.note)(
            f"{drift.summary()}; wrote {drift_report}"
        )
        summary["drift_report"] = drift_report
    if out is not None:
        where = shown(out)
        output.result(summary | {"out": where}, lambda: f"wrote {n_rows} predictions to {where}")
    elif as_json:
        assert done.predictions is not None
        predictions = done.predictions.to_dict(orient="records")
        output.result(summary | {"predictions": predictions}, str)


# -- evaluating ------------------------------------------------------------------------------
def write_evaluation(
    out_dir: str,
    report: Mapping[str, Any],
    y: NDArray[np.int64],
    proba: NDArray[np.float64],
    *,
    positive: Any = None,
    sample_weight: NDArray[np.float64] | None = None,
) -> list[str]:
    """``metrics.json`` and the ROC, precision-recall and calibration plots in ``out_dir``
    (axes naming the ``positive`` class; weighted by ``sample_weight`` as the metrics are).

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
        # Curves need both classes, each of some weight.
        weights = np.ones(len(y)) if sample_weight is None else sample_weight
        two_classes = all(weights[y == c].sum() > 0 for c in (0, 1))
        if two_classes:
            how = {"positive": positive, "sample_weight": sample_weight}
            plot_roc(y, proba, staging / "roc.png", **how)
            plot_precision_recall(y, proba, staging / "precision_recall.png", **how)
        plot_calibration(
            y, proba, staging / "calibration.png", positive=positive, sample_weight=sample_weight
        )
        names = [n for n in EVALUATION_FILES if (staging / n).exists()]
    return [str(target / n) for n in names]


def format_evaluation(summary: Mapping[str, Any]) -> str:
    """The evaluation report for people."""
    r = summary["metrics"]
    # "classes" are sorted (scikit-learn's order); either may be the positive one.
    neg, pos = (repr(c) for c in negative_positive(summary))
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
    cm = {  # counts, or sums of weights
        k: str(v) if isinstance(v, int) else f"{v:.10g}" for k, v in r["confusion_matrix"].items()
    }
    width = max(len(neg), len(pos), *(len(v) for v in cm.values()), 6) + 2
    weighted = f", weighted (sum {r['sum_of_weights']:.6g})" if "sum_of_weights" in r else ""
    lines = [
        f"evaluated {summary['model']!r} on {r['n']} rows of {summary['data']!r} "
        f"({r['n_positive']} positive, {pos}){weighted}; threshold {r['threshold']:.3f}",
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
@click.option(
    "--weight", metavar="COLUMN", help="Column of row weights: weighted metrics (numbers >= 0)."
)
@click.option("--out", "out_dir", help="Directory for metrics.json and the plots.")
@click.option("--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--json", "as_json", is_flag=True, help="Print only JSON on stdout.")
def evaluate(
    model_dir: str,
    data: str,
    target: str | None,
    threshold: float | None,
    drop_missing_target: bool,
    weight: str | None,
    out_dir: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Score the model on labelled DATA: metrics, confusion matrix and plots (weighted by
    the rows' --weight, if given)."""
    from ..estimator import load
    from ..evaluation import binary_metrics, labels_to_binary

    output = Output(as_json=as_json, quiet=quiet)
    clf = load(model_dir)
    cut = _threshold(clf.threshold_, threshold)
    target = target or _model_metadata(model_dir).get("target")
    if not target:
        raise ParameterError("give the column with the true labels: --target COL")
    table = load_training_data(
        data, str(target), drop_missing_target=drop_missing_target, output=output
    )
    y = labels_to_binary(table.y.to_numpy(), clf.classes_, clf.positive_class_)
    X, sample_weight = split_weight(table.X, weight)
    check_inputs(clf, X, known=set(), output=output)
    proba = predict_probabilities(clf, X)
    if sample_weight is not None and not sample_weight.any():
        raise DataError(f"weight column {weight!r} is zero on every row: nothing to evaluate")
    report = binary_metrics(y, proba, cut, sample_weight)
    summary: dict[str, Any] = {
        "model": model_dir,
        "data": data,
        "target": target,
        "classes": clf.classes_.tolist(),
        "positive": clf.positive_class_,
        "metrics": report,
    }
    if out_dir is not None:
        summary["files"] = write_evaluation(
            out_dir, report, y, proba, positive=clf.positive_class_, sample_weight=sample_weight
        )
    output.result(summary, lambda: format_evaluation(summary))
