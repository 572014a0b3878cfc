"""One fit, whatever the data: summarise, decide, build, train, score.

:func:`fit_source` is the whole of training, for a DataFrame in memory (a source with
one batch) as for files read in passes, on one process or under ``torchrun``:

1. **summarise** the rows in one pass (:func:`~steadyclf.schema.summary.summarise`):
   column facts, label counts, float64 statistics of the numeric candidates per side of
   the hash split;
2. **decide** every data-dependent default (:func:`~steadyclf.policy.resolve`) and the
   column roles (:class:`~steadyclf.schema.encoder.TabularEncoder`), then find the exact
   training median of every numeric column (:mod:`~steadyclf.schema.quantiles`);
3. **build** the network with its fitted buffers (:class:`~steadyclf.nn.modules.SteadyNet`);
4. **train** one :class:`~steadyclf.train.trainer.Trainer` over a batch source: the
   encoded rows in memory when they fit the budget (always for a DataFrame), else
   streamed through a shuffle buffer; the same callbacks either way. Small data
   instead cross-fits several members (:mod:`~steadyclf.train.crossfit`);
5. **score** the held-out rows with the final weights (small data: every row, out of
   fold): calibrate the probabilities on them (:func:`~steadyclf.calibration.calibrate`),
   then tune the threshold.

Row weights (``sample_weight``, a weight column of files) are one more column of the
source, read with the rows like the target: the summary checks and tallies them and
leaves out rows of weight 0; the label totals that set the class prior and the
``'balanced'`` weights are sums of weights; the batches carry each row's loss weight
(:class:`~steadyclf.train.batches.RowWeighting`, which also applies ``class_weight``);
early stopping, the metrics, the calibration and the threshold weigh rows the same way.
Weights that are equal on every kept row change nothing and are dropped.

It returns a :class:`FitResult`, which the estimator turns into its fitted attributes.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy.special import expit

from .calibration import (
    IDENTITY_CALIBRATION,
    OUT_OF_FOLD_AUTO,
    calibrate,
    without_held_out_rows,
)
from .evaluation import binary_metrics, tune_threshold
from .exceptions import DataError, ParameterError, TrainingDivergedError
from .io.sources import FrameSource, Source, read_rows_for_budget
from .nn.modules import SteadyNet
from .nn.spec import Architecture
from .policy import (
    Plan,
    check_model_size,
    code_readings,
    embedded_inputs,
    holdout_candidate,
    resolve,
    without_cross_fitting,
)
from .predictor import calibrate as calibrate_logits
from .schema.encoder import TabularEncoder
from .schema.labels import encode_labels
from .schema.quantiles import Weighting as QuantileWeights
from .schema.quantiles import exact_quantiles
from .schema.roles import ColumnPlan
from .schema.split import SplitRule
from .schema.stats import RunningStats
from .schema.summary import TableSummary, summarise
from .schema.target_stats import TargetCounts, target_folds
from .train.batches import (
    Batch,
    BatchEncoder,
    EncodedRows,
    InMemoryBatches,
    RowWeighting,
    StreamedBatches,
    encode_rows,
)
from .train.checkpoint import FitContext
from .train.crossfit import CrossFit, cross_fit, describe, stratified_folds
from .train.distributed import share_of
from .train.lr_finder import LRFinderResult, find_lr
from .train.packed import cross_fit_packed, packable
from .train.stall import SATURATION_ROWS, StallDetector
from .train.trainer import Callback, TrainConfig, Trainer

if TYPE_CHECKING:
    from .train.distributed import DistributedContext

__all__ = ["IDENTITY_CALIBRATION", "FitResult", "fit_source"]

#: Encoded training rows are held in memory when they take at most this share of the
#: budget (always for a DataFrame, which is in memory already).
CACHE_SHARE = 4
#: Rows the learning-rate range test reads when the data is streamed: the first buffer.
LR_FINDER_ROWS = 1 << 14


@dataclass
class FitResult:
    """Everything a fit produced: the estimator's fitted attributes, in one object."""

    encoder: TabularEncoder
    classes: NDArray[Any]
    feature_names: list[str]
    module: SteadyNet
    plan: Plan
    history: list[dict[str, Any]]
    best_epoch: int | None
    lr: float
    warnings: list[dict[str, Any]]
    threshold: float
    validation_metrics: dict[str, Any]
    lr_finder: LRFinderResult | None = None
    data: dict[str, Any] = field(default_factory=dict)
    #: Applied to the network's logit ``z`` as ``scale * z + bias`` before the sigmoid.
    calibration: dict[str, Any] = field(default_factory=lambda: dict(IDENTITY_CALIBRATION))


