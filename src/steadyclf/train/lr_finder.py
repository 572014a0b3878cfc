"""Learning-rate range test: pick a learning rate from a short, throw-away training run.

The test trains a *copy* of the model for a bounded number of steps while the learning
rate grows exponentially from ``min_lr`` to ``max_lr``, records the loss after each step,
smooths it (exponential moving average with bias correction) and stops once the smoothed
loss has blown up. The pick is robust rather than greedy: the rate at which the smoothed
loss has made half of its whole drop (from its starting level to its minimum), capped
at a third of the rate with the lowest smoothed loss, where training is already on the
edge. On an S-shaped curve the half-drop rate is the steepest point, but it is found
from loss levels, which noise moves far less than slopes, so the pick stays stable over
seeds and batches. If the loss never falls clearly, the pick is a tenth of the rate
where the test ended.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from ..exceptions import ParameterError, TrainingDivergedError
from ..nn.optim import make_optimizer
from .trainer import weighted_loss

__all__ = ["LRFinderResult", "find_lr"]

#: The range test stops once the smoothed loss exceeds this multiple of its best value.
DIVERGENCE_FACTOR = 4.0
#: Upper bound of the pick relative to the rate with the lowest smoothed loss.
MIN_LOSS_MARGIN = 3.0
#: Below this relative drop of the smoothed loss, the test found no working rate.
MIN_RELATIVE_DROP = 0.05


@dataclass
class LRFinderResult:
    """Outcome of a range test.

    Attributes
    ----------
    lr : float
        The suggested learning rate.
    lrs, losses, smoothed : list of float
        Learning rate, raw loss and smoothed loss at each step that was run.
    steepest_lr : float
        Rate at which the smoothed loss fell fastest (per unit of log learning rate).
    min_loss_lr : float
        Rate with the lowest smoothed loss.
    diverged_at : float or None
        Rate at which the test stopped because the loss blew up.
    reason : str
        How the pick was made, in words.
    """

    lr: float
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    steepest_lr: float = math.nan
    min_loss_lr: float = math.nan
    diverged_at: float | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (non-finite losses become ``None``)."""
        return {
            "lr": _finite_or_none(self.lr),
            "steepest_lr": _finite_or_none(self.steepest_lr),
            "min_loss_lr": _finite_or_none(self.min_loss_lr),
            "diverged_at": self.diverged_at,
            "reason": self.reason,
            "lrs": list(self.lrs),
            "losses": [_finite_or_none(v) for v in self.losses],
            "smoothed": [_finite_or_none(v) for v in self.smoothed],
        }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def find_lr(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    optimizer: str = "adam",
    batch_size: int | None = None,
    pos_weight: float | None = None,
    w: torch.Tensor | None = None,
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    steps: int = 100,
    beta: float = 0.8,
    seed: int = 0,
) -> LRFinderResult:
    """Run a learning-rate range test on a copy of ``module`` and suggest a rate.

    Parameters
    ----------
    module : nn.Module
        Maps float32 features to one logit per row; it is copied, never modified.
    x, y : Tensor
        Training features (already encoded) and 0/1 targets.
    optimizer : {'adam', 'adamw', 'sgd'}
        The optimizer training will use.
    batch_size : int or None
        Rows per step; ``None`` for full-batch steps.
    pos_weight : float or None
        Positive-class weight of the loss, as in training.
    w : Tensor or None
        Loss weights of the rows, as in training.
    min_lr, max_lr : float
        Range of the test; the rate grows geometrically between them.
    steps : int
        Largest number of steps (the test stops earlier when the loss blows up).
    beta : float
        Smoothing factor of the moving average of the loss.
    seed : int
        Seed of the batch order.

    Returns
    -------
    LRFinderResult

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    >>> y = (x[:, 0] > 0).float()
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    >>> 1e-4 < find_lr(net, x, y, steps=60).lr < 10
    True
    """
    _check_range(min_lr, max_lr, steps, beta)
    model = copy.deepcopy(module).train()
    opt = make_optimizer(optimizer, model.parameters(), min_lr, 0.0)
    weight = None if pos_weight is None else torch.tensor(pos_weight, device=x.device)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=weight)
    generator = torch.Generator().manual_seed(seed)
    ratio = (max_lr / min_lr) ** (1.0 / max(steps - 1, 1))
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    average, best = 0.0, math.inf
    diverged_at: float | None = None
    for step in range(steps):
        lr = min_lr * ratio**step
        for group in opt.param_groups:
            group["lr"] = lr
        xb, yb, wb = _batch(x, y, w, batch_size, generator)
        loss = weighted_loss(model(xb).reshape(-1), yb, wb, loss_fn)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = float(loss.detach())
        lrs.append(lr)
        losses.append(value)
        if not math.isfinite(value):
            smoothed.append(math.inf)
            diverged_at = lr
            break
        average = beta * average + (1 - beta) * value
        current = average / (1 - beta ** (step + 1))
        smoothed.append(current)
        best = min(best, current)
        if step > 5 and current > DIVERGENCE_FACTOR * best:
            diverged_at = lr
            break
    pick, steepest, at_min, reason = _suggest(np.array(lrs), np.array(smoothed), diverged_at)
    if not (math.isfinite(pick) and pick > 0):
        raise TrainingDivergedError(
            f"the learning-rate range test found no usable rate: the loss was not finite "
            f"from {lrs[0]:.3g} on; give lr explicitly, or check the inputs for extreme values"
        )
    return LRFinderResult(
        lr=pick,
        lrs=lrs,
        losses=losses,
        smoothed=smoothed,
        steepest_lr=steepest,
        min_loss_lr=at_min,
        diverged_at=diverged_at,
        reason=reason,
    )


