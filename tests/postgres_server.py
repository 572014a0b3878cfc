"""A throwaway PostgreSQL cluster for tests: ``initdb`` and ``pg_ctl`` in a temp folder.

Debian's ``postgresql`` package installs the binaries under /usr/lib/postgresql/<N>/bin
(``.ci/run`` installs it where absent). The server refuses to run as root, so as root the
cluster belongs to the ``postgres`` system user (created by the package) and its commands
run through ``runuser``. The cluster listens on 127.0.0.1 at a free port and asks for a
password over TCP (scram-sha-256), so that tests see a real authentication.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PASSWORD = "pw-4f9c1e"  # a throwaway cluster's; tests check that messages never show it
USER = "steadyclf"


def find_bin_dir() -> Path | None:
    """The newest PostgreSQL binaries' folder (``PG_BIN`` first), or None."""
    candidates = [os.environ.get("PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for folder in candidates:
        if folder and (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


def _version(path: str) -> int:
    try:
        return int(Path(path).parent.name)
    except ValueError:
        return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A running server: ``uri(db)`` connects with the password in the URI."""

    port: int
    folder: Path

    def uri(self, db: str = "postgres", *, password: bool = True) -> str:
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{db}"


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a cluster command, as ``postgres`` when we are root (the server refuses root)."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """A PostgreSQL server for the session, removed at the end.

    Skips where the binaries are missing, except under CI (``CI`` set), where that fails:
    ``.ci/run`` installs them.
    """
    bin_dir = find_bin_dir()
    if bin_dir is None:
        message = "PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (required under CI)")
        pytest.skip(message)
    with start_cluster(bin_dir) as cluster:
        yield cluster


@contextlib.contextmanager
def start_cluster(bin_dir: Path) -> Iterator[Cluster]:
    """Create and start a cluster in a temp folder; stop and remove it on exit.

    A failing ``initdb`` or start raises with the server's own words (its log)."""
    folder = Path(tempfile.mkdtemp(prefix="steadyclf-pg-"))
    data = folder / "data"
    try:
        pwfile = folder / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres")
            shutil.chown(pwfile, "postgres")
        port = _free_port()
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--pwfile", str(pwfile)]
        initdb += ["--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"]
        _run(initdb)
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        log = folder / "log"
        try:
            _run(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                    "-l",
                    str(log),
                ]
            )
        except subprocess.CalledProcessError as exc:
            text = log.read_text() if log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {exc.stderr}\n{text}") from None
        yield Cluster(port, folder)
    finally:
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError):  # already gone
                _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(folder, ignore_errors=True)