def fit_source(
    params: Mapping[str, Any],
    source: Source,
    target: str,
    *,
    classes: NDArray[Any] | None = None,
    callbacks: Sequence[Callback] = (),
    budget: int,
    drop_missing_target: bool = False,
    context: DistributedContext | None = None,
    device: torch.device | None = None,
    weight: str | None = None,
) -> FitResult:
    """Fit a network with the estimator ``params`` on the rows of ``source``.

    Parameters
    ----------
    params : mapping
        The estimator's (validated) parameters.
    source : DataSource or FrameSource
        The rows, with the label column ``target``.
    classes : array of 2, optional
        The classes, when the target column already holds 0/1 codes (``fit(X, y)``);
        otherwise they are the two target values counted (sorted, or ``positive`` last).
    budget : int
        Bytes for data held at once when reading files.
    drop_missing_target : bool
        Skip rows whose target is missing instead of refusing them.
    context : DistributedContext, optional
        Under torchrun: this process's place; every process runs this same call.
    device : torch.device, optional
        Where to train (default: the context's device, else CPU).
    weight : str, optional
        The column of row weights (finite, >= 0; a row of weight 0 is left out).
    """
    started = time.perf_counter()
    seed = _run_seed(params, context)
    plan_columns = ColumnPlan.create(
        source.columns,
        source.kinds,
        target,
        categorical=params.get("categorical") or (),
        numeric=params.get("numeric") or (),
        drop=params.get("drop") or (),
        untyped=source.untyped,
        weight=weight,
    )
    shard = share_of(source, context)
    wants_fingerprint = any(hasattr(cb, "on_fit_begin") for cb in callbacks)
    summary = summarise(
        shard,
        plan_columns,
        SplitRule(holdout_candidate(params), seed),
        budget=budget,
        drop_missing_target=drop_missing_target,
        fingerprint=wants_fingerprint,
        context=context,
        weight_label=_weight_label(source, weight),
    )
    in_memory = isinstance(source, FrameSource)
    label_values, classes = _classes(summary, classes, params.get("positive"))
    plan = resolve(
        params,
        _counts(summary, label_values),
        _weight_totals(summary, label_values),
        classes.tolist(),
    )
    if context is not None and context.world_size > 1:
        # Cross-fitting trains in one process on rows it holds; under torchrun each
        # process holds a shard, so they train one network together on every row.
        plan = without_cross_fitting(plan, params)
    if plan.validation_fraction == 0:
        summary.fold_validation_into_training()
    weighting = _row_weighting(summary, plan, label_values)
    counts = _loss_totals(
        _counts(summary, label_values), _weight_totals(summary, label_values), plan
    )
    split = SplitRule(plan.validation_fraction, seed)
    encoder = TabularEncoder.from_summary(summary)
    encoder = encoder.with_categories(
        summary, code_readings(params, encoder.columns_, plan_columns.numeric)
    )
    stats = numeric_statistics(
        shard,
        summary,
        encoder,
        split,
        params["normalize"],
        budget=None if in_memory else budget,
        context=context,
        target=target,
        weighting=weighting,
    )
    device = device or (context.device if context is not None else torch.device("cpu"))
    module = _build_module(params, encoder, stats, plan, counts, seed, plan.folds).to(device)
    if not module.arch.periodic:  # no continuous input to embed
        plan = replace(plan, numeric_embedding="none", numeric_embeddings=("none",))
    encoding = BatchEncoder(encoder, module.encoder, target, label_values, split, device, weighting)
    if encoder.target_columns:
        read = (
            None if in_memory else read_rows_for_budget(shard.row_bytes(encoding.columns), budget)
        )
        unit = None
        if weighting is not None and weighting.by_row and summary.weights is not None:
            # The mean training weight counts one row (schema/target_stats.py says why).
            unit = summary.mean_training_weight
        _target_statistics(shard, encoding, module, seed, read, context, unit)
    world = context.world_size if context is not None else 1
    batches, valid, info = _batch_source(
        shard,
        encoding,
        plan,
        summary.local_train,
        summary.local_valid,
        budget,
        seed,
        world,
        in_memory or plan.folds > 1,  # cross-fitting is for small data: always in memory
        context,
    )
    sample = _sample(batches, SATURATION_ROWS)
    stall = _stall_detector(params, encoder, stats.raw, plan, counts, module, sample)
    lr_finder = None
    lr = plan.lr
    if lr is None:  # lr='auto': a range test on the training rows (the first buffer if streamed)
        x, y, w = (
            _sample(batches, LR_FINDER_ROWS)
            if isinstance(batches, StreamedBatches)
            else (batches.x, batches.y, batches.w)
        )
        lr_finder = find_lr(
            module.body,
            x,
            y,
            optimizer=params["optimizer"],
            batch_size=batches.batch_size if batches.batch_size < batches.n_rows else None,
            pos_weight=plan.pos_weight,
            w=w,
            seed=seed,
        )
        lr = lr_finder.lr
        if context is not None:  # each process tested its own rows: every one takes rank 0's
            lr = float(context.broadcast_object(lr))
    # The stall detector runs first, so user callbacks (e.g. a Checkpoint) see whole rows.
    config = TrainConfig(
        lr=lr,
        max_epochs=int(params["max_epochs"]),
        batch_size=plan.batch_size,
        optimizer=params["optimizer"],
        schedule=params["schedule"],
        weight_decay=plan.weight_decay,
        early_stopping=plan.early_stopping,
        patience=plan.patience,
        pos_weight=plan.pos_weight,
        seed=seed,
        check_every=plan.check_every,
        callbacks=(stall, *callbacks),
        advice=divergence_advice(params["normalize"], encoder),
    )
    fit_context = FitContext(
        dict(params),
        seed,
        module,
        encoder.to_dict(),
        classes.tolist(),
        summary.digest or "",
        summary.n_rows,
    )
    for cb in callbacks:  # e.g. a Checkpoint checks it resumes the same run
        getattr(cb, "on_fit_begin", lambda c: None)(fit_context)
    info |= {"statistics_seconds": round(time.perf_counter() - started, 3)}
    if summary.weights is not None:
        used = weighting is not None and weighting.by_row
        info |= {"weights": summary.weights.to_dict() | {"used": used}}
    common = (params, module, lr, encoder, classes, summary, lr_finder, batches, context, info)
    if plan.folds > 1:
        assert isinstance(batches, InMemoryBatches)
        # Without embeddings too, when 'auto' leaves the choice to the folds: the same
        # encoder (its tables set above), plain bodies drawn as with numeric_embedding='none'.
        plain = None
        if len(plan.numeric_embeddings) > 1:  # set to none above when nothing is embedded
            plain = _build_module(
                params, encoder, stats, replace(plan, numeric_embedding="none"), counts, seed,
                plan.folds,
            ).to(device)  # fmt: skip
            plain.encoder.load_state_dict(module.encoder.state_dict())
        return _fit_members(
            params, module, lr, encoder, classes, summary, lr_finder, batches, context, info,
            plan, config, stall, callbacks, seed, weighting, plain,
        )  # fmt: skip
    trainer = Trainer(module.body, config, context)
    try:
        trainer.fit(batches, valid)
    except TrainingDivergedError as exc:
        # The trainer kept the best finite weights: the error carries that model, so a
        # caller can still save it; the estimator itself is left as it was.
        if trainer.history:
            trained = Trained(trainer.history, trainer.best_epoch, stall.warnings)
            exc.result = _finish(*common, plan, trained)  # type: ignore[attr-defined]
        raise
    threshold, metrics, calibration = _score(
        params, decision_weight(plan), module.double(), batches, valid, context, weighting
    )
    trained = Trained(
        trainer.history, trainer.best_epoch, stall.warnings, threshold, metrics, calibration
    )
    return _finish(*common, plan, trained)


