"""Hand-written forward and backward pass for plain MLPs with ``BCEWithLogitsLoss``.

On small tabular batches a training step costs dispatch overhead, not arithmetic: autograd
records a graph, allocates a gradient per node and replays it, at 10-20 µs per operation.
For the network steadyclf builds by default (``Linear -> activation -> ... -> Linear(1)``)
the backward pass is a handful of matrix products, so :class:`FusedMLP` computes it
directly and writes the gradients into the parameters' ``.grad`` tensors, which are
allocated once and reused (the optimizer and the callbacks read them as usual).

Anything else (``BatchNorm1d``, dropout, other layers or activations) is not supported
here and trains through autograd: :meth:`FusedMLP.from_module` returns ``None``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import torch
from torch import nn

__all__ = ["SGD", "Adam", "AdamW", "FusedMLP", "LeanAdamStep", "supports_fused_step"]

_Opt = TypeVar("_Opt", bound=torch.optim.Optimizer)
_Backward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _relu_backward(grad: torch.Tensor, pre: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.threshold_backward(grad, out, 0)


def _sigmoid_backward(grad: torch.Tensor, pre: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.sigmoid_backward(grad, out)


def _tanh_backward(grad: torch.Tensor, pre: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.tanh_backward(grad, out)


def _gelu_backward(grad: torch.Tensor, pre: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.gelu_backward(grad, pre)


@dataclass(frozen=True)
class _Activation:
    forward: Callable[[torch.Tensor], torch.Tensor]
    backward: _Backward


def _activation_of(layer: nn.Module) -> _Activation | None:
    # Exact types only: a subclass may change the forward, and then the backward is wrong.
    # The in-place forwards are safe: their backward needs only the output.
    if type(layer) is nn.ReLU:
        return _Activation(torch.relu_, _relu_backward)
    if type(layer) is nn.Sigmoid:
        return _Activation(torch.sigmoid_, _sigmoid_backward)
    if type(layer) is nn.Tanh:
        return _Activation(torch.tanh_, _tanh_backward)
    if type(layer) is nn.GELU and getattr(layer, "approximate", "none") == "none":
        return _Activation(torch.nn.functional.gelu, _gelu_backward)
    return None


class FusedMLP:
    """Gradient of the mean ``BCEWithLogitsLoss`` of an MLP, without autograd.

    Parameters
    ----------
    linears : list of nn.Linear
        The layers in order; the last one has one output.
    activations : list
        One activation per hidden layer (``len(linears) - 1``).
    pos_weight : float or None
        Weight of positive examples, as in ``nn.BCEWithLogitsLoss(pos_weight=...)``.

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    >>> fused = FusedMLP.from_module(net)
    >>> logits = fused.forward_backward(torch.randn(16, 3), torch.ones(16))
    >>> logits.shape, net[0].weight.grad.shape
    (torch.Size([16]), torch.Size([8, 3]))
    """

    def __init__(
        self,
        linears: list[nn.Linear],
        activations: list[_Activation],
        pos_weight: float | None = None,
    ) -> None:
        self.linears = linears
        self.activations = activations
        self.pos_weight = pos_weight
        # Plain tensors sharing the parameters' storage: module attribute lookups and
        # Parameter dispatch cost microseconds per use, which add up at small batches.
        self._weights = [layer.weight.detach() for layer in linears]
        self._biases = [layer.bias.detach() for layer in linears]
        self._grads: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._buffers: dict[int, torch.Tensor] = {}

    @classmethod
    def from_module(cls, module: nn.Module, pos_weight: float | None = None) -> FusedMLP | None:
        """A fused pass for ``module``, or ``None`` when it is not a plain MLP.

        Supported: an ``nn.Sequential`` of ``Linear`` layers with ``ReLU``, ``Sigmoid``,
        ``Tanh`` or exact ``GELU`` between them, ending in a ``Linear`` with one output,
        every parameter trainable, floating point and on one device.
        """
        if type(module) is not nn.Sequential or len(module) % 2 != 1:
            return None
        layers = list(module)
        linears: list[nn.Linear] = []
        activations: list[_Activation] = []
        for i, layer in enumerate(layers):
            if i % 2 == 0:
                if type(layer) is not nn.Linear or layer.bias is None:
                    return None
                linears.append(layer)
            else:
                activation = _activation_of(layer)
                if activation is None:
                    return None
                activations.append(activation)
        params = [p for layer in linears for p in (layer.weight, layer.bias)]
        if (
            linears[-1].out_features != 1
            or not all(p.requires_grad and p.is_floating_point() for p in params)
            or len({(p.device, p.dtype) for p in params}) != 1
        ):
            return None
        return cls(linears, activations, pos_weight)

    def prepare(self) -> None:
        """Give every parameter a ``.grad`` tensor that the steps then overwrite.

        Call it before a run of steps (the trainer does, every epoch): the steps write into
        these tensors with ``out=``, with no ``zero_grad`` and no allocation.
        """
        self._grads = []
        for layer in self.linears:
            for p in (layer.weight, layer.bias):
                if p.grad is None or p.grad.shape != p.shape or p.grad.dtype != p.dtype:
                    p.grad = torch.zeros_like(p)
            assert layer.weight.grad is not None and layer.bias.grad is not None
            self._grads.append((layer.weight.grad, layer.bias.grad))

    def _output_gradient(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """d(mean loss)/d(logits): ``sigmoid(z) - y``, or its weighted form, over ``n``."""
        grad = torch.sigmoid(logits)
        if self.pos_weight is None:
            grad.sub_(y)
        else:
            # d/dz of -[w y log s(z) + (1 - y) log(1 - s(z))] = s(z) (1 + (w - 1) y) - w y
            grad.mul_(y * (self.pos_weight - 1.0) + 1.0).sub_(y * self.pos_weight)
        return grad.mul_(1.0 / logits.shape[0])

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Set every parameter's ``.grad`` to the gradient of the mean loss on ``(x, y)``.

        Returns the logits, shape ``(n,)``, computed before any update. No autograd graph
        is recorded: the weights are used through detached views.
        """
        if not self._grads:
            self.prepare()
        weights, biases, grads = self._weights, self._biases, self._grads
        inputs = [x]
        pre_activations: list[torch.Tensor] = []
        # One activation per hidden layer: the output layer is handled after the loop.
        for weight, bias, activation in zip(weights, biases, self.activations, strict=False):
            pre = torch.addmm(bias, inputs[-1], weight.t())
            pre_activations.append(pre)
            inputs.append(activation.forward(pre))
        logits = torch.addmm(biases[-1], inputs[-1], weights[-1].t())
        grad = self._output_gradient(logits, y.reshape(-1, 1))
        for k in range(len(weights) - 1, -1, -1):
            weight_grad, bias_grad = grads[k]
            torch.mm(grad.t(), inputs[k], out=weight_grad)
            torch.sum(grad, 0, out=bias_grad)
            if k == 0:
                break
            grad = torch.mm(grad, weights[k])
            grad = self.activations[k - 1].backward(grad, pre_activations[k - 1], inputs[k])
        return logits.reshape(-1)

    def forward_into(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """Write the logits of ``x`` into ``out`` (shape ``(n,)``), for inference.

        The same operations as the module's forward (``addmm`` is what ``nn.Linear``
        runs on a matrix), into hidden-layer buffers kept between calls: a prediction
        loop over chunks allocates nothing, so no fresh pages to fault in per chunk.
        """
        h = x
        for k, (weight, bias, activation) in enumerate(
            zip(self._weights, self._biases, self.activations, strict=False)
        ):
            buffer = self._buffer(k, x.shape[0], weight.shape[0], x)
            h = activation.forward(torch.addmm(bias, h, weight.t(), out=buffer))
        torch.addmm(self._biases[-1], h, self._weights[-1].t(), out=out.view(-1, 1))

    def _buffer(self, k: int, rows: int, width: int, like: torch.Tensor) -> torch.Tensor:
        buffer = self._buffers.get(k)
        if (
            buffer is None
            or buffer.shape[0] < rows
            or buffer.dtype != like.dtype
            or buffer.device != like.device
        ):
            buffer = torch.empty((rows, width), dtype=like.dtype, device=like.device)
            self._buffers[k] = buffer
        return buffer[:rows]


# -- optimizers without the lazy torch._dynamo import ----------------------------------------
def _without_lazy_dynamo(cls: type[_Opt]) -> type[_Opt]:
    """``cls`` whose methods skip the wrappers that import ``torch._dynamo``.

    ``torch.optim`` wraps ``add_param_group``, ``zero_grad``, ``step`` and (used by
    checkpoints) ``state_dict`` and ``load_state_dict`` in helpers that
    import ``torch._dynamo`` on first use (about a second of imports) for the sake of
    ``torch.compile``, which steadyclf does not use on optimizers. The subclass calls the
    same code without them; ``step`` runs under ``no_grad``, as the wrapper it replaces.
    """
    raw_step = inspect.unwrap(cls.step)

    def step(self: torch.optim.Optimizer, closure: Callable[[], float] | None = None) -> Any:
        with torch.no_grad():
            return raw_step(self, closure)

    namespace: dict[str, Any] = {"__module__": __name__, "__doc__": cls.__doc__, "step": step}
    for name in ("add_param_group", "zero_grad", "state_dict", "load_state_dict"):
        namespace[name] = inspect.unwrap(getattr(torch.optim.Optimizer, name))
    return type(cls.__name__, (cls,), namespace)


Adam = _without_lazy_dynamo(torch.optim.Adam)
AdamW = _without_lazy_dynamo(torch.optim.AdamW)
SGD = _without_lazy_dynamo(torch.optim.SGD)


class LeanAdamStep:
    """``optimizer.step()`` for a fused Adam or AdamW, without its per-call Python.

    ``Adam.step`` regroups the parameters, their gradients and states by device and dtype
    on every call: at a 256-row batch that costs ten times the fused kernel it ends with
    (0.2 ms against 0.02 ms here). This calls the same kernel with the same arguments,
    reading the hyperparameters from ``param_groups`` (so schedules apply) and the moments
    from ``optimizer.state`` (so checkpoints and ``state_dict`` are unchanged). The state
    is created, and re-read after it is cleared or replaced, by a regular
    ``optimizer.step()``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        group = optimizer.param_groups[0]
        self.params: list[torch.Tensor] = list(group["params"])
        decoupled = bool(group.get("decoupled_weight_decay", False))
        self.kernel = torch._fused_adamw_ if decoupled else torch._fused_adam_
        self._state: tuple[list[torch.Tensor], ...] | None = None

    @classmethod
    def for_optimizer(cls, optimizer: torch.optim.Optimizer) -> LeanAdamStep | None:
        """The lean step, or ``None`` when ``optimizer`` is not a plain fused Adam(W)."""
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
        return cls(optimizer) if plain else None

    def _moments(self) -> tuple[list[torch.Tensor], ...] | None:
        """The state tensors, if they are still the ones this step read last."""
        state = self.optimizer.state.get(self.params[0])
        if not state or self._state is None or state.get("exp_avg") is not self._state[1][0]:
            return None
        return self._state

    def _read_state(self) -> None:
        states = [self.optimizer.state[p] for p in self.params]
        self._state = (
            [s["step"] for s in states],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
        )

    def __call__(self) -> None:
        moments = self._moments()
        grads = [p.grad for p in self.params]
        if moments is None or any(g is None for g in grads):
            self.optimizer.step()  # creates (or re-reads) the state the regular way
            self._read_state()
            return
        steps, exp_avgs, exp_avg_sqs = moments
        group = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        torch._foreach_add_(steps, 1)
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


def supports_fused_step(params: Sequence[torch.Tensor]) -> bool:
    """Whether ``fused=True`` optimizers (one kernel for all parameters) apply."""
    return bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )
