"""Networks of every shape the estimator builds, with random weights, for the parity tests.

A new kind of network (another stage, members, embeddings) goes into ARCHITECTURES: the
NumPy forward pass (tests/test_numpy_forward.py) and the ONNX graph
(tests/test_onnx_export.py) are then checked on it against the torch module.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from steadyclf.nn.spec import ACTIVATIONS, Architecture, tensor_layout
from steadyclf.persistence import ModelState
from steadyclf.schema.roles import ColumnInfo

_INTEGER_CODES = Architecture(3, 1, (7, 4), (8,), "relu", clip=True)
_INTEGER_ID = Architecture(2, 1, (5, 4), (8,), "relu", clip=True, n_members=2, target_sizes=(40,))
#: Architectures whose first numeric inputs are read as categories too (integer codes),
#: as many as said here: their categorical inputs come first, coded from the numbers.
CODED = {_INTEGER_CODES: 1, _INTEGER_ID: 1}

ARCHITECTURES = [
    pytest.param(Architecture(3, 1, (4, 5), (8,), "relu"), id="relu-categoricals-indicator"),
    pytest.param(Architecture(4, 0, (), (16,), "sigmoid"), id="sigmoid-numeric"),
    pytest.param(Architecture(2, 2, (3,), (8, 6), "tanh"), id="tanh-two-layers"),
    pytest.param(Architecture(3, 0, (5,), (8,), "gelu"), id="gelu-categorical"),
    pytest.param(Architecture(3, 1, (4,), (8,), "relu", batchnorm=True), id="batchnorm"),
    pytest.param(Architecture(2, 0, (), (), "relu"), id="no-hidden-layer"),
    pytest.param(Architecture(0, 0, (3, 4), (8,), "relu"), id="categoricals-only"),
    pytest.param(Architecture(4, 4, (), (32, 16, 8), "gelu"), id="three-layers-all-indicators"),
    pytest.param(
        Architecture(2, 1, (3, 66), (6,), "tanh", batchnorm=True), id="batchnorm-wide-categorical"
    ),
    # What the defaults build: robust scaling's smooth clip, cross-fitted members.
    pytest.param(Architecture(3, 1, (4,), (8,), "relu", clip=True), id="clip"),
    pytest.param(
        Architecture(3, 1, (4, 5), (8,), "relu", clip=True, n_members=5), id="clip-members"
    ),
    pytest.param(
        Architecture(2, 0, (3,), (6, 4), "gelu", batchnorm=True, n_members=3),
        id="batchnorm-members",
    ),
    # Members whose first layers run as one product (numpy_forward.members_logits).
    pytest.param(
        Architecture(3, 1, (4,), (8, 5), "tanh", clip=True, n_members=3), id="members-two-layers"
    ),
    pytest.param(Architecture(2, 0, (3,), (), "relu", n_members=4), id="members-no-hidden-layer"),
    # Target statistics of many-level categoricals: the first categoricals have them,
    # one-hot keeping their first levels (as the most frequent are both).
    pytest.param(
        Architecture(2, 1, (4, 5), (8,), "relu", clip=True, n_members=2, target_sizes=(9,)),
        id="target-statistics",
    ),
    pytest.param(
        Architecture(0, 0, (3, 4), (8,), "tanh", target_sizes=(12, 7)),
        id="target-statistics-only-categoricals",
    ),
    # Periodic embeddings of some numeric inputs (numeric_embedding='periodic').
    pytest.param(Architecture(3, 1, (4,), (8,), "relu", clip=True, periodic=(0, 2)), id="periodic"),
    pytest.param(
        Architecture(2, 1, (4, 5), (8, 4), "gelu", n_members=3, target_sizes=(9,), periodic=(0, 1)),
        id="periodic-members-target-statistics",
    ),
    # Numbers read as categories too (integer_codes): see CODED below.
    pytest.param(_INTEGER_CODES, id="integer-codes"),
    pytest.param(_INTEGER_ID, id="integer-id-target-statistics"),
]
assert {p.values[0].activation for p in ARCHITECTURES} == set(ACTIVATIONS)


def random_weights(arch: Architecture, seed: int = 0) -> dict[str, np.ndarray]:
    """Every tensor of the layout, with values a fitted model could hold.

    Offsets up to 1e6 and scales from 1e-3 to 1e3 (standardisation matters), weights of
    the size that keeps logits of order 1 (so that the probabilities are not all 0 or 1
    and a difference shows), positive BatchNorm variances.
    """
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for name, (shape, dtype) in tensor_layout(arch).items():
        if dtype == "int64":
            weights[name] = np.zeros(shape, dtype=np.int64)
        elif name.endswith(".weight") and len(shape) == 2:
            weights[name] = rng.normal(size=shape) * 1.5 / np.sqrt(shape[1])
        else:
            weights[name] = rng.normal(size=shape)
    for member in range(arch.n_members):
        first = int(arch.batchnorm) + int(bool(arch.periodic))
        last = f"bodies.{member}.{2 * len(arch.hidden) + first}"
        weights[f"{last}.weight"] *= 3.0  # logits spread over a few units
        weights[f"{last}.bias"][:] = 0.0
    k = arch.n_numeric
    weights["encoder.impute.median"] = rng.normal(size=k) * 10.0 ** rng.integers(-3, 4, size=k)
    weights["encoder.normalize.center"] = rng.choice([0.0, 1e3, -1e6], size=k) + rng.normal(size=k)
    weights["encoder.normalize.scale"] = 10.0 ** rng.uniform(-3, 3, size=k)
    weights["encoder.impute.missing_columns"] = np.sort(
        rng.choice(k, size=arch.n_missing, replace=False)
    ).astype(np.int64)
    weights["encoder.categorical.vocab_sizes"] = np.array(arch.vocab_sizes, dtype=np.int64)
    for member in range(arch.n_members if arch.batchnorm else 0):
        weights[f"bodies.{member}.0.running_var"] = rng.uniform(0.2, 3.0, size=arch.n_features)
        weights[f"bodies.{member}.0.weight"] = rng.uniform(0.5, 1.5, size=arch.n_features)
    return weights


def raw_inputs(
    arch: Architecture, weights: dict[str, np.ndarray], n: int = 300, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """``x_num`` around each column's training mean with NaN and far values; every code."""
    rng = np.random.default_rng(seed)
    mean, scale = weights["encoder.normalize.center"], weights["encoder.normalize.scale"]
    x_num = mean + scale * rng.normal(size=(n, arch.n_numeric))
    if arch.n_numeric:
        x_num[rng.random(size=x_num.shape) < 0.1] = np.nan
        x_num[:5] = mean + scale * np.array([[1e3], [-1e3], [1e6], [-1e6], [0.0]])  # far out
    sizes = _code_sizes(arch)
    x_cat = np.column_stack(
        [rng.integers(0, size, size=n) for size in sizes] or [np.empty((n, 0))]
    ).astype(np.int64)
    x_cat[:2] = [[0] * len(sizes), [1] * len(sizes)]  # missing, unseen
    # A column with target statistics is coded twice from one level: its one-hot code is
    # the target code where one-hot keeps the level, 'unseen' beyond.
    n_cat = len(arch.vocab_sizes)
    for j, size in enumerate(arch.vocab_sizes[: len(arch.target_sizes)]):
        target = x_cat[:, n_cat + j]
        x_cat[:, j] = np.where(target < size, target, 1)
    _coded_numbers(arch, x_num, x_cat)
    return x_num, x_cat


