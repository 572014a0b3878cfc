"""Optimizers and learning-rate schedules, with lean paths that fall back to the public API.

Two speed-ups rely on parts of torch that are not public API, so each has a tested
fallback to the public path, taken when the private part is missing or fails:

- :func:`make_optimizer` returns torch's ``Adam``/``AdamW``/``SGD`` minus the wrappers
  that import ``torch._dynamo`` on first use (about a second of imports); if unwrapping
  them does not give working methods, the public classes are used as they are. It asks
  for ``fused=True`` (one kernel for all parameters, CPU support since torch 2.4) and
  falls back to the default implementation when torch refuses it.
- :class:`LeanAdamStep` calls the fused Adam kernel directly, skipping ``step()``'s
  per-call regrouping; without the kernels (``torch._fused_adam_``,
  ``torch._fused_adamw_``, ``torch._foreach_add_``), or when calling them fails, it is
  not used (or stops being used) and ``optimizer.step()`` runs instead.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

import torch
from torch import nn

from ..exceptions import ParameterError

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "LeanAdamStep",
    "make_optimizer",
    "make_scheduler",
    "optimizer_class",
    "supports_fused_step",
]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "step", "cosine", "onecycle", "plateau")

_Opt = TypeVar("_Opt", bound=torch.optim.Optimizer)
_PUBLIC = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def _without_lazy_dynamo(cls: type[_Opt]) -> type[_Opt]:
    """``cls`` whose methods skip the wrappers that import ``torch._dynamo``.

    ``torch.optim`` wraps ``add_param_group``, ``zero_grad``, ``step`` and (used by
    checkpoints) ``state_dict`` and ``load_state_dict`` in helpers that import
    ``torch._dynamo`` on first use for the sake of ``torch.compile``, which steadyclf does
    not use on optimizers. The subclass calls the same code without them; ``step`` runs
    under ``no_grad``, as the wrapper it replaces.
    """
    raw_step = inspect.unwrap(cls.step)

    def step(self: torch.optim.Optimizer, closure: Callable[[], float] | None = None) -> Any:
        with torch.no_grad():
            return raw_step(self, closure)

    namespace: dict[str, Any] = {"__module__": __name__, "__doc__": cls.__doc__, "step": step}
    for name in ("add_param_group", "zero_grad", "state_dict", "load_state_dict"):
        namespace[name] = inspect.unwrap(getattr(torch.optim.Optimizer, name))
    return type(cls.__name__, (cls,), namespace)


def _works(cls: type[torch.optim.Optimizer]) -> bool:
    """Whether ``cls`` builds, steps, zeroes and round-trips its state on a tiny tensor."""
    try:
        p = nn.Parameter(torch.ones(2))
        opt = cls([p], lr=0.1)  # type: ignore[call-arg]
        p.grad = torch.ones(2)
        opt.step()
        opt.zero_grad(set_to_none=True)
        opt.load_state_dict(opt.state_dict())
        return bool(torch.isfinite(p.detach()).all()) and float(p.detach()[0]) != 1.0
    except Exception:  # any failure means: use the public class
        return False


@functools.cache
def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """The class behind ``name``: the lean subclass if it works here, else torch's own."""
    public = _PUBLIC[name]
    try:
        lean: type[torch.optim.Optimizer] = _without_lazy_dynamo(public)
    except Exception:  # the wrappers changed shape in this torch: keep the public class
        return public
    return lean if _works(lean) else public


def supports_fused_step(params: Sequence[torch.Tensor]) -> bool:
    """Whether ``fused=True`` optimizers (one kernel for all parameters) may apply."""
    return bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )


def make_optimizer(
    name: str, params: Iterable[nn.Parameter], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """Create the optimizer ``name`` with learning rate ``lr`` and ``weight_decay``.

    ``fused=True`` where the parameters and this torch allow it (see :func:`_fused_works`);
    else the default implementation runs.
    """
    if name not in _PUBLIC:
        raise ParameterError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    tensors = list(params)
    cls = optimizer_class(name)
    options: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay}
    if name == "sgd":
        options.update(momentum=0.9, nesterov=True)
    if supports_fused_step(tensors) and all(
        _fused_works(name, p.device.type, p.dtype) for p in tensors
    ):
        return cls(tensors, fused=True, **options)  # type: ignore[call-arg]
    return cls(tensors, **options)