@dataclass
class Trained:
    """What training produced, besides the weights: history, stopping, warnings, scores."""

    history: list[dict[str, Any]]
    best_epoch: int | None
    warnings: list[Any]
    threshold: float = 0.5
    metrics: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=lambda: dict(IDENTITY_CALIBRATION))
    facts: dict[str, Any] = field(default_factory=dict)


def _fit_members(
    params: Mapping[str, Any],
    module: SteadyNet,
    lr: float,
    encoder: TabularEncoder,
    classes: NDArray[Any],
    summary: TableSummary,
    lr_finder: LRFinderResult | None,
    batches: InMemoryBatches,
    context: DistributedContext | None,
    info: dict[str, Any],
    plan: Plan,
    config: TrainConfig,
    stall: StallDetector,
    callbacks: Sequence[Callback],
    seed: int,
    weighting: RowWeighting | None = None,
    plain: SteadyNet | None = None,
) -> FitResult:
    """Small data: cross-fit the members, choose the weight decay, score out of fold.

    With ``plain`` (the same network without the periodic embeddings of ``module``), its
    members are cross-fitted too, after ``module``'s, and the network of lower out-of-fold
    log loss is kept (each with its own weight decay chosen)."""
    assert batches.positions is not None
    y = batches.y.cpu().numpy()
    given = (
        None
        if batches.w is None or weighting is None or not weighting.by_row
        else weighting.given(batches.w.cpu().numpy(), y)
    )
    folds = stratified_folds(y, batches.positions, plan.folds, seed)
    stalls: dict[int, StallDetector] = {}

    def member_callbacks(member: int, candidate: int) -> Sequence[Callback]:
        # A checkpoint keeps each member in its own part; other callbacks see every run.
        own = [cb.part(candidate, member) if hasattr(cb, "part") else cb for cb in callbacks]
        if member != 0:
            return tuple(own)
        stalls[candidate] = copy.copy(stall)  # each candidate's first member is watched
        return (stalls[candidate], *own)

    def numbered_callbacks(first: int, member: int, candidate: int) -> Sequence[Callback]:
        return member_callbacks(member, first + candidate)

    networks = [(module, plan.numeric_embedding)] + ([(plain, "none")] if plain else [])
    n_decays = len(plan.weight_decays)
    outcomes: list[tuple[CrossFit, TrainingDivergedError | None]] = []
    if packable(module.body, config, callbacks):
        # Every member of every candidate at once, as one batched network per layout.
        outcomes = cross_fit_packed(
            [list(network.bodies) for network, _ in networks],
            batches.x,
            batches.y,
            folds,
            replace(config, callbacks=()),
            plan.weight_decays,
            lambda k, member, candidate: numbered_callbacks(k * n_decays, member, candidate),
            batches.w,
        )
    for k, (network, _) in enumerate(networks if not outcomes else []):
        try:
            fitted = cross_fit(
                list(network.bodies),
                batches.x,
                batches.y,
                folds,
                replace(config, callbacks=()),
                plan.weight_decays,
                functools.partial(numbered_callbacks, k * n_decays),
                batches.w,
            )
            outcomes.append((fitted, None))
        except TrainingDivergedError as exc:
            outcomes.append((exc.cross_fit, exc))  # type: ignore[attr-defined]

    def best_loss(fitted: CrossFit) -> float:
        loss = fitted.losses.get(fitted.weight_decay)
        return math.inf if loss is None else loss

    finite = [k for k, (_, error) in enumerate(outcomes) if error is None]
    # The lowest out-of-fold loss; of equal ones (or when all diverged), the first.
    chosen = min(finite or [0], key=lambda k: best_loss(outcomes[k][0]))
    fitted, error = outcomes[chosen]
    network, embedding = networks[chosen]
    trained = _cross_fitted(params, plan, seed, fitted, y, stalls, given, chosen * n_decays)
    if len(networks) > 1:
        trained.facts["cross_fit"]["numeric_embedding"] = {
            name: (None if outcome[1] is not None else best_loss(outcome[0]))
            for (_, name), outcome in zip(networks, outcomes, strict=True)
        }
    common = (params, network, lr, encoder, classes, summary, lr_finder, batches, context, info)
    result = _finish(
        *common,
        replace(plan, weight_decay=fitted.weight_decay, numeric_embedding=embedding),
        trained,
    )
    if error is not None:
        # As for one network: the error carries the model of the least bad candidate.
        error.result = result  # type: ignore[attr-defined]
        raise error
    return result