def code_value(j: int, code: np.ndarray) -> np.ndarray:
    """The number of level code ``code`` (2..) of numeric input ``j`` read as a category:
    integers, negative ones too."""
    return 3.0 * (np.asarray(code) - 2) - 7.0 + 100.0 * j


def _coded_numbers(arch: Architecture, x_num: np.ndarray, x_cat: np.ndarray) -> None:
    """Set the numbers of the inputs read as categories from their codes (the finer, target
    statistics code where there is one): NaN for 'missing', a non-level number (an integer
    never seen, or one with a fraction) for 'unseen'."""
    n_cat = len(arch.vocab_sizes)
    for j in range(CODED.get(arch, 0)):
        code = x_cat[:, n_cat + j] if j < len(arch.target_sizes) else x_cat[:, j]
        unseen = np.where(np.arange(len(code)) % 2, 0.5, 1e6)
        x_num[:, j] = np.where(code == 0, np.nan, np.where(code == 1, unseen, code_value(j, code)))


def _code_sizes(arch: Architecture) -> list[int]:
    """The vocabulary of each code column: one-hot sizes, except where the level comes
    from the target-statistics vocabulary, then those."""
    n_target = len(arch.target_sizes)
    return [*arch.target_sizes, *arch.vocab_sizes[n_target:], *arch.target_sizes]


