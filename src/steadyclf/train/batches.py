"""Batch sources: what the trainer steps through, whether the rows fit in memory or not.

Rows are read from a source (:mod:`steadyclf.io.sources`), turned into raw inputs by the
fitted :class:`~steadyclf.schema.encoder.TabularEncoder` and into float32 features by the
network's :class:`~steadyclf.nn.modules.InputEncoder` (:class:`BatchEncoder`). Then:

- :func:`encode_rows` encodes every row once, training and validation rows into their
  own blocks: :class:`InMemoryBatches` draws a permutation each epoch and slices
  mini-batches from the training block (or takes it whole: full batch). Data in memory
  always trains this way, and so do files whose encoded rows fit the memory budget.
- :class:`StreamedBatches` reads the pieces again every epoch, in a new random order,
  and mixes rows through a bounded :class:`ShuffleBuffer` before they form mini-batches;
  validation rows are collected during the first epoch. For files larger than the budget.

Both offer :meth:`epoch`, so one trainer (:mod:`steadyclf.train.trainer`) runs either.

A batch is ``(features, labels, weights)``: ``weights`` is ``None`` unless rows are
weighted (:class:`RowWeighting`: a weight column read with the rows, class weights, or
both), then a float32 loss weight per row that travels with it through every block,
permutation and buffer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray

from ..exceptions import DataError
from ..schema.split import SplitRule, row_uniform
from ..schema.target_stats import TargetTables
from ..schema.values import shift_rows

if TYPE_CHECKING:
    from ..io.sources import Source
    from ..nn.modules import InputEncoder
    from ..schema.encoder import TabularEncoder

__all__ = [
    "Batch",
    "BatchEncoder",
    "BatchSource",
    "EncodedRows",
    "Epoch",
    "InMemoryBatches",
    "RowWeighting",
    "ShuffleBuffer",
    "StreamedBatches",
    "encode_rows",
]

#: Features, 0/1 labels and loss weights (``None``: every row weighs 1).
Batch = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]


@dataclass
class Epoch:
    """One pass of a batch source: the batches, and their labels (and loss weights) in
    order if known."""

    batches: Iterator[Batch]
    labels: torch.Tensor | None = None
    weights: torch.Tensor | None = None


class BatchSource(Protocol):
    """What the trainer reads: about ``n_rows`` training rows per epoch, in batches."""

    @property
    def n_rows(self) -> int:
        """Training rows per epoch (an upper bound for streamed data)."""

    @property
    def batch_size(self) -> int:
        """Rows per step."""

    @property
    def steps(self) -> int:
        """Optimizer steps per epoch."""

    def epoch(self, generator: torch.Generator) -> Epoch:
        """This epoch's batches, shuffled with ``generator``."""