def _cross_fitted(
    params: Mapping[str, Any],
    plan: Plan,
    seed: int,
    fitted: CrossFit,
    y: NDArray[np.floating],
    stalls: Mapping[int, StallDetector],
    sample_weight: NDArray[np.float64] | None = None,
    first_candidate: int = 0,
) -> Trained:
    """History, stopping, warnings and out-of-fold scores of a cross-fit (rows weighted
    by ``sample_weight``, if given; its candidates numbered from ``first_candidate``)."""
    chosen = first_candidate + plan.weight_decays.index(fitted.weight_decay)
    method = str(params.get("calibration", "auto"))
    metrics: dict[str, Any] = {}
    calibration = without_held_out_rows(method)
    threshold = 0.5
    if np.isfinite(fitted.oof_logits).all():  # not so after a divergence
        # The map is fitted on single members' out-of-fold logits and applied to their
        # average (as CalibratedClassifierCV(ensemble=False) fits on cross_val_predict).
        calibration = calibrate(
            fitted.oof_logits,
            y,
            method,
            seed=seed,
            sample_weight=sample_weight,
            auto_method=OUT_OF_FOLD_AUTO,
        ) | {"rows": "out-of-fold"}
        proba = expit(calibrate_logits(fitted.oof_logits, calibration))
        threshold = default_threshold(decision_weight(plan), calibration)
        metrics = binary_metrics(y, proba, threshold, sample_weight) | {
            "estimate": f"out of fold ({plan.folds} folds: each row scored by the member "
            "that did not train on it)"
        }
        if "before" in calibration:
            metrics["calibration"] = {
                k: calibration[k] for k in ("method", "before", "after") if k in calibration
            }
    history = [record for member in fitted.histories for record in member]
    epochs = [e for e in fitted.best_epochs if e is not None]
    return Trained(
        history,
        int(np.median(epochs)) if epochs else None,
        stalls[chosen].warnings,
        threshold,  # not tuned on small data (Plan.small_data)
        metrics,
        calibration,
        facts={"cross_fit": describe(fitted)},
    )


def _run_seed(params: Mapping[str, Any], context: DistributedContext | None) -> int:
    """``random_state``, or a random seed shared by every process."""
    if params["random_state"] is not None:
        return int(params["random_state"])
    seed = int(np.random.default_rng().integers(0, 2**31 - 1))
    return int(context.broadcast_object(seed)) if context is not None else seed


def _classes(
    summary: TableSummary, classes: NDArray[Any] | None, positive: Any
) -> tuple[list[Any], NDArray[Any]]:
    """The target values meaning 0 and 1, and the classes (``classes[1]`` positive)."""
    if classes is not None:
        return [0.0, 1.0], classes
    import pandas as pd

    # Through pandas, so the classes get the dtype they get in memory (object for text).
    found = encode_labels(pd.Series(list(summary.labels)).to_numpy(), positive).classes
    return list(found), found


def _counts(summary: TableSummary, label_values: Sequence[Any]) -> dict[int, tuple[int, int]]:
    """``(training rows, held-out rows)`` of class 0 and of class 1."""
    out = {}
    for k, value in enumerate(label_values):
        train, held = summary.labels.get(value, [0, 0])
        out[k] = (int(train), int(held))
    return out


def _weight_totals(
    summary: TableSummary, label_values: Sequence[Any]
) -> dict[int, tuple[float, float]] | None:
    """``(training, held-out)`` sums of the row weights of each class, if rows are weighted
    (by weights that are not all equal)."""
    weights = summary.weights
    if weights is None or weights.constant:
        return None
    out = {}
    for k, value in enumerate(label_values):
        train, held = weights.labels.get(value, [0.0, 0.0])
        out[k] = (float(train), float(held))
    return out


