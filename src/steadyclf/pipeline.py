"""One fit, whatever the data: summarise, decide, build, train, score.

:func:`fit_source` is the whole of training, for a DataFrame in memory (a source with
one batch) as for files read in passes, on one process or under ``torchrun``:

1. **summarise** the rows in one pass (:func:`~steadyclf.schema.summary.summarise`):
   column facts, label counts, float64 statistics of the numeric candidates per side of
   the hash split;
2. **decide** every data-dependent default (:func:`~steadyclf.policy.resolve`) and the
   column roles (:class:`~steadyclf.schema.encoder.TabularEncoder`), then find the exact
   training quantiles of every numeric column and the scaling they give
   (:mod:`~steadyclf.schema.scaling`);
3. **build** the network with its fitted buffers (:class:`~steadyclf.nn.modules.SteadyNet`)
   and the target statistics of many-level categoricals (:mod:`~steadyclf.train.rows`);
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

Each stage is one function that reads and extends one :class:`FitState`. It returns a
:class:`FitResult`, which the estimator turns into its fitted attributes.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy.special import expit

from .calibration import (
    IDENTITY_CALIBRATION,
    OUT_OF_FOLD_AUTO,
    calibrate,
    decision_weight,
    default_threshold,
    without_held_out_rows,
)
from .choice import OutOfFold, Trained, fit_members, race_networks
from .evaluation import binary_metrics, correct_for_selection, tune_threshold
from .exceptions import TrainingDivergedError
from .fit_state import FitState
from .io.sources import FrameSource, Source, read_rows_for_budget
from .nn.modules import SteadyNet
from .nn.spec import Architecture
from .parallel import share_of, shared_seed
from .policy import (
    Plan,
    check_model_size,
    code_readings,
    embedded_inputs,
    holdout_candidate,
    loss_totals,
    positive_share,
    resolve,
)
from .predictor import calibrate as calibrate_logits
from .schema.columns import ColumnPlan
from .schema.encoder import TabularEncoder
from .schema.labels import class_counts, class_weight_sums, summary_classes
from .schema.scaling import divergence_advice, numeric_statistics
from .schema.split import SplitRule
from .schema.summary import summarise
from .schema.weights import weight_label
from .train.batches import (
    BatchEncoder,
    InMemoryBatches,
    StreamedBatches,
)
from .train.lr_finder import LRFinderResult, find_lr
from .train.rows import (
    BatchPlan,
    batch_source,
    count_target_levels,
    reading_of,
    row_weighting,
    sample_rows,
)
from .train.stall import SATURATION_ROWS, StallDetector
from .train.trainer import Callback, FitContext, TrainConfig, Trainer, hook

if TYPE_CHECKING:
    from .parallel import DistributedContext

__all__ = ["IDENTITY_CALIBRATION", "FitResult", "FitState", "fit_source"]

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
    callbacks : sequence of Callback
        Called by the trainer, after the stall detector.
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
    if context is not None:  # verbose changes only what a process prints
        arguments = {"target": target, "weight": weight, "drop_missing_target": drop_missing_target}
        context.check_same_call({k: v for k, v in params.items() if k != "verbose"} | arguments)
    state = _summarise(
        params,
        source,
        target,
        classes=classes,
        budget=budget,
        drop_missing_target=drop_missing_target,
        fingerprint=any(getattr(cb, "needs_fingerprint", False) for cb in callbacks),
        context=context,
        device=device,
        weight=weight,
    )
    _decide(state)
    _build(state)
    trained = _train(state, callbacks)
    return _score(state, trained)


# -- 1. summarise ----------------------------------------------------------------------------
def _summarise(
    params: Mapping[str, Any],
    source: Source,
    target: str,
    *,
    classes: NDArray[Any] | None,
    budget: int,
    drop_missing_target: bool,
    fingerprint: bool,
    context: DistributedContext | None,
    device: torch.device | None,
    weight: str | None,
) -> FitState:
    """One pass over the rows: column facts, label counts and numeric statistics."""
    started = time.perf_counter()
    seed = shared_seed(params["random_state"], context)
    columns = ColumnPlan.create(
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
    summary = summarise(
        shard,
        columns,
        SplitRule(holdout_candidate(params), seed),
        budget=budget,
        drop_missing_target=drop_missing_target,
        fingerprint=fingerprint,
        context=context,
        weight_label=weight_label(weight, getattr(source, "extra", {})),
    )
    label_values, classes = summary_classes(summary.labels, classes, params.get("positive"))
    return FitState(
        params=params,
        source=shard,
        target=target,
        budget=budget,
        in_memory=isinstance(source, FrameSource),
        context=context,
        device=device or (context.device if context is not None else torch.device("cpu")),
        seed=seed,
        started=started,
        summary=summary,
        label_values=label_values,
        classes=classes,
    )


# -- 2. decide -------------------------------------------------------------------------------
def _decide(state: FitState) -> None:
    """The column roles, every data-dependent default, the row weights and the scaling."""
    summary, label_values = state.summary, state.label_values
    encoder = TabularEncoder.from_summary(summary)
    plan = state.plan = resolve(
        state.params,
        class_counts(summary, label_values),
        class_weight_sums(summary, label_values),
        state.classes.tolist(),
        world_size=state.world_size,
        numeric_infos=encoder.numeric_infos,
        code_columns=code_readings(state.params, encoder.columns_, summary.plan.numeric),
    )
    state.encoder = _reading(state, encoder, plan.integer_codes)
    if plan.validation_fraction == 0:
        summary.fold_validation_into_training()
    weighting = state.weighting = row_weighting(
        summary, label_values, n_train=plan.n_train, class_weight=plan.class_weight
    )
    state.counts = loss_totals(
        class_counts(summary, label_values),
        class_weight_sums(summary, label_values),
        plan.class_weight,
    )
    state.stats = numeric_statistics(
        state.source,
        summary,
        state.encoder,
        SplitRule(plan.validation_fraction, state.seed),
        state.params["normalize"],
        budget=None if state.in_memory else state.budget,
        context=state.context,
        target=state.target,
        weight_column=None if weighting is None else weighting.column,
        weighted=weighting is not None and weighting.by_row,
    )


# -- 3. build --------------------------------------------------------------------------------
def _reading(state: FitState, encoder: TabularEncoder, codes: str) -> TabularEncoder:
    """``encoder`` with the plan's code columns read as categories too, or not."""
    if codes == "none":
        return encoder
    return encoder.with_categories(state.summary, state.plan.code_columns)


