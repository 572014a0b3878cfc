"""The package builds as a wheel that holds every module and its data, and installs.

The wheel is built from a copy of the project (``pip wheel --no-deps --no-build-isolation``:
setuptools leaves ``build/`` and an ``egg-info`` beside the sources it builds) and
installed with ``pip install --no-deps --target``: the dependencies (torch...) are those
of the running environment, so nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "steadyclf"

# setuptools >= 70 builds wheels by itself (no separate ``wheel`` package needed).
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("setuptools") is None,
    reason="building the wheel needs setuptools (pip install setuptools)",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "pyproject.toml", project)
    shutil.copy(ROOT / "README.md", project)
    shutil.copytree(
        SRC, project / "src" / "steadyclf", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(project)],
        check=True,
        timeout=300,
    )  # fmt: skip
    (built,) = out.glob("steadyclf-*.whl")
    return built


def test_wheel_holds_every_module_and_the_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        p.relative_to(SRC.parent).as_posix()
        for p in SRC.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert "steadyclf/py.typed" in expected
    assert "steadyclf/templates/report.html.j2" in expected
    missing = expected - names
    assert not missing, f"not in the wheel: {sorted(missing)}"


def test_wheel_declares_the_command_and_the_extras(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    info = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    metadata = archive.read(info).decode()
    extras = {
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Provides-Extra:")
    }
    assert {"plot", "report", "export", "sql", "mlflow", "bench"} <= extras
    assert "Description-Content-Type: text/markdown" in metadata  # the README renders
    scripts = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
    assert "steadyclf = steadyclf.cli:main" in scripts


def test_wheel_installs_and_imports_from_where_it_was_installed(
    wheel: Path, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
    )  # fmt: skip
    code = (
        "import importlib.resources as r, pathlib, steadyclf, sys\n"
        "assert pathlib.Path(steadyclf.__file__).is_relative_to(sys.argv[1]), steadyclf.__file__\n"
        "package = r.files('steadyclf')\n"
        "assert (package / 'templates' / 'report.html.j2').is_file()\n"
        "assert (package / 'py.typed').is_file()\n"
        "from steadyclf.cli import main\n"
        "assert main(['--version']) == 0\n"
    )
    # -I: isolated, so neither PYTHONPATH nor the working directory can supply steadyclf;
    # the environment's site-packages still give torch, NumPy...
    subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, sys.argv[1])\n{code}",
         str(target)],
        check=True,
        timeout=120,
    )  # fmt: skip
