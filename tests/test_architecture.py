"""The shape of the code: data flows one way through the stage folders, no module reaches
into another's private names, and what is written to disk goes through one helper."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "steadyclf"
MODULES = sorted(p for p in SRC.rglob("*.py"))


def _name(path: Path) -> str:
    parts = ["steadyclf", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str], bool]]:
    """(module imported, names taken from it, at module level) for every import."""
    tree = ast.parse(path.read_text())
    package = _name(path) if path.name == "__init__.py" else _name(path).rsplit(".", 1)[0]
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((module, [a.name for a in node.names], id(node) in top_level))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], id(node) in top_level) for a in node.names]
    return found


def _internal(module: str) -> bool:
    return module == "steadyclf" or module.startswith("steadyclf.")


def test_no_module_uses_another_modules_private_names() -> None:
    offences = []
    for path in MODULES:
        for module, names, _ in _imports(path):
            if not _internal(module):
                continue
            for name in names:
                if name.startswith("_") and not name.startswith("__"):
                    offences.append(f"{_name(path)} imports {name} from {module}")
        text = path.read_text()
        # Calls such as ``estimator._fit_threshold(...)`` on another module's objects (a
        # module may call the private methods it defines on its own objects).
        pattern = r"\b(clf|estimator|encoder|trainer|module)\.(_[a-z]\w*)\("
        for match in re.finditer(pattern, text):
            if f"def {match.group(2)}(" not in text:
                offences.append(f"{_name(path)}: {match.group(0)}")
    assert not offences, "\n".join(offences)


def _graph(top_level_only: bool) -> dict[str, set[str]]:
    names = {_name(p) for p in MODULES}
    graph: dict[str, set[str]] = {}
    for path in MODULES:
        edges = set()
        for module, imported, top in _imports(path):
            if not _internal(module) or (top_level_only and not top):
                continue
            for candidate in (module, *(f"{module}.{n}" for n in imported)):
                if candidate in names and candidate != _name(path):
                    edges.add(candidate)
        graph[_name(path)] = edges
    return graph


def test_no_import_cycle() -> None:
    graph = _graph(top_level_only=True)
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a package and its own modules
            if seen.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, nxt]))
            if nxt not in seen:
                visit(nxt, [*path, nxt])
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node, [node])


#: What each stage may import (at module level), so a reader can follow the data:
#: io -> schema -> nn -> train -> policy/pipeline -> estimator -> persistence, cli.
LAYERS = {
    "steadyclf.io": {"steadyclf.exceptions", "steadyclf.io"},
    "steadyclf.schema": {"steadyclf.exceptions", "steadyclf.io", "steadyclf.schema"},
    "steadyclf.nn": {"steadyclf.exceptions", "steadyclf.nn"},
    "steadyclf.persistence": {
        "steadyclf.exceptions",
        "steadyclf.io",
        "steadyclf.schema",
        "steadyclf.nn.spec",
        "steadyclf.policy",
    },
    # Prediction and export read a saved model: never torch's modules, nor the estimator.
    "steadyclf.predictor": {
        "steadyclf.exceptions",
        "steadyclf.io",
        "steadyclf.schema",
        "steadyclf.nn.spec",
        "steadyclf.nn.numpy_forward",
        "steadyclf.persistence",
    },
    "steadyclf.export": {
        "steadyclf.exceptions",
        "steadyclf.io",
        "steadyclf.schema",
        "steadyclf.nn.spec",
        "steadyclf.nn.numpy_forward",
        "steadyclf.persistence",
        "steadyclf.export",
    },
}


@pytest.mark.parametrize("stage", sorted(LAYERS))
def test_each_stage_imports_only_the_stages_before_it(stage: str) -> None:
    allowed = LAYERS[stage]
    for module, edges in _graph(top_level_only=True).items():
        if module != stage and not module.startswith(stage + "."):
            continue
        for edge in edges:
            assert any(edge == a or edge.startswith(a + ".") for a in allowed), (
                f"{module} imports {edge}"
            )


def test_reading_a_model_imports_neither_torch_nor_the_estimator() -> None:
    code = (
        "import sys, steadyclf.persistence, steadyclf.predictor, steadyclf.export.onnx_graph\n"
        "bad = [m for m in ('torch', 'steadyclf.estimator', 'matplotlib', 'sklearn', 'onnx')\n"
        "       if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_one_atomic_write_helper() -> None:
    """Only io/atomic.py creates temporary files to rename into place."""
    offenders = []
    for path in MODULES:
        code = [line for line in path.read_text().splitlines() if ">>>" not in line]  # examples
        if path != SRC / "io" / "atomic.py" and re.search(
            r"mkstemp|mkdtemp|os\.replace|os\.rename", "\n".join(code)
        ):
            offenders.append(_name(path))
    assert not offenders, offenders


def test_one_table_of_activations() -> None:
    """Activation names appear in the table of nn/spec.py only."""
    pattern = re.compile(r"""["'](relu|sigmoid|tanh|gelu)["']\s*:""")
    holders = [_name(p) for p in MODULES if pattern.search(p.read_text())]
    assert holders == ["steadyclf.nn.spec"], holders


def test_every_third_party_import_is_a_declared_dependency() -> None:
    requirements = importlib.metadata.requires("steadyclf") or []
    declared = {re.split(r"[ ;<>=!\[]", r, maxsplit=1)[0].lower() for r in requirements}
    providers = importlib.metadata.packages_distributions()
    standard = set(sys.stdlib_module_names)
    missing = set()
    for path in MODULES:
        for module, _, _ in _imports(path):
            top = module.split(".")[0]
            if not top or top in standard or top == "steadyclf" or top == "__future__":
                continue
            dists = {d.lower() for d in providers.get(top, [top])}
            if not dists & declared:
                missing.add(f"{top} ({_name(path)})")
    assert not missing, sorted(missing)


#: No module longer than this: past it, a module holds more than one concern.
MAX_MODULE_LINES = 800


def test_no_module_is_too_long() -> None:
    lengths = {_name(p): len(p.read_text().splitlines()) for p in MODULES}
    long = {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES}
    assert not long, long
