"""Commands that train and use models: train, predict, evaluate.

Each command is a short sequence of small functions (read the data, build the
estimator, fit, write the outputs, report), so that new options can replace or wrap one
step. Conventions shared by every command:

- results go to stdout (``--json``: one JSON document and nothing else); notes,
  warnings and the progress bar go to stderr;
- ``--quiet`` keeps only warnings and errors;
- nothing is written until the work succeeded, and every file is written atomically
  (temporary name, then rename), so a failed command leaves no partial output.
"""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .. import persistence
from ..checkpoint import Checkpoint, check_checkpoint_dir, checkpoint_dir_for, remove_checkpoint
from ..estimator import BinaryClassifier
from ..evaluation import THRESHOLD_METRICS, binary_metrics, labels_to_binary
from ..exceptions import (
    DataError,
    ParameterError,
    SteadyclfError,
    TrainingDivergedError,
    TrainingInterrupted,
)
from ..io import read_table, table_format, write_table
from ..network import ACTIVATIONS, NORMALIZATIONS
from ..tabular import ColumnInfo, split_target
from ..training import OPTIMIZERS, SCHEDULES, EpochRecord, Trainer
from . import cli

__all__ = [
    "Output",
    "ProgressBar",
    "StreamedData",
    "TrainingData",
    "build_estimator",
    "estimator_options",
    "evaluate",
    "load_training_data",
    "predict",
    "streaming_budget",
    "train",
    "train_streamed",
    "training_callbacks",
    "write_model",
]

HISTORY_FILE = "history.csv"
TRAINING_PLOT = "training.png"
EVALUATION_FILES = ("metrics.json", "roc.png", "precision_recall.png", "calibration.png")


# -- messages --------------------------------------------------------------------------------
@dataclass
class Output:
    """Where a command's messages go; with ``--json`` stdout holds only the JSON result."""

    as_json: bool = False
    quiet: bool = False
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        """Something the user may want to know (stderr, hidden by ``--quiet``)."""
        self.notes.append(text)
        if not self.quiet:
            click.echo(f"steadyclf: note: {text}", err=True)

    def warn(self, text: str) -> None:
        """Something that may make results wrong (stderr, always)."""
        self.warnings.append(text)
        click.echo(f"steadyclf: warning: {text}", err=True)

    def result(self, summary: Mapping[str, Any], text: Callable[[], str]) -> None:
        """Print the command's result: ``summary`` as JSON, or ``text()`` for people."""
        if self.as_json:
            document = {**summary, "notes": self.notes, "warnings": self.warnings}
            click.echo(json.dumps(persistence.to_jsonable(document), indent=2, allow_nan=False))
        elif not self.quiet:
            click.echo(text())


@contextmanager
def _writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an OS error while writing ``path`` into a one-line error."""
    try:
        yield
    except SteadyclfError:
        raise
    except OSError as exc:
        raise DataError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None


def _fmt(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _names(values: Any, limit: int = 8) -> str:
    values = [str(v) for v in values]
    shown = ", ".join(values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


# -- estimator options -----------------------------------------------------------------------
def _parse_hidden(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    if value.strip().lower() in ("", "none", "0"):
        return ()
    try:
        sizes = tuple(int(v) for v in value.split(","))
    except ValueError:
        sizes = ()
    if not sizes or any(s <= 0 for s in sizes):
        raise ParameterError(
            f"--hidden must be positive layer sizes separated by commas (e.g. 64,32) or 'none'; got {value!r}"
        )
    return sizes


def _parse_lr(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None or value == "auto":
        return value
    return _positive_float("--lr", value, "a positive number or 'auto'")


def _parse_batch_size(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None or value == "auto":
        return value
    if value == "full":
        return "full"
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size <= 0:
        raise ParameterError(
            f"--batch-size must be a positive integer, 'auto' or 'full'; got {value!r}"
        )
    return size


def _parse_checkpoint_every(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> int | None:
    if value is None:
        return None
    try:
        every = int(value)
    except ValueError:
        every = 0
    if every <= 0:
        raise ParameterError(f"--checkpoint-every must be a positive integer; got {value!r}")
    return every


def _parse_validation_fraction(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> Any:
    if value is None or value == "auto":
        return value
    return _float_option(
        "--validation-fraction", value, "in [0, 1) or 'auto'", lambda x: 0 <= x < 1
    )


def _parse_weight_decay(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None or value == "auto":
        return value
    return _float_option(
        "--weight-decay", value, "a non-negative number or 'auto'", lambda x: 0 <= x < math.inf
    )


def _parse_pos_weight(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None or value == "balanced":
        return value
    return _positive_float("--pos-weight", value, "'balanced' or a positive number")


def _positive_float(option: str, value: str, expected: str) -> float:
    return _float_option(option, value, expected, lambda x: 0 < x < math.inf)


def _float_option(option: str, value: str, expected: str, ok: Callable[[float], bool]) -> float:
    """``value`` as a float for which ``ok`` holds (NaN never does), or a one-line error."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not ok(number):
        raise ParameterError(f"{option} must be {expected}; got {value!r}")
    return number


