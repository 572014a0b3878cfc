"""``steadyclf explain`` and ``steadyclf report``: how far to trust a saved model.

``explain`` ranks the columns by permutation importance on labelled rows;
``report`` writes one self-contained HTML file with everything: the data and the
doctor's findings, training, metrics, curves, calibration, importance, schema and drift.
Both read the label column given by ``--target`` (default: the one the model was trained
on) and should be given rows the model did not train on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..exceptions import ParameterError
from ..io.atomic import atomic_write
from . import cli
from .common import Output, load_training_data, writing

if TYPE_CHECKING:
    from ..estimator import BinaryClassifier
    from .common import TrainingData

__all__ = ["explain", "report"]


def _positive_int(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None and value <= 0:
        raise ParameterError(
            f"--{param.name.replace('_', '-')} must be a positive integer; got {value}"
        )
    return value


def _load(
    model_dir: str, data: str, target: str | None, drop_missing_target: bool, output: Output
) -> tuple[BinaryClassifier, TrainingData]:
    """The model and the labelled rows, checked against its schema."""
    from ..estimator import load
    from ..persistence import read_index

    clf = load(model_dir)
    metadata = read_index(model_dir).get("metadata")
    if target is None and isinstance(metadata, dict):
        target = metadata.get("target")
    if not target:
        raise ParameterError("give the column with the true labels: --target COL")
    table = load_training_data(
        data, str(target), drop_missing_target=drop_missing_target, output=output
    )
    clf.encoder_.check_columns(table.X)  # a missing column: one line naming it
    return clf, table


def _progress(output: Output) -> bool | None:
    """A progress bar on a terminal unless ``--quiet`` or ``--json``."""
    return None if not (output.quiet or output.as_json) else False


@cli.command()
@click.argument("model_dir")
@click.argument("data")
@click.option("--target", help="Column with the true labels (default: the training target).")
@click.option(
    "--repeats",
    type=int,
    default=5,
    show_default=True,
    callback=_positive_int,
    help="Shuffles per column.",
)
@click.option(
    "--scoring",
    type=click.Choice(["roc_auc", "log_loss"]),
    default="roc_auc",
    show_default=True,
    help="Importance = drop in ROC AUC, or rise in log loss, when a column is shuffled.",
)
@click.option("--max-rows", type=int, callback=_positive_int, help="Score on a random subset.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the shuffles.")
@click.option("--drop-missing-target", is_flag=True, help="Drop rows whose target is missing.")
@click.option("--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--json", "as_json", is_flag=True, help="Print only JSON on stdout.")
def explain(
    model_dir: str,
    data: str,
    target: str | None,
    repeats: int,
    scoring: str,
    max_rows: int | None,
    seed: int,
    drop_missing_target: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Rank the columns of DATA by how much the model's score drops when each is shuffled.

    Give rows the model did not train on. Each column is shuffled --repeats times; the
    interval is the mean +- 2 standard deviations of the drops.
    """
    from ..importance import explain as permutation_importance

    output = Output(as_json=as_json, quiet=quiet)
    clf, table = _load(model_dir, data, target, drop_missing_target, output)
    found = permutation_importance(
        clf,
        table.X,
        table.y,
        scoring=scoring,
        n_repeats=repeats,
        max_rows=max_rows,
        random_state=seed,
        progress=_progress(output),
    )
    summary = {"model": model_dir, "data": data, "target": table.target, **found.to_dict()}
    output.result(summary, lambda: str(found))


@cli.command()
@click.argument("model_dir")
@click.argument("data")
@click.option("--target", help="Column with the true labels (default: the training target).")
@click.option("--out", required=True, help="The HTML file to write.")
@click.option(
    "--repeats",
    type=int,
    default=5,
    show_default=True,
    callback=_positive_int,
    help="Shuffles per column for the column importance.",
)
@click.option("--max-rows", type=int, callback=_positive_int, help="Importance on a random subset.")
@click.option("--drop-missing-target", is_flag=True, help="Drop rows whose target is missing.")
@click.option("--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--json", "as_json", is_flag=True, help="Print only JSON on stdout.")
def report(
    model_dir: str,
    data: str,
    target: str | None,
    out: str,
    repeats: int,
    max_rows: int | None,
    drop_missing_target: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Write one self-contained HTML report of the model on labelled DATA to --out.

    It holds the data summary and the doctor's findings, the training curves, the metrics
    at the model's threshold, ROC, precision-recall and calibration curves, the confusion
    matrix, column importance, the schema and the drift of DATA from the training data.
    The file needs no network: open it in any browser.
    """
    from ..report import build_report, render_report

    if Path(out).suffix.lower() not in (".html", ".htm"):
        raise ParameterError(f"--out must be an .html file; got {out!r}")
    output = Output(as_json=as_json, quiet=quiet)
    clf, table = _load(model_dir, data, target, drop_missing_target, output)
    context = build_report(
        clf,
        table.X,
        table.y,
        model_name=model_dir,
        data_name=data,
        target=table.target,
        n_repeats=repeats,
        max_rows=max_rows,
        progress=_progress(output),
    )
    page = render_report(context)
    with writing(out):
        atomic_write(out, page)
    summary: dict[str, Any] = {
        "model": model_dir,
        "data": data,
        "target": table.target,
        "out": out,
        "bytes": len(page.encode("utf-8")),
        "highlights": dict(context["highlights"]),
    }
    output.result(
        summary,
        lambda: "\n".join(
            [f"wrote {out} ({summary['bytes'] / 1e3:,.0f} kB)"]
            + [f"  {name}: {value}" for name, value in context["highlights"]]
        ),
    )
