"""The shape of the code: data flows one way through the stage folders, no module reaches
into another's private names, and what is written to disk goes through one helper."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "steadyclf"
MODULES = sorted(p for p in SRC.rglob("*.py"))


def _name(path: Path) -> str:
    parts = ["steadyclf", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """Ids of the nodes under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside |= {id(n) for child in node.body for n in ast.walk(child)}
    return inside


def imports_of(name: str, source: str, *, package: bool = False) -> list[Import]:
    """Every import in the ``source`` of module ``name``: at module level, inside a function
    (run when it is called) or under ``if TYPE_CHECKING:`` (for annotations)."""
    tree = ast.parse(source)
    base_package = name if package else name.rsplit(".", 1)[0]
    top_level = {id(node) for node in tree.body}
    for_types = _type_checking_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = base_package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names = [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            module, names = "", []
            found += [
                Import(a.name, [], _kind(node, top_level, for_types), node.lineno)
                for a in node.names
            ]
            continue
        else:
            continue
        found.append(Import(module, names, _kind(node, top_level, for_types), node.lineno))
    return found


@dataclass
class Import:
    module: str
    names: list[str]
    kind: str  # 'module' (module level), 'function' (run when called), 'type' (TYPE_CHECKING)
    line: int


def _kind(node: ast.AST, top_level: set[int], for_types: set[int]) -> str:
    if id(node) in for_types:
        return "type"
    return "module" if id(node) in top_level else "function"


def _imports(path: Path) -> list[Import]:
    return imports_of(_name(path), path.read_text(), package=path.name == "__init__.py")


def _internal(module: str) -> bool:
    return module == "steadyclf" or module.startswith("steadyclf.")


NAMES = {_name(p) for p in MODULES}


def _targets(found: Import) -> list[str]:
    """The steadyclf modules an import reaches: ``from .schema import summary`` reaches
    ``steadyclf.schema.summary``, ``from .schema.summary import summarise`` the module."""
    if not _internal(found.module):
        return []
    modules = [f"{found.module}.{n}" for n in found.names if f"{found.module}.{n}" in NAMES]
    return modules if modules and len(modules) == len(found.names) else [found.module]


def test_no_module_uses_another_modules_private_names() -> None:
    offences = []
    for path in MODULES:
        for found in _imports(path):
            if not _internal(found.module):
                continue
            for name in found.names:
                if name.startswith("_") and not name.startswith("__"):
                    offences.append(f"{_name(path)} imports {name} from {found.module}")
        text = path.read_text()
        # Calls such as ``estimator._fit_threshold(...)`` on another module's objects (a
        # module may call the private methods it defines on its own objects).
        pattern = r"\b(clf|estimator|encoder|trainer|module)\.(_[a-z]\w*)\("
        for match in re.finditer(pattern, text):
            if f"def {match.group(2)}(" not in text:
                offences.append(f"{_name(path)}: {match.group(0)}")
    assert not offences, "\n".join(offences)


# -- stages ---------------------------------------------------------------------------------
#: The stages, from the bottom up: a module imports only from its own stage and the ones
#: below it, so a reader can follow the data (io -> schema -> nn -> train -> policy ->
#: persistence -> predictor -> doctor -> pipeline -> estimator -> reports -> cli). An
#: import under ``if TYPE_CHECKING:`` (annotations only) may point up.
STAGES: list[tuple[str, ...]] = [
    ("steadyclf.exceptions", "steadyclf.version"),
    ("steadyclf.parallel", "steadyclf.io"),
    ("steadyclf.schema",),
    ("steadyclf.nn",),
    ("steadyclf.train",),
    ("steadyclf.policy", "steadyclf.params", "steadyclf.evaluation", "steadyclf.calibration"),
    ("steadyclf.persistence",),
    (
        "steadyclf.predictor",
        "steadyclf.export",
        "steadyclf.drift",
        "steadyclf.plots",
        "steadyclf.datasets",
    ),
    ("steadyclf.doctor",),
    ("steadyclf.fit_state", "steadyclf.choice", "steadyclf.pipeline", "steadyclf.callbacks"),
    ("steadyclf.inputs", "steadyclf.estimator"),
    ("steadyclf.importance", "steadyclf.report", "steadyclf.demo", "steadyclf.mlflow"),
    ("steadyclf.cli", "steadyclf.__main__", "steadyclf"),
]
#: Imports a stage may not make although they are below it.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    # Reading a saved model needs neither torch's modules nor training.
    **{
        reader: (
            "steadyclf.nn.modules",
            "steadyclf.nn.step",
            "steadyclf.nn.optim",
            "steadyclf.nn.device",
            "steadyclf.train",
            "steadyclf.parallel",
        )
        for reader in ("steadyclf.persistence", "steadyclf.predictor", "steadyclf.export")
    },
    # The command line uses the public API (callbacks included), not training internals.
    "steadyclf.cli": ("steadyclf.train", "steadyclf.pipeline", "steadyclf.nn.modules"),
}


