"""The training loop, one for every kind of data: it steps through a batch source.

The loop is split into small named steps (``train_epoch``, ``evaluate``) around a
:class:`Trainer` that owns the optimizer, the learning-rate schedule, early stopping and
divergence recovery, and calls the same callbacks (stall detector, checkpoints, progress)
whatever the data. Batches come from a :class:`~steadyclf.train.batches.BatchSource`:
rows held in memory (one permutation per epoch, no ``DataLoader``, no per-row Python
work), or rows streamed from files through a shuffle buffer; in a distributed run each
process steps through its shard and the network is wrapped in
``DistributedDataParallel``. Each batch's logits are kept in a buffer; loss and accuracy
are computed once per epoch from it (summed over processes in a distributed run).
Early stopping and the plateau schedule judge the validation loss at the end of each
epoch and, when ``TrainConfig.check_every`` is set (very large data), also between steps
inside it; ``patience`` counts these checks.

Rows may carry loss weights (:mod:`steadyclf.train.batches`): a step then minimises
``mean(w * loss)`` over the batch, and the epoch's loss and accuracy (training and
validation, hence early stopping) are means weighted by ``w``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from ..exceptions import TrainingDivergedError
from ..nn.modules import combined_logits, one_member
from ..nn.optim import LeanAdamStep, make_optimizer, make_scheduler
from ..nn.step import FusedMembers, FusedMLP, fused_step
from ..nn.threads import intra_op_threads, threads_for
from .batches import Batch, BatchSource, EncodedRows, InMemoryBatches

if TYPE_CHECKING:
    from ..parallel import DistributedContext

__all__ = [
    "Callback",
    "EpochRecord",
    "FitContext",
    "StopTraining",
    "TrainConfig",
    "Trainer",
    "hook",
    "overrides",
    "weighted_loss",
]

EpochRecord = dict[str, Any]


class StopTraining(Exception):
    """Raised by a callback to end training after the current epoch."""


class Callback:
    """Base class of training callbacks: every hook a fit calls, each a no-op here.

    Subclass it and override the hooks you need (any object with some of these methods
    also works: a missing hook is skipped). Pass callbacks to
    :meth:`~steadyclf.BinaryClassifier.fit` or ``fit_files`` (``callbacks=[...]``); the
    public ones (:class:`~steadyclf.train.checkpoint.Checkpoint`,
    :class:`~steadyclf.train.progress.ProgressBar`) are in :mod:`steadyclf.callbacks`.

    The fit calls :meth:`on_fit_begin` once with a :class:`FitContext`; small data
    trains several networks in turn (cross-fitted members), each with the callback that
    :meth:`part` returns. Each network's :class:`Trainer` then calls
    :meth:`on_train_setup`, :meth:`on_train_begin`, :meth:`on_epoch_end` after every
    epoch, :meth:`on_train_end`, and always :meth:`on_train_exit`. The trainer is the
    environment the hooks read: ``trainer.epoch``, ``trainer.history``,
    ``trainer.config`` (:class:`TrainConfig`), ``trainer.module``, ``trainer.optimizer``.
    A hook may raise :class:`StopTraining` to end training after the current epoch.
    """

    #: Set to ``True`` when :meth:`on_fit_begin` needs ``FitContext.fingerprint`` (a
    #: digest of every training row, which costs a pass over them).
    needs_fingerprint: bool = False

    def on_fit_begin(self, context: FitContext) -> None:
        """Once per fit, before any training: the run's parameters, seed and network."""

    def part(self, *index: int) -> Callback:
        """The callback for one of several networks a fit trains in turn (``index``:
        candidate and member); by default this same callback."""
        return self

    def on_train_setup(self, trainer: Trainer) -> None:
        """Once the optimizer exists, before any ``on_train_begin``: restore a checkpoint."""

    def on_train_begin(self, trainer: Trainer) -> None:
        """Before the first epoch."""

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        """After each epoch; ``record`` is the history row and may be extended."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last epoch (also after an early stop)."""

    def on_train_exit(self, trainer: Trainer) -> None:
        """Always, when ``fit`` returns or raises: release what ``on_train_begin`` took."""


