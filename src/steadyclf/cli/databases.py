"""What ``steadyclf predict`` needs for databases: rows from a query, a table to write.

Kept apart from :mod:`steadyclf.cli.predict` so that the file path stays as it is; both
hand the same loop a source (``columns``, ``with_types``, ``row_bytes``, ``batches``) and
a writer (a context manager with ``write(frame)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import DataError

if TYPE_CHECKING:
    from ..io.sql import SqlSource, TableSink, TableTarget

__all__ = ["open_query", "output_table", "prediction_sink", "shown"]


def shown(spec: str) -> str:
    """A data or output spelling as messages show it: a URI without its password."""
    from ..io.uris import shown as without_password

    return without_password(spec)


def output_table(out: str | None) -> TableTarget | None:
    """The table ``--out`` names (``postgresql://.../db/table``, ``x.duckdb::table``), or
    None for a file (or standard output)."""
    if out is None:
        return None
    from ..io.sql import parse_table_target

    return parse_table_target(out)


def _same_duckdb_file(data: str, target: TableTarget | None) -> bool:
    if target is None or "://" in data or "://" in target.database:
        return False
    try:
        return Path(data).resolve() == Path(target.database).resolve()
    except OSError:
        return False


def open_query(data: str, query: str, target: TableTarget | None) -> SqlSource:
    """The rows of ``query`` on the database DATA; a DuckDB file that is also the output
    is opened once, for writing (DuckDB allows one mode per file in a process)."""
    from ..io.sql import DuckDBDatabase, SqlSource
    from ..io.sql_guard import check_reads_only

    check_reads_only(query)  # before the file is opened for writing
    if _same_duckdb_file(data, target):
        if not Path(data).is_file():  # opened for writing, it would be created empty
            raise DataError(f"DuckDB database {data!r} does not exist")
        return SqlSource.open(DuckDBDatabase.open(data, read_only=False), query)
    return SqlSource.open(data, query)


def prediction_sink(target: TableTarget, columns: list[str], data: str, rows: Any) -> TableSink:
    """The writer of predictions into ``target`` (in one transaction)."""
    from ..io.sql import SqlSource, TableSink

    shared = None
    if isinstance(rows, SqlSource) and _same_duckdb_file(data, target):
        shared = rows.database
    return TableSink(target, columns, database=shared)
