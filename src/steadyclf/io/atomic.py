"""The one way steadyclf writes files: under a temporary name, then renamed into place.

An interrupted or failed write never leaves half a file (or half a model directory):
readers see the old content or the new one. :func:`atomic_path` is the building block
(a temporary path beside the target, renamed on success, removed on failure);
:func:`atomic_write` writes bytes or text through it, and :func:`staged_directory` does
the same for a whole directory (a model).

A directory is replaced in one step: ``NAME`` is a symbolic link to a complete, never
modified version ``.NAME.v-<id>`` beside it, and a new version is put in place by
renaming a new link over ``NAME`` (``rename(2)`` replaces a link atomically). A reader
sees the old version or the new one, and a crash at any step leaves one of them at
``NAME``; the next save removes what an interrupted one left (``.NAME.tmp-*`` staging
directories, ``.NAME.link-*``, versions no link points to). A directory written by an
earlier steadyclf (a real directory at ``NAME``) is exchanged for the link in one
``renameat2(RENAME_EXCHANGE)`` call on Linux; elsewhere, or where the file system refuses
it, it is moved aside first (a crash then leaves it as ``.NAME.old-*``, which a load
names). Writers of one target take :func:`exclusive_lock` (``.NAME.lock``, flock,
removed when released).

Files get the permissions ``open()`` would give them: a new file ``0666`` less the
umask, a replaced file keeps its mode; a new directory ``0777`` less the umask.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import os
import secrets
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..exceptions import ModelFileError, SteadyclfError

__all__ = [
    "LockedError",
    "atomic_path",
    "atomic_write",
    "exclusive_lock",
    "file_mode",
    "leftovers",
    "process_running",
    "remove_leftovers",
    "staged_directory",
    "staged_files",
]


class LockedError(SteadyclfError):
    """Another process (or thread) is writing the same output."""


#: Test seam: called with the name of each step of a directory replacement
#: ('versioned', 'linked', 'moved-aside'); a test makes it raise or SIGKILL to crash between steps.
_after_step: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if _after_step is not None:
        _after_step(name)


# -- permissions ------------------------------------------------------------------------------
def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, at once set back
    os.umask(mask)
    return mask


def file_mode(target: str | os.PathLike[str]) -> int:
    """The mode ``open(target, 'w')`` would leave: the existing file's, else 0666 & ~umask."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~_umask()


# -- files ------------------------------------------------------------------------------------
@contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, fsync: bool = False, mode: int | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    Whatever the block writes to the temporary path appears at ``path`` at once, by a
    rename; if the block raises, the temporary file is removed and ``path`` is untouched.
    With ``fsync`` the file is flushed to disk before the rename (checkpoints), so a crash
    leaves the old file or the new one. ``mode`` defaults to :func:`file_mode`.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.{os.getpid()}-"
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, file_mode(target) if mode is None else mode)
        if fsync:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _remove_dead_temporaries(target)


def _remove_dead_temporaries(target: Path) -> None:
    """Remove ``.NAME.<pid>-*.tmp`` files of processes that no longer run (killed writers)."""
    with contextlib.suppress(OSError):
        for entry in target.parent.glob(f".{glob.escape(target.name)}.*-*.tmp"):
            pid = entry.name[len(target.name) + 2 :].split("-", 1)[0]
            if pid.isdigit() and not process_running(int(pid)):
                entry.unlink(missing_ok=True)


