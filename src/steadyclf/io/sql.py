"""Rows from SQL databases, as Arrow record batches: DuckDB in-process, others through ADBC.

A :class:`SqlSource` is a query on a database. It offers what a file source offers the
stages after it (columns, kinds, batches with global row positions, a shard per process),
so the same summary, policy and trainer read it, in memory or in passes within the memory
budget. Nothing is converted row by row: the database hands Arrow record batches over
(DuckDB's ``to_arrow_reader``, ADBC's ``fetch_record_batch``), and each batch becomes a
DataFrame at once, as a Parquet row group does.

Where the data is, spelled as the CLI's DATA argument (:func:`open_database`):

- ``data.duckdb`` (or ``.ddb``, or any existing DuckDB file): a DuckDB database file,
  opened read-only;
- ``duckdb:`` (or ``:memory:``): an empty in-memory DuckDB, for queries over files such as
  ``SELECT * FROM 'trips/*.parquet'``;
- ``postgresql://user@host:port/db`` (``postgres://`` too): PostgreSQL through ADBC. The
  password comes from the environment (``PGPASSWORD``), ``~/.pgpass`` or a service file
  (``postgresql:///?service=name``), as for any libpq client; one written in the URI works
  but is never printed: messages show the URI without it.

**Row order.** The query is run again for every pass over the data (a count, the
summary, then each epoch when streamed), and each row's *position* in the result decides
whether it is a training or a validation row. A query whose rows come back in a different
order on another run gives another split: write an ``ORDER BY`` on a unique key for a
result, and a model, that is the same on every run (SQL promises no order without one;
PostgreSQL may start a large table's scan in the middle of it, ``synchronize_seqscans``).
A pass that sees a different number of rows than the count is an error (the data changed
during training).

**Processes.** Under torchrun, process ``r`` of ``W`` reads the rows at positions
``[r*N/W, (r+1)*N/W)``, the rule used for Parquet files: it runs the query and keeps its
range, stopping once past it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from ..exceptions import DataError, ParameterError
from .files import MAX_READ_ROWS, ArrowLayout, Piece, arrow_kind, check_columns_present
from .sql_guard import check_reads_only
from .uris import (
    DUCKDB_SUFFIXES,
    POSTGRES_SCHEMES,
    TableTarget,
    parse_table_target,
    redact,
    scrub,
    shown,
)

__all__ = [
    "DUCKDB_SUFFIXES",
    "AdbcDatabase",
    "Database",
    "DuckDBDatabase",
    "SqlSource",
    "TableSink",
    "TableTarget",
    "is_database",
    "open_database",
    "parse_table_target",
    "redact",
]

#: Spellings of an empty in-memory DuckDB (for queries over files).
DUCKDB_MEMORY = ("duckdb:", ":memory:")
SQL_EXTRA = "pip install 'steadyclf[sql]'"


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def is_database(spec: Any) -> bool:
    """Whether ``spec`` names a database (rather than data files)."""
    if not isinstance(spec, str):
        return _is_duckdb_connection(spec)
    if spec in DUCKDB_MEMORY:
        return True
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    return scheme in POSTGRES_SCHEMES or spec.lower().endswith(DUCKDB_SUFFIXES)


def _is_duckdb_connection(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] in ("duckdb", "_duckdb")


# -- databases -----------------------------------------------------------------------------
class Database:
    """What a source needs of a database: a schema, a count and record batches."""

    #: How messages name the database (never with a password).
    name: str

    def schema(self, query: str) -> pa.Schema:
        """Columns and Arrow types of the query's result (without reading its rows)."""
        raise NotImplementedError

    def count(self, query: str) -> int:
        """Rows the query returns."""
        return int(self.scalar(f"SELECT count(*) FROM ({_strip(query)}\n) AS steadyclf_count"))

    def scalar(self, query: str) -> Any:
        """The first value of the first row."""
        raise NotImplementedError

    def reader(self, query: str, batch_rows: int) -> pa.RecordBatchReader:
        """The query's rows as a stream of record batches."""
        raise NotImplementedError

    def error(self, exc: BaseException, what: str) -> DataError:
        """A one-line :class:`DataError` for a failure of the database: ``what on
        <database> failed: <its message>``."""
        return self.failed(exc, f"{what} on {self.name}")

    def failed(self, exc: BaseException, what: str) -> DataError:
        """``what failed: <the database's message>``, ``what`` naming the database."""
        return DataError(f"{what} failed: {_first_line(exc)}")

    #: What a driver raises while its rows are read (not only its own errors: a query
    #: failing part way, e.g. a division by zero at row 1,400, reaches Arrow's record
    #: batch reader, which raises OSError or ArrowInvalid).
    _errors: tuple[type[BaseException], ...] = ()

    def _rows_errors(self) -> tuple[type[BaseException], ...]:
        return (*self._errors, OSError, pa.ArrowException)


