"""The main job on built-in data: the original problem, its known fixes, and steadyclf.

:func:`run_demo` trains five set-ups on the two built-in datasets (heart rates around 92
labelled ``HR >= 91``, and two small concentric circles centred at zero):

1. ``original``:    the network of the original question: raw inputs, Linear(10) ->
                    sigmoid -> Linear, Adam at lr 1e-3;
2. ``standardize``: the same network on standardised inputs, Adam at lr 1e-2;
3. ``batchnorm``:   the same network with ``BatchNorm1d`` on the input, Adam at lr 1e-3;
4. ``step``:        raw inputs again, with a larger rate stepped down tenfold every quarter
                    of the run (3e-2, 3e-3, 3e-4, 3e-5);
5. ``defaults``:    ``BinaryClassifier()`` as it comes (early stopping and all; it is
                    only capped at ``iterations`` epochs when that is below its own 300).

Every set-up trains full batch (one iteration = one epoch) through
:class:`~steadyclf.BinaryClassifier`, so the stall detector runs too and its first
warning is the row's finding. Every number in the table comes from these runs.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .datasets import centred_nonlinear, heart_rate
from .doctor import diagnose
from .estimator import BinaryClassifier
from .exceptions import ParameterError
from .io.atomic import atomic_write
from .nn.threads import intra_op_threads

__all__ = ["DATASETS", "SETUPS", "DemoResult", "DemoRow", "Setup", "run_demo", "write_demo"]

#: Training loss that counts as "learned" in the table.
TARGET_LOSS = 0.1

DATASETS: dict[str, Callable[..., tuple[pd.DataFrame, pd.Series]]] = {
    "heart-rate": heart_rate,
    "centred-nonlinear": centred_nonlinear,
}


@dataclass(frozen=True)
class Setup:
    """One configuration of the demo: a name, a label and ``BinaryClassifier`` parameters."""

    key: str
    label: str
    params: Mapping[str, Any]
    fixed_budget: bool = True  # trains exactly ``iterations`` steps (no early stopping)


_CLASSIC = {"hidden": (10,), "activation": "sigmoid", "batch_size": None}
_FIXED = {"early_stopping": False, "schedule": "none"}

SETUPS: tuple[Setup, ...] = (
    Setup(
        "original",
        "raw inputs, sigmoid, Adam lr 1e-3",
        {**_CLASSIC, **_FIXED, "normalize": "none", "lr": 1e-3},
    ),
    Setup(
        "standardize",
        "standardised, Adam lr 1e-2",
        {**_CLASSIC, **_FIXED, "normalize": "standardize", "lr": 1e-2},
    ),
    Setup(
        "batchnorm",
        "BatchNorm on the input, Adam lr 1e-3",
        {**_CLASSIC, **_FIXED, "normalize": "batchnorm", "lr": 1e-3},
    ),
    Setup(
        "step",
        "raw inputs, Adam lr 3e-2 stepped /10 each quarter",
        {**_CLASSIC, **_FIXED, "normalize": "none", "lr": 3e-2, "schedule": "step"},
    ),
    Setup("defaults", "steadyclf defaults", {}, fixed_budget=False),
)


@dataclass
class DemoRow:
    """The outcome of one set-up on one dataset."""

    dataset: str
    setup: str
    label: str
    iterations_to_target: int | None
    iterations_run: int
    final_loss: float
    train_accuracy: float
    test_accuracy: float
    finding: str
    seconds: float
    losses: list[float] = field(repr=False, default_factory=list)


@dataclass
class DemoResult:
    """All rows of a demo run, with the doctor's headline per dataset."""

    rows: list[DemoRow]
    headlines: dict[str, str]
    iterations: int
    n_rows: int
    seed: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (loss curves included)."""
        return {
            "iterations": self.iterations,
            "n_rows": self.n_rows,
            "seed": self.seed,
            "target_loss": TARGET_LOSS,
            "seconds": self.seconds,
            "headlines": dict(self.headlines),
            "rows": [
                {
                    k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                    for k, v in asdict(r).items()
                }
                for r in self.rows
            ],
        }

    def table(self) -> str:
        """The results as a Markdown table."""
        head = (
            f"| data | set-up | iterations to loss {TARGET_LOSS:g} | loss after "
            f"{self.iterations} iterations | train acc | test acc | finding |"
        )
        lines = [head, "|---|---|---:|---:|---:|---:|---|"]
        for r in self.rows:
            reached = "never" if r.iterations_to_target is None else str(r.iterations_to_target)
            loss = f"{r.final_loss:.3f}"
            if r.iterations_run < self.iterations:
                loss += f" (stopped at {r.iterations_run})"
            lines.append(
                f"| {r.dataset} | {r.label} | {reached} | {loss} | {r.train_accuracy:.3f} | "
                f"{r.test_accuracy:.3f} | {r.finding} |"
            )
        return "\n".join(lines)

    def report(self) -> str:
        """Table plus the doctor's headline per dataset, as printed by ``steadyclf demo``."""
        doctor = [f"- {name}: {line}" for name, line in self.headlines.items()]
        return "\n".join(
            [
                f"steadyclf demo: {len(self.rows)} runs, {self.n_rows} training rows per "
                f"dataset (test: {self.n_rows} fresh rows), full batch, seed {self.seed}",
                "",
                "steadyclf doctor:",
                *doctor,
                "",
                self.table(),
                "",
                f"finished in {self.seconds:.1f} s",
            ]
        )


