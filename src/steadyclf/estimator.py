"""BinaryClassifier: the scikit-learn compatible front of steadyclf.

The estimator validates its inputs and parameters, hands the rows to the one training
pipeline (:func:`steadyclf.pipeline.fit_source`: a DataFrame is a source with one batch,
files are read in passes) and keeps what it returns as fitted attributes, all at once when
the fit succeeded. Prediction encodes new rows with the fitted schema and runs the network
in float64 NumPy (:mod:`steadyclf.nn.numpy_forward`, the functions ``steadyclf predict``
uses), so a loaded model predicts without importing torch: torch is imported to train, or
when ``module_`` is asked for. :meth:`BinaryClassifier.to_state` and
:meth:`BinaryClassifier.from_state` convert to and from the plain model state that
:mod:`steadyclf.persistence` reads and writes.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin

from . import inputs
from .exceptions import (
    NotFittedError,
    TrainingDivergedError,
    UnseenLevelsWarning,
)
from .io.sources import FrameSource, default_memory_budget, open_data, parse_memory_size
from .io.tables import from_polars
from .nn.numpy_forward import NumpyNetwork
from .nn.spec import Architecture
from .params import defaults, validate_params
from .persistence import ModelState
from .predictor import calibrate, sigmoid
from .schema.encoder import TabularEncoder
from .schema.labels import LabelEncoding, encode_target, positive_column

if TYPE_CHECKING:
    from .nn.modules import SteadyNet
    from .pipeline import FitResult
    from .train.trainer import Callback

__all__ = ["SKLEARN_EXPECTED_FAILED_CHECKS", "BinaryClassifier", "load"]

DEFAULTS = defaults()  # from the one table of parameters (steadyclf.params)
#: Bytes of data held at once when fitting on data in memory (the data is there already).
IN_MEMORY_BUDGET = 1 << 40

#: The scikit-learn checks ``BinaryClassifier`` cannot pass, and why: give them to
#: ``check_estimator`` or ``parametrize_with_checks`` as ``expected_failed_checks``
#: (scikit-learn >= 1.6 has no estimator tag for it).
SKLEARN_EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "fitting on rows weighted k is not fitting on k copies of them to the check's "
        "rtol=1e-7: (1) rows are assigned by their position to the hold-out and, on "
        "small data, to the 5 cross-fitting folds, so the k copies of a row land in "
        "different folds where its weighted row lies in one; (2) training runs in "
        "float32, where a gradient summed over k copies rounds differently from one row "
        "times k (1e-7 relative), and a hundred Adam steps carry that past 1e-7. Zero "
        "weights do act as dropped rows, and integer weights as repeated rows within "
        "1e-4, when no rows are assigned by position (tests/test_weights.py)"
    ),
}


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
        sentinel such as 1e308, a unit error) moves neither the scaling nor the network
        (held in the model). ``'standardize'``: ``(x - mean) / std``. ``'batchnorm'``:
        ``nn.BatchNorm1d`` on the inputs. ``'none'``: raw inputs (the classic failure).
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
        improved for ``patience`` checks, and restore the best weights (those of the best
        validation loss; without a validation split, training stops once the training
        loss, plus the L2 penalty of Adam's or SGD's ``weight_decay``, has converged and
        keeps the last weights). The loss is checked at the end of each epoch and, on more
        than 262,144 training rows, also inside it, about every 262,144 rows
        (``plan_['check_every']`` steps), so a long epoch need not be waited out.
    validation_fraction : float or 'auto', default='auto'
        Share of rows held out for early stopping. Each row's side is decided by a hash of
        its position and ``random_state``, so the split is the same in every mode (in
        memory, streaming, distributed); both classes are sampled at the same rate.
        ``'auto'`` holds out 0.1, except on small data trained full batch (with
        ``early_stopping`` on and no ``threshold_metric`` to tune): no rows are held out
        and 5 cross-fitted members are trained, each on 4 folds, stopping on the fifth;
        every row is then scored out of fold (``validation_metrics_``). See docs/small_data.md
        and :mod:`steadyclf.train.crossfit`.
    patience : int, default=10
        Checks of the monitored loss without improvement (by more than 1e-4, relative)
        before stopping: epochs, or runs of about 262,144 rows on larger data (see
        ``early_stopping``). ``schedule='plateau'`` multiplies the rate by 0.3 once more
        than ``max(1, patience // 3)`` checks in a row have not improved.
    pos_weight : None, 'balanced' or float, default=None
        Weight of positive examples in the loss; ``'balanced'`` uses n_negative / n_positive
        (sums of the row weights when rows are weighted).
    weight_decay : float or 'auto', default='auto'
        L2 penalty added to the gradient (decoupled with ``optimizer='adamw'``). ``'auto'``
        is chosen among 1e-3, 1e-2 and 1e-1 by out-of-fold log loss on small data (1e-2
        where there are too few rows of a class to cross-fit, or under torchrun), else 0.
    random_state : int or None (a new seed each fit), default=0
    device : {'auto', 'cpu', 'cuda'}, default='auto'
    categorical, numeric, drop : sequence of str or None
        Override the inferred role of DataFrame columns.
    positive : label or None, default=None
        The positive class (``positive_class_``): the one ``threshold_``, ``pos_weight``,
        the metrics and the reports are about. ``None`` takes the larger of the two sorted
        labels, as scikit-learn does. ``classes_`` stays sorted either way, so
        scikit-learn's scorers (``roc_auc``, ``neg_log_loss``...) read ``predict_proba``
        and ``decision_function`` as they do for any classifier.
    threshold_metric : {None, 'f1', 'balanced_accuracy'}, default=None
        Tune the decision threshold ``threshold_`` to maximise this metric on the
        validation split (on the training rows when there is none); ``None`` keeps 0.5.
    class_weight : None, 'balanced' or dict, default=None
        Weight of each class in the loss, multiplying ``sample_weight`` (scikit-learn's
        convention): ``{class: weight}`` (a class left out weighs 1), or ``'balanced'``,
        ``n / (2 * n_c)`` with ``n_c`` the sum of the weights of class ``c``. Only in the
        loss (training and validation, hence early stopping): metrics, calibration and
        threshold tuning weigh rows by ``sample_weight`` alone, and with calibrated
        probabilities the default threshold moves to ``1 / (1 + w1 / w0)``, the decisions
        the weights asked for (as for ``pos_weight``). Not with ``pos_weight``: both weight
        the classes (``{0: 1, 1: w}`` is ``pos_weight=w``, but for the loss's scale).
    calibration : {'auto', 'none', 'temperature', 'platt'}, default='auto'
        How probabilities are calibrated on the held-out rows (see
        :mod:`steadyclf.calibration`): ``sigmoid(scale * logit)`` (temperature) or
        ``sigmoid(scale * logit + bias)`` (Platt), fitted by minimising their log loss.
        ``'auto'``: on held-out rows, keeps the better of the two only when, fitted on one
        half of them and scored on the other (both ways), it lowers the log loss by more
        than the noise of that comparison, else no map; on small data, Platt scaling
        fitted on the cross-fitted members' out-of-fold logits. Without rows to fit on
        (fewer than 250), probabilities are not calibrated.
    numeric_embedding : {'auto', 'none', 'periodic'}, default='auto'
        ``'periodic'``: each network first embeds every continuous numeric input (16
        distinct training values or more; flags, counts and codes go in as they are),
        scaled as ``normalize`` says (so not with ``'batchnorm'`` or ``'none'``): 8
        trainable frequencies ``f`` per input, ``cos(2 pi f x)`` and ``sin(2 pi f x)``
        mapped to 4 more inputs of the first layer (PLR embeddings, Gorishniy et al.
        2022), so one column can act through many thresholds. ``'auto'``: where members
        are cross-fitted (small data), both are trained and the one of lower out-of-fold
        log loss kept (``data_['cross_fit']``); on held-out rows up to 2**18 training rows
        both race their first epochs (``data_['race']``); above, none.
    integer_codes : {'auto', 'none', 'category'}, default='auto'
        Whether numeric columns of integer codes are read as categories too: the column
        stays a numeric input and also enters as a categorical one whose levels are its
        values (an int 7, a float 7.0 and the text "7" of a CSV file are one level; values
        unseen in training, or not integers, are 'unseen'). Candidates: integer-valued,
        not boolean, not listed in ``numeric``, with 3 to 64 distinct values (an hour, a
        month: one-hot) or an id's 200 to 65,536 (at least 5 rows a value on average:
        one-hot of the 64 most frequent and target statistics of all, as for text
        categoricals). ``'category'`` reads every candidate so; ``'none'`` none;
        ``'auto'`` trains both readings and keeps the one of lower loss (on held-out rows;
        out of fold, the reading only if it saves a standard error: ``data_``),
        ``integer_codes_`` says which, ``encoder_.columns_``
        which columns are read so (``read_as_category``). See docs/integer_codes.md.
    n_members : int or 'auto', default='auto'
        Networks trained together on the same batches from their own initial weights and
        averaged in probability, where no folds are cross-fitted (small data's 5 members):
        ``'auto'`` is 4 with held-out rows up to 2**17 training rows, else 1.
    verbose : int, default=0

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The labels, sorted (scikit-learn's convention): the columns of ``predict_proba``.
    positive_class_ : label
        The positive class, ``classes_[1]`` unless ``positive`` named ``classes_[0]``.
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
        steps per epoch; with row weights, ``weights``: where they came from, their sum
        and range, the rows of weight 0 left out (not counted in ``n_rows``) and whether
        they were used (weights all equal are not).
    module_ : torch.nn.Module
        The fitted network (raw columns in, logits out; ``bodies``: its members).
        Predictions run in NumPy on its float64 tensors (shared memory on the CPU); a
        loaded model builds it (and imports torch) on first access only.
    n_iter_ : int
        Epochs run (of all cross-fitted members together, on small data).
    history_ : list of dict
        One row per epoch (per member, with its ``member`` number, on small data):
        ``epoch``, ``train_loss``, ``train_accuracy``, ``valid_loss``,
        ``valid_accuracy`` (with a validation split or fold), ``lr``, ``seconds``, ``grad_norm``
        (of the epoch's last step); ``warnings`` (kinds) on the epoch a stall warning was
        raised; ``lr_finder`` (the picked rate) on the first row with ``lr='auto'``.
    lr_ : float
        The learning rate training started with (the finder's pick with ``lr='auto'``).
    lr_finder_ : LRFinderResult
        The range test behind ``lr_``; only with ``lr='auto'``.
    warnings_ : list of dict
        What the stall detector saw during training (``epoch``, ``kind``, ``message``,
        ``cause``, ``fix``), saved with the model; empty when training went well.
    calibration_ : dict
        How probabilities follow from the network's logit ``z``:
        ``sigmoid(scale * z + bias)`` (``method`` 'none': scale 1, bias 0), with why
        (``reason``), on how many held-out rows (``n_rows``) and, when a map was
        considered, log loss, Brier score and expected calibration error on those rows
        ``before`` and ``after`` it.
    threshold_ : float
        Probability of ``positive_class_`` above which ``predict`` returns it.
    validation_metrics_ : dict
        :func:`~steadyclf.evaluation.binary_metrics` of the calibrated probabilities on
        the validation split at ``threshold_``, or on every row out of fold on small data
        (``'estimate'`` says which; empty when there is neither), with
        ``'calibration'``: the method and the metrics before and after it. Weighted by
        the rows' weights, if any (``sum_of_weights``: their total).
    validation_fraction_, weight_decay_ : float
        ``validation_fraction`` (0 when no rows were held out: early stopping off, or too
        few rows) and ``weight_decay`` with ``'auto'`` resolved.
    numeric_embedding_, integer_codes_ : str
        ``numeric_embedding`` and ``integer_codes`` with ``'auto'`` resolved.

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
        *,
        hidden: Sequence[int] = DEFAULTS["hidden"],
        activation: str = DEFAULTS["activation"],
        normalize: str = DEFAULTS["normalize"],
        optimizer: str = DEFAULTS["optimizer"],
        lr: float | str | None = DEFAULTS["lr"],
        schedule: str = DEFAULTS["schedule"],
        max_epochs: int = DEFAULTS["max_epochs"],
        batch_size: int | str | None = DEFAULTS["batch_size"],
        early_stopping: bool = DEFAULTS["early_stopping"],
        validation_fraction: float | str = DEFAULTS["validation_fraction"],
        patience: int = DEFAULTS["patience"],
        pos_weight: float | str | None = DEFAULTS["pos_weight"],
        weight_decay: float | str = DEFAULTS["weight_decay"],
        random_state: int | None = DEFAULTS["random_state"],
        device: str = DEFAULTS["device"],
        categorical: Sequence[str] | None = DEFAULTS["categorical"],
        numeric: Sequence[str] | None = DEFAULTS["numeric"],
        drop: Sequence[str] | None = DEFAULTS["drop"],
        positive: Any = DEFAULTS["positive"],
        threshold_metric: str | None = DEFAULTS["threshold_metric"],
        calibration: str = DEFAULTS["calibration"],
        verbose: int = DEFAULTS["verbose"],
        class_weight: str | dict[Any, float] | None = DEFAULTS["class_weight"],
        numeric_embedding: str = DEFAULTS["numeric_embedding"],
        integer_codes: str = DEFAULTS["integer_codes"],
        n_members: int | str = DEFAULTS["n_members"],
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
        self.class_weight = class_weight
        self.numeric_embedding = numeric_embedding
        self.integer_codes = integer_codes
        self.n_members = n_members

    # -- scikit-learn plumbing -------------------------------------------------------------
    def __sklearn_is_fitted__(self) -> bool:
        return "_network" in self.__dict__

    def __sklearn_tags__(self) -> Any:
        # scikit-learn >= 1.6 has no tag for checks expected to fail: the one that cannot
        # pass, and why, is SKLEARN_EXPECTED_FAILED_CHECKS (for check_estimator's
        # expected_failed_checks).
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        tags.non_deterministic = False
        return tags

    def check_params(self) -> BinaryClassifier:
        """Check every parameter (see :func:`steadyclf.params.validate_params`); ``self``."""
        validate_params(self.get_params(deep=False))
        return self

    # -- input conversion --------------------------------------------------------------------
    def _as_frame(self, X: Any, *, reset: bool) -> pd.DataFrame:
        """Validate feature names/count the scikit-learn way and return a DataFrame."""
        return inputs.as_frame(self._validated(X, reset=reset))

    def _validated(
        self, X: Any, *, reset: bool
    ) -> pd.DataFrame | tuple[NDArray[np.float64], list[str]]:
        """A DataFrame as is, or any other input as a float array and column names."""
        # scikit-learn's name and count checks update, at fit time, a stand-in: the fitted
        # attributes are set only once the fit succeeded.
        array = inputs.checked_input(X, inputs.Probe() if reset else self, reset=reset)
        if isinstance(array, pd.DataFrame):
            return array
        if hasattr(self, "encoder_") and not reset:  # the fit's names, whatever X's
            names = [c.name for c in self.encoder_.columns_]
        else:
            names = [f"x{j}" for j in range(array.shape[1])]
        return array, names

    def _raw_inputs(self, X: Any, *, reset: bool) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        return inputs.encoded(self.encoder_, self._validated(X, reset=reset))

    # -- fitting -----------------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        *,
        callbacks: Sequence[Callback] = (),
    ) -> BinaryClassifier:
        """Fit the network on ``X`` (array or DataFrame) and binary labels ``y``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
            Row weights, finite and ``>= 0``: a row weighted ``k`` counts as ``k``
            copies of it in the loss, the label totals (class prior, ``'balanced'``),
            early stopping, ``validation_metrics_``, the calibration and the threshold;
            a row of weight 0 is left out altogether (scaling statistics included). The
            input scaling's statistics are weighted too (see docs/weights.md).
        callbacks : sequence of Callback

        Returns
        -------
        self
        """
        self.check_params()
        X = from_polars(X)
        frame = self._as_frame(X, reset=True)
        labels = self._encode_target(y, len(frame))
        weights = inputs.sample_weight_array(sample_weight, len(frame))
        target = inputs.free_name("target", frame.columns)
        weight = inputs.free_name("sample_weight", [*frame.columns, target])
        source = FrameSource(
            frame,
            labels.encoded,
            target,
            name="the data",
            weight=weights,
            weight_name=weight,
        )
        params = self._params_to_fit()
        result = self._run(
            params,
            source,
            target,
            labels.classes,
            callbacks,
            budget=IN_MEMORY_BUDGET,
            context=None,
            weight=None if weights is None else weight,
        )
        self._apply(result, params, feature_names=inputs.input_names(X))
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
        weight: str | None = None,
        query: str | None = None,
    ) -> BinaryClassifier:
        """Fit on data files: CSV/TSV/Parquet, a directory of Parquet files or a glob; or
        on the rows of a SQL ``query`` on a database.

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
        weight : str, optional
            A column of row weights, read with the rows (streamed too) and never a
            feature: as ``sample_weight`` in :meth:`fit`. A missing, negative, infinite
            or non-numeric weight on a labelled row is an error naming the row.
        query : str, optional
            A SQL query whose rows to train on; ``data`` is then the database: a DuckDB
            file or connection, ``'duckdb:'`` (queries over files) or a ``postgresql://``
            URI (see :mod:`steadyclf.io.sql`; the ``sql`` extra). Give it an ``ORDER BY``
            on a unique key for the same model on every run.

        Examples
        --------
        >>> clf = BinaryClassifier().fit_files("data/*.parquet", "label")  # doctest: +SKIP
        >>> clf = BinaryClassifier().fit_files(  # doctest: +SKIP
        ...     "duckdb:", "label", query="SELECT * FROM 'data/*.parquet' ORDER BY id"
        ... )
        """
        from .parallel import init_from_env

        self.check_params()
        budget = (
            default_memory_budget() if memory_budget is None else parse_memory_size(memory_budget)
        )
        ctx = init_from_env(self.device) if context == "auto" else context
        streamed = stream or ctx is not None
        if query is not None:
            from .io.sources import open_sql

            reading = open_sql(data, query, stream=streamed, budget=budget, shared=bool(ctx))
        else:
            reading = open_data(data, stream=streamed, budget=budget, shared=bool(ctx))
        params = self._params_to_fit()
        result = self._run(
            params,
            reading.source,
            target,
            None,
            callbacks,
            budget=budget,
            context=ctx,
            drop_missing_target=drop_missing_target,
            weight=weight,
        )
        result.data |= {"streamed": reading.streamed, "why": reading.why, "memory_budget": budget}
        self._apply(result, params, feature_names=result.feature_names)
        return self

    def _params_to_fit(self) -> dict[str, Any]:
        """The parameters as they are now, copied: the ones the fit uses and the model
        saves, whatever ``set_params`` (or a list changed in place) does later."""
        return copy.deepcopy(self.get_params(deep=False))

    def _run(
        self,
        params: dict[str, Any],
        source: Any,
        target: str,
        classes: NDArray[Any] | None,
        callbacks: Sequence[Callback],
        *,
        budget: int,
        context: Any,
        drop_missing_target: bool = False,
        weight: str | None = None,
    ) -> FitResult:
        """The pipeline; on divergence the error carries an estimator with the best model."""
        from .nn.device import check_device
        from .pipeline import fit_source

        device = context.device if context is not None else check_device(self.device)
        try:
            return fit_source(
                params,
                source,
                target,
                classes=classes,
                callbacks=callbacks,
                budget=budget,
                drop_missing_target=drop_missing_target,
                context=context,
                device=device,
                weight=weight,
            )
        except TrainingDivergedError as exc:
            partial = exc.result
            if partial is not None:
                best = type(self)(**copy.deepcopy(params))
                best._apply(partial, params, feature_names=partial.feature_names)
                exc.estimator = best
            raise

    def _encode_target(self, y: Any, n_rows: int) -> LabelEncoding:
        owner = type(self).__name__
        return encode_target(from_polars(y), n_rows, positive=self.positive, owner=owner)

    def _apply(
        self,
        result: FitResult,
        params: dict[str, Any],
        *,
        feature_names: Sequence[str] | None,
    ) -> None:
        """Set every fitted attribute from ``result`` (only ever a complete fit) of the
        parameters ``params``."""
        from .nn.modules import numpy_weights

        for name in list(vars(self)):
            if (name.endswith("_") and not name.startswith("_")) or name in _NETWORK:
                delattr(self, name)  # what an earlier fit left (e.g. lr_finder_)
        self._fitted_params = params
        self._set_classes(result.classes)
        self.encoder_ = result.encoder
        self.n_features_in_ = len(result.feature_names)
        if feature_names is not None:
            self.feature_names_in_ = np.asarray(list(feature_names), dtype=object)
        self._module = result.module
        self._network = NumpyNetwork(result.module.arch, numpy_weights(result.module))
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
        self.numeric_embedding_ = plan.numeric_embedding
        self.integer_codes_ = plan.integer_codes
        self.warnings_ = result.warnings
        self.threshold_ = result.threshold
        self.calibration_ = dict(result.calibration)
        self.validation_metrics_ = result.validation_metrics
        self.data_ = result.data

    # -- the network -------------------------------------------------------------------------
    @property
    def module_(self) -> SteadyNet:
        """The fitted network as a torch module (built on first access for a loaded model)."""
        module = self.__dict__.get("_module")
        if module is None:
            if "_network" not in self.__dict__:
                raise AttributeError(f"'{type(self).__name__}' object has no attribute 'module_'")
            from .nn.modules import module_from_weights, numpy_weights

            module = module_from_weights(self._network.arch, self._network.weights)
            self._module = module
            # From now on predictions read the module's tensors, as after a fit.
            self._network = NumpyNetwork(module.arch, numpy_weights(module))
        return module

    # -- model state -------------------------------------------------------------------------
    def to_state(self) -> ModelState:
        """The fitted model as a plain :class:`~steadyclf.persistence.ModelState`."""
        self._check_fitted()
        network = self._network
        weights = {k: np.array(v) for k, v in network.weights.items()}
        names = getattr(self, "feature_names_in_", None)
        return ModelState(
            schema=self.encoder_.to_dict(),
            architecture=network.arch.to_dict(),
            weights=weights,
            classes=self._coded_classes(),
            threshold=float(self.threshold_),
            calibration=dict(self.calibration_),
            # Those of the fit: set_params since changes the next fit, not this model.
            params=copy.deepcopy(self._fitted_params),
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
                "warnings": [dict(w) for w in self.warnings_],
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
        clf._fitted_params = copy.deepcopy(state.params)
        arch = Architecture.from_dict(state.architecture)
        clf._network = NumpyNetwork(arch, state.weights)
        clf.encoder_ = TabularEncoder.from_dict(state.schema)
        clf._set_classes(state.classes)
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
        # Models saved before 'auto' existed: the architecture says what was embedded.
        clf.numeric_embedding_ = str(
            clf.plan_.get("numeric_embedding", "periodic" if arch.periodic else "none")
        )
        read = any(c.read_as_category for c in clf.encoder_.columns_)  # older models
        clf.integer_codes_ = str(clf.plan_.get("integer_codes", "category" if read else "none"))
        clf.data_ = dict(training.get("data") or {})
        clf.validation_metrics_ = dict(training.get("validation_metrics") or {})
        clf.warnings_ = [dict(w) for w in training.get("warnings") or []]  # none before 0.1
        clf.threshold_ = float(state.threshold)
        clf.calibration_ = dict(state.calibration)
        return clf

    # -- classes ---------------------------------------------------------------------------
    def _set_classes(self, coded: NDArray[Any]) -> None:
        """``classes_`` sorted from the network's ``[negative, positive]`` labels.

        The network, the saved model (``model.json``'s classes) and the threshold keep the
        code order (positive coded 1); scikit-learn's scorers assume sorted classes and
        read ``predict_proba``'s columns and ``decision_function``'s sign in that order,
        whatever ``positive`` says.
        """
        self.classes_ = np.sort(coded)
        self.positive_class_ = coded[1]

    def _positive_column(self) -> int:
        return positive_column(self.classes_, self.positive_class_)

    def _coded_classes(self) -> NDArray[Any]:
        """``[negative, positive]``: the labels of the network's 0 and 1."""
        return self.classes_ if self._positive_column() == 1 else self.classes_[::-1]

    # -- prediction --------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if "_network" not in self.__dict__:
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def decision_function(self, X: Any) -> NDArray[np.float64]:
        """Log odds of ``classes_[1]``, shape ``(n,)``, as scikit-learn reads it: the
        network's logit calibrated (``calibration_['scale'] * logit +
        calibration_['bias']``, the log odds of ``positive_class_``), negated when the
        positive class is ``classes_[0]``."""
        z = self._positive_log_odds(X)
        return z if self._positive_column() == 1 else -z

    def _positive_log_odds(self, X: Any) -> NDArray[np.float64]:
        self._check_fitted()
        x_num, x_cat = self._raw_inputs(X, reset=False)
        if x_cat.shape[1]:
            encoder: TabularEncoder = self.encoder_
            for message in encoder.unseen_warnings(encoder.unseen_levels(x_cat)):
                warnings.warn(message, UnseenLevelsWarning, stacklevel=4)
        return calibrate(self._logits(x_num, x_cat), self.calibration_)

    def _logits(self, x_num: NDArray[np.float64], x_cat: NDArray[np.int64]) -> NDArray[np.float64]:
        """The network's logits, computed in NumPy (see :mod:`steadyclf.nn.numpy_forward`)."""
        network: NumpyNetwork = self._network
        return network.logits(x_num, x_cat)

    def predict_proba(self, X: Any) -> NDArray[np.float64]:
        """Probabilities of ``classes_[0]`` and ``classes_[1]``, shape ``(n, 2)``."""
        p = sigmoid(self._positive_log_odds(X))
        column = self._positive_column()
        proba = np.empty((p.shape[0], 2), dtype=np.float64)
        np.subtract(1.0, p, out=proba[:, 1 - column])
        proba[:, column] = p
        return proba

    def predict(self, X: Any) -> NDArray[Any]:
        """``positive_class_`` where its probability exceeds ``threshold_``, else the other."""
        p = sigmoid(self._positive_log_odds(X))
        return self._coded_classes()[(p > self.threshold_).astype(np.int64)]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save the fitted model as a directory (see :func:`steadyclf.persistence.save`).

        ``steadyclf.load(path)`` gives back an estimator with the same predictions. The
        files hold tensors and JSON only: loading never runs code from them.
        """
        from .persistence import save

        return save(self.to_state(), path)

    def to_onnx(self, path: str | os.PathLike[str]) -> Path:
        """Write the model as one ONNX graph, preprocessing and threshold included.

        The graph takes one ``[N, 1]`` input per column the model reads (``double``
        with NaN for missing; ``string`` with ``''`` for missing for categorical columns)
        and returns ``probability`` (of ``positive_class_``) and ``label``; see
        :mod:`steadyclf.export.onnx_graph` for the opset and the details. Needs the
        ``export`` extra (``pip install 'steadyclf[export]'``).
        """
        from .export.onnx_graph import save_onnx

        save_onnx(self.to_state(), path)
        return Path(path)


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


#: Private attributes that hold the fitted network (cleared before a new fit is applied).
_NETWORK = ("_network", "_module", "_fitted_params")
