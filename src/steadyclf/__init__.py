"""steadyclf: binary classifiers on tabular data with PyTorch that converge, and say why not.

The main entry point is :class:`BinaryClassifier`, a scikit-learn estimator.
"""

from __future__ import annotations

from . import datasets
from .diagnostics import diagnose
from .estimator import BinaryClassifier
from .exceptions import (
    DataError,
    ModelFileError,
    NotFittedError,
    ParameterError,
    SchemaError,
    SteadyclfError,
    TrainingDivergedError,
)
from .persistence import load

__version__ = "0.1.0"

__all__ = [
    "BinaryClassifier",
    "DataError",
    "ModelFileError",
    "NotFittedError",
    "ParameterError",
    "SchemaError",
    "SteadyclfError",
    "TrainingDivergedError",
    "__version__",
    "datasets",
    "diagnose",
    "load",
]
