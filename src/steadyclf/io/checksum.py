"""A JSON index that checks itself, and pins the files beside it.

The index of a model or checkpoint directory (``model.json``, ``checkpoint.json``) ends
with one more field, ``"checksum": "sha256:<hex>"``, the SHA-256 of every byte of the
file before it; the index in turn holds the SHA-256 of each other file of the directory.
One edited byte anywhere (a threshold, a learning rate, a weight) is then a
:class:`~steadyclf.exceptions.ModelFileError` that names the file that changed.

The digest covers the bytes as written, not a re-serialisation, so it does not depend on
how JSON numbers round-trip. An index without the field (written by an earlier version)
claims nothing and is accepted; one that has the field must match it.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from ..exceptions import ModelFileError

__all__ = ["CHECKSUM_KEY", "file_sha256", "sign_json", "verify_json"]

CHECKSUM_KEY = "checksum"
_TRAILER = re.compile(r',?\s*"checksum":\s*"sha256:([0-9a-f]{64})"\s*}\s*\Z')


def sign_json(index: dict[str, Any], **dumps: Any) -> str:
    """``index`` as JSON text (``json.dumps(index, **dumps)``) ending with its checksum."""
    body = {k: v for k, v in index.items() if k != CHECKSUM_KEY}
    head = json.dumps(body, **dumps).rstrip()[:-1].rstrip()  # without the closing brace
    digest = hashlib.sha256(head.encode("utf-8")).hexdigest()
    gap = "\n" if dumps.get("indent") is not None else ""
    pad = " " * int(dumps.get("indent") or 0)
    separator = ": " if dumps.get("separators") is None else dumps["separators"][1]
    comma = "," if body else ""
    return f'{head}{comma}{gap}{pad}"{CHECKSUM_KEY}"{separator}"sha256:{digest}"{gap}}}\n'


def verify_json(text: str, index: dict[str, Any], where: str) -> None:
    """Raise :class:`ModelFileError` if the checksum ``index`` claims does not match ``text``.

    ``index`` is ``json.loads(text)``; ``where`` names the file in the message.
    """
    if CHECKSUM_KEY not in index:
        return  # written before the checksum existed: nothing is claimed
    match = _TRAILER.search(text)
    if match is None or hashlib.sha256(text[: match.start()].encode("utf-8")).hexdigest() != (
        match.group(1)
    ):
        raise ModelFileError(
            f"{where} does not match its checksum: the file was modified or damaged after "
            "it was written"
        )


def file_sha256(path: Any) -> str:
    """The SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
