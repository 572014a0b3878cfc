"""Data files read piece by piece: Parquet row groups and CSV files, with global row positions.

A :class:`DataSource` is a Parquet file, a directory of Parquet files, a glob, or CSV
files read in blocks. Each row has a *global position* (its index when all files are read
in sorted order), whatever order the pieces are read in and whichever process reads them
(:meth:`DataSource.shard`).
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import io
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..exceptions import DataError
from .uris import shown

__all__ = [
    "CSV_SUFFIXES",
    "IN_MEMORY_COPIES",
    "MAX_READ_ROWS",
    "MIN_READ_ROWS",
    "PARQUET_SUFFIXES",
    "ArrowLayout",
    "CsvStream",
    "DataSource",
    "FileIdentity",
    "Piece",
    "arrow_kind",
    "arrow_row_bytes",
    "estimate_in_memory_bytes",
    "read_rows_for_budget",
    "resolve_paths",
]

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")
#: Rows per record batch read, at most (the budget may make it smaller).
MAX_READ_ROWS = 1 << 16
MIN_READ_ROWS = 1 << 10
#: The in-memory path holds several copies of the data (Arrow, pandas, encoded arrays,
#: tensors): this many times its Arrow size, measured on the heart-rate and benchmark data.
IN_MEMORY_COPIES = 4


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
    #: Whole rows of the row group (Parquet) as the first pass saw them, and its bytes:
    #: a later pass that finds other values is reading a changed file.
    group_rows: int = -1
    group_bytes: int = -1


#: Bytes read at each end of a file for its fingerprint.
_FINGERPRINT_BYTES = 1 << 16


@dataclass(frozen=True)
class FileIdentity:
    """What a data file looked like on the first pass: size, mtime and a fingerprint.

    Inputs read more than once (the statistics pass, then every epoch of streamed
    training) are compared with this identity before and after each piece is read; any
    difference stops the run (:meth:`check`), so a file overwritten, replaced or truncated
    under a run never trains a model on a mix of two files. The fingerprint (a hash of
    the size and of the first and last 64 KiB) catches a same-size rewrite that kept the
    modification time; the row counts of each piece catch the rest.
    """

    path: str
    size: int
    mtime_ns: int
    fingerprint: str

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> FileIdentity:
        """The identity of ``path`` now."""
        try:
            with open(path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                digest = hashlib.blake2b(str(stat.st_size).encode(), digest_size=16)
                digest.update(handle.read(_FINGERPRINT_BYTES))
                if stat.st_size > _FINGERPRINT_BYTES:
                    handle.seek(max(_FINGERPRINT_BYTES, stat.st_size - _FINGERPRINT_BYTES))
                    digest.update(handle.read(_FINGERPRINT_BYTES))
        except OSError as exc:
            raise DataError(f"cannot read data file {str(path)!r}: {exc.strerror or exc}") from None
        return cls(str(path), stat.st_size, stat.st_mtime_ns, digest.hexdigest())

    def check(self, *, content: bool = True) -> None:
        """Raise :class:`DataError` naming the file if it is no longer what it was.

        ``content=False`` compares size and modification time only (a ``stat``).
        """
        try:
            stat = os.stat(self.path)
        except OSError:
            raise changed_error(self.path, "it was removed") from None
        if stat.st_size != self.size:
            raise changed_error(self.path, f"{self.size:,} bytes, now {stat.st_size:,}")
        if stat.st_mtime_ns != self.mtime_ns:
            raise changed_error(self.path, "it was modified")
        if content and FileIdentity.of(self.path).fingerprint != self.fingerprint:
            raise changed_error(self.path, "its content differs")


def changed_error(path: str, what: str) -> DataError:
    """The one-line error for a data file that changed between two passes of a run."""
    return DataError(
        f"data file {path!r} changed while the run was reading it ({what}); stopped rather "
        "than train on a mix of old and new rows: rerun once the file stays unchanged"
    )


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
                raise DataError(f"no file matches {shown(item)!r}")
        else:
            raise DataError(f"data file {shown(item)!r} does not exist")
    if not found:
        raise DataError(f"no Parquet or CSV file in {', '.join(map(shown, specs))}")
    return sorted(dict.fromkeys(found))


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in (*PARQUET_SUFFIXES, *CSV_SUFFIXES):
        if name.endswith(suffix):
            return "parquet" if suffix in PARQUET_SUFFIXES else "csv"
    return ""


def _data_columns(schema: pa.Schema) -> pa.Schema:
    """``schema`` without the columns pandas stored its index in (``df.to_parquet(path)``
    without ``index=False``): read at once, pandas makes them the index, not a column, and
    so does a read in passes (it failed on '__index_level_0__')."""
    stored = {
        c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)
    }
    if not stored:
        return schema
    return pa.schema([f for f in schema if f.name not in stored], metadata=schema.metadata)


class ArrowLayout:
    """The layout of a source read as Arrow record batches, from its ``schema``: column
    names, what each holds and bytes per row (:class:`DataSource`,
    :class:`steadyclf.io.sql.SqlSource`)."""

    schema: pa.Schema

    @property
    def columns(self) -> list[str]:
        """Column names."""
        return list(self.schema.names)

    @property
    def kinds(self) -> dict[str, str]:
        """What each column holds, from the Arrow types (see :func:`arrow_kind`)."""
        return {f.name: arrow_kind(f.type) for f in self.schema}

    def row_bytes(self, columns: Sequence[str]) -> int:
        """Approximate bytes per decoded row of ``columns``."""
        return arrow_row_bytes(self.schema, columns)


class DataSource(ArrowLayout):
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
        #: Each file as it was when the source was opened (see :class:`FileIdentity`).
        self.identities: dict[str, FileIdentity] = {}

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
        identities = {str(p): FileIdentity.of(p) for p in paths}
        if kinds == {"csv"}:
            source = cls._open_csv(paths, csv_block_size)
        else:
            source = cls._open_parquet(paths)
        source.identities = identities
        # A file that changed while its layout was read would give pieces of two files.
        for identity in identities.values():
            identity.check(content=False)
        return source

    @classmethod
    def _open_parquet(cls, paths: list[Path]) -> DataSource:
        pieces: list[Piece] = []
        schema: pa.Schema | None = None
        position = nbytes = 0
        for path in paths:
            try:
                meta = pq.read_metadata(path)
                file_schema = _data_columns(pq.read_schema(path))
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
                size = meta.row_group(rg).total_byte_size
                nbytes += size
                if n:
                    pieces.append(Piece(str(path), rg, position, n, group_rows=n, group_bytes=size))
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
    def name(self) -> str:
        """The data as messages name it: the first file."""
        return repr(str(self.paths[0]))

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
        source.identities = self.identities
        return source

    def with_types(self, types: Mapping[str, pa.DataType]) -> DataSource:
        """This source with CSV columns read as ``types`` (Parquet files keep their own).

        For readers that know what a column must hold (prediction reads a model's text
        columns as text whatever the first block looks like).
        """
        if self.format != "csv":
            return self
        fields = [pa.field(f.name, types.get(f.name, f.type)) for f in self.schema]
        source = self._with_pieces(self.pieces)
        source.schema = pa.schema(fields)
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
        batch_rows: int | None = MAX_READ_ROWS,
        order: Sequence[int] | None = None,
    ) -> Iterator[tuple[int, pd.DataFrame]]:
        """Yield ``(global position of the first row, frame)`` for each record batch.

        ``order`` lists piece indices (default: all, in order). CSV pieces that were not
        counted are numbered as they are read, which requires the natural order.
        """
        check_columns_present(columns, self.columns)
        indices = range(len(self.pieces)) if order is None else order
        if not self.counted and order is not None:
            raise RuntimeError("CSV pieces must be counted before they are read out of order")
        counting = not self.counted
        position, counts = 0, []
        for i in indices:
            piece = self.pieces[i]
            start = piece.start if piece.start >= 0 else position
            position = start
            for offset, frame in self._read_piece(
                piece, list(columns), batch_rows or MAX_READ_ROWS
            ):
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
        """``(offset within the piece, frame)`` per record batch.

        The file is compared with its identity from the first pass before the piece is
        read and after it (see :class:`FileIdentity`); a CSV file must give the rows it
        gave on the first pass.
        """
        batches = self._parquet_batches if piece.row_group is not None else self._csv_batches
        identity = self.identities.get(piece.path)
        if identity is not None:
            identity.check()
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
                    break
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
            if identity is not None:
                identity.check(content=False)  # a file cut short reads as a parse error
            raise read_error(piece, offset, exc) from None
        if identity is not None:
            identity.check(content=False)
        if piece.row_group is None and piece.n_rows >= 0 and offset != piece.skip + piece.n_rows:
            raise changed_error(
                piece.path, f"{offset:,} rows, {piece.skip + piece.n_rows:,} on the first pass"
            )

    def _parquet_batches(
        self, piece: Piece, columns: list[str], batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        assert piece.row_group is not None
        # Small read buffers (one per column) and no pre-buffering: memory follows the
        # batch, not the row group.
        with pq.ParquetFile(piece.path, buffer_size=1 << 16, pre_buffer=False) as f:
            if piece.group_rows >= 0:
                group = f.metadata.row_group(piece.row_group)
                if (group.num_rows, group.total_byte_size) != (piece.group_rows, piece.group_bytes):
                    raise changed_error(
                        piece.path,
                        f"row group {piece.row_group} holds {group.num_rows:,} rows, "
                        f"{piece.group_rows:,} on the first pass",
                    )
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
            yield from coalesced(reader, batch_rows)

    def count_rows(self) -> list[int]:
        """Rows per piece (reads CSV files once, one column only)."""
        if self.counted:
            return [p.n_rows for p in self.pieces]
        first = self.columns[:1]
        counts = []
        for piece in self.pieces:
            identity = self.identities.get(piece.path)
            if identity is not None:
                identity.check()
            try:
                counts.append(sum(b.num_rows for b in self._csv_batches(piece, first, 0)))
            except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
                raise read_error(piece, 0, exc) from None
        return counts


class CsvStream:
    """CSV rows from a stream read once (standard input), in record batches.

    The interface of :class:`DataSource` that a single pass needs: :attr:`columns`,
    :meth:`with_types` and :meth:`batches`. The header is read when the stream is
    opened; columns without a given type are typed by Arrow from the first block.

    Parameters
    ----------
    stream : binary file object
    name : str
        How messages name the data (``'standard input'``).
    block_size : int
        Bytes parsed at a time.
    """

    format = "csv"

    def __init__(self, stream: Any, name: str = "standard input", block_size: int = 1 << 22):
        self.stream = stream
        self.name = name
        self.block_size = block_size
        self.types: dict[str, pa.DataType] = {}
        header = stream.readline().decode("utf-8-sig")
        if not header.strip():
            raise DataError(f"{name} is empty")
        self.columns: list[str] = next(csv.reader(io.StringIO(header)))

    def with_types(self, types: Mapping[str, pa.DataType]) -> CsvStream:
        """Read the named columns as ``types`` (the same stream: use one of the two)."""
        self.types = dict(types)
        return self

    def row_bytes(self, columns: Sequence[str]) -> int:
        """Approximate bytes per decoded row (32 per column: the types are not known yet)."""
        return 32 * len(columns) + 8

    def batches(
        self, columns: Sequence[str], *, batch_rows: int | None = None
    ) -> Iterator[tuple[int, pd.DataFrame]]:
        """Yield ``(position of the first row, frame)`` per block, in one pass."""
        check_columns_present(columns, self.columns)
        position = 0
        try:
            with pacsv.open_csv(
                self.stream,
                read_options=pacsv.ReadOptions(
                    block_size=self.block_size, column_names=self.columns
                ),
                convert_options=_csv_convert_options(
                    column_types={c: t for c, t in self.types.items() if c in columns},
                    include_columns=list(columns),
                ),
            ) as reader:
                for batch in reader:
                    yield position, batch.to_pandas()
                    position += batch.num_rows
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(
                f"cannot read {self.name} near row {position}: {_first_line(exc)}"
            ) from None


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


_CSV_VALUE_ERROR = re.compile(
    r"In CSV column #(\d+): CSV conversion error to (\w+): invalid value '(.*)'$"
)


def read_error(piece: Piece, offset: int, exc: BaseException) -> DataError:
    """The one-line error of a piece that failed to read at ``offset`` rows in: a value of
    a CSV column that is not of the column's type (as the first block typed it) by column,
    value and row in its file; anything else (a corrupt Parquet page, a row of too many
    fields) by file, with the reader's first line."""
    found = _CSV_VALUE_ERROR.match(_first_line(exc)) if piece.row_group is None else None
    if found is not None:
        with contextlib.suppress(pa.ArrowException, OSError, IndexError):
            index, typ, value = int(found[1]), found[2], found[3]
            names = pacsv.open_csv(piece.path, parse_options=_csv_parse_options(piece.path))
            name = names.schema.names[index]
            column = pacsv.read_csv(
                piece.path,
                parse_options=_csv_parse_options(piece.path),
                convert_options=_csv_convert_options(
                    column_types={name: pa.string()}, include_columns=[name]
                ),
            ).column(0)
            rows = np.flatnonzero(pc.fill_null(pc.equal(column, value), False).to_numpy())
            where = f" at row {int(rows[0])} of that file" if rows.size else ""
            kind = "a number" if typ in ("double", "float", "int64") else f"a {typ} value"
            return DataError(
                f"column {name!r} of {piece.path!r} holds {value!r}{where}, which is not "
                f"{kind} as in the rows read before it; fix the value"
            )
    near = f" near row {piece.start + offset}" if piece.start >= 0 else ""
    return DataError(f"cannot read {piece.path!r}{near}: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def arrow_kind(typ: pa.DataType) -> str:
    """What a column holds: 'bool', 'datetime', 'int', 'float', 'category' or 'text'."""
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


def estimate_in_memory_bytes(source: DataSource) -> int:
    """Rough peak memory of training on ``source`` in memory (several copies of it)."""
    # CSV text is about as large as the Arrow columns it parses into.
    return IN_MEMORY_COPIES * source.nbytes


def check_columns_present(columns: Sequence[str], present: Sequence[str]) -> None:
    """Refuse, in one line naming them, ``columns`` that are not among ``present`` (a set
    is built once: a table may have thousands of columns)."""
    known = set(present)
    missing = [c for c in columns if c not in known]
    if missing:
        raise DataError(f"column(s) {missing} not in the data; columns: {list(present)}")


def coalesced(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """``batches`` joined, in order, into batches of at least ``rows`` rows (the last may
    have fewer; ``rows`` 0: as they come). A CSV block holds a number of bytes, so a wide
    file gives blocks of a few hundred rows, and every later step pays per batch and column:
    predicting 2,000 rows of 2,000 columns took 8 s in 250-row blocks."""
    waiting: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        if rows <= 0 or (not waiting and batch.num_rows >= rows):
            yield batch
            continue
        waiting.append(batch)
        held += batch.num_rows
        if held >= rows:
            yield _joined_batches(waiting)
            waiting, held = [], 0
    if waiting:
        yield _joined_batches(waiting)


def _joined_batches(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    table = pa.Table.from_batches(batches).combine_chunks()
    if table.num_rows == 0:
        return batches[0]
    return table.to_batches(max_chunksize=table.num_rows)[0]


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
