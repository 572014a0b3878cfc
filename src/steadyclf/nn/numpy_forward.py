"""The network's forward pass in NumPy: the torch module's float64 arithmetic, without torch.

Prediction (``predict_proba`` of a fitted or loaded estimator, ``steadyclf predict``)
runs here, so loading a model and predicting import neither torch nor matplotlib. The
input is what :class:`~steadyclf.schema.encoder.TabularEncoder` produces (``x_num``
float64 with NaN for missing, ``x_cat`` int64 codes), the output the network's logit.

Each stage of :class:`~steadyclf.nn.modules.SteadyNet` is one function below, reading its
tensors by the names of :func:`~steadyclf.nn.spec.tensor_layout` from the weights dict of
a saved model (:class:`~steadyclf.persistence.ModelState`):

``impute``       the training median fills missing values; 0/1 indicators of what was
                 missing for the columns listed in ``encoder.impute.missing_columns``;
``standardize``  ``(x - center) / scale`` in float64, bounded to +-``INPUT_LIMIT``
                 (an overflow to +-inf included), then (``arch.clip``) the smooth
                 clipping ``z / sqrt(1 + (z / 3)**2)``, then rounded to float32 (the
                 torch encoder hands float32 features to the body);
``one_hot``      one block per categorical (codes 0 = missing, 1 = unseen, 2.. levels);
``target_statistics`` per categorical with many levels, the rows of its table (target
                 rate and frequency of the level) picked by a second code column;
``periodic``     the periodic embeddings of some numeric inputs, appended (PLR);
``batchnorm``    the eval-mode ``BatchNorm1d`` (running statistics);
``linear``, ``activate`` the body's layers, ending in one logit;
``mean_probability_logit`` the members' logits combined (the log odds of their mean
                 probability), for a model of several bodies (``arch.n_members``).

Members of a plain layout (no batchnorm, no periodic embeddings) read the same features:
their first layers run as one matrix product (:class:`StackedMembers`,
:func:`members_logits`), the later ones member by member on column slices. Rows go in
chunks of :data:`PREDICT_BATCH_ROWS`; on a machine
with several cores the chunks are shared between threads (:func:`prediction_threads`):
NumPy's matrix products and ufuncs release the GIL, and one chunk's product is too small
for the BLAS to split profitably.

A new stage means one function here, one module in :mod:`steadyclf.nn.modules` and one
builder in :mod:`steadyclf.export.onnx_graph`; ``tests/test_numpy_forward.py`` checks
the three agree on a list of architectures. The numbers equal the module's to a few ulps:
the same operations in the same order, with other BLAS kernels (summation orders).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .spec import (
    ACTIVATIONS,
    DIRECT_LOGIT_LIMIT,
    INPUT_LIMIT,
    PERIODIC_LIMIT,
    SINGLE_THREAD_WORK,
    Architecture,
)

__all__ = [
    "ACTIVATION_FUNCTIONS",
    "BATCHNORM_EPS",
    "PREDICT_BATCH_ROWS",
    "STACK_MIN_ROWS",
    "NumpyNetwork",
    "StackedMembers",
    "activate",
    "batchnorm",
    "batchnorm_terms",
    "blas_thread_count",
    "blas_threads",
    "body",
    "body_layers",
    "encode",
    "impute",
    "linear",
    "mean_probability_logit",
    "members_logits",
    "one_hot",
    "periodic",
    "prediction_threads",
    "soft_clip",
    "standardize",
    "target_statistics",
]

#: Rows per forward pass: a chunk's activations stay in the CPU cache.
PREDICT_BATCH_ROWS = 1 << 11
#: Fewest rows predicted with the members stacked (:class:`StackedMembers`): below, the
#: copy of their first layers costs more than the one product saves.
STACK_MIN_ROWS = 1 << 8
#: Multiply-adds per chunk below which OpenBLAS computes on one thread anyway.
MIN_THREADED_WORK = 1 << 18
#: ``torch.nn.BatchNorm1d``'s default ``eps``, which the module uses.
BATCHNORM_EPS = 1e-5

Weights = Mapping[str, NDArray[Any]]


# -- threads ---------------------------------------------------------------------------------
_BLAS: list[Any] = []  # the threadpoolctl controller, made on first use


@contextmanager
def blas_threads(work: int) -> Iterator[None]:
    """One BLAS thread for a chunk of ``work`` multiply-adds below ``SINGLE_THREAD_WORK``.

    The rule of :mod:`steadyclf.nn.threads` for torch, for NumPy's BLAS: on small matrix
    products a second thread costs more in synchronisation than it saves, and far more
    when the other cores are busy (measured on a shared 2-core machine, 20 -> 64 -> 1
    ReLU: 0.4 to 0.7 million rows/s on two threads, 2 to 4 million on one). Products
    too small for the BLAS to thread are left alone (a one-row prediction pays nothing).
    """
    if work >= SINGLE_THREAD_WORK or work < MIN_THREADED_WORK:
        yield
        return
    with _one_blas_thread():
        yield


def _controller() -> Any:
    if not _BLAS:
        from threadpoolctl import ThreadpoolController

        _BLAS.append(ThreadpoolController())
    return _BLAS[0]


# The BLAS thread limit is process-wide: predictions running at once in several threads
# (a server) share one limit, set by the first to need it and restored by the last, so
# that no caller restores another's limit as the original. While it holds, the BLAS's
# own count is the one it replaced.
_LIMIT_LOCK = threading.Lock()
_LIMIT: dict[str, Any] = {"depth": 0, "limiter": None, "threads": None}


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    with _LIMIT_LOCK:
        if _LIMIT["depth"] == 0:
            _LIMIT["threads"] = _blas_threads_now()
            _LIMIT["limiter"] = _controller().limit(limits=1, user_api="blas")
        _LIMIT["depth"] += 1
    try:
        yield
    finally:
        with _LIMIT_LOCK:
            _LIMIT["depth"] -= 1
            if _LIMIT["depth"] == 0:
                _LIMIT["limiter"].restore_original_limits()
                _LIMIT["limiter"] = _LIMIT["threads"] = None


def _blas_threads_now() -> int:
    counts = [lib["num_threads"] for lib in _controller().info() if lib["user_api"] == "blas"]
    return max(counts, default=1)


def blas_thread_count() -> int:
    """The threads the BLAS would use: its own setting, not steadyclf's limit of the moment
    (:func:`blas_threads`)."""
    with _LIMIT_LOCK:
        if _LIMIT["depth"]:
            return int(_LIMIT["threads"])
    return _blas_threads_now()


def prediction_threads(chunks: int, work: int) -> int:
    """Threads to share ``chunks`` chunks of ``work`` multiply-adds each between.

    One unless there are two chunks or more and a chunk is small enough to compute on one
    BLAS thread (below ``SINGLE_THREAD_WORK``: larger ones the BLAS splits itself); then
    as many as the BLAS would use (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` or a
    ``threadpoolctl`` limit bound it), at most the cores this process may run on.
    """
    if chunks < 2 or work >= SINGLE_THREAD_WORK:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(chunks, blas_thread_count(), cores or 1))


# -- activations (keyed by the torch module of nn.spec.ACTIVATIONS) ------------------------------
def _relu(h: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.maximum(h, 0.0, out=h)


def _sigmoid(h: NDArray[np.float64]) -> NDArray[np.float64]:
    # 1 / (1 + exp(-h)) as torch computes it; exp overflows to inf for h < -709: 1/inf = 0.
    with np.errstate(over="ignore"):
        np.negative(h, out=h)
        np.exp(h, out=h)
    h += 1.0
    return np.reciprocal(h, out=h)


def _tanh(h: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.tanh(h, out=h)


def _gelu(h: NDArray[np.float64]) -> NDArray[np.float64]:
    # The exact GELU (nn.GELU(approximate='none')): x * 0.5 * (1 + erf(x / sqrt(2))).
    # scipy only for models that use it: importing scipy.special costs about 0.5 s.
    from scipy.special import erf

    return h * 0.5 * (1.0 + erf(h * np.sqrt(0.5)))


#: NumPy activations by the ``torch.nn`` class name in :data:`~steadyclf.nn.spec.ACTIVATIONS`
#: (in place where they can be).
ACTIVATION_FUNCTIONS: dict[str, Callable[[NDArray[np.float64]], NDArray[np.float64]]] = {
    "ReLU": _relu,
    "Sigmoid": _sigmoid,
    "Tanh": _tanh,
    "GELU": _gelu,
}


# -- the stages ------------------------------------------------------------------------------
def impute(
    weights: Weights, values: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
    """Missing values set to the training median (in place), and the missing indicators.

    Returns ``values`` and the 0/1 indicators of the columns that have one (``None``
    when no column has one).
    """
    median, columns = weights["encoder.impute.median"], weights["encoder.impute.missing_columns"]
    # A sum is NaN when a term is: one pass, no temporary, for the usual gap-free chunk
    # (+inf and -inf terms make a NaN too, without warning: isnan then finds nothing).
    with np.errstate(invalid="ignore", over="ignore"):
        total = values.sum()
    missing = np.isnan(values) if np.isnan(total) else None
    if missing is not None:
        np.copyto(values, np.broadcast_to(median, values.shape), where=missing)
    if columns.size == 0:
        return values, None
    if missing is None:
        return values, np.zeros((values.shape[0], columns.size), dtype=np.float64)
    return values, missing[:, columns].astype(np.float64)


def standardize(
    weights: Weights, values: NDArray[np.float64], clip: bool = False
) -> NDArray[np.float64]:
    """``(values - center) / scale`` in float64, bounded to +-:data:`INPUT_LIMIT`, then
    :func:`soft_clip` when ``clip``; in place.

    The subtraction and the division may overflow to +-inf (IEEE arithmetic, no warning):
    the bound turns that into +-INPUT_LIMIT, as the torch module does.
    """
    with np.errstate(over="ignore"):
        values -= weights["encoder.normalize.center"]
        values /= weights["encoder.normalize.scale"]
    np.clip(values, -INPUT_LIMIT, INPUT_LIMIT, out=values)
    return soft_clip(values) if clip else values


def soft_clip(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """``z / sqrt(1 + (z / 3)**2)`` in place, as :func:`steadyclf.nn.modules.soft_clip_`
    (the same operations in the same order, in one temporary)."""
    t = np.divide(z, 3.0)
    np.square(t, out=t)
    t += 1.0
    np.sqrt(t, out=t)
    z /= t
    return z


def one_hot(vocab_sizes: tuple[int, ...], x_cat: NDArray[np.int64]) -> NDArray[np.float64]:
    """One block of ``vocab_sizes[j]`` columns per categorical, side by side."""
    out = np.zeros((x_cat.shape[0], sum(vocab_sizes)), dtype=np.float64)
    rows = np.arange(x_cat.shape[0])
    offset = 0
    for j, size in enumerate(vocab_sizes):
        codes = x_cat[:, j]
        if codes.size and (int(codes.min()) < 0 or int(codes.max()) >= size):
            # torch's one_hot refuses such codes too: they cannot come from the encoder.
            raise ValueError(f"category code outside [0, {size}) in categorical input {j}")
        out[rows, offset + codes] = 1.0
        offset += size
    return out


def target_statistics(
    weights: Weights, codes: NDArray[np.int64], out: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The table rows of each code column side by side (``TARGET_FEATURES`` each), in
    ``out``, rounded to float32 as the torch encoder hands them to the body."""
    width = 0
    for j in range(codes.shape[1]):
        table = weights[f"encoder.target.values.{j}"]
        column = codes[:, j]
        if column.size and (int(column.min()) < 0 or int(column.max()) >= table.shape[0]):
            # torch's index_select refuses such codes too (np.take would wrap negative ones).
            raise ValueError(f"category code outside [0, {table.shape[0]}) in target input {j}")
        picked = np.take(table, codes[:, j], axis=0).astype(np.float32)
        out[:, width : width + table.shape[1]] = picked
        width += table.shape[1]
    return out


def encode(
    arch: Architecture,
    weights: Weights,
    x_num: NDArray[np.floating],
    x_cat: NDArray[np.int64],
    out: NDArray[np.float64] | None = None,
    work: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """The body's input: imputed, standardised values (through float32), indicators, one-hot.

    Written into ``out`` (shape ``(n, arch.n_features)``) when given; ``x_num`` and
    ``x_cat`` are only read (they may be the caller's data). ``work``: a contiguous
    float64 buffer of at least ``n`` rows and ``arch.n_numeric`` columns to compute the
    numeric columns in (scaling them in a strided view of ``out`` took twice as long).
    """
    n, k = x_num.shape[0], arch.n_numeric
    features = np.empty((n, arch.n_features)) if out is None else out
    values = np.empty((n, k)) if work is None else work[:n, :k]
    np.copyto(values, x_num)
    values, indicators = impute(weights, values)
    # The torch encoder hands float32 features to the body, which casts them to float64.
    np.copyto(features[:, :k], standardize(weights, values, arch.clip).astype(np.float32))
    width = k
    if indicators is not None:
        features[:, width : width + indicators.shape[1]] = indicators
        width += indicators.shape[1]
    if arch.vocab_sizes:
        n_cat = len(arch.vocab_sizes)
        hot = one_hot(arch.vocab_sizes, x_cat[:, :n_cat])
        features[:, width : width + hot.shape[1]] = hot
        width += hot.shape[1]
        if arch.target_sizes:
            target_statistics(weights, x_cat[:, n_cat:], features[:, width:])
    return features


def batchnorm_terms(
    weights: Weights, prefix: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``alpha, beta`` of an eval-mode ``BatchNorm1d``: ``h * alpha + beta``.

    Computed as torch's CPU kernel does (``alpha = weight / sqrt(var + eps)``, via the
    inverse standard deviation), so the rounding is the same.
    """
    invstd = 1.0 / np.sqrt(weights[f"{prefix}.running_var"] + BATCHNORM_EPS)
    alpha = invstd * weights[f"{prefix}.weight"]
    beta = weights[f"{prefix}.bias"] - weights[f"{prefix}.running_mean"] * alpha
    return alpha, beta


def batchnorm(weights: Weights, prefix: str, h: NDArray[np.float64]) -> NDArray[np.float64]:
    """Eval-mode ``BatchNorm1d`` (running statistics), in place."""
    alpha, beta = batchnorm_terms(weights, prefix)
    h *= alpha
    h += beta
    return h


def linear(
    weights: Weights, prefix: str, h: NDArray[np.float64], out: NDArray[np.float64] | None = None
) -> NDArray[np.float64]:
    """``h @ W.T + b``, into ``out`` when given."""
    out = np.matmul(h, weights[f"{prefix}.weight"].T, out=out)
    out += weights[f"{prefix}.bias"]
    return out


def periodic(
    weights: Weights, prefix: str, arch: Architecture, h: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The periodic embeddings of ``arch.periodic`` appended to ``h`` (a new array):
    :class:`~steadyclf.nn.modules.PeriodicEmbedding`."""
    frequency, weight = weights[f"{prefix}.frequency"], weights[f"{prefix}.weight"]
    k = frequency.shape[1]
    x = np.ascontiguousarray(h[:, list(arch.periodic)].T)  # (m, n)
    np.clip(x, -PERIODIC_LIMIT, PERIODIC_LIMIT, out=x)  # as the module: see PERIODIC_LIMIT
    turns = x[:, :, None] * frequency[:, None, :]  # (m, n, k): the angles over 2 pi
    # The angles reduced to [-pi, pi] in float64, then cosines and sines in float32: NumPy's
    # float64 ones are scalar libm calls (12 ns a value here), its float32 ones vectorised
    # (0.5 ns): 28,000 -> 53,000 rows/s for a model of 5 members x 30 embedded columns. On
    # reduced angles float32 is within 3e-7 of float64, finer than the float32 the network
    # trained in, and each value is computed on its own, so batching still changes nothing.
    # The cosines and the sines meet their halves of the weights apart (a concatenation
    # along a short axis costs more than both products).
    turns -= np.rint(turns)
    turns *= 2 * np.pi
    angle = turns.astype(np.float32)
    e = np.matmul(np.cos(angle).astype(np.float64), weight[:, :k])  # (m, n, outputs)
    e += np.matmul(np.sin(angle).astype(np.float64), weight[:, k:])
    e += weights[f"{prefix}.bias"][:, None, :]
    np.maximum(e, 0.0, out=e)
    return np.concatenate([h, e.transpose(1, 0, 2).reshape(h.shape[0], -1)], axis=1)


def activate(name: str, h: NDArray[np.float64]) -> NDArray[np.float64]:
    """The hidden activation ``name`` (a key of :data:`ACTIVATIONS`), in place if it can."""
    return ACTIVATION_FUNCTIONS[ACTIVATIONS[name].module](h)


def body_layers(arch: Architecture, member: int = 0) -> list[tuple[str, str]]:
    """``(kind, tensor prefix)`` of each layer of body ``member``, in order.

    Kinds: ``periodic``, ``batchnorm``, ``linear``, ``activation`` (prefix: the
    activation's name). The prefixes follow the module's ``nn.Sequential`` numbering
    (``bodies.0.0``...).
    """
    layers: list[tuple[str, str]] = []
    index = 0
    if arch.periodic:
        layers.append(("periodic", f"bodies.{member}.0"))
        index = 1
    if arch.batchnorm:
        layers.append(("batchnorm", f"bodies.{member}.0"))
        index = 1
    for _ in arch.hidden:
        layers += [("linear", f"bodies.{member}.{index}"), ("activation", arch.activation)]
        index += 2
    layers.append(("linear", f"bodies.{member}.{index}"))
    return layers


def body(
    arch: Architecture,
    weights: Weights,
    features: NDArray[np.float64],
    buffers: list[NDArray[np.float64]] | None = None,
    member: int = 0,
) -> NDArray[np.float64]:
    """Logits of body ``member`` for the encoded features (which a batchnorm layer
    overwrites), shape ``(n,)``.

    ``buffers``: one array per linear layer to write its output into (reused across
    chunks, so a loop over chunks allocates little).
    """
    h = features
    n_linear = 0
    for kind, prefix in body_layers(arch, member):
        if kind == "periodic":
            h = periodic(weights, prefix, arch, h)
        elif kind == "batchnorm":
            h = batchnorm(weights, prefix, h)
        elif kind == "linear":
            out = None if buffers is None else buffers[n_linear][: h.shape[0]]
            h = linear(weights, prefix, h, out)
            n_linear += 1
        else:
            h = activate(prefix, h)
    return h[:, 0]


@dataclass(frozen=True)
class StackedMembers:
    """The linear layers of members that read the same features (:func:`stackable`): the
    first layers side by side with their biases as a last row (``first``, shape ``(inputs
    + 1, members x width)``: one product with the features and a column of ones computes
    them all, biases included), the later layers per member (``W.T, b``)."""

    first: NDArray[np.float64]
    later: list[list[tuple[NDArray[np.float64], NDArray[np.float64]]]]

    @classmethod
    def of(cls, arch: Architecture, weights: Weights) -> StackedMembers:
        prefixes = [
            [p for kind, p in body_layers(arch, m) if kind == "linear"]
            for m in range(arch.n_members)
        ]
        first = [member[0] for member in prefixes]
        weight = np.concatenate([weights[f"{p}.weight"] for p in first], axis=0).T
        bias = np.concatenate([weights[f"{p}.bias"] for p in first])
        return cls(
            np.vstack([weight, bias[None, :]]),
            [
                [(weights[f"{m[d]}.weight"].T, weights[f"{m[d]}.bias"]) for m in prefixes]
                for d in range(1, len(prefixes[0]))
            ],
        )


def stackable(arch: Architecture) -> bool:
    """Whether the members' first layers can run as one product (same input features)."""
    return arch.n_members > 1 and not arch.batchnorm and not arch.periodic


def members_logits(
    arch: Architecture,
    stacked: StackedMembers,
    features: NDArray[np.float64],
    buffers: list[NDArray[np.float64]],
    logits: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Every member's logit for the encoded ``features`` followed by a column of ones,
    written into ``logits`` (shape ``(members, rows)``) and returned, shape ``(members, n)``.

    ``buffers``: one array per hidden layer, ``members x`` its width wide. The later
    layers run member by member, each on its columns of the layer before (a strided
    view: no copy).
    """
    m, members = features.shape[0], arch.n_members
    if not stacked.later:  # no hidden layer: the first layer gives the logits
        return np.matmul(stacked.first.T, features.T, out=logits[:, :m])
    h = np.matmul(features, stacked.first, out=buffers[0][:m])
    for depth, layer in enumerate(stacked.later, start=1):
        h = activate(arch.activation, h)
        last = depth == len(stacked.later)
        out = None if last else buffers[depth][:m]
        width_in = h.shape[1] // members
        width_out = 1 if out is None else out.shape[1] // members
        for k, (weight_t, bias) in enumerate(layer):
            rows_in = h[:, k * width_in : (k + 1) * width_in]
            if out is None:  # the logits: one contiguous row per member
                np.matmul(rows_in, weight_t[:, 0], out=logits[k, :m])
                logits[k, :m] += bias
                continue
            part = out[:, k * width_out : (k + 1) * width_out]
            np.matmul(rows_in, weight_t, out=part)
            part += bias
        if out is not None:
            h = out
    return logits[:, :m]


def mean_probability_logit(logits: NDArray[np.float64]) -> NDArray[np.float64]:
    """The log odds of the mean of ``sigmoid(logits)`` over the first axis (members).

    As :func:`steadyclf.nn.modules.mean_probability_logit`, exact for members certain of
    the answer (logits of +-40) too: ``log(sum p) - log(sum q)`` with ``p = sigmoid(l)``
    and ``q = sigmoid(-l) = exp(-l) p`` each summed to full relative precision (one
    ``exp`` a value, where the log-space form takes four transcendental functions). Logits
    beyond +-:data:`DIRECT_LOGIT_LIMIT` (or NaN) would under- or overflow there: such
    chunks take the log-space form.
    """
    if logits.size and not np.abs(logits).max() <= DIRECT_LOGIT_LIMIT:
        n = np.log(logits.shape[0])
        log_p = np.logaddexp.reduce(-np.logaddexp(0.0, -logits), axis=0) - n
        log_q = np.logaddexp.reduce(-np.logaddexp(0.0, logits), axis=0) - n
        return log_p - log_q
    e = np.negative(logits)
    np.exp(e, out=e)
    p = e + 1.0
    np.reciprocal(p, out=p)
    e *= p
    return np.log(p.sum(axis=0)) - np.log(e.sum(axis=0))


# -- the network -----------------------------------------------------------------------------
@dataclass(frozen=True)
class NumpyNetwork:
    """A fitted network for prediction: its layout and its float64 tensors.

    Parameters
    ----------
    arch : Architecture
    weights : mapping of str to ndarray
        Every tensor of :func:`~steadyclf.nn.spec.tensor_layout` (a saved model's weights,
        or views of a fitted torch module's tensors: then changes to the module show here).

    Examples
    --------
    >>> import numpy as np
    >>> from steadyclf.nn.spec import Architecture, tensor_layout
    >>> arch = Architecture(2, 0, (), (3,), "relu")
    >>> weights = {k: np.zeros(s, dtype=d) for k, (s, d) in tensor_layout(arch).items()}
    >>> weights["encoder.normalize.scale"][:] = 1.0
    >>> NumpyNetwork(arch, weights).logits(np.ones((4, 2)), np.empty((4, 0), np.int64))
    array([0., 0., 0., 0.])
    """

    arch: Architecture
    weights: Mapping[str, NDArray[Any]]

    def logits(self, x_num: NDArray[np.floating], x_cat: NDArray[np.int64]) -> NDArray[np.float64]:
        """The logit of every row, in chunks of :data:`PREDICT_BATCH_ROWS` rows, shared between
        :func:`prediction_threads` threads (the same chunks whatever the threads)."""
        n = x_num.shape[0]
        out = np.empty(n, dtype=np.float64)
        rows = max(1, min(n, PREDICT_BATCH_ROWS))
        starts = list(range(0, n, rows))
        work = rows * self.n_weights
        threads = prediction_threads(len(starts), work)
        # Stacking copies the members' first layers: worth it over enough rows only (a
        # one-row prediction of five members x 700 inputs took 13 times as long stacked).
        stacked = StackedMembers.of(self.arch, self.weights) if self._stacks(n) else None
        # IEEE semantics without warnings, as torch computes: values far beyond the
        # training range may overflow to inf (the caller is warned about them apart).
        with blas_threads(work if threads == 1 else MIN_THREADED_WORK):
            if threads == 1:
                self._chunks(x_num, x_cat, out, starts, rows, stacked)
                return out
            cut = np.linspace(0, len(starts), threads + 1).round().astype(int)
            with ThreadPoolExecutor(threads, thread_name_prefix="steadyclf-predict") as pool:
                parts = [
                    pool.submit(self._chunks, x_num, x_cat, out, starts[a:b], rows, stacked)
                    for a, b in itertools.pairwise(cut.tolist())
                ]
                for part in parts:
                    part.result()
        return out

    def _chunks(
        self,
        x_num: NDArray[np.floating],
        x_cat: NDArray[np.int64],
        out: NDArray[np.float64],
        starts: list[int],
        rows: int,
        stacked: StackedMembers | None,
    ) -> None:
        """Logits of the chunks starting at ``starts`` into ``out`` (one thread; ``stacked``:
        the members' layers stacked, or ``None`` to run them one by one)."""
        arch, weights, n = self.arch, self.weights, x_num.shape[0]
        members = arch.n_members
        # Buffers reused from chunk to chunk: no fresh pages to fault in per chunk.
        # Stacked members: a last column of ones, for their first layers' biases.
        extended = np.ones((rows, arch.n_features + (stacked is not None)), dtype=np.float64)
        features = extended[:, : arch.n_features]
        work = np.empty((rows, arch.n_numeric))
        widths = (*arch.hidden, 1) if stacked is None else [members * w for w in arch.hidden]
        buffers = [np.empty((rows, size)) for size in widths]
        logits = np.empty((members, rows), dtype=np.float64)
        # A batchnorm layer works in place: each member then gets its own copy.
        scratch = np.empty_like(features) if members > 1 and arch.batchnorm else None
        with np.errstate(over="ignore", invalid="ignore"):  # per thread: see logits
            for start in starts:
                stop = min(start + rows, n)
                m = stop - start
                encode(arch, weights, x_num[start:stop], x_cat[start:stop], features[:m], work)
                if members == 1:
                    out[start:stop] = body(arch, weights, features[:m], buffers)
                    continue
                if stacked is not None:
                    every = members_logits(arch, stacked, extended[:m], buffers, logits)
                    out[start:stop] = mean_probability_logit(every)
                    continue
                for k in range(members):
                    h = features[:m]
                    if scratch is not None:
                        h = scratch[:m]
                        np.copyto(h, features[:m])
                    logits[k, :m] = body(arch, weights, h, buffers, member=k)
                out[start:stop] = mean_probability_logit(logits[:, :m])

    def _stacks(self, n: int) -> bool:
        """Whether ``n`` rows are predicted with the members stacked."""
        return stackable(self.arch) and n >= STACK_MIN_ROWS

    @property
    def n_weights(self) -> int:
        """Weights of the linear layers (multiply-adds per row), over all members."""
        sizes = [self.arch.n_body_inputs, *self.arch.hidden, 1]
        return self.arch.n_members * sum(a * b for a, b in itertools.pairwise(sizes))
