"""Choosing the network of a fit: among its candidates, the one of lowest loss on rows it
did not train on.

A fit's candidates are the readings of its columns (integer codes read as categories too,
or not: each reading its own encoder and rows, a :class:`~steadyclf.fit_state.FitState`
of its own) times the networks of each (with and without periodic embeddings), times,
on small data, the weight decays. :func:`fit_members` (small data) cross-fits every
member of every candidate at once (:mod:`steadyclf.train.packed`) and keeps the candidate
of lowest out-of-fold log loss, correcting the estimate it reports for that choice
(:func:`~steadyclf.evaluation.selection_bias`). :func:`race_networks` (held-out rows)
lets the candidates race their first epochs and trains the winner on
(:mod:`steadyclf.train.race`).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

from .calibration import IDENTITY_CALIBRATION
from .evaluation import selection_bias
from .exceptions import ModelFileError, TrainingDivergedError
from .train.batches import InMemoryBatches
from .train.crossfit import (
    CrossFit,
    cross_fit,
    describe,
    from_record,
    stratified_folds,
    to_record,
)
from .train.packed import PackStopped, cross_fit_packed, packable
from .train.race import ContinueFrom, race, race_epochs
from .train.rows import sample_rows
from .train.stall import SATURATION_ROWS, StallDetector, StallWarning
from .train.trainer import Callback, Trainer, hook

if TYPE_CHECKING:
    from .fit_state import FitState
    from .nn.modules import SteadyNet

__all__ = ["OutOfFold", "Trained", "codes_gain", "fit_members", "race_networks"]

#: Turn packed training off (``benchmarks/real_data.py --ablate packed-members``): every
#: member then trains one after another, as before packing.
PACKED_MEMBERS = True

#: Members with periodic embeddings train only with the weight decay their reading's plain
#: network chose (:func:`_two_stages`); off (``benchmarks/real_data.py --ablate
#: decay-for-embeddings``) they are trained with every weight decay, as before.
EMBEDDINGS_AT_CHOSEN_DECAY = True

#: Small data keeps integer codes read as categories only where that lowers the
#: out-of-fold log loss by at least this many standard errors of the mean per-row gain
#: (:func:`codes_gain`): a one-standard-error rule, as CART's pruning and glmnet's
#: ``lambda.1se`` prefer the simpler model within noise. The reading adds inputs (one-hot
#: levels, target statistics) and a second choice on the same folds; a gain within noise
#: is more often luck than a code (``benchmarks/real_data.py --params
#: '{"integer_codes": "none"}'`` for the tables without it). ``0``: the lower loss wins.
CODE_READING_MIN_Z = 1.0


@dataclass
class OutOfFold:
    """Small data: each row's logit from the member that did not train on it, and what
    the choice of the candidate adds to its scores (:func:`selection_bias`)."""

    logits: NDArray[np.float64]
    y: NDArray[np.floating]
    sample_weight: NDArray[np.float64] | None
    selection: dict[str, float] = field(default_factory=dict)


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
    out_of_fold: OutOfFold | None = None  # small data: what the scores come from
    error: TrainingDivergedError | None = None  # training diverged: this is the best left


@dataclass
class _Candidate:
    """One network of one reading: ``reading`` is the state that holds its rows."""

    reading: FitState
    network: SteadyNet
    embedding: str
    codes: str

    @property
    def name(self) -> str:
        return self.embedding + ("+codes" if self.codes != "none" else "")


def candidates(state: FitState) -> list[_Candidate]:
    """Every network of every reading, in the plan's order of preference."""
    out = []
    for reading, codes in zip(state.readings, state.plan.integer_codes_candidates, strict=True):
        embeddings = state.plan.numeric_embeddings
        out.append(_Candidate(reading, reading.module, embeddings[0], codes))
        if reading.plain is not None:
            out.append(_Candidate(reading, reading.plain, embeddings[1], codes))
    return out


def adopt(state: FitState, chosen: _Candidate) -> None:
    """Make the chosen candidate's reading and network the fit's."""
    reading = chosen.reading
    if reading is not state:
        state.encoder, state.encoding = reading.encoder, reading.encoding
        state.batches, state.valid, state.info = reading.batches, reading.valid, reading.info
    state.module = chosen.network