def _loss_totals(
    counts: Mapping[int, tuple[int, int]],
    totals: Mapping[int, tuple[float, float]] | None,
    plan: Plan,
) -> dict[int, tuple[float, float]]:
    """How much each class weighs in the loss, ``(training, held-out)``: its rows, or the
    sum of their weights, times the class weight. What the class prior is taken from."""
    factors = plan.class_weight or (1.0, 1.0)
    source = counts if totals is None else totals
    return {k: (factors[k] * source[k][0], factors[k] * source[k][1]) for k in (0, 1)}


def _weight_label(source: Source, weight: str | None) -> str:
    """How messages name the weights: ``sample_weight``, or the file's column."""
    if weight is None:
        return "the weights"
    return (
        "sample_weight" if weight in getattr(source, "extra", {}) else f"weight column {weight!r}"
    )


def _row_weighting(
    summary: TableSummary, plan: Plan, label_values: Sequence[Any]
) -> RowWeighting | None:
    """The rows' loss weights (and the weight column, which leaves rows of weight 0 out),
    or ``None`` without a weight column or class weights.

    The loss weight of a row is its weight times its class's weight, scaled so that
    their mean over the training rows is 1.
    """
    column = summary.plan.weight
    if column is None and plan.class_weight is None:
        return None
    totals = _weight_totals(summary, label_values)
    loss = _loss_totals(_counts(summary, label_values), totals, plan)
    mass = loss[0][0] + loss[1][0]
    label = summary.weights.label if summary.weights is not None else ""
    scale = plan.n_train / mass if mass > 0 else 1.0
    return RowWeighting(column, label, plan.class_weight, scale, use_column=totals is not None)


def decision_weight(plan: Plan) -> float | None:
    """How much more the loss weighs a positive than a negative: ``pos_weight``, or the
    ratio of the class weights (``None``: equally)."""
    if plan.pos_weight is not None:
        return plan.pos_weight
    if plan.class_weight is not None and plan.class_weight[0] != plan.class_weight[1]:
        return plan.class_weight[1] / plan.class_weight[0]
    return None


#: Robust scaling: the spread between these quantiles, divided by ROBUST_DIVISOR (the
#: spread of a standard normal distribution between them), so a normal column gets its
#: standard deviation, and a few extreme values (up to 5 %: sentinels, unit errors) move
#: neither the centre nor the scale. Chosen on the development tables against the
#: interquartile range (RealMLP's choice; worse there: mean ROC AUC -0.002) and the
#: 1-99 % spread (-0.0005), with 5-95 % level with plain standardisation on them.
ROBUST_QUANTILES = (0.05, 0.95)
ROBUST_DIVISOR = 3.2897072539029435  # 2 * Phi^-1(0.95)


@dataclass
class NumericStatistics:
    """What the network's input scaling is built from, per numeric input."""

    median: NDArray[np.float64]  # fills missing values
    center: NDArray[np.float64]  # subtracted ...
    scale: NDArray[np.float64]  # ... then divided by (always > 0)
    raw: RunningStats  # mean and variance of the values present (for the stall detector)


def numeric_statistics(
    source: Source,
    summary: TableSummary,
    encoder: TabularEncoder,
    split: SplitRule,
    normalize: str,
    *,
    budget: int | None,
    context: DistributedContext | None,
    target: str,
    weighting: RowWeighting | None = None,
) -> NumericStatistics:
    """Exact training quantiles of every numeric input and the scaling they give.

    ``robust``: centre the median, scale the 5-95 % spread in standard deviations of a
    normal distribution (half the range where that is 0, 1 for a constant);
    ``standardize``: the mean and standard deviation of the values after imputation;
    otherwise no scaling. With ``weighting`` by a column, rows of weight 0 are left out
    and, unless the others are all equal, every statistic weights the rows (a row of
    weight ``k`` counts as ``k`` rows, the smallest weight as one).
    """
    weighted = weighting is not None and weighting.by_row
    infos = encoder.numeric_infos
    names = [c.name for c in infos]
    tally = summary.numeric
    raw = tally.training_stats(names, weighted=weighted)
    low_q, high_q = ROBUST_QUANTILES
    probabilities = [low_q, 0.5, high_q] if normalize == "robust" else [0.5]
    counts: list[float] = [int(c) for c in raw.count]
    by_weight = None
    if weighting is not None and weighting.column is not None and summary.weights is not None:
        unit = summary.weights.low
        rows = [int(c) for c in tally.training_stats(names).count]
        by_weight = QuantileWeights(weighting.column, unit, rows, weighted=weighted)
        if weighted:
            counts = [float(c) / unit for c in raw.count]
    found = exact_quantiles(
        source,
        [(c.name, c.role) for c in infos],
        counts,
        probabilities,
        split,
        budget=budget,
        target=target if summary.n_dropped else None,
        context=context,
        weight=by_weight,
    )
    median = found[:, probabilities.index(0.5)]
    n = len(names)
    center, scale = np.zeros(n), np.ones(n)
    if normalize == "robust" and n:
        span = np.array([(c.high or 0.0) - (c.low or 0.0) for c in infos]) / 2
        spread = (found[:, 2] - found[:, 0]) / ROBUST_DIVISOR
        center = median
        scale = np.where(spread > 0, spread, np.where(span > 0, span, 1.0))
    elif normalize == "standardize" and n:
        # Missing training values count as the median, as after imputation; the merge
        # happens relative to the raw mean, where the numbers are small.
        missing_by_column = tally.train_missing_w if weighted else tally.train_missing
        missing = np.array([float(missing_by_column[tally.names.index(c)]) for c in names])
        imputed = RunningStats(raw.count.copy(), np.zeros(n), raw.m2.copy(), raw.exponent)
        imputed.merge(RunningStats(missing, median - raw.mean, np.zeros(n)))
        center, scale = imputed.mean + raw.mean, imputed.scale
    return NumericStatistics(median, center, scale, raw)


