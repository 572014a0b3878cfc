"""Database URIs: in messages, the password replaced by ``***`` (:func:`redact`,
:func:`shown` for any data spelling) and a driver's message cleaned of the URI's secrets
(:func:`scrub`); as ``--out``, the table they name (:func:`parse_table_target`)."""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass

from ..exceptions import ParameterError

__all__ = [
    "DUCKDB_SUFFIXES",
    "POSTGRES_SCHEMES",
    "TableTarget",
    "parse_table_target",
    "redact",
    "scrub",
    "shown",
]

DUCKDB_SUFFIXES = (".duckdb", ".ddb")
POSTGRES_SCHEMES = ("postgresql", "postgres")


def shown(spec: str | os.PathLike[str]) -> str:
    """A data or output spelling as messages show it: a URI without its password, a path
    as given.

    Every message that names DATA or ``--out`` goes through this (or :func:`redact`).

    Examples
    --------
    >>> shown("postgresql://ann:s3cret@db/sales")
    'postgresql://ann:***@db/sales'
    >>> shown("data/rows.csv")
    'data/rows.csv'
    """
    text = os.fspath(spec)
    return redact(text) if "://" in text else text


def redact(uri: str) -> str:
    """``uri`` with its password (if any) replaced by ``***``.

    Examples
    --------
    >>> redact("postgresql://ann:s3cret@db.example:5432/sales?sslmode=require")
    'postgresql://ann:***@db.example:5432/sales?sslmode=require'
    """
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return _redact_query(uri)
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return _redact_query(urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}")))


def _redact_query(uri: str) -> str:
    return re.sub(r"(?i)(password=)[^&;\s]*", r"\1***", uri)


def _secrets(uri: str) -> list[str]:
    parts = urllib.parse.urlsplit(uri)
    found = [] if parts.password is None else [parts.password]
    found += re.findall(r"(?i)password=([^&;\s]+)", uri)
    return [s for s in {*found, *(urllib.parse.unquote(s) for s in found)} if s]


def scrub(text: str, uri: str) -> str:
    """A driver's message without the secrets of ``uri`` (drivers may echo the URI)."""
    for secret in sorted(_secrets(uri), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


# -- tables named by --out ------------------------------------------------------------------
@dataclass(frozen=True)
class TableTarget:
    """A table to write predictions into: ``database`` (spec) and ``table``
    (``name`` or ``schema.name``)."""

    database: str
    table: str

    @property
    def qualified(self) -> tuple[str | None, str]:
        """``(schema or None, table name)``."""
        schema, _, name = self.table.rpartition(".")
        return (schema or None), name


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


def parse_table_target(out: str) -> TableTarget | None:
    """The table ``out`` names, or None for a file.

    ``postgresql://user@host/db/table`` (the last path segment is the table, optionally
    ``schema.table``) and ``data.duckdb::table``.

    Examples
    --------
    >>> parse_table_target("postgresql://ann@db/sales/public.scores")
    TableTarget(database='postgresql://ann@db/sales', table='public.scores')
    >>> parse_table_target("scores.duckdb::scores")
    TableTarget(database='scores.duckdb', table='scores')
    >>> parse_table_target("scores.csv") is None
    True
    """
    if "://" in out and out.split("://", 1)[0].lower() in POSTGRES_SCHEMES:
        parts = urllib.parse.urlsplit(out)
        segments = parts.path.strip("/").split("/")
        if len(segments) != 2 or not all(segments):
            raise ParameterError(
                f"--out {redact(out)!r}: name the database and the table, e.g. postgresql://user@host/db/table"
            )
        database = urllib.parse.urlunsplit(parts._replace(path="/" + segments[0]))
        return _target(database, segments[1], out)
    if "::" in out:
        database, table = out.rsplit("::", 1)
        if not database.lower().endswith(DUCKDB_SUFFIXES):
            raise ParameterError(
                f"--out {shown(out)!r}: a table is written into a DuckDB file (.duckdb) or a postgresql:// database"
            )
        return _target(database, table, out)
    return None


def _target(database: str, table: str, out: str) -> TableTarget:
    if not _IDENTIFIER.match(table):
        raise ParameterError(
            f"--out {shown(out)!r}: table name {table!r} must be letters, digits and _ (optionally schema.table)"
        )
    return TableTarget(database, table)
