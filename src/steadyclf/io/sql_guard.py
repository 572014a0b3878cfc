"""What a query given to read rows (``--query``, ``query=``) may be: one statement that reads.

Two guards, so that a query can never change the database it reads:

- :func:`check_reads_only`, before anything runs: the query must be one statement, a
  ``SELECT`` (``WITH ... SELECT``, ``VALUES``, ``TABLE``, DuckDB's ``FROM``-first query),
  checked with DuckDB's parser where it knows the syntax, by its first word otherwise
  (PostgreSQL's own syntax). ``DROP``, ``DELETE ... RETURNING``, ``CREATE``, ``COPY``,
  ``ATTACH``, ``PRAGMA`` or a second statement after a ``;`` are refused in one line.
- Every read runs in a read-only transaction (:mod:`steadyclf.io.sql`): what the parser
  takes for a ``SELECT`` but writes (``WITH d AS (DELETE ... RETURNING *) SELECT ...``, a
  function with side effects such as ``nextval``) fails in the database, which writes
  nothing.
"""

from __future__ import annotations

import re
from typing import Any

from ..exceptions import ParameterError

__all__ = ["READING_WORDS", "check_reads_only", "first_word"]

#: First words of the statements that read rows.
READING_WORDS = ("SELECT", "WITH", "VALUES", "TABLE", "FROM")
_WHAT = "one SELECT (or WITH ... SELECT, VALUES, TABLE, FROM ...)"
#: What leads the first word: spaces, ``--`` and ``/* */`` comments, opening parentheses.
_LEAD = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*", re.S)


def first_word(query: str) -> str:
    """The query's first word, upper case (``''`` when it starts with something else)."""
    rest = query[_LEAD.match(query).end() :]  # type: ignore[union-attr]
    word = re.match(r"[A-Za-z_]+", rest)
    return word.group(0).upper() if word else ""


def check_reads_only(query: str) -> None:
    """Refuse ``query`` unless it is one statement that reads rows: a one-line
    :class:`~steadyclf.exceptions.ParameterError`, before anything runs.

    Examples
    --------
    >>> check_reads_only("WITH t AS (SELECT 1 AS a) SELECT * FROM t ORDER BY a;")
    >>> check_reads_only("DROP TABLE trips")
    Traceback (most recent call last):
    ...
    steadyclf.exceptions.ParameterError: the query must only read rows: give one SELECT (or WITH ... SELECT, VALUES, TABLE, FROM ...), not DROP
    """
    if not query or not query.strip():
        raise ParameterError("give the query that selects the rows: --query 'SELECT ...'")
    word = first_word(query)
    if word not in READING_WORDS:
        shown = word or repr(query.strip()[:20])
        raise ParameterError(f"the query must only read rows: give {_WHAT}, not {shown}")
    statements = _statements(query)
    if statements is None:
        return  # syntax DuckDB does not know: the read-only transaction guards it
    if len(statements) != 1:
        raise ParameterError(
            f"the query must be one statement, {_WHAT}; it has {len(statements)} (separated by ';')"
        )
    kind = str(statements[0].type).rsplit(".", 1)[-1]
    if kind != "SELECT":
        raise ParameterError(f"the query must only read rows: give {_WHAT}, not {kind}")


def _statements(query: str) -> list[Any] | None:
    """The statements DuckDB's parser finds in ``query``, or None where it cannot parse
    it (or is not installed): PostgreSQL's own syntax, or an error the database reports."""
    try:
        import duckdb
    except ImportError:
        return None
    try:
        return list(duckdb.extract_statements(query))
    except duckdb.Error:
        return None
