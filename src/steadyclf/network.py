"""The PyTorch module: fitted input encoding followed by an MLP that outputs one logit.

The module takes *raw* columns: numeric values as float64 (NaN for missing) and
categorical columns as integer codes. Everything fitted on the training data lives in
buffers, so a saved module reproduces predictions on raw inputs:

``impute``     median per numeric column, plus a 0/1 indicator for columns that had
               missing values in training;
``normalize``  ``(x - mean) / scale`` in float64, *before* the cast to float32, so that a
               feature such as ``1e6 + 1e-6 * HR`` keeps its signal;
``categorical`` one-hot encoding of the codes (vocabularies are capped, see ``tabular``);
``body``       optional ``BatchNorm1d`` on the inputs, then Linear/activation blocks and a
               final Linear layer with one output: a logit for ``BCEWithLogitsLoss``.

Training runs ``body`` on the encoded float32 features, computed once per fit: the
encoding is fixed, so repeating it every step would only cost time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "NORMALIZATIONS",
    "Impute",
    "InputEncoder",
    "OneHot",
    "Standardize",
    "SteadyNet",
    "make_body",
]

ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu")
NORMALIZATIONS = ("standardize", "batchnorm", "none")


def _activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU}[name]()


def _init_linear(layer: nn.Linear, activation: str) -> None:
    """He initialisation for ReLU-like units, Glorot for saturating ones; zero bias."""
    if activation in ("relu", "gelu"):
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    else:
        nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)


def make_body(
    n_inputs: int,
    hidden: Sequence[int],
    activation: str,
    *,
    batchnorm: bool,
    prior_logit: float = 0.0,
) -> nn.Sequential:
    """Build the trainable part: ``[BatchNorm1d] -> (Linear -> act) * k -> Linear(1)``."""
    layers: list[nn.Module] = []
    if batchnorm:
        layers.append(nn.BatchNorm1d(n_inputs))
    width = n_inputs
    for size in hidden:
        linear = nn.Linear(width, size)
        _init_linear(linear, activation)
        layers += [linear, _activation(activation)]
        width = size
    out = nn.Linear(width, 1)
    # Small output weights and a bias at the log prior odds: the first prediction is the
    # base rate, so early steps learn the signal instead of the class balance.
    bound = 1.0 / math.sqrt(width)
    nn.init.uniform_(out.weight, -bound, bound)
    nn.init.constant_(out.bias, prior_logit)
    layers.append(out)
    return nn.Sequential(*layers)


class Impute(nn.Module):
    """Median imputation of numeric columns plus 0/1 indicators of what was missing."""

    median: torch.Tensor
    missing_columns: torch.Tensor

    def __init__(self, n_numeric: int, n_missing: int) -> None:
        super().__init__()
        self.register_buffer("median", torch.zeros(n_numeric, dtype=torch.float64))
        self.register_buffer("missing_columns", torch.zeros(n_missing, dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Imputed values and indicators (``None`` when no column had missing values)."""
        missing = torch.isnan(x)
        if not bool(missing.any()):
            if self.missing_columns.numel() == 0:
                return x, None
            return x, torch.zeros(x.shape[0], self.missing_columns.numel(), dtype=x.dtype)
        indicators = missing.index_select(1, self.missing_columns).to(x.dtype)
        return torch.where(missing, self.median, x), indicators


class Standardize(nn.Module):
    """``(x - mean) / scale`` in float64; identity when mean 0 and scale 1."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, n_numeric: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_numeric, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(n_numeric, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised columns, still float64."""
        return (x - self.mean) / self.scale


class OneHot(nn.Module):
    """One-hot encoding of integer category codes, one block per column."""

    vocab_sizes: torch.Tensor

    def __init__(self, vocab_sizes: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("vocab_sizes", torch.tensor(list(vocab_sizes), dtype=torch.int64))
        self.sizes = [int(v) for v in vocab_sizes]

    def forward(self, codes: torch.Tensor) -> list[torch.Tensor]:
        """One float32 block per categorical column."""
        return [
            nn.functional.one_hot(codes[:, j], size).to(torch.float32)
            for j, size in enumerate(self.sizes)
        ]


class InputEncoder(nn.Module):
    """Raw columns -> float32 features, with every fitted statistic held in buffers."""

    def __init__(self, n_numeric: int, n_missing: int, vocab_sizes: Sequence[int]) -> None:
        super().__init__()
        self.n_numeric = n_numeric
        self.impute = Impute(n_numeric, n_missing)
        self.normalize = Standardize(n_numeric)
        self.categorical = OneHot(vocab_sizes)

    @property
    def n_features_out(self) -> int:
        """Width of the encoded feature matrix."""
        n_missing = int(self.impute.missing_columns.numel())
        return self.n_numeric + n_missing + sum(self.categorical.sizes)

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor | None = None) -> torch.Tensor:
        """Encode raw numeric (float64, NaN = missing) and categorical code columns."""
        values, indicators = self.impute(x_num.to(torch.float64))
        parts = [self.normalize(values).to(torch.float32)]
        if indicators is not None:
            parts.append(indicators.to(torch.float32))
        if self.categorical.sizes:
            if x_cat is None:
                raise ValueError("this model needs categorical codes")
            parts.extend(self.categorical(x_cat))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class SteadyNet(nn.Module):
    """Encoder + MLP returning one logit per row.

    Parameters
    ----------
    n_numeric, n_missing, vocab_sizes
        Input layout: numeric columns, how many of them get a missing indicator, and the
        size of each categorical vocabulary (including the 'missing' and 'unseen' codes).
    hidden, activation, batchnorm, prior_logit
        See :func:`make_body`.
    """

    def __init__(
        self,
        n_numeric: int,
        n_missing: int,
        vocab_sizes: Sequence[int],
        hidden: Sequence[int],
        activation: str,
        *,
        batchnorm: bool = False,
        prior_logit: float = 0.0,
    ) -> None:
        super().__init__()
        self.encoder = InputEncoder(n_numeric, n_missing, vocab_sizes)
        self.body = make_body(
            self.encoder.n_features_out,
            hidden,
            activation,
            batchnorm=batchnorm,
            prior_logit=prior_logit,
        )

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor | None = None) -> torch.Tensor:
        """Logits, shape ``(n,)``, in the dtype of the body's weights."""
        features = self.encoder(x_num, x_cat)
        dtype = self.body[-1].weight.dtype
        return self.body(features.to(dtype)).squeeze(-1)
