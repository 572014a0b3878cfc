"""Cross-fitting on small data: k members, each trained without one fold and stopped on it.

On a few thousand rows or fewer, one split wastes rows and gives a noisy estimate. Here
the training rows are cut into ``k`` stratified folds; member ``j`` trains on the other
folds and picks its epoch on fold ``j`` (early stopping on the validation loss, best
weights restored), so every row gets a prediction from a member that never trained on it
(out-of-fold). The members form the final model (their probabilities are averaged, a
bagged ensemble), and the out-of-fold predictions give an honest estimate of its quality
and choose what one fixed value cannot serve for every table: the strength of the weight
decay, among a few candidates, by out-of-fold log loss (as ``LogisticRegressionCV``
chooses ``C``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from ..exceptions import ModelFileError, TrainingDivergedError
from ..schema.split import row_uniform
from .batches import InMemoryBatches
from .state import check_like
from .trainer import Callback, EpochRecord, TrainConfig, Trainer, weighted_loss

__all__ = ["CrossFit", "cross_fit", "from_record", "stratified_folds", "to_record"]


def stratified_folds(
    y: NDArray[np.floating], positions: NDArray[np.int64], k: int, seed: int
) -> NDArray[np.int64]:
    """The fold of each row: within each class, rows in hash order dealt to folds in turn.

    Exactly stratified (each fold gets its share of each class, to one row) and fixed by
    the rows' positions and the seed, whatever order the rows come in.
    """
    folds = np.empty(len(y), dtype=np.int64)
    key = row_uniform(positions, seed ^ 0x5EED)
    for label in (0, 1):
        rows = np.flatnonzero((y > 0.5) == bool(label))
        order = rows[np.argsort(key[rows], kind="stable")]
        folds[order] = np.arange(order.size) % k
    return folds


@dataclass
class CrossFit:
    """What cross-fitting chose and measured.

    ``oof_logits`` are the members' logits on the rows each did not train on;
    ``losses`` the out-of-fold log loss of each candidate weight decay (``None``: it
    diverged), ``candidate_oof`` each candidate's out-of-fold logits.
    """

    weight_decay: float
    oof_logits: NDArray[np.float64]
    histories: list[list[EpochRecord]]
    best_epochs: list[int | None]
    losses: dict[float, float | None] = field(default_factory=dict)
    #: Every candidate's out-of-fold logits, by weight decay (what the choice saw).
    candidate_oof: dict[float, NDArray[np.float64]] = field(default_factory=dict)


def cross_fit(
    bodies: Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    folds: NDArray[np.int64],
    config: TrainConfig,
    weight_decays: Sequence[float],
    callbacks: Callable[[int, int], Sequence[Callback]] = lambda member, candidate: (),
    w: torch.Tensor | None = None,
) -> CrossFit:
    """Train ``bodies[j]`` on the rows outside fold ``j``, for each weight decay candidate,
    and keep the members of the candidate with the lowest out-of-fold log loss.

    ``w`` are the rows' loss weights, if any: in the members' training and stopping, and
    in the out-of-fold log loss that chooses the weight decay.

    ``callbacks(member, candidate)`` gives the callbacks of one run. Every candidate starts
    from the same initial weights, so the choice compares the penalties, not the draws.

    A member that diverges keeps its best finite weights (as :class:`Trainer` leaves
    them) and rules its candidate out. When every candidate diverged, the first error is
    raised with the candidate of lowest out-of-fold loss loaded, ``error.cross_fit`` set.
    """
    initial = [copy.deepcopy(body.state_dict()) for body in bodies]
    loss_fn = nn.BCEWithLogitsLoss(
        pos_weight=None
        if config.pos_weight is None
        else torch.tensor(config.pos_weight, dtype=torch.float32, device=x.device)
    )
    best: CrossFit | None = None
    best_states: list[dict[str, torch.Tensor]] = []
    losses: dict[float, float | None] = {}
    best_loss = math.inf
    error: TrainingDivergedError | None = None
    fallback: tuple[float, CrossFit | None, list[dict[str, torch.Tensor]]] = (math.inf, None, [])
    candidate_oof: dict[float, NDArray[np.float64]] = {}
    for candidate, decay in enumerate(weight_decays):
        oof = np.zeros(len(y), dtype=np.float64)
        histories, epochs, states = [], [], []
        diverged = False
        for member, body in enumerate(bodies):
            body.load_state_dict(initial[member])
            held = torch.from_numpy(np.flatnonzero(folds == member)).to(x.device)
            kept = torch.from_numpy(np.flatnonzero(folds != member)).to(x.device)
            cfg = replace(
                config,
                weight_decay=decay,
                seed=config.seed + member,
                callbacks=tuple(callbacks(member, candidate)),
            )
            trainer = Trainer(body, cfg)
            w_kept, w_held = (None, None) if w is None else (w[kept], w[held])
            train = InMemoryBatches(x[kept], y[kept], cfg.batch_size, w=w_kept)
            try:
                trainer.fit(train, (x[held], y[held], w_held))
            except TrainingDivergedError as exc:
                error, diverged = error or exc, True
            with torch.no_grad():
                body.eval()
                oof[held.cpu().numpy()] = body(x[held]).reshape(-1).double().cpu().numpy()
            histories.append([{**r, "member": member} for r in trainer.history])
            epochs.append(trainer.best_epoch)
            states.append(copy.deepcopy(body.state_dict()))
        with torch.no_grad():
            logits = torch.from_numpy(oof).to(device=x.device, dtype=y.dtype)
            loss = float(weighted_loss(logits, y, w, loss_fn))
            if w is not None:  # mean(w * loss) -> the weighted mean
                loss /= float(w.double().mean())
        loss = loss if math.isfinite(loss) else math.inf
        result = CrossFit(decay, oof, histories, epochs)
        candidate_oof[decay] = oof
        if diverged:
            losses[decay] = None  # diverged
            if best is None and (fallback[1] is None or loss < fallback[0]):
                fallback = (loss, result, states)
        elif loss < best_loss or best is None:  # of equal ones, the first listed
            best_loss, best, best_states = loss, result, states
            losses[decay] = loss
        else:
            losses[decay] = loss
    if best is None:  # every candidate diverged: hand back the least bad
        _, best, best_states = fallback
        assert best is not None and error is not None
        best.losses, best.candidate_oof = losses, candidate_oof
        for body, state in zip(bodies, best_states, strict=True):
            body.load_state_dict(state)
        error.cross_fit = best
        raise error
    for body, state in zip(bodies, best_states, strict=True):
        body.load_state_dict(state)
    best.losses, best.candidate_oof = losses, candidate_oof
    return best


def describe(result: CrossFit) -> dict[str, Any]:
    """JSON facts of a cross-fit: the candidates' out-of-fold log loss and the choice."""
    return {
        "weight_decay": result.weight_decay,
        "out_of_fold_log_loss": {f"{d:g}": v for d, v in result.losses.items()},
        "best_epochs": result.best_epochs,
    }


