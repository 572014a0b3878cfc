"""Which columns matter: permutation importance of each raw column on rows you give.

:func:`explain` shuffles one input column at a time among the rows (the method of
scikit-learn's :func:`~sklearn.inspection.permutation_importance`) and measures how much
the model's score drops: by ROC AUC (default) or log loss. The shuffled unit is the raw
column the user knows, not a network input: a categorical's one-hot block, a numeric
column's missing-value indicator, move together because the encoding happens inside the
model. The rows are encoded once and each shuffle moves the column's encoded inputs
(encoding works row by row, column by column: the same as shuffling the raw column and
encoding again, tested), and the network's first layers are updated by that column's
inputs only
(:class:`~steadyclf.nn.shuffles.ColumnShuffles`; ``benchmarks/explain_speed.py``:
caravan's 1,165 test rows x 85 columns 17.5 s when each shuffle predicted the table,
2.5 s so). Each column is shuffled ``n_repeats`` times; the importance is the mean drop,
with the interval mean +- 2 standard deviations of the repeats (scikit-learn's own
examples read an importance as real when that interval excludes zero).

The rows should be rows the model did not train on (a test file): on the training rows
a column the network memorised looks important. Columns the model does not use
(dropped in training) are listed apart, without an importance.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .evaluation import labels_to_binary, log_loss, roc_auc
from .exceptions import DataError, NotFittedError, ParameterError
from .io.escape import terminal
from .nn.shuffles import ColumnShuffles, feature_columns
from .predictor import Predictor, calibrate, sigmoid

if TYPE_CHECKING:
    from .estimator import BinaryClassifier

__all__ = ["SCORINGS", "ColumnImportance", "Importance", "explain"]

#: What a shuffled column is scored by: the drop in ROC AUC, or the rise in log loss.
SCORINGS = ("roc_auc", "log_loss")
#: Predictions (rows x calls) from which :func:`explain` shows a progress bar on a terminal.
PROGRESS_MIN_WORK = 2_000_000
#: Largest rows x (encoded features + first layers' outputs) :func:`explain` holds to
#: update a plain network's first layer by the shuffled column only
#: (:class:`~steadyclf.nn.shuffles.ColumnShuffles`; 2**25 float64 values: 256 MB);
#: beyond, each shuffle runs the whole network.
FAST_VALUES = 1 << 25


@dataclass
class ColumnImportance:
    """One column: the mean drop in score when shuffled, and its interval."""

    column: str
    role: str
    importance: float
    std: float
    low: float
    high: float
    rank: int


@dataclass
class Importance:
    """What :func:`explain` found: the columns ranked by importance, most important first.

    ``str()`` renders the ranked table; :meth:`to_frame` gives it as a DataFrame.
    """

    scoring: str
    baseline: float
    n_rows: int
    n_repeats: int
    columns: list[ColumnImportance]
    unused: list[str] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        """One row per column, ranked: ``column``, ``role``, ``importance``, ``std``,
        ``low``, ``high``, ``rank``."""
        return pd.DataFrame([asdict(c) for c in self.columns]).set_index("rank")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "scoring": self.scoring,
            "baseline": self.baseline,
            "n_rows": self.n_rows,
            "n_repeats": self.n_repeats,
            "columns": [asdict(c) for c in self.columns],
            "unused": list(self.unused),
        }

    @property
    def what(self) -> str:
        """What the importance measures, in words."""
        if self.scoring == "roc_auc":
            return "drop in ROC AUC when the column is shuffled"
        return "rise in log loss when the column is shuffled"

    def __str__(self) -> str:
        # For a terminal: a newline or an escape sequence in a name is shown, not acted on.
        names = {c.column: terminal(c.column) for c in self.columns}
        width = max([len("column"), *map(len, names.values())])
        lines = [
            f"column importance: {self.what} ({self.n_rows:,} rows, {self.n_repeats} "
            f"{'repeat' if self.n_repeats == 1 else 'repeats'}; {self.scoring} "
            f"{self.baseline:.4f} unshuffled)",
            f"{'rank':>4}  {'column':<{width}}  {'role':<11}  {'importance':>10}  "
            "interval (mean +- 2 sd)",
        ]
        for c in self.columns:
            interval = f"[{c.low:.4f}, {c.high:.4f}]" if self.n_repeats > 1 else "n/a (one repeat)"
            lines.append(
                f"{c.rank:>4}  {names[c.column]:<{width}}  {c.role:<11}  {c.importance:>10.4f}  "
                f"{interval}"
            )
        if self.unused:
            unused = ", ".join(map(terminal, self.unused))
            lines.append(f"not used by the model (dropped in training): {unused}")
        return "\n".join(lines)


def explain(
    clf: BinaryClassifier,
    X: Any,
    y: Any,
    *,
    scoring: str = "roc_auc",
    n_repeats: int = 5,
    max_rows: int | None = None,
    random_state: int = 0,
    progress: bool | None = None,
) -> Importance:
    """Permutation importance of every column the model uses, on the rows ``X, y``.

    Parameters
    ----------
    clf : BinaryClassifier
        A fitted model.
    X : DataFrame or array
        Rows the model did not train on, with the columns it was fitted on.
    y : array-like
        Their labels (values of ``clf.classes_``).
    scoring : {'roc_auc', 'log_loss'}
        The score whose drop (ROC AUC) or rise (log loss) measures importance.
    n_repeats : int
        Shuffles per column.
    max_rows : int, optional
        Score on a random subset of this many rows (the same for every column).
    random_state : int
        Seed of the shuffles and of the subset.
    progress : bool, optional
        Show a progress bar on stderr; by default only on a terminal and for long runs.

    Returns
    -------
    Importance

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from steadyclf import BinaryClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"signal": rng.normal(size=600), "noise": rng.normal(size=600)})
    >>> y = (X["signal"] > 0).astype(int)
    >>> clf = BinaryClassifier(random_state=0).fit(X[:400], y[:400])
    >>> explain(clf, X[400:], y[400:]).columns[0].column
    'signal'
    """
    if scoring not in SCORINGS:
        raise ParameterError(
            f"scoring must be one of {', '.join(map(repr, SCORINGS))}; got {scoring!r}"
        )
    if not (isinstance(n_repeats, int) and n_repeats > 0):
        raise ParameterError(f"n_repeats must be a positive integer; got {n_repeats!r}")
    if max_rows is not None and not (isinstance(max_rows, int) and max_rows > 1):
        raise ParameterError(f"max_rows must be an integer above 1; got {max_rows!r}")
    if not hasattr(clf, "module_"):
        raise NotFittedError("explain needs a fitted model: call fit, or load one, first")
    frame, fitted_columns = _as_frame(clf, X)
    labels = labels_to_binary(np.asarray(y), clf.classes_, clf.positive_class_)
    if len(labels) != len(frame):
        raise DataError(f"X has {len(frame)} rows but y has {len(labels)}")
    encoder = clf.encoder_
    encoder.check_columns(frame)
    rng = np.random.default_rng(random_state)
    if max_rows is not None and len(frame) > max_rows:
        rows = np.sort(rng.choice(len(frame), size=max_rows, replace=False))
        frame, labels = frame.iloc[rows].reset_index(drop=True), labels[rows]
    if scoring == "roc_auc" and np.unique(labels).size < 2:
        raise DataError("ROC AUC needs both classes among the rows; use scoring='log_loss'")
    used = [c for c in encoder.columns_ if c.role != "dropped"]
    n = len(frame)
    scores = _Scores(clf, frame, fitted_columns, scoring)
    calls = 1 + len(used) * n_repeats
    show = (
        progress if progress is not None else sys.stderr.isatty() and n * calls >= PROGRESS_MIN_WORK
    )
    bar = _progress_bar(calls, bool(show))
    seed = int(rng.integers(0, 2**31 - 1))
    try:
        baseline = scores.score(labels)
        bar.update(1)
        drops = np.empty((len(used), n_repeats), dtype=np.float64)
        for j, info in enumerate(used):
            for r, shuffled in enumerate(permutations(n, n_repeats, seed, j)):
                drops[j, r] = baseline - scores.score(labels, info.name, shuffled)
                bar.update(1)
    finally:
        bar.close()
    if scoring == "log_loss":
        baseline = -baseline  # the log loss itself
    means = drops.mean(axis=1)
    # One shuffle per column says nothing of how the drop varies: no spread, no interval
    # (not a spread of 0, which would read as certainty).
    stds = drops.std(axis=1) if n_repeats > 1 else np.full(len(used), np.nan)
    order = sorted(range(len(used)), key=lambda j: (-means[j], used[j].name))
    columns = [
        ColumnImportance(
            column=used[j].name,
            role=used[j].role,
            importance=float(means[j]),
            std=float(stds[j]),
            low=float(means[j] - 2 * stds[j]),
            high=float(means[j] + 2 * stds[j]),
            rank=rank,
        )
        for rank, j in enumerate(order, 1)
    ]
    unused = [c.name for c in encoder.columns_ if c.role == "dropped"]
    return Importance(scoring, baseline, n, n_repeats, columns, unused)


def _as_frame(clf: BinaryClassifier, X: Any) -> tuple[pd.DataFrame, list[str] | None]:
    """``X`` as a DataFrame with the model's column names, and the names it was fitted
    with (``None``: fitted on an array)."""
    fitted = getattr(clf, "feature_names_in_", None)
    names = None if fitted is None else [str(n) for n in fitted]
    if isinstance(X, pd.DataFrame):
        return X.set_axis([str(c) for c in X.columns], axis=1), names
    array = np.asarray(X)
    if array.ndim != 2:
        raise DataError(f"X must be a 2-D table; got shape {array.shape}")
    columns = names or [f"x{j}" for j in range(array.shape[1])]
    if len(columns) != array.shape[1]:
        raise DataError(f"X has {array.shape[1]} columns; the model was fitted on {len(columns)}")
    return pd.DataFrame(array, columns=columns), names


def permutations(n: int, n_repeats: int, seed: int, column: int) -> list[NDArray[np.int64]]:
    """The row orders column number ``column`` is shuffled into, one per repeat: drawn
    from ``seed`` and the column's number, so no column's shuffles depend on another's."""
    rng = np.random.default_rng([seed, column])
    return [rng.permutation(n) for _ in range(n_repeats)]