class EncodedRows:
    """Encoded rows (float32 features, 0/1 labels and, if ``weighted``, loss weights) in
    one growing block on the device.

    One block rather than a list of small chunks: small tensors kept alive while large
    temporaries come and go fragment the C heap, which showed as the process's memory
    growing through the first epoch.
    """

    def __init__(
        self, width: int, capacity: int, device: torch.device, *, weighted: bool = False
    ) -> None:
        self._x = torch.empty((max(capacity, 1), width), dtype=torch.float32, device=device)
        self._y = torch.empty(max(capacity, 1), dtype=torch.float32, device=device)
        self._w = torch.empty_like(self._y) if weighted else None
        self.n_rows = 0
        self.complete = False
        #: The global position of each row, when kept (rows encoded once, in memory).
        self.positions: list[NDArray[np.int64]] = []

    def reserve(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Room for ``n`` more rows, as views to write into (counted as added)."""
        end = self.n_rows + n
        if end > self._x.shape[0]:  # grows by half when full, which the estimate avoids
            size = max(end, self._x.shape[0] * 3 // 2)
            x = self._x.new_empty((size, self._x.shape[1]))
            y = self._y.new_empty(size)
            x[: self.n_rows], y[: self.n_rows] = self._x[: self.n_rows], self._y[: self.n_rows]
            if self._w is not None:
                w = self._w.new_empty(size)
                w[: self.n_rows] = self._w[: self.n_rows]
                self._w = w
            self._x, self._y = x, y
        w_view = None if self._w is None else self._w[self.n_rows : end]
        views = self._x[self.n_rows : end], self._y[self.n_rows : end], w_view
        self.n_rows = end
        return views

    def add(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None) -> None:
        """Append rows (with their loss weights when the block is weighted)."""
        xs, ys, ws = self.reserve(int(x.shape[0]))
        xs.copy_(x)
        ys.copy_(y)
        if ws is not None:
            assert w is not None, "weighted rows need their weights"
            ws.copy_(w)

    @property
    def x(self) -> torch.Tensor:
        """The features."""
        return self._x[: self.n_rows]

    @property
    def y(self) -> torch.Tensor:
        """The labels."""
        return self._y[: self.n_rows]

    @property
    def w(self) -> torch.Tensor | None:
        """The loss weights (``None``: unweighted)."""
        return None if self._w is None else self._w[: self.n_rows]


@dataclass(frozen=True)
class RowWeighting:
    """How much each row weighs in the loss: its weight (column ``column``, if any) times
    the weight of its class (``class_weight``), times ``scale``.

    ``scale`` is one over the mean of those products on the training rows, so that the
    loss keeps the size of a mean over rows: the learning rate and the weight decay mean
    what they mean without weights, and a full-batch step on rows weighted ``k`` is the
    step on the rows repeated ``k`` times. Rows of weight 0 are always left out; with
    ``use_column`` false (the other weights are all equal) the column does nothing else.
    """

    column: str | None
    label: str
    class_weight: tuple[float, float] | None
    scale: float
    use_column: bool = True

    @property
    def by_row(self) -> bool:
        """Whether the rows' own weights count (beyond leaving rows of weight 0 out)."""
        return self.column is not None and self.use_column

    @property
    def active(self) -> bool:
        """Whether rows get loss weights at all (else they only leave rows out)."""
        return self.by_row or self.class_weight is not None

    def weights(
        self, frame: pd.DataFrame, y: NDArray[np.float32], rows: NDArray[np.int64]
    ) -> NDArray[np.float32]:
        """Loss weights of the rows of ``frame`` (labels ``y``, global positions ``rows``)."""
        from ..schema.weights import weight_values

        w = (
            weight_values(self.column, frame[self.column], rows, self.label)
            if self.by_row and self.column is not None
            else np.ones(len(y))
        )
        if self.class_weight is not None:
            w = w * np.where(y > 0.5, self.class_weight[1], self.class_weight[0])
        return np.asarray(w * self.scale, dtype=np.float32)

    def given(self, w: NDArray[np.floating], y: NDArray[np.floating]) -> NDArray[np.float64]:
        """The weights as given (the column's), from loss weights: what metrics weigh by.

        Loss weights are float32, so these are too (rounded back to float32: an integer
        weight comes back as that integer, not 2.99999994).
        """
        out = np.asarray(w, dtype=np.float64) / self.scale
        if self.class_weight is not None:
            out = out / np.where(y > 0.5, self.class_weight[1], self.class_weight[0])
        return out.astype(np.float32).astype(np.float64)


class BatchEncoder:
    """Rows of a source -> float32 features, 0/1 labels and validation flags.

    Parameters
    ----------
    encoder : TabularEncoder
        Column roles (raw inputs).
    inputs : InputEncoder
        The network's fitted encoding (features).
    target : str
        The label column.
    label_values : sequence of 2
        The target values that mean 0 and 1.
    split : SplitRule
        Which rows are held out for validation.
    weighting : RowWeighting, optional
        The rows' loss weights; rows of weight 0 are left out, as rows without a label.
    """

    def __init__(
        self,
        encoder: TabularEncoder,
        inputs: InputEncoder,
        target: str,
        label_values: Sequence[Any],
        split: SplitRule,
        device: torch.device,
        weighting: RowWeighting | None = None,
    ) -> None:
        self.encoder = encoder
        self.inputs = inputs
        self.target = target
        self.label_values = list(label_values)
        self.split = split
        self.device = device
        self.weighting = weighting
        weight = None if weighting is None else weighting.column
        self.columns = [*encoder.input_columns, target, *([weight] if weight else [])]
        self.nan_free = not encoder.has_missing
        #: Out-of-fold target statistics of training rows (set once counted), and the
        #: seed of their folds: see :mod:`steadyclf.schema.target_stats`.
        self.target_tables: TargetTables | None = None
        self.target_seed = 0

    @property
    def width(self) -> int:
        """Encoded features per row."""
        return int(self.inputs.n_features_out)

    def rows(
        self, start: int, frame: pd.DataFrame
    ) -> tuple[pd.DataFrame, NDArray[np.bool_], NDArray[np.int64]]:
        """``frame`` without rows whose target is missing or whose weight is 0 (dropped),
        their validation flags and their global positions."""
        positions = np.arange(start, start + len(frame), dtype=np.int64)
        in_valid = self.split.mask(start, len(frame))
        present = frame[self.target].notna().to_numpy()
        column = None if self.weighting is None else self.weighting.column
        if column is not None:  # the weights were checked when the rows were summarised
            present = present & (pd.to_numeric(frame[column], errors="coerce").to_numpy() > 0)
        if not present.all():
            frame, in_valid, positions = frame.loc[present], in_valid[present], positions[present]
        return frame, in_valid, positions

    def raw(self, start: int, frame: pd.DataFrame) -> tuple[NDArray[Any], NDArray[np.int64]]:
        """Raw inputs of ``frame``, errors naming global rows."""
        try:
            return self.encoder.transform(frame, copy=False)
        except DataError as exc:
            raise shift_rows(exc, start) from None

    def labels(self, y: pd.Series) -> NDArray[np.float32]:
        """0/1 labels for target values."""
        values = y.to_numpy()
        if values.dtype.kind == "f" and self.label_values == [0.0, 1.0]:
            return values.astype(np.float32, copy=False)  # already codes (estimator.fit)
        codes = y.map({self.label_values[0]: 0.0, self.label_values[1]: 1.0})
        if codes.isna().any():
            value = y[codes.isna()].iloc[0]
            raise DataError(
                f"target value {value!r} was not seen when the classes {self.label_values!r} were counted"
            )
        return np.asarray(codes.to_numpy(dtype=np.float32), dtype=np.float32)

    def weights(
        self, frame: pd.DataFrame, y: NDArray[np.float32], positions: NDArray[np.int64]
    ) -> NDArray[np.float32] | None:
        """Loss weights of kept rows (``None`` when rows are not weighted)."""
        if self.weighting is None or not self.weighting.active:
            return None
        return self.weighting.weights(frame, y, positions)

    @torch.no_grad()
    def encode(
        self, start: int, frame: pd.DataFrame
    ) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor | None, NDArray[np.bool_], NDArray[np.int64]
    ]:
        """Features, labels, loss weights (or ``None``), validation flags and positions of
        the kept rows of ``frame``."""
        frame, in_valid, positions = self.rows(start, frame)
        x_num, x_cat = self.raw(start, frame)
        out = torch.empty((len(frame), self.width), dtype=torch.float32, device=self.device)
        self.inputs.encode(x_num, x_cat, out, nan_free=self.nan_free)
        self.out_of_fold(out, x_cat, positions, np.flatnonzero(~in_valid))
        labels = self.labels(frame[self.target])
        y = torch.from_numpy(labels).to(self.device)
        w = self.weights(frame, labels, positions)
        return (
            out,
            y,
            None if w is None else torch.from_numpy(w).to(self.device),
            in_valid,
            positions,
        )

    def out_of_fold(
        self,
        out: torch.Tensor,
        x_cat: NDArray[np.int64],
        positions: NDArray[np.int64],
        rows: NDArray[np.intp],
        written: NDArray[np.intp] | None = None,
    ) -> None:
        """Give training ``rows`` their out-of-fold target statistics (the network's
        tables are for held-out and new rows), in ``out[written]`` (default: ``rows``)."""
        tables = self.target_tables
        if tables is None or not rows.size:
            return
        n_cat = len(self.inputs.categorical.sizes)
        values = tables.training_values(x_cat[rows, n_cat:], positions[rows], self.target_seed)
        index = torch.from_numpy(rows if written is None else written).to(out.device)
        block = torch.from_numpy(values.astype(np.float32)).to(out.device)
        offset = self.inputs.target_offset
        out[:, offset:].index_copy_(0, index, block)