def _strip(query: str) -> str:
    """The query without trailing semicolons (it is wrapped in ``SELECT ... FROM (...)``,
    the closing parenthesis on a line of its own: a query may end with a ``--`` comment)."""
    return query.strip().rstrip(";").strip()


class DuckDBDatabase(Database):
    """A DuckDB connection: a database file (read-only), in memory, or one given.

    Parameters
    ----------
    connection : duckdb.DuckDBPyConnection
    name : str
        How messages name it.
    """

    def __init__(self, connection: Any, name: str) -> None:
        self.connection = connection
        self.name = name
        import duckdb

        self._errors: tuple[type[BaseException], ...] = (duckdb.Error,)

    @classmethod
    def open(cls, spec: str, *, read_only: bool = True) -> DuckDBDatabase:
        """Open ``data.duckdb`` (read-only unless asked) or ``duckdb:`` (in memory)."""
        duckdb = _import("duckdb")
        if spec in DUCKDB_MEMORY:
            return cls(duckdb.connect(":memory:"), "an in-memory DuckDB")
        if read_only and not Path(spec).is_file():
            raise DataError(f"DuckDB database {spec!r} does not exist")
        try:
            return cls(duckdb.connect(spec, read_only=read_only), f"DuckDB {spec!r}")
        except duckdb.Error as exc:
            raise DataError(f"cannot open DuckDB database {spec!r}: {_first_line(exc)}") from None

    def _read_only(self) -> Any:
        """A cursor of its own (a pass may be left unfinished while another one starts)
        in a read-only transaction: a query that would write fails, and writes nothing
        (the file may be open for writing: predictions into the file the rows come from).
        Closing the cursor ends the transaction."""
        cursor = self.connection.cursor()
        try:
            cursor.execute("BEGIN TRANSACTION READ ONLY")
        except BaseException:
            cursor.close()
            raise
        return cursor

    def schema(self, query: str) -> pa.Schema:
        cursor = self._read_only()
        try:
            return cursor.sql(_strip(query)).limit(0).to_arrow_table().schema
        except self._rows_errors() as exc:
            raise self.error(exc, "the query") from None
        finally:
            cursor.close()

    def scalar(self, query: str) -> Any:
        cursor = self._read_only()
        try:
            rows = cursor.sql(query).fetchall()
        except self._rows_errors() as exc:
            raise self.error(exc, "the query") from None
        finally:
            cursor.close()
        return rows[0][0] if rows else None

    def reader(self, query: str, batch_rows: int) -> pa.RecordBatchReader:
        cursor = self._read_only()
        try:
            inner = cursor.sql(_strip(query)).to_arrow_reader(batch_rows)
        except self._errors as exc:
            cursor.close()
            raise self.error(exc, "the query") from None

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                yield from inner
            except self._rows_errors() as exc:
                raise self.error(exc, "reading the query's rows") from None
            finally:
                inner.close()
                cursor.close()

        return pa.RecordBatchReader.from_batches(inner.schema, batches())

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


