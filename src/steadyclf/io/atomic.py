"""The one way steadyclf writes files: under a temporary name, then renamed into place.

An interrupted or failed write never leaves half a file (or half a model directory):
readers see the old content or the new one. :func:`atomic_path` is the building block
(a temporary path beside the target, renamed on success, removed on failure);
:func:`atomic_write` writes bytes or text through it, and :func:`staged_directory` does
the same for a whole directory (a model), swapping an old one out.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write", "staged_directory", "staged_files"]


@contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, fsync: bool = False, mode: int = 0o644
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    Whatever the block writes to the temporary path appears at ``path`` at once, by a
    rename; if the block raises, the temporary file is removed and ``path`` is untouched.
    With ``fsync`` the file is flushed to disk before the rename (checkpoints), so a crash
    leaves the old file or the new one.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        if fsync:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, fsync: bool = False) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; returns ``path``."""
    blob = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(blob)
    return Path(path)


@contextmanager
def staged_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty staging directory; on success it becomes ``path``.

    An existing directory at ``path`` is moved aside, replaced by the staging directory
    and then removed, so readers see the old directory or the new one, never a mix. If
    the block raises, the staging directory is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
        os.chmod(staging, 0o755)
        _install(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def staged_files(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a staging directory inside ``directory``; on success its files move there.

    For several files that belong together in a directory that may hold others (an
    evaluation report): none of them appears unless every one was written. Each is
    renamed into place; the staging directory is removed whatever happens.
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target))
    try:
        yield staging
        for path in sorted(staging.iterdir()):
            os.chmod(path, 0o644)
            os.replace(path, target / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _install(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an old directory there is swapped out, then removed."""
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        os.replace(staging, target)  # rename(2) replaces a missing or empty directory
        return
    backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, backup)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)
