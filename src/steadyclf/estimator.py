"""BinaryClassifier: the scikit-learn compatible front of steadyclf.

The estimator validates its inputs and parameters, hands the rows to the one training
pipeline (:func:`steadyclf.pipeline.fit_source`: a DataFrame is a source with one batch,
files are read in passes) and keeps what it returns as fitted attributes, all at once when
the fit succeeded. Prediction encodes new rows with the fitted schema and runs the network
in float64. :meth:`BinaryClassifier.to_state` and :meth:`BinaryClassifier.from_state`
convert to and from the plain model state that :mod:`steadyclf.persistence` reads and
writes.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_array, validate_data

from .exceptions import (
    DataError,
    DataTypeError,
    NotFittedError,
    TrainingDivergedError,
)
from .io.sources import FrameSource, default_memory_budget, open_data, parse_memory_size
from .io.tables import check_unique_columns
from .nn.modules import SteadyNet, mean_probability_logit, soft_clip_
from .nn.spec import Architecture
from .nn.step import FusedMLP
from .nn.threads import intra_op_threads, threads_for
from .persistence import ModelState
from .pipeline import FitResult, check_device, fit_source
from .policy import validate_params
from .schema.encoder import TabularEncoder
from .schema.labels import LabelEncoding, encode_labels, two_integer_classes
from .train.trainer import Callback

__all__ = ["BinaryClassifier"]

#: Rows per forward pass in prediction: the activations of a chunk fit in the CPU cache.
PREDICT_BATCH_ROWS = 1 << 11
#: Bytes of data held at once when fitting on data in memory (the data is there already).
IN_MEMORY_BUDGET = 1 << 40


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
    normalize : {'robust', 'standardize', 'batchnorm', 'none'}, default='robust'
        ``'robust'``: ``(x - median) / s`` with exact float64 quantiles of the training
        data, ``s`` the 5-95 % spread in standard deviations of a normal distribution,
        then the smooth clipping ``z / sqrt(1 + (z / 3)**2)``: an extreme value (a
        sentinel such as 1e308, a unit error) moves neither the scaling nor the network.
        Held in the model.
        ``'standardize'``: ``(x - mean) / std``. ``'batchnorm'``: ``nn.BatchNorm1d`` on the
        inputs. ``'none'``: raw inputs (reproduces the classic failure).
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
    calibration : {'auto', 'none', 'temperature', 'platt'}, default='auto'
        How probabilities are calibrated on the held-out rows (see
        :mod:`steadyclf.calibration`): ``sigmoid(scale * logit)`` (temperature) or
        ``sigmoid(scale * logit + bias)`` (Platt), fitted by minimising their log loss.
        ``'auto'`` keeps the better of the two only when, fitted on one half of the
        held-out rows and scored on the other (both ways), it lowers the log loss by
        more than the noise of that comparison; else no map. Without held-out rows
        (small data trains on every row) probabilities are not calibrated.
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
    plan_ : dict
        Every data-dependent default as resolved for this fit (batch size, learning
        rate, hold-out, weight decay, small-data mode...; see :mod:`steadyclf.policy`),
        the same whether the data was in memory or read from files.
    data_ : dict
        How the data was read: rows (in all, training, held out, dropped for a missing
        target), whether the encoded rows were held in memory or streamed, processes,
        steps per epoch.
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
    calibration_ : dict
        How probabilities follow from the network's logit ``z``:
        ``sigmoid(scale * z + bias)`` (``method`` 'none': scale 1, bias 0), with why
        (``reason``), on how many held-out rows (``n_rows``) and, when a map was
        considered, log loss, Brier score and expected calibration error on those rows
        ``before`` and ``after`` it.
    threshold_ : float
        Probability above which ``predict`` returns the positive class.
    validation_metrics_ : dict
        :func:`~steadyclf.evaluation.binary_metrics` of the calibrated probabilities on
        the validation split at ``threshold_`` (empty without a validation split), with
        ``'calibration'``: the method and the metrics before and after it.
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
        normalize: str = "robust",
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
        calibration: str = "auto",
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
        self.calibration = calibration
        self.verbose = verbose

    # -- scikit-learn plumbing -------------------------------------------------------------
    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        tags.non_deterministic = False
        return tags

    def check_params(self) -> BinaryClassifier:
        """Check every parameter (see :func:`steadyclf.policy.validate_params`); ``self``."""
        validate_params(self.get_params(deep=False))
        return self

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
                validate_data(self._checked_by(reset), X, reset=reset, skip_check_array=True)
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
            validate_data(self._checked_by(reset), array, reset=reset, skip_check_array=True)
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
        if hasattr(self, "feature_names_in_") and hasattr(self, "encoder_") and not reset:
            names = [str(n) for n in self.feature_names_in_]
        else:
            names = [f"x{j}" for j in range(array.shape[1])]
        return array, names

    def _checked_by(self, reset: bool) -> BaseEstimator:
        """Whom scikit-learn's name and count checks update: at fit time a stand-in, so
        that the fitted attributes are set only once the fit succeeded."""
        return _Probe() if reset else self

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
        self.check_params()
        frame = self._as_frame(X, reset=True)
        labels = self._encode_target(y, len(frame))
        target = _free_name("target", frame.columns)
        source = FrameSource(frame, labels.encoded, target, name="the data")
        result = self._run(
            source, target, labels.classes, callbacks, budget=IN_MEMORY_BUDGET, context=None
        )
        self._apply(result, feature_names=self._input_names(X))
        return self

    def fit_files(
        self,
        data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        target: str,
        *,
        stream: bool | None = None,
        memory_budget: int | str | None = None,
        drop_missing_target: bool = False,
        callbacks: Sequence[Callback] = (),
        context: Any = "auto",
    ) -> BinaryClassifier:
        """Fit on data files: CSV/TSV/Parquet, a directory of Parquet files or a glob.

        The file is read into memory, or in passes in bounded memory (``stream=True``; by
        default for a directory, a glob, under torchrun, or when the file would need more
        than ``memory_budget`` in memory). Either way the same pipeline trains with the
        same defaults: the choice changes how the rows are read, not the model.
        ``data_`` tells which reading was used and why.

        Parameters
        ----------
        data : path, glob or list of paths
        target : str
            The label column.
        stream : bool or None
            Read in passes (True), at once (False), or decide from the size (None).
        memory_budget : int or str, optional
            Bytes (``"200MB"``...) for data held at once; default half the available RAM.
        drop_missing_target : bool
            Skip rows without a label instead of refusing them.
        callbacks : sequence of Callback
            As for :meth:`fit` (checkpoints, progress...).
        context : DistributedContext, None or 'auto'
            The process group; 'auto' joins torchrun's when its environment is set. Every
            process runs this same call and ends with the same model.

        Examples
        --------
        >>> clf = BinaryClassifier().fit_files("data/*.parquet", "label")  # doctest: +SKIP
        """
        from .train.distributed import init_from_env

        self.check_params()
        budget = (
            default_memory_budget() if memory_budget is None else parse_memory_size(memory_budget)
        )
        ctx = init_from_env(self.device) if context == "auto" else context
        reading = open_data(data, stream=stream or ctx is not None, budget=budget)
        result = self._run(
            reading.source,
            target,
            None,
            callbacks,
            budget=budget,
            context=ctx,
            drop_missing_target=drop_missing_target,
        )
        result.data |= {"streamed": reading.streamed, "why": reading.why, "memory_budget": budget}
        self._apply(result, feature_names=result.feature_names)
        return self

    def _run(
        self,
        source: Any,
        target: str,
        classes: NDArray[Any] | None,
        callbacks: Sequence[Callback],
        *,
        budget: int,
        context: Any,
        drop_missing_target: bool = False,
    ) -> FitResult:
        """The pipeline; on divergence the error carries an estimator with the best model."""
        device = context.device if context is not None else check_device(self.device)
        try:
            return fit_source(
                self.get_params(deep=False),
                source,
                target,
                classes=classes,
                callbacks=callbacks,
                budget=budget,
                drop_missing_target=drop_missing_target,
                context=context,
                device=device,
            )
        except TrainingDivergedError as exc:
            partial = getattr(exc, "result", None)
            if partial is not None:
                best = type(self)(**self.get_params(deep=False))
                best._apply(partial, feature_names=partial.feature_names)
                exc.estimator = best  # type: ignore[attr-defined]
            raise

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

    def _apply(self, result: FitResult, *, feature_names: Sequence[str] | None) -> None:
        """Set every fitted attribute from ``result`` (only ever a complete fit)."""
        for name in list(vars(self)):
            if name.endswith("_") and not name.startswith("_"):
                delattr(self, name)  # what an earlier fit left (e.g. lr_finder_)
        self.classes_ = result.classes
        self.encoder_ = result.encoder
        self.n_features_in_ = len(result.feature_names)
        if feature_names is not None:
            self.feature_names_in_ = np.asarray(list(feature_names), dtype=object)
        self.module_ = result.module
        self.history_ = result.history
        self.n_iter_ = len(result.history)
        self.best_epoch_ = result.best_epoch
        self.lr_ = result.lr
        if result.lr_finder is not None:
            self.lr_finder_ = result.lr_finder
        plan = result.plan
        self.plan_ = plan.to_dict() | {"lr": result.lr}
        self.batch_size_ = plan.batch_size
        self.weight_decay_ = plan.weight_decay
        self.validation_fraction_ = plan.validation_fraction
        self.warnings_ = result.warnings
        self.threshold_ = result.threshold
        self.calibration_ = dict(result.calibration)
        self.validation_metrics_ = result.validation_metrics
        self.data_ = result.data

    def _input_names(self, X: Any) -> list[str] | None:
        """``feature_names_in_`` by scikit-learn's rule: string column names, else None."""
        probe = _Probe()
        validate_data(probe, X, reset=True, skip_check_array=True)
        names = getattr(probe, "feature_names_in_", None)
        return None if names is None else [str(n) for n in names]

    # -- model state -------------------------------------------------------------------------
    def to_state(self) -> ModelState:
        """The fitted model as a plain :class:`~steadyclf.persistence.ModelState`."""
        self._check_fitted()
        weights = {k: v.detach().cpu().numpy().copy() for k, v in self.module_.state_dict().items()}
        names = getattr(self, "feature_names_in_", None)
        return ModelState(
            schema=self.encoder_.to_dict(),
            architecture=self.module_.arch.to_dict(),
            weights=weights,
            classes=self.classes_,
            threshold=float(self.threshold_),
            calibration=dict(self.calibration_),
            params=self.get_params(deep=False),
            training={
                "n_iter": int(self.n_iter_),
                "best_epoch": self.best_epoch_,
                "lr": float(self.lr_),
                "batch_size": self.batch_size_,
                "weight_decay": self.weight_decay_,
                "validation_fraction": self.validation_fraction_,
                "plan": dict(self.plan_),
                "data": dict(self.data_),
                "last_epoch": self.history_[-1] if self.history_ else None,
                "validation_metrics": self.validation_metrics_,
            },
            history=list(self.history_),
            n_features_in=int(self.n_features_in_),
            feature_names_in=None if names is None else [str(n) for n in names],
        )

    @classmethod
    def from_state(cls, state: ModelState) -> BinaryClassifier:
        """A fitted estimator from a :class:`~steadyclf.persistence.ModelState`."""
        allowed = cls().get_params(deep=False)
        params = {k: v for k, v in state.params.items() if k in allowed}
        if isinstance(params.get("hidden"), list):
            params["hidden"] = tuple(params["hidden"])
        clf = cls(**params)
        arch = Architecture.from_dict(state.architecture)
        module = SteadyNet(arch).double()
        module.load_state_dict({k: torch.from_numpy(v) for k, v in state.weights.items()})
        clf.module_ = module.eval()
        clf.encoder_ = TabularEncoder.from_dict(state.schema)
        clf.classes_ = state.classes
        clf.n_features_in_ = state.n_features_in
        if state.feature_names_in is not None:
            clf.feature_names_in_ = np.asarray(state.feature_names_in, dtype=object)
        training = state.training
        clf.history_ = [dict(r) for r in state.history]
        clf.n_iter_ = int(training["n_iter"])
        clf.best_epoch_ = training.get("best_epoch")
        clf.lr_ = float(training["lr"])
        clf.batch_size_ = training.get("batch_size")
        for name in ("weight_decay", "validation_fraction"):
            if training.get(name) is not None:
                setattr(clf, f"{name}_", float(training[name]))
        clf.plan_ = dict(training.get("plan") or {})
        clf.data_ = dict(training.get("data") or {})
        clf.validation_metrics_ = dict(training.get("validation_metrics") or {})
        clf.warnings_ = []
        clf.threshold_ = float(state.threshold)
        clf.calibration_ = dict(state.calibration)
        return clf

    # -- prediction --------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def decision_function(self, X: Any) -> NDArray[np.float64]:
        """Log odds of ``classes_[1]``, shape ``(n,)``: the network's logit, calibrated
        (``calibration_['scale'] * logit + calibration_['bias']``)."""
        self._check_fitted()
        x_num, x_cat = self._raw_inputs(X, reset=False)
        logits = self._logits(x_num, x_cat)
        scale, bias = float(self.calibration_["scale"]), float(self.calibration_["bias"])
        if scale != 1.0 or bias != 0.0:
            logits = scale * logits + bias
        return logits

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
        missing, plain MLP bodies on the CPU. Same operations (so the same numbers), but
        into buffers reused from chunk to chunk. Returns False when it does not apply.
        """
        module = self.module_
        encoder = module.encoder
        if (
            x_cat.shape[1]
            or encoder.categorical.sizes
            or encoder.impute.missing_columns.numel()
            or encoder.normalize.center.device.type != "cpu"
        ):
            return False
        bodies = [FusedMLP.from_module(b) for b in module.bodies]
        if None in bodies or not (_all_finite(x_num) or not np.isnan(x_num).any()):
            return False
        body = bodies[0]
        assert body is not None
        center, scale, clip = (
            encoder.normalize.center,
            encoder.normalize.scale,
            encoder.normalize.clip,
        )
        dtype = body._weights[0].dtype
        rows = min(x_num.shape[0], PREDICT_BATCH_ROWS)
        chunk = np.empty((rows, x_num.shape[1]), dtype=np.float64)
        values = torch.from_numpy(chunk)
        features = torch.empty(values.shape, dtype=torch.float32)
        inputs = torch.empty(values.shape, dtype=dtype)
        out_tensor = torch.from_numpy(out)
        members = torch.empty((len(bodies), rows), dtype=out_tensor.dtype)
        for start in range(0, x_num.shape[0], PREDICT_BATCH_ROWS):
            n = min(PREDICT_BATCH_ROWS, x_num.shape[0] - start)
            np.copyto(chunk[:n], x_num[start : start + n])
            # As InputEncoder: (x - mean) / scale in float64, float32 features, and the
            # body's dtype from there (SteadyNet.forward).
            values[:n].sub_(center).div_(scale)
            if clip:
                soft_clip_(values[:n])
            features[:n].copy_(values[:n])
            inputs[:n].copy_(features[:n])
            if len(bodies) == 1:
                body.forward_into(inputs[:n], out_tensor[start : start + n])
                continue
            for k, member in enumerate(bodies):  # as SteadyNet.logits
                assert member is not None
                member.forward_into(inputs[:n], members[k, :n])
            out_tensor[start : start + n] = mean_probability_logit(members[:, :n])
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

        return save(self.to_state(), path)


def load(path: str | os.PathLike[str]) -> BinaryClassifier:
    """Load a model directory written by :meth:`BinaryClassifier.save`.

    Its predictions equal those of the estimator that was saved. Only JSON and
    safetensors are parsed: no code in the files can run.

    Raises
    ------
    ModelFileError
        The directory or one of its files is missing, corrupted, modified, or of a newer
        format version.

    Examples
    --------
    >>> import steadyclf, tempfile
    >>> from steadyclf.datasets import heart_rate
    >>> X, y = heart_rate(n=100)
    >>> clf = steadyclf.BinaryClassifier(random_state=0, max_epochs=5).fit(X, y)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     again = steadyclf.load(clf.save(f"{tmp}/model"))
    >>> bool((again.predict_proba(X) == clf.predict_proba(X)).all())
    True
    """
    from .persistence import read_model

    return BinaryClassifier.from_state(read_model(path))


#: Input dtypes kept as they are (float32 data is not doubled in memory: the encoder
#: converts it to float64 a chunk at a time); anything else becomes float64.
_FLOATS = (np.float64, np.float32)


class _Probe(BaseEstimator):
    """Receives the attributes scikit-learn's input checks set at fit time."""


def _free_name(name: str, taken: Any) -> str:
    """``name``, with underscores added until it is not one of ``taken``."""
    used = {str(c) for c in taken}
    while name in used:
        name += "_"
    return name


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
