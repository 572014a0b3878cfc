"""Commands that explain: doctor, lr-find, demo.

``doctor`` diagnoses a table before any training; ``lr-find`` runs the learning-rate range
test that ``--lr auto`` uses; ``demo`` reproduces the original problem and its fixes on
the built-in datasets. Like the model commands, results go to stdout (``--json``: one
JSON document and nothing else), notes and progress to stderr, and files are written
atomically. DATA may be a file or a built-in dataset, ``builtin:heart-rate`` or
``builtin:centred-nonlinear`` (1000 rows, seed 0, target column ``target``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..exceptions import DataError, SteadyclfError
from ..nn.spec import ACTIVATIONS, NORMALIZATIONS
from . import cli
from .common import (
    Output,
    build_estimator,
    estimator_options,
    load_training_data,
    parse_hidden,
    split_weight,
    writing,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["demo", "doctor", "load_data", "lr_find"]

BUILTIN_PREFIX = "builtin:"
BUILTIN_ROWS = 1000


def load_data(
    source: str, target: str | None, *, drop_missing_target: bool, output: Output
) -> tuple[pd.DataFrame, pd.Series, str]:
    """Features, target and the target's name, from a file or a built-in dataset."""
    if source.startswith(BUILTIN_PREFIX):
        from ..demo import DATASETS

        name = source[len(BUILTIN_PREFIX) :]
        if name not in DATASETS:
            choices = ", ".join(BUILTIN_PREFIX + n for n in DATASETS)
            raise DataError(f"unknown built-in dataset {source!r}; choose from {choices}")
        X, y = DATASETS[name](n=BUILTIN_ROWS, random_state=0)
        if target not in (None, y.name):
            raise DataError(f"built-in data has the target {y.name!r}; got --target {target!r}")
        return X, y, str(y.name)
    if target is None:
        raise click.UsageError("--target is required for a data file")
    from ..io.sql import is_database
    from ..io.uris import shown

    path = Path(source)
    pattern = not path.is_file() and any(c in source for c in "*?[")
    if path.is_dir() or pattern or is_database(source):
        raise DataError(
            f"{shown(source)!r}: this command reads one file into memory (CSV, TSV or "
            "Parquet); directories, globs and databases are for train and predict"
        )
    table = load_training_data(
        source, target, drop_missing_target=drop_missing_target, output=output
    )
    return table.X, table.y, target


# -- doctor ----------------------------------------------------------------------------------
@cli.command()
@click.argument("data")
@click.option("--target", help="Column to predict (not needed for builtin: data).")
@click.option(
    "--activation",
    type=click.Choice(list(ACTIVATIONS)),
    default="sigmoid",
    show_default=True,
    help="Activation of the network the saturation check initialises.",
)
@click.option(
    "--hidden",
    default="10",
    show_default=True,
    callback=parse_hidden,
    help="Hidden layer sizes of that network.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of its initialisation.")
@click.option(
    "--normalize",
    type=click.Choice(NORMALIZATIONS),
    help="Input scaling of the model you will train (the advice follows it) [the default].",
)
@click.option("--drop-missing-target", is_flag=True, help="Drop rows whose target is missing.")
@click.option(
    "--weight",
    metavar="COLUMN",
    help="Column of row weights, as train takes it: never a feature; rows of weight 0 are left "
    "out and the class balance is weighed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print only the report as JSON on stdout.")
def doctor(
    data: str,
    target: str | None,
    activation: str,
    hidden: tuple[int, ...],
    seed: int,
    normalize: str | None,
    drop_missing_target: bool,
    weight: str | None,
    as_json: bool,
) -> None:
    """Diagnose DATA for training a neural network: scales, offsets, leakage, saturation.

    Exits 0 with a report whatever it finds in the columns; unreadable input, or a target
    that is not two classes (its values and rows named), is an error.
    """
    output = Output(as_json=as_json)
    X, y, name = load_data(data, target, drop_missing_target=drop_missing_target, output=output)
    X, sample_weight = split_weight(X, weight)
    from ..doctor import diagnose

    report = diagnose(
        X,
        y,
        activation=activation,
        hidden=hidden,
        seed=seed,
        normalize=normalize,
        sample_weight=sample_weight,
    )
    summary = {"data": data, "target": name, "weight": weight, **report.to_dict()}
    output.result(summary, lambda: str(report))


