"""The PyTorch module: fitted input encoding followed by an MLP that outputs one logit.

The module takes *raw* columns: numeric values as float64 (NaN for missing) and
categorical columns as integer codes. Everything fitted on the training data lives in
buffers, so a saved module reproduces predictions on raw inputs:

``impute``     the training median of every numeric column fills its missing values, and
               a 0/1 indicator is added for columns that had missing values in training;
``normalize``  ``(x - center) / scale`` in float64, *before* the cast to float32, so that a
               feature such as ``1e6 + 1e-6 * HR`` keeps its signal (centre and scale are
               the median and a quantile spread, or the mean and standard deviation),
               bounded to +-``INPUT_LIMIT`` (any finite input stays finite, on its side),
               then optionally the smooth clipping ``z / sqrt(1 + (z / 3)**2)``, which
               keeps an extreme value (a sentinel, a unit error) from dominating;
``categorical`` one-hot encoding of the codes (vocabularies are capped, see ``schema``);
``bodies``     one or more members, each an optional ``BatchNorm1d`` on the inputs, then
               Linear/activation blocks and a final Linear layer with one output: a logit
               for ``BCEWithLogitsLoss``. Several members are averaged in probability.

Training runs ``body`` on the encoded float32 features, computed once per fit: the
encoding is fixed, so repeating it every step would only cost time. Weights are drawn
from a generator of the fit's own (never torch's global one), so fits in threads do not
disturb each other and a fit does not move the caller's random state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from .spec import (
    ACTIVATIONS,
    DIRECT_LOGIT_LIMIT,
    INPUT_LIMIT,
    PERIODIC_FREQUENCIES,
    PERIODIC_LIMIT,
    PERIODIC_OUTPUTS,
    PERIODIC_SIGMA,
    TARGET_FEATURES,
    Architecture,
)
from .threads import intra_op_threads

__all__ = [
    "Impute",
    "InputEncoder",
    "Members",
    "OneHot",
    "PeriodicBody",
    "PeriodicEmbedding",
    "Scale",
    "SteadyNet",
    "activation_module",
    "combined_logits",
    "first_linear",
    "make_body",
    "mean_probability_logit",
    "module_from_weights",
    "numpy_weights",
    "one_member",
    "scaled_",
    "soft_clip_",
]

#: Rows per stacked pass of a model's members at prediction (see SteadyNet.logits).
PREDICT_ROWS = 1 << 11
#: Rows encoded at a time (float64 temporaries of this many rows).
ENCODE_BATCH_ROWS = 1 << 14


def activation_module(name: str) -> nn.Module:
    """The ``torch.nn`` module of the activation ``name`` (see :data:`ACTIVATIONS`)."""
    module: nn.Module = getattr(nn, ACTIVATIONS[name].module)()
    return module


def _linear(n_in: int, n_out: int, *, he: bool, generator: torch.Generator | None) -> nn.Linear:
    """A Linear layer, He- or Glorot-initialised from ``generator``, with zero bias.

    Built on the meta device first: ``nn.Linear``'s own initialisation would draw from
    torch's global generator.
    """
    layer = nn.Linear(n_in, n_out, device="meta").to_empty(device=torch.get_default_device())
    if he:
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=generator)
    else:
        nn.init.xavier_uniform_(layer.weight, generator=generator)
    nn.init.zeros_(layer.bias)
    return layer


class PeriodicEmbedding(nn.Module):
    """Periodic embeddings of some numeric inputs, appended to the inputs (PLR).

    For each embedded input ``x`` (the scaled value): ``relu(W [cos(2 pi f x), sin(2 pi f
    x)] + b)`` with :data:`PERIODIC_FREQUENCIES` trainable frequencies ``f`` (drawn from
    N(0, PERIODIC_SIGMA)) and a per-input ``W`` to :data:`PERIODIC_OUTPUTS` outputs, so
    the first layer can respond to many thresholds of one column at once (Gorishniy et
    al. 2022, "On Embeddings for Numerical Features in Tabular Deep Learning"). The inputs
    pass through unchanged, the embeddings follow them.
    """

    columns: torch.Tensor

    def __init__(self, columns: Sequence[int], generator: torch.Generator | None) -> None:
        super().__init__()
        m, k, e = len(columns), PERIODIC_FREQUENCIES, PERIODIC_OUTPUTS
        # Not saved: the architecture lists the columns.
        self.register_buffer(
            "columns", torch.tensor(list(columns), dtype=torch.int64), persistent=False
        )
        self.frequency = nn.Parameter(torch.randn(m, k, generator=generator) * PERIODIC_SIGMA)
        bound = 1.0 / math.sqrt(2 * k)
        self.weight = nn.Parameter((torch.rand(m, 2 * k, e, generator=generator) * 2 - 1) * bound)
        self.bias = nn.Parameter(torch.zeros(m, e))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.embed(x)], dim=1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The embeddings alone, ``(n, columns * PERIODIC_OUTPUTS)``."""
        # Bounded: see PERIODIC_LIMIT (training values never reach it).
        x_in = x[:, self.columns].clamp(-PERIODIC_LIMIT, PERIODIC_LIMIT)
        z = (2 * math.pi) * x_in.unsqueeze(-1) * self.frequency  # (n, m, k)
        p = torch.cat([torch.cos(z), torch.sin(z)], dim=-1)  # (n, m, 2k)
        e = torch.relu(torch.matmul(p.transpose(0, 1), self.weight) + self.bias.unsqueeze(1))
        return e.transpose(0, 1).reshape(x.shape[0], -1)