# -- small data -------------------------------------------------------------------------------
def fit_members(state: FitState, callbacks: Sequence[Callback]) -> Trained:
    """Small data: cross-fit the members of every candidate in two stages
    (:func:`_two_stages`: the weight decays on each reading's plain network, then the
    embeddings at the decay it chose) and keep the candidate of lowest out-of-fold log
    loss, integer codes read as categories only where they save a standard error
    (:func:`codes_gain`): the choice goes into the plan
    (:meth:`~steadyclf.policy.Plan.with_choice`) and the kept network into the state.
    """
    plan, batches, weighting = state.plan, state.batches, state.weighting
    assert isinstance(batches, InMemoryBatches) and batches.positions is not None
    y = batches.y.cpu().numpy()
    given = (
        None
        if batches.w is None or weighting is None or not weighting.by_row
        else weighting.given(batches.w.cpu().numpy(), y)
    )
    folds = stratified_folds(y, batches.positions, plan.folds, state.seed)
    stalls: dict[int, StallDetector] = {}
    options = candidates(state)
    n_decays = len(plan.weight_decays)
    packed = PACKED_MEMBERS and packable(state.module.body, state.config, callbacks)
    # A checkpoint keeps packed members stage by stage (_cross_fit), not member by member.
    keeper = next((cb for cb in callbacks if getattr(cb, "keeps_stages", False)), None)
    keeper = keeper if packed else None

    def member_callbacks(member: int, candidate: int) -> Sequence[Callback]:
        # A checkpoint keeps each member in its own part; other callbacks see every run.
        own = [hook(cb, "part")(candidate, member) for cb in callbacks if cb is not keeper]
        if member != 0:
            return tuple(own)
        stall = stalls[candidate] = state.stall.candidate()  # each candidate's first member
        reading = options[candidate // n_decays].reading
        if reading is not state:  # its own inputs: the rows as that reading encodes them
            stall.sample = sample_rows(reading.batches, SATURATION_ROWS)[0]
        return (stall, *own)

    stages = _Stages(packed, keeper, member_callbacks, stalls, n_decays)
    outcomes = _two_stages(state, options, folds, stages)

    finite = [k for k, (_, error) in enumerate(outcomes) if error is None]
    w = None if batches.w is None else batches.w.cpu().numpy().astype(np.float64)
    gain = codes_gain(
        [o.codes for o in options],
        [None if k not in finite else outcomes[k][0] for k in range(len(options))],
        y,
        w,
        state.config.pos_weight,
    )
    if gain is not None and gain < CODE_READING_MIN_Z:  # within noise: numbers only
        finite = [k for k in finite if options[k].codes == "none"]
    # The lowest out-of-fold loss; of equal ones (or when all diverged), the first.
    chosen = min(finite or [0], key=lambda k: _loss_of(outcomes[k][0]))
    fitted, error = outcomes[chosen]
    adopt(state, options[chosen])
    state.plan = plan.with_choice(
        weight_decay=fitted.weight_decay,
        numeric_embedding=options[chosen].embedding,
        integer_codes=options[chosen].codes,
    )
    facts: dict[str, Any] = {"cross_fit": describe(fitted)}
    # The weight decays compared: those of the network that chose it (_two_stages).
    decided = _decay_chooser(options)[chosen]
    facts["cross_fit"]["out_of_fold_log_loss"] = describe(outcomes[decided][0])[
        "out_of_fold_log_loss"
    ]
    losses = {
        option.name: (None if outcome[1] is not None else _loss_of(outcome[0]))
        for option, outcome in zip(options, outcomes, strict=True)
    }
    if len({o.embedding for o in options}) > 1:
        facts["cross_fit"]["numeric_embedding"] = {
            o.embedding: losses[o.name] for o in options if o.codes == options[chosen].codes
        }
    if len({o.codes for o in options}) > 1:
        facts["cross_fit"]["integer_codes"] = {
            codes: min(
                (v for o in options if o.codes == codes and (v := losses[o.name]) is not None),
                default=None,
            )
            for codes in plan.integer_codes_candidates
        }
        if gain is not None:
            facts["cross_fit"]["integer_codes_gain_z"] = gain
    epochs = [e for e in fitted.best_epochs if e is not None]
    watched = chosen * n_decays + plan.weight_decays.index(fitted.weight_decay)
    scored = {
        (k, decay): expit(oof)
        for k, (outcome, _) in enumerate(outcomes)
        for decay, oof in outcome.candidate_oof.items()
        if outcome.losses.get(decay) is not None and np.isfinite(oof).all()
    }
    bias = {}
    if (chosen, fitted.weight_decay) in scored:
        bias = selection_bias(y, folds, scored, (chosen, fitted.weight_decay), given)
    state.stall.speak(stalls[watched].warnings)  # the candidates' detectors kept quiet
    return Trained(
        [record for member in fitted.histories for record in member],
        int(np.median(epochs)) if epochs else None,
        stalls[watched].warnings,
        facts=facts,
        out_of_fold=OutOfFold(fitted.oof_logits, y, given, bias),
        error=error,
    )


def _loss_of(fitted: CrossFit) -> float:
    """The out-of-fold log loss of a cross-fit's chosen weight decay (diverged: inf)."""
    loss = fitted.losses.get(fitted.weight_decay)
    return math.inf if loss is None else loss


def codes_gain(
    codes: Sequence[str],
    fitted: Sequence[CrossFit | None],
    y: NDArray[np.floating],
    w: NDArray[np.float64] | None,
    pos_weight: float | None,
) -> float | None:
    """How clearly reading integer codes as categories lowers the out-of-fold log loss: the
    mean per-row loss the best candidate with codes saves over the best without, in
    standard errors of that mean (row weights ``w``: a weighted mean, its standard error
    from Kish's effective number of rows). ``None`` without a finished candidate of each
    kind. ``codes[k]`` and ``fitted[k]`` (``None``: diverged) are candidate ``k``'s."""

    def best(with_codes: bool) -> CrossFit | None:
        kept = [f for c, f in zip(codes, fitted, strict=True) if f and (c != "none") == with_codes]
        return min(kept, key=_loss_of, default=None)

    plain, coded = best(False), best(True)
    if plain is None or coded is None:
        return None
    labels = np.asarray(y, dtype=np.float64)
    pw = 1.0 if pos_weight is None else float(pos_weight)

    def row_losses(logits: NDArray[np.float64]) -> NDArray[np.float64]:
        return pw * labels * np.logaddexp(0.0, -logits) + (1 - labels) * np.logaddexp(0.0, logits)

    diff = row_losses(plain.oof_logits) - row_losses(coded.oof_logits)
    weights = np.ones_like(diff) if w is None else w
    total = weights.sum()
    mean = float((weights * diff).sum() / total)
    variance = float((weights * (diff - mean) ** 2).sum() / total)
    effective = total**2 / float((weights**2).sum())
    se = math.sqrt(variance / effective)
    if not math.isfinite(mean) or not math.isfinite(se):
        return None
    return mean / se if se > 0 else (math.inf if mean > 0 else 0.0)


def _decay_chooser(options: Sequence[_Candidate]) -> list[int]:
    """For each candidate, the candidate whose cross-fit chooses its weight decay: its
    reading's plain network (the last of the reading, :func:`candidates`), or itself with
    :data:`EMBEDDINGS_AT_CHOSEN_DECAY` off."""
    last = {id(o.reading): k for k, o in enumerate(options)}
    return [last[id(o.reading)] if EMBEDDINGS_AT_CHOSEN_DECAY else k for k, o in enumerate(options)]


@dataclass
class _Stages:
    """How the stages of a small-data fit train (:func:`_two_stages`): packed or member by
    member, the checkpoint that keeps packed stages (if any), each member's callbacks
    (``member_callbacks(member, candidate)``) and each candidate's stall detector."""

    packed: bool
    keeper: Any
    member_callbacks: Any
    stalls: dict[int, StallDetector]
    n_decays: int


def _two_stages(
    state: FitState,
    options: Sequence[_Candidate],
    folds: NDArray[np.int64],
    stages: _Stages,
) -> list[tuple[CrossFit, TrainingDivergedError | None]]:
    """Every candidate's cross-fit, in two stages. First each reading's plainest network
    (without embeddings: the cheap one) with every weight decay; then its other networks
    (periodic embeddings: several times the cost of a plain network per member) with
    only the weight decay its plain network chose, a third of their members. The members
    of a candidate keep the numbers they would have with every weight decay (``candidate
    * n_decays + decay``: each watcher and checkpoint part its own)."""
    decays = state.plan.weight_decays
    chooser = _decay_chooser(options)
    first = [k for k in range(len(options)) if chooser[k] == k]
    outcomes: dict[int, tuple[CrossFit, TrainingDivergedError | None]] = {}
    every = [list(decays)] * len(first)
    stage = _cross_fit(state, options, first, folds, every, stages, 0)
    outcomes.update(zip(first, stage, strict=True))
    rest = [k for k in range(len(options)) if k not in outcomes]
    if rest:  # all at once, each with the decay its reading's plain network chose
        chosen = [[outcomes[chooser[k]][0].weight_decay] for k in rest]
        stage = _cross_fit(state, options, rest, folds, chosen, stages, 1)
        outcomes.update(zip(rest, stage, strict=True))
    return [outcomes[k] for k in range(len(options))]


def _cross_fit(
    state: FitState,
    every_option: Sequence[_Candidate],
    indices: list[int],
    folds: NDArray[np.int64],
    decays: Sequence[Sequence[float]],
    stages: _Stages,
    stage: int,
) -> list[tuple[CrossFit, TrainingDivergedError | None]]:
    """Stage ``stage``: the cross-fits of the candidates ``indices`` (of ``every_option``),
    the ``k``-th with the weight decays ``decays[k]``: packed (all at once) where it can
    be, else one member after another (a run checkpointed epoch by epoch, BatchNorm,
    another optimizer). A checkpoint that keeps packed stages saves the stage as it ends
    and, when resuming, hands back the stage it saved instead of training it again."""
    batches = state.batches
    assert isinstance(batches, InMemoryBatches)
    options = [every_option[k] for k in indices]
    all_decays = state.plan.weight_decays
    where = [[all_decays.index(d) for d in tried] for tried in decays]

    def numbered(k: int, member: int, c: int) -> Sequence[Callback]:
        return stages.member_callbacks(member, indices[k] * stages.n_decays + where[k][c])

    def watched(k: int, c: int) -> StallDetector | None:
        return stages.stalls.get(indices[k] * stages.n_decays + where[k][c])

    config = replace(state.config, callbacks=())
    xs = []
    for option in options:
        rows = option.reading.batches
        assert isinstance(rows, InMemoryBatches) and rows.n_rows == batches.n_rows
        xs.append(rows.x)
    if stages.packed:
        keeper = stages.keeper
        saved = None if keeper is None else keeper.load_stage(stage)
        if saved is not None:
            return _restored(options, saved, decays, numbered, watched, batches.n_rows, stage)
        with keeper.stopping_stage() if keeper else contextlib.nullcontext(None) as stop:
            try:  # every member of every candidate at once, one batched network per layout
                packed = cross_fit_packed(
                    [list(option.network.bodies) for option in options],
                    xs,
                    batches.y,
                    folds,
                    config,
                    decays,
                    numbered,
                    batches.w,
                    stop,
                )
            except PackStopped:
                raise keeper.interrupted(stage) from None
        if keeper is not None:
            records = [
                to_record(
                    fitted,
                    error,
                    list(option.network.bodies),
                    [_warnings_of(watched(k, c)) for c in range(len(decays[k]))],
                )
                for k, (option, (fitted, error)) in enumerate(zip(options, packed, strict=True))
            ]
            keeper.save_stage(stage, records)
        return packed
    outcomes: list[tuple[CrossFit, TrainingDivergedError | None]] = []
    for k, option in enumerate(options):
        try:
            fitted = cross_fit(
                list(option.network.bodies),
                xs[k],
                batches.y,
                folds,
                config,
                decays[k],
                functools.partial(numbered, k),
                batches.w,
            )
            outcomes.append((fitted, None))
        except TrainingDivergedError as exc:
            outcomes.append((exc.cross_fit, exc))
    return outcomes


def _warnings_of(detector: StallDetector | None) -> list[dict[str, Any]]:
    return [] if detector is None else [w.to_dict() for w in detector.warnings]


def _restored(
    options: Sequence[_Candidate],
    saved: list[dict[str, Any]],
    decays: Sequence[Sequence[float]],
    numbered: Any,
    watched: Any,
    n_rows: int,
    stage: int,
) -> list[tuple[CrossFit, TrainingDivergedError | None]]:
    """A stage a checkpoint kept, as training it would have left it: the members' weights,
    the cross-fits and each watched member's warnings."""
    where = f"checkpoint stage-{stage}"
    if len(saved) != len(options):
        raise ModelFileError(f"{where} holds {len(saved)} networks; this run has {len(options)}")
    outcomes = []
    for k, (option, record) in enumerate(zip(options, saved, strict=True)):
        fitted, error, warnings = from_record(
            record, list(option.network.bodies), n_rows, f"{where}.networks[{k}]"
        )
        if len(warnings) != len(decays[k]):
            raise ModelFileError(f"{where}.networks[{k}] has warnings of other candidates")
        for c, kept in enumerate(warnings):
            numbered(k, 0, c)  # the callbacks that watched it, as training makes them
            detector = watched(k, c)
            if detector is not None:
                try:
                    detector.warnings = [StallWarning(**w) for w in kept]
                except TypeError as exc:
                    raise ModelFileError(f"{where}: a malformed warning ({exc})") from exc
        outcomes.append((fitted, error))
    return outcomes


# -- held-out rows ----------------------------------------------------------------------------
def race_networks(state: FitState, callbacks: Sequence[Callback]) -> Trainer | None:
    """Larger data with several candidates: they race their first epochs on the held-out
    rows and the winner becomes the fit's network; returns the trainer to continue it with
    (its run restored from the race), or ``None`` with one candidate or no held-out rows.

    Every run is watched as one network is: its own copy of the stall detector, the
    callbacks (a checkpoint keeps each candidate's race in part ``0-i``, the winner's
    continuation in part ``1-0``, so that a resumed fit replays the same race).
    """
    options = candidates(state)
    if len(options) < 2 or any(o.reading.valid is None for o in options):
        return None
    plan = state.plan

    def watched(option: _Candidate, *part: int) -> tuple[Callback, ...]:
        stall = state.stall.candidate()
        if option.reading is not state:  # its own inputs: the rows as that reading has them
            stall.sample = sample_rows(option.reading.batches, SATURATION_ROWS)[0]
        own = [hook(cb, "part")(*part) for cb in callbacks]
        return (stall, *own)

    epochs = race_epochs(plan.n_train, state.config.max_epochs)
    runs = [
        (o.network.trainable(), o.reading.batches, o.reading.valid, watched(o, 0, i))
        for i, o in enumerate(options)
    ]
    result = race(runs, replace(state.config, callbacks=()), state.context, epochs)
    chosen = options[result.chosen]
    adopt(state, chosen)
    state.plan = plan.with_choice(numeric_embedding=chosen.embedding, integer_codes=chosen.codes)
    state.info["race"] = {
        "epochs": epochs,
        "validation_loss": {o.name: loss for o, loss in zip(options, result.losses)},  # noqa: B905 (a stopped race has fewer)
        "chosen": chosen.name,
    }
    stall, *own = runs[result.chosen][3][:1] + watched(chosen, 1, 0)[1:]
    assert isinstance(stall, StallDetector)
    stall.go_on(state.stall.verbose)
    state.stall = stall  # the winner's detector goes on watching it
    config = replace(state.config, callbacks=(ContinueFrom(result.state), stall, *own))
    if result.stopped:  # a callback ended training: the winner so far, no further epochs
        config = replace(config, max_epochs=int(result.state["epoch"]))
    return Trainer(chosen.network.trainable(), config, state.context)
