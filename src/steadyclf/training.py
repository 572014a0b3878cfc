"""The training loop: full-batch or mini-batch steps on tensors already on the device.

The loop is split into small named steps (``train_epoch``, ``evaluate``) around a
:class:`Trainer` that owns the optimizer, the learning-rate schedule, early stopping and
divergence recovery. Data never goes through a ``DataLoader``: each epoch draws one
permutation, gathers the shuffled rows once and slices contiguous batches, so there is no
per-row Python work. Metrics are accumulated on the device and read once per epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from . import fused as _fused
from .exceptions import ParameterError, TrainingDivergedError
from .fused import FusedMLP, LeanAdamStep
from .threads import intra_op_threads, threads_for

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Callback",
    "EpochRecord",
    "StopTraining",
    "TrainConfig",
    "Trainer",
    "make_optimizer",
    "make_scheduler",
]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "step", "cosine", "onecycle", "plateau")

EpochRecord = dict[str, Any]


class StopTraining(Exception):
    """Raised by a callback to end training after the current epoch."""


class Callback(Protocol):
    """Hooks called by :class:`Trainer`; every method is optional in practice."""

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
    #: Hand-written gradients for plain MLPs (:class:`~steadyclf.fused.FusedMLP`) and
    #: lean fused Adam steps (:class:`~steadyclf.fused.LeanAdamStep`); other modules and
    #: optimizers, or ``False`` here, use autograd and ``optimizer.step()``.
    fused: bool = True


def make_optimizer(
    name: str, params: Iterator[nn.Parameter], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """Create the optimizer ``name`` with learning rate ``lr``.

    The classes are torch's, minus a lazy ``torch._dynamo`` import (see
    :mod:`steadyclf.fused`), with ``fused=True`` where the parameters
    allow it: one kernel updates every parameter, instead of a loop of small operations.
    """
    tensors = list(params)
    fused = _fused.supports_fused_step(tensors) or None
    if name == "adam":
        return _fused.Adam(tensors, lr=lr, weight_decay=weight_decay, fused=fused)
    if name == "adamw":
        return _fused.AdamW(tensors, lr=lr, weight_decay=weight_decay or 1e-2, fused=fused)
    if name == "sgd":
        return _fused.SGD(
            tensors, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay, fused=fused
        )
    raise ParameterError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def make_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    *,
    max_epochs: int,
    steps_per_epoch: int,
    patience: int,
) -> Any:
    """Learning-rate schedule; ``onecycle`` steps per batch, the others per epoch."""
    if name == "none":
        return None
    if name == "step":
        # Three steps down over the run, each dividing the rate by 10: the classic recipe.
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=max(1, max_epochs // 4), gamma=0.1
        )
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, max_epochs))
    if name == "onecycle":
        lr = optimizer.param_groups[0]["lr"]
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=max(2, max_epochs * steps_per_epoch)
        )
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=0.3, patience=max(1, patience // 3)
        )
    raise ParameterError(f"schedule must be one of {SCHEDULES}, got {name!r}")


def _loss_and_accuracy(
    logits: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module, chunk_rows: int = 1 << 16
) -> tuple[float, float]:
    """Mean loss and accuracy, chunk by chunk: no row-sized temporaries (see ``_buffer``)."""
    n = logits.shape[0]
    total = torch.zeros((), dtype=torch.float64, device=logits.device)
    correct = torch.zeros((), dtype=torch.int64, device=logits.device)
    for start in range(0, n, chunk_rows):
        lb, yb = logits[start : start + chunk_rows], y[start : start + chunk_rows]
        total += loss_fn(lb, yb).double() * lb.shape[0]
        correct += ((lb > 0) == (yb > 0.5)).sum()
    return float(total) / n, float(correct) / n


@dataclass
class _Data:
    x: torch.Tensor
    y: torch.Tensor


def _finite_params(module: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


class Trainer:
    """Train ``module`` (features -> one logit) with ``BCEWithLogitsLoss``.

    Parameters
    ----------
    module : nn.Module
        Maps a float32 feature matrix to logits of shape ``(n, 1)`` or ``(n,)``.
    config : TrainConfig
        Optimisation settings.
    """

    def __init__(self, module: nn.Module, config: TrainConfig) -> None:
        self.module = module
        self.config = config
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
        self.bad_epochs = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self._fused: FusedMLP | None = None
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

        Row-sized temporaries allocated anew every epoch (the permutation, the shuffled
        labels, the logits) fragment the heap between the small tensors that live longer:
        peak RSS grew by about 100 MB over 80 epochs on 800,000 rows.
        """
        buffer = self._buffers.get(name)
        if (
            buffer is None
            or buffer.numel() != n
            or buffer.dtype != dtype
            or buffer.device != device
        ):
            buffer = self._buffers[name] = torch.empty(n, dtype=dtype, device=device)
        return buffer

    def _epoch_order(self, data: _Data, generator: torch.Generator) -> torch.Tensor | None:
        """A fresh permutation of the rows, or ``None`` for full-batch training."""
        n = data.x.shape[0]
        bs = self.config.batch_size
        if bs is None or bs >= n:
            return None
        # int32 indices (half the memory of int64) while the rows fit in them.
        index_dtype = torch.int32 if n < 2**31 else torch.int64
        order = self._buffer("order", n, index_dtype, torch.device("cpu"))
        return torch.randperm(n, generator=generator, out=order).to(data.x.device)

    def _train_step(self, xb: torch.Tensor, yb: torch.Tensor, loss_fn: nn.Module) -> torch.Tensor:
        """One optimizer step on a batch; returns the batch's logits before the step."""
        assert self.optimizer is not None
        if self._fused is not None:
            logits = self._fused.forward_backward(xb, yb)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            logits = self.module(xb).reshape(-1)
            loss_fn(logits, yb).backward()
            logits = logits.detach()
        if self._lean_step is not None:
            self._lean_step()
        else:
            self.optimizer.step()
        return logits

    def train_epoch(
        self, data: _Data, generator: torch.Generator, loss_fn: nn.Module
    ) -> tuple[float, float]:
        """One pass over the training data; returns mean loss and accuracy.

        Each batch is gathered from a per-epoch permutation with one ``index_select`` (no
        copy of the whole table per epoch); its logits, computed for the step, are kept in
        one buffer, from which loss and accuracy are computed once at the end.
        """
        self.module.train()
        if self._fused is not None:
            self._fused.prepare()
        n, device = data.x.shape[0], data.x.device
        order = self._epoch_order(data, generator)
        y = data.y
        if order is not None:
            y = torch.index_select(data.y, 0, order, out=self._buffer("y", n, y.dtype, device))
        bs = n if order is None else int(self.config.batch_size or n)
        logits = self._buffer("logits", n, data.x.dtype, device)
        per_batch_schedule = self.config.schedule == "onecycle" and self.scheduler is not None
        for start in range(0, n, bs):
            stop = min(start + bs, n)
            xb = data.x if order is None else data.x.index_select(0, order[start:stop])
            logits[start:stop] = self._train_step(xb, y[start:stop], loss_fn)
            if per_batch_schedule:
                self._step_onecycle()
        with torch.no_grad():
            return _loss_and_accuracy(logits, y, loss_fn)

    def _step_onecycle(self) -> None:
        # OneCycleLR refuses to step past its total; extra epochs keep the final rate.
        if self.scheduler.last_epoch + 1 < self.scheduler.total_steps:
            self.scheduler.step()

    @torch.inference_mode()
    def evaluate(
        self, data: _Data, loss_fn: nn.Module, batch_rows: int = 1 << 13
    ) -> tuple[float, float]:
        """Mean loss and accuracy on ``data`` in eval mode (into reused buffers)."""
        self.module.eval()
        n = data.x.shape[0]
        logits = self._buffers.get("valid_logits")
        if logits is None or logits.numel() != n or logits.dtype != data.x.dtype:
            logits = self._buffers["valid_logits"] = torch.empty_like(data.y, dtype=data.x.dtype)
        for start in range(0, n, batch_rows):
            xb = data.x[start : start + batch_rows]
            if self._fused is not None:
                self._fused.forward_into(xb, logits[start : start + batch_rows])
            else:
                logits[start : start + batch_rows] = self.module(xb).reshape(-1)
        return _loss_and_accuracy(logits, data.y, loss_fn)

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
                f"the learning rate {self.config.max_recoveries} times ({kept}); try a smaller "
                "lr, normalize='standardize', or check the inputs for extreme values"
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

        Weights, optimizer and scheduler state, the shuffling generator and torch's global
        generator, the history, the epoch count and the early-stopping state. Tensors are
        copies; :mod:`steadyclf.checkpoint` writes this to disk without pickle.
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
            "global_rng": torch.random.get_rng_state(),
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
        torch.random.set_rng_state(state["global_rng"])
        self.history[:] = [dict(r) for r in state["history"]]
        self.epoch = int(state["epoch"])
        self.best_epoch = state["best_epoch"]
        self.best_loss = float(state["best_loss"])
        self.bad_epochs = int(state["bad_epochs"])
        self.recoveries = int(state["recoveries"])
        self.best_state = state["best_state"]

    def fit(
        self,
        train: tuple[torch.Tensor, torch.Tensor],
        valid: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> Trainer:
        """Run the training loop; returns ``self``. ``history`` holds one row per epoch."""
        cfg = self.config
        device = train[0].device
        train_data = _Data(*train)
        valid_data = _Data(*valid) if valid is not None else None
        generator = self.generator = torch.Generator().manual_seed(cfg.seed)
        loss_fn = self._loss_fn(device)
        n = train_data.x.shape[0]
        steps = 1 if cfg.batch_size is None else max(1, math.ceil(n / cfg.batch_size))
        self.optimizer = make_optimizer(
            cfg.optimizer, self.module.parameters(), cfg.lr, cfg.weight_decay
        )
        self._fused = FusedMLP.from_module(self.module, cfg.pos_weight) if cfg.fused else None
        self._lean_step = LeanAdamStep.for_optimizer(self.optimizer) if cfg.fused else None
        self.scheduler = make_scheduler(
            cfg.schedule,
            self.optimizer,
            max_epochs=cfg.max_epochs,
            steps_per_epoch=steps,
            patience=cfg.patience,
        )
        self.epoch, self.best_loss, self.bad_epochs, self.best_state = 0, math.inf, 0, None
        try:
            # A checkpoint is restored first, so that every on_train_begin sees the run as
            # it will continue.
            for cb in cfg.callbacks:
                getattr(cb, "on_train_setup", lambda t: None)(self)
            for cb in cfg.callbacks:
                getattr(cb, "on_train_begin", lambda t: None)(self)
            rows_per_step = min(n, cfg.batch_size or n)
            with intra_op_threads(threads_for(rows_per_step, self.module)):
                self._run_epochs(train_data, valid_data, generator, loss_fn)
        finally:
            for cb in cfg.callbacks:
                getattr(cb, "on_train_exit", lambda t: None)(self)
        return self

    def _run_epochs(
        self,
        train_data: _Data,
        valid_data: _Data | None,
        generator: torch.Generator,
        loss_fn: nn.Module,
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
            train_loss, train_acc = self.train_epoch(train_data, generator, loss_fn)
            if not math.isfinite(train_loss) or not _finite_params(self.module):
                self._recover(last_good, train_loss)
                self.epoch -= 1
                continue
            record: EpochRecord = {
                "epoch": self.epoch,
                "train_loss": train_loss,
                "train_accuracy": train_acc,
            }
            monitored = train_loss + penalty
            if valid_data is not None:
                valid_loss, valid_acc = self.evaluate(valid_data, loss_fn)
                record["valid_loss"], record["valid_accuracy"] = valid_loss, valid_acc
                monitored = valid_loss
            record["lr"] = lr
            record["seconds"] = time.perf_counter() - started
            self._step_epoch_schedule(monitored)
            last_good = self._snapshot()
            improved = (
                monitored < self.best_loss - cfg.tol * max(abs(self.best_loss), 1e-12)
                if math.isfinite(self.best_loss)
                else True
            )
            if improved:
                self.best_loss, self.bad_epochs, self.best_epoch = monitored, 0, self.epoch
                self.best_state = last_good  # a reference, not a copy
            else:
                self.bad_epochs += 1
            self.history.append(record)
            stop = False
            for cb in cfg.callbacks:
                try:
                    getattr(cb, "on_epoch_end", lambda t, r: None)(self, record)
                except StopTraining:
                    stop = True
            if stop or (cfg.early_stopping and self.bad_epochs >= cfg.patience):
                self.stopped_early = True
                break
        if self.best_state is not None and valid_data is not None and cfg.early_stopping:
            self.module.load_state_dict(self.best_state)
        for cb in cfg.callbacks:
            getattr(cb, "on_train_end", lambda t: None)(self)

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
