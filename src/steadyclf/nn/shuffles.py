"""Logits of fixed rows with one column's inputs shuffled, the first layer updated by the
change alone: what permutation importance (:mod:`steadyclf.importance`, ``steadyclf
explain``) spends its time in. The forward pass itself is :mod:`steadyclf.nn.numpy_forward`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .numpy_forward import (
    NumpyNetwork,
    Weights,
    activate,
    batchnorm,
    body_layers,
    encode,
    linear,
    mean_probability_logit,
    periodic,
)
from .spec import PERIODIC_OUTPUTS, TARGET_FEATURES, Architecture

__all__ = ["SHUFFLE_FEATURE_LIMIT", "ColumnShuffles", "feature_columns"]

#: Largest size of a feature :class:`ColumnShuffles` updates the first layer by: an
#: absolute error of about 1e4 ulps (2e-12) per unit weight, against the few ulps of a
#: full pass; standardised, clipped, one-hot and target features stay far below.
SHUFFLE_FEATURE_LIMIT = 1e4


def feature_columns(
    arch: Architecture, weights: Weights, numeric: Sequence[int], codes: Sequence[int]
) -> NDArray[np.int64]:
    """The columns of :func:`encode`'s output that the ``x_num`` columns ``numeric`` and
    the ``x_cat`` columns ``codes`` feed (value and missing indicator; one-hot block;
    target statistics), sorted."""
    k, n_cat = arch.n_numeric, len(arch.vocab_sizes)
    missing = [int(j) for j in weights["encoder.impute.missing_columns"]]
    out = [*numeric, *(k + missing.index(j) for j in numeric if j in missing)]
    start = np.cumsum([k + len(missing), *arch.vocab_sizes])  # one-hot blocks, then targets
    for c in codes:
        if c < n_cat:
            out += range(int(start[c]), int(start[c + 1]))
        else:
            first = int(start[-1]) + TARGET_FEATURES * (c - n_cat)
            out += range(first, first + TARGET_FEATURES)
    return np.array(sorted(out), dtype=np.int64)


@dataclass
class _FirstLayer:
    """One member's first linear layer and what it reads: ``inputs`` (the encoded rows,
    through the member's BatchNorm, with its periodic embeddings appended), its output
    ``hidden`` on them, and the layers after it."""

    inputs: NDArray[np.float64]
    hidden: NDArray[np.float64]
    weight: NDArray[np.float64]
    rest: list[tuple[str, str]]


@dataclass
class ColumnShuffles:
    """Logits of fixed rows with the inputs of one column put in another row order. A
    member's first linear layer reads the encoded features through per-feature steps
    (BatchNorm's scale and shift; a numeric input's periodic embedding), so shuffling a
    column shuffles only its own columns of that layer's input: the layer's output is the
    rows' own plus the product of their change with their weights. A shuffle then costs
    rows x (those columns + the layers after the first) multiply-adds per member instead
    of rows x every weight (what permutation importance on wide tables spent its time in).

    The sums are rounded otherwise than a full pass: the change of an input of size ``v``
    costs an absolute error of about ``v`` ulps in the first layer, so columns with an
    input beyond :data:`SHUFFLE_FEATURE_LIMIT` in size (far values of an unclipped input:
    they reach 3.4e38, which would swamp the rest of the row) are not covered
    (:meth:`covers`): the caller runs the whole network for them."""

    network: NumpyNetwork
    members: list[_FirstLayer]

    @classmethod
    def of(
        cls, network: NumpyNetwork, x_num: NDArray[np.floating], x_cat: NDArray[np.int64]
    ) -> ColumnShuffles:
        """For the rows ``x_num, x_cat``."""
        arch, weights = network.arch, network.weights
        with np.errstate(over="ignore", invalid="ignore"):
            features = encode(arch, weights, x_num, x_cat)
            members = []
            for m in range(arch.n_members):
                layers = body_layers(arch, m)
                h, i = features, 0
                while layers[i][0] != "linear":  # BatchNorm, periodic embeddings
                    kind, prefix = layers[i]
                    h = batchnorm(weights, prefix, h.copy()) if kind == "batchnorm" else h
                    h = periodic(weights, prefix, arch, h) if kind == "periodic" else h
                    i += 1
                prefix = layers[i][1]
                first = _FirstLayer(
                    h, linear(weights, prefix, h), weights[f"{prefix}.weight"], layers[i + 1 :]
                )
                members.append(first)
        return cls(network, members)

    def _inputs(self, columns: NDArray[np.int64]) -> NDArray[np.int64]:
        """The first layer's input columns fed by the encoded ``columns``: themselves, and
        the periodic embedding of an embedded numeric input among them."""
        arch = self.network.arch
        embedded = [p for p, j in enumerate(arch.periodic) if j in set(columns.tolist())]
        extra = [
            arch.n_features + PERIODIC_OUTPUTS * p + o
            for p in embedded
            for o in range(PERIODIC_OUTPUTS)
        ]
        return np.concatenate([columns, np.array(extra, dtype=np.int64)])

    def covers(self, columns: NDArray[np.int64]) -> bool:
        """Whether :meth:`logits` may shuffle the encoded ``columns`` (every first-layer
        input they feed within +-:data:`SHUFFLE_FEATURE_LIMIT`)."""
        cols = self._inputs(columns)
        return not cols.size or all(
            bool(np.abs(m.inputs[:, cols]).max() <= SHUFFLE_FEATURE_LIMIT) for m in self.members
        )

    def logits(self, columns: NDArray[np.int64], order: NDArray[np.int64]) -> NDArray[np.float64]:
        """The logits with the encoded ``columns`` (:func:`feature_columns`, :meth:`covers`)
        in row order ``order``."""
        cols = self._inputs(columns)
        out = []
        with np.errstate(over="ignore", invalid="ignore"):
            for member in self.members:
                own = member.inputs[:, cols]
                h = member.hidden + (own[order] - own) @ member.weight[:, cols].T
                for kind, prefix in member.rest:
                    h = (
                        linear(self.network.weights, prefix, h)
                        if kind == "linear"
                        else activate(prefix, h)
                    )
                out.append(h[:, 0])
            if len(out) == 1:
                return out[0]
            return mean_probability_logit(np.stack(out))
