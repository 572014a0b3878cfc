"""``steadyclf export`` and ``steadyclf inspect``: a saved model, without data.

``export`` writes the model in a format other runtimes read (ONNX: the preprocessing,
the network and the decision threshold in one graph; see
:mod:`steadyclf.export.onnx_graph`). ``inspect`` tells what a model directory holds,
from ``model.json`` alone: neither the weights nor torch are loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from ..exceptions import ParameterError
from . import cli
from .common import Output, fmt, names, writing

__all__ = ["export", "format_inspection", "inspect", "inspection"]

EXPORT_FORMATS = ("onnx",)


@cli.command()
@click.argument("model_dir")
@click.option(
    "--format",
    "fmt_name",
    type=click.Choice(EXPORT_FORMATS),
    default="onnx",
    show_default=True,
    help="File format.",
)
@click.option("--out", required=True, help="The file to write (e.g. model.onnx).")
@click.option("--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--json", "as_json", is_flag=True, help="Print only JSON on stdout.")
def export(model_dir: str, fmt_name: str, out: str, quiet: bool, as_json: bool) -> None:
    """Export the model in MODEL_DIR for other runtimes (ONNX: onnxruntime, ...).

    The ONNX graph takes one [N, 1] input per column (double, NaN for missing; strings
    for categorical columns, '' for missing) and returns 'probability' and 'label'.
    Needs the export extra: pip install 'steadyclf[export]'.
    """
    from ..export.onnx_graph import IR_VERSION, ML_OPSET, OPSET, OUTPUTS, save_onnx
    from ..persistence import read_model

    output = Output(as_json=as_json, quiet=quiet)
    if not out.strip():  # it said "cannot write '': Device or resource busy"
        raise ParameterError("--out is empty: give the file to write (e.g. model.onnx)")
    state = read_model(model_dir)
    with writing(out):
        exported = save_onnx(state, out)
    summary = {
        "model": model_dir,
        "out": out,
        "format": fmt_name,
        "opset": {"ai.onnx": OPSET, "ai.onnx.ml": ML_OPSET},
        "ir_version": IR_VERSION,
        "inputs": [
            {"name": n, "type": f"tensor({t})", "shape": ["N", 1]} for n, t in exported.inputs
        ],
        "outputs": list(OUTPUTS),
    }
    output.result(
        summary,
        lambda: (
            f"wrote {out}: ONNX (opset {OPSET}, ai.onnx.ml {ML_OPSET}), "
            f"{len(exported.inputs)} inputs ({names(n for n, _ in exported.inputs)}), "
            f"outputs {', '.join(OUTPUTS)}"
        ),
    )


def inspection(index: Mapping[str, Any], model_dir: str) -> dict[str, Any]:
    """What ``inspect`` reports, from a parsed ``model.json``."""
    training = dict(index.get("training") or {})
    schema = dict(index.get("schema") or {})
    columns = []
    for column in schema.get("columns", []):
        entry = {k: column.get(k) for k in ("name", "role", "dtype")}
        if column.get("reason"):
            entry["reason"] = column["reason"]
        if column.get("read_as_category"):  # a number read as a category too
            entry["read_as_category"] = True
            entry["values"] = column.get("n_values")
        if column.get("role") == "categorical" or column.get("read_as_category"):
            entry["levels"] = len(column.get("levels", []))
            entry["distinct"] = column.get("n_levels")
        if column.get("low") is not None:
            entry["range"] = [column.get("low"), column.get("high")]
        if column.get("role") != "dropped":
            entry["missing"] = column.get("n_missing", 0)
        columns.append(entry)
    classes = (index.get("classes") or {}).get("values")
    return {
        "model": model_dir,
        "format_version": index.get("format_version"),
        "created": index.get("created"),
        "versions": index.get("versions"),
        "classes": classes,
        "positive_class": classes[1] if isinstance(classes, list) and len(classes) == 2 else None,
        "threshold": index.get("threshold"),
        "calibration": index.get("calibration"),
        "architecture": index.get("architecture"),
        "columns": columns,
        "parameters": index.get("parameters"),
        "plan": training.get("plan"),
        "training": {
            k: training.get(k)
            for k in (
                "n_iter",
                "best_epoch",
                "lr",
                "batch_size",
                "weight_decay",
                "validation_fraction",
            )
        }
        | {"data": training.get("data"), "last_epoch": training.get("last_epoch")},
        "validation_metrics": training.get("validation_metrics") or {},
        "metadata": index.get("metadata"),
    }


def format_inspection(report: Mapping[str, Any]) -> str:
    """The inspection for people."""
    versions = report.get("versions") or {}
    arch = report.get("architecture") or {}
    training = report.get("training") or {}
    data = training.get("data") or {}
    lines = [
        f"model {report['model']!r}: steadyclf model format {report['format_version']}, "
        f"created {report.get('created')}",
        "  made with " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"  classes {report['classes']} (positive: {report['positive_class']!r}), "
        f"threshold {fmt(report.get('threshold'))}, calibration "
        f"{(report.get('calibration') or {}).get('method', 'none')}",
        f"  network: {arch.get('n_numeric')} numeric inputs ({arch.get('n_missing')} with a "
        f"missing indicator), {len(arch.get('vocab_sizes') or [])} categorical, hidden "
        f"{tuple(arch.get('hidden') or ())}, {arch.get('activation')}"
        + (", batchnorm" if arch.get("batchnorm") else ""),
        "columns",
    ]
    for column in report["columns"]:
        details = []
        if column.get("read_as_category"):
            details.append(f"integer with {column['values']} values, read as a category too")
        if "levels" in column:
            details.append(f"{column['levels']} of {column['distinct']} levels")
        if "range" in column:
            low, high = column["range"]
            details.append(f"range [{low:.6g}, {high:.6g}]")
        if column.get("missing"):
            details.append(f"{column['missing']} missing")
        if column.get("reason"):
            details.append(column["reason"])
        lines.append(
            f"  {column['name']}: {column['role']} ({column['dtype']})"
            + (f"; {', '.join(details)}" if details else "")
        )
    params = report.get("parameters") or {}
    lines.append("parameters: " + ", ".join(f"{k}={v!r}" for k, v in params.items()))
    plan = report.get("plan") or {}
    if plan:
        lines.append("resolved: " + ", ".join(f"{k}={v!r}" for k, v in plan.items()))
    folds = plan.get("folds") or 1
    epochs = (
        f"{training.get('n_iter')} epochs over {folds} cross-fitted members (median best "
        f"epoch {training.get('best_epoch')})"
        if isinstance(folds, int) and folds > 1
        else f"{training.get('n_iter')} epochs (best {training.get('best_epoch')})"
    )
    lines.append(
        f"training: {epochs}, "
        f"lr {training.get('lr')}, batch size {training.get('batch_size') or 'full'}, "
        f"{data.get('n_train', '?')} training rows, {data.get('n_valid', '?')} held out"
    )
    metrics = report.get("validation_metrics") or {}
    shown = ("roc_auc", "accuracy", "log_loss", "f1")
    if metrics:
        # Small data's numbers are out of fold ("estimate"), not on held-out rows.
        name = "out of fold" if "estimate" in metrics else "validation"
        lines.append(
            f"{name}: " + ", ".join(f"{k} {fmt(metrics.get(k))}" for k in shown if k in metrics)
        )
    else:
        lines.append("validation: none (no rows were held out)")
    return "\n".join(lines)


@cli.command()
@click.argument("model_dir")
@click.option("--quiet", is_flag=True, help="Only errors (the exit code says if it is a model).")
@click.option("--json", "as_json", is_flag=True, help="Print only JSON on stdout.")
def inspect(model_dir: str, quiet: bool, as_json: bool) -> None:
    """Describe the model in MODEL_DIR: format and library versions, columns, parameters,
    training and validation metrics (from model.json; the weights are not loaded)."""
    from ..exceptions import ModelFileError
    from ..persistence import INDEX_FILE, read_index

    index = read_index(model_dir)
    where = f"{str(Path(model_dir) / INDEX_FILE)!r} is corrupted"
    _check_inspected_fields(index, where)
    try:
        report = inspection(index, model_dir)
        text = format_inspection(report)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # A field of another type than steadyclf writes (a hand-edited file).
        raise ModelFileError(f"{where} (a field of an unexpected type: {exc})") from None
    Output(as_json=as_json, quiet=quiet).result(report, lambda: text)


#: The fields of model.json that ``inspect`` reads, and what each must be.
_INSPECTED_OBJECTS = (
    "architecture",
    "calibration",
    "classes",
    "metadata",
    "parameters",
    "schema",
    "training",
    "versions",
)


def _check_inspected_fields(index: Mapping[str, Any], where: str) -> None:
    """Refuse, naming the field, a model.json whose fields ``inspect`` reads are not the
    objects (and lists of objects) steadyclf writes."""
    from ..exceptions import ModelFileError

    for name in _INSPECTED_OBJECTS:
        value = index.get(name)
        if value is not None and not isinstance(value, dict):
            raise ModelFileError(
                f"{where}: field {name!r} is a {type(value).__name__}, not an object"
            )
    columns = (index.get("schema") or {}).get("columns", [])
    if not isinstance(columns, list) or not all(isinstance(c, dict) for c in columns):
        raise ModelFileError(f"{where}: field 'schema.columns' is not a list of objects")
