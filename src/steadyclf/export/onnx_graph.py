"""A fitted model as one ONNX graph: the raw columns in, the probability and the label out.

Everything :meth:`BinaryClassifier.predict` does after reading a table is in the graph:
imputation with the training medians and the missing-value indicators, the scaling
(centre and scale in float64, the smooth clipping, rounded to float32 as the network's
input is), category codes from strings (missing and unseen levels included) and their
one-hot blocks, the network (every member, averaged in probability), the calibration,
the sigmoid and the decision threshold. A deployment needs onnxruntime (or
any ONNX runtime) and the ``.onnx`` file, nothing of steadyclf or Python.

The graph
---------
Inputs, one per column the model reads (columns dropped in training are not inputs),
named after it, shape ``[N, 1]``:

- numeric, boolean and datetime columns: ``tensor(double)``, NaN for a missing value
  (booleans as 0/1, datetimes as seconds since 1970-01-01 UTC);
- categorical columns: ``tensor(string)``, the empty string for a missing value; a level
  the model does not know is 'unseen', as in Python. Levels are text as the model saw
  them: an integer column listed as categorical has levels such as ``"3"``;
- a numeric column read as a category too (``integer_codes``) is a ``tensor(double)``
  input as other numbers are; the graph codes its values as numbers (``LabelEncoder``
  with int64 keys), so 3.0 is the level 3 and 3.5 is unseen, as in Python.

Outputs: ``probability`` (``tensor(double)``, shape ``[N]``), the probability of the
positive class (the estimator's ``positive_class_``, ``classes[1]`` of the saved state);
``label`` (shape ``[N]``), the predicted class with the model's decision threshold, of
the classes' type (``string``, ``int64``, ``double`` or ``bool``).

Operator sets: ``ai.onnx`` :data:`OPSET` (17) and ``ai.onnx.ml`` :data:`ML_OPSET` (3,
for ``LabelEncoder``: strings to category codes), IR version :data:`IR_VERSION` (8):
onnxruntime 1.12 and later run it. The arithmetic is float64 throughout, except GELU's
``erf``, computed in float32 (onnxruntime has no float64 ``Erf`` kernel): GELU models
agree with Python to about 1e-7 instead of 1e-12.

Building
--------
Each stage is one function below, mirroring :mod:`steadyclf.nn.numpy_forward` (same
names, same tensors, same order of operations); a new stage of the network means one
function here too. The builder refuses a model holding tensors it did not use, so a
model from a newer network cannot be exported wrongly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..exceptions import ParameterError, SteadyclfError
from ..io.atomic import atomic_write
from ..nn.numpy_forward import batchnorm_terms, body_layers
from ..nn.spec import ACTIVATIONS, INPUT_LIMIT, PERIODIC_LIMIT, Architecture, tensor_layout
from ..persistence import ModelState
from ..schema.encoder import TabularEncoder
from ..schema.roles import ColumnInfo
from ..schema.values import MISSING_CODE, UNSEEN_CODE
from ..version import __version__

__all__ = [
    "IR_VERSION",
    "ML_OPSET",
    "OPSET",
    "OUTPUTS",
    "OnnxExport",
    "build_onnx",
    "save_onnx",
]

#: Operator set of the default ``ai.onnx`` domain.
OPSET = 17
#: Operator set of the ``ai.onnx.ml`` domain (``LabelEncoder``).
ML_OPSET = 3
#: ONNX IR version (the one of opset 17).
IR_VERSION = 8
#: Output names.
OUTPUTS = ("probability", "label")


#: Tensors that describe the layout rather than enter the arithmetic.
def _bookkeeping(arch: Architecture) -> frozenset[str]:
    """Tensors that describe the layout rather than enter the arithmetic."""
    return frozenset(
        {"encoder.categorical.vocab_sizes"}
        | {f"bodies.{m}.0.num_batches_tracked" for m in range(arch.n_members)}
    )


#: Prefix of every name inside the graph; a column named so is refused (build_onnx).
_PREFIX = "steadyclf/"


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise SteadyclfError(
            "ONNX export needs the onnx package: pip install 'steadyclf[export]'"
        ) from exc
    return onnx


# -- the graph under construction ----------------------------------------------------------
@dataclass
class _Graph:
    """Nodes and constants added so far, and which model tensors were read."""

    weights: Mapping[str, NDArray[Any]]
    onnx: Any
    nodes: list[Any] = field(default_factory=list)
    constants: list[Any] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    count: int = 0

    def tensor(self, name: str) -> NDArray[Any]:
        """A tensor of the model (recorded as used)."""
        self.used.add(name)
        return self.weights[name]

    def const(self, hint: str, value: Any) -> str:
        """A constant in the graph; returns its name."""
        name = self._name(hint)
        array = np.asarray(value)
        self.constants.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], *, domain: str = "", **attrs: Any) -> str:
        """Add a node with one output; returns the output's name."""
        out = self._name(op_type.lower())
        node = self.onnx.helper.make_node(
            op_type, list(inputs), [out], name=out, domain=domain, **attrs
        )
        self.nodes.append(node)
        return out

    def _name(self, hint: str) -> str:
        self.count += 1
        return f"{_PREFIX}{hint}_{self.count}"

    @property
    def double_type(self) -> int:
        return int(self.onnx.TensorProto.DOUBLE)

    @property
    def float_type(self) -> int:
        return int(self.onnx.TensorProto.FLOAT)