def divergence_advice(normalize: str, encoder: TabularEncoder) -> str:
    """What to try when training diverges for good, given ``normalize`` (never itself).

    Scaled inputs (``'robust'``, ``'standardize'``) are bounded whatever the data: a
    standardised training value lies within ``sqrt(n - 1)`` standard deviations of the
    mean, a robust one within 3. Unscaled ones (``'none'``, ``'batchnorm'``, whose float32
    statistics square the raw values) are not: the advice names the largest.
    """
    if normalize in ("robust", "standardize"):
        return "try a smaller lr, or check the inputs for extreme values"
    sizes = {c.name: max(abs(c.low or 0.0), abs(c.high or 0.0)) for c in encoder.numeric_infos}
    largest = max(sizes, key=lambda name: sizes[name], default=None)
    where = (
        f", which scales column {largest!r} (training values up to {sizes[largest]:.3g}) and "
        "every other numeric column"
        if largest is not None and sizes[largest] > 0
        else ""
    )
    return f"try a smaller lr, or normalize='robust' (the default){where}"


def _build_module(
    params: Mapping[str, Any],
    encoder: TabularEncoder,
    stats: NumericStatistics,
    plan: Plan,
    counts: Mapping[int, tuple[float, float]],
    seed: int,
    n_members: int = 1,
) -> SteadyNet:
    """The network, its fitted buffers set from the statistics (``counts``: how much each
    class weighs in the training loss, which sets the initial bias at the prior)."""
    had_missing = np.array([c.n_missing > 0 for c in encoder.numeric_infos], dtype=bool)
    arch = Architecture(
        n_numeric=len(encoder.numeric_columns),
        n_missing=int(had_missing.sum()),
        vocab_sizes=tuple(encoder.vocab_sizes),
        target_sizes=tuple(encoder.target_sizes),
        hidden=tuple(int(h) for h in params["hidden"]),
        activation=params["activation"],
        batchnorm=params["normalize"] == "batchnorm",
        clip=params["normalize"] == "robust",
        n_members=n_members,
        periodic=embedded_inputs(encoder.numeric_infos, plan.numeric_embedding),
    )
    check_model_size(arch)
    rate = float(np.clip(positive_share(counts), 1e-6, 1 - 1e-6))
    prior = math.log(rate / (1 - rate)) + math.log(plan.pos_weight or 1.0)
    generator = torch.Generator().manual_seed(seed)
    module = SteadyNet(arch, prior_logit=prior, generator=generator)
    inputs = module.encoder
    median = np.where(np.isnan(stats.median), 0.0, stats.median)
    with torch.no_grad():
        inputs.impute.median.copy_(torch.from_numpy(median))
        inputs.impute.missing_columns.copy_(torch.from_numpy(np.flatnonzero(had_missing)))
        inputs.normalize.center.copy_(torch.from_numpy(np.asarray(stats.center, np.float64)))
        inputs.normalize.scale.copy_(torch.from_numpy(np.asarray(stats.scale, np.float64)))
    return module


def _target_statistics(
    source: Source,
    encoding: BatchEncoder,
    module: SteadyNet,
    seed: int,
    read_rows: int | None,
    context: DistributedContext | None,
    unit: float | None = None,
) -> None:
    """Count the training rows of each level of the many-level categoricals (one pass),
    set the network's tables and give the encoding the out-of-fold ones.

    Rows of weight 0 are left out (:meth:`BatchEncoder.rows`). With ``unit`` (rows weighted
    by a column whose weights are not all equal), a row counts ``weight / unit`` rows in its
    level's rate and frequency (``unit`` the mean training weight: scaling every weight
    changes nothing, and the rows count as many as there are); class weights do not
    enter: the rates describe the data, not the loss.
    """
    from .schema.weights import weight_values

    n_cat = len(encoding.encoder.categorical_columns)
    counts = TargetCounts.empty(encoding.encoder.target_sizes)
    for start, frame in source.batches(encoding.columns, batch_rows=read_rows):
        kept, in_valid, positions = encoding.rows(start, frame)
        _, x_cat = encoding.raw(start, kept)
        train = ~in_valid
        y = encoding.labels(kept[encoding.target])
        folds = target_folds(positions[train], seed)
        w = None
        if unit is not None and encoding.weighting is not None and encoding.weighting.column:
            name = encoding.weighting.column
            label = encoding.weighting.label
            w = weight_values(name, kept[name][train], positions[train], label) / unit
        counts.add(x_cat[train, n_cat:], y[train], folds, w)
    if context is not None:  # every process gets the counts of all
        everyone = context.all_gather_object(counts)
        counts = TargetCounts.empty(encoding.encoder.target_sizes)
        for part in everyone:
            counts.merge(part)
    tables = counts.tables()
    with torch.no_grad():
        for buffer, table in zip(module.encoder.target.tables(), tables.final, strict=True):
            buffer.copy_(torch.from_numpy(table))
    encoding.target_tables, encoding.target_seed = tables, seed