def hook(callback: Any, name: str) -> Callable[..., Any]:
    """``callback``'s hook ``name``, or :class:`Callback`'s (a no-op; ``part`` returns
    the callback) for an object that is not a :class:`Callback` and lacks it."""
    found = getattr(callback, name, None)
    return found if found is not None else getattr(Callback, name).__get__(callback)


def overrides(callback: Any, name: str) -> bool:
    """Whether ``callback`` has a hook ``name`` of its own (not :class:`Callback`'s no-op)."""
    found = getattr(type(callback), name, None)
    return found is not None and found is not getattr(Callback, name, None)


@dataclass
class FitContext:
    """What a fit tells its callbacks before training (``on_fit_begin``).

    Parameters
    ----------
    params : dict
        The estimator's parameters (``get_params()``).
    seed : int
        Seed of the run (split, initialisation, shuffling).
    model : nn.Module
        The whole network; its non-trainable part holds the fitted preprocessing.
    encoder : dict
        The fitted column encoder (``TabularEncoder.to_dict()``).
    classes : list
        The labels, ``classes[1]`` positive.
    fingerprint : str
        A digest of the training data's values in row order, to detect resuming on
        other data.
    n_rows : int
        Rows of the training data.
    reading : dict
        How the rows were read where it shapes the model: held in memory, or streamed
        with its chunk and buffer sizes and the share of held-out rows kept (all set by
        the memory budget).
    """

    params: dict[str, Any]
    seed: int
    model: nn.Module
    encoder: dict[str, Any]
    classes: list[Any]
    fingerprint: str = ""
    n_rows: int = 0
    reading: dict[str, Any] = field(default_factory=dict)

    def preprocessing(self) -> dict[str, torch.Tensor]:
        """Fitted buffers of the model's input encoding (imputation, scaling, vocabularies);
        the trained bodies are the trainer's state."""
        trainable = {name for name, _ in self.model.named_parameters()}
        return {
            k: v.detach().clone()
            for k, v in self.model.state_dict().items()
            if k not in trainable and not k.startswith(("bodies.", "body."))
        }


@dataclass
class TrainConfig:
    """Settings of one training run (validated by the estimator)."""

    lr: float
    max_epochs: int
    batch_size: int | None
    optimizer: str = "adam"
    schedule: str = "none"
    weight_decay: float = 0.0
    early_stopping: bool = True
    patience: int = 10
    tol: float = 1e-4
    pos_weight: float | None = None
    max_recoveries: int = 3
    seed: int = 0
    callbacks: Sequence[Callback] = field(default_factory=tuple)
    #: Optimizer steps between validation checks inside an epoch (``None``: a check at the
    #: end of each epoch only). Every check evaluates the validation rows, steps the
    #: ``'plateau'`` schedule and counts towards ``patience``; early stopping may end an
    #: epoch at one. Derived from the data's size and the batch (``steadyclf.policy``).
    check_every: int | None = None
    #: Hand-written gradients for plain MLPs (:class:`~steadyclf.nn.step.FusedMLP`) and
    #: lean fused Adam steps (:class:`~steadyclf.nn.optim.LeanAdamStep`); other modules and
    #: optimizers, or ``False`` here, use autograd and ``optimizer.step()``.
    fused: bool = True
    #: What the error of a run that diverges for good suggests (the caller knows the
    #: settings; it never suggests the one in use).
    advice: str = "try a smaller lr, or check the inputs for extreme values"


#: Rows of logits (and labels, weights) a streamed epoch keeps before adding up their loss
#: and accuracy: the buffer of a source in memory holds every row of the epoch, which a
#: file larger than memory must not (8.4 million training rows: 68 MB of logits and labels).
STREAMED_METRIC_ROWS = 1 << 16


