"""Tables in and out: CSV, gzipped CSV, TSV and Parquet files, or pandas DataFrames.

:func:`read_table` is where data enters steadyclf. It refuses, with a one-line message
naming the file, everything that would otherwise fail later and less clearly: a missing
or empty file, a header without rows, an unknown file type, duplicate column names (which
pandas would silently rename to ``a.1``) and rows that do not parse.

:func:`write_table` writes atomically (:mod:`steadyclf.io.atomic`), so an interrupted or
failed write never leaves a half file.
"""

from __future__ import annotations

import gzip
import io
import os
import warnings
import zlib
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import pandas as pd

from ..exceptions import DataError
from .atomic import atomic_path
from .uris import shown

__all__ = [
    "FORMATS",
    "TableWriter",
    "check_data_file",
    "check_unique_columns",
    "from_polars",
    "name_list",
    "read_table",
    "table_format",
    "write_table",
]

#: File name endings steadyclf reads and writes, and the format each one means.
FORMATS = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".tsv": "tsv",
    ".tsv.gz": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_SEPARATORS = {"csv": ",", "tsv": "\t"}
#: Rows per row group of Parquet files written batch by batch (predictions: a few MB).
PARQUET_ROW_GROUP = 1 << 16


def table_format(path: str | os.PathLike[str]) -> str:
    """``'csv'``, ``'tsv'`` or ``'parquet'`` from the file name, or a :class:`DataError`.

    A URI (``scheme://...``) is not a file: refused, named without its password."""
    text = os.fspath(path)
    if "://" in text:
        raise DataError(f"{shown(text)!r} is a URI, not a file; give a local data file")
    name = Path(path).name.lower()
    for ending in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(ending):
            return FORMATS[ending]
    suffix = "".join(Path(name).suffixes) or "(none)"
    raise DataError(
        f"unknown file type {suffix!r} for {str(path)!r}; use one of {', '.join(FORMATS)}"
    )


def read_table(source: str | os.PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    """Read a table from a file (type from its name) or check a DataFrame.

    Parameters
    ----------
    source : path or DataFrame
        ``.csv``, ``.csv.gz``, ``.tsv``, ``.tsv.gz`` or ``.parquet`` file.

    Returns
    -------
    DataFrame with unique string column names and at least one row.

    Raises
    ------
    DataError
        The file is missing, empty, has no data rows, is of an unknown type, has
        duplicate column names, or cannot be parsed.

    Examples
    --------
    >>> import pandas as pd
    >>> read_table(pd.DataFrame({"a": [1, 2]})).shape
    (2, 1)
    """
    if isinstance(source, pd.DataFrame):
        return _checked(source, "the DataFrame")
    kind = table_format(source)  # the spelling as given: Path() would mangle a URI
    path = Path(source)
    _check_file(path)
    frame = _read_parquet(path) if kind == "parquet" else _read_text(path, _SEPARATORS[kind])
    return _checked(frame, f"file {str(path)!r}")


def check_data_file(path: str | os.PathLike[str]) -> str:
    """The format of an existing, non-empty data file (errors as :func:`read_table`'s)."""
    kind = table_format(path)
    _check_file(Path(path))
    return kind


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"no such file: {str(path)!r}")
    if path.is_dir():
        raise DataError(f"{str(path)!r} is a directory, not a data file")
    if path.stat().st_size == 0:
        raise DataError(f"file {str(path)!r} is empty")


