"""Every default that depends on the data, decided in one place, the same for every source.

The estimator's parameters say what the user fixed; ``'auto'`` (and ``None``) leave a
choice to the data. :func:`resolve` makes those choices from the row and label counts
of the summary (:mod:`steadyclf.schema.summary`; with row weights, the sums of weights
decide how the classes weigh, the rows how they are cut), whether the rows were in memory
or read in passes from files, on one process or several, so the same data always trains with
the same batch size, learning rate, hold-out, weight decay and stopping rule. The
resolved :class:`Plan` is kept as fitted attributes and in ``model.json``.

The parameters themselves (allowed values, defaults) are in :mod:`steadyclf.params`.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .exceptions import ParameterError
from .nn.spec import Architecture

if TYPE_CHECKING:  # the schema imports pandas: the command line's help must not
    from .schema.roles import ColumnInfo

__all__ = [
    "CALIBRATIONS",
    "DEFAULT_VALIDATION_FRACTION",
    "EMBEDDED_AUTO_MAX_VALUES",
    "EMBEDDED_MIN_VALUES",
    "FULL_BATCH_MAX_ROWS",
    "INTEGER_CODES",
    "MAX_PARAMETERS",
    "NUMERIC_EMBEDDINGS",
    "OPTIMIZERS",
    "SCHEDULES",
    "THRESHOLD_METRICS",
    "Plan",
    "batch_size_for",
    "check_interval",
    "check_model_size",
    "class_weights",
    "code_readings",
    "default_lr",
    "embedded_inputs",
    "holdout_candidate",
    "integer_codes_for",
    "loss_totals",
    "numeric_embeddings_for",
    "positive_share",
    "resolve",
]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "step", "cosine", "onecycle", "plateau")
THRESHOLD_METRICS = ("f1", "balanced_accuracy")
DEVICES = ("auto", "cpu", "cuda")
#: How probabilities are calibrated on held-out rows (:mod:`steadyclf.calibration`).
CALIBRATIONS = ("auto", "none", "temperature", "platt")
#: How numeric inputs enter the network (``steadyclf.nn.modules.PeriodicEmbedding``):
#: ``'auto'`` tries both where members are cross-fitted (small data) and keeps the one of
#: lower out-of-fold log loss; on held-out data up to :data:`RACE_EMBEDDINGS_MAX_ROWS`
#: training rows both race; elsewhere it is ``'none'`` (:func:`numeric_embeddings_for`).
NUMERIC_EMBEDDINGS = ("auto", "none", "periodic")
#: Numeric inputs with at least this many distinct training values (continuous ones) get
#: periodic embeddings; coded columns (flags, counts, ratings) go in as they are. Fixed
#: before measuring: on the development tables, embedding every column cost on the small
#: noisy ones (benchmarks/variants.py; results/variants-plr.md). The summary counts up to
#: ``steadyclf.schema.summary.MAX_COUNTED_VALUES``, at least this many (tested).
EMBEDDED_MIN_VALUES = 16
#: ``numeric_embedding='auto'`` tries periodic embeddings only while training rows x
#: continuous inputs stay within this many values (the embedded values of an epoch); above,
#: the fit is plain (``'periodic'`` still embeds them all). An embedded value costs several
#: times a plain input in every step and prediction (8 frequencies, their cosines and
#: sines, 4 more first-layer inputs): at 2,000 rows x 500 continuous columns (1,000,000,
#: within) the default fit took 35 s against 1.7 s without embeddings (and scored 0.836
#: test ROC AUC against 0.813 on that synthetic table); at 2,000 x 2,000 it took 369 s,
#: nearly all of it the embedded members, which lost (benchmarks/README.md, wide tables).
#: The development tables reach at most 320,000 (movielens_ids: 80,000 rows x 4), so this
#: limit changes none of their results.
EMBEDDED_AUTO_MAX_VALUES = 1 << 20
#: With held-out rows, ``numeric_embedding='auto'`` races the networks with and without
#: periodic embeddings (:mod:`steadyclf.train.race`) up to this many training rows, and
#: keeps the plain network above. Embedded networks train through autograd, not the fused
#: step, and predict ~10x slower: on the 800,000-row speed benchmark the race kept them
#: (test AUC 0.9949 against 0.9948) and the fit took 250 s against LightGBM's 19 s
#: (``make bench``), while on the four development tables between 8,192 and 2**18
#: training rows the race added ROC AUC at two to three times a plain fit's seconds
#: (benchmarks/README.md: the limit sits between those tables and the speed benchmark).
#: 0 turns the race of embeddings off; the race still chooses the reading of integer
#: codes (``integer_codes``).
RACE_EMBEDDINGS_MAX_ROWS = 1 << 18
#: Whether numeric columns of integer codes (an hour, a month, an id) are read as
#: categories too (``steadyclf.schema.roles.code_candidates`` says which may be):
#: ``'category'`` reads every candidate so; ``'none'`` none; ``'auto'`` tries both readings
#: and keeps the one of lower out-of-fold (small data) or validation loss (larger data;
#: :func:`integer_codes_for`).
INTEGER_CODES = ("auto", "none", "category")

#: Up to this many training rows, the default is full-batch training: each epoch is a
#: single step, which is both the fastest and the most stable choice on small tables.
FULL_BATCH_MAX_ROWS = 8192
#: Mini-batch size used by default above :data:`FULL_BATCH_MAX_ROWS`. A step costs about
#: the same from 256 to 1024 rows (fixed overhead), so 1024 rows with twice the rate of
#: 512 reaches a given accuracy in about half the time (benchmarks/speed.py).
DEFAULT_BATCH_SIZE = 1024
#: From this many training rows the default batch is :data:`LARGE_BATCH_SIZE`: an epoch
#: still has 64 steps or more, each costing less per row (800,000 x 20: 0.38 s an epoch
#: instead of 0.52 s, the same test AUC after the first epoch and at the end).
LARGE_BATCH_MIN_ROWS = 1 << 17
LARGE_BATCH_SIZE = 2048
#: Default Adam learning rates: full-batch steps are few and exact, so they can be larger;
#: the mini-batch rate is DEFAULT_LR_MINI_BATCH at DEFAULT_BATCH_SIZE rows and grows with
#: the batch (3e-3 at 512 rows, 1.2e-2 at 2048), up to the full-batch rate.
DEFAULT_LR_FULL_BATCH = 3e-2
DEFAULT_LR_MINI_BATCH = 6e-3
#: ``validation_fraction='auto'``: rows held out for early stopping, except on small data
#: (trained full batch), which holds none out: on a few hundred rows one hold-out is too
#: noisy a signal to pick the epoch from and wastes rows, so members are cross-fitted
#: (SMALL_DATA_FOLDS below; benchmarks/small_data.py; docs/small_data.md).
DEFAULT_VALIDATION_FRACTION = 0.1
#: ``weight_decay='auto'`` (an L2 penalty in Adam's gradient) in that small-data mode when
#: it cannot cross-fit (too few rows of a class, or torchrun); 0 otherwise (mini-batch gradient noise and early stopping regularise larger data, where
#: 1e-2 cost up to 0.03 test AUC on 20,000-row sets in our runs).
SMALL_DATA_WEIGHT_DECAY = 1e-2
#: Small data trains this many members by cross-fitting (steadyclf.train.crossfit): each
#: stops on the fold it did not train on, the folds give an out-of-fold estimate, and
#: the weight decay is chosen among SMALL_DATA_WEIGHT_DECAYS by out-of-fold log loss.
SMALL_DATA_FOLDS = 5
SMALL_DATA_WEIGHT_DECAYS = (1e-3, 1e-2, 1e-1)
#: Where rows are held out (larger data, or a hold-out asked for on small data) the
#: network is this many members trained together on the same batches, each from its own
#: initial weights, averaged in probability (``steadyclf.nn.modules.Members``): the
#: ensemble small data gets from its folds, up to :data:`MEMBERS_MAX_ROWS` training rows.
#: Each member costs about one network's steps, while the variance an average removes
#: shrinks as rows grow: on the development tables four members added 0.0013, 0.0032 and
#: 0.0031 ROC AUC (5 folds) at 29,000-80,000 training rows for 3.1-3.6x the fit, nothing
#: at 204,000 (fertility, fold 0: -0.0001 for 4.6x) (benchmarks/README.md; the limit was
#: placed between those tables). Above the limit one network, as the
#: 800,000-row speed benchmark needs to stay as fast as LightGBM.
LARGE_DATA_MEMBERS = 4
MEMBERS_MAX_ROWS = 1 << 17
#: Early stopping and the ``'plateau'`` schedule judge the validation loss at the end of
#: each epoch and, on more training rows than this, also inside it, about every this many
#: rows: ``patience`` counts these checks. An epoch of 720,000 rows is 352 steps of 2048;
#: waiting 10 such epochs to stop (and 4 for each rate cut) ran 78 epochs; checked every
#: 2**18 rows it stops after 22, at the same test AUC (benchmarks/large_data.py: log loss
#: +0.003 there and on noisy data; every 2**17 rows costs about twice that). Tables up to
#: this many training rows (the 17 of benchmarks/real_data.py, up to 204,000 rows) keep
#: the epoch rule they were developed with.
CHECK_ROWS = 1 << 18
#: Largest model we agree to build: a typo such as hidden=(10**9,) fails fast, not in malloc.
MAX_PARAMETERS = 200_000_000
#: Fewest validation rows worth holding out (with both classes on both sides).
MIN_VALIDATION_ROWS = 10


def class_weights(
    class_weight: Any, classes: Sequence[Any], totals: tuple[float, float]
) -> tuple[float, float] | None:
    """The loss weight of class 0 and of class 1 (``classes[1]`` positive), or ``None``.

    ``'balanced'`` is scikit-learn's ``n / (2 * n_c)``, with ``n_c`` the (weighted) total
    of class ``c`` in the training rows (``totals``). A dict may name one class (the other
    weighs 1); its keys match a class by equality or by their text (``'1'`` and ``1``: a
    model read from JSON, or the command line).
    """
    if class_weight is None:
        return None
    if class_weight == "balanced":
        total = totals[0] + totals[1]
        return (total / (2 * max(totals[0], 1e-300)), total / (2 * max(totals[1], 1e-300)))
    keys = {_class_key(k): float(v) for k, v in class_weight.items()}
    names = [_class_key(c) for c in classes]
    unknown = sorted(set(keys) - set(names))
    if unknown:
        raise ParameterError(
            f"class_weight names {', '.join(map(repr, unknown))}, which is not a class "
            f"(classes: {', '.join(map(repr, names))})"
        )
    return keys.get(names[0], 1.0), keys.get(names[1], 1.0)


def _class_key(value: Any) -> str:
    """A class as text: ``1``, ``1.0``, ``np.int64(1)`` and ``'1'`` are one class."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (numbers.Real, np.integer, np.floating)) and float(value).is_integer():
        return str(int(float(value)))
    return str(value.item() if isinstance(value, np.generic) else value)