def _loss_and_accuracy(
    logits: torch.Tensor,
    y: torch.Tensor,
    loss_fn: nn.BCEWithLogitsLoss,
    chunk_rows: int = 1 << 16,
    w: torch.Tensor | None = None,
) -> tuple[float, float, float]:
    """Summed loss, correct predictions and rows, chunk by chunk (no row-sized
    temporaries); with row weights ``w``, each row counts ``w`` times in all three."""
    n = logits.shape[0]
    if w is not None:
        return _weighted_loss_and_accuracy(logits, y, w, loss_fn, chunk_rows)
    total = torch.zeros((), dtype=torch.float64, device=logits.device)
    correct = torch.zeros((), dtype=torch.int64, device=logits.device)
    for start in range(0, n, chunk_rows):
        lb, yb = logits[start : start + chunk_rows], y[start : start + chunk_rows]
        total += loss_fn(lb, yb).double() * lb.shape[0]
        correct += ((lb > 0) == (yb > 0.5)).sum()
    return float(total), float(correct), float(n)


def _weighted_loss_and_accuracy(
    logits: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    loss_fn: nn.BCEWithLogitsLoss,
    chunk_rows: int,
) -> tuple[float, float, float]:
    total = torch.zeros((), dtype=torch.float64, device=logits.device)
    correct = torch.zeros((), dtype=torch.float64, device=logits.device)
    for start in range(0, logits.shape[0], chunk_rows):
        part = slice(start, start + chunk_rows)
        lb, yb, wb = logits[part], y[part], w[part]
        losses = functional.binary_cross_entropy_with_logits(
            lb, yb, pos_weight=loss_fn.pos_weight, reduction="none"
        )
        total += torch.dot(losses.double(), wb.double())
        correct += wb.double()[(lb > 0) == (yb > 0.5)].sum()
    return float(total), float(correct), float(w.double().sum())


def weighted_loss(
    logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None, loss_fn: nn.BCEWithLogitsLoss
) -> torch.Tensor:
    """The mean loss of a batch, ``mean(w * loss)`` with row weights ``w``; for the logits
    ``(n, k)`` of :class:`~steadyclf.nn.modules.Members`, the sum of the k members' losses
    (each one's gradient as it would be alone)."""
    members = logits.shape[1] if logits.dim() == 2 and logits.shape[1] > 1 else 0
    if members:
        y = y.reshape(-1, 1).expand_as(logits)
        w = None if w is None else w.reshape(-1, 1).expand_as(logits)
    else:
        logits = logits.reshape(-1)
    if w is None:
        loss = loss_fn(logits, y)
    else:
        loss = functional.binary_cross_entropy_with_logits(
            logits, y, weight=w, pos_weight=loss_fn.pos_weight
        )
    return loss * members if members else loss