#: pandas 2's default float parser may be one unit in the last place off (pandas 3 parses
#: exactly, and deprecates the option): the in-memory reader then agrees with Arrow's.
_EXACT: dict[str, Any] = (
    {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
)


def _read_text(path: Path, sep: str) -> pd.DataFrame:
    where = f"file {str(path)!r}"
    try:
        with warnings.catch_warnings():
            # pandas only warns when a row has more fields than the header, and drops the
            # extra ones: refuse instead of losing data.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, index_col=False)
            # low_memory=False: one dtype per column, decided on the whole column (no
            # DtypeWarning); index_col=False: never turn the first column into the index.
            frame = pd.read_csv(path, sep=sep, low_memory=False, index_col=False, **_EXACT)
    except pd.errors.ParserWarning as exc:
        raise DataError(
            f"cannot parse {where}: some rows have more fields than the header ({_first_line(exc)})"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{where} is empty") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"cannot parse {where}: {_first_line(exc)}") from None
    except (UnicodeDecodeError, gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise DataError(f"cannot read {where} as text ({type(exc).__name__}: {exc})") from None
    names = ["" if pd.isna(v) else str(v) for v in header.iloc[0].tolist()]
    check_unique_columns(pd.DataFrame(columns=pd.Index(names)), where=where)
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = f"file {str(path)!r}"
    try:
        names = pq.read_schema(path).names
        check_unique_columns(pd.DataFrame(columns=pd.Index(names)), where=where)
        return pd.read_parquet(path, engine="pyarrow")
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"cannot read {where} as Parquet: {_first_line(exc)}") from None


def _checked(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    check_unique_columns(frame, where=where)
    if frame.shape[1] == 0:
        raise DataError(f"{where} has no columns")
    if frame.shape[0] == 0:
        raise DataError(f"{where} has a header but no data rows")
    if not all(isinstance(c, str) for c in frame.columns):
        frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    return frame


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``frame`` (no index) as CSV, TSV or Parquet by suffix, atomically.

    Parameters
    ----------
    frame : DataFrame
    path : path
        Target file; its name decides the format (see :data:`FORMATS`); ``.gz``
        endings are gzip-compressed.

    Returns
    -------
    The path written.
    """
    target = Path(path)
    kind = table_format(target)
    with atomic_path(target) as tmp:
        if kind == "parquet":
            frame.to_parquet(tmp, engine="pyarrow", index=False)
        else:
            with ExitStack() as stack:
                handle = _open_text(tmp, target, stack)
                frame.to_csv(handle, sep=_SEPARATORS[kind], index=False)
    return target


def _open_text(tmp: Path, target: Path, stack: ExitStack) -> IO[str]:
    """A text handle on ``tmp`` for CSV bound for ``target``: gzipped for a ``.gz`` name,
    whose header then records ``target``'s name, not the temporary one."""
    if not target.name.lower().endswith(".gz"):
        return stack.enter_context(open(tmp, "w", encoding="utf-8", newline=""))
    raw = stack.enter_context(open(tmp, "wb"))  # noqa: SIM115 - the stack closes it
    packed = stack.enter_context(gzip.GzipFile(filename=target.name, mode="wb", fileobj=raw))
    return stack.enter_context(io.TextIOWrapper(packed, encoding="utf-8", newline=""))


class TableWriter:
    """Write a table a batch at a time: CSV/TSV (gzipped by suffix) or Parquet, atomically.

    A context manager: the rows go to a temporary file beside ``path``, renamed into
    place when the block ends without an error (and removed otherwise), so a failure
    half-way leaves no partial output. Without ``path``, CSV is written to ``stream``
    (standard output) as it comes.

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with TableWriter(os.path.join(tmp, "out.csv")) as writer:
    ...         writer.write(pd.DataFrame({"a": [1]}))
    ...         writer.write(pd.DataFrame({"a": [2]}))
    ...     with open(os.path.join(tmp, "out.csv")) as written:
    ...         print(written.read())
    a
    1
    2
    <BLANKLINE>
    """

    def __init__(self, path: str | os.PathLike[str] | None, stream: IO[str] | None = None):
        self.path = None if path is None else Path(path)
        self.kind = "csv" if self.path is None else table_format(self.path)
        self.stream = stream
        self.rows = 0
        self._stack = ExitStack()
        self._handle: Any = None
        self._parquet: Any = None
        self._header = False
        self._pending: list[pd.DataFrame] = []
        self._pending_rows = 0

    def __enter__(self) -> TableWriter:
        if self.path is not None:
            tmp = self._stack.enter_context(atomic_path(self.path))
            if self.kind != "parquet":
                self._handle = _open_text(tmp, self.path, self._stack)
            else:
                self._tmp = tmp
        else:
            self._handle = self.stream
        return self

    def write(self, frame: pd.DataFrame) -> None:
        """Append the rows of ``frame`` (the first frame's columns set the header)."""
        if self.kind == "parquet":
            # Row groups of at least PARQUET_ROW_GROUP rows, whatever the batches' size.
            self._pending.append(frame)
            self._pending_rows += len(frame)
            if self._pending_rows >= PARQUET_ROW_GROUP:
                self._flush()
        else:
            sep = _SEPARATORS[self.kind]
            frame.to_csv(self._handle, sep=sep, index=False, header=not self._header)
            self._header = True
        self.rows += len(frame)

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._pending:
            return
        frame = self._pending[0] if len(self._pending) == 1 else pd.concat(self._pending)
        self._pending, self._pending_rows = [], 0
        if self._parquet is None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            self._schema = table.schema
            self._parquet = pq.ParquetWriter(self._tmp, table.schema)
            self._stack.callback(self._parquet.close)
        else:
            # The first batch's types for every batch (an ID column of None...).
            table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
        self._parquet.write_table(table)

    def __exit__(self, *exc_info: Any) -> None:
        # The last rows, then closing (the Parquet footer, the gzip trailer), then the
        # rename; a failure on the way removes the temporary file instead.
        try:
            if exc_info[0] is None and self.kind == "parquet":
                self._flush()
        except BaseException as exc:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._stack.__exit__(*exc_info)


def check_unique_columns(frame: pd.DataFrame, *, where: str | None = None) -> None:
    """Refuse tables with duplicate column names (which column would we read?)."""
    dup = frame.columns[frame.columns.duplicated()]
    if len(dup):
        place = f" in {where}" if where else ""
        raise DataError(
            f"duplicate column name{'s' if len(dup) > 1 else ''} {name_list(dict.fromkeys(map(str, dup)))}{place}; rename them so each column has its own name"
        )


def name_list(names: Any, limit: int = 20) -> str:
    """``'a', 'b', ... (N in all)``: column names for a one-line message."""
    names = [str(n) for n in names]
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def from_polars(data: Any) -> Any:
    """A polars DataFrame or Series as a pandas one, through Arrow; anything else as is.

    ``to_arrow()`` shares polars' buffers, and pandas takes numeric columns without
    missing values from Arrow without a copy (one block per column); strings become
    Arrow-backed strings, categoricals and enums pandas categoricals. polars is never
    imported here: an object from it is recognised by its module.
    """
    kind = type(data)
    if not kind.__module__.startswith("polars."):
        return data
    if kind.__name__ == "LazyFrame":
        raise DataError("a polars LazyFrame holds no rows yet: pass frame.collect()")
    if kind.__name__ not in ("DataFrame", "Series"):
        return data
    return data.to_arrow().to_pandas(split_blocks=True)
