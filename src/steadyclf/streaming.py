"""Train on data larger than memory: read Parquet or CSV in pieces, in several passes.

A :class:`DataSource` is a Parquet file, a directory of Parquet files, a glob, or CSV files
read in blocks. Each row has a *global position* (its index when all files are read in
sorted order), so the per-row hash split of :mod:`steadyclf.splitting` puts it on the same
side as in memory, whatever the order or the process that reads it.

Training from a source takes several passes:

1. :func:`fit_statistics` reads every row once and computes what the in-memory estimator
   fits: column roles, category vocabularies (capped, most frequent first), which numeric
   columns had missing values, and float64 mean/variance on the training rows
   (:class:`~steadyclf.scaling.RunningStats`, merged chunk by chunk and across processes);
2. the medians used for imputation are then selected exactly by a radix search on the
   columns that need one (one or two more reads of those columns only);
3. each epoch reads the pieces in a new random order and feeds mini-batches through a
   bounded shuffle buffer (:class:`StreamTrainer`).

Memory stays bounded by ``memory_budget``: it sizes the read batches, the shuffle buffer
and the validation cache (a hash-chosen subsample of the validation rows when all of them
would not fit). Under ``torchrun`` each process reads only its share of the rows (see
:mod:`steadyclf.distributed`).
"""

from __future__ import annotations

import glob
import math
import os
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import torch
from numpy.typing import NDArray
from torch import nn

from .exceptions import DataError, ParameterError
from .network import SteadyNet
from .scaling import RunningStats
from .splitting import row_uniform, validation_mask
from .tabular import (
    _ID_REASON,
    ID_LIKE_MIN_ROWS,
    MAX_CATEGORIES,
    MISSING_CODE,
    MOSTLY_NUMERIC,
    NUMERIC_ROLES,
    UNSEEN_CODE,
    ColumnInfo,
    TabularEncoder,
    _as_category_strings,
    _forced_numeric_role,
    _looks_like_dates,
    _plain,
    column_values,
    encode_categories,
    encode_labels,
)
from .threads import intra_op_threads, threads_for
from .training import Callback, TrainConfig, Trainer, make_optimizer, make_scheduler

if TYPE_CHECKING:
    from .distributed import DistributedContext
    from .estimator import BinaryClassifier

__all__ = [
    "DataSource",
    "Piece",
    "ShuffleBuffer",
    "StreamStatistics",
    "StreamTrainer",
    "StreamingData",
    "default_memory_budget",
    "estimate_in_memory_bytes",
    "fit_statistics",
    "fit_streaming",
    "parse_memory_size",
]

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")
#: Rows per record batch read, at most (the budget may make it smaller).
MAX_READ_ROWS = 1 << 16
MIN_READ_ROWS = 1 << 10
#: Distinct levels counted per categorical column before the rarest are pruned.
MAX_COUNTED_LEVELS = 1 << 16
#: The in-memory path holds several copies of the data (Arrow, pandas, encoded arrays,
#: tensors): this many times its Arrow size, measured on the heart-rate and benchmark data.
IN_MEMORY_COPIES = 4
#: Bits of the float64 sort key resolved by each histogram pass of the median search.
_RADIX_BITS = 16


# -- memory sizes ------------------------------------------------------------------------
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?i?)b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_memory_size(text: str | int) -> int:
    """Bytes in ``text``: ``"200MB"``, ``"1.5GiB"``, ``"4g"`` or a plain number of bytes.

    Examples
    --------
    >>> parse_memory_size("200MB"), parse_memory_size("1KiB"), parse_memory_size(512)
    (200000000, 1024, 512)
    """
    if isinstance(text, int):
        size = text
    else:
        match = _SIZE.match(str(text))
        if not match:
            raise ParameterError(
                f"memory size {text!r} is not understood; write e.g. '200MB', '1.5GiB' or a number of bytes"
            )
        number, unit = float(match.group(1)), match.group(2).lower()
        factor = 1024 ** "kmgt".index(unit[0]) * 1024 if unit.endswith("i") else _UNITS[unit]
        size = int(number * factor)
    if size <= 0:
        raise ParameterError(f"memory size must be positive; got {text!r}")
    return size


def default_memory_budget() -> int:
    """Half of the memory available now (``MemAvailable``), or of the physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 4 * 10**9


# -- the data source -----------------------------------------------------------------------
@dataclass(frozen=True)
class Piece:
    """Rows read as one unit: a Parquet row group (or a slice of it), or a CSV file.

    ``start`` is the global position of the piece's first row; ``skip`` rows of the row
    group before it belong to another process. ``n_rows`` and ``start`` are -1 for a CSV
    file that has not been counted yet.
    """

    path: str
    row_group: int | None
    start: int
    n_rows: int
    skip: int = 0


def resolve_paths(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files named by a file, a directory (searched recursively) or a glob, sorted."""
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    found: list[Path] = []
    for item in specs:
        path = Path(item)
        if path.is_dir():
            found += [
                p
                for p in sorted(path.rglob("*"))
                if p.is_file() and _suffix(p) and not p.name.startswith((".", "_"))
            ]
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(str(item)):
            matches = sorted(Path(m) for m in glob.glob(str(item), recursive=True))
            found += [m for m in matches if m.is_file()]
            if not matches:
                raise DataError(f"no file matches {str(item)!r}")
        else:
            raise DataError(f"data file {str(item)!r} does not exist")
    if not found:
        raise DataError(f"no Parquet or CSV file in {', '.join(map(str, specs))}")
    return sorted(dict.fromkeys(found))


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in (*PARQUET_SUFFIXES, *CSV_SUFFIXES):
        if name.endswith(suffix):
            return "parquet" if suffix in PARQUET_SUFFIXES else "csv"
    return ""


