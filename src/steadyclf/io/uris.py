"""Database URIs in messages: the password replaced by ``***`` (:func:`redact`,
:func:`shown` for any data spelling), and a driver's message cleaned of the URI's secrets
(:func:`scrub`)."""

from __future__ import annotations

import os
import re
import urllib.parse

__all__ = ["redact", "scrub", "shown"]


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
