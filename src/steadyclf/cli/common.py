"""What every command shares: output conventions, estimator options, reading data.

Conventions shared by every command:

- results go to stdout (``--json``: one JSON document and nothing else); notes,
  warnings and the progress bar go to stderr;
- ``--quiet`` keeps only warnings and errors;
- nothing is written until the work succeeded, and every file is written atomically
  (temporary name, then rename), so a failed command leaves no partial output.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..exceptions import DataError, ParameterError, SteadyclfError
from ..io.escape import terminal
from ..params import PARAMETERS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from numpy.typing import NDArray

    from ..estimator import BinaryClassifier

__all__ = [
    "Output",
    "TrainingData",
    "build_estimator",
    "check_one_file",
    "check_query_given",
    "estimator_options",
    "fmt",
    "load_training_data",
    "names",
    "negative_positive",
    "parse_hidden",
    "positive_int",
    "split_weight",
    "to_jsonable",
    "training_callbacks",
    "writing",
]


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
            click.echo(f"steadyclf: note: {terminal(text)}", err=True)

    def warn(self, text: str) -> None:
        """Something that may make results wrong (stderr, always)."""
        self.warnings.append(text)
        click.echo(f"steadyclf: warning: {terminal(text)}", err=True)

    def result(self, summary: Mapping[str, Any], text: Callable[[], str]) -> None:
        """Print the command's result: ``summary`` as JSON, or ``text()`` for people."""
        if self.as_json:
            document = {**summary, "notes": self.notes, "warnings": self.warnings}
            click.echo(json.dumps(to_jsonable(document), indent=2, allow_nan=False))
        elif not self.quiet:
            # Lines for a terminal: what the data put in them is shown, never acted on.
            click.echo("\n".join(map(terminal, text().split("\n"))))


@contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an OS error while writing ``path`` into a one-line error; refuse first a
    ``path`` that is a file of a saved model (``export m --out m/model.json`` overwrote
    the model it read, and said nothing)."""
    _refuse_model_file(path)
    try:
        yield
    except SteadyclfError:
        raise
    except OSError as exc:
        raise DataError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None


def _refuse_model_file(path: str | os.PathLike[str]) -> None:
    from ..persistence import INDEX_FILE, WEIGHTS_FILE

    target = Path(path)
    files = (INDEX_FILE, WEIGHTS_FILE)
    if target.name in files and all((target.parent / name).is_file() for name in files):
        raise ParameterError(
            f"{str(path)!r} is a file of the model in {str(target.parent)!r}; "
            "write the output elsewhere (the model would be overwritten)"
        )


def check_query_given(data: str, query: str | None, rows_for: str) -> None:
    """Refuse a database given as DATA without ``--query``: say it needs the rows
    ``rows_for`` (e.g. "to train on") as a query, not that its file type is unknown."""
    if query is not None:
        return
    from ..io.sql import is_database
    from ..io.uris import shown

    if is_database(data):
        raise ParameterError(
            f"{shown(data)!r} is a database: give the rows {rows_for} with --query 'SELECT ...'"
        )


def check_one_file(data: str) -> None:
    """Refuse a database given to a command that reads one file (evaluate, explain,
    report, doctor, lr-find): it takes no --query; say so (with no password)."""
    from ..io.sql import is_database
    from ..io.uris import shown

    if is_database(data):
        raise DataError(
            f"{shown(data)!r} is a database: this command reads one file (CSV, TSV or "
            "Parquet); databases (with --query) are for train and predict"
        )


def fmt(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def names(values: Any, limit: int = 8) -> str:
    values = [str(v) for v in values]
    shown = ", ".join(values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def negative_positive(summary: Mapping[str, Any]) -> tuple[Any, Any]:
    """The negative and the positive class of a summary with sorted ``classes`` (as
    ``classes_``) and its ``positive`` class, which may be either of them."""
    positive = _plain(summary["positive"])
    return next(_plain(c) for c in summary["classes"] if c != positive), positive


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds (its repr is ``np.int64(1)``)."""
    return value.item() if hasattr(value, "item") and hasattr(value, "dtype") else value