def encode_rows(
    source: Source, encoder: BatchEncoder, n_train: int, n_valid: int, read_rows: int | None
) -> tuple[EncodedRows, EncodedRows | None]:
    """Encode every row of ``source`` once: the training block and the validation block.

    ``n_train`` and ``n_valid`` (from the summary) size the blocks exactly. Each batch is
    encoded straight into them, a chunk at a time: the features are the only row-sized
    copy (a table in memory is one batch; its raw numbers may be a view of the caller's).
    """
    device = encoder.device
    weighted = encoder.weighting is not None and encoder.weighting.active
    train = EncodedRows(encoder.width, n_train, device, weighted=weighted)
    valid = EncodedRows(encoder.width, n_valid, device, weighted=weighted) if n_valid else None
    for start, frame in source.batches(encoder.columns, batch_rows=read_rows):
        kept, in_valid, positions = encoder.rows(start, frame)
        x_num, x_cat = encoder.raw(start, kept)
        y = encoder.labels(kept[encoder.target])
        w = encoder.weights(kept, y, positions)
        for block, rows in ((train, ~in_valid), (valid, in_valid)):
            index = np.flatnonzero(rows)
            if block is None or not index.size:
                continue
            xs, ys, ws = block.reserve(index.size)
            block.positions.append(positions[index])
            every = index.size == len(kept)
            encoder.inputs.encode(
                x_num, x_cat, xs, None if every else index, nan_free=encoder.nan_free
            )
            if block is train:
                written = np.arange(index.size, dtype=np.intp)
                encoder.out_of_fold(xs, x_cat, positions, index, written)
            ys.copy_(torch.from_numpy(np.array(y if every else y[index], dtype=np.float32)))
            if ws is not None and w is not None:
                ws.copy_(torch.from_numpy(np.array(w if every else w[index], dtype=np.float32)))
    train.complete = True
    if valid is not None:
        valid.complete = True
    return train, valid


