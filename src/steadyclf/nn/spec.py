"""What a network is, without torch: its activations and the tensors its layout implies.

Saved models are checked against this before any weight is used, and code that only
reads models (loading, prediction without torch) needs no torch import: this module is
plain Python. :mod:`steadyclf.nn.modules` builds the torch network from the same layout,
and a test checks that the two agree for every layout.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACTIVATIONS",
    "DIRECT_LOGIT_LIMIT",
    "INPUT_LIMIT",
    "NORMALIZATIONS",
    "PERIODIC_FREQUENCIES",
    "PERIODIC_LIMIT",
    "PERIODIC_OUTPUTS",
    "PERIODIC_SIGMA",
    "SINGLE_THREAD_WORK",
    "TARGET_FEATURES",
    "Activation",
    "Architecture",
    "iter_tensor_layout",
    "tensor_layout",
]

#: Multiply-adds per operation (rows x weights) below which one thread computes it: more
#: threads cost more in synchronisation than they save (see :mod:`steadyclf.nn.threads`).
SINGLE_THREAD_WORK = 1 << 26

#: Largest ``|logit|`` of the direct formula for the members' mean probability (NumPy's
#: and torch's ``mean_probability_logit``, in float64): below it ``exp(-logit)`` and its
#: products stay normal float64 numbers.
DIRECT_LOGIT_LIMIT = 700.0


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
#: Bound of every scaled numeric input ``(x - center) / scale``, before the smooth clipping:
#: the largest float32 (``numpy.finfo(numpy.float32).max``, exact in float64), since the
#: network's inputs are float32. Every path (torch, NumPy, ONNX) clamps the scaled value to
#: +-INPUT_LIMIT, so any finite input stays finite and keeps its side: the division may
#: overflow to +-inf in IEEE arithmetic, never to NaN (the centre is finite, the scale
#: positive), and the clamp turns that into +-INPUT_LIMIT; the smooth clipping of it (whose
#: square would overflow beyond 1.3e154) is 3. Nothing that was finite in float32 changes.
INPUT_LIMIT = 3.4028234663852886e38
#: Bound of a periodic embedding's input (a scaled value): the angles ``2 pi f x`` of larger
#: ones would be computed differently by each path (NumPy reduces them in float64 first)
#: and carry no information anyway. Training values never reach it: a standardised value
#: lies within ``sqrt(n - 1)`` standard deviations of the mean, a robust one within 3.
PERIODIC_LIMIT = 1e6
#: Inputs per categorical with target statistics: its target rate and its frequency.
TARGET_FEATURES = 2
#: Periodic embedding of a numeric input (PLR, Gorishniy et al. 2022): this many trainable
#: frequencies ``f``, whose ``cos(2 pi f x)`` and ``sin(2 pi f x)`` a per-input linear map
#: and a ReLU turn into PERIODIC_OUTPUTS more inputs of the first layer; the frequencies
#: start from N(0, PERIODIC_SIGMA) (benchmarks/variants.py).
PERIODIC_FREQUENCIES = 8
PERIODIC_OUTPUTS = 4
PERIODIC_SIGMA = 1.0


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
    (:mod:`steadyclf.schema.target_stats`); ``periodic`` the positions, among the numeric
    inputs, of those each body embeds periodically (:data:`PERIODIC_FREQUENCIES`), whose
    :data:`PERIODIC_OUTPUTS` outputs each follow the encoded inputs into the first layer.
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
    periodic: tuple[int, ...] = ()

    @property
    def n_body_inputs(self) -> int:
        """Width of the first linear layer's input: the encoded inputs, then the periodic
        embeddings."""
        return self.n_features + PERIODIC_OUTPUTS * len(self.periodic)

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
        sizes = [self.n_body_inputs, *self.hidden, 1]
        total = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
        m, k, e = len(self.periodic), PERIODIC_FREQUENCIES, PERIODIC_OUTPUTS
        periodic = m * k + m * 2 * k * e + m * e
        return self.n_members * (total + periodic + (2 * self.n_features if self.batchnorm else 0))

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
            "periodic": list(self.periodic),
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
        if flags["batchnorm"] and data.get("periodic"):
            raise ValueError("architecture has both batchnorm and periodic embeddings")
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
            _positions(counts(data.get("periodic", []), "periodic", 0), data.get("n_numeric")),
        )


def _positions(values: tuple[int, ...], n_numeric: Any) -> tuple[int, ...]:
    """Increasing positions among the numeric inputs (``ValueError`` otherwise)."""
    if any(b <= a for a, b in itertools.pairwise(values)) or (
        values and isinstance(n_numeric, int) and values[-1] >= n_numeric
    ):
        raise ValueError(
            f"architecture periodic is {list(values)!r}, not increasing numeric inputs"
        )
    return values


def tensor_layout(arch: Architecture) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every tensor of the saved network: name -> (shape, dtype), weights in float64."""
    return dict(iter_tensor_layout(arch))


def iter_tensor_layout(arch: Architecture) -> Iterator[tuple[str, tuple[tuple[int, ...], str]]]:
    """The entries of :func:`tensor_layout` one at a time, in order: a reader checking a
    file against a layout stops at the first tensor the file lacks, however many the
    layout lists."""
    yield "encoder.impute.median", ((arch.n_numeric,), "float64")
    yield "encoder.impute.missing_columns", ((arch.n_missing,), "int64")
    yield "encoder.normalize.center", ((arch.n_numeric,), "float64")
    yield "encoder.normalize.scale", ((arch.n_numeric,), "float64")
    yield "encoder.categorical.vocab_sizes", ((len(arch.vocab_sizes),), "int64")
    for j, size in enumerate(arch.target_sizes):
        yield f"encoder.target.values.{j}", ((size, TARGET_FEATURES), "float64")
    for member in range(arch.n_members):
        prefix = f"bodies.{member}"
        index = 0
        width = arch.n_body_inputs
        if arch.periodic:
            m, k, e = len(arch.periodic), PERIODIC_FREQUENCIES, PERIODIC_OUTPUTS
            yield f"{prefix}.0.frequency", ((m, k), "float64")
            yield f"{prefix}.0.weight", ((m, 2 * k, e), "float64")
            yield f"{prefix}.0.bias", ((m, e), "float64")
            index = 1
        if arch.batchnorm:  # never with periodic embeddings (from_dict refuses both)
            for name in ("weight", "bias", "running_mean", "running_var"):
                yield f"{prefix}.0.{name}", ((width,), "float64")
            yield f"{prefix}.0.num_batches_tracked", ((), "int64")
            index = 1
        for size in (*arch.hidden, 1):
            yield f"{prefix}.{index}.weight", ((size, width), "float64")
            yield f"{prefix}.{index}.bias", ((size,), "float64")
            index += 2  # a Linear layer, then its activation (none after the last)
            width = size


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