def loss_totals(
    counts: Mapping[int, tuple[int, int]],
    totals: Mapping[int, tuple[float, float]] | None,
    class_weight: tuple[float, float] | None,
) -> dict[int, tuple[float, float]]:
    """How much each class weighs in the loss, ``(training, held-out)``: its rows, or the
    sum of their weights (``totals``), times the class weight. The class prior's source."""
    factors = class_weight or (1.0, 1.0)
    source = counts if totals is None else totals
    return {k: (factors[k] * source[k][0], factors[k] * source[k][1]) for k in (0, 1)}


def positive_share(counts: Mapping[int, tuple[float, float]]) -> float:
    """The positive class's share of the training rows (or of their weight)."""
    total = counts[0][0] + counts[1][0]
    return counts[1][0] / total if total > 0 else 0.0


def check_model_size(arch: Architecture) -> None:
    """Refuse a network beyond :data:`MAX_PARAMETERS`, before allocating it."""
    n_params = arch.n_parameters
    if n_params > MAX_PARAMETERS:
        raise ParameterError(
            f"the network would have {n_params:,} parameters (hidden={tuple(arch.hidden)!r}), "
            f"more than the {MAX_PARAMETERS:,} steadyclf allows; use smaller hidden layers"
        )


# -- data-dependent defaults -----------------------------------------------------------------
def batch_size_for(n_train: int, batch_size: Any) -> int | None:
    """Rows per step: ``None`` is full batch (small data, or a batch as large as the data)."""
    if batch_size == "auto":
        if n_train <= FULL_BATCH_MAX_ROWS:
            return None
        return LARGE_BATCH_SIZE if n_train >= LARGE_BATCH_MIN_ROWS else DEFAULT_BATCH_SIZE
    if batch_size is None or int(batch_size) >= n_train:
        return None
    return int(batch_size)


