"""``steadyclf train``: fit a model on a data file and save it.

One path for every kind of data: the file is read into memory, or in passes within a
memory budget (``--stream``; by default for a directory, a glob, under torchrun, and for a
file that would not fit), and the same pipeline trains it with the same defaults
(:meth:`steadyclf.BinaryClassifier.fit_files`). Checkpoints, ``--resume``,
``--lr auto`` and the stall warnings work either way; when the reading is chosen by
size, a note on stderr and the summary say so.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..exceptions import SteadyclfError, TrainingDivergedError, TrainingInterrupted
from . import cli
from .common import (
    Output,
    build_estimator,
    check_query_given,
    estimator_options,
    fmt,
    names,
    negative_positive,
    positive_int,
    training_callbacks,
    writing,
)

if TYPE_CHECKING:
    from ..callbacks import Checkpoint
    from ..estimator import BinaryClassifier
    from ..schema.roles import ColumnInfo

__all__ = ["format_train_summary", "train", "train_summary", "write_model"]

HISTORY_FILE = "history.csv"
TRAINING_PLOT = "training.png"


def _parse_checkpoint_every(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> int | None:
    return None if value is None else positive_int("--checkpoint-every", value)


def write_model(
    clf: BinaryClassifier, out: str, *, metadata: Mapping[str, Any], output: Output
) -> list[str]:
    """Save the model with ``history.csv`` and ``training.png``, all in one atomic rename."""
    import pandas as pd

    from .. import persistence

    written = [persistence.WEIGHTS_FILE, persistence.INDEX_FILE, HISTORY_FILE]

    def add_files(staging: Path) -> None:
        pd.DataFrame(clf.history_).to_csv(staging / HISTORY_FILE, index=False)
        try:
            from ..plots import plot_training

            plot_training(clf.history_, staging / TRAINING_PLOT)
            written.append(TRAINING_PLOT)
        except SteadyclfError as exc:  # matplotlib missing: the model is still useful
            output.note(f"{TRAINING_PLOT} not written: {exc}")

    with writing(out):
        persistence.save(clf.to_state(), out, metadata=metadata, extra_files=add_files)
    return [str(Path(out) / name) for name in written]


def training_checkpoint(
    out: str, *, every: int | None, resume: bool, output: Output, main: bool = True
) -> Checkpoint:
    """The run's checkpoint, in ``OUT.checkpoint`` beside the model directory.

    Written every ``every`` epochs and, in any case, on Ctrl-C; checked before the data
    is read, so that a forgotten ``--resume`` does not overwrite an earlier run.
    """
    from ..callbacks import Checkpoint, check_checkpoint_dir, checkpoint_dir_for

    directory = checkpoint_dir_for(out)
    where = check_checkpoint_dir(directory, resume=resume)
    if where is not None:
        output.note(f"resuming from {where} (checkpoint {str(directory)!r})")
    # Saved as training ends too (by rank 0 alone: the ranks share the directory), so an
    # interruption during calibration or the final write keeps the training.
    return Checkpoint(directory, every=every, resume=resume, at_end=main)


def fit_keeping_work(
    clf: BinaryClassifier,
    data: str,
    target: str,
    options: Mapping[str, Any],
    *,
    checkpoint: Checkpoint,
    out: str,
    metadata: Mapping[str, Any],
    output: Output,
    main: bool,
) -> None:
    """Fit; a diverged run still saves its best model, an interrupted one says how to resume."""
    callbacks = [*(training_callbacks(output) if main else []), checkpoint]
    try:
        clf.fit_files(data, target, callbacks=callbacks, **options)
    except TrainingDivergedError as exc:
        best = exc.estimator
        if best is None:  # no epoch ended with finite weights
            raise TrainingDivergedError(f"{exc}; no model was saved") from None
        if main:
            write_model(best, out, metadata={**metadata, "diverged": str(exc)}, output=output)
        raise TrainingDivergedError(
            f"{exc}; the best model so far (epoch {best.best_epoch_}) was saved to {out!r}"
        ) from None
    except TrainingInterrupted as exc:
        if checkpoint.saved_at is None:  # packed members stopped before a stage ended
            raise TrainingInterrupted(
                "stopped before the first stage of the cross-fitted members ended: nothing "
                "was saved; run the same command again to start over",
                signum=exc.signum,
            ) from None
        raise TrainingInterrupted(
            f"stopped after {checkpoint.saved_at}; checkpoint saved in "
            f"{str(checkpoint.directory)!r}; run the same command with --resume to continue",
            signum=exc.signum,
        ) from None


def keeping_training(exc: KeyboardInterrupt, checkpoint: Checkpoint | None) -> KeyboardInterrupt:
    """An interruption outside the training loop (calibration, the final write) that says
    where the training it did not discard is: the checkpoint saved when training ended."""
    if isinstance(exc, TrainingInterrupted) or checkpoint is None or checkpoint.saved_at is None:
        return exc
    return TrainingInterrupted(
        f"interrupted after {checkpoint.saved_at} was trained; checkpoint saved in "
        f"{str(checkpoint.directory)!r}; run the same command with --resume to finish",
        signum=getattr(exc, "signum", 2),
    )


def report_stalls(clf: BinaryClassifier, output: Output) -> None:
    """Print what the stall detector saw (see :class:`~steadyclf.train.stall.StallDetector`)."""
    for w in clf.warnings_:
        resolved = w.get("resolved_epoch")
        later = f" (training got past it by epoch {resolved})" if resolved is not None else ""
        output.warn(f"epoch {w['epoch']}: {w['message']}{later}")


def train_summary(
    clf: BinaryClassifier, data: str, target: str, out: str, seconds: float, files: list[str]
) -> dict[str, Any]:
    """What training did, as JSON-friendly facts."""
    columns = clf.encoder_.columns_
    info = clf.data_
    return {
        "model": out,
        "data": data,
        "target": target,
        "rows": info["n_rows"],
        "dropped_target_rows": int(info["dropped_target_rows"]),
        "reading": {
            "streamed": info["streamed"],
            "why": info["why"],
            "rows_in_memory": info["rows_in_memory"],
            "processes": info["processes"],
            "steps_per_epoch": info["steps_per_epoch"],
        },
        "plan": clf.plan_,
        "classes": clf.classes_.tolist(),
        "positive": clf.positive_class_,
        "epochs": clf.n_iter_,
        "best_epoch": clf.best_epoch_,
        "seconds": round(seconds, 3),
        "lr": clf.lr_,
        "batch_size": clf.batch_size_ or "full",
        "threshold": clf.threshold_,
        "threshold_metric": clf.threshold_metric,
        "weight_decay": getattr(clf, "weight_decay_", None),
        "validation_fraction": getattr(clf, "validation_fraction_", None),
        "validation": clf.validation_metrics_,
        "weights": info.get("weights"),
        "cross_fit": info.get("cross_fit"),
        "normalize": clf.normalize,
        "numeric_embedding": clf.numeric_embedding_,
        "embedded": [clf.encoder_.numeric_infos[i].name for i in clf.module_.arch.periodic],
        "calibration": clf.calibration_,
        "columns": [c.to_dict() | {"summary": c.describe()} for c in columns],
        "files": files,
    }


def format_train_summary(summary: Mapping[str, Any], columns: list[ColumnInfo]) -> str:
    """The training summary for people."""
    used = [c for c in columns if c.role != "dropped"]
    batch = summary["batch_size"]
    crossed = summary.get("cross_fit")
    how = f"{'full batch' if batch == 'full' else f'batch {batch}'}, lr {summary['lr']:.3g}"
    if crossed:
        candidates = ", ".join(crossed["out_of_fold_log_loss"])
        what = (
            f"{len(crossed['best_epochs'])} cross-fitted networks, {summary['epochs']} epochs "
            f"in all, {summary['seconds']:.1f} s ({how}, median best epoch "
            f"{summary['best_epoch']}, weight decay {summary['weight_decay']:.3g} chosen "
            f"from {candidates} by out-of-fold log loss)"
        )
    else:
        members = int(summary["plan"].get("members") or 1)
        together = f"{members} networks trained together, " if members > 1 else ""
        what = (
            f"{together}{summary['epochs']} epochs, {summary['seconds']:.1f} s ({how}, best "
            f"epoch {summary['best_epoch']}, weight decay {summary['weight_decay']:.3g})"
        )
    rows = f"{summary['rows']} rows"
    held = summary["plan"].get("n_valid") or 0
    if held:  # rows held out to stop on, as the validation line below says
        rows += f" ({summary['plan'].get('n_train')} to train on, {held} held out)"
    lines = [
        f"trained {summary['model']!r} on {rows} and {len(used)} columns: {what}",
        "classes: {!r} (0), {!r} (1, positive)".format(*negative_positive(summary)),
    ]
    reading = summary["reading"]
    if reading["streamed"]:
        lines.append(
            f"data read in passes ({reading['why']}); training rows "
            + ("held in memory once encoded" if reading["rows_in_memory"] else "streamed")
        )
    weights, class_weight = summary.get("weights"), summary["plan"].get("class_weight")
    if weights or class_weight:
        lines.append(describe_weights(weights, class_weight))
    valid = summary["validation"]
    if valid:
        name = "out of fold" if crossed else "validation"
        lines.append(
            f"{name} ({valid['n']} rows{', weighted' if 'sum_of_weights' in valid else ''}, "
            f"threshold {summary['threshold']:.3f}): "
            f"accuracy {fmt(valid['accuracy'])}, balanced accuracy {fmt(valid['balanced_accuracy'])}, "
            f"ROC AUC {fmt(valid['roc_auc'])}, log loss {fmt(valid['log_loss'])}"
        )
    elif not summary["plan"].get("early_stopping", True):
        lines.append(
            "validation: none (early stopping off: no rows are held out, as "
            "--validation-fraction holds rows out to stop on)"
        )
    elif summary["reading"]["processes"] > 1 and summary["validation_fraction"] == 0:
        lines.append(
            "validation: none (small data under torchrun: the "
            f"{summary['reading']['processes']} processes train one network together, without the cross-fitted members, out-of-fold "
            "choices and calibration of one process; --validation-fraction holds rows out)"
        )
    else:
        lines.append(
            "validation: none (small data, too few rows of a class to cross-fit; --validation-fraction holds rows out)"
            if summary["validation_fraction"] == 0 and summary["batch_size"] == "full"
            else "validation: none (too few rows)"
        )
    from ..calibration import describe_calibration  # scipy: not for `steadyclf --help`

    lines.append(f"calibration: {describe_calibration(summary['calibration'])}")
    lines.append("preprocessing:")
    plain = [c for c in columns if c.role == "numeric" and not c.n_missing]
    plain = [c for c in plain if not c.read_as_category]  # those are described below
    scaling = {"robust": "robust-scaled", "standardize": "standardised"}
    if plain:
        how = scaling.get(summary["normalize"], "as is")
        lines.append(f"  numeric, {how}: {names([c.name for c in plain])}")
    lines += [f"  {c.describe()}" for c in columns if c not in plain]
    if summary.get("embedded"):
        lines.append(f"  periodic embeddings (continuous inputs): {names(summary['embedded'])}")
    lines.append(f"wrote {', '.join(summary['files'])}")
    return "\n".join(lines)


@cli.command()
@click.argument("data")
@click.option("--target", required=True, help="Column to predict (two distinct values).")
@click.option("--out", required=True, help="Model directory to write.")
@click.option("--drop-missing-target", is_flag=True, help="Drop rows whose target is missing.")
@click.option(
    "--weight",
    metavar="COLUMN",
    help="Column of row weights (numbers >= 0; 0 leaves a row out), never a feature.",
)
@click.option(
    "--stream",
    is_flag=True,
    help="Read DATA in passes, in bounded memory (automatic for a directory or glob, "
    "for data larger than --memory-budget, and under torchrun); training is the same.",
)
@click.option(
    "--memory-budget", help="Memory for data held at once, e.g. 200MB [half the free RAM]."
)
@click.option(
    "--checkpoint-every",
    callback=_parse_checkpoint_every,
    metavar="K",
    help="Save a checkpoint every K epochs in OUT.checkpoint (Ctrl-C always saves one).",
)
@click.option("--resume", is_flag=True, help="Continue the run saved in OUT.checkpoint.")
@click.option(
    "--query",
    metavar="SQL",
    help="Train on the rows of this query; DATA is then the database: a DuckDB file, "
    "'duckdb:' (queries over files) or a postgresql:// URI. Add ORDER BY a unique key "
    "for the same model on every run (docs/sql.md).",
)
@click.option(
    "--mlflow",
    "use_mlflow",
    is_flag=True,
    help="Log the run to MLflow (MLFLOW_TRACKING_URI): parameters, plan, history, "
    "validation metrics, stall warnings, report and model (docs/mlflow.md).",
)
@estimator_options
@click.option("--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--json", "as_json", is_flag=True, help="Print only a JSON summary on stdout.")
def train(
    data: str,
    target: str,
    out: str,
    drop_missing_target: bool,
    weight: str | None,
    stream: bool,
    memory_budget: str | None,
    checkpoint_every: int | None,
    resume: bool,
    query: str | None,
    use_mlflow: bool,
    quiet: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Train a model on DATA (.csv, .csv.gz, .tsv, .parquet; a directory or glob of them
    when streaming; a database with --query) and save it to --out. Under torchrun, every
    process trains on its share of the rows and rank 0 writes the model."""
    from ..callbacks import remove_checkpoint
    from ..io.atomic import exclusive_lock
    from ..parallel import init_from_env, peer_failure, shutdown
    from ..persistence import check_model_target

    output = Output(as_json=as_json, quiet=quiet)
    clf = build_estimator(options)
    check_model_target(out)
    shown = data_name(data, query)
    context = init_from_env(clf.device)
    main = context is None or context.is_main
    tracking = None
    checkpoint = None
    stack = contextlib.ExitStack()
    try:
        if use_mlflow and main:
            from ..mlflow import CliRun

            # Opened first: a tracking store that cannot be used stops the command before
            # anything is trained or written.
            tracking = CliRun(data=shown, query=query, target=target)
        if main:
            # One run at a time writes OUT and OUT.checkpoint; taking the lock also finds
            # a folder that cannot be written, before any training.
            stack.enter_context(exclusive_lock(out, wait=False))
        checkpoint = training_checkpoint(
            out,
            every=checkpoint_every,
            resume=resume,
            output=output if main else Output(quiet=True),
            main=main,
        )
        metadata: dict[str, Any] = {"target": target, "data": shown, "weight": weight}
        if query is not None:
            metadata["query"] = query
        started = time.perf_counter()
        fit_keeping_work(
            clf,
            data,
            target,
            {
                "stream": True if stream else None,
                "memory_budget": memory_budget,
                "drop_missing_target": drop_missing_target,
                "context": context,
                "weight": weight,
                "query": query,
            },
            checkpoint=checkpoint,
            out=out,
            metadata=metadata,
            output=output,
            main=main,
        )
        seconds = time.perf_counter() - started
        if main:  # rank 0 writes the model and reports
            report_reading(clf, output)
            report_stalls(clf, output)
            metadata |= {"rows": clf.data_["n_rows"], "reading": clf.data_}
            files = write_model(clf, out, metadata=metadata, output=output)
            # The model holds the work now. Said only of a checkpoint the user asked for:
            # the one saved as training ended exists for the moments until this line.
            if remove_checkpoint(checkpoint.directory) and (checkpoint_every or resume):
                output.note(f"removed checkpoint {str(checkpoint.directory)!r}")
            summary = train_summary(clf, shown, target, out, seconds, files)
            output.result(summary, lambda: format_train_summary(summary, clf.encoder_.columns_))
            if tracking is not None:
                # After the summary: a run that cannot be logged fails the command (the
                # run marked failed) once the model written is reported.
                tracking.log(clf, out, data, output=output)
        if context is not None:
            # Every process leaves the group together: a process that tears down gloo while
            # another is still connected was seen to abort ("terminate called without an
            # active exception", SIGABRT) on a CI machine.
            context.barrier()
    except BaseException as exc:
        if tracking is not None:
            tracking.end(failed=True)
        if isinstance(exc, KeyboardInterrupt):
            raise keeping_training(exc, checkpoint) from None
        if main and checkpoint is not None and not (checkpoint_every or resume):
            # A failed run (a full disk, bad data) leaves what it found: the checkpoint
            # saved as training ended is kept for interruptions only.
            remove_checkpoint(checkpoint.directory)
        lost = None if context is None else peer_failure(exc, context)
        if lost is not None:
            raise lost from None
        raise
    else:
        if tracking is not None:
            tracking.end(failed=False)
    finally:
        stack.close()
        shutdown()


