"""Figures users would rather look at than read (matplotlib, imported lazily).

matplotlib is an optional dependency (``pip install 'steadyclf[plot]'``); every function
here imports it through :func:`figure`, which raises a clear error when it is missing.
Each ``*_figure`` function builds a figure; ``plot_*`` saves one (atomically: temporary
file, then rename) and :func:`figure_svg` returns one as SVG text, for the HTML report.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .exceptions import SteadyclfError
from .io.atomic import atomic_path
from .io.escape import terminal

__all__ = [
    "calibration_figure",
    "confusion_figure",
    "figure",
    "figure_svg",
    "importance_figure",
    "member_histories",
    "plot_calibration",
    "plot_demo",
    "plot_lr_finder",
    "plot_precision_recall",
    "plot_roc",
    "plot_training",
    "precision_recall_figure",
    "roc_figure",
    "save_figure",
    "training_figure",
]


def figure(**options: Any) -> Any:
    """A new matplotlib ``Figure``, not attached to pyplot or to any backend.

    Figures are built and saved through the object-oriented API, so steadyclf never
    switches the backend of the process (a notebook keeps its own) and never keeps
    figures in pyplot's registry.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise SteadyclfError("plots need matplotlib: pip install 'steadyclf[plot]'") from exc
    return Figure(**options)


def _subplots(nrows: int = 1, ncols: int = 1, **options: Any) -> tuple[Any, Any]:
    fig = figure(figsize=options.pop("figsize", None))
    axes = fig.subplots(nrows, ncols, **options)
    return fig, axes


def save_figure(fig: Any, path: str | os.PathLike[str], *, format: str = "png") -> Path:
    """Save ``fig`` (PNG by default) at ``path`` atomically."""
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=format)
    return target