class DataSource:
    """Parquet or CSV files read piece by piece, each row with a global position.

    Parameters
    ----------
    paths : list of Path
        The files, in the order that defines row positions.
    format : {'parquet', 'csv'}
    schema : pyarrow.Schema
        Columns and types, the same for every file.
    pieces : list of Piece
        What :meth:`batches` reads; a shard holds a subset.

    Use :meth:`open` to create one.

    Examples
    --------
    >>> source = DataSource.open("data/*.parquet")  # doctest: +SKIP
    >>> for start, frame in source.batches(["x", "y"], batch_rows=4096):  # doctest: +SKIP
    ...     ...
    """

    def __init__(
        self,
        paths: list[Path],
        format: str,
        schema: pa.Schema,
        pieces: list[Piece],
        *,
        total_rows: int | None,
        nbytes: int,
        csv_block_size: int = 1 << 22,
    ) -> None:
        self.paths = paths
        self.format = format
        self.schema = schema
        self.pieces = pieces
        self.total_rows = total_rows
        self.nbytes = nbytes
        self.csv_block_size = csv_block_size
        #: CSV columns without a value in the first block (pandas reads an empty column
        #: as float64).
        self.untyped: frozenset[str] = frozenset()

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        csv_block_size: int = 1 << 22,
    ) -> DataSource:
        """Open a Parquet file, a directory of Parquet files, a glob or CSV file(s)."""
        paths = resolve_paths(spec)
        kinds = {_suffix(p) or "parquet" for p in paths}
        if len(kinds) > 1:
            raise DataError(
                f"the data mixes Parquet and CSV files ({paths[0]}, ...); use one format"
            )
        if kinds == {"csv"}:
            return cls._open_csv(paths, csv_block_size)
        return cls._open_parquet(paths)

    @classmethod
    def _open_parquet(cls, paths: list[Path]) -> DataSource:
        pieces: list[Piece] = []
        schema: pa.Schema | None = None
        position = nbytes = 0
        for path in paths:
            try:
                meta = pq.read_metadata(path)
                file_schema = pq.read_schema(path)
            except (pa.ArrowException, OSError) as exc:
                raise DataError(f"cannot read Parquet file {str(path)!r}: {exc}") from None
            if schema is None:
                schema = file_schema
            elif file_schema.names != schema.names:
                raise DataError(
                    f"Parquet file {str(path)!r} has columns {file_schema.names} but {str(paths[0])!r} has {schema.names}; every file must have the same columns"
                )
            for rg in range(meta.num_row_groups):
                n = meta.row_group(rg).num_rows
                nbytes += meta.row_group(rg).total_byte_size
                if n:
                    pieces.append(Piece(str(path), rg, position, n))
                position += n
        assert schema is not None
        return cls(paths, "parquet", schema, pieces, total_rows=position, nbytes=nbytes)

    @classmethod
    def _open_csv(cls, paths: list[Path], block_size: int) -> DataSource:
        try:
            with pacsv.open_csv(
                paths[0],
                read_options=pacsv.ReadOptions(block_size=block_size),
                parse_options=_csv_parse_options(paths[0]),
                convert_options=_csv_convert_options(),
            ) as reader:
                inferred = reader.schema
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"cannot read CSV file {str(paths[0])!r}: {exc}") from None
        # Read as text: a column empty in the first block (typed 'null'), so that a value
        # further down does not break the read, and dates, which pandas' reader (the
        # in-memory path) keeps as text too.
        schema = pa.schema(
            [pa.field(f.name, pa.string()) if _csv_reads_as_text(f.type) else f for f in inferred]
        )
        pieces = [Piece(str(p), None, -1, -1) for p in paths]
        nbytes = sum(p.stat().st_size for p in paths)
        source = cls(
            paths, "csv", schema, pieces, total_rows=None, nbytes=nbytes, csv_block_size=block_size
        )
        source.untyped = frozenset(f.name for f in inferred if pa.types.is_null(f.type))
        return source

    # -- layout --------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        """Column names."""
        return list(self.schema.names)

    @property
    def counted(self) -> bool:
        """Whether every piece's global position is known (always for Parquet)."""
        return all(p.start >= 0 for p in self.pieces)

    @property
    def n_rows(self) -> int:
        """Rows in this source (or shard); requires :attr:`counted`."""
        if not self.counted:
            raise RuntimeError("the CSV rows have not been counted yet")
        return sum(p.n_rows for p in self.pieces)

    def with_row_counts(self, counts: Sequence[int]) -> DataSource:
        """This source with the row count of each CSV piece known (in file order)."""
        pieces, position = [], 0
        for piece, n in zip(self.pieces, counts, strict=True):
            pieces.append(replace(piece, start=position, n_rows=int(n)))
            position += int(n)
        return self._with_pieces(pieces, total_rows=position)

    def _with_pieces(self, pieces: list[Piece], total_rows: int | None = None) -> DataSource:
        source = DataSource(
            self.paths,
            self.format,
            self.schema,
            pieces,
            total_rows=self.total_rows if total_rows is None else total_rows,
            nbytes=self.nbytes,
            csv_block_size=self.csv_block_size,
        )
        source.untyped = self.untyped
        return source

    def shard(self, rank: int, world_size: int) -> DataSource:
        """The share of process ``rank`` out of ``world_size``: about 1/N of the rows.

        Parquet: the contiguous range of global rows ``[rank*N/W, (rank+1)*N/W)``, read
        from the row groups that overlap it (a row group on a boundary is read in part by
        two processes). CSV: whole files, balanced by size; this needs at least as many
        files as processes.
        """
        if world_size == 1:
            return self
        if self.format == "csv":
            return self._shard_files(rank, world_size)
        total = sum(p.n_rows for p in self.pieces)
        lo, hi = total * rank // world_size, total * (rank + 1) // world_size
        mine = []
        for piece in self.pieces:
            first, last = max(piece.start, lo), min(piece.start + piece.n_rows, hi)
            if first < last:
                mine.append(
                    replace(
                        piece,
                        start=first,
                        n_rows=last - first,
                        skip=piece.skip + first - piece.start,
                    )
                )
        return self._with_pieces(mine)

    def _shard_files(self, rank: int, world_size: int) -> DataSource:
        if len(self.pieces) < world_size:
            raise DataError(
                f"{len(self.pieces)} CSV file(s) cannot be shared by {world_size} processes; split the data into at least {world_size} files or convert it to Parquet"
            )
        sizes = np.array([Path(p.path).stat().st_size for p in self.pieces], dtype=np.float64)
        # File i goes to the process whose equal share of the bytes holds its middle...
        middles = (np.cumsum(sizes) - sizes / 2) / max(sizes.sum(), 1.0)
        owner = np.minimum((middles * world_size).astype(np.int64), world_size - 1)
        if len(np.unique(owner)) < world_size:
            # ...unless that leaves a process without a file: then equal numbers of files.
            owner = np.arange(len(self.pieces)) * world_size // len(self.pieces)
        return self._with_pieces([p for p, o in zip(self.pieces, owner, strict=True) if o == rank])

    # -- reading -------------------------------------------------------------------------
    def batches(
        self,
        columns: Sequence[str],
        *,
        batch_rows: int = MAX_READ_ROWS,
        order: Sequence[int] | None = None,
    ) -> Iterator[tuple[int, pd.DataFrame]]:
        """Yield ``(global position of the first row, frame)`` for each record batch.

        ``order`` lists piece indices (default: all, in order). CSV pieces that were not
        counted are numbered as they are read, which requires the natural order.
        """
        missing = [c for c in columns if c not in self.schema.names]
        if missing:
            raise DataError(f"column(s) {missing} not in the data; columns: {self.columns}")
        indices = range(len(self.pieces)) if order is None else order
        if not self.counted and order is not None:
            raise RuntimeError("CSV pieces must be counted before they are read out of order")
        counting = not self.counted
        position, counts = 0, []
        for i in indices:
            piece = self.pieces[i]
            start = piece.start if piece.start >= 0 else position
            position = start
            for offset, frame in self._read_piece(piece, list(columns), batch_rows):
                yield start + offset, frame
                position = start + offset + len(frame)
            counts.append(position - start)
        if counting:
            # Read in file order to the end: every CSV file's row count is known now.
            self.pieces = self.with_row_counts(counts).pieces
            self.total_rows = position

    def _read_piece(
        self, piece: Piece, columns: list[str], batch_rows: int
    ) -> Iterator[tuple[int, pd.DataFrame]]:
        """``(offset within the piece, frame)`` per record batch."""
        batches = self._parquet_batches if piece.row_group is not None else self._csv_batches
        offset = 0
        try:
            for batch in batches(piece, columns, batch_rows):
                # Keep only the rows of this piece (a shard may own part of a row group).
                lo = max(0, piece.skip - offset)
                hi = min(batch.num_rows, piece.skip + piece.n_rows - offset)
                if piece.n_rows < 0:
                    hi = batch.num_rows
                if lo < hi:
                    yield offset + lo - piece.skip, batch.slice(lo, hi - lo).to_pandas()
                offset += batch.num_rows
                if piece.n_rows >= 0 and offset >= piece.skip + piece.n_rows:
                    return
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(
                f"cannot read {piece.path!r} near row {piece.start + offset}: {_first_line(exc)}"
            ) from None

    def _parquet_batches(
        self, piece: Piece, columns: list[str], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        assert piece.row_group is not None
        # Small read buffers (one per column) and no pre-buffering: memory follows the
        # batch, not the row group.
        with pq.ParquetFile(piece.path, buffer_size=1 << 16, pre_buffer=False) as f:
            yield from f.iter_batches(
                batch_size=batch_rows, row_groups=[piece.row_group], columns=columns
            )

    def _csv_batches(
        self, piece: Piece, columns: list[str], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        types = {name: self.schema.field(name).type for name in columns}
        with pacsv.open_csv(
            piece.path,
            read_options=pacsv.ReadOptions(block_size=self.csv_block_size),
            parse_options=_csv_parse_options(piece.path),
            convert_options=_csv_convert_options(column_types=types, include_columns=columns),
        ) as reader:
            yield from reader

    def count_rows(self) -> list[int]:
        """Rows per piece (reads CSV files once, one column only)."""
        if self.counted:
            return [p.n_rows for p in self.pieces]
        first = self.columns[:1]
        counts = []
        for piece in self.pieces:
            counts.append(sum(b.num_rows for b in self._csv_batches(piece, first, 0)))
        return counts


#: What pandas' CSV reader (the in-memory path) takes for a missing value.
PANDAS_NA_VALUES = (
    *("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND"),
    *("1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"),
)


def _csv_convert_options(**options: Any) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(
        null_values=list(PANDAS_NA_VALUES), strings_can_be_null=True, **options
    )


def _csv_parse_options(path: str | os.PathLike[str]) -> pacsv.ParseOptions:
    tab = str(path).lower().endswith((".tsv", ".tsv.gz"))
    return pacsv.ParseOptions(delimiter="\t" if tab else ",")


def _csv_reads_as_text(typ: pa.DataType) -> bool:
    return bool(
        pa.types.is_null(typ)
        or pa.types.is_timestamp(typ)
        or pa.types.is_date(typ)
        or pa.types.is_time(typ)
    )


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def estimate_in_memory_bytes(source: DataSource) -> int:
    """Rough peak memory of training on ``source`` in memory (several copies of it)."""
    # CSV text is about as large as the Arrow columns it parses into.
    return IN_MEMORY_COPIES * source.nbytes


def read_rows_for_budget(row_bytes: int, budget: int, share: int = 32) -> int:
    """Rows per record batch: a batch and its copies take about ``1/share`` of the budget."""
    rows = budget // share // max(1, IN_MEMORY_COPIES * row_bytes)
    return int(min(MAX_READ_ROWS, max(MIN_READ_ROWS, rows)))


def arrow_row_bytes(schema: pa.Schema, columns: Sequence[str]) -> int:
    """Approximate bytes per row of ``columns`` once decoded (strings count 32 bytes)."""
    total = 0
    for name in columns:
        typ = schema.field(name).type
        try:
            total += max(1, typ.bit_width // 8)
        except ValueError:
            total += 32
    return total + 8


# -- pass 1: every fitted statistic ------------------------------------------------------------
@dataclass
class SplitRule:
    """How rows are split: validation rows are ``row_uniform(position, seed) < fraction``."""

    fraction: float
    seed: int

    def mask(self, start: int, n: int) -> NDArray[np.bool_]:
        """Validation flags of the rows at positions ``start .. start + n - 1``."""
        if self.fraction <= 0:
            return np.zeros(n, dtype=bool)
        return validation_mask(
            np.arange(start, start + n, dtype=np.int64), self.fraction, self.seed
        )


def _arrow_kind(typ: pa.DataType) -> str:
    """What pandas makes of a column: 'bool', 'datetime', 'int', 'float', 'category', 'text'."""
    if pa.types.is_boolean(typ):
        return "bool"
    if pa.types.is_timestamp(typ):
        return "datetime"
    if pa.types.is_integer(typ):
        return "int"
    if pa.types.is_floating(typ):
        return "float"
    if pa.types.is_dictionary(typ):
        return "category"
    return "text"


_UNSET: Any = object()


@dataclass
class _Column:
    """What one pass learns about one feature column, mergeable across chunks/processes.

    Enough to take every decision of :meth:`TabularEncoder.fit` on the whole column:
    missing values, constant or not, a different value on every row (ID-like) or not,
    how many text values are numbers, the first distinct values (dates?), level counts.
    """

    name: str
    kind: str
    n_rows: int = 0
    n_missing: int = 0
    dtypes: list[str] = field(default_factory=list)
    first_present: Any = _UNSET  # the first value that is not missing
    differs: bool = False  # two present values differ
    unique: bool = True  # no present value seen twice (so far)
    # Sorted hashes of the values while checking `unique`; None past the size limit.
    hashes: NDArray[np.uint64] | None = field(default_factory=lambda: np.empty(0, np.uint64))
    n_numbers: int = 0  # present values that parse as numbers (text columns)
    non_number: tuple[int, Any] | None = None  # first (row, value) that does not
    sample: list[Any] = field(default_factory=list)  # first distinct present values
    levels: Counter[str] | None = None
    pruned: bool = False
    forced_role: str | None = None  # numeric role of a column listed as numeric

    def merge(self, other: _Column) -> _Column:
        """Add ``other`` (rows that come after this one's) in place; return ``self``."""
        self.differs |= other.differs or _differ(self.first_present, other.first_present)
        if self.first_present is _UNSET:
            self.first_present = other.first_present
        self.forced_role = self.forced_role or other.forced_role
        self.n_rows += other.n_rows
        self.n_missing += other.n_missing
        self.dtypes += [d for d in other.dtypes if d not in self.dtypes]
        self._merge_hashes(other)
        self.n_numbers += other.n_numbers
        if self.non_number is None:
            self.non_number = other.non_number
        self.sample = _first_distinct([*self.sample, *other.sample])
        if other.levels is not None:
            self.levels = (self.levels or Counter()) + other.levels
        self.pruned |= other.pruned
        return self

    def _merge_hashes(self, other: _Column) -> None:
        if not (self.unique and other.unique):
            self.unique, self.hashes = False, None
        elif self.hashes is None or other.hashes is None:
            self.hashes = None  # too many values to check: no repeat so far counts as unique
        elif np.isin(other.hashes, self.hashes).any():
            self.unique, self.hashes = False, None
        else:
            self.hashes = np.union1d(self.hashes, other.hashes)

    @property
    def n_present(self) -> int:
        """Rows with a value."""
        return self.n_rows - self.n_missing


def _differ(a: Any, b: Any) -> bool:
    if a is _UNSET or b is _UNSET:
        return False
    return bool(pd.isna(a) != pd.isna(b) or (not pd.isna(a) and a != b))


#: Distinct values kept to decide whether a text column holds dates (as in memory).
_DATE_SAMPLE = 200


def _first_distinct(values: Sequence[Any]) -> list[Any]:
    return list(dict.fromkeys(values))[:_DATE_SAMPLE]


@dataclass
class _Tally:
    """Partial statistics of some rows, mergeable across chunks and processes.

    ``numeric`` lists the columns that may end up with a numeric role; their values are
    tallied on training and validation rows separately (the split is only known to be
    usable at the end), as statistics of ``x - shift``: the shift (a value of the column)
    keeps the chunk means small, so that merging thousands of chunks of ``1e6 + 1e-6 *
    x`` loses no precision.
    """

    columns: dict[str, _Column]
    numeric: list[str]
    labels: dict[Any, list[int]] = field(default_factory=dict)  # value -> [train, valid]
    n_rows: int = 0
    shift: NDArray[np.float64] = field(init=False)
    train: RunningStats = field(init=False)
    valid: RunningStats = field(init=False)
    train_missing: NDArray[np.int64] = field(init=False)
    valid_missing: NDArray[np.int64] = field(init=False)
    low: NDArray[np.float64] = field(init=False)
    high: NDArray[np.float64] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.numeric)
        self.shift = np.zeros(n)
        self.train, self.valid = RunningStats.empty(n), RunningStats.empty(n)
        self.train_missing = np.zeros(n, dtype=np.int64)
        self.valid_missing = np.zeros(n, dtype=np.int64)
        self.low, self.high = np.full(n, np.inf), np.full(n, -np.inf)

    def add_numeric(self, x: NDArray[np.float64], in_valid: NDArray[np.bool_]) -> None:
        """Tally a block of numeric values (one column per ``numeric`` name)."""
        unset = (self.train.count + self.valid.count) == 0
        if unset.any():
            first = _first_finite(x)
            self.shift = np.where(unset & ~np.isnan(first), first, self.shift)
        missing = np.isnan(x)
        self.train_missing += missing[~in_valid].sum(axis=0)
        self.valid_missing += missing[in_valid].sum(axis=0)
        self.train.update(x[~in_valid] - self.shift)
        self.valid.update(x[in_valid] - self.shift)
        with np.errstate(invalid="ignore"):
            self.low = np.fmin(self.low, np.nanmin(x, axis=0, initial=np.inf))
            self.high = np.fmax(self.high, np.nanmax(x, axis=0, initial=-np.inf))

    def merge(self, other: _Tally) -> _Tally:
        """Add ``other`` (rows after these) in place; return ``self``."""
        for name, column in other.columns.items():
            self.columns[name].merge(column)
        for value, (t, v) in other.labels.items():
            counts = self.labels.setdefault(value, [0, 0])
            counts[0] += t
            counts[1] += v
        self.n_rows += other.n_rows
        # Re-express the other statistics relative to this tally's shift (exact for
        # nearby values) and adopt the other's shift where this one has seen nothing.
        unset = (self.train.count + self.valid.count) == 0
        self.shift = np.where(unset, other.shift, self.shift)
        offset = other.shift - self.shift
        for mine, theirs in ((self.train, other.train), (self.valid, other.valid)):
            mine.merge(replace(theirs, mean=theirs.mean + offset))
        self.train_missing += other.train_missing
        self.valid_missing += other.valid_missing
        self.low, self.high = np.fmin(self.low, other.low), np.fmax(self.high, other.high)
        return self

    def select(self, stats: RunningStats, columns: list[int]) -> RunningStats:
        """``stats`` of some numeric columns only (still relative to their shift)."""
        per_column = {
            f.name: np.asarray(getattr(stats, f.name))[columns].copy()
            for f in fields(stats)
            if f.init and isinstance(getattr(stats, f.name), np.ndarray)
        }
        return RunningStats(**per_column)


def _first_finite(x: NDArray[np.float64]) -> NDArray[np.float64]:
    finite = ~np.isnan(x)
    first = x[finite.argmax(axis=0), np.arange(x.shape[1])]
    return np.where(finite.any(axis=0), first, np.nan)


@dataclass
class ColumnPlan:
    """Overrides and column kinds known from the schema before reading."""

    features: list[str]
    target: str
    kinds: dict[str, str]
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    untyped: frozenset[str] = frozenset()

    @classmethod
    def from_schema(
        cls,
        schema: pa.Schema,
        target: str,
        *,
        categorical: Sequence[str] = (),
        numeric: Sequence[str] = (),
        drop: Sequence[str] = (),
    ) -> ColumnPlan:
        """Check the target and the overrides against the columns of ``schema``."""
        names = list(schema.names)
        if target not in names:
            raise DataError(f"target column {target!r} is not in the data; columns: {names}")
        features = [n for n in names if n != target]
        # The in-memory encoder checks the same things, with the same messages.
        TabularEncoder(categorical, numeric, drop)._check_overrides(
            pd.DataFrame(columns=pd.Index(features))
        )
        kinds = {n: _arrow_kind(schema.field(n).type) for n in features}
        return cls(features, target, kinds, tuple(categorical), tuple(numeric), tuple(drop))

    @property
    def numeric_candidates(self) -> list[str]:
        """Columns that may get a numeric role (their values are tallied)."""
        return [
            n
            for n in self.features
            if n not in self.drop
            and n not in self.categorical
            and (n in self.numeric or self.kinds[n] != "category")
        ]

    def counts_levels(self, name: str) -> bool:
        """Whether the levels of ``name`` are counted (it may end up categorical)."""
        return name in self.categorical or (
            name not in self.drop
            and name not in self.numeric
            and self.kinds[name] in ("text", "category")
        )


class _Accumulator:
    """Turns record batches into a :class:`_Tally` (one per process)."""

    def __init__(
        self, plan: ColumnPlan, split: SplitRule, *, max_levels: int, max_hashes: int
    ) -> None:
        self.plan = plan
        self.split = split
        self.max_levels = max_levels
        self.max_hashes = max_hashes
        columns = {n: _Column(n, plan.kinds[n]) for n in plan.features}
        self.tally = _Tally(columns, plan.numeric_candidates)
        # Number columns: missing values and 'constant' follow from the numeric tally
        # (NaN count, min == max), with no per-column pandas work.
        self.numbers = {
            n for n in self.tally.numeric if plan.kinds[n] in ("float", "int", "bool", "datetime")
        }

    def add(self, start: int, frame: pd.DataFrame) -> None:
        """Tally the rows of ``frame``, whose first row is at global position ``start``."""
        tally, plan = self.tally, self.plan
        n = len(frame)
        in_valid = self.split.mask(start, n)
        self._add_labels(frame[plan.target], start, in_valid)
        for name in plan.features:
            if name in self.numbers:
                self._add_number_column(tally.columns[name], frame[name])
            else:
                self._add_column(tally.columns[name], frame[name], start)
        if tally.numeric:
            x = np.column_stack(
                [self._numeric(tally.columns[c], frame[c], start) for c in tally.numeric]
            )
            tally.add_numeric(x, in_valid)
            missing = np.isnan(x).sum(axis=0)
            for j, name in enumerate(tally.numeric):
                if name in self.numbers:
                    tally.columns[name].n_missing += int(missing[j])
        tally.n_rows += n

    def _add_number_column(self, col: _Column, series: pd.Series) -> None:
        """The per-column facts of a number column that the numeric tally does not give."""
        if col.n_rows == 0 and col.name in self.plan.numeric:
            col.forced_role = _forced_numeric_role(series)
        if col.first_present is _UNSET:
            first = series.first_valid_index()
            if first is not None:
                col.first_present = series.loc[first]
        if str(series.dtype) not in col.dtypes:
            col.dtypes.append(str(series.dtype))
        if col.kind == "int" and col.unique:
            self._check_unique(col, series.dropna())
        col.n_rows += len(series)

    def _add_labels(self, y: pd.Series, start: int, in_valid: NDArray[np.bool_]) -> None:
        missing = y.isna().to_numpy()
        if missing.any():
            row = start + int(np.flatnonzero(missing)[0])
            raise DataError(
                f"the target {self.plan.target!r} is missing at row {row}; fill it in or drop that row"
            )
        for side, rows in ((0, ~in_valid), (1, in_valid)):
            for value, count in y[rows].value_counts(sort=False).items():
                self.tally.labels.setdefault(value, [0, 0])[side] += int(count)
        if len(self.tally.labels) > 2:
            seen = ", ".join(repr(v) for v in list(self.tally.labels)[:10])
            raise DataError(
                f"Only binary classification is supported: the target {self.plan.target!r} has more than 2 classes ({seen}, ...)"
            )

    def _add_column(self, col: _Column, series: pd.Series, start: int) -> None:
        present = series.dropna()
        if col.n_rows == 0 and col.name in self.plan.numeric:
            col.forced_role = _forced_numeric_role(series)
        if len(present):
            head = present.iloc[0]
            if col.first_present is _UNSET:
                col.first_present = head
            if not col.differs:
                col.differs = _differ(head, col.first_present) or bool((present != head).any())
        if str(series.dtype) not in col.dtypes:
            col.dtypes.append(str(series.dtype))
        col.n_missing += len(series) - len(present)
        if col.kind in ("text", "category", "int") and col.unique:
            self._check_unique(col, present)
        if col.kind in ("text", "category"):
            if len(col.sample) < _DATE_SAMPLE:
                head_values = present.drop_duplicates().head(_DATE_SAMPLE).tolist()
                col.sample = _first_distinct([*col.sample, *head_values])
            self._add_numbers(col, series, present, start)
        if self.plan.counts_levels(col.name):
            self._add_levels(col, series)
        col.n_rows += len(series)

    @staticmethod
    def _add_numbers(col: _Column, series: pd.Series, present: pd.Series, start: int) -> None:
        """Count the text values that parse as numbers (each distinct value parsed once)."""
        counts = present.value_counts(sort=False)
        parsed = pd.to_numeric(pd.Series(counts.index, dtype=object), errors="coerce")
        numbers = parsed.notna().to_numpy()
        col.n_numbers += int(counts.to_numpy()[numbers].sum())
        if col.non_number is None and not numbers.all():
            bad = present.isin(counts.index[~numbers]).to_numpy()
            i = int(np.flatnonzero(bad)[0])
            row = start + int(np.flatnonzero(series.notna().to_numpy())[i])
            col.non_number = (row, present.iloc[i])

    def _check_unique(self, col: _Column, present: pd.Series) -> None:
        hashes = pd.util.hash_pandas_object(present, index=False).to_numpy()
        batch = np.unique(hashes).astype(np.uint64)
        if batch.size < hashes.size:
            col.unique, col.hashes = False, None
            return
        col._merge_hashes(_Column(col.name, col.kind, hashes=batch))
        if col.hashes is not None and col.hashes.size > self.max_hashes:
            col.hashes = None

    def _add_levels(self, col: _Column, series: pd.Series) -> None:
        counts = col.levels if col.levels is not None else Counter()
        # A string column's values are its levels; other types are turned into strings.
        strings = (
            series if isinstance(series.dtype, pd.StringDtype) else _as_category_strings(series)
        )
        counts.update({str(k): int(v) for k, v in strings.value_counts().items()})
        if len(counts) > self.max_levels:
            # Keep the most frequent half: a level frequent enough to make the vocabulary
            # is counted from (nearly) its first appearance. Exact below the limit.
            kept = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: self.max_levels // 2]
            counts = Counter(dict(kept))
            col.pruned = True
        col.levels = counts

    def _numeric(self, col: _Column, series: pd.Series, start: int) -> NDArray[np.float64]:
        """The column as float64 under the numeric role it would get (NaN if none)."""
        if col.forced_role is not None:
            return column_values_at(col.name, series, col.forced_role, start)
        if col.kind in ("text", "category"):
            if col.n_numbers < col.n_present:  # not all numbers: never numeric
                return np.full(len(series), np.nan)
            return np.asarray(
                pd.to_numeric(series, errors="coerce").astype("float64"), dtype=np.float64
            )
        role = {"bool": "boolean", "datetime": "datetime"}.get(col.kind, "numeric")
        return column_values_at(col.name, series, role, start)

    def finish(self) -> _Tally:
        """The tally of every row added."""
        return self.tally


def column_values_at(name: str, series: pd.Series, role: str, start: int) -> NDArray[np.float64]:
    """:func:`~steadyclf.tabular.column_values`, with errors naming the global row."""
    try:
        return column_values(name, series, role)
    except DataError as exc:
        message = re.sub(
            r"\brow (\d+)", lambda m: f"row {start + int(m.group(1))}", str(exc), count=1
        )
        raise DataError(message) from None


@dataclass
class StreamStatistics:
    """Every statistic the model is built from, fitted on the same rows as in memory.

    Attributes
    ----------
    encoder : TabularEncoder
        Column roles and capped vocabularies (counted on all rows, as in memory).
    classes : ndarray
        The two labels; ``classes[1]`` is the positive class.
    split : SplitRule
        The validation split used (fraction 0 when there is none).
    had_missing, median : ndarray
        Per numeric column: missing values in the training rows, and their median.
    stats : RunningStats
        Mean and variance of the numeric training values after imputation.
    """

    encoder: TabularEncoder
    target: str
    feature_names: list[str]
    classes: NDArray[Any]
    split: SplitRule
    n_rows: int
    n_train: int
    n_valid: int
    n_train_positive: int
    n_valid_positive: int
    had_missing: NDArray[np.bool_]
    median: NDArray[np.float64]
    stats: RunningStats
    approximate_vocabularies: list[str] = field(default_factory=list)
    local_train: int = 0  # training rows of this process's shard
    local_valid: int = 0

    def encode_target(self, y: pd.Series) -> NDArray[np.float32]:
        """0/1 labels for target values (``classes[1]`` is 1)."""
        codes = y.map({self.classes[0]: 0.0, self.classes[1]: 1.0})
        if codes.isna().any():
            value = y[codes.isna()].iloc[0]
            raise DataError(
                f"target value {value!r} was not seen when the classes {self.classes.tolist()!r} were counted"
            )
        return np.asarray(codes.to_numpy(dtype=np.float32), dtype=np.float32)


def split_is_usable(n_valid_pos: int, n_valid_neg: int, n_train_pos: int, n_train_neg: int) -> bool:
    """The in-memory estimator's rule: both classes on both sides, and >= 10 held out."""
    return (
        min(n_valid_pos, n_valid_neg) >= 1
        and min(n_train_pos, n_train_neg) >= 1
        and n_valid_pos + n_valid_neg >= 10
    )


def fit_statistics(
    source: DataSource,
    target: str,
    *,
    validation_fraction: float = 0.1,
    seed: int = 0,
    positive: Any = None,
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
    drop: Sequence[str] = (),
    max_categories: int = MAX_CATEGORIES,
    memory_budget: int | None = None,
    context: DistributedContext | None = None,
) -> StreamStatistics:
    """Read ``source`` once (plus the median search) and fit every statistic.

    The result equals what :class:`~steadyclf.BinaryClassifier` fits in memory on the same
    rows: the encoder's column roles and vocabularies (on all rows), and the imputation
    and standardisation statistics (on the training rows of the per-row hash split).

    With ``context`` (a distributed run), ``source`` is this process's shard; the partial
    results of all processes are gathered and merged in rank order, so every process gets
    the same statistics as one process reading every file.
    """
    budget = memory_budget or default_memory_budget()
    plan = ColumnPlan.from_schema(
        source.schema, target, categorical=categorical, numeric=numeric, drop=drop
    )
    plan.untyped = source.untyped
    rule = SplitRule(validation_fraction, seed)
    # Value hashes kept per column to tell ID columns: 1/16 of the budget in all.
    max_hashes = max(1 << 16, budget // 16 // 8 // max(1, len(plan.features)))
    acc = _Accumulator(plan, rule, max_levels=MAX_COUNTED_LEVELS, max_hashes=max_hashes)
    columns = [c for c in source.columns if c == target or c in plan.features]
    # Larger batches than for training: nothing else of size is held during this pass.
    rows = read_rows_for_budget(arrow_row_bytes(source.schema, columns), budget, share=16)
    for start, frame in source.batches(columns, batch_rows=rows):
        acc.add(start, frame)
    tally = acc.finish()
    local_train = sum(t for t, _ in tally.labels.values())
    local_valid = sum(v for _, v in tally.labels.values())
    if context is not None:
        tally = _merge_in_rank_order(context.all_gather_object(tally))
    if tally.n_rows == 0:
        raise DataError(f"the data in {str(source.paths[0])!r} has no rows")
    # Through pandas, so the classes get the dtype they get in memory (object for text).
    classes = encode_labels(pd.Series(list(tally.labels)).to_numpy(), positive).classes
    pos, neg = tally.labels[classes[1]], tally.labels[classes[0]]
    if rule.fraction > 0 and not split_is_usable(pos[1], neg[1], pos[0], neg[0]):
        rule = SplitRule(0.0, seed)
    if rule.fraction == 0:
        _fold_validation_into_training(tally)
        pos, neg = [pos[0] + pos[1], 0], [neg[0] + neg[1], 0]
        local_train, local_valid = local_train + local_valid, 0
    for j, name in enumerate(tally.numeric):
        if name in acc.numbers:  # two different values <=> min < max
            tally.columns[name].differs = bool(tally.low[j] < tally.high[j])
    encoder = _fitted_encoder(plan, tally, max_categories)
    kept = [tally.numeric.index(c) for c in encoder.numeric_columns]
    had_missing = tally.train_missing[kept] > 0
    median = np.zeros(len(kept), dtype=np.float64)
    needs = np.flatnonzero(had_missing)
    if needs.size:
        numeric_infos = [c for c in encoder.columns_ if c.name in encoder.numeric_columns]
        median[needs] = exact_medians(
            source,
            [(numeric_infos[j].name, numeric_infos[j].role) for j in needs],
            [int(tally.train.count[kept[j]]) for j in needs],
            rule,
            budget=budget,
            context=context,
        )
    # Missing training values count as the median, as after imputation in memory; the
    # merge happens relative to the shift, where the numbers are small.
    seen = tally.select(tally.train, kept)
    filled = np.where(had_missing, tally.train_missing[kept], 0).astype(np.float64)
    shift = tally.shift[kept]
    seen.merge(RunningStats(filled, median - shift, np.zeros_like(median)))
    stats = replace(seen, mean=seen.mean + shift)
    return StreamStatistics(
        encoder=encoder,
        target=target,
        feature_names=plan.features,
        classes=classes,
        split=rule,
        n_rows=tally.n_rows,
        n_train=pos[0] + neg[0],
        n_valid=pos[1] + neg[1],
        n_train_positive=pos[0],
        n_valid_positive=pos[1],
        had_missing=had_missing,
        median=median,
        stats=stats,
        approximate_vocabularies=sorted(c.name for c in tally.columns.values() if c.pruned),
        local_train=local_train,
        local_valid=local_valid,
    )


def _fold_validation_into_training(tally: _Tally) -> None:
    tally.train.merge(tally.valid)
    tally.train_missing += tally.valid_missing
    tally.valid = RunningStats.empty(len(tally.numeric))
    tally.valid_missing[:] = 0


def _common_dtype(dtypes: Sequence[str]) -> str:
    """The dtype pandas gives the whole column when chunks differ (int + NaN -> float)."""
    if len(dtypes) <= 1:
        return dtypes[0] if dtypes else "object"
    try:
        return str(np.result_type(*[np.dtype(d) for d in dtypes]))
    except TypeError:
        return "object"


def _merge_in_rank_order(tallies: Sequence[_Tally]) -> _Tally:
    merged = tallies[0]
    for tally in tallies[1:]:
        merged.merge(tally)
    return merged


def _fitted_encoder(plan: ColumnPlan, tally: _Tally, max_categories: int) -> TabularEncoder:
    """The :class:`TabularEncoder` that ``fit`` on the whole table would produce."""
    encoder = TabularEncoder(plan.categorical, plan.numeric, plan.drop, max_categories)
    columns = [_column_info(plan, tally, name, max_categories) for name in plan.features]
    if not any(c.role != "dropped" for c in columns):
        reasons = "; ".join(f"{c.name}: {c.reason}" for c in columns)
        raise DataError(f"no usable feature column ({reasons})")
    encoder.columns_ = columns
    return encoder


def _column_info(plan: ColumnPlan, tally: _Tally, name: str, max_categories: int) -> ColumnInfo:
    """The role of one column, by the rules and in the order of ``TabularEncoder._infer``."""
    col = tally.columns[name]
    dtype = _common_dtype(col.dtypes)
    if name in plan.drop:
        return ColumnInfo(name, "dropped", dtype, "dropped by request")
    if col.n_present == 0:
        dtype = "float64" if name in plan.untyped else dtype
        return ColumnInfo(name, "dropped", dtype, "all values missing")
    if name in plan.categorical:
        return _categorical_info(col, dtype, max_categories)
    if name in plan.numeric:
        role = col.forced_role or "numeric"
        if col.kind in ("text", "category") and (role == "datetime") != bool(
            _looks_like_dates(pd.Series(col.sample, dtype=object))
        ):
            raise DataError(
                f"column {name!r}: whether it holds dates differs between the first rows and the rest; list it as categorical, or convert it to numbers"
            )
        return _numeric_info(tally, col, dtype, role)
    if col.n_missing == 0 and not col.differs:
        return ColumnInfo(
            name, "dropped", dtype, f"constant (every value is {_plain(col.first_present)})"
        )
    if col.kind == "datetime":
        return _numeric_info(tally, col, dtype, "datetime")
    if col.kind == "bool":
        return _numeric_info(tally, col, dtype, "boolean")
    # A distinct value on every row, counting 'missing' as one value.
    id_like = col.n_rows >= ID_LIKE_MIN_ROWS and col.unique and col.n_missing <= 1
    if col.kind == "category":
        return _categorical_info(col, dtype, max_categories)
    if col.kind == "text":
        share = col.n_numbers / col.n_present
        if share == 1.0:
            return _numeric_info(tally, col, dtype, "numeric")
        if share >= MOSTLY_NUMERIC and col.non_number is not None:
            row, value = col.non_number
            raise DataError(
                f"column {name!r} holds numbers except at row {row}: {value!r}; fix the value, or list the column as categorical"
            )
        example = _looks_like_dates(pd.Series(col.sample, dtype=object))
        if example is not None:
            return ColumnInfo(
                name,
                "dropped",
                dtype,
                f"dates (e.g. {example!r}); list the column as numeric to use it as a timestamp",
            )
        if id_like:
            return ColumnInfo(name, "dropped", dtype, _ID_REASON)
        return _categorical_info(col, dtype, max_categories)
    if id_like and col.kind == "int" and col.n_missing == 0:
        return ColumnInfo(name, "dropped", dtype, _ID_REASON)
    return _numeric_info(tally, col, dtype, "numeric")


def _categorical_info(col: _Column, dtype: str, max_categories: int) -> ColumnInfo:
    counts = col.levels or Counter()
    # Most frequent first, ties by name, as in memory.
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ColumnInfo(
        col.name,
        "categorical",
        dtype,
        levels=[str(k) for k, _ in ordered[:max_categories]],
        n_missing=col.n_missing,
        n_levels=len(ordered),
    )


def _numeric_info(tally: _Tally, col: _Column, dtype: str, role: str) -> ColumnInfo:
    j = tally.numeric.index(col.name)
    return ColumnInfo(
        col.name,
        role,
        dtype,
        low=float(tally.low[j]),
        high=float(tally.high[j]),
        n_missing=col.n_missing,
    )


# -- exact medians by radix selection ------------------------------------------------------------
def _sort_keys(x: NDArray[np.float64]) -> NDArray[np.uint64]:
    """uint64 keys in the same order as the float64 values (NaN excluded beforehand)."""
    bits = np.ascontiguousarray(x, dtype=np.float64).view(np.uint64)
    negative = (bits >> np.uint64(63)).astype(bool)
    return np.where(negative, ~bits, bits | np.uint64(1 << 63))


def _key_value(key: int) -> float:
    bits = np.uint64(key)
    raw = bits & np.uint64((1 << 63) - 1) if key >> 63 else ~bits
    return float(np.array([raw], dtype=np.uint64).view(np.float64)[0])


@dataclass
class _Target:
    """One order statistic being searched: the ``rank``-th value within ``prefix``."""

    column: int
    rank: int
    count: int  # values that share the prefix
    prefix: int = 0
    bits: int = 0
    value: float | None = None

    def matches(self, keys: NDArray[np.uint64]) -> NDArray[np.bool_]:
        if self.bits == 0:
            return np.ones(keys.shape, dtype=bool)
        return (keys >> np.uint64(64 - self.bits)) == np.uint64(self.prefix)


def _collect_limit(budget: int, n_targets: int) -> int:
    """Values collected per median for the final selection: 1/8 of the budget in all."""
    return max(1 << 16, budget // 8 // 8 // max(1, n_targets))


def exact_medians(
    source: DataSource,
    columns: Sequence[tuple[str, str]],
    counts: Sequence[int],
    split: SplitRule,
    *,
    budget: int,
    context: DistributedContext | None = None,
) -> NDArray[np.float64]:
    """``np.nanmedian`` of each ``(column, role)`` over the training rows.

    Each pass reads only these columns. Values are ordered by their float64 bit patterns; a
    pass either counts the next 16 bits of the values that share the known prefix of the
    median (a histogram), or, once few enough values share it, collects them and selects
    the exact one. Usually one or two passes. Histograms are summed and collected values
    gathered across processes, so every process finds the same medians.
    """
    targets: list[_Target] = []
    for j, n in enumerate(counts):
        for rank in sorted({(n - 1) // 2, n // 2}) if n else []:
            targets.append(_Target(j, rank, n))
    limit = _collect_limit(budget, len(targets))
    rows = read_rows_for_budget(8 * len(columns) + 8, budget)
    while any(t.value is None for t in targets):
        for t in targets:
            if t.value is None and t.bits == 64:  # every bit known: the value itself
                t.value = _key_value(t.prefix)
        open_ = [t for t in targets if t.value is None]
        if not open_:
            break
        collect = [t for t in open_ if t.count <= limit]
        refine = [t for t in open_ if t.count > limit]
        hists = np.zeros((len(refine), 1 << _RADIX_BITS), dtype=np.int64)
        found: list[list[NDArray[np.float64]]] = [[] for _ in collect]
        names = [name for name, _ in columns]
        for start, frame in source.batches(names, batch_rows=rows):
            keep = ~split.mask(start, len(frame))
            for j, (name, role) in enumerate(columns):
                x = column_values_at(name, frame[name], role, start)[keep]
                x = x[~np.isnan(x)]
                keys = _sort_keys(x)
                for i, t in enumerate(refine):
                    if t.column == j:
                        sel = keys[t.matches(keys)]
                        digits = (sel >> np.uint64(64 - t.bits - _RADIX_BITS)) & np.uint64(
                            (1 << _RADIX_BITS) - 1
                        )
                        hists[i] += np.bincount(digits.astype(np.int64), minlength=1 << _RADIX_BITS)
                for i, t in enumerate(collect):
                    if t.column == j:
                        found[i].append(x[t.matches(keys)])
        if context is not None:
            hists = context.all_reduce_sum(hists)
            gathered = context.all_gather_object(
                [np.concatenate(f) if f else np.zeros(0) for f in found]
            )
            values = [np.concatenate([g[i] for g in gathered]) for i in range(len(collect))]
        else:
            values = [np.concatenate(f) if f else np.zeros(0) for f in found]
        for t, v in zip(collect, values, strict=True):
            t.value = float(np.partition(v, t.rank)[t.rank])
        for t, hist in zip(refine, hists, strict=True):
            below = np.cumsum(hist)
            digit = int(np.searchsorted(below, t.rank, side="right"))
            t.rank -= int(below[digit - 1]) if digit else 0
            t.count = int(hist[digit])
            t.prefix = (t.prefix << _RADIX_BITS) | digit
            t.bits += _RADIX_BITS
    out = np.zeros(len(columns), dtype=np.float64)
    for j in range(len(columns)):
        middle = np.array([t.value for t in targets if t.column == j], dtype=np.float64)
        if middle.size:
            # As numpy: the mean of the two middle values for an even count.
            out[j] = np.mean(middle)
    return out


# -- passes 2+: training ---------------------------------------------------------------------
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


class _Encoded:
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

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Append rows (the block grows by half when full, which the estimate avoids)."""
        end = self.n_rows + int(x.shape[0])
        if end > self._x.shape[0]:
            size = max(end, self._x.shape[0] * 3 // 2)
            self._x = torch.cat(
                [self._x[: self.n_rows], self._x.new_empty((size - self.n_rows, self._x.shape[1]))]
            )
            self._y = torch.cat([self._y[: self.n_rows], self._y.new_empty(size - self.n_rows)])
        self._x[self.n_rows : end] = x
        self._y[self.n_rows : end] = y
        self.n_rows = end

    @property
    def x(self) -> list[torch.Tensor]:
        """The features, as a list of blocks."""
        return [self._x[: self.n_rows]]

    @property
    def y(self) -> list[torch.Tensor]:
        """The labels, matching :attr:`x`."""
        return [self._y[: self.n_rows]]


class StreamingData:
    """The training pieces of one process, read again every epoch.

    Each epoch reads the pieces in a new random order, encodes each record batch with
    the fitted :class:`~steadyclf.network.InputEncoder`, routes validation rows to the
    validation set (first epoch only) and training rows through a
    :class:`ShuffleBuffer`, and yields exactly ``steps`` mini-batches.
    """

    def __init__(
        self,
        source: DataSource,
        stats: StreamStatistics,
        module: SteadyNet,
        *,
        batch_size: int,
        steps: int,
        budget: int,
        device: torch.device,
        validation_keep: float,
        seed: int,
    ) -> None:
        self.source = source
        self.stats = stats
        self.module = module
        self.batch_size = batch_size
        self.steps = steps
        self.device = device
        self.validation_keep = validation_keep
        self.seed = seed
        enc = stats.encoder
        self.columns = [*enc.input_columns, stats.target]
        self.read_rows = read_rows_for_budget(arrow_row_bytes(source.schema, self.columns), budget)
        row_bytes = 4 * (module.encoder.n_features_out + 1)
        # The buffer's two blocks (rows held plus one chunk, and their permutation)
        # take about 1/4 of the budget: several record batches are mixed at a time.
        self.buffer_rows = max(4 * batch_size, budget // 8 // row_bytes - self.read_rows)
        self.validation = None
        if stats.split.fraction > 0:
            # The hash keeps about this many rows; a little more room avoids regrowing.
            expected = stats.local_valid * min(1.0, validation_keep)
            capacity = int(expected * 1.05) + 256
            self.validation = _Encoded(module.encoder.n_features_out, capacity, device)

    def batches(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This epoch's ``steps`` mini-batches (reading on for validation rows if needed)."""
        order = torch.randperm(len(self.source.pieces), generator=generator).tolist()
        buffer = ShuffleBuffer(self.buffer_rows, self.batch_size, generator)
        collect = self.validation is not None and not self.validation.complete
        emitted = 0
        for start, frame in self.source.batches(
            self.columns, batch_rows=self.read_rows, order=order
        ):
            if emitted >= self.steps and not collect:
                break
            x, y, in_valid = self._encode(start, frame)
            if collect and self.validation is not None:
                keep = in_valid & (
                    row_uniform(_positions(start, len(frame)), ~self.seed) < self.validation_keep
                )
                self.validation.add(*_rows(x, y, keep))
            if emitted >= self.steps:
                continue
            for batch in buffer.push(*_rows(x, y, ~in_valid)):
                if emitted < self.steps:
                    emitted += 1
                    yield batch
        for batch in buffer.drain():
            if emitted >= self.steps:
                break
            emitted += 1
            yield batch
        if self.validation is not None:
            self.validation.complete = True

    @torch.no_grad()
    def _encode(
        self, start: int, frame: pd.DataFrame
    ) -> tuple[torch.Tensor, torch.Tensor, NDArray[np.bool_]]:
        try:
            x_num, x_cat = encode_inputs(self.stats.encoder, frame)
        except DataError as exc:
            message = re.sub(
                r"\brow (\d+)", lambda m: f"row {start + int(m.group(1))}", str(exc), count=1
            )
            raise DataError(message) from None
        features = self.module.encoder(
            torch.from_numpy(x_num).to(self.device), torch.from_numpy(x_cat).to(self.device)
        )
        y = torch.from_numpy(self.stats.encode_target(frame[self.stats.target])).to(self.device)
        return features, y, self.stats.split.mask(start, len(frame))


def encode_inputs(
    encoder: TabularEncoder, frame: pd.DataFrame
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """``encoder.transform(frame)``, faster for what record batches hold.

    Float64 columns are taken as one block, and Arrow-backed string columns are coded
    by Arrow (no Python string per value); other columns go through the encoder's own
    per-column functions. The result is the same (a test checks it).
    """
    numeric = [c for c in encoder.columns_ if c.role in NUMERIC_ROLES]
    x_num = np.empty((len(frame), len(numeric)), dtype=np.float64)
    floats = [
        j
        for j, c in enumerate(numeric)
        if c.role == "numeric" and frame[c.name].dtype == np.dtype(np.float64)
    ]
    if floats:
        block = frame[[numeric[j].name for j in floats]].to_numpy(dtype=np.float64)
        infinite = np.isinf(block)
        if infinite.any():
            j = int(infinite.any(axis=0).argmax())
            row, count = int(infinite[:, j].argmax()), int(infinite[:, j].sum())
            raise DataError(
                f"column {numeric[floats[j]].name!r} has an infinite value at row {row} ({count} in all); replace it or drop the column"
            )
        x_num[:, floats] = block
    for j, info in enumerate(numeric):
        if j not in floats:
            x_num[:, j] = column_values(info.name, frame[info.name], info.role)
    cats = encoder.categorical_columns
    x_cat = np.empty((len(frame), len(cats)), dtype=np.int64)
    for j, info in enumerate(cats):
        series = frame[info.name]
        if isinstance(series.dtype, pd.StringDtype) and series.dtype.storage == "pyarrow":
            x_cat[:, j] = _arrow_codes(pa.array(series), info.levels)
        else:
            x_cat[:, j] = encode_categories(series, info.levels)
    return x_num, x_cat


def _arrow_codes(values: pa.Array, levels: Sequence[str]) -> NDArray[np.int64]:
    """:func:`~steadyclf.tabular.encode_categories` for Arrow strings: 0 missing, 1 unseen."""
    index = pc.index_in(values, value_set=pa.array(list(levels), type=pa.string()))
    codes = np.asarray(index.fill_null(UNSEEN_CODE - 2).to_numpy(zero_copy_only=False)) + 2
    codes[np.asarray(values.is_null().to_numpy(zero_copy_only=False))] = MISSING_CODE
    return codes.astype(np.int64)


def _positions(start: int, n: int) -> NDArray[np.int64]:
    return np.arange(start, start + n, dtype=np.int64)


def _rows(
    x: torch.Tensor, y: torch.Tensor, mask: NDArray[np.bool_]
) -> tuple[torch.Tensor, torch.Tensor]:
    index = torch.from_numpy(np.flatnonzero(mask)).to(x.device)
    return x.index_select(0, index), y.index_select(0, index)


class StreamTrainer(Trainer):
    """:class:`~steadyclf.training.Trainer` fed by :class:`StreamingData`.

    The epoch loop (early stopping, schedules, divergence roll-back, callbacks) is the
    base class's; an epoch here consumes streamed mini-batches, and, in a distributed
    run, the loss and accuracy sums are all-reduced so every process sees the same
    numbers and takes the same decisions. Validation runs on the plain network (not the
    ``DistributedDataParallel`` wrapper), since processes hold different numbers of
    validation rows.
    """

    def __init__(
        self,
        module: nn.Module,
        config: TrainConfig,
        *,
        plain: nn.Module,
        device: torch.device,
        context: DistributedContext | None = None,
    ) -> None:
        super().__init__(module, config)
        self.plain = plain
        self.device = device
        self.context = context

    def fit_stream(self, train: StreamingData, valid: _Encoded | None) -> StreamTrainer:
        """Run the training loop over ``train``; returns ``self``."""
        cfg = self.config
        rank = self.context.rank if self.context is not None else 0
        generator = self.generator = torch.Generator().manual_seed(cfg.seed + 7919 * rank)
        loss_fn = self._loss_fn(self.device)
        self.optimizer = make_optimizer(
            cfg.optimizer, self.module.parameters(), cfg.lr, cfg.weight_decay
        )
        self.scheduler = make_scheduler(
            cfg.schedule,
            self.optimizer,
            max_epochs=cfg.max_epochs,
            steps_per_epoch=train.steps,
            patience=cfg.patience,
        )
        self.epoch, self.best_loss, self.bad_epochs, self.best_state = 0, math.inf, 0, None
        try:
            for cb in cfg.callbacks:
                getattr(cb, "on_train_setup", lambda t: None)(self)
            for cb in cfg.callbacks:
                getattr(cb, "on_train_begin", lambda t: None)(self)
            # As the base class: one intra-op thread unless the steps are large.
            with intra_op_threads(threads_for(train.batch_size, self.plain)):
                self._run_epochs(cast(Any, train), cast(Any, valid), generator, loss_fn)
        finally:
            for cb in cfg.callbacks:
                getattr(cb, "on_train_exit", lambda t: None)(self)
        return self

    def train_epoch(
        self, data: Any, generator: torch.Generator, loss_fn: nn.Module
    ) -> tuple[float, float]:
        """One streamed pass: ``data.steps`` optimizer steps; mean loss and accuracy."""
        assert self.optimizer is not None
        self.module.train()
        total_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        n = 0
        per_batch_schedule = self.config.schedule == "onecycle" and self.scheduler is not None
        for xb, yb in data.batches(generator):
            self.optimizer.zero_grad(set_to_none=True)
            logits = self.module(xb).reshape(-1)
            loss = loss_fn(logits, yb)
            loss.backward()
            self.optimizer.step()
            if per_batch_schedule:
                self._step_onecycle()
            with torch.no_grad():
                total_loss += loss.detach() * yb.shape[0]
                correct += ((logits > 0) == (yb > 0.5)).sum()
            n += int(yb.shape[0])
        return self._means(float(total_loss), float(correct), n)

    def evaluate(
        self, data: Any, loss_fn: nn.Module, batch_rows: int = 1 << 16
    ) -> tuple[float, float]:
        """Mean loss and accuracy over the validation rows of every process."""
        self.plain.eval()
        total_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        n = 0
        with torch.no_grad():
            for x, y in zip(data.x, data.y, strict=True):
                for start in range(0, x.shape[0], batch_rows):
                    xb, yb = x[start : start + batch_rows], y[start : start + batch_rows]
                    logits = self.plain(xb).reshape(-1)
                    total_loss += loss_fn(logits, yb) * yb.shape[0]
                    correct += ((logits > 0) == (yb > 0.5)).sum()
                    n += int(yb.shape[0])
        return self._means(float(total_loss), float(correct), n)

    def _means(self, loss_sum: float, correct: float, n: int) -> tuple[float, float]:
        """Mean loss and accuracy, over every process in a distributed run."""
        totals = np.array([loss_sum, correct, float(n)])
        if self.context is not None:
            totals = self.context.all_reduce_sum(totals)
        rows = max(float(totals[2]), 1.0)
        return float(totals[0]) / rows, float(totals[1]) / rows


# -- the whole run ---------------------------------------------------------------------------
def fit_streaming(
    estimator: BinaryClassifier,
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | DataSource,
    target: str,
    *,
    memory_budget: int | str | None = None,
    callbacks: Sequence[Callback] = (),
    context: DistributedContext | str | None = "auto",
) -> BinaryClassifier:
    """Fit ``estimator`` on files read in passes, in bounded memory; return it, fitted.

    The statistics (and so the network's fitted buffers) equal those of
    ``estimator.fit`` on the whole table; training reads mini-batches from the files
    each epoch. Under ``torchrun`` (``context='auto'`` detects it) every process runs
    this same call on its share of the rows and all of them end with the same model;
    save it from rank 0 only (:func:`steadyclf.distributed.is_main_process`).

    Parameters
    ----------
    estimator : BinaryClassifier
        Its parameters are used as for ``fit``; ``batch_size`` 'auto' or ``None`` means
        1024 rows per step at lr 6e-3 (streamed training is always mini-batch; with N
        processes each contributes 1/N of the rows of a step), so the 'auto' defaults
        are those of mini-batch training (``validation_fraction`` 0.1, ``weight_decay``
        0); ``lr`` must be a number or ``None``.
    data : path, glob, list of paths, or DataSource
        Parquet file(s), a directory of Parquet files, or CSV file(s).
    target : str
        The label column.
    memory_budget : int or str, optional
        Bytes (or ``"200MB"``...) for data held at once; default half the available RAM.
    callbacks : sequence of Callback
        As for ``fit``.
    context : DistributedContext, None or 'auto'
        The process group; 'auto' joins torchrun's when its environment is set.

    Examples
    --------
    >>> from steadyclf import BinaryClassifier
    >>> clf = fit_streaming(BinaryClassifier(), "data/*.parquet", "label")  # doctest: +SKIP
    """
    from .distributed import init_from_env
    from .estimator import _seeded

    estimator._validate_params_()
    if estimator.lr == "auto":
        raise ParameterError(
            "lr='auto' (the learning-rate finder) needs the data in memory; give a number for streamed training"
        )
    budget = default_memory_budget() if memory_budget is None else parse_memory_size(memory_budget)
    ctx = (
        init_from_env(estimator.device)
        if context == "auto"
        else cast("DistributedContext | None", context)
    )
    source = data if isinstance(data, DataSource) else DataSource.open(data)
    seed = _run_seed(estimator, ctx)
    started = time.perf_counter()
    shard = _my_share(source, ctx)
    stats = fit_statistics(
        shard,
        target,
        validation_fraction=_validation_fraction(estimator),
        seed=seed,
        positive=estimator.positive,
        categorical=estimator.categorical or (),
        numeric=estimator.numeric or (),
        drop=estimator.drop or (),
        memory_budget=budget,
        context=ctx,
    )
    statistics_seconds = time.perf_counter() - started
    device = ctx.device if ctx is not None else estimator._resolve_device()
    module = _build_module(estimator, stats, seed).to(device)
    config = _train_config(
        estimator, stats, seed, callbacks, ctx.world_size if ctx is not None else 1
    )
    assert config.batch_size is not None
    steps = -(-stats.local_train // config.batch_size)
    if ctx is not None:
        steps = ctx.all_reduce_min(steps)
    if steps == 0:
        raise DataError(
            f"a process has no training rows ({stats.n_train} in all for {ctx.world_size if ctx else 1} processes); use fewer processes or more data"
        )
    data_stream = StreamingData(
        shard,
        stats,
        module,
        batch_size=config.batch_size,
        steps=steps,
        budget=budget,
        device=device,
        validation_keep=_validation_keep(stats, module, budget),
        seed=seed,
    )
    body = ctx.wrap(module.body) if ctx is not None else module.body
    trainer = StreamTrainer(body, config, plain=module.body, device=device, context=ctx)
    with _seeded(seed):
        trainer.fit_stream(data_stream, data_stream.validation)
    estimator.classes_ = stats.classes
    estimator.encoder_ = stats.encoder
    estimator.n_features_in_ = len(stats.feature_names)
    estimator.feature_names_in_ = np.asarray(stats.feature_names, dtype=object)
    estimator.module_ = module.double().eval()
    estimator.history_ = trainer.history
    estimator.n_iter_ = len(trainer.history)
    estimator.lr_ = config.lr
    estimator.batch_size_ = config.batch_size * (ctx.world_size if ctx is not None else 1)
    estimator.weight_decay_ = config.weight_decay
    estimator.validation_fraction_ = (
        _validation_fraction(estimator) if data_stream.validation is not None else 0.0
    )
    estimator.best_epoch_ = trainer.best_epoch
    estimator.warnings_ = []
    estimator.threshold_ = 0.5
    _score_validation(estimator, data_stream.validation, ctx)
    estimator.streaming_ = {
        "n_rows": stats.n_rows,
        "n_train": stats.n_train,
        "n_valid": stats.n_valid,
        "validation_rows_scored": int(estimator.validation_metrics_.get("n", 0)),
        "processes": ctx.world_size if ctx is not None else 1,
        "memory_budget": budget,
        "read_rows": data_stream.read_rows,
        "shuffle_buffer_rows": data_stream.buffer_rows,
        "steps_per_epoch": steps,
        "statistics_seconds": statistics_seconds,
        "approximate_vocabularies": stats.approximate_vocabularies,
    }
    return estimator


def _run_seed(estimator: BinaryClassifier, ctx: DistributedContext | None) -> int:
    """``random_state``, or a random seed shared by every process."""
    if estimator.random_state is not None:
        return int(estimator.random_state)
    seed = int(np.random.default_rng().integers(0, 2**31 - 1))
    return int(ctx.broadcast_object(seed)) if ctx is not None else seed


def _my_share(source: DataSource, ctx: DistributedContext | None) -> DataSource:
    """This process's shard; CSV files are counted first (by their readers) for positions."""
    if ctx is None:
        return source
    if not source.counted:
        mine = source.shard(ctx.rank, ctx.world_size)
        counts = [n for part in ctx.all_gather_object(mine.count_rows()) for n in part]
        source = source.with_row_counts(counts)
    return source.shard(ctx.rank, ctx.world_size)


def _build_module(estimator: BinaryClassifier, stats: StreamStatistics, seed: int) -> SteadyNet:
    estimator.encoder_ = stats.encoder
    n_inputs = (
        len(stats.encoder.numeric_columns)
        + int(stats.had_missing.sum())
        + sum(stats.encoder.vocab_sizes)
    )
    estimator._check_model_size(n_inputs)
    normalized = estimator.normalize == "standardize" and stats.stats.n_features > 0
    return estimator._module_from_statistics(
        stats.had_missing,
        stats.median,
        stats.stats if normalized else None,
        stats.n_train_positive / max(stats.n_train, 1),
        _pos_weight(estimator, stats),
        seed,
    )


def _pos_weight(estimator: BinaryClassifier, stats: StreamStatistics) -> float | None:
    if estimator.pos_weight is None:
        return None
    if estimator.pos_weight == "balanced":
        n_pos = float(stats.n_train_positive)
        return (stats.n_train - n_pos) / max(n_pos, 1.0)
    return float(estimator.pos_weight)


def _validation_fraction(estimator: BinaryClassifier) -> float:
    """Rows held out: streamed training always runs in mini-batches, so 'auto' is 0.1."""
    from .estimator import DEFAULT_VALIDATION_FRACTION

    if not estimator.early_stopping:
        return 0.0
    if estimator.validation_fraction == "auto":
        return DEFAULT_VALIDATION_FRACTION
    return float(estimator.validation_fraction)


def _train_config(
    estimator: BinaryClassifier,
    stats: StreamStatistics,
    seed: int,
    callbacks: Sequence[Callback],
    world_size: int = 1,
) -> TrainConfig:
    """Settings from the estimator's parameters; ``batch_size`` is per process.

    The batch size counts rows per optimizer step over all processes (gradients are
    averaged across them), so each takes its share: N processes make as many steps per
    epoch as one, with the same learning rate, and reach the same model.
    """
    from .estimator import DEFAULT_BATCH_SIZE, DEFAULT_LR_MINI_BATCH

    batch_size = estimator.batch_size
    total = int(batch_size) if isinstance(batch_size, int) else DEFAULT_BATCH_SIZE
    return TrainConfig(
        lr=DEFAULT_LR_MINI_BATCH if estimator.lr is None else float(estimator.lr),
        max_epochs=int(estimator.max_epochs),
        batch_size=max(1, total // world_size),
        optimizer=estimator.optimizer,
        schedule=estimator.schedule,
        weight_decay=0.0 if estimator.weight_decay == "auto" else float(estimator.weight_decay),
        early_stopping=bool(estimator.early_stopping),
        patience=int(estimator.patience),
        pos_weight=_pos_weight(estimator, stats),
        seed=seed,
        callbacks=tuple(callbacks),
        # Autograd, so that DistributedDataParallel sees the gradients.
        fused=False,
    )


def _validation_keep(stats: StreamStatistics, module: SteadyNet, budget: int) -> float:
    """Share of validation rows kept: all of them if they fit 1/8 of the budget."""
    row_bytes = 4 * (module.encoder.n_features_out + 1)
    return min(1.0, budget / 8 / max(1, stats.local_valid * row_bytes))


def _score_validation(
    estimator: BinaryClassifier, validation: _Encoded | None, ctx: DistributedContext | None
) -> None:
    """Tune the threshold and compute ``validation_metrics_`` with the final weights."""
    from .evaluation import binary_metrics, tune_threshold

    estimator.validation_metrics_ = {}
    if validation is None:
        return
    body = estimator.module_.body
    with torch.no_grad():
        logits = [body(x.double()).reshape(-1).cpu().numpy() for x in validation.x]
    y = [t.cpu().numpy() for t in validation.y]
    parts = (
        np.concatenate(logits) if logits else np.zeros(0),
        np.concatenate(y) if y else np.zeros(0),
    )
    if ctx is not None:
        gathered = ctx.all_gather_object(parts)
        parts = (np.concatenate([g[0] for g in gathered]), np.concatenate([g[1] for g in gathered]))
    if parts[0].size == 0:
        return
    proba = 1.0 / (1.0 + np.exp(-parts[0]))
    if estimator.threshold_metric is not None:
        estimator.threshold_ = tune_threshold(parts[1], proba, estimator.threshold_metric)
    estimator.validation_metrics_ = binary_metrics(parts[1], proba, estimator.threshold_)
