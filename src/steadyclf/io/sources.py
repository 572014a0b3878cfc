"""Where rows come from: files read piece by piece, or a table already in memory.

A source yields record batches as ``(global position of the first row, DataFrame)``. Each
row has a *global position* (its index when all files are read in sorted order), so the
per-row hash split (:mod:`steadyclf.schema.split`) puts it on the same side whatever the
order, the batch size or the process that reads it.

- :class:`~steadyclf.io.files.DataSource`: a Parquet file, a directory of Parquet files, a
  glob, or CSV files read in blocks; it can be sharded between the processes of a
  distributed run;
- :class:`FrameSource`: a DataFrame in memory, a source with one batch.

Every later stage (statistics, encoding, training) reads rows through this one interface,
so data in memory and data in files take the same path.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import pandas as pd

from ..exceptions import DataError, ParameterError
from .files import (
    CSV_SUFFIXES,
    IN_MEMORY_COPIES,
    PARQUET_SUFFIXES,
    DataSource,
    Piece,
    arrow_kind,
    arrow_row_bytes,
    check_columns_present,
    estimate_in_memory_bytes,
    read_rows_for_budget,
    resolve_paths,
)

if TYPE_CHECKING:
    from .sql import SqlSource

__all__ = [
    "CSV_SUFFIXES",
    "PARQUET_SUFFIXES",
    "DataSource",
    "FrameSource",
    "Piece",
    "Reading",
    "Source",
    "arrow_kind",
    "arrow_row_bytes",
    "default_memory_budget",
    "estimate_in_memory_bytes",
    "memory_size_text",
    "open_data",
    "open_sql",
    "pandas_kind",
    "parse_memory_size",
    "read_rows_for_budget",
    "resolve_paths",
    "rows_per_read",
]

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


def memory_size_text(size: int) -> str:
    """``size`` bytes for people, in the units :func:`parse_memory_size` reads.

    Examples
    --------
    >>> memory_size_text(100_000), memory_size_text(2_500_000_000), memory_size_text(512)
    ('100 KB', '2.5 GB', '512 B')
    """
    for unit, factor in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if size >= factor:
            return f"{size / factor:.3g} {unit}"
    return f"{size} B"


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


def pandas_kind(dtype: Any) -> str:
    """:func:`arrow_kind` for a pandas dtype; 'complex' for complex numbers (refused later)."""
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_complex_dtype(dtype):
        return "complex"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    return "text"


class FrameSource:
    """A DataFrame in memory as a source: one batch (or slices of ``batch_rows``).

    Parameters
    ----------
    frame : DataFrame
        The columns, with unique string names (the caller checks them).
    target : array-like, optional
        Labels, one per row, read as the extra column ``target_name`` (not added to
        ``frame``: nothing is copied).
    target_name : str
        The name under which :meth:`batches` returns ``target``.
    name : str
        How messages name the data.
    weight : array-like, optional
        Row weights (``fit(X, y, sample_weight=...)``), read like ``target`` as the extra
        column ``weight_name``: one more column of the source, never a feature.
    weight_name : str
        The name under which :meth:`batches` returns ``weight``.

    Examples
    --------
    >>> import pandas as pd
    >>> source = FrameSource(pd.DataFrame({"a": [1.0, 2.0]}), [0, 1], "y")
    >>> [(start, list(frame.columns)) for start, frame in source.batches(["a", "y"])]
    [(0, ['a', 'y'])]
    """

    format = "frame"

    def __init__(
        self,
        frame: pd.DataFrame,
        target: Any = None,
        target_name: str = "target",
        *,
        name: str = "the data",
        weight: Any = None,
        weight_name: str = "weight",
    ) -> None:
        self.frame = frame
        self.target = None if target is None else pd.Series(np.asarray(target), name=target_name)
        self.target_name = target_name if target is not None else None
        #: Columns given beside the frame (target, weight), by name, in that order.
        self.extra: dict[str, pd.Series] = {}
        if self.target is not None:
            self.extra[target_name] = self.target
        if weight is not None:
            self.extra[weight_name] = pd.Series(np.asarray(weight), name=weight_name)
        self.name = name
        self.untyped: frozenset[str] = frozenset()
        self.pieces = [Piece("<memory>", None, 0, len(frame))]
        self.total_rows = len(frame)

    @property
    def columns(self) -> list[str]:
        """Column names (the target's and the weights' last, when given separately)."""
        return [str(c) for c in self.frame.columns] + list(self.extra)

    @property
    def kinds(self) -> dict[str, str]:
        """What each column holds, from its pandas dtype (see :func:`pandas_kind`)."""
        kinds = {str(c): pandas_kind(d) for c, d in self.frame.dtypes.items()}
        return kinds | {name: pandas_kind(series.dtype) for name, series in self.extra.items()}

    @property
    def counted(self) -> bool:
        """Always: the rows are in memory."""
        return True

    @property
    def n_rows(self) -> int:
        """Rows of the table."""
        return len(self.frame)

    @property
    def nbytes(self) -> int:
        """Bytes the table takes in memory."""
        return int(self.frame.memory_usage(index=False, deep=False).sum())

    def row_bytes(self, columns: Sequence[str]) -> int:
        """Bytes per row of ``columns`` (strings count 32 bytes)."""
        total = 8
        for name in columns:
            series = self.extra[name] if name in self.extra else self.frame[name]
            dtype = series.dtype
            total += dtype.itemsize if isinstance(dtype, np.dtype) and dtype.kind != "O" else 32
        return total

    def shard(self, rank: int, world_size: int) -> FrameSource:
        """A table in memory belongs to one process."""
        if world_size != 1:
            raise DataError("data in memory cannot be shared between processes; give files")
        return self

    def count_rows(self) -> list[int]:
        """Rows per piece: one piece."""
        return [len(self.frame)]

    def batches(
        self,
        columns: Sequence[str],
        *,
        batch_rows: int | None = None,
        order: Sequence[int] | None = None,
    ) -> Iterator[tuple[int, pd.DataFrame]]:
        """``(position of the first row, frame)``: the whole table, or slices of it."""
        check_columns_present(columns, self.columns)
        features = [c for c in columns if c not in self.extra]
        extra = [c for c in columns if c in self.extra]
        n = len(self.frame)
        step = n if batch_rows is None else max(1, batch_rows)
        for start in range(0, max(n, 1), step):
            part = self.frame if step >= n else self.frame.iloc[start : start + step]
            frame = part if features == list(part.columns) else part[features]
            if extra:
                added = {
                    c: self.extra[c].iloc[start : start + step].set_axis(frame.index) for c in extra
                }
                frame = frame.assign(**added)[list(columns)]
            yield start, frame


def rows_per_read(source: Any, columns: Sequence[str], budget: int, share: int = 32) -> int | None:
    """Rows per batch read from ``source`` for ``columns`` within ``budget`` (at most
    ``1/share`` of it per batch); a table in memory is read as one batch (``None``)."""
    if isinstance(source, FrameSource):
        return None
    return read_rows_for_budget(source.row_bytes(columns), budget, share=share)


#: What every kind of source offers the stages after them (a SQL query too:
#: :class:`steadyclf.io.sql.SqlSource`, imported only where a database is read).
Source: TypeAlias = "DataSource | FrameSource | SqlSource"


#: Why rows are read in passes under torchrun (``shared``), whatever their size.
SHARED_READING = "several processes (torchrun) each read their share of the rows"


@dataclass(frozen=True)
class Reading:
    """How data files are read: the source, and whether (and why) in passes."""

    source: Source
    streamed: bool
    why: str = ""


def open_data(
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    stream: bool | None,
    budget: int,
    shared: bool = False,
) -> Reading:
    """Open data files, read at once into memory or in passes within ``budget``.

    In passes with ``stream``, for a directory, a glob or several files, and for a file
    whose in-memory size would exceed the budget; at once otherwise. The choice only
    changes how rows are read: training is the same either way.
    """
    from .tables import read_table, table_format

    many = not isinstance(data, (str, os.PathLike))
    spec = str(data) if not many else ""
    why = ""
    if stream:
        why = SHARED_READING if shared else "asked for (--stream)"
    elif many:
        why = "several files"
    elif Path(spec).is_dir():
        why = "a directory"
    elif not Path(spec).is_file() and glob.has_magic(spec):
        why = "a glob"
    elif Path(spec).is_file():
        table_format(spec)  # an unknown file type is refused here, as in memory
        try:
            need = estimate_in_memory_bytes(DataSource.open(spec))
        except DataError:
            need = 0  # an unreadable file: the in-memory reader says what is wrong
        if need > budget:
            why = (
                f"{spec} needs about {memory_size_text(need)} in memory, more than the "
                f"{memory_size_text(budget)} budget"
            )
    if why:
        return Reading(DataSource.open(data), True, why)
    frame = read_table(spec)
    return Reading(FrameSource(frame, name=f"file {spec!r}"), False)


def open_sql(
    database: Any, query: str, *, stream: bool | None, budget: int, shared: bool = False
) -> Reading:
    """Open a query, read at once into memory or in passes within ``budget``.

    As :func:`~steadyclf.io.sources.open_data` decides for a file: in passes when asked
    (``stream``) or when the rows, counted first, would need more than ``budget`` in memory.
    """
    from .sql import SqlSource

    source = SqlSource.open(database, query)
    why = ""
    if stream:
        why = SHARED_READING if shared else "asked for (--stream)"
    else:
        need = IN_MEMORY_COPIES * source.nbytes
        if need > budget:
            why = (
                f"{source.name} returns about {memory_size_text(need)} in memory, more "
                f"than the {memory_size_text(budget)} budget"
            )
    if why:
        return Reading(source, True, why)
    return Reading(FrameSource(source.read_all(), name=source.name), False)
