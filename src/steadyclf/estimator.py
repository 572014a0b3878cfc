"""BinaryClassifier: the scikit-learn compatible front of steadyclf."""

from __future__ import annotations

import itertools
import math
import numbers
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_array, validate_data

from .checkpoint import FitContext
from .diagnostics import SATURATION_ROWS, StallDetector
from .evaluation import THRESHOLD_METRICS, binary_metrics, tune_threshold
from .exceptions import (
    DataError,
    DataTypeError,
    NotFittedError,
    ParameterError,
    TrainingDivergedError,
)
from .fused import FusedMLP
from .lr_finder import LRFinderResult, find_lr
from .network import ACTIVATIONS, NORMALIZATIONS, SteadyNet
from .scaling import RunningStats
from .splitting import validation_mask
from .tabular import (
    NUMERIC_ROLES,
    LabelEncoding,
    TabularEncoder,
    check_unique_columns,
    encode_labels,
    two_integer_classes,
)
from .threads import intra_op_threads, threads_for
from .training import OPTIMIZERS, SCHEDULES, Callback, TrainConfig, Trainer

__all__ = ["BinaryClassifier"]

#: Up to this many training rows, the default is full-batch training: each epoch is a
#: single step, which is both the fastest and the most stable choice on small tables.
FULL_BATCH_MAX_ROWS = 8192
#: Mini-batch size used by default above :data:`FULL_BATCH_MAX_ROWS`. A step costs about
#: the same from 256 to 1024 rows (fixed overhead), so 1024 rows with twice the rate of
#: 512 reaches a given accuracy in about half the time (benchmarks/speed.py).
DEFAULT_BATCH_SIZE = 1024
#: From this many training rows the default batch is :data:`LARGE_BATCH_SIZE`: an epoch
#: still has 64 steps or more, each costing less per row (800,000 x 20: 0.38 s an epoch
#: instead of 0.52 s, the same test AUC after the first epoch and at the end).
LARGE_BATCH_MIN_ROWS = 1 << 17
LARGE_BATCH_SIZE = 2048
#: Default Adam learning rates: full-batch steps are few and exact, so they can be larger;
#: the mini-batch rate is DEFAULT_LR_MINI_BATCH at DEFAULT_BATCH_SIZE rows and grows with
#: the batch (3e-3 at 512 rows, 1.2e-2 at 2048), up to the full-batch rate.
DEFAULT_LR_FULL_BATCH = 3e-2
DEFAULT_LR_MINI_BATCH = 6e-3
#: ``validation_fraction='auto'``: rows held out for early stopping, except on small data
#: (trained full batch), which holds none out: on a few hundred rows the validation loss
#: is too noisy a signal to pick the epoch from, so every row trains, the weight decay
#: below regularises and training stops when loss + penalty has converged
#: (benchmarks/small_data.py; the README, "Small data").
DEFAULT_VALIDATION_FRACTION = 0.1
#: ``weight_decay='auto'`` (an L2 penalty in Adam's gradient) in that small-data mode; 0
#: otherwise (mini-batch gradient noise and early stopping regularise larger data, where
#: 1e-2 cost up to 0.03 test AUC on 20,000-row sets in our runs).
SMALL_DATA_WEIGHT_DECAY = 1e-2
#: Largest model we agree to build: a typo such as hidden=(10**9,) fails fast, not in malloc.
MAX_PARAMETERS = 200_000_000
#: Rows encoded at a time when fitting (float64 temporaries of this many rows).
ENCODE_BATCH_ROWS = 1 << 14
#: Rows per forward pass in prediction: the activations of a chunk fit in the CPU cache.
PREDICT_BATCH_ROWS = 1 << 11