def _parse_names(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    names = [n.strip() for v in value for n in v.split(",") if n.strip()]
    return names or None


#: Options that map one to one onto ``BinaryClassifier`` parameters (kebab case).
ESTIMATOR_OPTIONS: list[Callable[[Any], Any]] = [
    click.option("--hidden", callback=_parse_hidden, help="Hidden layer sizes, e.g. 64,32."),
    click.option("--activation", type=click.Choice(ACTIVATIONS)),
    click.option("--normalize", type=click.Choice(NORMALIZATIONS), help="Input scaling."),
    click.option("--optimizer", type=click.Choice(OPTIMIZERS)),
    click.option("--lr", callback=_parse_lr, help="Learning rate, or 'auto'."),
    click.option("--schedule", type=click.Choice(SCHEDULES), help="Learning-rate schedule."),
    click.option("--max-epochs", type=int),
    click.option("--batch-size", callback=_parse_batch_size, help="Rows per step, 'auto', 'full'."),
    click.option("--early-stopping/--no-early-stopping", default=None),
    click.option(
        "--validation-fraction",
        callback=_parse_validation_fraction,
        metavar="FRACTION|auto",
        help="Rows held out for early stopping, or 'auto' (none on small data).",
    ),
    click.option("--patience", type=int, help="Epochs without improvement before stopping."),
    click.option("--pos-weight", callback=_parse_pos_weight, help="'balanced' or a number."),
    click.option(
        "--weight-decay",
        callback=_parse_weight_decay,
        metavar="DECAY|auto",
        help="L2 penalty, or 'auto' (1e-2 on small data, else 0).",
    ),
    click.option(
        "--random-state", type=int, default=0, show_default=True, help="Seed (reproducible)."
    ),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"])),
    click.option(
        "--threshold-metric",
        type=click.Choice(THRESHOLD_METRICS),
        help="Tune the decision threshold on the validation split.",
    ),
    click.option("--positive", help="The positive class (a value of the target)."),
    click.option(
        "--categorical",
        multiple=True,
        callback=_parse_names,
        help="Columns to treat as categories.",
    ),
    click.option(
        "--numeric", multiple=True, callback=_parse_names, help="Columns to treat as numbers."
    ),
    click.option("--drop", multiple=True, callback=_parse_names, help="Columns to ignore."),
]


def estimator_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add every :data:`ESTIMATOR_OPTIONS` option to a command."""
    for option in reversed(ESTIMATOR_OPTIONS):
        func = option(func)
    return func


def build_estimator(options: Mapping[str, Any]) -> BinaryClassifier:
    """A ``BinaryClassifier`` from the options given (the others keep their defaults).

    Parameters are validated here, so a bad value fails before any data is read.
    """
    allowed = BinaryClassifier().get_params(deep=False)
    params = {k: v for k, v in options.items() if k in allowed and v is not None}
    if params.get("batch_size") == "full":
        params["batch_size"] = None
    clf = BinaryClassifier(**params)
    clf._validate_params_()
    return clf


# -- training --------------------------------------------------------------------------------
@dataclass
class TrainingData:
    """Features and target read from a file, with what was removed on the way."""

    X: pd.DataFrame
    y: pd.Series
    source: str
    target: str
    dropped_rows: NDArray[np.int64]

    @property
    def rows(self) -> int:
        """Rows used for training."""
        return len(self.X)


@dataclass
class StreamedData:
    """Training data read in passes (``--stream``): only its size is known up front."""

    source: str
    target: str
    rows: int
    dropped_rows: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))


def load_training_data(
    source: str, target: str, *, drop_missing_target: bool, output: Output
) -> TrainingData:
    """Read ``source`` and split off the ``target`` column."""
    frame = read_table(source)
    X, y, dropped = split_target(frame, target, drop_missing=drop_missing_target)
    if dropped.size:
        output.note(
            f"dropped {dropped.size} row{'s' if dropped.size > 1 else ''} with a missing target (first: {', '.join(map(str, dropped[:5].tolist()))})"
        )
    return TrainingData(X, y, str(source), target, dropped)


class ProgressBar:
    """A tqdm progress bar over epochs, as a training callback (on stderr)."""

    def __init__(self, **tqdm_options: Any) -> None:
        self.tqdm_options = tqdm_options
        self._bar: Any = None

    def on_train_setup(self, trainer: Trainer) -> None:
        """Nothing to restore."""

    def on_train_begin(self, trainer: Trainer) -> None:
        """Open the bar, sized to the epoch budget."""
        from tqdm import tqdm

        options = {"unit": "epoch", "file": sys.stderr, "leave": False, **self.tqdm_options}
        self._bar = tqdm(total=trainer.config.max_epochs, **options)

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        """Advance one epoch and show the losses."""
        if self._bar is None:
            return
        losses = {"loss": f"{record['train_loss']:.4f}"}
        if "valid_loss" in record:
            losses["valid"] = f"{record['valid_loss']:.4f}"
        self._bar.set_postfix(losses, refresh=False)
        self._bar.update(1)

    def on_train_end(self, trainer: Trainer) -> None:
        """Close the bar."""
        self.on_train_exit(trainer)

    def on_train_exit(self, trainer: Trainer) -> None:
        """Close the bar, also when training failed."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def training_callbacks(output: Output) -> list[Any]:
    """Callbacks for a CLI fit: a progress bar when stderr is a terminal."""
    show = not (output.quiet or output.as_json) and sys.stderr.isatty()
    return [ProgressBar()] if show else []


def write_model(
    clf: BinaryClassifier, out: str, *, metadata: Mapping[str, Any], output: Output
) -> list[str]:
    """Save the model with ``history.csv`` and ``training.png``, all in one atomic rename."""
    written = [persistence.WEIGHTS_FILE, persistence.INDEX_FILE, HISTORY_FILE]

    def add_files(staging: Path) -> None:
        pd.DataFrame(clf.history_).to_csv(staging / HISTORY_FILE, index=False)
        try:
            from ..plots import plot_training

            plot_training(clf.history_, staging / TRAINING_PLOT)
            written.append(TRAINING_PLOT)
        except SteadyclfError as exc:  # matplotlib missing: the model is still useful
            output.note(f"{TRAINING_PLOT} not written: {exc}")

    with _writing(out):
        persistence.save(clf, out, metadata=metadata, extra_files=add_files)
    return [str(Path(out) / name) for name in written]


def training_checkpoint(out: str, *, every: int | None, resume: bool, output: Output) -> Checkpoint:
    """The run's checkpoint, in ``OUT.checkpoint`` beside the model directory.

    Written every ``every`` epochs and, in any case, on Ctrl-C; checked before the data
    is read, so that a forgotten ``--resume`` does not overwrite an earlier run.
    """
    directory = checkpoint_dir_for(out)
    epoch = check_checkpoint_dir(directory, resume=resume)
    if epoch is not None:
        output.note(f"resuming from epoch {epoch} (checkpoint {str(directory)!r})")
    return Checkpoint(directory, every=every, resume=resume)


def fit_keeping_work(
    clf: BinaryClassifier,
    table: TrainingData,
    callbacks: list[Any],
    *,
    checkpoint: Checkpoint,
    out: str,
    metadata: Mapping[str, Any],
    output: Output,
) -> None:
    """Fit; a diverged run still saves its best model, an interrupted one says how to resume."""
    try:
        clf.fit(table.X, table.y, callbacks=[*callbacks, checkpoint])
    except TrainingDivergedError as exc:
        if not hasattr(clf, "module_"):  # no epoch ended with finite weights
            raise TrainingDivergedError(f"{exc}; no model was saved") from None
        write_model(clf, out, metadata={**metadata, "diverged": str(exc)}, output=output)
        raise TrainingDivergedError(
            f"{exc}; the best model so far (epoch {clf.best_epoch_}) was saved to {out!r}"
        ) from None
    except TrainingInterrupted:
        raise TrainingInterrupted(
            f"stopped after epoch {checkpoint.saved_epoch}; checkpoint saved in "
            f"{str(checkpoint.directory)!r}; run the same command with --resume to continue"
        ) from None


def report_stalls(clf: BinaryClassifier, output: Output) -> None:
    """Print what the stall detector saw (see :class:`~steadyclf.diagnostics.StallDetector`)."""
    for w in clf.warnings_:
        resolved = w.get("resolved_epoch")
        later = f" (training got past it by epoch {resolved})" if resolved is not None else ""
        output.warn(f"epoch {w['epoch']}: {w['message']}{later}")


def train_summary(
    clf: BinaryClassifier,
    data: TrainingData | StreamedData,
    out: str,
    seconds: float,
    files: list[str],
) -> dict[str, Any]:
    """What training did, as JSON-friendly facts."""
    columns = clf.encoder_.columns_
    return {
        "model": out,
        "data": data.source,
        "target": data.target,
        "rows": data.rows,
        "dropped_target_rows": int(data.dropped_rows.size),
        "classes": clf.classes_.tolist(),
        "positive": clf.classes_[1],
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
        "columns": [c.to_dict() | {"summary": c.describe()} for c in columns],
        "files": files,
    }


def format_train_summary(summary: Mapping[str, Any], columns: list[ColumnInfo]) -> str:
    """The training summary for people."""
    used = [c for c in columns if c.role != "dropped"]
    batch = summary["batch_size"]
    lines = [
        f"trained {summary['model']!r} on {summary['rows']} rows and {len(used)} columns in "
        f"{summary['epochs']} epochs, {summary['seconds']:.1f} s (best epoch {summary['best_epoch']}, "
        f"lr {summary['lr']:.3g}, {'full batch' if batch == 'full' else f'batch {batch}'}, "
        f"weight decay {summary['weight_decay']:.3g})",
        f"classes: {summary['classes'][0]!r} (0), {summary['classes'][1]!r} (1, positive)",
    ]
    valid = summary["validation"]
    if valid:
        lines.append(
            f"validation ({valid['n']} rows, threshold {summary['threshold']:.3f}): "
            f"accuracy {_fmt(valid['accuracy'])}, balanced accuracy {_fmt(valid['balanced_accuracy'])}, "
            f"ROC AUC {_fmt(valid['roc_auc'])}, log loss {_fmt(valid['log_loss'])}"
        )
    else:
        lines.append(
            "validation: none (small data: every row trained; --validation-fraction holds rows out)"
            if summary["validation_fraction"] == 0 and summary["batch_size"] == "full"
            else "validation: none (too few rows or early stopping off)"
        )
    lines.append("preprocessing:")
    plain = [c.name for c in columns if c.role == "numeric" and not c.n_missing]
    if plain:
        lines.append(f"  numeric, standardised: {_names(plain)}")
    lines += [f"  {c.describe()}" for c in columns if not (c.role == "numeric" and not c.n_missing)]
    lines.append(f"wrote {', '.join(summary['files'])}")
    return "\n".join(lines)


@cli.command()
@click.argument("data")
@click.option("--target", required=True, help="Column to predict (two distinct values).")
@click.option("--out", required=True, help="Model directory to write.")
@click.option("--drop-missing-target", is_flag=True, help="Drop rows whose target is missing.")
@click.option(
    "--stream",
    is_flag=True,
    help="Read DATA in passes, in bounded memory (automatic for a directory or glob, "
    "for data larger than --memory-budget, and under torchrun).",
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
@estimator_options
@click.option("--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--json", "as_json", is_flag=True, help="Print only a JSON summary on stdout.")
def train(
    data: str,
    target: str,
    out: str,
    drop_missing_target: bool,
    stream: bool,
    memory_budget: str | None,
    checkpoint_every: int | None,
    resume: bool,
    quiet: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Train a model on DATA (.csv, .csv.gz, .tsv, .parquet; a directory or glob of them
    when streaming) and save it to --out. Under torchrun, every process trains on its
    share of the rows and rank 0 writes the model."""
    output = Output(as_json=as_json, quiet=quiet)
    clf = build_estimator(options)
    persistence.check_model_target(out)
    budget = streaming_budget(data, stream=stream, memory_budget=memory_budget, output=output)
    if budget is not None:
        if drop_missing_target:
            raise ParameterError(
                "--drop-missing-target is not available when streaming; remove those rows from the data first"
            )
        if checkpoint_every is not None or resume:
            raise ParameterError(
                "--checkpoint-every and --resume are not available when streaming (--stream)"
            )
        train_streamed(clf, data, target, out, budget=budget, output=output)
        return
    checkpoint = training_checkpoint(out, every=checkpoint_every, resume=resume, output=output)
    table = load_training_data(data, target, drop_missing_target=drop_missing_target, output=output)
    metadata = {"target": target, "data": str(data), "rows": len(table.X)}
    started = time.perf_counter()
    fit_keeping_work(
        clf,
        table,
        training_callbacks(output),
        checkpoint=checkpoint,
        out=out,
        metadata=metadata,
        output=output,
    )
    seconds = time.perf_counter() - started
    report_stalls(clf, output)
    files = write_model(clf, out, metadata=metadata, output=output)
    if remove_checkpoint(checkpoint.directory):  # the model holds the work now
        output.note(f"removed checkpoint {str(checkpoint.directory)!r}")
    summary = train_summary(clf, table, out, seconds, files)
    output.result(summary, lambda: format_train_summary(summary, clf.encoder_.columns_))


def streaming_budget(
    data: str, *, stream: bool, memory_budget: str | None, output: Output
) -> int | None:
    """The memory budget when DATA is to be read in passes; ``None`` to read it at once.

    Streaming is chosen by ``--stream``, under torchrun, for a directory or a glob, and
    for a file whose in-memory size would exceed the budget.
    """
    from ..distributed import torchrun_environment
    from ..streaming import (
        DataSource,
        default_memory_budget,
        estimate_in_memory_bytes,
        parse_memory_size,
    )

    budget = default_memory_budget() if memory_budget is None else parse_memory_size(memory_budget)
    if stream or torchrun_environment() is not None or Path(data).is_dir():
        return budget
    if not Path(data).is_file():
        return budget if glob.has_magic(data) else None  # read_table names a missing file
    table_format(data)  # an unknown file type is refused here, as in memory
    try:
        need = estimate_in_memory_bytes(DataSource.open(data))
    except DataError:
        return None  # an unreadable file: the in-memory reader says what is wrong
    if need <= budget:
        return None
    output.note(
        f"{data} needs about {need / 1e6:,.0f} MB in memory, more than the {budget / 1e6:,.0f} MB budget: reading it in passes (--stream)"
    )
    return budget


def train_streamed(
    clf: BinaryClassifier, data: str, target: str, out: str, *, budget: int, output: Output
) -> None:
    """``train`` for data read in passes, on one process or on each of torchrun's."""
    from ..distributed import init_from_env, shutdown
    from ..streaming import fit_streaming

    context = init_from_env(clf.device)
    main = context is None or context.is_main
    try:
        started = time.perf_counter()
        callbacks = training_callbacks(output) if main else []
        fit_streaming(clf, data, target, memory_budget=budget, callbacks=callbacks, context=context)
        seconds = time.perf_counter() - started
        if not main:
            return  # rank 0 writes the model and reports
        info = clf.streaming_
        output.note(
            f"streamed {info['n_rows']:,} rows on {info['processes']} process(es) within a {budget / 1e6:,.0f} MB budget ({info['steps_per_epoch']} steps per epoch and process)"
        )
        table = StreamedData(str(data), target, int(info["n_rows"]))
        metadata = {"target": target, "data": str(data), "rows": table.rows, "streaming": info}
        files = write_model(clf, out, metadata=metadata, output=output)
        summary = train_summary(clf, table, out, seconds, files) | {"streaming": info}
        output.result(summary, lambda: format_train_summary(summary, clf.encoder_.columns_))
    finally:
        shutdown()


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
        output.note(f"ignoring {len(extra)} column(s) the model does not know: {_names(extra)}")
    x_num, _ = encoder.transform(frame)
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
    names = getattr(clf, "feature_names_in_", None)
    if names is not None:
        return clf.predict_proba(frame.reindex(columns=list(names)))[:, 1]
    columns = [f"x{j}" for j in range(clf.n_features_in_)]  # fitted on an array
    return clf.predict_proba(frame.reindex(columns=columns).to_numpy(dtype=np.float64))[:, 1]


def _threshold(clf: BinaryClassifier, threshold: float | None) -> float:
    if threshold is None:
        return float(clf.threshold_)
    if not 0.0 <= threshold <= 1.0:
        raise ParameterError(f"--threshold must be between 0 and 1; got {threshold}")
    return float(threshold)


def _model_metadata(model_dir: str) -> dict[str, Any]:
    metadata = persistence.read_index(model_dir).get("metadata")
    return metadata if isinstance(metadata, dict) else {}


@cli.command()
@click.argument("model_dir")
@click.argument("data")
@click.option("--out", help="File for the predictions (.csv, .csv.gz, .tsv, .parquet).")
@click.option("--threshold", type=float, help="Decision threshold (default: the model's).")
@click.option("--id", "id_column", help="Column to copy into the output to identify rows.")
@click.option("--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--json", "as_json", is_flag=True, help="Print only JSON on stdout.")
def predict(
    model_dir: str,
    data: str,
    out: str | None,
    threshold: float | None,
    id_column: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Write the probability and predicted label of each row of DATA.

    Columns: [ID], probability (of the positive class), label. To --out, or CSV on stdout.
    """
    output = Output(as_json=as_json, quiet=quiet)
    if out is not None:
        table_format(out)  # an unknown suffix fails before any work
    clf = persistence.load(model_dir)
    cut = _threshold(clf, threshold)
    frame = read_table(data)
    if id_column is not None and id_column not in frame.columns:
        raise DataError(
            f"--id column {id_column!r} is not in the data; columns: {_names(frame.columns, 20)}"
        )
    target = _model_metadata(model_dir).get("target")
    known = {c for c in (id_column, target) if c}
    check_inputs(clf, frame, known=known, output=output)
    proba = predict_probabilities(clf, frame)
    result = pd.DataFrame({"probability": proba, "label": clf.classes_[(proba > cut).astype(int)]})
    if id_column is not None:
        result.insert(0, id_column, frame[id_column].to_numpy())
    if out is not None:
        with _writing(out):
            write_table(result, out)
    summary = {"model": model_dir, "data": data, "rows": len(result), "threshold": cut}
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
    from ..plots import plot_calibration, plot_precision_recall, plot_roc

    target = Path(out_dir)
    if target.exists() and not target.is_dir():
        raise DataError(f"--out {out_dir!r} is a file; give a directory")
    with _writing(out_dir):
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".evaluate-", dir=target))
        try:
            metrics_text = json.dumps(persistence.to_jsonable(report), indent=2, allow_nan=False)
            (staging / "metrics.json").write_text(metrics_text + "\n", encoding="utf-8")
            two_classes = np.unique(y).size == 2
            if two_classes:  # curves need both classes
                plot_roc(y, proba, staging / "roc.png")
                plot_precision_recall(y, proba, staging / "precision_recall.png")
            plot_calibration(y, proba, staging / "calibration.png")
            names = [n for n in EVALUATION_FILES if (staging / n).exists()]
            for name in names:
                os.replace(staging / name, target / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
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
        *(f"  {name:<28}{_fmt(value)}" for name, value in rows),
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
    output = Output(as_json=as_json, quiet=quiet)
    clf = persistence.load(model_dir)
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