class InMemoryBatches:
    """Training rows held as one float32 block: a permutation per epoch, sliced in batches.

    Each batch is one ``index_select`` of rows (no copy of the whole table per epoch);
    the shuffled labels are gathered once per epoch into a reused buffer. ``batch_size``
    ``None`` (or the number of rows) trains full batch: the block itself, every epoch.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int | None,
        *,
        max_steps: int | None = None,
        positions: NDArray[np.int64] | None = None,
        w: torch.Tensor | None = None,
    ) -> None:
        self.x = x
        self.y = y
        #: Loss weights (``None``: unweighted), gathered with the labels each epoch.
        self.w = w
        #: The global position of each row (for folds fixed by the rows, not their order).
        self.positions = positions
        n = int(x.shape[0])
        self._batch = n if batch_size is None or batch_size >= n else int(batch_size)
        self._max_steps = max_steps
        self._order: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None
        self._weights: torch.Tensor | None = None

    @property
    def n_rows(self) -> int:
        """Training rows."""
        return int(self.x.shape[0])

    @property
    def batch_size(self) -> int:
        """Rows per step."""
        return self._batch

    @property
    def steps(self) -> int:
        """Steps per epoch (at most ``max_steps``: processes of a distributed run take
        the same number)."""
        steps = max(1, -(-self.n_rows // max(1, self._batch)))
        return steps if self._max_steps is None else min(steps, self._max_steps)

    @property
    def full_batch(self) -> bool:
        """Whether every step takes every row."""
        return self._batch >= self.n_rows

    def epoch(self, generator: torch.Generator) -> Epoch:
        """The batches of one epoch, in a fresh random order."""
        if self.full_batch:
            return Epoch(iter([(self.x, self.y, self.w)]), self.y, self.w)
        n = self.n_rows
        # int32 indices (half the memory of int64) while the rows fit in them; the buffers
        # are kept from epoch to epoch (row-sized temporaries fragment the heap).
        index_dtype = torch.int32 if n < 2**31 else torch.int64
        if self._order is None or self._order.dtype != index_dtype:
            self._order = torch.empty(n, dtype=index_dtype)
            self._labels = torch.empty_like(self.y)
            self._weights = None if self.w is None else torch.empty_like(self.w)
        assert self._labels is not None
        order = torch.randperm(n, generator=generator, out=self._order).to(self.x.device)
        labels = torch.index_select(self.y, 0, order, out=self._labels)
        weights = None
        if self.w is not None and self._weights is not None:
            weights = torch.index_select(self.w, 0, order, out=self._weights)
        bs = self._batch

        def batches() -> Iterator[Batch]:
            for start in range(0, min(n, self.steps * bs), bs):
                stop = min(start + bs, n)
                wb = None if weights is None else weights[start:stop]
                yield self.x.index_select(0, order[start:stop]), labels[start:stop], wb

        return Epoch(batches(), labels, weights)


class ShuffleBuffer:
    """Mix rows from consecutive chunks: a bounded buffer emitting random batches.

    Rows are added chunk by chunk; whenever ``capacity`` rows are held, the buffer is
    permuted and all but half of it leaves as batches of ``batch_size`` rows. A row thus
    leaves after a random number of later chunks, which, with the pieces read in a random
    order, gives mini-batches drawn from across the data in bounded memory.

    The rows live in two blocks allocated once (the rows held, and their permutation):
    re-allocating buffer-sized tensors at every emission made the C heap grow far beyond
    the buffer. A batch is a view that stays valid until the next chunk is pushed.
    """

    def __init__(self, capacity: int, batch_size: int, generator: torch.Generator) -> None:
        self.capacity = max(capacity, 2 * batch_size)
        self.batch_size = batch_size
        self.generator = generator
        self.size = 0
        self._x: torch.Tensor | None = None  # rows held, then room for one more chunk
        self._y: torch.Tensor | None = None
        self._w: torch.Tensor | None = None  # loss weights, when rows are weighted
        self._px: torch.Tensor | None = None  # the permuted rows being emitted
        self._py: torch.Tensor | None = None
        self._pw: torch.Tensor | None = None

    def push(
        self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None
    ) -> Iterator[Batch]:
        """Add rows (with their loss weights, if any); yield the batches that leave."""
        n = int(x.shape[0])
        if n:
            self._reserve(x, y, w, self.size + n)
            assert self._x is not None and self._y is not None
            self._x[self.size : self.size + n] = x
            self._y[self.size : self.size + n] = y
            if self._w is not None and w is not None:
                self._w[self.size : self.size + n] = w
            self.size += n
        if self.size >= self.capacity:
            yield from self._emit(keep=self.capacity // 2)

    def drain(self) -> Iterator[Batch]:
        """Yield every row left, the last batch possibly smaller."""
        yield from self._emit(keep=0)

    def _reserve(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None, rows: int) -> None:
        if self._x is not None and self._y is not None and rows <= self._x.shape[0]:
            return
        # Room for the buffer plus a chunk as large as the one that did not fit.
        size = max(rows, self.capacity + int(x.shape[0]))
        old_x, old_y, old_w = self._x, self._y, self._w
        self._x = x.new_empty((size, *x.shape[1:]))
        self._y = y.new_empty((size, *y.shape[1:]))
        self._px, self._py = torch.empty_like(self._x), torch.empty_like(self._y)
        if w is not None:
            self._w, self._pw = w.new_empty(size), w.new_empty(size)
        if old_x is not None and old_y is not None and self.size:
            self._x[: self.size] = old_x[: self.size]
            self._y[: self.size] = old_y[: self.size]
            if old_w is not None and self._w is not None:
                self._w[: self.size] = old_w[: self.size]

    def _emit(self, keep: int) -> Iterator[Batch]:
        if not self.size:
            return
        assert self._x is not None and self._y is not None
        assert self._px is not None and self._py is not None
        size, bs = self.size, self.batch_size
        order = torch.randperm(size, generator=self.generator).to(self._x.device)
        px, py = self._px[:size], self._py[:size]
        torch.index_select(self._x[:size], 0, order, out=px)
        torch.index_select(self._y[:size], 0, order, out=py)
        pw = None
        if self._w is not None and self._pw is not None:
            pw = torch.index_select(self._w[:size], 0, order, out=self._pw[:size])
        n_out = size if keep == 0 else (size - keep) // bs * bs
        # The rows that stay move to the front of the held block; the batches are views
        # of the permuted block, which is only rewritten at the next emission.
        self._x[: size - n_out] = px[n_out:]
        self._y[: size - n_out] = py[n_out:]
        if pw is not None and self._w is not None:
            self._w[: size - n_out] = pw[n_out:]
        self.size = size - n_out
        for start in range(0, n_out, bs):
            stop = min(start + bs, n_out)
            yield px[start:stop], py[start:stop], None if pw is None else pw[start:stop]


class StreamedBatches:
    """The training rows of one process, read again every epoch through a shuffle buffer.

    Each epoch reads the pieces in a new random order, encodes each record batch, routes
    validation rows to :attr:`validation` (first epoch only; a hash-chosen share
    ``validation_keep`` of them) and training rows through a :class:`ShuffleBuffer`, and
    yields exactly ``steps`` mini-batches (the same number on every process).
    """

    def __init__(
        self,
        source: Source,
        encoder: BatchEncoder,
        *,
        batch_size: int,
        steps: int,
        read_rows: int,
        buffer_rows: int,
        validation: EncodedRows | None,
        validation_keep: float,
        seed: int,
    ) -> None:
        self.source = source
        self.encoder = encoder
        self._batch = batch_size
        self._steps = steps
        self.read_rows = read_rows
        self.buffer_rows = buffer_rows
        self.validation = validation
        self.validation_keep = validation_keep
        self.seed = seed

    @property
    def n_rows(self) -> int:
        """Training rows per epoch, at most."""
        return self._steps * self._batch

    @property
    def batch_size(self) -> int:
        """Rows per step (of this process)."""
        return self._batch

    @property
    def steps(self) -> int:
        """Steps per epoch."""
        return self._steps

    def sample(self, n_rows: int) -> Batch:
        """The first ``n_rows`` training rows in file order (for the learning-rate range
        test and the stall detector's saturation check), read from the first pieces only."""
        xs, ys, ws, held = [], [], [], 0
        for start, frame in self.source.batches(self.encoder.columns, batch_rows=self.read_rows):
            x, y, w, in_valid, _ = self.encoder.encode(start, frame)
            index = torch.from_numpy(np.flatnonzero(~in_valid)[: n_rows - held]).to(x.device)
            xs.append(x.index_select(0, index))
            ys.append(y.index_select(0, index))
            if w is not None:
                ws.append(w.index_select(0, index))
            held += int(index.numel())
            if held >= n_rows:
                break
        return torch.cat(xs), torch.cat(ys), torch.cat(ws) if ws else None

    def epoch(self, generator: torch.Generator) -> Epoch:
        """This epoch's ``steps`` mini-batches (reading on for validation rows if needed)."""
        return Epoch(self._batches(generator))

    def _batches(self, generator: torch.Generator) -> Iterator[Batch]:
        order = torch.randperm(len(self.source.pieces), generator=generator).tolist()
        buffer = ShuffleBuffer(self.buffer_rows, self._batch, generator)
        valid = self.validation
        collect = valid is not None and not valid.complete
        emitted = 0
        batches = self.source.batches(self.encoder.columns, batch_rows=self.read_rows, order=order)
        for start, frame in batches:
            if emitted >= self._steps and not collect:
                break
            x, y, w, in_valid, positions = self.encoder.encode(start, frame)
            if collect and valid is not None:
                keep = in_valid & (row_uniform(positions, ~self.seed) < self.validation_keep)
                valid.add(*_rows(x, y, w, keep))
            if emitted >= self._steps:
                continue
            for batch in buffer.push(*_rows(x, y, w, ~in_valid)):
                if emitted < self._steps:
                    emitted += 1
                    yield batch
        for batch in buffer.drain():
            if emitted >= self._steps:
                break
            emitted += 1
            yield batch
        if valid is not None:
            valid.complete = True


def _rows(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None, mask: NDArray[np.bool_]
) -> Batch:
    index = torch.from_numpy(np.flatnonzero(mask)).to(x.device)
    kept_w = None if w is None else w.index_select(0, index)
    return x.index_select(0, index), y.index_select(0, index), kept_w