def check_interval(n_train: int, batch_size: int | None) -> int | None:
    """Steps between validation checks inside an epoch; ``None``: once an epoch is enough.

    Epochs of more than :data:`CHECK_ROWS` rows are cut into equal runs of steps, one check
    after each, so a check comes every ``CHECK_ROWS`` rows or a little less.
    """
    if batch_size is None or n_train <= CHECK_ROWS:
        return None
    steps = -(-n_train // batch_size)
    checks = -(-n_train // CHECK_ROWS)
    return max(1, -(-steps // checks))


def default_lr(batch_size: int | None) -> float:
    """The Adam rate for ``batch_size`` rows per step (linear in the batch, then capped)."""
    if batch_size is None:
        return DEFAULT_LR_FULL_BATCH
    return min(DEFAULT_LR_FULL_BATCH, DEFAULT_LR_MINI_BATCH * batch_size / DEFAULT_BATCH_SIZE)


def holdout_candidate(params: Mapping[str, Any]) -> float:
    """The share of rows the first pass keeps apart, before the data's size is known.

    The summary tallies those rows separately; :func:`resolve` then decides whether they
    are held out after all (small data trains on every row).
    """
    if not params["early_stopping"]:
        return 0.0
    if params["validation_fraction"] == "auto":
        return DEFAULT_VALIDATION_FRACTION
    return float(params["validation_fraction"])


@dataclass(frozen=True)
class Plan:
    """The resolved settings of one fit.

    ``batch_size`` counts rows per step over all processes (``None``: full batch);
    ``lr`` is ``None`` when the learning-rate finder picks it; ``small_data`` is the mode
    where ``folds`` members are cross-fitted (no rows are held out: each member stops on
    the fold it does not train on) and the weight decay is chosen among
    ``weight_decays`` by out-of-fold log loss (``weight_decay`` then says which).
    ``check_every`` is the number of steps between validation checks inside an epoch
    (``None``: at the end of each epoch only; see :func:`check_interval`).
    ``class_weight`` is the loss weight of class 0 and of class 1 (``None``: none).
    ``members`` is the number of bodies of the network (:func:`members_for`).
    ``numeric_embedding`` is ``'none'`` or ``'periodic'``, chosen among
    ``numeric_embeddings`` by out-of-fold log loss when there are two (``'auto'``).

    :func:`resolve` decides every field before training; the one thing training adds is
    which candidates cross-fitting chose (:meth:`with_choice`): until then
    ``weight_decay`` and ``numeric_embedding`` are the first candidates.
    """

    batch_size: int | None
    lr: float | None
    validation_fraction: float
    weight_decay: float
    early_stopping: bool
    patience: int
    small_data: bool
    folds: int
    weight_decays: tuple[float, ...]
    pos_weight: float | None
    n_train: int
    n_valid: int
    check_every: int | None = None
    class_weight: tuple[float, float] | None = None
    numeric_embedding: str = "none"
    numeric_embeddings: tuple[str, ...] = ("none",)
    integer_codes: str = "none"
    integer_codes_candidates: tuple[str, ...] = ("none",)
    code_columns: tuple[str, ...] = ()
    members: int = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)

    def with_choice(
        self,
        *,
        weight_decay: float | None = None,
        numeric_embedding: str | None = None,
        integer_codes: str | None = None,
    ) -> Plan:
        """The plan with what training chose among the candidates (``weight_decays``,
        ``numeric_embeddings``, ``integer_codes_candidates``): by out-of-fold log loss on
        small data, by validation loss on larger data (:mod:`steadyclf.train.race`)."""
        chosen = {
            "weight_decay": (weight_decay, self.weight_decays),
            "numeric_embedding": (numeric_embedding, self.numeric_embeddings),
            "integer_codes": (integer_codes, self.integer_codes_candidates),
        }
        changes: dict[str, Any] = {}
        for name, (value, candidates) in chosen.items():
            if value is None:
                continue
            if value not in candidates:
                raise ValueError(f"{name} {value!r} is not among {candidates}")
            changes[name] = value
        return replace(self, **changes)


def resolve(
    params: Mapping[str, Any],
    counts: Mapping[int, tuple[int, int]],
    weights: Mapping[int, tuple[float, float]] | None = None,
    classes: Sequence[Any] = (0, 1),
    *,
    world_size: int = 1,
    numeric_infos: Sequence[ColumnInfo] | None = None,
    code_columns: Sequence[str] = (),
) -> Plan:
    """The settings of a fit, from the parameters and the label counts of the summary.

    ``counts[c]`` is ``(training rows, rows kept apart)`` of class ``c`` (0 or 1) for the
    candidate hold-out of :func:`holdout_candidate`; ``weights[c]`` the same sums of the
    row weights, when rows are weighted. Rows decide how the data is cut (batches,
    hold-out, folds); the weights decide what weights classes (``'balanced'``).

    ``world_size`` is the number of processes (``torchrun``): cross-fitting trains in one
    process on rows it holds, so with several, small data trains one network on every
    row instead (weight decay 1e-2 unless given, no embeddings unless asked for).
    ``numeric_infos`` are the numeric inputs (``None``: not known, every one taken as
    continuous): without a continuous one there is nothing to embed, so the embedding is
    ``'none'``, as it is for ``'auto'`` where training rows x continuous inputs exceed
    :data:`EMBEDDED_AUTO_MAX_VALUES`. ``code_columns`` are the numeric columns that may be
    read as categories too (:func:`~steadyclf.schema.roles.code_candidates`):
    ``integer_codes='auto'`` makes reading them so a candidate, kept where it lowers the
    loss.
    """
    (neg_train, neg_valid), (pos_train, pos_valid) = counts[0], counts[1]
    sums: Mapping[int, tuple[float, float]] = counts if weights is None else weights
    (neg_w, neg_w_valid), (pos_w, pos_w_valid) = sums[0], sums[1]
    n_rows = neg_train + neg_valid + pos_train + pos_valid
    small = (
        bool(params["early_stopping"])
        and params["validation_fraction"] == "auto"
        and params["threshold_metric"] is None
        and batch_size_for(n_rows, params["batch_size"]) is None
    )
    fraction = 0.0 if small else holdout_candidate(params)
    usable = (
        min(pos_valid, neg_valid) >= 1
        and min(pos_train, neg_train) >= 1
        and pos_valid + neg_valid >= MIN_VALIDATION_ROWS
    )
    if fraction > 0 and not usable:
        fraction = 0.0  # too few rows (or a class missing) to hold some out
    if fraction == 0:
        pos_train, neg_train, pos_valid, neg_valid = (
            pos_train + pos_valid,
            neg_train + neg_valid,
            0,
            0,
        )
        pos_w, neg_w = pos_w + pos_w_valid, neg_w + neg_w_valid
    n_train = pos_train + neg_train
    batch = batch_size_for(n_train, params["batch_size"])
    lr = params["lr"]
    folds = SMALL_DATA_FOLDS if small and min(pos_train, neg_train) >= SMALL_DATA_FOLDS else 1
    if world_size > 1:
        folds = 1  # each process holds a shard: they train one network together
    if params["weight_decay"] == "auto":
        decays = (
            SMALL_DATA_WEIGHT_DECAYS if folds > 1 else (SMALL_DATA_WEIGHT_DECAY if small else 0.0,)
        )
    else:
        decays = (float(params["weight_decay"]),)
    embeddings = numeric_embeddings_for(params, folds, small=small, n_train=n_train)
    if numeric_infos is not None:
        continuous = len(embedded_inputs(numeric_infos, "periodic"))
        if not continuous:
            embeddings = ("none",)  # no continuous input to embed
        elif (
            continuous * n_train > EMBEDDED_AUTO_MAX_VALUES
            and params.get("numeric_embedding") == "auto"
        ):
            embeddings = ("none",)  # too costly to try: see EMBEDDED_AUTO_MAX_VALUES
    codes = integer_codes_for(params, code_columns, folds=folds, small=small)
    pos_weight = params["pos_weight"]
    if pos_weight == "balanced":
        pos_weight = neg_w / pos_w if pos_w > 0 else neg_train / max(pos_train, 1)
    return Plan(
        batch_size=batch,
        lr=None if lr == "auto" else (default_lr(batch) if lr is None else float(lr)),
        validation_fraction=fraction,
        weight_decay=decays[0],
        early_stopping=bool(params["early_stopping"]),
        patience=int(params["patience"]),
        small_data=small,
        folds=folds,
        weight_decays=tuple(decays),
        pos_weight=None if pos_weight is None else float(pos_weight),
        n_train=n_train,
        n_valid=pos_valid + neg_valid,
        check_every=check_interval(n_train, batch) if pos_valid + neg_valid else None,
        class_weight=class_weights(params.get("class_weight"), classes, (neg_w, pos_w)),
        numeric_embedding=embeddings[0],
        numeric_embeddings=embeddings,
        integer_codes=codes[0],
        integer_codes_candidates=codes,
        code_columns=tuple(code_columns) if codes != ("none",) else (),
        members=members_for(folds, fraction, n_train, params.get("n_members", "auto")),
    )


def members_for(folds: int, fraction: float, n_train: int, n_members: Any = "auto") -> int:
    """Bodies of the network: the cross-fitted folds; else ``n_members``, whose ``'auto'``
    is :data:`LARGE_DATA_MEMBERS` with held-out rows (to stop the ensemble on) up to
    :data:`MEMBERS_MAX_ROWS` training rows, one otherwise."""
    if folds > 1:
        return folds
    if n_members != "auto":
        return int(n_members)
    return LARGE_DATA_MEMBERS if fraction > 0 and n_train <= MEMBERS_MAX_ROWS else 1


def numeric_embeddings_for(
    params: Mapping[str, Any], folds: int, *, small: bool = True, n_train: int = 0
) -> tuple[str, ...]:
    """The ``numeric_embedding`` candidates of a fit. ``'auto'``: with cross-fitted members
    (small data), with and without periodic embeddings, the one of lower out-of-fold log
    loss kept, as the weight decay is (development tables: +0.0013 mean ROC AUC on the 14
    small ones, against +0.0010 for embeddings always and a loss on hmda they avoid;
    results/variants-plr-continuous.md and benchmarks/README.md). On larger data
    (held-out rows), up to :data:`RACE_EMBEDDINGS_MAX_ROWS` training rows (``n_train``),
    both race their first epochs (:mod:`steadyclf.train.race`; without embeddings first);
    above, none. Small data that cannot
    cross-fit (a class too small for the folds, or ``torchrun``) has nothing to choose
    with: none."""
    embedding = str(params.get("numeric_embedding", "none"))
    if embedding != "auto":
        return (embedding,)
    if params["normalize"] not in ("robust", "standardize"):
        return ("none",)
    if folds > 1:
        return ("periodic", "none")
    raced = not small and n_train <= RACE_EMBEDDINGS_MAX_ROWS
    return ("none", "periodic") if raced else ("none",)


def integer_codes_for(
    params: Mapping[str, Any], columns: Sequence[str], *, folds: int, small: bool
) -> tuple[str, ...]:
    """The ``integer_codes`` candidates of a fit: ``'category'`` reads ``columns`` (the
    code candidates) as categories too, beside their numbers. ``'auto'``: both readings
    where something can choose (cross-fitted members, or held-out rows), the one of lower
    loss kept (without the reading first: of equal losses, the simpler model)."""
    mode = str(params.get("integer_codes", "none"))
    if not columns or mode == "none":
        return ("none",)
    if mode == "category":
        return ("category",)
    return ("none", "category") if folds > 1 or not small else ("none",)


def embedded_inputs(infos: Sequence[ColumnInfo], embedding: str) -> tuple[int, ...]:
    """Positions, among the numeric inputs ``infos``, of those embedded periodically: the
    continuous ones (:data:`EMBEDDED_MIN_VALUES` distinct values or more)."""
    if embedding != "periodic":
        return ()
    return tuple(
        i
        for i, info in enumerate(infos)
        if info.role != "boolean" and info.n_values >= EMBEDDED_MIN_VALUES
    )


def code_readings(
    params: Mapping[str, Any], infos: Sequence[ColumnInfo], numeric: Sequence[str] = ()
) -> list[str]:
    """The numeric columns of ``infos`` that may be read as categories too (``numeric``:
    the columns the user listed as numbers, never read so): every candidate of
    :func:`~steadyclf.schema.roles.code_candidates` unless ``integer_codes='none'``;
    :func:`integer_codes_for` says whether they are read so, or a candidate reading."""
    if params.get("integer_codes", "none") == "none":
        return []
    from .schema.roles import code_candidates  # pandas: not for the command line's help

    return code_candidates(infos, numeric)