def _batch_source(
    source: Source,
    encoding: BatchEncoder,
    plan: Plan,
    n_train: int,
    n_valid: int,
    budget: int,
    seed: int,
    world: int,
    in_memory: bool,
    context: DistributedContext | None,
) -> tuple[InMemoryBatches | StreamedBatches, EncodedRows | None, dict[str, Any]]:
    """The training batches and validation rows: in memory when they fit, else streamed."""
    weighted = encoding.weighting is not None and encoding.weighting.active
    row_bytes = 4 * (encoding.width + 1 + weighted)  # float32 features, label, loss weight
    read_rows = (
        None if in_memory else read_rows_for_budget(source.row_bytes(encoding.columns), budget)
    )
    held = row_bytes * (n_train + n_valid)
    cached = in_memory or held <= budget // CACHE_SHARE
    if context is not None:
        cached = bool(context.all_reduce_min(int(cached)))
    info: dict[str, Any] = {"rows_in_memory": cached, "read_rows": read_rows}
    local_batch = None if plan.batch_size is None else max(1, plan.batch_size // world)
    if cached:
        train, valid = encode_rows(source, encoding, n_train, n_valid, read_rows)
        steps = None
        if context is not None:
            # Every process takes the same number of steps (DistributedDataParallel needs
            # it): the fewest any process has rows for.
            size = local_batch or max(1, train.n_rows)
            steps = context.all_reduce_min(-(-train.n_rows // size))
        positions = np.concatenate(train.positions) if train.positions else np.zeros(0, np.int64)
        kept_in_memory = InMemoryBatches(
            train.x, train.y, local_batch, max_steps=steps, positions=positions, w=train.w
        )
        return kept_in_memory, valid, info
    batch = local_batch or max(1, n_train)
    steps = -(-n_train // batch)
    if context is not None:
        steps = context.all_reduce_min(steps)
    if steps == 0:
        raise DataError(
            f"a process has no training rows ({plan.n_train} in all for {world} processes); use fewer processes or more data"
        )
    # Validation rows: all of them if they fit 1/8 of the budget, else a hash-chosen share.
    keep = min(1.0, budget / 8 / max(1, n_valid * row_bytes))
    valid = None
    if n_valid:
        valid = EncodedRows(
            encoding.width,
            int(n_valid * keep * 1.05) + 256,
            encoding.device,
            weighted=weighted,
        )
    assert read_rows is not None
    # The buffer's two blocks (rows held plus one chunk, and their permutation) take about
    # 1/4 of the budget: several record batches are mixed at a time.
    buffer_rows = max(4 * batch, budget // 8 // row_bytes - read_rows)
    batches = StreamedBatches(
        source,
        encoding,
        batch_size=batch,
        steps=steps,
        read_rows=read_rows,
        buffer_rows=buffer_rows,
        validation=valid,
        validation_keep=keep,
        seed=seed,
    )
    info |= {"shuffle_buffer_rows": buffer_rows, "validation_keep": keep}
    return batches, valid, info


def positive_share(counts: Mapping[int, tuple[float, float]]) -> float:
    """The positive class's share of the training rows (or of their weight)."""
    total = counts[0][0] + counts[1][0]
    return counts[1][0] / total if total > 0 else 0.0


def _sample(batches: InMemoryBatches | StreamedBatches, n_rows: int) -> Batch:
    """Some training rows: spread over the block in memory, the first ones when streamed."""
    if isinstance(batches, StreamedBatches):
        return batches.sample(n_rows)
    every = max(1, batches.n_rows // n_rows)
    w = None if batches.w is None else batches.w[::every][:n_rows]
    return batches.x[::every][:n_rows], batches.y[::every][:n_rows], w


def _stall_detector(
    params: Mapping[str, Any],
    encoder: TabularEncoder,
    raw: RunningStats,
    plan: Plan,
    counts: Mapping[int, tuple[float, float]],
    module: SteadyNet,
    sample: Batch,
) -> StallDetector:
    """The default training monitor, told the raw feature scales so it can name a cause."""
    return StallDetector(
        positive_share(counts),
        pos_weight=plan.pos_weight,
        feature_names=encoder.numeric_columns,
        feature_mean=raw.mean.tolist(),
        feature_std=raw.std.tolist(),
        normalized=params["normalize"] != "none",
        activation=params["activation"],
        sample=sample[0],
        verbose=bool(params["verbose"]),
    )


def _finish(
    params: Mapping[str, Any],
    module: SteadyNet,
    lr: float,
    encoder: TabularEncoder,
    classes: NDArray[Any],
    summary: TableSummary,
    lr_finder: LRFinderResult | None,
    batches: InMemoryBatches | StreamedBatches,
    context: DistributedContext | None,
    info: dict[str, Any],
    plan: Plan,
    trained: Trained,
) -> FitResult:
    """The fitted model: float64 weights, unseen codes averaged, with its facts."""
    # Predictions run in float64: they then do not depend on how rows are batched.
    module = module.double().eval()
    module.average_unseen_codes(_code_counts(encoder))
    history = trained.history
    if lr_finder is not None and history:
        history[0]["lr_finder"] = lr
    data = (
        info
        | trained.facts
        | {
            "n_rows": summary.n_rows,
            "n_train": plan.n_train,
            "n_valid": plan.n_valid,
            "dropped_target_rows": summary.n_dropped,
            "first_dropped_target_rows": list(summary.first_dropped),
            "processes": context.world_size if context is not None else 1,
            "steps_per_epoch": batches.steps,
        }
    )
    return FitResult(
        encoder=encoder,
        classes=classes,
        feature_names=list(summary.plan.features),
        module=module,
        plan=plan,
        history=history,
        best_epoch=trained.best_epoch,
        lr=lr,
        warnings=[w.to_dict() for w in trained.warnings],
        threshold=trained.threshold,
        validation_metrics=trained.metrics,
        lr_finder=lr_finder,
        data=data,
        calibration=trained.calibration,
    )


def _code_counts(encoder: TabularEncoder) -> list[list[int]]:
    """Rows per code (missing, unseen, each kept level) of every categorical input."""
    return [
        [info.n_missing, info.n_other, *info.level_counts] for info in encoder.categorical_columns
    ]


def default_threshold(pos_weight: float | None, calibration: Mapping[str, Any]) -> float:
    """The decision threshold when none is tuned: 0.5, or where ``pos_weight`` put it.

    A loss weighting positives by ``w`` moves the network's 0.5 to the true probability
    ``1 / (1 + w)`` (the Bayes decision for an error on a positive costing ``w`` times
    one on a negative). A calibration map gives back true probabilities, so the threshold
    moves there: the decisions the weighting asked for, with calibrated probabilities.
    """
    if pos_weight is None or calibration.get("method", "none") == "none":
        return 0.5
    return 1.0 / (1.0 + float(pos_weight))


@torch.no_grad()
def _score(
    params: Mapping[str, Any],
    pos_weight: float | None,
    module: SteadyNet,
    batches: InMemoryBatches | StreamedBatches,
    valid: EncodedRows | None,
    context: DistributedContext | None,
    weighting: RowWeighting | None = None,
) -> tuple[float, dict[str, Any], dict[str, Any]]:
    """The decision threshold, metrics on the held-out rows and the calibration.

    The calibration is fitted on the held-out rows' logits (identity without held-out
    rows); the threshold is tuned on the calibrated probabilities of the held-out rows,
    or of the training rows when there are none (and they are in memory). Rows weigh
    what they were given to weigh (not the class weights, which are for the loss).
    """
    method = str(params.get("calibration", "auto"))
    rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None
    if valid is not None:
        rows = (valid.x, valid.y, valid.w)
    elif params["threshold_metric"] is not None and isinstance(batches, InMemoryBatches):
        rows = (batches.x, batches.y, batches.w)
    if rows is None:
        return 0.5, {}, without_held_out_rows(method)
    logits = _held_out_logits(module, rows[0])
    y = rows[1].cpu().numpy()
    w = (
        weighting.given(rows[2].cpu().numpy(), y)
        if rows[2] is not None and weighting is not None and weighting.by_row
        else None
    )
    if context is not None:
        gathered = context.all_gather_object((logits, y, w))
        logits = np.concatenate([g[0] for g in gathered])
        y = np.concatenate([g[1] for g in gathered])
        w = None if w is None else np.concatenate([g[2] for g in gathered])
    if logits.size == 0:
        return 0.5, {}, without_held_out_rows(method)
    if valid is not None:
        seed = params["random_state"] if params["random_state"] is not None else 0
        calibration = calibrate(logits, y, method, seed=int(seed), sample_weight=w)
    else:
        calibration = without_held_out_rows(method)
    proba = expit(calibrate_logits(logits, calibration))
    threshold = default_threshold(pos_weight, calibration)
    if params["threshold_metric"] is not None:
        threshold = tune_threshold(y, proba, params["threshold_metric"], w)
    if valid is None:
        return threshold, {}, calibration
    metrics = binary_metrics(y, proba, threshold, w)
    if "before" in calibration:
        metrics["calibration"] = {
            k: calibration[k] for k in ("method", "before", "after") if k in calibration
        }
    return threshold, metrics, calibration


#: Rows per float64 forward pass when scoring the held-out rows: the whole set at once
#: made float64 hidden activations of every row (80,000 rows x 64 units: 41 MB each).
SCORE_CHUNK_ROWS = 1 << 11


def _held_out_logits(module: SteadyNet, x: torch.Tensor) -> NDArray[np.float64]:
    """The float64 logits of encoded rows (as predictions compute them), chunk by chunk."""
    out = np.empty(int(x.shape[0]), dtype=np.float64)
    for start in range(0, out.size, SCORE_CHUNK_ROWS):
        chunk = x[start : start + SCORE_CHUNK_ROWS].double()
        out[start : start + chunk.shape[0]] = module.logits(chunk).reshape(-1).cpu().numpy()
    return out


def check_device(name: str) -> torch.device:
    """The device a fit runs on: ``'auto'`` is CUDA when available."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device='cuda' was requested but CUDA is not available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
