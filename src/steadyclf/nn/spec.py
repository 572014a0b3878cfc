"""What a network is, without torch: its activations and the tensors its layout implies.

Saved models are checked against this before any weight is used, and code that only
reads models (loading, prediction without torch) needs no torch import: this module is
plain Python. :mod:`steadyclf.nn.modules` builds the torch network from the same layout,
and a test checks that the two agree for every layout.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACTIVATIONS",
    "NORMALIZATIONS",
    "SINGLE_THREAD_WORK",
    "TARGET_FEATURES",
    "Activation",
    "Architecture",
    "tensor_layout",
]

#: Multiply-adds per operation (rows x weights) below which one thread computes it: more
#: threads cost more in synchronisation than they save (see :mod:`steadyclf.nn.threads`).
SINGLE_THREAD_WORK = 1 << 26


@dataclass(frozen=True)
class Activation:
    """One hidden activation, and everything steadyclf needs to know about it.

    ``module`` names the ``torch.nn`` class; ``he_init`` chooses He initialisation (for
    ReLU-like units) over Glorot (for saturating ones); ``flat_beyond`` is where the
    activation is flat: ``|z|`` above it for sigmoid and tanh (the derivative has fallen
    below 7 % of its peak), ``None`` for ReLU-like units (flat where ``z < 0``).
    """

    name: str
    module: str
    he_init: bool
    flat_beyond: float | None


#: The one table of activations.
ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation("relu", "ReLU", True, None),
    "sigmoid": Activation("sigmoid", "Sigmoid", False, 4.0),
    "tanh": Activation("tanh", "Tanh", False, 2.0),
    "gelu": Activation("gelu", "GELU", True, None),
}
#: How numeric inputs are scaled: ``robust`` (median and 5-95 % spread, then smooth
#: clipping), ``standardize`` (mean and standard deviation), ``batchnorm`` (a BatchNorm1d
#: layer), ``none``.
NORMALIZATIONS = ("robust", "standardize", "batchnorm", "none")
#: Inputs per categorical with target statistics: its target rate and its frequency.
TARGET_FEATURES = 2


@dataclass(frozen=True)
class Architecture:
    """The layout of a network: its inputs and its layers.

    ``n_numeric`` numeric inputs, of which ``n_missing`` get a missing-value indicator;
    ``vocab_sizes`` one-hot widths (levels + 'missing' + 'unseen') of the categoricals;
    ``hidden`` the hidden layer sizes; ``batchnorm`` a ``BatchNorm1d`` on the inputs;
    ``clip`` the smooth clipping ``z / sqrt(1 + (z / 3)**2)`` of the scaled numeric inputs;
    ``n_members`` the bodies (same layout) whose probabilities are averaged;
    ``target_sizes`` the vocabulary sizes (levels + 'missing' + 'unseen') of the
    categoricals with more levels than one-hot keeps, each of which adds two inputs looked
    up per level: its target rate and its frequency in training
    (:mod:`steadyclf.schema.target_stats`).
    """

    n_numeric: int
    n_missing: int
    vocab_sizes: tuple[int, ...]
    hidden: tuple[int, ...]
    activation: str
    batchnorm: bool = False
    clip: bool = False
    n_members: int = 1
    target_sizes: tuple[int, ...] = ()

    @property
    def n_features(self) -> int:
        """Width of the encoded inputs of the first layer."""
        return (
            self.n_numeric
            + self.n_missing
            + sum(self.vocab_sizes)
            + TARGET_FEATURES * len(self.target_sizes)
        )

    @property
    def n_parameters(self) -> int:
        """Trainable parameters."""
        sizes = [self.n_features, *self.hidden, 1]
        total = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
        return self.n_members * (total + (2 * self.n_features if self.batchnorm else 0))

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the ``architecture`` entry of ``model.json``)."""
        return {
            "n_numeric": self.n_numeric,
            "n_missing": self.n_missing,
            "vocab_sizes": list(self.vocab_sizes),
            "hidden": list(self.hidden),
            "activation": self.activation,
            "batchnorm": self.batchnorm,
            "clip": self.clip,
            "n_members": self.n_members,
            "target_sizes": list(self.target_sizes),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Architecture:
        """Inverse of :meth:`to_dict`, type- and range-checked (``ValueError`` otherwise)."""
        if not isinstance(data, dict):
            raise ValueError("architecture is not a mapping")

        def count(value: Any, name: str, low: int) -> int:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"architecture {name} is {value!r}, not an integer >= {low}")
            return value

        def counts(value: Any, name: str, low: int) -> tuple[int, ...]:
            if not isinstance(value, list):
                raise ValueError(f"architecture {name} is not a list")
            return tuple(count(v, name, low) for v in value)

        activation = data.get("activation")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r} (one of {', '.join(ACTIVATIONS)})")
        flags = {}
        for name, default in (("batchnorm", None), ("clip", False)):
            flags[name] = data.get(name, default)
            if not isinstance(flags[name], bool):
                raise ValueError(f"architecture {name} is {flags[name]!r}")
        return cls(
            count(data.get("n_numeric"), "n_numeric", 0),
            count(data.get("n_missing"), "n_missing", 0),
            counts(data.get("vocab_sizes"), "vocab_sizes", 2),
            counts(data.get("hidden"), "hidden", 1),
            str(activation),
            bool(flags["batchnorm"]),
            bool(flags["clip"]),
            count(data.get("n_members", 1), "n_members", 1),
            counts(data.get("target_sizes", []), "target_sizes", 2),
        )


def tensor_layout(arch: Architecture) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every tensor of the saved network: name -> (shape, dtype), weights in float64."""
    layout: dict[str, tuple[tuple[int, ...], str]] = {
        "encoder.impute.median": ((arch.n_numeric,), "float64"),
        "encoder.impute.missing_columns": ((arch.n_missing,), "int64"),
        "encoder.normalize.center": ((arch.n_numeric,), "float64"),
        "encoder.normalize.scale": ((arch.n_numeric,), "float64"),
        "encoder.categorical.vocab_sizes": ((len(arch.vocab_sizes),), "int64"),
    }
    for j, size in enumerate(arch.target_sizes):
        layout[f"encoder.target.values.{j}"] = ((size, TARGET_FEATURES), "float64")
    for member in range(arch.n_members):
        prefix = f"bodies.{member}"
        index = 0
        width = arch.n_features
        if arch.batchnorm:
            for name in ("weight", "bias", "running_mean", "running_var"):
                layout[f"{prefix}.0.{name}"] = ((width,), "float64")
            layout[f"{prefix}.0.num_batches_tracked"] = ((), "int64")
            index = 1
        for size in (*arch.hidden, 1):
            layout[f"{prefix}.{index}.weight"] = ((size, width), "float64")
            layout[f"{prefix}.{index}.bias"] = ((size,), "float64")
            index += 2  # a Linear layer, then its activation (none after the last)
            width = size
    return layout


def upgrade_weights(weights: dict[str, Any], format_version: int) -> dict[str, Any]:
    """Tensor names of an older model file, as this version names them.

    Version 1 had one body (``body.*``, now ``bodies.0.*``) and called the scaling's
    centre ``mean`` (it was always the mean then).
    """
    if format_version >= 2:
        return weights
    renamed = {}
    for name, value in weights.items():
        if name == "encoder.normalize.mean":
            name = "encoder.normalize.center"
        elif name.startswith("body."):
            name = "bodies.0." + name[len("body.") :]
        renamed[name] = value
    return renamed