# -- the stages (see steadyclf.nn.numpy_forward) ------------------------------------------------
def impute(g: _Graph, x: str) -> tuple[str, str | None]:
    """Missing values set to the training median; the 0/1 missing indicators (or None)."""
    missing = g.op("IsNaN", [x])
    median = g.const("median", g.tensor("encoder.impute.median"))
    values = g.op("Where", [missing, median, x])
    columns = g.tensor("encoder.impute.missing_columns")
    if columns.size == 0:
        return values, None
    picked = g.op("Gather", [missing, g.const("missing_columns", columns.astype(np.int64))], axis=1)
    return values, g.op("Cast", [picked], to=g.double_type)


def standardize(g: _Graph, values: str, clip: bool) -> str:
    """``(values - center) / scale`` in float64, bounded to +-``INPUT_LIMIT`` (an overflow
    to +-inf included), then :func:`soft_clip` when ``clip``."""
    centred = g.op("Sub", [values, g.const("center", g.tensor("encoder.normalize.center"))])
    z = g.op("Div", [centred, g.const("scale", g.tensor("encoder.normalize.scale"))])
    z = bound(g, z, INPUT_LIMIT)
    return soft_clip(g, z) if clip else z


def bound(g: _Graph, x: str, limit: float) -> str:
    """``x`` clamped to ``[-limit, limit]`` (float64)."""
    low, high = g.const("low", np.float64(-limit)), g.const("high", np.float64(limit))
    return g.op("Clip", [x, low, high])


def soft_clip(g: _Graph, z: str) -> str:
    """``z / sqrt(1 + (z / 3)**2)``, the operations of the NumPy forward in its order."""
    third = g.op("Div", [z, g.const("three", np.float64(3.0))])
    square = g.op("Mul", [third, third])
    root = g.op("Sqrt", [g.op("Add", [square, g.const("one", np.float64(1.0))])])
    return g.op("Div", [z, root])


def category_codes(
    g: _Graph, name: str, info: ColumnInfo, levels: Sequence[str] | None = None
) -> str:
    """Codes of a string input: 0 for '' (missing), 1 for an unseen level, 2.. the levels
    (``info.levels``, or the ``levels`` given)."""
    # No level is '' (a blank is missing: schema.values.blanks_as_missing).
    keys = ["", *(info.levels if levels is None else levels)]
    codes = [MISSING_CODE, *(i + 2 for i in range(len(keys) - 1))]
    return g.op(
        "LabelEncoder",
        [name],
        domain="ai.onnx.ml",
        keys_strings=keys,
        values_int64s=codes,
        default_int64=UNSEEN_CODE,
    )


#: Integer levels beyond this magnitude cannot be coded in the graph (int64 keys; every
#: float64 below it that is an integer converts to int64 exactly).
_INT_CODE_LIMIT = 2.0**62