class PeriodicBody(nn.Sequential):
    """``PeriodicEmbedding -> Linear -> ...`` (the layers and weights of the plain
    ``nn.Sequential``) whose first layer multiplies the inputs and the embeddings
    separately instead of their concatenation: the inputs need no gradient, so the
    backward pass skips their product (inputs x hidden units a row) and the copy, about a
    quarter of a training step (1,024 rows x 207 inputs, 5 embedded: 6.0 -> 4.5 ms)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embedding, first, *rest = self
        assert isinstance(embedding, PeriodicEmbedding) and isinstance(first, nn.Linear)
        n_in, weight = x.shape[1], first.weight
        h = torch.addmm(first.bias, x, weight[:, :n_in].t())
        h = h + embedding.embed(x) @ weight[:, n_in:].t()
        for layer in rest:
            h = layer(h)
        return h


def make_body(
    n_inputs: int,
    hidden: Sequence[int],
    activation: str,
    *,
    batchnorm: bool,
    prior_logit: float = 0.0,
    generator: torch.Generator | None = None,
    periodic: Sequence[int] = (),
) -> nn.Sequential:
    """Build the trainable part: ``[PeriodicEmbedding | BatchNorm1d] -> (Linear -> act) * k
    -> Linear(1)``; ``periodic``: the positions of the numeric inputs to embed (the
    inputs start with the numeric ones)."""
    layers: list[nn.Module] = []
    width = n_inputs
    if periodic:
        layers.append(PeriodicEmbedding(periodic, generator))
        width = n_inputs + PERIODIC_OUTPUTS * len(periodic)
    if batchnorm:
        layers.append(nn.BatchNorm1d(n_inputs))
    he = ACTIVATIONS[activation].he_init
    for size in hidden:
        layers += [_linear(width, size, he=he, generator=generator), activation_module(activation)]
        width = size
    out = _linear(width, 1, he=False, generator=generator)
    # Small output weights and a bias at the log prior odds: the first prediction is the
    # base rate, so early steps learn the signal instead of the class balance.
    bound = 1.0 / math.sqrt(width)
    nn.init.uniform_(out.weight, -bound, bound, generator=generator)
    nn.init.constant_(out.bias, prior_logit)
    layers.append(out)
    if periodic and not batchnorm:
        return PeriodicBody(*layers)
    return nn.Sequential(*layers)


def first_linear(body: nn.Module) -> nn.Linear:
    """The first Linear layer of a body (after an optional BatchNorm)."""
    return next(m for m in body.children() if isinstance(m, nn.Linear))


class Impute(nn.Module):
    """Median imputation of numeric columns plus 0/1 indicators of what was missing.

    Every numeric column has a median (missing values that training never saw are filled
    too); only the columns listed in ``missing_columns`` get an indicator.
    """

    median: torch.Tensor
    missing_columns: torch.Tensor

    def __init__(self, n_numeric: int, n_missing: int) -> None:
        super().__init__()
        self.register_buffer("median", torch.zeros(n_numeric, dtype=torch.float64))
        self.register_buffer("missing_columns", torch.zeros(n_missing, dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Imputed values and indicators (``None`` when no column had missing values).

        No branch on the values: every tensor is made from ``x`` (on its device), and the
        module runs on any device, the ``meta`` one included.
        """
        missing = torch.isnan(x)
        filled = torch.where(missing, self.median, x)
        if self.missing_columns.numel() == 0:
            return filled, None
        return filled, missing.index_select(1, self.missing_columns).to(x.dtype)