@functools.cache
def _fused_works(name: str, device: str, dtype: torch.dtype) -> bool:
    """Whether a fused ``name`` optimizer builds and steps here (once per process).

    torch < 2.4 refuses ``fused=True`` on the CPU; a torch whose private fused kernels
    are missing or changed fails the step: either way the default implementation runs.
    """
    try:
        p = nn.Parameter(torch.ones(2, device=device, dtype=dtype))
        options: dict[str, Any] = {"momentum": 0.9} if name == "sgd" else {}
        opt = optimizer_class(name)([p], lr=0.1, fused=True, **options)  # type: ignore[call-arg]
        p.grad = torch.ones_like(p)
        opt.step()
        opt.step()
        return bool(torch.isfinite(p.detach()).all()) and float(p.detach()[0]) != 1.0
    except Exception:  # refused or broken: the unfused path
        return False


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


class LeanAdamStep:
    """``optimizer.step()`` for a fused Adam or AdamW, without its per-call Python.

    ``Adam.step`` regroups the parameters, their gradients and states by device and dtype
    on every call: at a 256-row batch that costs ten times the fused kernel it ends with.
    This calls the same kernel with the same arguments, reading the hyperparameters from
    ``param_groups`` (so schedules apply) and the moments from ``optimizer.state`` (so
    checkpoints and ``state_dict`` are unchanged). The state is created, and re-read after
    it is cleared or replaced, by a regular ``optimizer.step()``. If the kernel call fails
    (another torch), this step falls back to ``optimizer.step()`` for good.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, kernel: Callable[..., Any]) -> None:
        self.optimizer = optimizer
        self.params: list[torch.Tensor] = list(optimizer.param_groups[0]["params"])
        self.kernel = kernel
        self.broken = False
        self._state: tuple[list[torch.Tensor], ...] | None = None

    @classmethod
    def for_optimizer(cls, optimizer: torch.optim.Optimizer) -> LeanAdamStep | None:
        """The lean step, or ``None`` when ``optimizer`` is not a plain fused Adam(W) or
        this torch lacks the kernels."""
        if not isinstance(optimizer, torch.optim.Adam) or len(optimizer.param_groups) != 1:
            return None
        group = optimizer.param_groups[0]
        plain = (
            group.get("fused")
            and not group.get("amsgrad")
            and not group.get("maximize")
            and not group.get("differentiable")
            and not group.get("capturable")
            and not isinstance(group.get("lr"), torch.Tensor)
            and not any(torch.is_complex(p) for p in group["params"])
        )
        decoupled = bool(group.get("decoupled_weight_decay", False)) or isinstance(
            optimizer, torch.optim.AdamW
        )
        kernel = getattr(torch, "_fused_adamw_" if decoupled else "_fused_adam_", None)
        if not plain or kernel is None or getattr(torch, "_foreach_add_", None) is None:
            return None
        return cls(optimizer, kernel)

    def _moments(self) -> tuple[list[torch.Tensor], ...] | None:
        """The state tensors, if they are still the ones this step read last."""
        state = self.optimizer.state.get(self.params[0])
        if not state or self._state is None or state.get("exp_avg") is not self._state[1][0]:
            return None
        return self._state

    def _read_state(self) -> None:
        states = [self.optimizer.state.get(p, {}) for p in self.params]
        if not all("step" in s for s in states):
            # A parameter no gradient reached has no state yet: optimizer.step() keeps
            # doing the work (and creates it when a gradient arrives).
            self._state = None
            return
        self._state = (
            [s["step"] for s in states],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
        )

    def __call__(self) -> None:
        moments = None if self.broken else self._moments()
        grads = [p.grad for p in self.params]
        if moments is None or any(g is None for g in grads):
            self.optimizer.step()  # creates (or re-reads) the state the regular way
            if not self.broken:
                self._read_state()
            return
        steps, exp_avgs, exp_avg_sqs = moments
        group = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        try:
            torch._foreach_add_(steps, 1)
        except Exception:  # the private kernel is unusable here: the public step, for good
            self.broken = True
            self.optimizer.step()
            return
        try:
            self.kernel(
                self.params,
                cast(list[torch.Tensor], grads),
                exp_avgs,
                exp_avg_sqs,
                [],
                steps,
                amsgrad=False,
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=False,
            )
        except Exception:  # arguments refused before any update: undo the count, fall back
            for step in steps:
                step.sub_(1)
            self.broken = True
            self.optimizer.step()