def number_codes(g: _Graph, name: str, info: ColumnInfo, levels: Sequence[str]) -> str:
    """Codes of a double input read as a category too (as
    :func:`steadyclf.schema.values.encode_codes`): 0 for NaN, 1 for a value that is not a
    level (unseen, or not an integer), 2.. the levels."""
    keys = np.array([float(level) for level in levels], dtype=np.float64)
    if keys.size and np.abs(keys).max() >= _INT_CODE_LIMIT:
        raise SteadyclfError(
            f"column {info.name!r} is read as a category with integer levels beyond 2**62; the ONNX graph cannot code them"
        )
    outside = float(keys.max() + 1 if keys.size else 0.0)  # a value no level has
    x = name
    whole = g.op("Equal", [g.op("Floor", [x]), x])  # False for NaN
    small = g.op("Less", [g.op("Abs", [x]), g.const("code_limit", np.float64(_INT_CODE_LIMIT))])
    safe = g.op("Where", [g.op("And", [whole, small]), x, g.const("outside", np.float64(outside))])
    integers = g.op("Cast", [safe], to=int(g.onnx.TensorProto.INT64))
    coded = g.op(
        "LabelEncoder",
        [integers],
        domain="ai.onnx.ml",
        keys_int64s=keys.astype(np.int64).tolist(),
        values_int64s=[i + 2 for i in range(keys.size)],
        default_int64=UNSEEN_CODE,
    )
    missing = g.op("IsNaN", [x])
    return g.op("Where", [missing, g.const("missing_code", np.int64(MISSING_CODE)), coded])


def one_hot(g: _Graph, codes: str, size: int) -> str:
    """``[N, 1]`` codes as a ``[N, size]`` float64 one-hot block."""
    hot = g.op("Equal", [codes, g.const("levels", np.arange(size, dtype=np.int64))])
    return g.op("Cast", [hot], to=g.double_type)


def target_statistics(g: _Graph, j: int, codes: str) -> str:
    """The rows of table ``j`` picked by ``[N, 1]`` codes, ``[N, TARGET_FEATURES]``."""
    table = g.const("target_table", g.tensor(f"encoder.target.values.{j}"))
    picked = g.op("Gather", [table, codes], axis=0)  # [N, 1, TARGET_FEATURES]
    rows = g.op("Squeeze", [picked, g.const("axis", np.array([1], np.int64))])
    # Rounded to float32 as the torch encoder hands them to the body.
    return g.op("Cast", [g.op("Cast", [rows], to=g.float_type)], to=g.double_type)


def encode(
    g: _Graph,
    arch: Architecture,
    numeric: Sequence[str],
    codes: Sequence[str],
    target_codes: Sequence[str] = (),
) -> str:
    """The body's input: imputed, standardised values (through float32), indicators,
    one-hot, target statistics."""
    parts: list[str] = []
    if numeric:
        x = numeric[0] if len(numeric) == 1 else g.op("Concat", list(numeric), axis=1)
        values, indicators = impute(g, x)
        rounded = g.op("Cast", [standardize(g, values, arch.clip)], to=g.float_type)
        parts.append(g.op("Cast", [rounded], to=g.double_type))
        if indicators is not None:
            parts.append(indicators)
    else:  # still read: an empty model input has its (empty) statistics
        for name in ("median", "missing_columns"):
            g.tensor(f"encoder.impute.{name}")
        for name in ("center", "scale"):
            g.tensor(f"encoder.normalize.{name}")
    parts += [one_hot(g, c, size) for c, size in zip(codes, arch.vocab_sizes, strict=True)]
    parts += [target_statistics(g, j, c) for j, c in enumerate(target_codes)]
    return parts[0] if len(parts) == 1 else g.op("Concat", parts, axis=1)


def batchnorm(g: _Graph, prefix: str, h: str) -> str:
    """Eval-mode ``BatchNorm1d`` as ``h * alpha + beta`` (the NumPy forward's terms)."""
    for name in ("weight", "bias", "running_mean", "running_var"):
        g.tensor(f"{prefix}.{name}")
    alpha, beta = batchnorm_terms(g.weights, prefix)
    scaled = g.op("Mul", [h, g.const("bn_alpha", alpha)])
    return g.op("Add", [scaled, g.const("bn_beta", beta)])


