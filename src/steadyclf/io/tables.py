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
import os
import warnings
import zlib
from pathlib import Path
from typing import Any

import pandas as pd

from ..exceptions import DataError
from .atomic import atomic_path

__all__ = [
    "FORMATS",
    "check_unique_columns",
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


def table_format(path: str | os.PathLike[str]) -> str:
    """``'csv'``, ``'tsv'`` or ``'parquet'`` from the file name, or a :class:`DataError`."""
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
    path = Path(source)
    kind = table_format(path)
    _check_file(path)
    frame = _read_parquet(path) if kind == "parquet" else _read_text(path, _SEPARATORS[kind])
    return _checked(frame, f"file {str(path)!r}")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"no such file: {str(path)!r}")
    if path.is_dir():
        raise DataError(f"{str(path)!r} is a directory, not a data file")
    if path.stat().st_size == 0:
        raise DataError(f"file {str(path)!r} is empty")


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
            frame = pd.read_csv(path, sep=sep, low_memory=False, index_col=False)
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
        _write(frame, tmp, kind, compress=target.name.lower().endswith(".gz"))
    return target


def _write(frame: pd.DataFrame, path: Path, kind: str, *, compress: bool) -> None:
    if kind == "parquet":
        frame.to_parquet(path, engine="pyarrow", index=False)
        return
    options: dict[str, Any] = {"sep": _SEPARATORS[kind], "index": False}
    options["compression"] = "gzip" if compress else None
    frame.to_csv(path, **options)


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
