"""The doctor's central explanation: saturation and gradient at initialisation.

With steadyclf's default initialisation, the share of first-layer pre-activations that
land where the activation is flat, and the size of the initial gradient, on raw versus
standardised inputs: the classic reason a network on raw tabular data does not learn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from ..nn.modules import SteadyNet
from ..nn.spec import Architecture
from ..schema.encoder import TabularEncoder
from ..schema.stats import RunningStats
from ..train.stall import SATURATION_ROWS, saturated_share, saturation_region

__all__ = ["SaturationCheck", "check_saturation"]


@dataclass
class SaturationCheck:
    """First-layer saturation and initial gradient, raw versus standardised inputs.

    Shares are fractions of first-layer pre-activations (rows x units) in the flat region
    of ``activation``; gradient norms are taken at initialisation on the whole sample:
    ``grad_preact`` with respect to the first-layer pre-activations (the signal that
    reaches the first weights), ``grad_total`` with respect to every weight.
    """

    activation: str
    hidden: list[int]
    region: str
    seed: int
    raw_share: float
    standardized_share: float
    raw_grad_preact: float
    standardized_grad_preact: float
    raw_grad_total: float
    standardized_grad_total: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


def check_saturation(
    x_num: NDArray[np.float64],
    x_cat: NDArray[np.int64],
    target: NDArray[np.float32],
    encoder: TabularEncoder,
    *,
    activation: str,
    hidden: Sequence[int],
    seed: int = 0,
) -> SaturationCheck:
    """Saturation and initial gradients of a freshly initialised :class:`SteadyNet`."""
    rows = np.random.default_rng(seed).permutation(len(target))[:SATURATION_ROWS]
    x_num, x_cat, target = x_num[rows], x_cat[rows], target[rows]
    raw = _initial_state(x_num, x_cat, target, encoder, activation, hidden, seed, False)
    std = _initial_state(x_num, x_cat, target, encoder, activation, hidden, seed, True)
    return SaturationCheck(
        activation=activation,
        hidden=[int(h) for h in hidden],
        region=saturation_region(activation),
        seed=seed,
        raw_share=raw[0],
        standardized_share=std[0],
        raw_grad_preact=raw[1],
        standardized_grad_preact=std[1],
        raw_grad_total=raw[2],
        standardized_grad_total=std[2],
    )


def _initial_state(
    x_num: NDArray[np.float64],
    x_cat: NDArray[np.int64],
    target: NDArray[np.float32],
    encoder: TabularEncoder,
    activation: str,
    hidden: Sequence[int],
    seed: int,
    standardize: bool,
) -> tuple[float, float, float]:
    """(saturated share, |dL/dz| of the first layer, |dL/dw| overall) at initialisation."""
    had_missing = np.isnan(x_num).any(axis=0)
    rate = float(np.clip(target.mean(), 1e-6, 1 - 1e-6))
    arch = Architecture(
        x_num.shape[1],
        int(had_missing.sum()),
        tuple(encoder.vocab_sizes),
        tuple(int(h) for h in hidden),
        activation,
    )
    generator = torch.Generator().manual_seed(seed)
    net = SteadyNet(arch, prior_logit=math.log(rate / (1 - rate)), generator=generator)
    median = np.nan_to_num(np.nanmedian(np.where(had_missing, x_num, 0.0), axis=0))
    net.encoder.impute.median.copy_(torch.from_numpy(median))
    net.encoder.impute.missing_columns.copy_(torch.from_numpy(np.flatnonzero(had_missing)))
    if standardize:
        stats = RunningStats.from_array(np.where(np.isnan(x_num), median, x_num))
        net.encoder.normalize.center.copy_(torch.from_numpy(stats.mean))
        net.encoder.normalize.scale.copy_(torch.from_numpy(stats.scale))
    with torch.no_grad():
        features = net.encoder(torch.from_numpy(x_num), torch.from_numpy(x_cat))
    if not hidden:
        return 0.0, math.nan, math.nan
    first, rest = net.body[0], net.body[1:]
    z = first(features)
    z.retain_grad()
    logits = rest(z).reshape(-1)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(target))
    loss.backward()
    assert z.grad is not None
    total = torch.sqrt(
        sum(
            ((p.grad**2).sum() for p in net.body.parameters() if p.grad is not None),
            torch.zeros(()),
        )
    )
    return saturated_share(z.detach(), activation), float(z.grad.norm()), float(total)