def periodic(g: _Graph, arch: Architecture, prefix: str, h: str) -> str:
    """The periodic embeddings of ``arch.periodic`` appended to ``h`` (``[N, F]``)."""
    columns = g.const("periodic_columns", np.asarray(arch.periodic, dtype=np.int64))
    x = bound(g, g.op("Gather", [h, columns], axis=1), PERIODIC_LIMIT)  # [N, m]
    x = g.op("Unsqueeze", [x, g.const("axis", np.asarray([2], dtype=np.int64))])  # [N, m, 1]
    z = g.op(
        "Mul",
        [
            g.op("Mul", [g.const("two_pi", np.float64(2 * np.pi)), x]),
            g.const("frequency", g.tensor(f"{prefix}.frequency")),
        ],
    )  # [N, m, k]
    p = g.op("Concat", [g.op("Cos", [z]), g.op("Sin", [z])], axis=2)  # [N, m, 2k]
    p = g.op("Transpose", [p], perm=[1, 0, 2])  # [m, N, 2k]
    e = g.op("MatMul", [p, g.const("weight", g.tensor(f"{prefix}.weight"))])  # [m, N, e]
    bias = g.tensor(f"{prefix}.bias")[:, None, :]
    e = g.op("Relu", [g.op("Add", [e, g.const("bias", np.ascontiguousarray(bias))])])
    e = g.op("Transpose", [e], perm=[1, 0, 2])  # [N, m, e]
    width = np.asarray([0, len(arch.periodic) * bias.shape[2]], dtype=np.int64)
    e = g.op("Reshape", [e, g.const("shape", width)])  # [N, m * e]
    return g.op("Concat", [h, e], axis=1)


def linear(g: _Graph, prefix: str, h: str) -> str:
    """``h @ W.T + b``."""
    weight = np.ascontiguousarray(g.tensor(f"{prefix}.weight").T)
    product = g.op("MatMul", [h, g.const("weight", weight)])
    return g.op("Add", [product, g.const("bias", g.tensor(f"{prefix}.bias"))])


def _relu(g: _Graph, h: str) -> str:
    return g.op("Relu", [h])


def _sigmoid(g: _Graph, h: str) -> str:
    return g.op("Sigmoid", [h])


def _tanh(g: _Graph, h: str) -> str:
    return g.op("Tanh", [h])


def _gelu(g: _Graph, h: str) -> str:
    # x * 0.5 * (1 + erf(x / sqrt(2))); erf in float32: onnxruntime has no float64 kernel.
    scaled = g.op("Mul", [h, g.const("sqrt_half", np.float64(np.sqrt(0.5)))])
    erf32 = g.op("Erf", [g.op("Cast", [scaled], to=g.float_type)])
    erf = g.op("Cast", [erf32], to=g.double_type)
    half = g.op("Mul", [h, g.const("half", np.float64(0.5))])
    return g.op("Mul", [half, g.op("Add", [erf, g.const("one", np.float64(1.0))])])


#: ONNX builders by the ``torch.nn`` class name in :data:`~steadyclf.nn.spec.ACTIVATIONS`.
ACTIVATION_BUILDERS: dict[str, Callable[[_Graph, str], str]] = {
    "ReLU": _relu,
    "Sigmoid": _sigmoid,
    "Tanh": _tanh,
    "GELU": _gelu,
}


def activate(g: _Graph, name: str, h: str) -> str:
    """The hidden activation ``name``."""
    return ACTIVATION_BUILDERS[ACTIVATIONS[name].module](g, h)


def body(g: _Graph, arch: Architecture, features: str, member: int = 0) -> str:
    """The logit of body ``member``, ``[N, 1]``."""
    h = features
    for kind, prefix in body_layers(arch, member):
        if kind == "periodic":
            h = periodic(g, arch, prefix, h)
        elif kind == "batchnorm":
            h = batchnorm(g, prefix, h)
        elif kind == "linear":
            h = linear(g, prefix, h)
        else:
            h = activate(g, prefix, h)
    return h


def network(g: _Graph, arch: Architecture, features: str) -> str:
    """The network's logit, ``[N, 1]``: of one body, or the members' combined."""
    if arch.n_members == 1:
        return body(g, arch, features)
    members = [body(g, arch, features, member=m) for m in range(arch.n_members)]
    return mean_probability_logit(g, g.op("Concat", members, axis=1))