def _build(state: FitState) -> None:
    """The networks of each reading of the columns the plan tries, with their fitted
    buffers and how rows are encoded for them."""
    _build_reading(state)
    state.readings = [state]
    for codes in state.plan.integer_codes_candidates[1:]:
        other = copy.copy(state)  # the same rows and settings, another encoder
        other.encoder = _reading(state, state.encoder, codes)
        _build_reading(other)
        state.readings.append(other)


def _build_reading(state: FitState) -> None:
    """The network with its fitted buffers, and how rows are encoded for it."""
    plan = state.plan
    state.module = _build_module(state, plan.numeric_embedding)
    split = SplitRule(plan.validation_fraction, state.seed)
    state.encoding = BatchEncoder(
        state.encoder,
        state.module.encoder,
        state.target,
        state.label_values,
        split,
        state.device,
        state.weighting,
    )
    if state.encoder.target_columns:
        _target_statistics(state)
    state.plain = None
    if len(plan.numeric_embeddings) > 1:
        # 'auto' leaves the choice to the training: the same encoder (its tables set
        # above), bodies drawn as with the other numeric_embedding.
        state.plain = _build_module(state, plan.numeric_embeddings[1])
        state.plain.encoder.load_state_dict(state.module.encoder.state_dict())


def _build_module(state: FitState, embedding: str) -> SteadyNet:
    """The network (``embedding`` of its continuous inputs), its fitted buffers set from
    the statistics; its initial bias is the prior of the classes' loss weights."""
    params, encoder, stats = state.params, state.encoder, state.stats
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
        n_members=state.plan.members,
        periodic=embedded_inputs(encoder.numeric_infos, embedding),
    )
    check_model_size(arch)
    rate = float(np.clip(positive_share(state.counts), 1e-6, 1 - 1e-6))
    prior = math.log(rate / (1 - rate)) + math.log(state.plan.pos_weight or 1.0)
    generator = torch.Generator().manual_seed(state.seed)
    module = SteadyNet(arch, prior_logit=prior, generator=generator)
    inputs = module.encoder
    median = np.where(np.isnan(stats.median), 0.0, stats.median)
    with torch.no_grad():
        inputs.impute.median.copy_(torch.from_numpy(median))
        inputs.impute.missing_columns.copy_(torch.from_numpy(np.flatnonzero(had_missing)))
        inputs.normalize.center.copy_(torch.from_numpy(np.asarray(stats.center, np.float64)))
        inputs.normalize.scale.copy_(torch.from_numpy(np.asarray(stats.scale, np.float64)))
    return module.to(state.device)


