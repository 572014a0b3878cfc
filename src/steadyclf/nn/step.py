"""Hand-written forward and backward pass for plain MLPs with ``BCEWithLogitsLoss``
(with ``pos_weight`` and per-row weights as torch defines them).

On small tabular batches a training step costs dispatch overhead, not arithmetic: autograd
records a graph, allocates a gradient per node and replays it, at 10-20 µs per operation.
For the network steadyclf builds by default (``Linear -> activation -> ... -> Linear(1)``)
the backward pass is a handful of matrix products, so :class:`FusedMLP` computes it
directly and writes the gradients into the parameters' ``.grad`` tensors, which are
allocated once and reused (the optimizer and the callbacks read them as usual).

Anything else (``BatchNorm1d``, dropout, other layers or activations) is not supported
here and trains through autograd: :meth:`FusedMLP.from_module` returns ``None``.

Inputs that stay the same from step to step and are mostly zeros (the one-hot blocks of
many categoricals, or of integer columns read as codes) may come as :class:`SparseRows`:
the first layer's two products then skip the zeros (CSR matrix products, measured on
4,657 rows x 852 inputs of density 0.10: 15.6 ms a step's two products dense, 8.9 ms
sparse; on 74 inputs of density 0.27 sparse is no faster, so narrow inputs stay dense).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .modules import Members, mean_probability_logit

__all__ = [
    "KERNELS",
    "SPARSE_MAX_DENSITY",
    "SPARSE_MIN_INPUTS",
    "FusedMLP",
    "FusedMembers",
    "SparseRows",
    "fused_step",
]

#: Inputs at least this wide, with at most this share of non-zeros, go sparse (see the module).
SPARSE_MIN_INPUTS = 256
SPARSE_MAX_DENSITY = 0.15


@dataclass(frozen=True)
class SparseRows:
    """Fixed input rows as CSR matrices: ``csr`` (rows x inputs) and ``csr_t`` (its
    transpose), for the first layer's forward and weight-gradient products."""

    csr: torch.Tensor
    csr_t: torch.Tensor

    @classmethod
    def of(cls, x: torch.Tensor) -> SparseRows | None:
        """``x`` as sparse rows when it is wide and sparse enough to gain (on the CPU);
        ``None`` otherwise."""
        if x.device.type != "cpu" or x.dim() != 2 or x.shape[1] < SPARSE_MIN_INPUTS:
            return None
        if int(torch.count_nonzero(x)) > SPARSE_MAX_DENSITY * x.numel():
            return None
        with warnings.catch_warnings():  # torch calls its CSR support beta
            warnings.simplefilter("ignore", UserWarning)
            return cls(x.to_sparse_csr(), x.t().contiguous().to_sparse_csr())


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


#: Forward (in place where the backward needs only the output) and backward kernels, by
#: the torch module of each activation of :data:`~steadyclf.nn.spec.ACTIVATIONS` (a test
#: checks that every one has its kernels).
KERNELS: dict[type[nn.Module], _Activation] = {
    nn.ReLU: _Activation(torch.relu_, _relu_backward),
    nn.Sigmoid: _Activation(torch.sigmoid_, _sigmoid_backward),
    nn.Tanh: _Activation(torch.tanh_, _tanh_backward),
    nn.GELU: _Activation(torch.nn.functional.gelu, _gelu_backward),
}


