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
    "BatchEncoder",
    "BatchSource",
    "EncodedRows",
    "Epoch",
    "InMemoryBatches",
    "ShuffleBuffer",
    "StreamedBatches",
    "encode_rows",
]


@dataclass
class Epoch:
    """One pass of a batch source: the batches, and their labels in order if known."""

    batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    labels: torch.Tensor | None = None


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
    """Encoded rows (float32 features and 0/1 labels) in one growing block on the device.

    One block rather than a list of small chunks: small tensors kept alive while large
    temporaries come and go fragment the C heap, which showed as the process's memory
    growing through the first epoch.
    """

    def __init__(self, width: int, capacity: int, device: torch.device) -> None:
        self._x = torch.empty((max(capacity, 1), width), dtype=torch.float32, device=device)
        self._y = torch.empty(max(capacity, 1), dtype=torch.float32, device=device)
        self.n_rows = 0
        self.complete = False
        #: The global position of each row, when kept (rows encoded once, in memory).
        self.positions: list[NDArray[np.int64]] = []

    def reserve(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Room for ``n`` more rows, as views to write into (counted as added)."""
        end = self.n_rows + n
        if end > self._x.shape[0]:  # grows by half when full, which the estimate avoids
            size = max(end, self._x.shape[0] * 3 // 2)
            x = self._x.new_empty((size, self._x.shape[1]))
            y = self._y.new_empty(size)
            x[: self.n_rows], y[: self.n_rows] = self._x[: self.n_rows], self._y[: self.n_rows]
            self._x, self._y = x, y
        views = self._x[self.n_rows : end], self._y[self.n_rows : end]
        self.n_rows = end
        return views

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Append rows."""
        xs, ys = self.reserve(int(x.shape[0]))
        xs.copy_(x)
        ys.copy_(y)

    @property
    def x(self) -> torch.Tensor:
        """The features."""
        return self._x[: self.n_rows]

    @property
    def y(self) -> torch.Tensor:
        """The labels."""
        return self._y[: self.n_rows]


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
    """

    def __init__(
        self,
        encoder: TabularEncoder,
        inputs: InputEncoder,
        target: str,
        label_values: Sequence[Any],
        split: SplitRule,
        device: torch.device,
    ) -> None:
        self.encoder = encoder
        self.inputs = inputs
        self.target = target
        self.label_values = list(label_values)
        self.split = split
        self.device = device
        self.columns = [*encoder.input_columns, target]
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
        """``frame`` without rows whose target is missing (dropped), their validation
        flags and their global positions."""
        positions = np.arange(start, start + len(frame), dtype=np.int64)
        in_valid = self.split.mask(start, len(frame))
        present = frame[self.target].notna().to_numpy()
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

    @torch.no_grad()
    def encode(
        self, start: int, frame: pd.DataFrame
    ) -> tuple[torch.Tensor, torch.Tensor, NDArray[np.bool_], NDArray[np.int64]]:
        """Features, labels, validation flags and positions of the kept rows of ``frame``."""
        frame, in_valid, positions = self.rows(start, frame)
        x_num, x_cat = self.raw(start, frame)
        out = torch.empty((len(frame), self.width), dtype=torch.float32, device=self.device)
        self.inputs.encode(x_num, x_cat, out, nan_free=self.nan_free)
        self.out_of_fold(out, x_cat, positions, np.flatnonzero(~in_valid))
        y = torch.from_numpy(self.labels(frame[self.target])).to(self.device)
        return out, y, in_valid, positions

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
    train = EncodedRows(encoder.width, n_train, device)
    valid = EncodedRows(encoder.width, n_valid, device) if n_valid else None
    for start, frame in source.batches(encoder.columns, batch_rows=read_rows):
        kept, in_valid, positions = encoder.rows(start, frame)
        x_num, x_cat = encoder.raw(start, kept)
        y = encoder.labels(kept[encoder.target])
        for block, rows in ((train, ~in_valid), (valid, in_valid)):
            index = np.flatnonzero(rows)
            if block is None or not index.size:
                continue
            xs, ys = block.reserve(index.size)
            block.positions.append(positions[index])
            every = index.size == len(kept)
            encoder.inputs.encode(
                x_num, x_cat, xs, None if every else index, nan_free=encoder.nan_free
            )
            if block is train:
                written = np.arange(index.size, dtype=np.intp)
                encoder.out_of_fold(xs, x_cat, positions, index, written)
            ys.copy_(torch.from_numpy(np.array(y if every else y[index], dtype=np.float32)))
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
    ) -> None:
        self.x = x
        self.y = y
        #: The global position of each row (for folds fixed by the rows, not their order).
        self.positions = positions
        n = int(x.shape[0])
        self._batch = n if batch_size is None or batch_size >= n else int(batch_size)
        self._max_steps = max_steps
        self._order: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None

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
            return Epoch(iter([(self.x, self.y)]), self.y)
        n = self.n_rows
        # int32 indices (half the memory of int64) while the rows fit in them; the buffers
        # are kept from epoch to epoch (row-sized temporaries fragment the heap).
        index_dtype = torch.int32 if n < 2**31 else torch.int64
        if self._order is None or self._order.dtype != index_dtype:
            self._order = torch.empty(n, dtype=index_dtype)
            self._labels = torch.empty_like(self.y)
        assert self._labels is not None
        order = torch.randperm(n, generator=generator, out=self._order).to(self.x.device)
        labels = torch.index_select(self.y, 0, order, out=self._labels)
        bs = self._batch

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for start in range(0, min(n, self.steps * bs), bs):
                stop = min(start + bs, n)
                yield self.x.index_select(0, order[start:stop]), labels[start:stop]

        return Epoch(batches(), labels)


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
        self._px: torch.Tensor | None = None  # the permuted rows being emitted
        self._py: torch.Tensor | None = None

    def push(self, x: torch.Tensor, y: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Add rows; yield the batches that leave the buffer."""
        n = int(x.shape[0])
        if n:
            self._reserve(x, y, self.size + n)
            assert self._x is not None and self._y is not None
            self._x[self.size : self.size + n] = x
            self._y[self.size : self.size + n] = y
            self.size += n
        if self.size >= self.capacity:
            yield from self._emit(keep=self.capacity // 2)

    def drain(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield every row left, the last batch possibly smaller."""
        yield from self._emit(keep=0)

    def _reserve(self, x: torch.Tensor, y: torch.Tensor, rows: int) -> None:
        if self._x is not None and self._y is not None and rows <= self._x.shape[0]:
            return
        # Room for the buffer plus a chunk as large as the one that did not fit.
        size = max(rows, self.capacity + int(x.shape[0]))
        old_x, old_y = self._x, self._y
        self._x = x.new_empty((size, *x.shape[1:]))
        self._y = y.new_empty((size, *y.shape[1:]))
        self._px, self._py = torch.empty_like(self._x), torch.empty_like(self._y)
        if old_x is not None and old_y is not None and self.size:
            self._x[: self.size] = old_x[: self.size]
            self._y[: self.size] = old_y[: self.size]

    def _emit(self, keep: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not self.size:
            return
        assert self._x is not None and self._y is not None
        assert self._px is not None and self._py is not None
        size, bs = self.size, self.batch_size
        order = torch.randperm(size, generator=self.generator).to(self._x.device)
        px, py = self._px[:size], self._py[:size]
        torch.index_select(self._x[:size], 0, order, out=px)
        torch.index_select(self._y[:size], 0, order, out=py)
        n_out = size if keep == 0 else (size - keep) // bs * bs
        # The rows that stay move to the front of the held block; the batches are views
        # of the permuted block, which is only rewritten at the next emission.
        self._x[: size - n_out] = px[n_out:]
        self._y[: size - n_out] = py[n_out:]
        self.size = size - n_out
        for start in range(0, n_out, bs):
            stop = min(start + bs, n_out)
            yield px[start:stop], py[start:stop]


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

    def sample(self, n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n_rows`` training rows in file order (for the learning-rate range
        test and the stall detector's saturation check), read from the first pieces only."""
        xs, ys, held = [], [], 0
        for start, frame in self.source.batches(self.encoder.columns, batch_rows=self.read_rows):
            x, y, in_valid, _ = self.encoder.encode(start, frame)
            index = torch.from_numpy(np.flatnonzero(~in_valid)[: n_rows - held]).to(x.device)
            xs.append(x.index_select(0, index))
            ys.append(y.index_select(0, index))
            held += int(index.numel())
            if held >= n_rows:
                break
        return torch.cat(xs), torch.cat(ys)

    def epoch(self, generator: torch.Generator) -> Epoch:
        """This epoch's ``steps`` mini-batches (reading on for validation rows if needed)."""
        return Epoch(self._batches(generator))

    def _batches(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.source.pieces), generator=generator).tolist()
        buffer = ShuffleBuffer(self.buffer_rows, self._batch, generator)
        valid = self.validation
        collect = valid is not None and not valid.complete
        emitted = 0
        batches = self.source.batches(self.encoder.columns, batch_rows=self.read_rows, order=order)
        for start, frame in batches:
            if emitted >= self._steps and not collect:
                break
            x, y, in_valid, positions = self.encoder.encode(start, frame)
            if collect and valid is not None:
                keep = in_valid & (row_uniform(positions, ~self.seed) < self.validation_keep)
                valid.add(*_rows(x, y, keep))
            if emitted >= self._steps:
                continue
            for batch in buffer.push(*_rows(x, y, ~in_valid)):
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
    x: torch.Tensor, y: torch.Tensor, mask: NDArray[np.bool_]
) -> tuple[torch.Tensor, torch.Tensor]:
    index = torch.from_numpy(np.flatnonzero(mask)).to(x.device)
    return x.index_select(0, index), y.index_select(0, index)