class AdbcDatabase(Database):
    """A database reached through an ADBC driver by URI: PostgreSQL.

    A connection is opened per pass (:meth:`reader`) and closed when the pass ends, so a
    long training holds no idle connection between epochs.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.name = redact(uri)
        self._dbapi = _import("adbc_driver_postgresql.dbapi")
        manager = _import("adbc_driver_manager")
        self._errors: tuple[type[BaseException], ...] = (manager.Error, manager.dbapi.Error)

    def failed(self, exc: BaseException, what: str) -> DataError:
        return DataError(scrub(f"{what} failed: {_first_line(exc)}", self.uri))

    def connect(self, *, autocommit: bool = True, read_only: bool = True) -> Any:
        """A DB-API connection; an unreachable server is a one-line :class:`DataError`.

        ``read_only`` (the default; not for writing predictions): every transaction of
        the session is read-only, so that a query that would write (``WITH d AS (DELETE
        ... RETURNING *) SELECT ...``, a function with side effects) fails and writes
        nothing. (A query may change the session's default for later transactions, but
        runs in one already read-only, on a connection that runs no other query.)
        """
        try:
            conn = self._dbapi.connect(self.uri, autocommit=autocommit)
        except self._errors as exc:
            raise DataError(
                scrub(f"cannot connect to {self.name}: {_first_line(exc)}", self.uri)
            ) from None
        if read_only:
            try:
                with conn.cursor() as cur:
                    cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            except BaseException as exc:
                conn.close()
                if isinstance(exc, self._errors):
                    raise self.error(exc, "a read-only session") from None
                raise
        return conn

    def schema(self, query: str) -> pa.Schema:
        with self.connect() as conn, conn.cursor() as cur:
            try:
                return cur.adbc_execute_schema(_strip(query))
            except self._errors:
                pass  # a driver without it: the types of an empty result
            try:
                cur.execute(f"SELECT * FROM ({_strip(query)}\n) AS steadyclf_schema LIMIT 0")
                return cur.fetch_arrow_table().schema
            except self._rows_errors() as exc:
                raise self.error(exc, "the query") from None

    def scalar(self, query: str) -> Any:
        with self.connect() as conn, conn.cursor() as cur:
            try:
                cur.execute(query)
                row = cur.fetchone()
            except self._rows_errors() as exc:
                raise self.error(exc, "the query") from None
        return None if row is None else row[0]

    def reader(self, query: str, batch_rows: int) -> pa.RecordBatchReader:
        conn = self.connect()
        cur = conn.cursor()
        try:
            cur.execute(_strip(query))
            inner = cur.fetch_record_batch()
        except self._errors as exc:
            cur.close()
            conn.close()
            raise self.error(exc, "the query") from None

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                for batch in inner:
                    # The driver's batches follow its own size hint: cut them to the
                    # budget's rows so that memory follows the budget, not the driver.
                    for offset in range(0, batch.num_rows, batch_rows):
                        yield batch.slice(offset, batch_rows)
            except self._rows_errors() as exc:
                raise self.error(exc, "reading the query's rows") from None
            finally:
                cur.close()
                conn.close()

        return pa.RecordBatchReader.from_batches(inner.schema, batches())


def _import(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ParameterError(
            f"reading SQL databases needs the {module.split('.')[0]!r} package: {SQL_EXTRA}"
        ) from None


def open_database(spec: Any, *, read_only: bool = True) -> Database:
    """The database named by ``spec``: a DuckDB file, ``duckdb:``, a DuckDB connection or a
    ``postgresql://`` URI (see the module's documentation)."""
    if isinstance(spec, Database):
        return spec
    if _is_duckdb_connection(spec):
        return DuckDBDatabase(spec, "the DuckDB connection")
    if isinstance(spec, str) and (is_database(spec) or _is_duckdb_file(spec)):
        if "://" in spec:
            return AdbcDatabase(spec)
        return DuckDBDatabase.open(spec, read_only=read_only)
    named = shown(spec) if isinstance(spec, str) else spec
    hint = ""
    if isinstance(spec, str) and Path(spec).is_file():  # a data file (it was "Catalog Error")
        hint = f" (read the file without --query, or query it in 'duckdb:': FROM {spec!r})"
    raise ParameterError(
        "--query needs a database: a DuckDB file (.duckdb), 'duckdb:' (queries over files) "
        f"or a postgresql:// URI; {named!r} is not one{hint}"
    )


