"""The examples in the docstrings run: every module of the package whose docstrings hold
one (``>>>``) is run through :mod:`doctest`, so an example cannot drift from the code."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "steadyclf"


def _module_name(path: Path) -> str:
    parts = ["steadyclf", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


#: Modules whose text holds an example (some hold ``>>>`` in a comment only: they run none).
WITH_EXAMPLES = sorted(_module_name(p) for p in SRC.rglob("*.py") if ">>>" in p.read_text())


def test_the_public_modules_have_examples() -> None:
    for name in ("steadyclf.estimator", "steadyclf.callbacks", "steadyclf.params"):
        module = importlib.import_module(name)
        assert doctest.DocTestFinder().find(module), name


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False, report=True)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