def run_demo(
    iterations: int = 1000,
    n_rows: int = 1000,
    seed: int = 0,
    *,
    setups: Sequence[Setup] = SETUPS,
    datasets: Sequence[str] = tuple(DATASETS),
    progress: Callable[[str], None] | None = None,
) -> DemoResult:
    """Train every set-up on every dataset and collect the numbers.

    Parameters
    ----------
    iterations : int, default=1000
        Training steps of the fixed-budget set-ups (the defaults stop when they stop).
    n_rows : int, default=1000
        Training rows per dataset; the test set is as many fresh rows (another seed).
    seed : int, default=0
        Seed of the data and of every model.
    setups, datasets : sequences
        Subsets to run (all by default).
    progress : callable, optional
        Called with a short line before each run (the CLI prints it on stderr).

    Returns
    -------
    DemoResult
    """
    if iterations < 1 or n_rows < 20:
        raise ParameterError(
            f"the demo needs iterations >= 1 and n_rows >= 20; got {iterations} and {n_rows}"
        )
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        raise ParameterError(f"unknown dataset {unknown[0]!r}; choose from {list(DATASETS)}")
    started = time.perf_counter()
    # The networks are tiny: threads only add synchronisation, and cost more on a busy box.
    with intra_op_threads(1):
        rows, headlines = _run_all(iterations, n_rows, seed, setups, datasets, progress)
    return DemoResult(rows, headlines, iterations, n_rows, seed, time.perf_counter() - started)


def _run_all(
    iterations: int,
    n_rows: int,
    seed: int,
    setups: Sequence[Setup],
    datasets: Sequence[str],
    progress: Callable[[str], None] | None,
) -> tuple[list[DemoRow], dict[str, str]]:
    rows: list[DemoRow] = []
    headlines: dict[str, str] = {}
    for name in datasets:
        X, y = DATASETS[name](n=n_rows, random_state=seed)
        X_test, y_test = DATASETS[name](n=n_rows, random_state=seed + 1)
        headlines[name] = diagnose(X, y, seed=seed).headline
        for setup in setups:
            if progress is not None:
                progress(f"{name}: {setup.label}")
            rows.append(_run_one(name, setup, X, y, X_test, y_test, iterations, seed))
    return rows, headlines


def _run_one(
    dataset: str,
    setup: Setup,
    X: pd.DataFrame,
    y: pd.Series,
    X_test: pd.DataFrame,
    y_test: pd.Series,
    iterations: int,
    seed: int,
) -> DemoRow:
    params = dict(setup.params)
    if setup.fixed_budget:
        params["max_epochs"] = iterations
    else:  # its own stopping rule, within the same budget (the default cap is 300 epochs)
        params["max_epochs"] = min(iterations, BinaryClassifier().max_epochs)
    started = time.perf_counter()
    clf = BinaryClassifier(random_state=seed, **params).fit(X, y)
    seconds = time.perf_counter() - started
    # One network's curve: of cross-fitted members (the defaults on small data), the first.
    losses = [float(r["train_loss"]) for r in clf.history_ if r.get("member", 0) == 0]
    # Full batch: one epoch is one iteration (the demo's data fits in one batch).
    reached = next((i + 1 for i, loss in enumerate(losses) if loss < TARGET_LOSS), None)
    return DemoRow(
        dataset=dataset,
        setup=setup.key,
        label=setup.label,
        iterations_to_target=reached,
        iterations_run=len(losses),
        final_loss=losses[min(iterations, len(losses)) - 1],
        train_accuracy=float(clf.score(X, y)),
        test_accuracy=float(clf.score(X_test, y_test)),
        finding=_finding(clf.warnings_),
        seconds=seconds,
        losses=losses,
    )


def _finding(warnings: Sequence[Mapping[str, Any]]) -> str:
    """The first stall warning of a run in one line, or that there was none."""
    if not warnings:
        return "no warning"
    first = min(warnings, key=lambda w: w["epoch"])
    line = f"{first['kind'].replace('_', ' ')} at iteration {first['epoch']}: {first['cause']}"
    if first.get("resolved_epoch") is not None:
        line += f" (got past it by iteration {first['resolved_epoch']})"
    return line


def write_demo(result: DemoResult, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``demo.png`` (loss curves), ``demo.md`` (the table) and ``demo.json``.

    Each file is written to a temporary name in ``out_dir`` and renamed, so an
    interrupted run leaves no partial file.
    """
    from .plots import plot_demo

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    curves: dict[str, dict[str, list[float]]] = {}
    for row in result.rows:
        curves.setdefault(row.dataset, {})[row.label] = row.losses
    paths = {
        "figure": plot_demo(curves, out / "demo.png", target=TARGET_LOSS),
        "table": _write_text(out / "demo.md", result.report() + "\n"),
        "json": _write_text(out / "demo.json", json.dumps(result.to_dict(), indent=2) + "\n"),
    }
    return paths


def _write_text(path: Path, text: str) -> Path:
    return atomic_write(path, text)