def _finite_params(module: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def _as_rows(data: Any) -> EncodedRows:
    """Validation rows: :class:`EncodedRows`, or a tuple of feature and label tensors
    (and loss weights)."""
    if isinstance(data, EncodedRows):
        return data
    x, y, w = (*data, None) if len(data) == 2 else data
    rows = EncodedRows(int(x.shape[1]), int(x.shape[0]), x.device, weighted=w is not None)
    rows.add(x, y, w)
    rows.complete = True
    return rows


class Trainer:
    """Train ``module`` (features -> one logit) with ``BCEWithLogitsLoss``.

    Parameters
    ----------
    module : nn.Module
        Maps a float32 feature matrix to logits of shape ``(n, 1)`` or ``(n,)``, or
        (:class:`~steadyclf.nn.modules.Members`) each member's, ``(n, k)``: their losses
        add up, their mean probability is judged.
    config : TrainConfig
        Optimisation settings.
    context : DistributedContext, optional
        The process group of a distributed run: steps go through
        ``DistributedDataParallel`` and every process sees the same epoch metrics.
    """

    def __init__(
        self, module: nn.Module, config: TrainConfig, context: DistributedContext | None = None
    ) -> None:
        self.module = module
        self.config = config
        self.context = context
        self.history: list[EpochRecord] = []
        self.best_epoch: int | None = None
        self.stopped_early = False
        self.recoveries = 0
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.epoch = 0
        self.generator: torch.Generator | None = None
        # Early-stopping state lives on the trainer (not in ``fit``) so checkpoints hold it.
        self.best_loss = math.inf
        self.bad_epochs = 0  # checks without improvement: epochs, or parts of epochs
        self.best_state: dict[str, torch.Tensor] | None = None
        self._step_module: nn.Module = module
        self._fused: FusedMLP | FusedMembers | None = None
        self._lean_step: LeanAdamStep | None = None
        self._buffers: dict[str, torch.Tensor] = {}

    # -- one epoch -------------------------------------------------------------------------
    def _loss_fn(self, device: torch.device) -> nn.BCEWithLogitsLoss:
        pw = self.config.pos_weight
        if pw is None:
            return nn.BCEWithLogitsLoss()
        return nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pw, dtype=torch.float32, device=device))

    def _buffer(self, name: str, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A 1-D tensor kept from epoch to epoch.

        Row-sized temporaries allocated anew every epoch (the logits, the labels) fragment
        the heap between the small tensors that live longer: peak RSS grew by about 100 MB
        over 80 epochs on 800,000 rows.
        """
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < n or buffer.dtype != dtype or buffer.device != device:
            buffer = self._buffers[name] = torch.empty(n, dtype=dtype, device=device)
        return buffer[:n]

    def _train_step(
        self,
        xb: torch.Tensor,
        yb: torch.Tensor,
        wb: torch.Tensor | None,
        loss_fn: nn.BCEWithLogitsLoss,
    ) -> torch.Tensor:
        """One optimizer step on a batch (row weights ``wb``, if any); returns the batch's
        logits before the step."""
        assert self.optimizer is not None
        if self._fused is not None:
            logits = self._fused.forward_backward(xb, yb, wb)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            out = self._step_module(xb)
            weighted_loss(out, yb, wb, loss_fn).backward()
            logits = combined_logits(out.detach())
        if self._lean_step is not None:
            self._lean_step()
        else:
            self.optimizer.step()
        return logits

    def train_epoch(
        self,
        source: BatchSource,
        generator: torch.Generator,
        loss_fn: nn.BCEWithLogitsLoss,
        check: Callable[[], bool] | None = None,
    ) -> tuple[float, float]:
        """One pass over the training batches; returns mean loss and accuracy (weighted
        by the rows' loss weights, if any).

        Each batch's logits, computed for the step, are kept in one buffer, from which
        loss and accuracy are computed once at the end (over every process). A streamed
        source, whose labels come batch by batch, keeps at most
        :data:`STREAMED_METRIC_ROWS` rows (or one batch) in that buffer and adds up its sums
        whenever it is full, so that memory does not grow with the rows of the file. ``check``
        is called every ``config.check_every`` steps before the last; when it returns
        True the epoch ends there (loss and accuracy then cover the rows stepped through).
        """
        self.module.train()
        if self._fused is not None:
            self._fused.prepare()
        weight = next(self.module.parameters())
        epoch = source.epoch(generator)
        streamed = epoch.labels is None
        size = source.n_rows
        if streamed:
            size = min(size, max(STREAMED_METRIC_ROWS, source.batch_size))
        logits = self._buffer("logits", size, weight.dtype, weight.device)
        labels = epoch.labels
        if labels is None:
            labels = self._buffer("y", size, weight.dtype, weight.device)
        weights = epoch.weights
        totals = [0.0, 0.0, 0.0]  # loss, correct, rows (or their weights) of the rows added

        def add_up(rows: int) -> None:
            assert labels is not None
            w = weights[:rows] if weights is not None else None
            sums = _loss_and_accuracy(logits[:rows], labels[:rows], loss_fn, w=w)
            for i, value in enumerate(sums):
                totals[i] += value

        per_batch_schedule = self.config.schedule == "onecycle" and self.scheduler is not None
        every = self.config.check_every if check is not None else None
        done = 0
        for steps, (xb, yb, wb) in enumerate(epoch.batches, start=1):
            if streamed and done + int(yb.shape[0]) > size:
                with torch.no_grad():
                    add_up(done)
                done = 0
            stop = done + int(yb.shape[0])
            logits[done:stop] = self._train_step(xb, yb, wb, loss_fn)
            if streamed:
                labels[done:stop] = yb
            if wb is not None and epoch.weights is None:  # streamed: kept as they come
                if weights is None:
                    weights = self._buffer("w", size, weight.dtype, weight.device)
                weights[done:stop] = wb
            done = stop
            if per_batch_schedule:
                self._step_onecycle()
            if every and steps % every == 0 and steps < source.steps:
                assert check is not None
                if check():
                    break
        with torch.no_grad():
            add_up(done)
        return self._means(*totals)

    def _means(self, loss_sum: float, correct: float, n: float) -> tuple[float, float]:
        """Mean loss and accuracy, over every process in a distributed run (``n``: the
        rows, or the sum of their weights)."""
        totals = np.array([loss_sum, correct, float(n)])
        if self.context is not None:
            totals = self.context.all_reduce_sum(totals)
        rows = float(totals[2]) if totals[2] > 0 else 1.0
        return float(totals[0]) / rows, float(totals[1]) / rows

    def _step_onecycle(self) -> None:
        # OneCycleLR refuses to step past its total; extra epochs keep the final rate.
        if self.scheduler.last_epoch + 1 < self.scheduler.total_steps:
            self.scheduler.step()

    @torch.inference_mode()
    def evaluate(
        self, data: EncodedRows, loss_fn: nn.BCEWithLogitsLoss, batch_rows: int = 1 << 13
    ) -> tuple[float, float]:
        """Mean loss and accuracy on ``data`` in eval mode (over every process), weighted
        by the rows' loss weights if any."""
        self.module.eval()
        x = data.x
        n = int(x.shape[0])
        logits = self._buffer("valid_logits", n, x.dtype, x.device)
        for start in range(0, n, batch_rows):
            xb = x[start : start + batch_rows]
            if self._fused is not None:
                self._fused.forward_into(xb, logits[start : start + batch_rows])
            else:
                logits[start : start + batch_rows] = combined_logits(self.module(xb))
        return self._means(*_loss_and_accuracy(logits, data.y, loss_fn, w=data.w))

    # -- the run ---------------------------------------------------------------------------
    def _lr(self) -> float:
        assert self.optimizer is not None
        return float(self.optimizer.param_groups[0]["lr"])

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def _recover(self, snapshot: dict[str, torch.Tensor], loss: float) -> None:
        """Roll back to the last finite state and lower the learning rate."""
        assert self.optimizer is not None
        self.recoveries += 1
        if self.recoveries > self.config.max_recoveries:
            # Give up, keeping the best finite weights seen (the last finite ones if none).
            self.module.load_state_dict(self.best_state or snapshot)
            kept = (
                f"the weights of epoch {self.best_epoch} (the best so far) were kept"
                if self.best_state is not None
                else "no epoch finished with a finite loss"
            )
            raise TrainingDivergedError(
                f"training diverged (loss {loss}) at epoch {self.epoch} even after lowering "
                f"the learning rate {self.config.max_recoveries} times ({kept}); "
                f"{self.config.advice}"
            )
        self.module.load_state_dict(snapshot)
        # Fresh optimizer state: Adam's moments may hold the non-finite values too.
        self.optimizer.state.clear()
        for group in self.optimizer.param_groups:
            group["lr"] *= 0.1
            if "max_lr" in group:
                group["max_lr"] *= 0.1
            if "initial_lr" in group:
                group["initial_lr"] *= 0.1
        if self.scheduler is not None and hasattr(self.scheduler, "base_lrs"):
            self.scheduler.base_lrs = [lr * 0.1 for lr in self.scheduler.base_lrs]

    # -- state, for checkpoints ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly where it is (between epochs).

        Weights, optimizer and scheduler state, the shuffling generator, the history, the
        epoch count and the early-stopping state (nothing draws from torch's global
        generator). Tensors are
        copies; :mod:`steadyclf.train.checkpoint` writes this to disk without pickle.
        """
        if self.optimizer is None or self.generator is None:
            raise RuntimeError("state_dict() is only available once fit() has started")
        return {
            "epoch": self.epoch,
            "history": [dict(r) for r in self.history],
            "best_epoch": self.best_epoch,
            "best_loss": self.best_loss,
            "bad_epochs": self.bad_epochs,
            "recoveries": self.recoveries,
            "module": self._snapshot(),
            "best_state": self.best_state,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`; call it from a callback's ``on_train_setup``."""
        if self.optimizer is None or self.generator is None:
            raise RuntimeError("load_state_dict() must be called once fit() has started")
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        self.history[:] = [dict(r) for r in state["history"]]
        self.epoch = int(state["epoch"])
        self.best_epoch = state["best_epoch"]
        self.best_loss = float(state["best_loss"])
        self.bad_epochs = int(state["bad_epochs"])
        self.recoveries = int(state["recoveries"])
        self.best_state = state["best_state"]

    def fit(
        self,
        train: BatchSource | tuple[torch.Tensor, ...],
        valid: EncodedRows | tuple[torch.Tensor, ...] | Batch | None = None,
    ) -> Trainer:
        """Run the training loop; returns ``self``. ``history`` holds one row per epoch.

        ``train`` is a batch source (or feature and label tensors, and optionally loss
        weights, trained with ``config.batch_size``); ``valid`` the validation rows, if
        any (streamed data fills them during the first epoch).
        """
        cfg = self.config
        source: BatchSource = (
            InMemoryBatches(train[0], train[1], cfg.batch_size, w=(train[2:] or (None,))[0])
            if isinstance(train, tuple)
            else train
        )
        valid_rows = None if valid is None else _as_rows(valid)
        device = next(self.module.parameters()).device
        rank = self.context.rank if self.context is not None else 0
        generator = self.generator = torch.Generator().manual_seed(cfg.seed + 7919 * rank)
        loss_fn = self._loss_fn(device)
        self.optimizer = make_optimizer(
            cfg.optimizer, self.module.parameters(), cfg.lr, cfg.weight_decay
        )
        if self.context is not None:
            # Autograd, so that DistributedDataParallel sees (and averages) the gradients.
            self._step_module = self.context.wrap(self.module)
        elif cfg.fused:
            self._fused = fused_step(self.module, cfg.pos_weight)
            self._lean_step = LeanAdamStep.for_optimizer(self.optimizer)
        self.scheduler = make_scheduler(
            cfg.schedule,
            self.optimizer,
            max_epochs=cfg.max_epochs,
            steps_per_epoch=source.steps,
            patience=cfg.patience,
        )
        self.epoch, self.best_loss, self.bad_epochs, self.best_state = 0, math.inf, 0, None
        try:
            # A checkpoint is restored first, so that every on_train_begin sees the run as
            # it will continue.
            for cb in cfg.callbacks:
                hook(cb, "on_train_setup")(self)
            for cb in cfg.callbacks:
                hook(cb, "on_train_begin")(self)
            # Members step one at a time: the work of an operation is one member's.
            with intra_op_threads(threads_for(source.batch_size, one_member(self.module))):
                self._run_epochs(source, valid_rows, generator, loss_fn)
        finally:
            for cb in cfg.callbacks:
                hook(cb, "on_train_exit")(self)
        return self

    def _run_epochs(
        self,
        train_data: BatchSource,
        valid_data: EncodedRows | None,
        generator: torch.Generator,
        loss_fn: nn.BCEWithLogitsLoss,
    ) -> None:
        cfg = self.config
        last_good = self._snapshot()
        while self.epoch < cfg.max_epochs:
            if cfg.early_stopping and self.bad_epochs >= cfg.patience:
                self.stopped_early = True  # only when resuming a run that had already stopped
                break
            self.epoch += 1
            started = time.perf_counter()
            lr = self._lr()
            # Watched only without a validation split; taken at the weights the
            # (full-batch) loss is taken at.
            penalty = self._penalty() if valid_data is None else 0.0
            checked: list[tuple[float, float]] = []  # the checks inside this epoch
            check = None
            if cfg.check_every and valid_data is not None:
                check = partial(self._check_within_epoch, valid_data, loss_fn, checked)
            train_loss, train_acc = self.train_epoch(train_data, generator, loss_fn, check)
            if not math.isfinite(train_loss) or not _finite_params(self.module):
                self._recover(last_good, train_loss)
                self.epoch -= 1
                continue
            record: EpochRecord = {
                "epoch": self.epoch,
                "train_loss": train_loss,
                "train_accuracy": train_acc,
            }
            # An epoch that a check ended has been judged at its last weights already.
            cut_short = cfg.early_stopping and self.bad_epochs >= cfg.patience
            monitored = train_loss + penalty
            if valid_data is not None:
                valid_loss, valid_acc = (
                    checked[-1] if cut_short else self.evaluate(valid_data, loss_fn)
                )
                record["valid_loss"], record["valid_accuracy"] = valid_loss, valid_acc
                monitored = valid_loss
            if checked:
                record["checks"] = len(checked) + (not cut_short)
            record["lr"] = lr
            record["seconds"] = time.perf_counter() - started
            last_good = self._snapshot()
            if not cut_short and self._judge(monitored):
                self.best_state = last_good  # a reference, not a copy
            self.history.append(record)
            stop = False
            for cb in cfg.callbacks:
                try:
                    hook(cb, "on_epoch_end")(self, record)
                except StopTraining:
                    stop = True
            if stop or (cfg.early_stopping and self.bad_epochs >= cfg.patience):
                self.stopped_early = True
                break
        if self.best_state is not None and valid_data is not None and cfg.early_stopping:
            self.module.load_state_dict(self.best_state)
        for cb in cfg.callbacks:
            hook(cb, "on_train_end")(self)

    def _judge(self, monitored: float, *, epoch_end: bool = True) -> bool:
        """One check of the monitored loss for the plateau schedule and early stopping.

        True when it improved on the best by more than ``tol`` (relative): the caller
        then keeps the current weights as the best. Schedules by epoch (``'step'``,
        ``'cosine'``) step at the end of an epoch only.
        """
        if epoch_end or self.config.schedule == "plateau":
            self._step_epoch_schedule(monitored)
        improved = (
            monitored < self.best_loss - self.config.tol * max(abs(self.best_loss), 1e-12)
            if math.isfinite(self.best_loss)
            else True
        )
        if improved:
            self.best_loss, self.bad_epochs, self.best_epoch = monitored, 0, self.epoch
        else:
            self.bad_epochs += 1
        return improved

    def _check_within_epoch(
        self,
        valid_data: EncodedRows,
        loss_fn: nn.BCEWithLogitsLoss,
        checked: list[tuple[float, float]],
    ) -> bool:
        """A validation check between two steps of an epoch; True to end the epoch here.

        Skipped while the validation rows are still being collected (streamed data, first
        epoch) and when the loss is not finite (the end of the epoch then rolls back).
        """
        if not valid_data.complete:
            return False
        valid_loss, valid_acc = self.evaluate(valid_data, loss_fn)
        self.module.train()
        if not math.isfinite(valid_loss):
            return False
        checked.append((valid_loss, valid_acc))
        if self._judge(valid_loss, epoch_end=False):
            self.best_state = self._snapshot()
        return self.config.early_stopping and self.bad_epochs >= self.config.patience

    def _penalty(self) -> float:
        """The L2 term Adam's or SGD's ``weight_decay`` minimises with the loss, at the
        current weights: without a validation split, training watches this sum (the
        objective it minimises) converge, not the bare loss, which may rise meanwhile."""
        decay = self.config.weight_decay
        if not decay or self.config.optimizer == "adamw":  # AdamW: decoupled, no objective
            return 0.0
        with torch.no_grad():
            squares = sum(p.detach().double().pow(2).sum() for p in self.module.parameters())
        return 0.5 * decay * float(squares)

    def _step_epoch_schedule(self, monitored: float) -> None:
        if self.scheduler is None or self.config.schedule == "onecycle":
            return
        if self.config.schedule == "plateau":
            self.scheduler.step(monitored)
        else:
            self.scheduler.step()