def data_name(data: str, query: str | None) -> str:
    """DATA as summaries and the model's metadata show it: a database URI without its
    password; a DuckDB file or files as given."""
    check_query_given(data, query, "to train on")
    if query is None:
        return str(data)
    from ..io.sql import redact

    return redact(data)


def describe_weights(weights: Mapping[str, Any] | None, class_weight: Any) -> str:
    """One line on the row and class weights, e.g. ``weights: weight column 'w', sum 954
    (from 1 to 3), 136 rows of weight 0 left out``."""
    parts = []
    if weights:
        text = f"{weights['weights']}, sum {weights['sum']:.6g}"
        if weights["min"] is not None:
            text += f" (from {weights['min']:.3g} to {weights['max']:.3g})"
        if weights["zero_weight_rows"]:
            text += f", {weights['zero_weight_rows']} rows of weight 0 left out"
        if not weights["used"]:
            text += " (all equal: they change nothing)"
        parts.append(text)
    if class_weight:
        parts.append(f"class weights {class_weight[0]:.3g} (0) and {class_weight[1]:.3g} (1)")
    return "weights: " + "; ".join(parts)


def report_reading(clf: BinaryClassifier, output: Output) -> None:
    """Say how the data was read when it was read in passes, and why."""
    from ..io.sources import memory_size_text

    info = clf.data_
    dropped = int(info["dropped_target_rows"])
    if dropped:
        first = ", ".join(map(str, info["first_dropped_target_rows"]))
        output.note(
            f"dropped {dropped} row{'s' if dropped > 1 else ''} with a missing target (first: {first})"
        )
    if info["streamed"]:
        where = "held in memory once encoded" if info["rows_in_memory"] else "streamed each epoch"
        output.note(
            f"read the data in passes ({info['why']}), {info['n_rows']:,} rows on "
            f"{info['processes']} process(es), within a "
            f"{memory_size_text(info['memory_budget'])} budget; training rows {where}; the "
            "rows, statistics and batches are those of a fit in memory (held-out rows beyond "
            "an eighth of the budget are subsampled to score epochs on)"
        )