def _target_statistics(state: FitState) -> None:
    """Set the network's target-statistic tables and give the encoding the out-of-fold
    ones (:func:`~steadyclf.train.rows.count_target_levels`)."""
    encoding, summary, weighting = state.encoding, state.summary, state.weighting
    read_rows = (
        None
        if state.in_memory
        else read_rows_for_budget(state.source.row_bytes(encoding.columns), state.budget)
    )
    unit = None
    if weighting is not None and weighting.by_row and summary.weights is not None:
        # The mean training weight counts one row (schema/target_stats.py says why).
        unit = summary.mean_training_weight
    tables = count_target_levels(
        state.source,
        encoding,
        seed=state.seed,
        read_rows=read_rows,
        context=state.context,
        unit=unit,
    )
    with torch.no_grad():
        for buffer, table in zip(state.module.encoder.target.tables(), tables.final, strict=True):
            buffer.copy_(torch.from_numpy(table))
    encoding.target_tables, encoding.target_seed = tables, state.seed


# -- 4. train --------------------------------------------------------------------------------
def _train(state: FitState, callbacks: Sequence[Callback]) -> Trained:
    """Batches, the learning rate and the settings, then one network trained (or, on
    small data, the members cross-fitted). A divergence after some epochs is kept in the
    result (:attr:`Trained.error`) with the best finite weights."""
    for reading in state.readings:
        _batch_source(reading)
    state.stall = _stall_detector(state)
    _learning_rate(state)
    plan, params = state.plan, state.params
    # The stall detector runs first, so user callbacks (e.g. a Checkpoint) see whole rows.
    state.config = TrainConfig(
        lr=state.lr,
        max_epochs=int(params["max_epochs"]),
        batch_size=plan.batch_size,
        optimizer=params["optimizer"],
        schedule=params["schedule"],
        weight_decay=plan.weight_decay,
        early_stopping=plan.early_stopping,
        patience=plan.patience,
        pos_weight=plan.pos_weight,
        seed=state.seed,
        check_every=plan.check_every,
        callbacks=(state.stall, *callbacks),
        advice=divergence_advice(params["normalize"], state.encoder.numeric_infos),
    )
    summary = state.summary
    fit_context = FitContext(
        dict(params),
        state.seed,
        state.module,
        state.encoder.to_dict(),
        state.classes.tolist(),
        summary.digest or "",
        summary.n_rows,
        reading_of(state.info),
    )
    for cb in callbacks:  # e.g. a Checkpoint checks it resumes the same run
        hook(cb, "on_fit_begin")(fit_context)
    state.info |= {"statistics_seconds": round(time.perf_counter() - state.started, 3)}
    if summary.weights is not None:
        used = state.weighting is not None and state.weighting.by_row
        state.info |= {"weights": summary.weights.to_dict() | {"used": used}}
    if plan.folds > 1:
        return fit_members(state, callbacks)
    trainer = race_networks(state, callbacks) or Trainer(
        state.module.trainable(), state.config, state.context
    )
    try:
        trainer.fit(state.batches, state.valid)
    except TrainingDivergedError as exc:
        # The trainer kept the best finite weights: the error carries that model, so a
        # caller can still save it; the estimator itself is left as it was.
        if not trainer.history:
            raise
        return Trained(trainer.history, trainer.best_epoch, state.stall.warnings, error=exc)
    return Trained(trainer.history, trainer.best_epoch, state.stall.warnings)