def log_sigmoid(g: _Graph, z: str) -> str:
    """``min(z, 0) - log(1 + exp(-|z|))`` (onnxruntime has no float64 ``Softplus``)."""
    tail = g.op("Exp", [g.op("Neg", [g.op("Abs", [z])])])
    log = g.op("Log", [g.op("Add", [tail, g.const("one", np.float64(1.0))])])
    return g.op("Sub", [g.op("Min", [z, g.const("zero", np.float64(0.0))]), log])


def mean_probability_logit(g: _Graph, logits: str) -> str:
    """The log odds of the mean probability of ``[N, members]`` logits, ``[N, 1]``, in log
    space as :func:`steadyclf.nn.numpy_forward.mean_probability_logit`."""
    sides = []
    for z in (logits, g.op("Neg", [logits])):
        total = g.op("ReduceLogSumExp", [log_sigmoid(g, z)], axes=[1], keepdims=1)
        sides.append(total)  # the log of the sum; the log of the count cancels out
    return g.op("Sub", sides)


def calibrate(g: _Graph, logit: str, calibration: Mapping[str, Any]) -> str:
    """``scale * logit + bias`` (nothing for the identity)."""
    scale, bias = float(calibration["scale"]), float(calibration["bias"])
    if scale == 1.0 and bias == 0.0:
        return logit
    scaled = g.op("Mul", [logit, g.const("calibration_scale", np.float64(scale))])
    return g.op("Add", [scaled, g.const("calibration_bias", np.float64(bias))])


def decide(g: _Graph, probability: str, threshold: float, classes: NDArray[Any]) -> str:
    """``classes[1]`` where the probability exceeds the threshold, else ``classes[0]``."""
    above = g.op("Greater", [probability, g.const("threshold", np.float64(threshold))])
    index = g.op("Cast", [above], to=int(g.onnx.TensorProto.INT64))
    return g.op("Gather", [g.const("classes", label_values(classes)), index], axis=0)


def label_values(classes: NDArray[Any]) -> NDArray[Any]:
    """The classes as an array ONNX can hold: strings, int64, float64 or bool."""
    values = classes.tolist()
    if classes.dtype.kind == "b" or all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.bool_)
    if classes.dtype.kind in "iu" or all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values
    ):
        return np.array(values, dtype=np.int64)
    if classes.dtype.kind == "f" or all(isinstance(v, float) for v in values):
        return np.array(values, dtype=np.float64)
    return np.array([str(v) for v in values], dtype=object)


# -- the model -------------------------------------------------------------------------------
@dataclass(frozen=True)
class OnnxExport:
    """An exported model: the ONNX ``ModelProto`` and its inputs (name, type)."""

    model: Any
    inputs: list[tuple[str, str]]