def _activation_of(layer: nn.Module) -> _Activation | None:
    # Exact types only: a subclass may change the forward, and then the backward is wrong.
    kernels = KERNELS.get(type(layer))
    if kernels is None or getattr(layer, "approximate", "none") != "none":
        return None  # not an activation, or the tanh-approximated GELU (another backward)
    return kernels


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

    @classmethod
    def from_tensors(
        cls,
        weights: Sequence[torch.Tensor],
        biases: Sequence[torch.Tensor],
        grads: Sequence[tuple[torch.Tensor, torch.Tensor]],
        activations: Sequence[nn.Module],
        pos_weight: float | None = None,
    ) -> FusedMLP | None:
        """A fused pass over plain tensors, writing the gradients into ``grads`` (one
        ``(weight, bias)`` pair per layer): e.g. one member's slices of weights stacked
        along a member axis (:mod:`steadyclf.train.packed`). ``None`` when an activation
        has no kernels here."""
        kernels = [_activation_of(layer) for layer in activations]
        if any(k is None for k in kernels):
            return None
        fused = cls([], [k for k in kernels if k is not None], pos_weight)
        fused._weights, fused._biases = list(weights), list(biases)
        fused._grads = list(grads)
        return fused

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

    def _output_gradient(
        self, logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None
    ) -> torch.Tensor:
        """d(mean loss)/d(logits): ``sigmoid(z) - y``, or its weighted form, over ``n``.

        Row weights ``w`` scale each row's term: ``mean(w * loss)``, as
        ``BCEWithLogitsLoss(weight=w)`` computes it.
        """
        grad = torch.sigmoid(logits)
        if self.pos_weight is None:
            grad.sub_(y)
        else:
            # d/dz of -[w y log s(z) + (1 - y) log(1 - s(z))] = s(z) (1 + (w - 1) y) - w y
            grad.mul_(y * (self.pos_weight - 1.0) + 1.0).sub_(y * self.pos_weight)
        if w is not None:
            grad.mul_(w)
        return grad.mul_(1.0 / logits.shape[0])

    def forward_backward(
        self, x: torch.Tensor | SparseRows, y: torch.Tensor, w: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Set every parameter's ``.grad`` to the gradient of the mean loss on ``(x, y)``
        (``mean(w * loss)`` with row weights ``w``).

        Returns the logits, shape ``(n,)``, computed before any update. No autograd graph
        is recorded: the weights are used through detached views. ``x`` may be
        :class:`SparseRows` (the first layer's products then skip its zeros).
        """
        if not self._grads:
            self.prepare()
        weights, biases, grads = self._weights, self._biases, self._grads
        sparse = x if isinstance(x, SparseRows) else None
        inputs = [x.csr if isinstance(x, SparseRows) else x]
        pre_activations: list[torch.Tensor] = []
        # One activation per hidden layer: the output layer is handled after the loop.
        for weight, bias, activation in zip(weights, biases, self.activations, strict=False):
            pre = torch.addmm(bias, inputs[-1], weight.t())
            pre_activations.append(pre)
            inputs.append(activation.forward(pre))
        logits = torch.addmm(biases[-1], inputs[-1], weights[-1].t())
        grad = self._output_gradient(
            logits, y.reshape(-1, 1), None if w is None else w.reshape(-1, 1)
        )
        for k in range(len(weights) - 1, -1, -1):
            weight_grad, bias_grad = grads[k]
            if k == 0 and sparse is not None:
                weight_grad.copy_(torch.mm(sparse.csr_t, grad).t())
            else:
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


class FusedMembers:
    """Fused passes of bodies trained together (:class:`~steadyclf.nn.modules.Members`):
    each member's gradient from its own :class:`FusedMLP` pass (the gradient of the sum of
    their losses), the logits returned their combined ones (log odds of the mean
    probability), as the autograd path computes them."""

    def __init__(self, members: Sequence[FusedMLP]) -> None:
        self.members = list(members)
        self._logits: torch.Tensor | None = None

    def prepare(self) -> None:
        """Every member's :meth:`FusedMLP.prepare`."""
        for member in self.members:
            member.prepare()

    def forward_backward(
        self, x: torch.Tensor | SparseRows, y: torch.Tensor, w: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Each member's gradients (:meth:`FusedMLP.forward_backward`); returns the
        combined logits, shape ``(n,)``, computed before any update."""
        logits = torch.stack([member.forward_backward(x, y, w) for member in self.members])
        return mean_probability_logit(logits)

    def forward_into(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """Write the combined logits of ``x`` into ``out`` (shape ``(n,)``)."""
        rows, members = x.shape[0], len(self.members)
        buffer = self._logits
        if buffer is None or buffer.shape[1] < rows or buffer.dtype != out.dtype:
            buffer = self._logits = out.new_empty((members, rows))
        for member, logits in zip(self.members, buffer[:, :rows], strict=True):
            member.forward_into(x, logits)
        out.copy_(mean_probability_logit(buffer[:, :rows]))


def fused_step(
    module: nn.Module, pos_weight: float | None = None
) -> FusedMLP | FusedMembers | None:
    """The fused pass of ``module`` (a plain MLP body, or :class:`Members` of such bodies),
    or ``None`` when it has none (it then trains through autograd)."""
    if isinstance(module, Members):
        members = [FusedMLP.from_module(body, pos_weight) for body in module.bodies]
        if any(member is None for member in members):
            return None
        return FusedMembers([member for member in members if member is not None])
    return FusedMLP.from_module(module, pos_weight)