def _learning_rate(state: FitState) -> None:
    """The plan's rate, or with lr='auto' a range test on the training rows (the first
    buffer if streamed), every process taking rank 0's."""
    batches = state.batches
    state.lr_finder = None
    if state.plan.lr is not None:
        state.lr = state.plan.lr
        return
    x, y, w = (
        sample_rows(batches, LR_FINDER_ROWS)
        if isinstance(batches, StreamedBatches)
        else (batches.x, batches.y, batches.w)
    )
    state.lr_finder = find_lr(
        state.module.body,
        x,
        y,
        optimizer=state.params["optimizer"],
        batch_size=batches.batch_size if batches.batch_size < batches.n_rows else None,
        pos_weight=state.plan.pos_weight,
        w=w,
        seed=state.seed,
    )
    state.lr = state.lr_finder.lr
    if state.context is not None:  # each process tested its own rows
        state.lr = float(state.context.broadcast_object(state.lr))


def _batch_source(state: FitState) -> None:
    """The training batches and validation rows (cross-fitting is for small data: always
    in memory)."""
    plan = state.plan
    rows = BatchPlan(
        n_train=state.summary.local_train,
        n_valid=state.summary.local_valid,
        batch_size=plan.batch_size,
        in_memory=state.in_memory or plan.folds > 1,
        world=state.world_size,
        n_all_train=plan.n_train,
    )
    state.batches, state.valid, state.info = batch_source(
        state.source,
        state.encoding,
        rows,
        budget=state.budget,
        seed=state.seed,
        context=state.context,
    )


def _stall_detector(state: FitState) -> StallDetector:
    """The default training monitor, told the raw feature scales so it can name a cause."""
    params, raw = state.params, state.stats.raw
    return StallDetector(
        positive_share(state.counts),
        pos_weight=state.plan.pos_weight,
        feature_names=state.encoder.numeric_columns,
        feature_mean=raw.mean.tolist(),
        feature_std=raw.std.tolist(),
        normalized=params["normalize"] != "none",
        activation=params["activation"],
        sample=sample_rows(state.batches, SATURATION_ROWS)[0],
        verbose=bool(params["verbose"]),
    )


# -- 5. score --------------------------------------------------------------------------------
def _score(state: FitState, trained: Trained) -> FitResult:
    """Calibrate and set the threshold on the held-out rows (small data: out of fold),
    then the fitted model. A diverged training raises, its error carrying that model."""
    if trained.out_of_fold is not None:
        _score_out_of_fold(state, trained, trained.out_of_fold)
    elif trained.error is None:
        trained.threshold, trained.metrics, trained.calibration = _score_held_out(state)
    result = _finish(state, trained)
    if trained.error is not None:
        trained.error.result = result
        raise trained.error
    return result


