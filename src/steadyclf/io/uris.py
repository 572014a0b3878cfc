"""Database URIs in messages: the password replaced by ``***`` (:func:`redact`), and a
driver's message cleaned of the URI's secrets (:func:`scrub`)."""

from __future__ import annotations

import re
import urllib.parse

__all__ = ["redact", "scrub"]


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
