"""The training rows of a fit, read through the fitted encoding: the counts behind the
target statistics of many-level categoricals (:func:`count_target_levels`), and the batch
source the trainer steps through (:func:`batch_source`): the encoded rows in memory when
they fit the budget, else streamed through a shuffle buffer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..exceptions import DataError
from ..io.sources import read_rows_for_budget
from ..schema.labels import class_counts, class_weight_sums
from ..schema.target_stats import TargetCounts, TargetTables, target_folds
from .batches import (
    Batch,
    BatchEncoder,
    EncodedRows,
    InMemoryBatches,
    RowWeighting,
    StreamedBatches,
    encode_rows,
)

if TYPE_CHECKING:
    from ..io.sources import Source
    from ..parallel import DistributedContext
    from ..schema.summary import TableSummary

__all__ = [
    "CACHE_SHARE",
    "BatchPlan",
    "batch_source",
    "count_target_levels",
    "reading_of",
    "row_weighting",
    "sample_rows",
]

#: Encoded training rows are held in memory when they take at most this share of the
#: budget (always for a DataFrame, which is in memory already).
CACHE_SHARE = 4


def row_weighting(
    summary: TableSummary,
    label_values: Sequence[Any],
    *,
    n_train: int,
    class_weight: tuple[float, float] | None,
) -> RowWeighting | None:
    """The rows' loss weights (and the weight column, which leaves rows of weight 0 out),
    or ``None`` without a weight column or class weights.

    The loss weight of a row is its weight times its class's weight, scaled so that
    their mean over the ``n_train`` training rows is 1.
    """
    column = summary.plan.weight
    if column is None and class_weight is None:
        return None
    totals = class_weight_sums(summary, label_values)
    counts = class_counts(summary, label_values)
    factors = class_weight or (1.0, 1.0)
    mass = sum(factors[k] * (counts[k][0] if totals is None else totals[k][0]) for k in (0, 1))
    label = summary.weights.label if summary.weights is not None else ""
    scale = n_train / mass if mass > 0 else 1.0
    return RowWeighting(column, label, class_weight, scale, use_column=totals is not None)


def sample_rows(batches: InMemoryBatches | StreamedBatches, n_rows: int) -> Batch:
    """Some training rows: spread over the block in memory, the first ones when streamed."""
    if isinstance(batches, StreamedBatches):
        return batches.sample(n_rows)
    every = max(1, batches.n_rows // n_rows)
    w = None if batches.w is None else batches.w[::every][:n_rows]
    return batches.x[::every][:n_rows], batches.y[::every][:n_rows], w


def count_target_levels(
    source: Source,
    encoding: BatchEncoder,
    *,
    seed: int,
    read_rows: int | None,
    context: DistributedContext | None,
    unit: float | None = None,
) -> TargetTables:
    """Count the training rows of each level of the many-level categoricals (one pass,
    every process's counts merged) and give back their tables.

    Rows of weight 0 are left out (:meth:`BatchEncoder.rows`). With ``unit`` (rows weighted
    by a column whose weights are not all equal), a row counts ``weight / unit`` rows in its
    level's rate and frequency (``unit`` the mean training weight: scaling every weight
    changes nothing, and the rows count as many as there are); class weights do not
    enter: the rates describe the data, not the loss.
    """
    from ..schema.weights import weight_values

    n_cat = len(encoding.encoder.categorical_columns)
    counts = TargetCounts.empty(encoding.encoder.target_sizes)
    for start, frame in source.batches(encoding.columns, batch_rows=read_rows):
        kept, in_valid, positions = encoding.rows(start, frame)
        _, x_cat = encoding.raw(start, kept)
        train = ~in_valid
        y = encoding.labels(kept[encoding.target])
        folds = target_folds(positions[train], seed)
        w = None
        if unit is not None and encoding.weighting is not None and encoding.weighting.column:
            name = encoding.weighting.column
            label = encoding.weighting.label
            w = weight_values(name, kept[name][train], positions[train], label) / unit
        counts.add(x_cat[train, n_cat:], y[train], folds, w)
    if context is not None:  # every process gets the counts of all
        everyone = context.all_gather_object(counts)
        counts = TargetCounts.empty(encoding.encoder.target_sizes)
        for part in everyone:
            counts.merge(part)
    return counts.tables()


@dataclass
class BatchPlan:
    """How many rows a process trains and validates on, and how they may be held.

    ``batch_size`` counts rows per step over all ``world`` processes (``None``: full
    batch); ``in_memory``: the rows are in memory already (a DataFrame) or few (small
    data), so they are always encoded into memory; ``n_all_train`` is the training rows of
    every process, for messages."""

    n_train: int
    n_valid: int
    batch_size: int | None
    in_memory: bool
    world: int = 1
    n_all_train: int = 0


def reading_of(info: dict[str, Any]) -> dict[str, Any]:
    """Of :func:`batch_source`'s decisions, those that shape the model (a checkpoint's run
    resumes only with the same): held in memory, or streamed with its chunk, buffer and
    held-out share (all set by the memory budget; in memory, the budget changes nothing)."""
    if info.get("rows_in_memory", True):
        return {"rows_in_memory": True}
    keys = ("rows_in_memory", "read_rows", "shuffle_buffer_rows", "validation_keep")
    return {k: info[k] for k in keys if k in info}


def batch_source(
    source: Source,
    encoding: BatchEncoder,
    rows: BatchPlan,
    *,
    budget: int,
    seed: int,
    context: DistributedContext | None,
) -> tuple[InMemoryBatches | StreamedBatches, EncodedRows | None, dict[str, Any]]:
    """The training batches and validation rows: in memory when they fit, else streamed;
    and what was decided (``rows_in_memory``, ``read_rows``, the buffer's size...)."""
    n_train, n_valid, world = rows.n_train, rows.n_valid, rows.world
    weighted = encoding.weighting is not None and encoding.weighting.active
    row_bytes = 4 * (encoding.width + 1 + weighted)  # float32 features, label, loss weight
    read_rows = (
        None if rows.in_memory else read_rows_for_budget(source.row_bytes(encoding.columns), budget)
    )
    held = row_bytes * (n_train + n_valid)
    cached = rows.in_memory or held <= budget // CACHE_SHARE
    if context is not None:
        cached = bool(context.all_reduce_min(int(cached)))
    info: dict[str, Any] = {"rows_in_memory": cached, "read_rows": read_rows}
    local_batch = None if rows.batch_size is None else max(1, rows.batch_size // world)
    if cached:
        train, valid = encode_rows(source, encoding, n_train, n_valid, read_rows)
        steps = None
        if context is not None:
            # Every process takes the same number of steps (DistributedDataParallel needs
            # it): the fewest any process has rows for.
            size = local_batch or max(1, train.n_rows)
            steps = context.all_reduce_min(-(-train.n_rows // size))
        positions = np.concatenate(train.positions) if train.positions else np.zeros(0, np.int64)
        kept_in_memory = InMemoryBatches(
            train.x, train.y, local_batch, max_steps=steps, positions=positions, w=train.w
        )
        return kept_in_memory, valid, info
    batch = local_batch or max(1, n_train)
    steps = -(-n_train // batch)
    if context is not None:
        steps = context.all_reduce_min(steps)
    if steps == 0:
        raise DataError(
            f"a process has no training rows ({rows.n_all_train} in all for {world} processes); use fewer processes or more data"
        )
    # Validation rows: all of them if they fit 1/8 of the budget, else a hash-chosen share.
    keep = min(1.0, budget / 8 / max(1, n_valid * row_bytes))
    valid = None
    if n_valid:
        valid = EncodedRows(
            encoding.width,
            int(n_valid * keep * 1.05) + 256,
            encoding.device,
            weighted=weighted,
        )
    assert read_rows is not None
    # The buffer's two blocks (rows held plus one chunk, and their permutation) take about
    # 1/4 of the budget: several record batches are mixed at a time.
    buffer_rows = max(4 * batch, budget // 8 // row_bytes - read_rows)
    batches = StreamedBatches(
        source,
        encoding,
        batch_size=batch,
        steps=steps,
        read_rows=read_rows,
        buffer_rows=buffer_rows,
        validation=valid,
        validation_keep=keep,
        seed=seed,
    )
    info |= {"shuffle_buffer_rows": buffer_rows, "validation_keep": keep}
    return batches, valid, info