def schema_for(arch: Architecture) -> list[ColumnInfo]:
    """Columns that encode to ``arch``'s inputs: numeric ``n0...``, categorical ``c0...``;
    the first :data:`CODED` numeric ones read as categories too."""
    columns = []
    for j in range(arch.n_numeric):
        columns.append(ColumnInfo(f"n{j}", "numeric", "float64", low=-1.0, high=1.0, n_rows=100))
    for j, size in enumerate(arch.vocab_sizes):
        spell = (lambda i, j=j: f"level {j}.{i}") if j >= CODED.get(arch, 0) else None
        if spell is None:  # a number read as a category: its levels are integers
            spell = lambda i, j=j: str(int(code_value(j, i + 2)))  # noqa: E731
        levels = [spell(i) for i in range(size - 2)]
        target: list[str] = []
        if j < len(arch.target_sizes):
            target = [spell(i) for i in range(arch.target_sizes[j] - 2)]
        fields: dict[str, Any] = {
            "levels": levels,
            "n_levels": max(len(levels), len(target)),
            "n_rows": 100,
            "target_levels": target,
            "target_counts": [1] * len(target),
        }
        if j < CODED.get(arch, 0):
            columns[j] = replace(columns[j], integer=True, read_as_category=True, **fields)
        else:
            columns.append(ColumnInfo(f"c{j}", "categorical", "str", **fields))
    return columns


def model_state(arch: Architecture, seed: int = 0, **extra: Any) -> ModelState:
    """A complete model state for ``arch`` (string classes, a tuned threshold, calibration)."""
    from steadyclf.schema.encoder import TabularEncoder

    return ModelState(
        schema=TabularEncoder(schema_for(arch)).to_dict(),
        architecture=arch.to_dict(),
        weights=random_weights(arch, seed),
        classes=np.array(["no", "yes"], dtype=object),
        threshold=extra.get("threshold", 0.4),
        params={},
        training={"n_iter": 1},
        calibration=extra.get("calibration", {"method": "platt", "scale": 0.8, "bias": -0.1}),
    )


def as_table(arch: Architecture, x_num: np.ndarray, x_cat: np.ndarray) -> pd.DataFrame:
    """The rows as a user has them: numbers, and text levels (None: missing; unseen text)."""
    table = pd.DataFrame({f"n{j}": x_num[:, j] for j in range(arch.n_numeric)})
    n_cat = len(arch.vocab_sizes)
    for j, size in enumerate(arch.vocab_sizes):
        if j < CODED.get(arch, 0):
            continue  # a number read as a category too: its numbers are in the table
        column = n_cat + j if j < len(arch.target_sizes) else j  # the finer code
        size = arch.target_sizes[j] if j < len(arch.target_sizes) else size
        levels = np.array([None, "never seen", *(f"level {j}.{i}" for i in range(size - 2))])
        table[f"c{j}"] = pd.Series(levels[x_cat[:, column]], dtype=object)
    return table