class Scale(nn.Module):
    """``(x - center) / scale`` in float64, bounded to +-``INPUT_LIMIT``, then the smooth
    clipping when ``clip``.

    Identity when centre 0, scale 1 and no clipping (for inputs within float32's range).
    """

    center: torch.Tensor
    scale: torch.Tensor

    def __init__(self, n_numeric: int, *, clip: bool = False) -> None:
        super().__init__()
        self.clip = clip
        self.register_buffer("center", torch.zeros(n_numeric, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(n_numeric, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled (and clipped) columns, still float64."""
        return scaled_((x - self.center) / self.scale, clip=self.clip)


def scaled_(z: torch.Tensor, *, clip: bool) -> torch.Tensor:
    """``z`` (``(x - center) / scale``, maybe +-inf where it overflowed) bounded to
    +-:data:`INPUT_LIMIT`, then smoothly clipped when ``clip``; in place."""
    z.clamp_(-INPUT_LIMIT, INPUT_LIMIT)
    return soft_clip_(z) if clip else z


def soft_clip_(z: torch.Tensor) -> torch.Tensor:
    """``z / sqrt(1 + (z / 3)**2)`` in place: about ``z`` near 0, tending to +-3."""
    return z.div_(torch.sqrt(torch.square(z / 3.0).add_(1.0)))


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


class TargetStatistics(nn.Module):
    """Per-level inputs of many-level categoricals, looked up by code: for each column a
    table ``values.{j}`` of shape ``(vocabulary, TARGET_FEATURES)`` (the level's target
    rate and frequency in training, already scaled; see
    :mod:`steadyclf.schema.target_stats`)."""

    def __init__(self, sizes: Sequence[int]) -> None:
        super().__init__()
        self.sizes = [int(v) for v in sizes]
        self.values = nn.Module()
        for j, size in enumerate(self.sizes):
            table = torch.zeros((size, TARGET_FEATURES), dtype=torch.float64)
            self.values.register_buffer(str(j), table)

    def tables(self) -> list[torch.Tensor]:
        """The table of each column, in order."""
        return [getattr(self.values, str(j)) for j in range(len(self.sizes))]

    def forward(self, codes: torch.Tensor) -> list[torch.Tensor]:
        """One float32 block of ``TARGET_FEATURES`` columns per column of ``codes``."""
        return [
            table.index_select(0, codes[:, j]).to(torch.float32)
            for j, table in enumerate(self.tables())
        ]


class InputEncoder(nn.Module):
    """Raw columns -> float32 features, with every fitted statistic held in buffers."""

    def __init__(
        self,
        n_numeric: int,
        n_missing: int,
        vocab_sizes: Sequence[int],
        *,
        clip: bool = False,
        target_sizes: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.n_numeric = n_numeric
        self.impute = Impute(n_numeric, n_missing)
        self.normalize = Scale(n_numeric, clip=clip)
        self.categorical = OneHot(vocab_sizes)
        self.target = TargetStatistics(target_sizes)

    @property
    def n_features_out(self) -> int:
        """Width of the encoded feature matrix."""
        n_missing = int(self.impute.missing_columns.numel())
        n_target = TARGET_FEATURES * len(self.target.sizes)
        return self.n_numeric + n_missing + sum(self.categorical.sizes) + n_target

    @property
    def target_offset(self) -> int:
        """Column of the encoded features where the target statistics start (the last)."""
        return self.n_features_out - TARGET_FEATURES * len(self.target.sizes)

    @property
    def category_offsets(self) -> list[int]:
        """Column of the encoded features where each categorical's one-hot block starts."""
        offset = self.n_numeric + int(self.impute.missing_columns.numel())
        starts = []
        for size in self.categorical.sizes:
            starts.append(offset)
            offset += size
        return starts

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor | None = None) -> torch.Tensor:
        """Encode raw numeric (float64, NaN = missing) and categorical code columns."""
        values, indicators = self.impute(x_num.to(torch.float64))
        parts = [self.normalize(values).to(torch.float32)]
        if indicators is not None:
            parts.append(indicators.to(torch.float32))
        if self.categorical.sizes:
            if x_cat is None:
                raise ValueError("this model needs categorical codes")
            n_cat = len(self.categorical.sizes)
            parts.extend(self.categorical(x_cat[:, :n_cat]))
            if self.target.sizes:
                parts.extend(self.target(x_cat[:, n_cat:]))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    @torch.no_grad()
    def encode(
        self,
        x_num: NDArray[np.floating],
        x_cat: NDArray[np.int64],
        out: torch.Tensor,
        rows: NDArray[np.integer] | None = None,
        *,
        nan_free: bool = False,
    ) -> torch.Tensor:
        """Encode ``x_num[rows]``, ``x_cat[rows]`` into the float32 tensor ``out``, in chunks.

        Only ``out`` is allocated whole: the selected rows and the float64 intermediate
        values exist for one chunk at a time (``x_num`` may be a read-only view, float32
        or float64). Numeric inputs with nothing to impute take the encoder's arithmetic
        in place in one reused buffer (chunks holding a NaN still go through ``forward``).
        """
        n = x_num.shape[0] if rows is None else len(rows)
        device = out.device
        plain = not self.categorical.sizes and not self.impute.missing_columns.numel()
        buffer = np.empty((min(n, ENCODE_BATCH_ROWS), x_num.shape[1]), dtype=np.float64)
        values = torch.from_numpy(buffer).to(device)
        with intra_op_threads(1):  # elementwise work on cache-sized chunks
            for start in range(0, n, ENCODE_BATCH_ROWS):
                stop = min(start + ENCODE_BATCH_ROWS, n)
                chunk = slice(start, stop) if rows is None else rows[start:stop]
                target = out[start:stop]
                if plain:
                    block = values[: stop - start]
                    if device.type == "cpu":  # x_num may be read-only: copy, not share
                        np.copyto(buffer[: stop - start], x_num[chunk])
                    else:
                        block.copy_(torch.from_numpy(np.array(x_num[chunk], dtype=np.float64)))
                    if nan_free or not bool(torch.isnan(block).any()):
                        block.sub_(self.normalize.center).div_(self.normalize.scale)
                        target.copy_(scaled_(block, clip=self.normalize.clip))
                        continue
                num = torch.tensor(np.asarray(x_num[chunk], dtype=np.float64), device=device)
                cat = torch.tensor(np.asarray(x_cat[chunk], dtype=np.int64), device=device)
                target.copy_(self(num, cat))
        return out


class SteadyNet(nn.Module):
    """Encoder + one or more MLP members returning one logit per row.

    Parameters
    ----------
    arch : Architecture
        Inputs (numeric columns, how many get a missing indicator, the size of each
        categorical vocabulary with its 'missing' and 'unseen' codes) and layers.
    prior_logit : float
        Initial output bias (log odds of the base rate).
    generator : torch.Generator, optional
        Where the initial weights are drawn from (members one after the other).
    """

    def __init__(
        self,
        arch: Architecture,
        *,
        prior_logit: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.arch = arch
        self.encoder = InputEncoder(
            arch.n_numeric,
            arch.n_missing,
            arch.vocab_sizes,
            clip=arch.clip,
            target_sizes=arch.target_sizes,
        )
        self.bodies = nn.ModuleList(
            [
                make_body(
                    self.encoder.n_features_out,
                    arch.hidden,
                    arch.activation,
                    batchnorm=arch.batchnorm,
                    prior_logit=prior_logit,
                    generator=generator,
                    periodic=arch.periodic,
                )
                for _ in range(arch.n_members)
            ]
        )
        with torch.no_grad():
            # The 'missing' and 'unseen' codes start at zero: a code training never shows
            # keeps a zero weight (no gradient reaches it) instead of a random one.
            for body in self.bodies:
                weight = first_linear(body).weight
                for start in self.encoder.category_offsets:
                    weight[:, start : start + 2] = 0.0

    @property
    def body(self) -> nn.Sequential:
        """The first (with one member, the only) body."""
        body = self.bodies[0]
        assert isinstance(body, nn.Sequential)
        return body

    def trainable(self) -> nn.Module:
        """What a :class:`~steadyclf.train.trainer.Trainer` trains on encoded rows: the
        body, or with several members all of them together (:class:`Members`)."""
        return self.body if len(self.bodies) == 1 else Members(self.bodies)

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor | None = None) -> torch.Tensor:
        """Logits, shape ``(n,)``, in the dtype of the bodies' weights: with several
        members, the log odds of their mean probability.

        Without autograd on the CPU, rows are encoded and scored :data:`PREDICT_ROWS` at a
        time, so that the float64 temporaries of the encoder stay in the processor's caches.
        """
        cpu = x_num.device.type == "cpu"
        if cpu and not torch.is_grad_enabled() and x_num.shape[0] > PREDICT_ROWS:
            nums = x_num.split(PREDICT_ROWS)
            cats = [None] * len(nums) if x_cat is None else x_cat.split(PREDICT_ROWS)
            return torch.cat([self(a, b) for a, b in zip(nums, cats, strict=True)])
        features = self.encoder(x_num, x_cat)
        return self.logits(features.to(self.body[-1].weight.dtype))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The bodies' combined logit for encoded ``features``.

        Without autograd, members that read the same features (no BatchNorm, no periodic
        embeddings) run stacked, in chunks of :data:`PREDICT_ROWS` rows: their first
        layers as one matrix product, the later ones member by member on its columns
        (as :func:`steadyclf.nn.numpy_forward.members_logits`).
        """
        if len(self.bodies) == 1:
            return self.body(features).squeeze(-1)
        bodies = [list(body.children()) for body in self.bodies]
        layers = [[m for m in body if isinstance(m, nn.Linear)] for body in bodies]
        plain = all(isinstance(body[0], nn.Linear) for body in bodies)
        if torch.is_grad_enabled() or not plain:
            member = torch.stack([body(features).squeeze(-1) for body in self.bodies])
            return mean_probability_logit(member)
        first = torch.cat([member[0].weight for member in layers])
        bias = torch.cat([member[0].bias for member in layers])
        activation = self.body[1] if len(layers[0]) > 1 else None
        chunks = [
            mean_probability_logit(_members_logits(chunk, first, bias, layers, activation))
            for chunk in features.split(PREDICT_ROWS)
        ]
        return torch.cat(chunks) if chunks else features.new_empty(0)

    @torch.no_grad()
    def average_unseen_codes(self, code_counts: Sequence[Sequence[int]]) -> None:
        """Give each code that training never saw the weights of an average level.

        ``code_counts[j][c]`` is how often code ``c`` of categorical ``j`` occurred in the
        training rows. The first layer's weights of a code with no rows become the
        count-weighted mean of the other codes' weights, so a missing or unseen value at
        prediction time acts like an average level instead of a level of its own. (Not
        done behind a BatchNorm, whose statistics of such a column are degenerate.)
        """
        if isinstance(self.body[0], nn.BatchNorm1d):
            return
        for body in self.bodies:
            weight = first_linear(body).weight
            for start, counts in zip(self.encoder.category_offsets, code_counts, strict=True):
                count = torch.tensor(list(counts), dtype=weight.dtype, device=weight.device)
                block = weight[:, start : start + len(counts)]
                if count.sum() <= 0 or bool((count > 0).all()):
                    continue
                mean = (block * count).sum(dim=1, keepdim=True) / count.sum()
                block[:, count == 0] = mean


#: In-place forms of the activations that have one (for tensors nothing else holds).
_IN_PLACE = {"ReLU": torch.relu_, "Sigmoid": torch.sigmoid_, "Tanh": torch.tanh_}


class Members(nn.Module):
    """The bodies of a :class:`SteadyNet` trained together, on the same batches (larger
    data's ensemble): ``forward`` gives each member's logits, shape ``(n, members)``.

    The trainer minimises the sum of the members' losses, so each one's gradient is the
    one it would have alone (independent members, their own initial weights), and judges
    them together by the log odds of their mean probability. The parameters are the
    bodies' own (no copy): training this trains the network.
    """

    def __init__(self, bodies: nn.ModuleList) -> None:
        super().__init__()
        self.bodies = bodies

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([body(features).squeeze(-1) for body in self.bodies], dim=1)


def one_member(module: nn.Module) -> nn.Module:
    """Of :class:`Members`, the first body (they have the same layers and inputs: what is
    judged by a network's shape, its threads or its stalls, is judged on it); any other
    module as it is."""
    return module.bodies[0] if isinstance(module, Members) else module


def combined_logits(out: torch.Tensor) -> torch.Tensor:
    """One logit per row from a trained module's output: a body's ``(n, 1)`` as it is,
    :class:`Members`' ``(n, k)`` as the log odds of their mean probability."""
    if out.dim() == 2 and out.shape[1] > 1:
        return mean_probability_logit(out.t())
    return out.reshape(-1)


def _members_logits(
    features: torch.Tensor,
    first: torch.Tensor,
    bias: torch.Tensor,
    layers: Sequence[Sequence[nn.Linear]],
    activation: nn.Module | None,
) -> torch.Tensor:
    """Logits ``(members, n)`` of plain members whose first layers are stacked in
    ``first`` and ``bias`` (see :meth:`SteadyNet.logits`)."""
    h = nn.functional.linear(features, first, bias)
    members, depths = len(layers), len(layers[0])
    for depth in range(1, depths):
        assert activation is not None
        h = _IN_PLACE.get(type(activation).__name__, activation)(h)  # h is a fresh tensor
        if depth == depths - 1:  # the logits: one product with the block-diagonal weights
            weight = torch.block_diag(*[m[depth].weight for m in layers])
            bias = torch.cat([m[depth].bias for m in layers])
            return nn.functional.linear(h, weight, bias).T
        outs = [
            nn.functional.linear(p, m[depth].weight, m[depth].bias)
            for p, m in zip(h.chunk(members, dim=1), layers, strict=True)
        ]
        h = torch.cat(outs, dim=1)
    return h.T


def mean_probability_logit(logits: torch.Tensor) -> torch.Tensor:
    """The log odds of the mean of ``sigmoid(logits)`` over the first dimension (members).

    Computed in log space (log-sum-exp of log-sigmoids), so that members certain of the
    answer (logits of +-40) still give a finite, exact result. Without autograd, as
    :func:`steadyclf.nn.numpy_forward.mean_probability_logit` does, in float64: ``log(sum
    p) - log(sum q)``, ``p = sigmoid(l)``, ``q = exp(-l) p`` (one ``exp`` a value), for
    logits within +-``DIRECT_LOGIT_LIMIT``.
    """
    if not logits.requires_grad and logits.numel():
        wide = logits.to(torch.float64)
        if bool(wide.abs().max() <= DIRECT_LOGIT_LIMIT):
            e = torch.exp(-wide)
            p = (e + 1.0).reciprocal_()
            e.mul_(p)
            return (p.sum(dim=0).log_() - e.sum(dim=0).log_()).to(logits.dtype)
    n = math.log(logits.shape[0])
    log_p = torch.logsumexp(nn.functional.logsigmoid(logits), dim=0) - n
    log_q = torch.logsumexp(nn.functional.logsigmoid(-logits), dim=0) - n
    return log_p - log_q


def numpy_weights(module: nn.Module) -> dict[str, NDArray[np.generic]]:
    """The module's tensors as NumPy arrays, by ``state_dict`` name.

    On the CPU they share the tensors' memory (no copy; changes to the module show in
    them); tensors on another device are copied.
    """
    return {
        name: (tensor if tensor.device.type == "cpu" else tensor.cpu()).numpy()
        for name, tensor in module.state_dict().items()
    }


def module_from_weights(
    arch: Architecture, weights: Mapping[str, NDArray[np.generic]]
) -> SteadyNet:
    """A float64 :class:`SteadyNet` in eval mode holding a copy of ``weights``."""
    # The initial weights are overwritten: draw them from a throwaway generator, not
    # from torch's global one (building a module must not move the caller's seed).
    module = SteadyNet(arch, generator=torch.Generator().manual_seed(0)).double()
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
    return module.eval()
