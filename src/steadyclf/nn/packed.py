"""Packed members: ``M`` MLPs of one layout with their weights stacked along a member axis.

:mod:`steadyclf.train.packed` trains small data's cross-fitted members as one such network
(one step for all of them); this is the network: its forward pass, and its forward and
backward pass with each member's gradient in its slice of the stacked tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional

from .modules import PeriodicEmbedding
from .step import FusedMLP, SparseRows

__all__ = ["PackedMembers", "member_losses"]


def member_losses(
    logits: torch.Tensor, y: torch.Tensor, pos_weight: torch.Tensor | None
) -> torch.Tensor:
    """Per-member, per-row ``BCEWithLogitsLoss`` terms, shape ``(M, n)``."""
    return functional.binary_cross_entropy_with_logits(
        logits, y.unsqueeze(0).expand_as(logits), pos_weight=pos_weight, reduction="none"
    )


class PackedMembers:
    """``M`` MLPs of one layout (``[PeriodicEmbedding] -> (Linear -> act) * k -> Linear``)
    with their weights stacked along a first, member axis.

    ``forward(x)`` gives the logits of every member for every row, shape ``(M, n)``.
    """

    def __init__(self, bodies: Sequence[nn.Module]) -> None:
        first = bodies[0]
        layers = list(first.children())
        self.periodic: torch.Tensor | None = None
        self.activations: list[nn.Module] = []
        linear_index = [i for i, m in enumerate(layers) if isinstance(m, nn.Linear)]
        self.n_linear = len(linear_index)
        for i in linear_index[:-1]:
            self.activations.append(layers[i + 1])
        self.tensors: list[torch.Tensor] = []
        states = [dict(body.named_parameters()) for body in bodies]
        names = list(states[0])
        for name in names:
            stacked = torch.stack([s[name].detach() for s in states]).clone()
            self.tensors.append(stacked.requires_grad_(True))
        self.names = names
        if isinstance(layers[0], PeriodicEmbedding):
            self.periodic = layers[0].columns.clone()
        self.m = len(bodies)
        #: ``None``: batched matmuls on a GPU, member by member on the CPU (see forward).
        self.batched: bool | None = None
        self._fused_members: list[FusedMLP] | None = None
        self._turns_of: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, members: Sequence[int]) -> torch.Tensor:
        """Logits ``(len(members), n)`` of float32 features ``x`` ``(n, width)``.

        On a GPU, one batched matmul per layer for all the members. On the CPU, member
        after member, each a plain matrix product on its slice of the stacked weights (one
        autograd graph, one backward pass): measured here, a batched product of 15
        members took 2-4 times as long per member as 15 plain ones (the members' working
        sets fit the cache one at a time, not together), while the trainer's overhead per
        step, which packing removes, is the same either way.
        """
        batched = x.device.type != "cpu" if self.batched is None else self.batched
        if batched:
            index = torch.tensor(list(members), device=x.device)
            return self._forward_batched(x, [t.index_select(0, index) for t in self.tensors])
        # unbind: one backward node per tensor (select would add a full-size zero gradient
        # per member and tensor).
        slices = [t.unbind(0) for t in self.tensors]
        return torch.stack([self._forward_one(x, [s[i] for s in slices]) for i in members])

    def forward_backward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        row_weights: torch.Tensor,
        members: Sequence[int],
        pos_weight: float | None,
        sparse: SparseRows | None = None,
    ) -> torch.Tensor:
        """Logits ``(len(members), n)`` of ``x``, and in each member's ``.grad`` slice the
        gradient of ``mean(row_weights[j] * loss)`` over the ``n`` rows (member
        ``members[j]``; rows of weight 0 are only scored).

        Plain MLPs on the CPU take the hand-written pass of
        :class:`~steadyclf.nn.step.FusedMLP` member by member (no autograd, as a lone
        member trains), reading ``sparse`` (``x`` as CSR matrices) when given; other
        layouts go through autograd (see :meth:`forward`).
        """
        for t in self.tensors:
            if t.grad is None:
                t.grad = torch.zeros_like(t)
        fused = self._fused(pos_weight) if x.device.type == "cpu" and not self.batched else None
        if fused is not None:
            out = torch.empty(len(members), x.shape[0], dtype=x.dtype, device=x.device)
            for row, i in enumerate(members):
                out[row] = fused[i].forward_backward(
                    x if sparse is None else sparse, y, row_weights[row]
                )
            return out
        for t in self.tensors:
            assert t.grad is not None
            t.grad.zero_()
        with torch.enable_grad():
            logits = self.forward(x, members)
            pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=x.dtype)
            terms = member_losses(logits, y, pw) * row_weights
            (terms.sum() / x.shape[0]).backward()
        return logits.detach()

    def _fused(self, pos_weight: float | None) -> list[FusedMLP] | None:
        """One :class:`FusedMLP` per member over its slices (``None``: not a plain MLP)."""
        if self.periodic is not None:
            return None
        if self._fused_members is None:
            members: list[FusedMLP] = []
            for i in range(self.m):
                weights = [t[i] for t in self.tensors[0::2]]
                biases = [t[i] for t in self.tensors[1::2]]
                grads = [
                    (w.grad[i], b.grad[i])  # type: ignore[index]
                    for w, b in zip(self.tensors[0::2], self.tensors[1::2], strict=True)
                ]
                fused = FusedMLP.from_tensors(
                    [w.detach() for w in weights],
                    [b.detach() for b in biases],
                    grads,
                    self.activations,
                    pos_weight,
                )
                if fused is None:
                    self._fused_members = []
                    break
                members.append(fused)
            else:
                self._fused_members = members
        return self._fused_members or None

    def _forward_one(self, x: torch.Tensor, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        parts = iter(tensors)
        if self.periodic is not None:
            frequency, weight, bias = next(parts), next(parts), next(parts)
            # Column-major angles (c, n, k): no copy into the products' layout per step.
            z = self._turns(x) * frequency.unsqueeze(1)  # (c, n, k)
            p = torch.cat([torch.cos(z), torch.sin(z)], dim=-1)  # (c, n, 2k)
            e = torch.relu(torch.baddbmm(bias.unsqueeze(1), p, weight))  # (c, n, e)
            e = e.permute(1, 0, 2).reshape(x.shape[0], -1)
            # The first layer of [x, e] as two products: no copy of the fixed inputs per
            # step and no gradient for them (4,657 x 852 inputs: 37 -> 23 ms a step).
            w, b, width = next(parts), next(parts), x.shape[1]
            h = functional.linear(x, w[:, :width], b) + functional.linear(e, w[:, width:])
        else:
            h = functional.linear(x, next(parts), next(parts))
        for activation in self.activations:
            h = functional.linear(activation(h), next(parts), next(parts))
        return h.squeeze(-1)

    def _turns(self, x: torch.Tensor) -> torch.Tensor:
        """``2 pi x`` of the embedded columns, ``(c, n, 1)``, once for a pack's fixed ``x``."""
        assert self.periodic is not None
        cached = self._turns_of
        if cached is None or cached[0] is not x:
            cached = (x, ((2 * math.pi) * x[:, self.periodic]).T.contiguous().unsqueeze(-1))
            self._turns_of = cached
        return cached[1]

    def _forward_batched(self, x: torch.Tensor, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        parts = iter(tensors)
        m, n = tensors[0].shape[0], x.shape[0]
        if self.periodic is not None:
            frequency, weight, bias = next(parts), next(parts), next(parts)
            z = (2 * math.pi) * x[:, self.periodic].T.unsqueeze(0).unsqueeze(-1)  # (1, c, n, 1)
            z = z * frequency.unsqueeze(2)  # (M, c, n, k)
            p = torch.cat([torch.cos(z), torch.sin(z)], dim=-1)  # (M, c, n, 2k)
            e = torch.relu(torch.matmul(p, weight) + bias.unsqueeze(2))  # (M, c, n, e)
            e = e.permute(0, 2, 1, 3).reshape(m, n, -1)
            h = torch.cat([x.unsqueeze(0).expand(m, n, x.shape[1]), e], dim=2)
            w, b = next(parts), next(parts)
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        else:
            w, b = next(parts), next(parts)
            h = torch.matmul(x, w.transpose(1, 2)) + b.unsqueeze(1)
        for activation in self.activations:
            h = activation(h)
            w, b = next(parts), next(parts)
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        return h.squeeze(-1)

    @torch.no_grad()
    def finite(self, index: torch.Tensor) -> torch.Tensor:
        """Whether every weight of each member in ``index`` is finite, shape ``(len,)``."""
        ok = torch.ones(index.numel(), dtype=torch.bool, device=index.device)
        for t in self.tensors:
            ok &= torch.isfinite(t.index_select(0, index)).flatten(1).all(dim=1)
        return ok

    @torch.no_grad()
    def copy_to(self, copies: Sequence[torch.Tensor], index: torch.Tensor) -> None:
        """Copy the weights of the members in ``index`` into ``copies`` (stacked like them)."""
        for target, t in zip(copies, self.tensors, strict=True):
            target.index_copy_(0, index, t.index_select(0, index))

    def load_into(self, body: nn.Module, index: int, *, grads: bool = False) -> None:
        """Copy member ``index`` (and its gradients) into ``body``'s parameters."""
        params = dict(body.named_parameters())
        with torch.no_grad():
            for name, t in zip(self.names, self.tensors, strict=True):
                params[name].copy_(t[index])
                if grads:
                    params[name].grad = None if t.grad is None else t.grad[index].clone()