def _check_range(min_lr: float, max_lr: float, steps: int, beta: float) -> None:
    if not (0 < min_lr < max_lr and math.isfinite(max_lr)):
        raise ParameterError(
            f"the learning-rate range must satisfy 0 < min_lr < max_lr; got {min_lr} and {max_lr}"
        )
    if steps < 10:
        raise ParameterError(f"the range test needs at least 10 steps; got {steps}")
    if not 0 <= beta < 1:
        raise ParameterError(f"beta must be in [0, 1); got {beta}")


def _batch(
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor | None,
    batch_size: int | None,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    n = x.shape[0]
    if batch_size is None or batch_size >= n:
        return x, y, w
    rows = torch.randint(0, n, (batch_size,), generator=generator).to(x.device)
    wb = None if w is None else w.index_select(0, rows)
    return x.index_select(0, rows), y.index_select(0, rows), wb


def _suggest(
    lrs: NDArray[np.float64], smoothed: NDArray[np.float64], diverged_at: float | None
) -> tuple[float, float, float, str]:
    """Pick from the smoothed curve: (pick, steepest rate, rate at the minimum, reason)."""
    finite = np.isfinite(smoothed)
    lrs, smoothed = lrs[finite], smoothed[finite]
    if lrs.size < 3:
        return float(lrs[0]) if lrs.size else math.nan, math.nan, math.nan, "too few steps"
    i_min = int(np.argmin(smoothed))
    at_min = float(lrs[i_min])
    start = float(np.median(smoothed[: max(3, smoothed.size // 10)]))
    drop = start - float(smoothed[i_min])
    if drop < MIN_RELATIVE_DROP * start:
        end = diverged_at if diverged_at is not None else float(lrs[-1])
        return (
            end / 10,
            math.nan,
            at_min,
            "the loss never fell clearly; a tenth of the rate where the test ended",
        )
    log_lr = np.log10(lrs[: i_min + 1])
    slope = np.gradient(smoothed[: i_min + 1], log_lr) if i_min > 0 else np.zeros(1)
    steepest = float(lrs[int(np.argmin(slope))])
    # The rate at which half of the whole drop is done: on an S-shaped curve this is the
    # steepest point, but found from loss levels, which noise moves far less than slopes.
    i_half = int(np.argmax(smoothed[: i_min + 1] <= start - 0.5 * drop))
    half = float(lrs[i_half])
    pick = min(half, at_min / MIN_LOSS_MARGIN)
    reason = (
        "the rate at which the smoothed loss had made half of its drop"
        if pick == half
        else f"capped at 1/{MIN_LOSS_MARGIN:g} of the rate with the lowest loss"
    )
    return pick, steepest, at_min, reason