def _score_out_of_fold(state: FitState, trained: Trained, oof: OutOfFold) -> None:
    """Calibration, threshold and metrics of a cross-fit, from its out-of-fold logits."""
    method = str(state.params.get("calibration", "auto"))
    trained.calibration = without_held_out_rows(method)
    if not np.isfinite(oof.logits).all():  # not so after a divergence
        return
    # The map is fitted on single members' out-of-fold logits and applied to their
    # average (as CalibratedClassifierCV(ensemble=False) fits on cross_val_predict).
    calibration = calibrate(
        oof.logits,
        oof.y,
        method,
        seed=state.seed,
        sample_weight=oof.sample_weight,
        auto_method=OUT_OF_FOLD_AUTO,
    ) | {"rows": "out-of-fold"}
    proba = expit(calibrate_logits(oof.logits, calibration))
    plan = state.plan
    # Not tuned on small data (Plan.small_data).
    threshold = default_threshold(decision_weight(plan.pos_weight, plan.class_weight), calibration)
    metrics = binary_metrics(oof.y, proba, threshold, oof.sample_weight) | {
        "estimate": f"out of fold ({plan.folds} folds: each row scored by the member "
        "that did not train on it), corrected for the choice of the candidate "
        "(selection_bias)"
    }
    if oof.selection:
        metrics = correct_for_selection(metrics, oof.selection)
    if "before" in calibration:
        metrics["calibration"] = {
            k: calibration[k] for k in ("method", "before", "after") if k in calibration
        }
    trained.threshold, trained.metrics, trained.calibration = threshold, metrics, calibration


@torch.no_grad()
def _score_held_out(state: FitState) -> tuple[float, dict[str, Any], dict[str, Any]]:
    """The decision threshold, metrics on the held-out rows and the calibration.

    The calibration is fitted on the held-out rows' logits (identity without held-out
    rows); the threshold is tuned on the calibrated probabilities of the held-out rows,
    or of the training rows when there are none (and they are in memory). Rows weigh
    what they were given to weigh (not the class weights, which are for the loss).
    """
    params, valid, batches, weighting = state.params, state.valid, state.batches, state.weighting
    method = str(params.get("calibration", "auto"))
    rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None
    if valid is not None:
        rows = (valid.x, valid.y, valid.w)
    elif params["threshold_metric"] is not None and isinstance(batches, InMemoryBatches):
        rows = (batches.x, batches.y, batches.w)
    if rows is None:
        return 0.5, {}, without_held_out_rows(method)
    logits = _held_out_logits(state.module.double(), rows[0])
    y = rows[1].cpu().numpy()
    w = (
        weighting.given(rows[2].cpu().numpy(), y)
        if rows[2] is not None and weighting is not None and weighting.by_row
        else None
    )
    if state.context is not None:
        gathered = state.context.all_gather_object((logits, y, w))
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
    plan = state.plan
    threshold = default_threshold(decision_weight(plan.pos_weight, plan.class_weight), calibration)
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


def _finish(state: FitState, trained: Trained) -> FitResult:
    """The fitted model: float64 weights, unseen codes averaged, with its facts."""
    # Predictions run in float64: they then do not depend on how rows are batched.
    module = state.module.double().eval()
    # Rows per code (missing, unseen, each kept level) of every categorical input.
    infos = state.encoder.categorical_columns
    module.average_unseen_codes([[c.n_missing, c.n_other, *c.level_counts] for c in infos])
    history = trained.history
    if state.lr_finder is not None and history:
        history[0]["lr_finder"] = state.lr
    summary, plan = state.summary, state.plan
    data = (
        state.info
        | trained.facts
        | {
            "n_rows": summary.n_rows,
            "n_train": plan.n_train,
            "n_valid": plan.n_valid,
            "dropped_target_rows": summary.n_dropped,
            "first_dropped_target_rows": list(summary.first_dropped),
            "processes": state.world_size,
            "steps_per_epoch": state.batches.steps,
        }
    )
    return FitResult(
        encoder=state.encoder,
        classes=state.classes,
        feature_names=list(summary.plan.features),
        module=module,
        plan=plan,
        history=history,
        best_epoch=trained.best_epoch,
        lr=state.lr,
        warnings=[w.to_dict() for w in trained.warnings],
        threshold=trained.threshold,
        validation_metrics=trained.metrics,
        lr_finder=state.lr_finder,
        data=data,
        calibration=trained.calibration,
    )


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