# -- estimator options -----------------------------------------------------------------------
def parse_hidden(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
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
    return positive_int("--batch-size", value, "a positive integer, 'auto' or 'full'")


def _parse_n_members(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None or value == "auto":
        return value
    return positive_int("--n-members", value, "a positive integer or 'auto'")


def positive_int(option: str, value: str, expected: str = "a positive integer") -> int:
    """``value`` as a positive integer, or a one-line error naming ``option``."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise ParameterError(f"{option} must be {expected}; got {value!r}")
    return number


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


def _parse_class_weight(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """``balanced``, or ``CLASS=WEIGHT[,CLASS=WEIGHT]`` (classes as written in the data)."""
    if value is None or value == "balanced":
        return value
    expected = "'balanced' or CLASS=WEIGHT[,CLASS=WEIGHT] with positive weights"
    weights: dict[str, float] = {}
    for part in value.split(","):
        name, sep, number = part.rpartition("=")
        if not sep or not name.strip():
            raise ParameterError(f"--class-weight must be {expected}; got {value!r}")
        weights[name.strip()] = _positive_float("--class-weight", number.strip(), expected)
    return weights


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


def _choice(name: str) -> click.Choice:
    """The values of parameter ``name`` (:mod:`steadyclf.params`), ``None`` left out."""
    return click.Choice([str(c) for c in PARAMETERS[name].choices if c is not None])


def _help(name: str) -> str:
    return PARAMETERS[name].help


#: Options that map one to one onto ``BinaryClassifier`` parameters (kebab case). Their
#: choices and most help texts come from the table of parameters (:mod:`steadyclf.params`);
#: an option not given leaves the parameter at the table's default (tests/test_params.py
#: checks every option against its row).
ESTIMATOR_OPTIONS: list[Callable[[Any], Any]] = [
    click.option("--hidden", callback=parse_hidden, help="Hidden layer sizes, e.g. 64,32."),
    click.option("--activation", type=_choice("activation"), help=_help("activation")),
    click.option("--normalize", type=_choice("normalize"), help=_help("normalize")),
    click.option(
        "--numeric-embedding", type=_choice("numeric_embedding"), help=_help("numeric_embedding")
    ),
    click.option("--integer-codes", type=_choice("integer_codes"), help=_help("integer_codes")),
    click.option(
        "--n-members", callback=_parse_n_members, metavar="N|auto", help=_help("n_members")
    ),
    click.option("--optimizer", type=_choice("optimizer"), help=_help("optimizer")),
    click.option("--lr", callback=_parse_lr, help="Learning rate, or 'auto'."),
    click.option("--schedule", type=_choice("schedule"), help=_help("schedule")),
    click.option("--max-epochs", type=int, help=_help("max_epochs")),
    click.option("--batch-size", callback=_parse_batch_size, help="Rows per step, 'auto', 'full'."),
    click.option(
        "--early-stopping/--no-early-stopping", default=None, help=_help("early_stopping")
    ),
    click.option(
        "--validation-fraction",
        callback=_parse_validation_fraction,
        metavar="FRACTION|auto",
        help=_help("validation_fraction"),
    ),
    click.option("--patience", type=int, help=_help("patience")),
    click.option("--pos-weight", callback=_parse_pos_weight, help="'balanced' or a number."),
    click.option(
        "--class-weight",
        callback=_parse_class_weight,
        metavar="balanced|CLASS=W,...",
        help="Weight of each class in the loss (times the rows' --weight); not with --pos-weight.",
    ),
    click.option(
        "--weight-decay",
        callback=_parse_weight_decay,
        metavar="DECAY|auto",
        help=_help("weight_decay"),
    ),
    click.option(
        "--random-state",
        type=int,
        help=f"{_help('random_state')} [default: {PARAMETERS['random_state'].default}]",
    ),
    click.option("--device", type=_choice("device"), help=_help("device")),
    click.option(
        "--threshold-metric", type=_choice("threshold_metric"), help=_help("threshold_metric")
    ),
    click.option("--calibration", type=_choice("calibration"), help=_help("calibration")),
    click.option("--positive", help=_help("positive")),
    click.option("--categorical", multiple=True, callback=_parse_names, help=_help("categorical")),
    click.option("--numeric", multiple=True, callback=_parse_names, help=_help("numeric")),
    click.option("--drop", multiple=True, callback=_parse_names, help=_help("drop")),
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
    from ..estimator import BinaryClassifier

    allowed = BinaryClassifier().get_params(deep=False)
    params = {k: v for k, v in options.items() if k in allowed and v is not None}
    if params.get("batch_size") == "full":
        params["batch_size"] = None
    return BinaryClassifier(**params).check_params()


# -- reading and training --------------------------------------------------------------------------
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


def split_weight(X: Any, weight: str | None) -> tuple[Any, Any]:
    """The features without the weight column, and the weights (checked), if any."""
    if weight is None:
        return X, None
    import numpy as np

    from ..io.tables import name_list
    from ..schema.weights import weight_values

    if weight not in X.columns:
        raise DataError(
            f"weight column {weight!r} is not in the data; columns: {name_list(X.columns)}"
        )
    index = X.index.to_numpy()
    rows = index if index.dtype.kind in "iu" else np.arange(len(X))
    weights = weight_values(weight, X[weight], rows, f"weight column {weight!r}")
    return X.drop(columns=[weight]), weights


def load_training_data(
    source: str, target: str, *, drop_missing_target: bool, output: Output
) -> TrainingData:
    """Read ``source`` (one file) and split off the ``target`` column."""
    from ..io.tables import read_table
    from ..schema.labels import split_target

    check_one_file(source)
    frame = read_table(source)
    X, y, dropped = split_target(frame, target, drop_missing=drop_missing_target)
    if dropped.size:
        output.note(
            f"dropped {dropped.size} row{'s' if dropped.size > 1 else ''} with a missing target (first: {', '.join(map(str, dropped[:5].tolist()))})"
        )
    return TrainingData(X, y, str(source), target, dropped)


def training_callbacks(output: Output) -> list[Any]:
    """Callbacks for a CLI fit: a progress bar when stderr is a terminal."""
    from ..callbacks import ProgressBar

    show = not (output.quiet or output.as_json) and sys.stderr.isatty()
    return [ProgressBar()] if show else []


def to_jsonable(value: Any) -> Any:
    """Plain JSON values (see :func:`steadyclf.io.jsonable.to_jsonable`)."""
    from ..io.jsonable import to_jsonable as convert

    return convert(value)