# -- lr-find ---------------------------------------------------------------------------------
@cli.command("lr-find")
@click.argument("data")
@click.option("--target", help="Column to predict (not needed for builtin: data).")
@click.option(
    "--out",
    default="lr_finder.png",
    show_default=True,
    help="Where to save the curve (PNG); '' for no figure.",
)
@click.option("--drop-missing-target", is_flag=True, help="Drop rows whose target is missing.")
@click.option(
    "--weight",
    metavar="COLUMN",
    help="Column of row weights, as train takes it: never a feature; the range test weighs "
    "the loss by it, as training does.",
)
@estimator_options
@click.option("--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--json", "as_json", is_flag=True, help="Print only a JSON summary on stdout.")
def lr_find(
    data: str,
    target: str | None,
    out: str,
    drop_missing_target: bool,
    weight: str | None,
    quiet: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Run the learning-rate range test on DATA and print the rate --lr auto would use.

    The test runs exactly as in training with --lr auto and the same options (split,
    encoding, initialisation, optimizer, batch size), on a copy of the network.
    """
    output = Output(as_json=as_json, quiet=quiet)
    # One epoch of fit(lr='auto') is the cheapest way to get the very range test training
    # would run: the same validation split, encoding and initialisation.
    clf = build_estimator({**options, "lr": "auto", "max_epochs": 1})
    X, y, name = load_data(data, target, drop_missing_target=drop_missing_target, output=output)
    X, sample_weight = split_weight(X, weight)
    result = clf.fit(X, y, sample_weight=sample_weight).lr_finder_
    plot = None
    if out:
        try:
            from ..plots import plot_lr_finder

            with writing(out):
                plot = str(
                    plot_lr_finder(result.lrs, result.losses, result.smoothed, result.lr, out)
                )
        except SteadyclfError as exc:
            if isinstance(exc, DataError):
                raise
            output.note(f"{out} not written: {exc}")
    summary = {"data": data, "target": name, "plot": plot, **result.to_dict()}
    output.result(summary, lambda: _format_lr(result.to_dict(), plot))


def _format_lr(found: dict[str, Any], plot: str | None) -> str:
    lines = [
        f"suggested learning rate: {found['lr']:.3g} ({found['reason']})",
        f"range test: {len(found['lrs'])} steps from {found['lrs'][0]:.3g} to "
        f"{found['lrs'][-1]:.3g}; steepest descent at {_rate(found['steepest_lr'])}, lowest "
        f"smoothed loss at {_rate(found['min_loss_lr'])}"
        + (
            f", stopped at {found['diverged_at']:.3g} (loss blew up)"
            if found["diverged_at"]
            else ""
        ),
        f"train with it: steadyclf train DATA --target COL --lr {found['lr']:.3g} (or --lr auto)",
    ]
    if plot:
        lines.append(f"wrote {plot}")
    return "\n".join(lines)


def _rate(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3g}"


# -- demo ------------------------------------------------------------------------------------
@cli.command()
@click.option("--out", default="demo-output", show_default=True, help="Directory for the files.")
@click.option(
    "--iterations",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Training steps of the fixed-budget set-ups.",
)
@click.option(
    "--rows", type=click.IntRange(min=20), default=1000, show_default=True, help="Rows per dataset."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--json", "as_json", is_flag=True, help="Print only a JSON summary on stdout.")
def demo(out: str, iterations: int, rows: int, seed: int, quiet: bool, as_json: bool) -> None:
    """Reproduce the original problem and its fixes on the built-in datasets.

    Five set-ups (the original raw-input sigmoid network, standardisation, BatchNorm on
    the input, a stepped learning rate, steadyclf's defaults) on the heart-rate and the
    centred non-linear data: a table on stdout, and demo.png, demo.md, demo.json in --out.
    """
    output = Output(as_json=as_json, quiet=quiet)
    started = time.perf_counter()
    show = not (quiet or as_json)
    from ..demo import run_demo, write_demo

    result = run_demo(
        iterations,
        rows,
        seed,
        progress=(lambda line: click.echo(f"steadyclf: training {line}", err=True))
        if show
        else None,
    )
    with writing(out):
        paths = write_demo(result, out)
    files = [str(p) for p in paths.values()]
    summary = {**result.to_dict(), "files": files}
    seconds = time.perf_counter() - started
    output.result(
        summary,
        lambda: (
            f"{result.report()}\nwrote {', '.join(files)} ({seconds:.1f} s in all)\n"
            f"figure: {Path(paths['figure']).resolve()}"
        ),
    )
