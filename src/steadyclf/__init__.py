"""steadyclf: binary classifiers on tabular data with PyTorch that converge, and say why not.

The main entry point is :class:`BinaryClassifier`, a scikit-learn estimator. Importing
the package is cheap: its names are imported when first used (torch, scikit-learn and
pandas load only with the estimator).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .version import __version__

#: Public name -> module that defines it (imported on first access).
_EXPORTS = {
    "BinaryClassifier": "estimator",
    "load": "estimator",
    "Predictor": "predictor",
    "predict_file": "predictor",
    "diagnose": "doctor",
    "explain": "importance",
    "DataError": "exceptions",
    "ModelFileError": "exceptions",
    "NotFittedError": "exceptions",
    "ParameterError": "exceptions",
    "SchemaError": "exceptions",
    "SteadyclfError": "exceptions",
    "TrainingDivergedError": "exceptions",
    "UnseenLevelsWarning": "exceptions",
}
_MODULES = ("datasets", "persistence")

__all__ = [
    "BinaryClassifier",
    "DataError",
    "ModelFileError",
    "NotFittedError",
    "ParameterError",
    "Predictor",
    "SchemaError",
    "SteadyclfError",
    "TrainingDivergedError",
    "UnseenLevelsWarning",
    "__version__",
    "datasets",
    "diagnose",
    "explain",
    "load",
    "persistence",
    "predict_file",
]

if TYPE_CHECKING:
    from . import datasets, persistence
    from .doctor import diagnose
    from .estimator import BinaryClassifier, load
    from .exceptions import (
        DataError,
        ModelFileError,
        NotFittedError,
        ParameterError,
        SchemaError,
        SteadyclfError,
        TrainingDivergedError,
        UnseenLevelsWarning,
    )
    from .importance import explain
    from .predictor import Predictor, predict_file


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _MODULES:
        value = import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'steadyclf' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