class BinaryClassifier(ClassifierMixin, BaseEstimator):
    """An MLP binary classifier that converges on raw, badly scaled tabular inputs.

    Inputs are standardised with statistics fitted on the training data and stored inside
    the network, the output is one logit trained with ``BCEWithLogitsLoss``, and training
    stops early on a validation split with the best weights restored.

    Parameters
    ----------
    hidden : tuple of int, default=(64,)
        Sizes of the hidden layers.
    activation : {'relu', 'sigmoid', 'tanh', 'gelu'}, default='relu'
        Hidden activation; the initialisation matches it (He for ReLU/GELU, Glorot else).
    normalize : {'standardize', 'batchnorm', 'none'}, default='standardize'
        ``'standardize'``: ``(x - mean) / std`` with float64 statistics from the training
        data, held in the model. ``'batchnorm'``: ``nn.BatchNorm1d`` on the inputs.
        ``'none'``: raw inputs (reproduces the classic failure).
    optimizer : {'adam', 'adamw', 'sgd'}, default='adam'
    lr : float, 'auto' or None, default=None
        Learning rate. ``None`` picks 3e-2 for full-batch training and, for mini-batches,
        6e-3 per 1024 rows of batch (1.5e-3 at 256, 1.2e-2 at 2048, at most 3e-2).
        ``'auto'`` runs the learning-rate finder and trains with the value it picks.
    schedule : {'none', 'step', 'cosine', 'onecycle', 'plateau'}, default='plateau'
        Learning-rate schedule. ``'plateau'`` divides the rate by 3 when the monitored loss
        stops improving; ``'step'`` divides it by 10 every quarter of ``max_epochs``.
    max_epochs : int, default=300
    batch_size : int, 'auto' or None, default='auto'
        ``None`` trains full batch; ``'auto'`` is full batch up to 8192 training rows,
        1024 rows per batch above and 2048 from 131072 rows.
    early_stopping : bool, default=True
        Stop when the validation loss (training loss without a validation split) has not
        improved for ``patience`` epochs, and restore the best weights (those of the best
        validation loss; without a validation split, training stops once the training
        loss, plus the L2 penalty of Adam's or SGD's ``weight_decay``, has converged and
        keeps the last weights).
    validation_fraction : float or 'auto', default='auto'
        Share of rows held out for early stopping. Each row's side is decided by a hash of
        its position and ``random_state``, so the split is the same in every mode (in
        memory, streaming, distributed); both classes are sampled at the same rate.
        ``'auto'`` holds out 0.1, except on small data trained full batch (with
        ``early_stopping`` on and no ``threshold_metric`` to tune): every row then trains,
        ``weight_decay='auto'`` regularises, and training stops when the training loss
        plus the L2 penalty has converged. On a few hundred rows this beats picking the epoch on a noisy
        validation loss (see the README, "Small data").
    patience : int, default=10
    pos_weight : None, 'balanced' or float, default=None
        Weight of positive examples in the loss; ``'balanced'`` uses n_negative / n_positive.
    weight_decay : float or 'auto', default='auto'
        L2 penalty added to the gradient (decoupled with ``optimizer='adamw'``). ``'auto'``
        is 1e-2 when ``validation_fraction='auto'`` holds no rows out (small data), else 0.
    random_state : int or None, default=None
    device : {'auto', 'cpu', 'cuda'}, default='auto'
    categorical, numeric, drop : sequence of str or None
        Override the inferred role of DataFrame columns.
    positive : label or None, default=None
        The positive class (``classes_[1]``); ``None`` takes the larger of the two sorted
        labels, as scikit-learn does.
    threshold_metric : {None, 'f1', 'balanced_accuracy'}, default=None
        Tune the decision threshold ``threshold_`` to maximise this metric on the
        validation split (on the training rows when there is none); ``None`` keeps 0.5.
    verbose : int, default=0

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        Labels; ``classes_[1]`` is the positive class.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame with string column names.
    encoder_ : TabularEncoder
        Column roles and vocabularies.
    module_ : torch.nn.Module
        The fitted network (raw columns in, logits out).
    n_iter_ : int
        Epochs run.
    history_ : list of dict
        One row per epoch: ``epoch``, ``train_loss``, ``train_accuracy``, ``valid_loss``,
        ``valid_accuracy`` (with a validation split), ``lr``, ``seconds``, ``grad_norm``
        (of the epoch's last step); ``warnings`` (kinds) on the epoch a stall warning was
        raised; ``lr_finder`` (the picked rate) on the first row with ``lr='auto'``.
    lr_ : float
        The learning rate training started with (the finder's pick with ``lr='auto'``).
    lr_finder_ : LRFinderResult
        The range test behind ``lr_``; only with ``lr='auto'``.
    warnings_ : list of dict
        What the stall detector saw during training (``epoch``, ``kind``, ``message``,
        ``cause``, ``fix``); empty when training went well. Printed when ``verbose``.
    threshold_ : float
        Probability above which ``predict`` returns the positive class.
    validation_metrics_ : dict
        :func:`~steadyclf.evaluation.binary_metrics` on the validation split at
        ``threshold_`` (empty without a validation split).
    validation_fraction_ : float
        The share of rows held out (``validation_fraction`` with ``'auto'`` resolved; 0
        when none were: early stopping off, or too few rows to hold some out).
    weight_decay_ : float
        The weight decay used (``weight_decay`` with ``'auto'`` resolved).

    Examples
    --------
    >>> from steadyclf import BinaryClassifier
    >>> from steadyclf.datasets import heart_rate
    >>> X, y = heart_rate(n=300, random_state=0)
    >>> clf = BinaryClassifier(random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.95
    True
    """

    def __init__(
        self,
        hidden: Sequence[int] = (64,),
        activation: str = "relu",
        normalize: str = "standardize",
        optimizer: str = "adam",
        lr: float | str | None = None,
        schedule: str = "plateau",
        max_epochs: int = 300,
        batch_size: int | str | None = "auto",
        early_stopping: bool = True,
        validation_fraction: float | str = "auto",
        patience: int = 10,
        pos_weight: float | str | None = None,
        weight_decay: float | str = "auto",
        random_state: int | None = None,
        device: str = "auto",
        categorical: Sequence[str] | None = None,
        numeric: Sequence[str] | None = None,
        drop: Sequence[str] | None = None,
        positive: Any = None,
        threshold_metric: str | None = None,
        verbose: int = 0,
    ) -> None:
        self.hidden = hidden
        self.activation = activation
        self.normalize = normalize
        self.optimizer = optimizer
        self.lr = lr
        self.schedule = schedule
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.pos_weight = pos_weight
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.device = device
        self.categorical = categorical
        self.numeric = numeric
        self.drop = drop
        self.positive = positive
        self.threshold_metric = threshold_metric
        self.verbose = verbose

    # -- scikit-learn plumbing -------------------------------------------------------------
    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        tags.non_deterministic = False
        return tags

    # -- parameter validation ---------------------------------------------------------------
    def _validate_params_(self) -> None:
        """Check every parameter before any work, with a message naming it."""
        for name, allowed in (
            ("activation", ACTIVATIONS),
            ("normalize", NORMALIZATIONS),
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("device", ("auto", "cpu", "cuda")),
        ):
            if getattr(self, name) not in allowed:
                options = ", ".join(map(repr, allowed))
                raise ParameterError(
                    f"{name} must be one of {options}; got {getattr(self, name)!r}"
                )
        rules: list[tuple[str, bool, str]] = [
            (
                "hidden",
                isinstance(self.hidden, (list, tuple)) and all(map(_positive_int, self.hidden)),
                "a tuple of positive integers",
            ),
            (
                "lr",
                self.lr is None or self.lr == "auto" or _positive_real(self.lr),
                "a positive number, 'auto' or None",
            ),
            ("max_epochs", _positive_int(self.max_epochs), "a positive integer"),
            (
                "batch_size",
                self.batch_size in (None, "auto") or _positive_int(self.batch_size),
                "a positive integer, 'auto' or None",
            ),
            (
                "validation_fraction",
                self.validation_fraction == "auto" or _real_in(self.validation_fraction, 0.0, 1.0),
                "in [0, 1) or 'auto'",
            ),
            ("patience", _positive_int(self.patience), "a positive integer"),
            (
                "pos_weight",
                self.pos_weight in (None, "balanced") or _positive_real(self.pos_weight),
                "None, 'balanced' or a positive number",
            ),
            (
                "weight_decay",
                self.weight_decay == "auto" or _real_in(self.weight_decay, 0.0, math.inf),
                "a non-negative number or 'auto'",
            ),
            (
                "threshold_metric",
                self.threshold_metric is None or self.threshold_metric in THRESHOLD_METRICS,
                f"None or one of {', '.join(map(repr, THRESHOLD_METRICS))}",
            ),
        ]
        for name, ok, expected in rules:
            if not ok:
                raise ParameterError(f"{name} must be {expected}; got {getattr(self, name)!r}")

    def _check_model_size(self, n_inputs: int) -> None:
        sizes = [n_inputs, *self.hidden, 1]
        n_params = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
        if n_params > MAX_PARAMETERS:
            raise ParameterError(
                f"the network would have {n_params:,} parameters (hidden={tuple(self.hidden)!r}), "
                f"more than the {MAX_PARAMETERS:,} steadyclf allows; use smaller hidden layers"
            )

    def _resolve_device(self) -> torch.device:
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ParameterError("device='cuda' was requested but CUDA is not available")
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    # -- input conversion --------------------------------------------------------------------
    def _as_frame(self, X: Any, *, reset: bool) -> pd.DataFrame:
        """Validate feature names/count the scikit-learn way and return a DataFrame."""
        checked = self._validated(X, reset=reset)
        if isinstance(checked, pd.DataFrame):
            return checked
        array, names = checked
        return pd.DataFrame(array, columns=names, copy=False)

    def _validated(
        self, X: Any, *, reset: bool
    ) -> pd.DataFrame | tuple[NDArray[np.float64], list[str]]:
        """A DataFrame as is, or any other input as a float array and column names."""
        try:
            if isinstance(X, pd.DataFrame):
                check_unique_columns(X)  # before scikit-learn's multi-line message
                validate_data(self, X, reset=reset, skip_check_array=True)
                if X.shape[0] == 0:
                    raise DataError("the data has no rows")
                return X.set_axis([str(c) for c in X.columns], axis=1)
            # check_array costs ~0.2 ms, most of a one-row prediction: skip it for input
            # that already passes its checks (it still gives the errors for the rest).
            array = (
                X
                if _plain_float_array(X)
                else check_array(X, dtype=_FLOATS, ensure_all_finite="allow-nan", input_name="X")
            )
            validate_data(self, array, reset=reset, skip_check_array=True)
        except (ValueError, TypeError) as exc:
            if isinstance(exc, DataError):
                raise
            if str(exc).startswith("could not convert string to float"):
                raise DataError(
                    f"X holds text ({str(exc).split(': ', 1)[-1]}); an array must be numeric: "
                    "pass a pandas DataFrame to use text columns as categories"
                ) from None
            # scikit-learn's message is kept whole (its checks match on it); the type
            # becomes ours so callers can tell bad input from a bug.
            raise (DataTypeError if isinstance(exc, TypeError) else DataError)(str(exc)) from None
        if not reset and hasattr(self, "feature_names_in_"):
            names = [str(n) for n in self.feature_names_in_]
        else:
            names = [f"x{j}" for j in range(array.shape[1])]
        return array, names

    def _raw_inputs(self, X: Any, *, reset: bool) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        # No copies (_logits reads x_num chunk by chunk), and no pandas for a numeric array
        # when the model has only numeric inputs: predicting one row then takes ~0.3 ms.
        checked = self._validated(X, reset=reset)
        if isinstance(checked, pd.DataFrame):
            return self.encoder_.transform(checked, copy=False)
        array, names = checked
        direct = self.encoder_.transform_array(array, names)
        if direct is not None:
            return direct
        frame = pd.DataFrame(array, columns=names, copy=False)
        return self.encoder_.transform(frame, copy=False)

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, *, callbacks: Sequence[Callback] = ()) -> BinaryClassifier:
        """Fit the network on ``X`` (array or DataFrame) and binary labels ``y``.

        Returns
        -------
        self
        """
        self._validate_params_()
        frame = self._as_frame(X, reset=True)
        labels = self._encode_target(y, len(frame))
        self.classes_ = labels.classes
        seed = (
            self.random_state
            if self.random_state is not None
            else int(np.random.default_rng().integers(0, 2**31 - 1))
        )
        self.encoder_ = TabularEncoder(
            categorical=self.categorical or (), numeric=self.numeric or (), drop=self.drop or ()
        ).fit(frame)
        # x_num may be a read-only view of X: nothing below writes to it.
        x_num, x_cat = self.encoder_.transform(frame, copy=False)
        in_valid = self._split(labels.encoded, seed)
        self.weight_decay_ = self._weight_decay(len(labels.encoded))
        train_rows = ~in_valid if in_valid is not None else slice(None)
        y_train = labels.encoded[train_rows]
        device = self._resolve_device()
        # The statistics and the features read x_num a chunk of training rows at a time.
        # The training rows are copied only when a value is missing (for the medians and
        # the imputed statistics), and freed before the features are encoded.
        train_index = np.arange(x_num.shape[0])[train_rows]
        raw_stats = RunningStats.from_array(x_num, rows=train_index)  # for the stall detector too
        x_train = x_num[:0] if self._no_missing_values() else x_num[train_index]
        had_missing = self._missing_columns(x_train)
        self._check_model_size(
            x_num.shape[1] + int(had_missing.sum()) + sum(self.encoder_.vocab_sizes)
        )
        module = self._build_module(x_train, x_cat[:0], y_train, seed, raw_stats, had_missing)
        module = module.to(device)
        del x_train
        nan_free = self._no_missing_values()
        train = self._features(module, x_num, x_cat, train_rows, y_train, device, nan_free)
        valid = None
        if in_valid is not None:
            y_valid = labels.encoded[in_valid]
            valid = self._features(module, x_num, x_cat, in_valid, y_valid, device, nan_free)
        stall = self._stall_detector(raw_stats, y_train, train[0])
        # The stall detector runs first, so user callbacks (e.g. a Checkpoint) see whole rows.
        config = self._train_config(len(y_train), y_train, seed, (stall, *callbacks))
        if self.lr == "auto":
            self.lr_finder_ = self._find_lr(module, train, config, seed)
            config.lr = self.lr_finder_.lr
        trainer = Trainer(module.body, config)
        context = FitContext(
            self.get_params(deep=False),
            seed,
            module,
            self.encoder_.to_dict(),
            self.classes_.tolist(),
            (x_num, x_cat, labels.encoded),
        )
        for cb in callbacks:  # e.g. a Checkpoint checks it resumes the same run
            getattr(cb, "on_fit_begin", lambda c: None)(context)
        with _seeded(seed):
            try:
                trainer.fit(train, valid)
            except TrainingDivergedError:
                # The trainer kept the best finite weights: the estimator holds that model
                # (so the CLI can save it) and the error still says what happened.
                if trainer.history:
                    self._finish_fit(module, trainer, config)
                    self._fit_threshold(x_num, x_cat, labels.encoded, in_valid)
                raise
        self._finish_fit(module, trainer, config)
        self._fit_threshold(x_num, x_cat, labels.encoded, in_valid)
        return self

    def _finish_fit(self, module: SteadyNet, trainer: Trainer, config: TrainConfig) -> None:
        # Predictions run in float64: they then do not depend on how rows are batched
        # (float32 matrix products round differently for different batch shapes).
        self.module_ = module.double().eval()
        self.history_ = trainer.history
        self.n_iter_ = len(trainer.history)
        self.lr_ = config.lr
        if self.lr == "auto" and trainer.history:
            trainer.history[0]["lr_finder"] = config.lr
        self.warnings_ = [
            w.to_dict()
            for cb in config.callbacks
            if isinstance(cb, StallDetector)
            for w in cb.warnings
        ]
        self.batch_size_ = config.batch_size
        self.best_epoch_ = trainer.best_epoch
        self.threshold_ = 0.5

    def _fit_threshold(
        self,
        x_num: NDArray[np.float64],
        x_cat: NDArray[np.int64],
        y: NDArray[np.float32],
        in_valid: NDArray[np.bool_] | None,
    ) -> None:
        """Tune ``threshold_`` and score the validation split with the final weights."""
        rows = in_valid if in_valid is not None else np.ones(len(y), dtype=bool)
        if self.threshold_metric is None and in_valid is None:
            self.validation_metrics_: dict[str, Any] = {}
            return
        proba = expit(self._logits(x_num[rows], x_cat[rows]))  # no overflow warning
        if self.threshold_metric is not None:
            self.threshold_ = tune_threshold(y[rows], proba, self.threshold_metric)
        self.validation_metrics_ = (
            binary_metrics(y[rows], proba, self.threshold_) if in_valid is not None else {}
        )

    def _encode_target(self, y: Any, n_rows: int) -> LabelEncoding:
        if y is None:
            raise DataError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        values = np.asarray(y.to_numpy() if isinstance(y, (pd.Series, pd.DataFrame)) else y)
        if values.ndim == 2 and values.shape[1] == 1:
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected; it was raveled.",
                DataConversionWarning,
                stacklevel=3,
            )
            values = values.ravel()
        if values.ndim != 1:
            raise DataError(f"y must be one column; got shape {values.shape}")
        if len(values) != n_rows:
            raise DataError(f"X has {n_rows} rows but y has {len(values)}")
        missing = pd.isna(values)
        if missing.any():
            rows = np.flatnonzero(missing)
            raise DataError(
                f"the target has {rows.size} missing values (first rows: {rows[:5].tolist()})"
            )
        if values.dtype.kind in "fc" and np.isinf(values).any():
            row = int(np.flatnonzero(np.isinf(values))[0])
            raise DataError(f"Input y contains infinity (first at row {row})")
        if two_integer_classes(values):  # binary for sure: skip type_of_target's sort
            return encode_labels(values, positive=self.positive)
        try:
            # Huge floats such as 1e300 make the integer test inside warn about the cast.
            with np.errstate(invalid="ignore", over="ignore"):
                kind = type_of_target(values, input_name="y", raise_unknown=True)
        except (ValueError, TypeError) as exc:
            raise (DataTypeError if isinstance(exc, TypeError) else DataError)(str(exc)) from None
        if kind in ("continuous", "continuous-multioutput"):
            raise DataError(
                f"Unknown label type: the target looks {kind}; steadyclf needs two classes"
            )
        if kind not in ("binary",):
            seen = np.unique(values)
            raise DataError(
                f"Only binary classification is supported. The type of the target is {kind}: "
                f"values seen {seen[:10].tolist()!r}{' ...' if seen.size > 10 else ''}"
            )
        return encode_labels(values, positive=self.positive)

    def _split(self, y: NDArray[np.float32], seed: int) -> NDArray[np.bool_] | None:
        """Validation rows, or None when there is too little data to hold some out."""
        self.validation_fraction_ = 0.0  # until rows are held out
        fraction = self._validation_fraction(len(y))
        if not self.early_stopping or fraction == 0:
            return None
        mask = validation_mask(np.arange(len(y)), fraction, seed)
        n_valid_pos = int(y[mask].sum())
        n_valid_neg = int(mask.sum()) - n_valid_pos
        n_train_pos = int(y[~mask].sum())
        n_train_neg = int((~mask).sum()) - n_train_pos
        if (
            min(n_valid_pos, n_valid_neg) < 1
            or min(n_train_pos, n_train_neg) < 1
            or mask.sum() < 10
        ):
            return None
        self.validation_fraction_ = fraction
        return mask

    def _small_data_mode(self, n_rows: int) -> bool:
        """Whether the 'auto' defaults train on every row with weight decay.

        That is small data (trained full batch) with early stopping on and the holdout
        left to ``'auto'``; a threshold to tune needs held-out rows, so it keeps them.
        """
        return (
            bool(self.early_stopping)
            and self.validation_fraction == "auto"
            and self.threshold_metric is None
            and _default_batch_size(n_rows, self.batch_size) is None
        )

    def _validation_fraction(self, n_rows: int) -> float:
        if self.validation_fraction != "auto":
            return float(self.validation_fraction)
        return 0.0 if self._small_data_mode(n_rows) else DEFAULT_VALIDATION_FRACTION

    def _weight_decay(self, n_rows: int) -> float:
        if self.weight_decay != "auto":
            return float(self.weight_decay)
        return SMALL_DATA_WEIGHT_DECAY if self._small_data_mode(n_rows) else 0.0

    def _no_missing_values(self) -> bool:
        """Whether the encoder saw no missing numeric value in the data it was fitted on."""
        return not any(c.n_missing for c in self.encoder_.columns_ if c.role in NUMERIC_ROLES)

    def _missing_columns(self, x_num: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Which numeric columns of ``x_num`` (rows of the fitted data) have a NaN."""
        if self._no_missing_values():  # no scan needed
            return np.zeros(x_num.shape[1], dtype=bool)
        return np.asarray(np.isnan(x_num).any(axis=0), dtype=bool)

    def _build_module(
        self,
        x_num: NDArray[np.float64],
        x_cat: NDArray[np.int64],
        y: NDArray[np.float32],
        seed: int,
        raw_stats: RunningStats | None = None,
        had_missing: NDArray[np.bool_] | None = None,
    ) -> SteadyNet:
        """The network with its preprocessing fitted on the training rows.

        ``raw_stats`` (of ``x_num`` ignoring NaN), when given, are reused as the
        standardisation statistics if no value is missing (imputation changes nothing);
        ``x_num`` may then hold no rows at all.
        """
        if had_missing is None:
            had_missing = self._missing_columns(x_num)
        median = np.zeros(x_num.shape[1])
        if had_missing.any():  # medians (a sort per column) only where something is missing
            median[had_missing] = np.nanmedian(x_num[:, had_missing], axis=0)
        median = np.where(np.isnan(median), 0.0, median)
        stats = None
        if self.normalize == "standardize" and x_num.shape[1]:
            if had_missing.any():
                stats = RunningStats.from_array(np.where(np.isnan(x_num), median, x_num))
            else:
                stats = raw_stats or RunningStats.from_array(x_num)
        return self._module_from_statistics(
            had_missing, median, stats, float(y.mean()), self._pos_weight_value(y), seed
        )

    def _module_from_statistics(
        self,
        had_missing: ArrayLike,
        median: NDArray[np.float64],
        stats: RunningStats | None,
        positive_rate: float,
        pos_weight: float | None,
        seed: int,
    ) -> SteadyNet:
        """The network, with its fitted buffers set from statistics computed elsewhere.

        Shared by in-memory fitting and :mod:`steadyclf.streaming`, which computes the
        same statistics in passes over files.
        """
        enc = self.encoder_
        had_missing = np.asarray(had_missing, dtype=bool)
        pos_rate = float(np.clip(positive_rate, 1e-6, 1 - 1e-6))
        prior = math.log(pos_rate / (1 - pos_rate)) + math.log(pos_weight or 1.0)
        with _seeded(seed):
            module = SteadyNet(
                len(enc.numeric_columns),
                int(had_missing.sum()),
                enc.vocab_sizes,
                tuple(int(h) for h in self.hidden),
                self.activation,
                batchnorm=self.normalize == "batchnorm",
                prior_logit=prior,
            )
        module.encoder.impute.median.copy_(torch.from_numpy(np.where(had_missing, median, 0.0)))
        module.encoder.impute.missing_columns.copy_(torch.from_numpy(np.flatnonzero(had_missing)))
        if stats is not None:
            module.encoder.normalize.mean.copy_(torch.from_numpy(stats.mean))
            module.encoder.normalize.scale.copy_(torch.from_numpy(stats.scale))
        return module

    def _stall_detector(
        self, stats: RunningStats, y: NDArray[np.float32], features: torch.Tensor
    ) -> StallDetector:
        """The default training monitor, told the raw feature scales so it can name a cause."""
        every = max(1, features.shape[0] // SATURATION_ROWS)
        return StallDetector(
            float(y.mean()),
            pos_weight=self._pos_weight_value(y),
            feature_names=self.encoder_.numeric_columns,
            feature_mean=stats.mean.tolist(),
            feature_std=stats.std.tolist(),
            normalized=self.normalize != "none",
            activation=self.activation,
            sample=features[::every][:SATURATION_ROWS],
            verbose=bool(self.verbose),
        )

    @staticmethod
    def _find_lr(
        module: SteadyNet, train: tuple[torch.Tensor, torch.Tensor], config: TrainConfig, seed: int
    ) -> LRFinderResult:
        """Range test on a copy of the network with the settings training will use."""
        with _seeded(seed):
            return find_lr(
                module.body,
                *train,
                optimizer=config.optimizer,
                batch_size=config.batch_size,
                pos_weight=config.pos_weight,
                seed=seed,
            )

    def _pos_weight_value(self, y: NDArray[np.float32]) -> float | None:
        if self.pos_weight is None:
            return None
        if self.pos_weight == "balanced":
            n_pos = float(y.sum())
            return (len(y) - n_pos) / max(n_pos, 1.0)
        return float(self.pos_weight)

    @staticmethod
    @torch.no_grad()
    def _features(
        module: SteadyNet,
        x_num: NDArray[np.float64],
        x_cat: NDArray[np.int64],
        rows: NDArray[np.bool_] | slice,
        y: NDArray[np.float32],
        device: torch.device,
        nan_free: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode ``x_num[rows]`` once (the encoding is fixed during training), in chunks.

        Only the float32 features are allocated whole: the selected rows and the float64
        intermediate values of the encoder exist for one chunk at a time (and ``x_num``
        may be a read-only view, float32 or float64).
        """
        index = np.arange(x_num.shape[0])[rows]
        encoder = module.encoder
        width = encoder.n_features_out
        features = torch.empty((index.size, width), dtype=torch.float32, device=device)
        # Numeric inputs only and nothing to impute: the encoder's arithmetic in place, in
        # one reused float64 buffer (chunks holding a NaN still go through the encoder).
        plain = not encoder.categorical.sizes and not encoder.impute.missing_columns.numel()
        shape = (min(index.size, ENCODE_BATCH_ROWS), x_num.shape[1])
        values = torch.empty(shape, dtype=torch.float64, device=device)
        with intra_op_threads(1):  # elementwise work on cache-sized chunks
            for start in range(0, index.size, ENCODE_BATCH_ROWS):
                chunk = index[start : start + ENCODE_BATCH_ROWS]
                out = features[start : start + chunk.size]
                if plain:
                    block = values[: chunk.size]
                    block.copy_(torch.from_numpy(np.ascontiguousarray(x_num[chunk])))
                    if nan_free or not bool(torch.isnan(block).any()):
                        out.copy_(block.sub_(encoder.normalize.mean).div_(encoder.normalize.scale))
                        continue
                num = torch.tensor(x_num[chunk], dtype=torch.float64, device=device)
                cat = torch.tensor(x_cat[chunk], dtype=torch.int64, device=device)
                out.copy_(encoder(num, cat))
        return features, torch.tensor(y, dtype=torch.float32, device=device)

    def _train_config(
        self, n_train: int, y: NDArray[np.float32], seed: int, callbacks: Sequence[Callback]
    ) -> TrainConfig:
        batch_size = _default_batch_size(n_train, self.batch_size)
        # With lr='auto', fit replaces the default by the learning-rate finder's pick.
        lr = _default_lr(batch_size) if self.lr in (None, "auto") else float(self.lr)
        return TrainConfig(
            lr=lr,
            max_epochs=int(self.max_epochs),
            batch_size=batch_size,
            optimizer=self.optimizer,
            schedule=self.schedule,
            weight_decay=self.weight_decay_,
            early_stopping=bool(self.early_stopping),
            patience=int(self.patience),
            pos_weight=self._pos_weight_value(y),
            seed=seed,
            callbacks=tuple(callbacks),
        )

    # -- prediction --------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def decision_function(self, X: Any) -> NDArray[np.float64]:
        """Logits (log odds of ``classes_[1]``), shape ``(n,)``."""
        self._check_fitted()
        x_num, x_cat = self._raw_inputs(X, reset=False)
        return self._logits(x_num, x_cat)

    @torch.inference_mode()
    def _logits(self, x_num: NDArray[np.float64], x_cat: NDArray[np.int64]) -> NDArray[np.float64]:
        """Logits in chunks of :data:`PREDICT_BATCH_ROWS` rows, written into one array.

        Each chunk is copied once (``x_num`` may be a read-only view of the caller's data)
        and its intermediate activations stay in the CPU cache.
        """
        module = self.module_
        if module.training:  # eval() walks every submodule: ~0.1 ms per call
            module.eval()
        out = np.empty(x_num.shape[0], dtype=np.float64)
        rows = min(x_num.shape[0], PREDICT_BATCH_ROWS)
        with intra_op_threads(threads_for(rows, module)):
            if not self._logits_fast(x_num, x_cat, out):
                self._logits_general(x_num, x_cat, out)
        return out

    def _logits_general(
        self, x_num: NDArray[np.float64], x_cat: NDArray[np.int64], out: NDArray[np.float64]
    ) -> None:
        module = self.module_
        device = next(module.parameters()).device
        out_tensor = torch.from_numpy(out)
        for start in range(0, x_num.shape[0], PREDICT_BATCH_ROWS):
            stop = start + PREDICT_BATCH_ROWS
            num = torch.tensor(x_num[start:stop], dtype=torch.float64, device=device)
            cat = torch.tensor(x_cat[start:stop], dtype=torch.int64, device=device)
            out_tensor[start:stop] = module(num, cat)

    def _logits_fast(
        self, x_num: NDArray[np.float64], x_cat: NDArray[np.int64], out: NDArray[np.float64]
    ) -> bool:
        """The module's forward by hand, for the common model: numeric inputs only, none
        missing, a plain MLP body on the CPU. Same operations (so the same numbers), but
        into buffers reused from chunk to chunk. Returns False when it does not apply.
        """
        module = self.module_
        encoder = module.encoder
        if (
            x_cat.shape[1]
            or encoder.categorical.sizes
            or encoder.impute.missing_columns.numel()
            or encoder.normalize.mean.device.type != "cpu"
        ):
            return False
        body = FusedMLP.from_module(module.body)
        if body is None or not (_all_finite(x_num) or not np.isnan(x_num).any()):
            return False
        mean, scale = encoder.normalize.mean, encoder.normalize.scale
        dtype = body._weights[0].dtype
        rows = min(x_num.shape[0], PREDICT_BATCH_ROWS)
        chunk = np.empty((rows, x_num.shape[1]), dtype=np.float64)
        values = torch.from_numpy(chunk)
        features = torch.empty(values.shape, dtype=torch.float32)
        inputs = torch.empty(values.shape, dtype=dtype)
        out_tensor = torch.from_numpy(out)
        for start in range(0, x_num.shape[0], PREDICT_BATCH_ROWS):
            n = min(PREDICT_BATCH_ROWS, x_num.shape[0] - start)
            np.copyto(chunk[:n], x_num[start : start + n])
            # As InputEncoder: (x - mean) / scale in float64, float32 features, and the
            # body's dtype from there (SteadyNet.forward).
            values[:n].sub_(mean).div_(scale)
            features[:n].copy_(values[:n])
            inputs[:n].copy_(features[:n])
            body.forward_into(inputs[:n], out_tensor[start : start + n])
        return True

    def predict_proba(self, X: Any) -> NDArray[np.float64]:
        """Probabilities of ``classes_[0]`` and ``classes_[1]``, shape ``(n, 2)``."""
        p = expit(self.decision_function(X))
        proba = np.empty((p.shape[0], 2), dtype=np.float64)
        np.subtract(1.0, p, out=proba[:, 0])
        proba[:, 1] = p
        return proba

    def predict(self, X: Any) -> NDArray[Any]:
        """Predicted labels from ``classes_``, using the decision threshold ``threshold_``."""
        proba = self.predict_proba(X)[:, 1]
        return self.classes_[(proba > self.threshold_).astype(np.int64)]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save the fitted model as a directory (see :func:`steadyclf.persistence.save`).

        ``steadyclf.load(path)`` gives back an estimator with the same predictions. The
        files hold tensors and JSON only: loading never runs code from them.
        """
        from .persistence import save

        self._check_fitted()
        return save(self, path)


#: Input dtypes kept as they are (float32 data is not doubled in memory: the encoder
#: converts it to float64 a chunk at a time); anything else becomes float64.
_FLOATS = (np.float64, np.float32)


def _default_batch_size(n_train: int, batch_size: int | str | None) -> int | None:
    """Rows per step: ``None`` is full batch (small data, or a batch as large as the data)."""
    if batch_size == "auto":
        if n_train <= FULL_BATCH_MAX_ROWS:
            return None
        return LARGE_BATCH_SIZE if n_train >= LARGE_BATCH_MIN_ROWS else DEFAULT_BATCH_SIZE
    if batch_size is None or int(batch_size) >= n_train:
        return None
    return int(batch_size)


def _default_lr(batch_size: int | None) -> float:
    """The Adam rate for ``batch_size`` rows per step (linear in the batch, then capped)."""
    if batch_size is None:
        return DEFAULT_LR_FULL_BATCH
    return min(DEFAULT_LR_FULL_BATCH, DEFAULT_LR_MINI_BATCH * batch_size / DEFAULT_BATCH_SIZE)


def _plain_float_array(X: Any) -> bool:
    """A non-empty 2-D float ndarray without inf: what ``check_array`` would return as is."""
    return (
        type(X) is np.ndarray
        and X.ndim == 2
        and X.dtype in _FLOATS
        and X.shape[0] > 0
        and X.shape[1] > 0
        and (_all_finite(X) or not np.isinf(X).any())
    )


def _all_finite(x: NDArray[np.floating]) -> bool:
    """True when ``x`` has no NaN and no inf (one pass, no temporary array).

    A sum is NaN or infinite when any term is (or when it overflows: then the caller
    checks precisely).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(x.sum()))


def _positive_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) > 0


def _positive_real(value: Any) -> bool:
    return _real_in(value, 0.0, math.inf) and float(value) > 0


def _real_in(value: Any, low: float, high: float) -> bool:
    """``low <= value < high`` for a real number that is not a bool."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and low <= float(value) < high
    )


class _seeded:
    """Seed torch's global generator for a block, restoring its state afterwards."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        self._state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc: object) -> None:
        torch.random.set_rng_state(self._state)