def figure_svg(fig: Any) -> str:
    """``fig`` as a standalone SVG document (text drawn as paths: it needs no font).

    The date is left out, so the same figure gives the same text.
    """
    from matplotlib import rc_context

    buffer = io.StringIO()
    with rc_context({"svg.fonttype": "path", "svg.hashsalt": "steadyclf"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    return buffer.getvalue()


# -- training and evaluation figures (CLI: training.png, roc.png, precision_recall.png,
# calibration.png). Curves come from scikit-learn's display classes.
def training_figure(history: Sequence[Mapping[str, Any]]) -> Any:
    """Loss, accuracy and learning rate per epoch (train and validation), three panels.

    A model of several members (small data's cross-fitted members: each trains on its own
    rows and stops at its own epoch) draws one line per member, in the colours of one.
    """
    runs = member_histories(history)
    many = len(runs) > 1
    fig, axes = _subplots(1, 3, figsize=(13, 3.6))
    line = {"linewidth": 1.0, "alpha": 0.7} if many else {}
    for number, run in enumerate(runs):
        epochs = [int(r["epoch"]) for r in run]
        for ax, key in ((axes[0], "loss"), (axes[1], "accuracy")):
            for split, style, colour in (("train", "-", "C0"), ("valid", "--", "C1")):
                values = [r.get(f"{split}_{key}") for r in run]
                if any(v is not None for v in values):
                    label = split if number == 0 else None
                    ax.plot(epochs, _floats(values), style, color=colour, label=label, **line)
        axes[2].plot(epochs, _floats(r.get("lr") for r in run), color="C0", **line)
    suffix = f" ({len(runs)} members)" if many else ""
    for ax, title in zip(axes, ("log loss", "accuracy", "learning rate"), strict=True):
        ax.set(title=title + suffix, xlabel="epoch")
    for ax in axes[:2]:
        ax.legend()
    losses = _floats(r.get("train_loss") for r in history)
    if losses and all(v > 0 for v in losses):
        axes[0].set_yscale("log")
    axes[2].set_yscale("log")
    fig.tight_layout()
    return fig


def member_histories(history: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """``history`` split by its rows' ``member`` (0 where absent), in order of first
    appearance: each member's epochs in their own order."""
    runs: dict[Any, list[Mapping[str, Any]]] = {}
    for record in history:
        runs.setdefault(record.get("member", 0), []).append(record)
    return list(runs.values())


def plot_training(history: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Loss, accuracy and learning rate per epoch (train and validation) as one PNG."""
    return save_figure(training_figure(history), path)


def _floats(values: Iterable[Any]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def _plain(text: str) -> str:
    """``text`` for a figure: control characters escaped, ``$`` not read as mathtext."""
    return terminal(text).replace("$", r"\$")


def _positive_label(positive: Any) -> str:
    """How the figures name the positive class (``1`` when the caller gives none), as
    plain text (a ``$`` would start matplotlib's mathtext)."""
    return "1" if positive is None else _plain(str(positive))


def roc_figure(y_true: Any, proba: Any, *, positive: Any = None, sample_weight: Any = None) -> Any:
    """ROC curve of probabilities ``proba`` against 0/1 labels, with the chance line.

    ``positive``: the name of class 1, for the axes; ``sample_weight``: rows' weights.
    """
    from sklearn.metrics import RocCurveDisplay

    fig, ax = _subplots(figsize=(4.5, 4.5))
    RocCurveDisplay.from_predictions(
        y_true, proba, sample_weight=sample_weight, ax=ax, name="model", plot_chance_level=True
    )
    name = _positive_label(positive)
    ax.set(
        title="ROC curve",
        xlabel=f"False positive rate (positive: {name})",
        ylabel=f"True positive rate (positive: {name})",
    )
    return fig


def plot_roc(y_true: Any, proba: Any, path: str | os.PathLike[str], **options: Any) -> Path:
    """:func:`roc_figure` (``options``: its ``positive`` and ``sample_weight``) as a PNG."""
    return save_figure(roc_figure(y_true, proba, **options), path)


def precision_recall_figure(
    y_true: Any, proba: Any, *, positive: Any = None, sample_weight: Any = None
) -> Any:
    """Precision-recall curve, with the positive rate as the chance level.

    Points where only precision changes are dropped (scikit-learn's
    ``drop_intermediate``): the curve looks the same with far fewer of them.
    ``positive``: the name of class 1, for the axes; ``sample_weight``: rows' weights.
    """
    import numpy as np
    from sklearn.metrics import PrecisionRecallDisplay

    fig, ax = _subplots(figsize=(4.5, 4.5))
    PrecisionRecallDisplay.from_predictions(
        y_true, proba, sample_weight=sample_weight, ax=ax, name="model", drop_intermediate=True
    )
    # The chance level is the (weighted) positive rate: scikit-learn's ignores the weights.
    rate = float(np.average(np.asarray(y_true) == 1, weights=sample_weight))
    ax.axhline(rate, color="k", linestyle="--", label=f"Chance level (AP = {rate:.2f})")
    ax.legend(loc="lower left")
    name = _positive_label(positive)
    ax.set(
        title="Precision-recall curve",
        xlabel=f"Recall (positive: {name})",
        ylabel=f"Precision (positive: {name})",
    )
    return fig


def plot_precision_recall(
    y_true: Any, proba: Any, path: str | os.PathLike[str], **options: Any
) -> Path:
    """:func:`precision_recall_figure` (``options``: its ``positive`` and ``sample_weight``)
    as a PNG."""
    return save_figure(precision_recall_figure(y_true, proba, **options), path)


def calibration_figure(
    y_true: Any,
    proba: Any,
    n_bins: int = 10,
    *,
    positive: Any = None,
    sample_weight: Any = None,
) -> Any:
    """Reliability diagram: the observed rate of class 1 against the mean predicted
    probability in the :func:`~steadyclf.calibration.reliability_bins` (up to ``n_bins``
    of equal mass; what the report's table of bins and the ECE use), with the diagonal.
    """
    from .calibration import reliability_bins

    bins = reliability_bins(y_true, proba, n_bins, sample_weight)
    fig, ax = _subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k:", label="perfectly calibrated")
    ax.plot([b["predicted"] for b in bins], [b["observed"] for b in bins], "s-", label="model")
    name = _positive_label(positive)
    ax.set(
        title="Calibration",
        xlabel=f"Mean predicted probability of {name}",
        ylabel=f"Observed share of {name}",
        xlim=(-0.02, 1.02),
        ylim=(-0.02, 1.02),
        aspect="equal",
    )
    ax.legend(loc="upper left")
    return fig


def plot_calibration(
    y_true: Any, proba: Any, path: str | os.PathLike[str], n_bins: int = 10, **options: Any
) -> Path:
    """:func:`calibration_figure` (``options``: its ``positive`` and ``sample_weight``) as
    a PNG."""
    return save_figure(calibration_figure(y_true, proba, n_bins, **options), path)


def confusion_figure(matrix: Any, labels: Sequence[str]) -> Any:
    """The 2 x 2 confusion matrix (rows: true class, columns: predicted class)."""
    import numpy as np
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = _subplots(figsize=(4.2, 3.8))
    display = ConfusionMatrixDisplay(np.asarray(matrix), display_labels=list(labels))
    display.plot(ax=ax, colorbar=False, values_format="d", cmap="Blues")
    ax.set_title("Confusion matrix")
    return fig


def importance_figure(
    names: Sequence[str],
    means: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    *,
    xlabel: str,
) -> Any:
    """Horizontal bars of importance, most important on top, with their intervals."""
    n = len(names)
    fig, ax = _subplots(figsize=(6.5, max(1.6, 0.32 * n + 1.0)))
    positions = list(range(n))[::-1]
    errors = [
        [m - lo for m, lo in zip(means, lows, strict=True)],
        [hi - m for m, hi in zip(means, highs, strict=True)],
    ]
    ax.barh(positions, means, xerr=errors, color="#4c72b0", ecolor="#333333", capsize=3)
    # Names from the data: control characters shown as \n..., and '$' kept from starting
    # matplotlib's math text.
    ax.set_yticks(positions, labels=[_plain(str(n)) for n in names])
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.set(xlabel=xlabel, title="Column importance")
    fig.tight_layout()
    return fig


# -- diagnosis figures (CLI: lr-find's curve, the demo's loss curves) ----------------------
def plot_lr_finder(
    lrs: Sequence[float],
    losses: Sequence[float],
    smoothed: Sequence[float],
    pick: float,
    path: str | os.PathLike[str],
) -> Path:
    """Learning-rate range test: raw and smoothed loss against the rate, with the pick."""
    fig, ax = _subplots(figsize=(6, 4))
    finite = [(r, v) for r, v in zip(lrs, losses, strict=True) if math.isfinite(v)]
    ax.plot([r for r, _ in finite], [v for _, v in finite], alpha=0.35, label="loss")
    ax.plot(lrs, _floats(v if math.isfinite(v) else None for v in smoothed), label="smoothed")
    ax.axvline(pick, color="black", linestyle="--", label=f"pick {pick:.3g}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss", title="Range test")
    top = max((v for _, v in finite), default=1.0)
    first = finite[0][1] if finite else 1.0
    ax.set_ylim(0, min(top, 2 * first) * 1.05)  # keep the blow-up from flattening the curve
    ax.legend()
    return save_figure(fig, path)


def plot_demo(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | os.PathLike[str],
    *,
    target: float = 0.1,
) -> Path:
    """One panel per dataset, one training-loss curve per set-up, log scale."""
    fig, axes = _subplots(1, len(curves), figsize=(6.2 * len(curves), 4.4), squeeze=False)
    for ax, (dataset, lines) in zip(axes[0], curves.items(), strict=True):
        for label, losses in lines.items():
            ax.plot(range(1, len(losses) + 1), losses, label=label)
        ax.axhline(target, color="grey", linestyle=":", linewidth=1)
        ax.set(title=dataset, xlabel="iteration (full batch)", ylabel="training log loss")
        ax.set_yscale("log")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