def build_onnx(state: ModelState) -> OnnxExport:
    """The ONNX graph of a model state (see the module docstring for its contract).

    Raises
    ------
    SteadyclfError
        onnx is not installed, or the model holds tensors the exporter does not know.
    ParameterError
        A column is named like an output (``probability``, ``label``).
    """
    onnx = _onnx()
    helper = onnx.helper
    arch = Architecture.from_dict(state.architecture)
    encoder = TabularEncoder.from_dict(state.schema)
    g = _Graph(state.weights, onnx)
    columns = [c for c in encoder.columns_ if c.role != "dropped"]
    clash = [c.name for c in columns if c.name in OUTPUTS]
    if clash:
        raise ParameterError(
            f"column {clash[0]!r} would be both an input and an output of the ONNX graph (outputs: {', '.join(OUTPUTS)}); rename the column and train again"
        )
    inner = [c.name for c in columns if c.name.startswith(_PREFIX)]
    if inner:
        raise ParameterError(
            f"column {inner[0]!r} is named like the ONNX graph's own tensors ({_PREFIX}...); rename the column and train again"
        )
    inputs, numeric, codes, target_codes = [], [], [], []
    string, double = onnx.TensorProto.STRING, onnx.TensorProto.DOUBLE
    for info in columns:
        is_text = info.role == "categorical"
        value = helper.make_tensor_value_info(info.name, string if is_text else double, ["N", 1])
        value.doc_string = _describe(info)
        inputs.append(value)
        if is_text:
            codes.append(category_codes(g, info.name, info))
        else:
            numeric.append(info.name)
        if info.read_as_category:  # a number read as a category too
            codes.append(number_codes(g, info.name, info, info.levels))
    for info in encoder.target_columns:
        if info.read_as_category:
            target_codes.append(number_codes(g, info.name, info, info.target_levels))
        else:
            target_codes.append(category_codes(g, info.name, info, info.target_levels))
    features = encode(g, arch, numeric, codes, target_codes)
    logit = g.op("Squeeze", [network(g, arch, features), g.const("axis", np.array([1], np.int64))])
    # After the Squeeze: right after the MatMul, onnxruntime would fold the scale into
    # the product as a float32 factor (FusedMatMul's alpha), off by 1e-8.
    probability = g.op("Sigmoid", [calibrate(g, logit, state.calibration)])
    label = decide(g, probability, state.threshold, state.classes)
    g.nodes.append(helper.make_node("Identity", [probability], [OUTPUTS[0]], name=OUTPUTS[0]))
    g.nodes.append(helper.make_node("Identity", [label], [OUTPUTS[1]], name=OUTPUTS[1]))
    _check_all_used(g, arch)
    label_type = helper.np_dtype_to_tensor_dtype(label_values(state.classes).dtype)
    outputs = [
        helper.make_tensor_value_info(OUTPUTS[0], double, ["N"]),
        helper.make_tensor_value_info(OUTPUTS[1], label_type, ["N"]),
    ]
    outputs[0].doc_string = f"probability of the positive class {state.classes[1]!r}"
    outputs[
        1
    ].doc_string = f"predicted class: {state.classes[1]!r} above {state.threshold:.6g}, else {state.classes[0]!r}"
    graph = helper.make_graph(
        g.nodes, "steadyclf", inputs, outputs, initializer=g.constants, doc_string=_DOC
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
        ir_version=IR_VERSION,
        producer_name="steadyclf",
        producer_version=__version__,
        doc_string=_DOC,
    )
    helper.set_model_props(model, _properties(state, columns))
    onnx.checker.check_model(model, full_check=True)
    described = [(c.name, "string" if c.role == "categorical" else "double") for c in columns]
    return OnnxExport(model, described)


def save_onnx(state: ModelState, path: str | os.PathLike[str]) -> OnnxExport:
    """Build the graph of ``state`` and write it to ``path`` atomically."""
    exported = build_onnx(state)
    atomic_write(Path(path), exported.model.SerializeToString())
    return exported


_DOC = (
    "steadyclf binary classifier. Inputs: one [N, 1] tensor per column (double with NaN "
    "for missing; categorical columns string with '' for missing). Outputs: probability "
    "(of the positive class, [N]) and label ([N])."
)


def _describe(info: ColumnInfo) -> str:
    if info.role == "categorical":
        return f"categorical, {len(info.levels)} levels; '' = missing, other text = unseen"
    unit = {"boolean": " (1/0)", "datetime": " (seconds since 1970-01-01 UTC)"}.get(info.role, "")
    if info.read_as_category:
        unit = f", integer codes read as a category too ({len(info.levels)} levels)"
    return f"{info.role}{unit}; NaN = missing"


def _properties(state: ModelState, columns: Sequence[ColumnInfo]) -> dict[str, str]:
    return {
        "steadyclf_version": __version__,
        "classes": ", ".join(repr(c) for c in state.classes.tolist()),
        "positive_class": str(state.classes[1]),
        "threshold": repr(float(state.threshold)),
        "calibration": str(state.calibration.get("method", "none")),
        "inputs": ", ".join(f"{c.name} ({c.role})" for c in columns),
    }


def _check_all_used(g: _Graph, arch: Architecture) -> None:
    """Refuse to export a model with tensors the graph does not use: a newer stage."""
    unused = sorted(set(tensor_layout(arch)) - g.used - _bookkeeping(arch))
    unknown = sorted(set(g.weights) - set(tensor_layout(arch)))
    if unused or unknown:
        raise SteadyclfError(
            f"this steadyclf cannot export the model to ONNX: tensors {', '.join(unused + unknown)} are not part of the graph it builds"
        )