def _is_duckdb_file(path: str) -> bool:
    """Whether ``path`` is a DuckDB database file, whatever its name (its header says)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(12)[8:] == b"DUCK"
    except OSError:
        return False


# -- the source ----------------------------------------------------------------------------
def _storage(typ: pa.DataType) -> pa.DataType:
    """The type under an extension type (PostgreSQL's ``numeric`` comes as text in an
    ``arrow.opaque`` extension)."""
    return typ.storage_type if isinstance(typ, pa.BaseExtensionType) else typ


def _is_pg_numeric(typ: pa.DataType) -> bool:
    return isinstance(typ, pa.BaseExtensionType) and getattr(typ, "type_name", "") == "numeric"


def _unsupported(typ: pa.DataType) -> bool:
    """Arrow types a model cannot take (nested, binary, intervals, times of day)."""
    typ = _storage(typ)
    return bool(
        pa.types.is_nested(typ)
        or pa.types.is_binary(typ)
        or pa.types.is_large_binary(typ)
        or pa.types.is_fixed_size_binary(typ)
        or pa.types.is_binary_view(typ)
        or pa.types.is_interval(typ)
        or pa.types.is_duration(typ)
        or pa.types.is_time(typ)
        or pa.types.is_union(typ)
    )


def _read_type(typ: pa.DataType) -> pa.DataType:
    """The type a column is read as: exact decimals (DuckDB's DECIMAL, PostgreSQL's
    NUMERIC) as float64, numbers rather than text; other extension types as stored."""
    if _is_pg_numeric(typ) or pa.types.is_decimal(typ):
        return pa.float64()
    typ = _storage(typ)
    if pa.types.is_null(typ):
        return pa.float64()  # no value at all: as an empty CSV column reads in pandas
    if pa.types.is_string_view(typ):
        return pa.string()
    if pa.types.is_large_string(typ):
        return pa.string()
    return typ


@dataclass(frozen=True)
class _Range:
    """Rows ``[start, start + n_rows)`` of the query's result."""

    start: int
    n_rows: int