class _Scores:
    """The score of the model on the rows, with one column's values put in another row
    order. The rows are encoded once: encoding works row by row and column by column, so
    shuffling a column's encoded inputs (its value, its codes) shuffles the column; the
    network's first layers are then updated by that column's inputs only
    (:class:`~steadyclf.nn.shuffles.ColumnShuffles`), or, where that is not covered,
    the whole network runs on the shuffled inputs."""

    def __init__(
        self, clf: BinaryClassifier, frame: pd.DataFrame, fitted: list[str] | None, scoring: str
    ) -> None:
        self.model = Predictor.from_state(clf.to_state())
        encoder = self.model.encoder
        names = fitted or [f"x{j}" for j in range(int(clf.n_features_in_))]
        # The columns the model ignores are added back as missing, in the fitted order.
        self.x_num, self.x_cat = encoder.transform(frame.reindex(columns=names))
        cats = [c.name for c in encoder.categorical_columns]
        targets = [c.name for c in encoder.target_columns]
        numeric = [c.name for c in encoder.numeric_infos]
        self.inputs = {
            c.name: (
                [j for j, name in enumerate(numeric) if name == c.name],
                [j for j, name in enumerate(cats + targets) if name == c.name],
            )
            for c in encoder.columns_
        }
        self.function = _score_function(scoring)
        network, arch = self.model.network, self.model.network.arch
        # Each shuffle updates the first layers by the shuffled column's inputs only.
        width = arch.n_body_inputs + (arch.hidden[0] if arch.hidden else 1)
        small = self.x_num.shape[0] * arch.n_members * width <= FAST_VALUES
        self.fast = ColumnShuffles.of(network, self.x_num, self.x_cat) if small else None

    def score(
        self, labels: NDArray[np.int64], column: str | None = None, order: Any = None
    ) -> float:
        """The score with ``column`` in row order ``order`` (none: the rows as they are)."""
        if column is None:
            return self._score(labels)
        num, cat = self.inputs[column]
        if self.fast is not None:
            network = self.model.network
            columns = feature_columns(network.arch, network.weights, num, cat)
            if self.fast.covers(columns):
                return self._scored(labels, self.fast.logits(columns, order))
        kept = self.x_num[:, num], self.x_cat[:, cat]  # copies (fancy indexing)
        self.x_num[:, num], self.x_cat[:, cat] = kept[0][order], kept[1][order]
        try:
            return self._score(labels)
        finally:
            self.x_num[:, num], self.x_cat[:, cat] = kept

    def _score(self, labels: NDArray[np.int64]) -> float:
        return self._scored(labels, self.model.network.logits(self.x_num, self.x_cat))

    def _scored(self, labels: NDArray[np.int64], logits: NDArray[np.float64]) -> float:
        return self.function(labels, sigmoid(calibrate(logits, self.model.calibration)))


def _score_function(scoring: str) -> Callable[[NDArray[np.int64], NDArray[np.float64]], float]:
    """Higher is better (so a shuffled column's importance is the drop)."""
    if scoring == "roc_auc":
        return roc_auc
    return lambda y, p: -log_loss(y, p)


class _NoBar:
    def update(self, n: int) -> None:
        """Nothing to show."""

    def close(self) -> None:
        """Nothing to close."""


def _progress_bar(total: int, show: bool) -> Any:
    if not show:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(
        total=total, unit="score", desc="permutation importance", file=sys.stderr, leave=False
    )
