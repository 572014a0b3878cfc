"""Text from the data (column names, levels) written into Markdown and terminal output.

A column may be named ``c|a|t``, or hold a newline, ``<b>`` or an escape sequence: put
in as it is, it moves a Markdown table's cells, becomes markup, or rewrites what a
terminal shows. Each output format escapes it its own way; HTML is escaped by the
report's template engine (Jinja2 with autoescape), JSON by its encoder.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["markdown", "terminal"]

#: Characters a terminal does not print as themselves: control characters (newline,
#: carriage return, escape), format characters (right-to-left overrides, zero widths)
#: and the line and paragraph separators.
_UNPRINTABLE = ("Cc", "Cf", "Zl", "Zp")
#: ASCII punctuation with a meaning in Markdown (CommonMark lets a backslash escape any):
#: the table's cell separator, emphasis, code, links, inline HTML, entities.
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+!|&~])")


def terminal(text: str) -> str:
    """``text`` with every character a terminal would act on shown as Python writes it
    in a literal (``\\n``, ``\\x1b``, ``\\u202e``); everything else as it is.

    >>> terminal("a\\nb\\x1b[31m")
    'a\\\\nb\\\\x1b[31m'
    """
    if text.isprintable():
        return text
    return "".join(
        c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in _UNPRINTABLE else c
        for c in text
    )


def markdown(text: str) -> str:
    """``text`` as literal Markdown inline text (a table cell, a sentence): control
    characters as in :func:`terminal` (a newline would end a table row), then every
    punctuation character with a Markdown meaning behind a backslash (``|`` would end
    a cell, ``<b>`` would be markup).

    >>> markdown("c|a|t <b>")
    'c\\\\|a\\\\|t \\\\<b\\\\>'
    """
    return _MARKDOWN.sub(r"\\\1", terminal(text))