class SqlSource(ArrowLayout):
    """A query on a database, read as Arrow record batches with global row positions.

    Parameters
    ----------
    database : Database
    query : str
        A ``SELECT``; give it an ``ORDER BY`` on a unique key for the same rows in the same
        order on every pass (see the module's documentation).
    schema : pyarrow.Schema
        The result's columns, as the database types them.
    total_rows : int
        Rows the query returns.
    rows : _Range, optional
        The share of one process (default: every row).

    Use :meth:`open` to create one.

    Examples
    --------
    >>> import duckdb  # doctest: +SKIP
    >>> con = duckdb.connect()  # doctest: +SKIP
    >>> source = SqlSource.open(con, "SELECT * FROM 'trips.parquet' ORDER BY id")  # doctest: +SKIP
    >>> for start, frame in source.batches(["x", "y"], batch_rows=4096):  # doctest: +SKIP
    ...     ...
    """

    format = "sql"

    def __init__(
        self,
        database: Database,
        query: str,
        schema: pa.Schema,
        total_rows: int,
        rows: _Range | None = None,
    ) -> None:
        self.database = database
        self.query = query
        self.source_schema = schema
        self.schema = pa.schema([pa.field(f.name, _read_type(f.type)) for f in schema])
        self.total_rows = total_rows
        self.rows = rows or _Range(0, total_rows)
        self.untyped: frozenset[str] = frozenset(f.name for f in schema if pa.types.is_null(f.type))
        self.pieces = [Piece(f"<query on {database.name}>", None, self.rows.start, self.n_rows)]

    @classmethod
    def open(cls, database: Any, query: str) -> SqlSource:
        """Check the query's columns and count its rows (one pass of the database's)."""
        check_reads_only(query)
        db = open_database(database)
        schema = db.schema(query)
        names = list(schema.names)
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise DataError(
                f"the query returns column(s) {duplicated} more than once; give each column a distinct name (AS ...)"
            )
        bad = [f for f in schema if _unsupported(f.type)]
        if bad:
            listed = ", ".join(f"{f.name!r} ({f.type})" for f in bad[:5])
            raise DataError(
                f"the query returns column(s) of a type steadyclf cannot use: {listed}; cast them in the query (e.g. CAST({bad[0].name} AS VARCHAR)) or leave them out"
            )
        total = db.count(query)
        if total == 0:
            raise DataError(f"the query on {db.name} returns no rows")
        return cls(db, query, schema, total)

    # -- layout --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The data as messages name it."""
        return f"the query on {self.database.name}"

    @property
    def counted(self) -> bool:
        """Always: the rows were counted when the source was opened."""
        return True

    @property
    def n_rows(self) -> int:
        """Rows of this source (or shard)."""
        return self.rows.n_rows

    @property
    def nbytes(self) -> int:
        """Approximate bytes of the rows once decoded."""
        return self.n_rows * self.row_bytes(self.columns)

    def count_rows(self) -> list[int]:
        """Rows per piece: one piece."""
        return [self.n_rows]

    def with_row_counts(self, counts: Sequence[int]) -> SqlSource:
        """The rows are counted already: this source."""
        return self

    def with_types(self, types: Any) -> SqlSource:
        """This source: the database types its columns, as a Parquet file does."""
        return self

    def _copy(self, rows: _Range) -> SqlSource:
        return SqlSource(self.database, self.query, self.source_schema, self.total_rows, rows)

    def shard(self, rank: int, world_size: int) -> SqlSource:
        """The rows ``[rank*N/W, (rank+1)*N/W)`` of process ``rank`` out of ``world_size``."""
        if world_size == 1:
            return self
        lo = self.total_rows * rank // world_size
        hi = self.total_rows * (rank + 1) // world_size
        return self._copy(_Range(lo, hi - lo))

    # -- reading -------------------------------------------------------------------------
    def arrow_batches(
        self, columns: Sequence[str], *, batch_rows: int | None = MAX_READ_ROWS
    ) -> Iterator[tuple[int, pa.RecordBatch]]:
        """``(global position of the first row, record batch)`` of this source's rows."""
        check_columns_present(columns, self.columns)
        lo, hi = self.rows.start, self.rows.start + self.rows.n_rows
        targets = pa.schema([self.schema.field(c) for c in columns])
        reader = self.database.reader(self.query, batch_rows or MAX_READ_ROWS)
        # The last shard reads to the end, so that the pass also checks the row count.
        stop = hi if hi < self.total_rows else None
        position = 0
        try:
            for batch in reader:
                end = position + batch.num_rows
                first, last = max(lo, position), min(hi, end)
                if first < last:
                    part = batch.slice(first - position, last - first).select(list(columns))
                    yield first, self._convert(part, targets, first)
                position = end
                if stop is not None and position >= stop:
                    return
            if position != self.total_rows:
                raise DataError(
                    f"the query on {self.database.name} returned {position} rows in this pass but {self.total_rows} when counted: the data changed while it was read; train on a snapshot (a table that does not change)"
                )
        finally:
            reader.close()

    def _convert(self, batch: pa.RecordBatch, schema: pa.Schema, start: int) -> pa.RecordBatch:
        if batch.schema.equals(schema):
            return batch
        arrays = []
        try:
            for column, field in zip(batch.columns, schema, strict=True):
                if isinstance(column, pa.ExtensionArray):
                    column = column.storage
                arrays.append(column if column.type == field.type else column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise DataError(
                f"cannot convert column {field.name!r} of {self.name} near row {start}: {_first_line(exc)}"
            ) from None
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def batches(
        self,
        columns: Sequence[str],
        *,
        batch_rows: int | None = MAX_READ_ROWS,
        order: Sequence[int] | None = None,
    ) -> Iterator[tuple[int, pd.DataFrame]]:
        """Yield ``(global position of the first row, frame)`` per record batch.

        ``order`` (piece indices, for the streamed trainer) has one piece to order.
        """
        for start, batch in self.arrow_batches(columns, batch_rows=batch_rows):
            yield start, batch.to_pandas()

    def read_all(self) -> pd.DataFrame:
        """Every row of this source in one DataFrame."""
        frames = [frame for _, frame in self.batches(self.columns)]
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


# -- writing predictions -------------------------------------------------------------------
def _quote(name: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


class TableSink:
    """Write predictions into a database table, a batch at a time, in one transaction.

    A context manager like :class:`~steadyclf.io.tables.TableWriter`: the table is created
    with the first batch's types, or appended to when it exists and its columns match
    (names when the sink opens, types with the first batch); the transaction is committed
    when the block ends without an error and rolled back otherwise. Until the commit other
    sessions see nothing, and a failure or a killed process leaves no table, or the old
    one as it was.

    Parameters
    ----------
    target : TableTarget
    columns : list of str
        The columns the batches will have (checked against an existing table first).
    database : Database, optional
        An open database to write into (default: opened from ``target``, and closed at
        the end).
    """

    def __init__(
        self, target: TableTarget, columns: Sequence[str], database: Database | None = None
    ) -> None:
        self.target = target
        self.columns = list(columns)
        self.rows = 0
        self._given = database
        self._database: Database | None = None
        self._existing: pa.Schema | None = None
        self._conn: Any = None
        self._checked = False
        #: A DuckDB file this sink created: removed unless the predictions are committed.
        self._created: str | None = None

    @property
    def name(self) -> str:
        """The table as messages name it (never with a password)."""
        database = self._database.name if self._database is not None else "the database"
        return f"table {self.target.table!r} of {database}"

    def __enter__(self) -> TableSink:
        spec = self.target.database
        new = self._given is None and "://" not in spec and not os.path.lexists(spec)
        db = self._given or open_database(spec, read_only=False)
        self._database = db
        self._created = spec if new else None
        try:
            if isinstance(db, DuckDBDatabase):
                self._conn = db.connection
                self._existing = _duckdb_table_schema(self._conn, self.target.table)
                self._conn.execute("BEGIN TRANSACTION")
            else:
                assert isinstance(db, AdbcDatabase)
                self._conn = db.connect(autocommit=False, read_only=False)
                self._existing = _adbc_table_schema(self._conn, db, self.target)
            if self._existing is not None:
                self._check_names()
        except BaseException:
            self._close()
            self._remove_created()
            raise
        return self

    def _check_names(self) -> None:
        assert self._existing is not None
        if [n.lower() for n in self._existing.names] != [c.lower() for c in self.columns]:
            raise DataError(
                f"cannot append to {self.name}: it has columns {self._existing.names}, the predictions {self.columns}"
            )

    def write(self, frame: pd.DataFrame) -> None:
        """Add the rows of ``frame`` to the table (in the open transaction)."""
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if not self._checked and self._existing is not None:
            for old, new in zip(self._existing, table.schema, strict=True):
                if arrow_kind(_read_type(old.type)) != arrow_kind(_read_type(new.type)):
                    raise DataError(
                        f"cannot append to {self.name}: column {old.name!r} is {old.type} there, {new.type} in the predictions"
                    )
            table = table.rename_columns(self._existing.names)
        create = self._existing is None and not self._checked
        self._checked = True
        db = self._database
        try:
            if isinstance(db, DuckDBDatabase):
                self._conn.register("steadyclf_batch", table)
                verb = "CREATE TABLE {} AS" if create else "INSERT INTO {}"
                self._conn.execute(
                    f"{verb.format(_quote(self.target.table))} SELECT * FROM steadyclf_batch"
                )
                self._conn.unregister("steadyclf_batch")
            else:
                assert isinstance(db, AdbcDatabase)
                schema, name = self.target.qualified
                with self._conn.cursor() as cur:
                    mode = "create" if create else "append"
                    cur.adbc_ingest(name, table, mode=mode, db_schema_name=schema)
        except db._errors as exc:  # type: ignore[union-attr]
            raise db.failed(exc, f"writing {self.name}") from None  # type: ignore[union-attr]
        self.rows += len(frame)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        committed = False
        try:
            if exc_type is None:
                self._commit()
                committed = True
            else:
                self._rollback()
        finally:
            self._close()
            if not committed:
                self._remove_created()

    def _commit(self) -> None:
        db = self._database
        try:
            if isinstance(db, DuckDBDatabase):
                self._conn.execute("COMMIT")
            else:
                self._conn.commit()
        except db._errors as exc:  # type: ignore[union-attr]
            raise db.failed(exc, f"writing {self.name}") from None  # type: ignore[union-attr]

    def _rollback(self) -> None:
        try:
            if isinstance(self._database, DuckDBDatabase):
                self._conn.execute("ROLLBACK")
            elif self._conn is not None:
                self._conn.rollback()
        except Exception:  # the connection is gone: the server drops the transaction
            pass

    def _close(self) -> None:
        if isinstance(self._database, AdbcDatabase) and self._conn is not None:
            self._conn.close()
        elif isinstance(self._database, DuckDBDatabase) and self._given is None:
            self._database.close()
        self._conn = None

    def _remove_created(self) -> None:
        """Remove the DuckDB file this sink created (and its write-ahead log) when nothing
        was committed: a failed run leaves no empty database behind. A file that existed
        before is left as it was (the rollback did that)."""
        if self._created is None:
            return
        for path in (self._created, self._created + ".wal"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        self._created = None


def _duckdb_table_schema(con: Any, table: str) -> pa.Schema | None:
    schema, _, name = table.rpartition(".")
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = coalesce(?, current_schema())",
        [name, schema or None],
    ).fetchall()
    if not found or not found[0][0]:
        return None
    result: pa.Schema = con.sql(f"SELECT * FROM {_quote(table)} LIMIT 0").to_arrow_table().schema
    return result


def _adbc_table_schema(conn: Any, db: AdbcDatabase, target: TableTarget) -> pa.Schema | None:
    schema, name = target.qualified
    try:
        found: pa.Schema = conn.adbc_get_table_schema(name, db_schema_filter=schema)
    except db._errors:  # no such table
        conn.rollback()  # the failed lookup aborted the transaction
        return None
    return found