def _within(module: str, prefix: str) -> bool:
    if prefix == "steadyclf":  # the root package: itself only, not every module
        return module == prefix
    return module == prefix or module.startswith(prefix + ".")


def stage_of(module: str) -> int:
    """The stage of ``module`` (a module or package of steadyclf)."""
    for level, members in enumerate(STAGES):
        if any(_within(module, m) for m in members):
            return level
    raise AssertionError(f"{module} is in no stage: add it to STAGES")


def stage_offences(name: str, source: str, *, package: bool = False) -> list[str]:
    """Every import of the module ``name`` (given its ``source``) that breaks the stages."""
    offences = []
    mine = stage_of(name)
    forbidden = [f for owner, fs in FORBIDDEN.items() if _within(name, owner) for f in fs]
    future = "from __future__ import annotations" in source
    for found in imports_of(name, source, package=package):
        for target in _targets(found):
            where = f"{name}:{found.line} ({found.kind} level) imports {target}"
            if found.kind == "type":
                if not future:  # else the name could be used at run time, where it is absent
                    offences.append(f"{where} for annotations without postponed annotations")
                continue
            if stage_of(target) > mine:
                offences.append(f"{where}, a later stage")
            if any(_within(target, f) for f in forbidden):
                offences.append(f"{where}, which it must not")
    return offences


def test_every_module_is_in_a_stage() -> None:
    for name in NAMES:
        stage_of(name)


def test_every_import_follows_the_stages() -> None:
    offences = [
        offence
        for path in MODULES
        for offence in stage_offences(
            _name(path), path.read_text(), package=path.name == "__init__.py"
        )
    ]
    assert not offences, "\n".join(offences)


def test_the_stage_check_catches_an_upward_import_inside_a_function() -> None:
    """The check reads function bodies too: a planted run-time import of the estimator
    from the schema stage is caught, the same import for annotations only is not."""
    planted = (
        "from __future__ import annotations\n"
        "def roles():\n"
        "    from ..estimator import BinaryClassifier\n"
        "    return BinaryClassifier().normalize\n"
    )
    (offence,) = stage_offences("steadyclf.schema.planted", planted)
    assert "steadyclf.estimator" in offence and "function level" in offence
    for_types = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from ..estimator import BinaryClassifier\n"
        "def roles(clf: BinaryClassifier) -> str:\n"
        "    return clf.normalize\n"
    )
    assert stage_offences("steadyclf.schema.planted", for_types) == []
    # ... unless annotations are evaluated, where the name would be missing.
    assert stage_offences("steadyclf.schema.planted", for_types.split("\n", 1)[1])
    # The command line may not reach into training internals, though they are below it.
    reach = "def f():\n    from ..train.trainer import Trainer\n"
    assert stage_offences("steadyclf.cli.planted", reach)


def import_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """Module -> the steadyclf modules it imports, every kind of import included;
    ``sources`` maps a module's name to its source and whether it is a package."""
    graph: dict[str, set[str]] = {}
    for name, (source, package) in sources.items():
        graph[name] = {
            target
            for found in imports_of(name, source, package=package)
            for target in _targets(found)
            if target != name and target in sources
        }
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph`` (a package importing its own modules is none)."""
    cycles: list[list[str]] = []
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a package and its own modules
            if seen.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in seen:
                visit(nxt, [*path, nxt])
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node, [node])
    return cycles


def _sources() -> dict[str, tuple[str, bool]]:
    return {_name(p): (p.read_text(), p.name == "__init__.py") for p in MODULES}


def test_no_import_cycle() -> None:
    """No two modules import each other, directly or around a circle, by any import
    (annotations only included)."""
    cycles = import_cycles(import_graph(_sources()))
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_catches_a_circle_through_a_type_import() -> None:
    sources = {
        "steadyclf.schema.a": ("from .b import B\n", False),
        "steadyclf.schema.b": ("if TYPE_CHECKING:\n    from .a import A\n", False),
    }
    assert import_cycles(import_graph(sources)) == [
        ["steadyclf.schema.a", "steadyclf.schema.b", "steadyclf.schema.a"]
    ]


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
        for found in _imports(path):
            top = found.module.split(".")[0]
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


def test_one_version() -> None:
    """The package's version (steadyclf/version.py) is the installed distribution's."""
    from steadyclf import __version__

    assert __version__ == importlib.metadata.version("steadyclf")


def test_one_json_sanitiser() -> None:
    """NaN becomes null by one rule (io/jsonable.py): no other module defines its own."""
    pattern = re.compile(r"^def (_?json_?safe|_?jsonable|_?to_jsonable)\(", re.M)
    holders = []
    for path in MODULES:
        text = path.read_text()
        for match in pattern.finditer(text):
            body = text[match.end() : match.end() + 400]
            if path != SRC / "io" / "jsonable.py" and "io.jsonable import" not in body:
                holders.append(f"{_name(path)}: {match.group(1)}")
    assert not holders, holders