def process_running(pid: int) -> bool:
    """Whether process ``pid`` runs (on this machine): a temporary file's writer."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, fsync: bool = False) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; returns ``path``."""
    blob = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(blob)
    return Path(path)


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
            os.chmod(path, file_mode(target / path.name))
            os.replace(path, target / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -- locks ------------------------------------------------------------------------------------
class _Held:
    """One lock file of this process: a thread lock, how deep it is held, the file."""

    def __init__(self) -> None:
        self.local = threading.RLock()
        self.depth = 0
        self.fd = -1


_locks_guard = threading.Lock()
_locks: dict[str, _Held] = {}


@contextmanager
def exclusive_lock(target: str | os.PathLike[str], *, wait: bool = True) -> Iterator[None]:
    """Hold the lock of ``target`` (``flock`` on ``.NAME.lock`` beside it).

    Re-entrant within a thread (a run that holds it may save through code that takes it
    again). ``wait=False`` raises :class:`LockedError` at once if another process or
    thread holds it. The lock file is removed as the lock is released (a waiting writer
    then checks that it locked the file still at that path).
    """
    path = Path(target)
    lock_path = path.parent / f".{path.name}.lock"
    with _locks_guard:
        held = _locks.setdefault(os.path.abspath(lock_path), _Held())
    if not held.local.acquire(blocking=wait):
        raise _locked(path)
    try:
        if held.depth == 0:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                held.fd = _flock(lock_path, path, wait)
            except LockedError:
                raise
            except OSError as exc:  # a read-only folder, a file where a folder should be...
                raise ModelFileError(
                    f"cannot write {str(path)!r}: {exc.strerror or exc} ({exc.filename})"
                ) from None
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
            if held.depth == 0:
                _unlock(lock_path, held.fd)
    finally:
        held.local.release()


def _flock(lock_path: Path, target: Path, wait: bool) -> int:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: the in-process lock only
        return os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise _locked(target) from None
            raise
        # The holder before us removes the file as it lets go: ours must still be the
        # file at that path, or we locked a removed one (then try again).
        try:
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _unlock(lock_path: Path, fd: int) -> None:
    """Remove the lock file while still holding it (see :func:`_flock`), then let go."""
    with contextlib.suppress(OSError):
        os.unlink(lock_path)
    os.close(fd)


def _locked(target: Path) -> LockedError:
    return LockedError(
        f"another run is writing {str(target)!r} (it holds {str(target.parent / ('.' + target.name + '.lock'))!r}); "
        "wait for it to finish or choose another --out"
    )


# -- directories ------------------------------------------------------------------------------
@contextmanager
def staged_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty staging directory; on success it becomes ``path`` in one step.

    ``path`` becomes (or stays) a link to the new version; the previous version is removed
    afterwards. If the block raises, the staging directory is removed and ``path`` is
    untouched. Writers of one ``path`` take turns (:func:`exclusive_lock`).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(target):
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            yield staging
            os.chmod(staging, 0o777 & ~_umask())
            _install(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _remove_leftovers(target)


def _install(staging: Path, target: Path) -> None:
    """Make the complete ``staging`` directory the content of ``target`` in one rename."""
    version = target.parent / f".{target.name}.v-{time.time_ns():x}{secrets.token_hex(3)}"
    link = target.parent / f".{target.name}.link-{secrets.token_hex(4)}"
    os.rename(staging, version)  # a .v- directory is always complete
    try:
        _step("versioned")
        try:
            os.symlink(version.name, link)
        except (OSError, NotImplementedError):  # no symbolic links: replace by two renames
            _swap_directories(version, target)
            return
        if target.is_symlink() or not target.exists():
            os.replace(link, target)  # the commit point
        elif target.is_dir() and not any(target.iterdir()):
            target.rmdir()
            os.replace(link, target)
        else:  # a real directory: written by an earlier steadyclf
            _exchange_or_swap(link, target)
    except BaseException:  # interrupted before the commit: the old model stays, alone
        if not (target.is_symlink() and os.readlink(target) == version.name):
            _remove(link)
            _remove(version)
        raise
    _step("linked")


def _exchange_or_swap(new: Path, target: Path) -> None:
    """Put ``new`` at ``target`` (a directory): exchanged in one call where possible."""
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # ``new`` now holds the old directory
        return
    _swap_directories(new, target)


def _exchange(a: Path, b: Path) -> bool:
    """``renameat2(a, b, RENAME_EXCHANGE)``: swap two paths atomically (Linux >= 3.15).

    False where the C library lacks it or the file system refuses (then nothing moved).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return bool(done == 0)


def _swap_directories(new: Path, target: Path) -> None:
    """Move ``target`` aside, ``new`` in, then remove the old one (the portable fallback)."""
    if not target.exists() and not target.is_symlink():
        os.replace(new, target)
        return
    backup = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
    os.replace(target, backup)
    _step("moved-aside")
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(backup, target)
        raise
    _remove(backup)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def leftovers(target: str | os.PathLike[str]) -> list[Path]:
    """What interrupted writes of directory ``target`` left beside it.

    Versions no link points to (``.NAME.v-*``), staging directories (``.NAME.tmp-*``),
    links (``.NAME.link-*``) and moved-aside directories (``.NAME.old-*``); never the
    current version or the lock file. Call it holding the lock: a writer's staging
    directory is a leftover only once the writer is gone.
    """
    path = Path(target)
    current = os.readlink(path) if path.is_symlink() else None
    found = []
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            rest = entry.name[len(path.name) + 2 :]
            if (
                entry.name.startswith(f".{path.name}.")
                and entry.name != current
                and rest.startswith(("v-", "tmp-", "link-", "old-"))
            ):
                found.append(entry)
    return sorted(found)


def _remove_leftovers(target: Path) -> None:
    for entry in leftovers(target):
        _remove(entry)


def remove_leftovers(target: str | os.PathLike[str]) -> list[Path]:
    """Remove what interrupted writes of ``target`` left, holding its lock; returns them."""
    with exclusive_lock(target):
        found = leftovers(target)
        for entry in found:
            _remove(entry)
    return found