def to_record(
    fitted: CrossFit,
    error: TrainingDivergedError | None,
    bodies: Sequence[nn.Module],
    warnings: list[list[dict[str, Any]]],
) -> dict[str, Any]:
    """What a checkpoint keeps of a network's finished cross-fit (:func:`from_record`):
    its members' weights, what the cross-fit measured, the error that ruled out its every
    candidate (or ``None``) and the warnings of each candidate's watched member."""
    return {
        "bodies": [dict(body.state_dict()) for body in bodies],
        "weight_decay": fitted.weight_decay,
        "oof_logits": torch.from_numpy(np.asarray(fitted.oof_logits, dtype=np.float64)),
        "histories": fitted.histories,
        "best_epochs": fitted.best_epochs,
        "losses": [[decay, loss] for decay, loss in fitted.losses.items()],
        "candidate_oof": [
            [decay, torch.from_numpy(np.asarray(oof, dtype=np.float64))]
            for decay, oof in fitted.candidate_oof.items()
        ],
        "error": None if error is None else str(error),
        "warnings": warnings,
    }


def from_record(
    record: dict[str, Any], bodies: Sequence[nn.Module], n_rows: int, where: str
) -> tuple[CrossFit, TrainingDivergedError | None, list[list[dict[str, Any]]]]:
    """The cross-fit a checkpoint kept (:func:`to_record`), its members' weights loaded
    into ``bodies``; refuses a record that does not fit them or ``n_rows`` rows."""
    try:
        saved = record["bodies"]
        check_like(saved, [dict(body.state_dict()) for body in bodies], f"{where}.bodies")
        oof = record["oof_logits"]
        candidates = {float(d): o.double().numpy() for d, o in record["candidate_oof"]}
        losses = {float(d): None if v is None else float(v) for d, v in record["losses"]}
        fitted = CrossFit(
            float(record["weight_decay"]),
            oof.double().numpy(),
            [list(h) for h in record["histories"]],
            [None if e is None else int(e) for e in record["best_epochs"]],
            losses,
            candidates,
        )
        warnings = [list(w) for w in record["warnings"]]
        error_text = record["error"]
        shapes = [oof.shape, *(o.shape for o in candidates.values())]
        if any(shape != (n_rows,) for shape in shapes) or len(fitted.histories) != len(bodies):
            raise ModelFileError(f"{where} does not hold {n_rows} rows of {len(bodies)} members")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{where} is not a cross-fit this run can continue: {exc}") from exc
    for body, state in zip(bodies, saved, strict=True):
        body.load_state_dict(state)
    error = None
    if error_text is not None:
        error = TrainingDivergedError(str(error_text))
        error.cross_fit = fitted
    return fitted, error, warnings
