"""The estimator's parameters, in one table: name, allowed values, default and help.

:data:`PARAMETERS` is read by every reader of a parameter: ``BinaryClassifier.__init__``
takes its defaults from it, :func:`validate_params` checks a value against it (the
estimator before any work, the model reader on every ``model.json``), and the command
line builds its options' choices, help texts and defaults from it (a test checks each
option against its row). Modelled on scikit-learn's ``_parameter_constraints``: each
parameter lists the constraints a value may satisfy (any one will do).

Examples
--------
>>> PARAMETERS["max_epochs"].default
300
>>> validate_params({**defaults(), "max_epochs": 0})
Traceback (most recent call last):
...
steadyclf.exceptions.ParameterError: max_epochs must be a positive integer; got 0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from .exceptions import ParameterError
from .nn.spec import ACTIVATIONS, NORMALIZATIONS
from .policy import (
    CALIBRATIONS,
    DEVICES,
    INTEGER_CODES,
    NUMERIC_EMBEDDINGS,
    OPTIMIZERS,
    SCHEDULES,
    THRESHOLD_METRICS,
)

__all__ = ["PARAMETERS", "Constraint", "Parameter", "defaults", "validate_params"]


@dataclass(frozen=True)
class Constraint:
    """Values a parameter may take: ``check(value)`` is true for them; ``text`` says
    which in an error message (``"a positive integer"``)."""

    text: str
    check: Callable[[Any], bool]
    #: The values, when the constraint is a list of them (the command line's choices).
    choices: tuple[Any, ...] = ()

    def __call__(self, value: Any) -> bool:
        try:
            return bool(self.check(value))
        except TypeError:  # e.g. an unhashable value tested for membership
            return False


def options(*values: Any) -> Constraint:
    """One of ``values`` (compared by equality, never a bool for a string)."""
    return Constraint(
        f"one of {', '.join(map(repr, values))}",
        lambda v: isinstance(v, Hashable) and not isinstance(v, bool) and v in values,
        tuple(values),
    )


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


NONE = Constraint("None", lambda v: v is None, (None,))
POSITIVE_INT = Constraint("a positive integer", lambda v: _integer(v) and int(v) > 0)
NON_NEGATIVE_INT = Constraint("a non-negative integer", lambda v: _integer(v) and int(v) >= 0)
POSITIVE = Constraint("a positive number", lambda v: _number(v) and 0 < float(v) < math.inf)
NON_NEGATIVE = Constraint(
    "a non-negative number", lambda v: _number(v) and 0 <= float(v) < math.inf
)
FRACTION = Constraint("in [0, 1)", lambda v: _number(v) and 0 <= float(v) < 1)
BOOLEAN = Constraint("True or False", lambda v: isinstance(v, bool))
LAYERS = Constraint(
    "a tuple of positive integers",
    lambda v: isinstance(v, (list, tuple)) and all(_integer(h) and int(h) > 0 for h in v),
)
COLUMNS = Constraint(
    "a list of column names",
    lambda v: isinstance(v, (list, tuple)) and all(isinstance(n, str) for n in v),
)
CLASS_WEIGHTS = Constraint(
    "a dict {class: positive weight} for at most the two classes",
    lambda v: (
        isinstance(v, Mapping)
        and 0 < len(v) <= 2
        and all(_number(w) and 0 < float(w) < math.inf for w in v.values())
    ),
)
LABEL = Constraint("a class of the target", lambda v: isinstance(v, Hashable))


@dataclass(frozen=True)
class Parameter:
    """One estimator parameter.

    ``allowed``: the constraints a value may satisfy; ``expected``: how a message says
    them, when not joined from the constraints' texts; ``saved_default``: the value a
    model saved before the parameter existed meant (its ``model.json`` lacks it).
    """

    name: str
    default: Any
    allowed: tuple[Constraint, ...]
    help: str
    expected: str = ""
    saved_default: Any = ...

    @property
    def choices(self) -> tuple[Any, ...]:
        """The values allowed, when they are a list (else empty)."""
        found = [c for constraint in self.allowed for c in constraint.choices]
        return tuple(found) if all(c.choices for c in self.allowed) else ()

    def describe(self) -> str:
        """What the parameter must be, for a message."""
        if self.expected:
            return self.expected
        return " or ".join(c.text for c in self.allowed)

    def check(self, value: Any) -> None:
        """Refuse ``value`` with a one-line message naming the parameter."""
        if not any(constraint(value) for constraint in self.allowed):
            raise ParameterError(f"{self.name} must be {self.describe()}; got {value!r}")


def _table(*rows: Parameter) -> dict[str, Parameter]:
    return {row.name: row for row in rows}


#: Every ``BinaryClassifier`` parameter, in the order of its signature.
PARAMETERS: dict[str, Parameter] = _table(
    Parameter("hidden", (64,), (LAYERS,), "Hidden layer sizes, e.g. (64, 32); () for none."),
    Parameter("activation", "relu", (options(*ACTIVATIONS),), "Hidden layer activation."),
    Parameter("normalize", "robust", (options(*NORMALIZATIONS),), "Input scaling."),
    Parameter("optimizer", "adam", (options(*OPTIMIZERS),), "Optimizer of the network's weights."),
    Parameter(
        "lr",
        None,
        (POSITIVE, options("auto"), NONE),
        "Learning rate; None: by batch size; 'auto': a range test.",
        expected="a positive number, 'auto' or None",
    ),
    Parameter("schedule", "plateau", (options(*SCHEDULES),), "Learning-rate schedule."),
    Parameter("max_epochs", 300, (POSITIVE_INT,), "Most passes over the training rows."),
    Parameter(
        "batch_size",
        "auto",
        (POSITIVE_INT, options("auto"), NONE),
        "Rows per step; None: full batch; 'auto': by the size of the data.",
        expected="a positive integer, 'auto' or None",
    ),
    Parameter("early_stopping", True, (BOOLEAN,), "Stop when the held-out loss stalls."),
    Parameter(
        "validation_fraction",
        "auto",
        (FRACTION, options("auto")),
        "Rows held out for early stopping (unused without it), or 'auto' (none on small data).",
        expected="in [0, 1) or 'auto'",
    ),
    Parameter(
        "patience",
        10,
        (POSITIVE_INT,),
        "Checks without improvement before stopping (epochs; on large data also inside them).",
    ),
    Parameter(
        "pos_weight",
        None,
        (NONE, options("balanced"), POSITIVE),
        "Loss weight of the positive class: 'balanced' or a number.",
        expected="None, 'balanced' or a positive number",
    ),
    Parameter(
        "weight_decay",
        "auto",
        (NON_NEGATIVE, options("auto")),
        "L2 penalty, or 'auto' (chosen among 1e-3, 1e-2, 1e-1 out of fold on small data, else 0).",
        expected="a non-negative number or 'auto'",
    ),
    Parameter(
        "random_state",
        0,
        (NONE, NON_NEGATIVE_INT),
        "Seed of the split, initialisation and shuffling (the same seed, the same model); "
        "None: a new one each fit.",
    ),
    Parameter("device", "auto", (options(*DEVICES),), "Where to train ('auto': CUDA if any)."),
    Parameter("categorical", None, (NONE, COLUMNS), "Columns to treat as categories."),
    Parameter("numeric", None, (NONE, COLUMNS), "Columns to treat as numbers."),
    Parameter("drop", None, (NONE, COLUMNS), "Columns to ignore (new rows may leave them out)."),
    Parameter("positive", None, (NONE, LABEL), "The positive class (a value of the target)."),
    Parameter(
        "threshold_metric",
        None,
        (NONE, options(*THRESHOLD_METRICS)),
        "Tune the decision threshold on the held-out rows for this metric.",
        expected=f"None or one of {', '.join(map(repr, THRESHOLD_METRICS))}",
    ),
    Parameter(
        "calibration",
        "auto",
        (options(*CALIBRATIONS),),
        "Calibrate probabilities on held-out rows ('auto': a map only when it beats none on "
        "them; Platt scaling on small data's out-of-fold scores).",
    ),
    Parameter(
        "verbose",
        0,
        (NON_NEGATIVE_INT, BOOLEAN),
        "Print stall warnings as training finds them (1) or not (0).",
    ),
    Parameter(
        "class_weight",
        None,
        (NONE, options("balanced"), CLASS_WEIGHTS),
        "Weight of each class in the loss: 'balanced' or {class: weight}; not with pos_weight.",
        expected="None, 'balanced' or a dict {class: positive weight} for at most the two classes",
    ),
    Parameter(
        "numeric_embedding",
        "auto",
        (options(*NUMERIC_EMBEDDINGS),),
        "'periodic': PLR embeddings of the continuous inputs; 'auto': with or without, "
        "chosen out of fold on small data, on the hold-out up to 2**18 training rows "
        "(none above, nor where training rows x continuous inputs exceed 2**20).",
        saved_default="none",
    ),
    Parameter(
        "integer_codes",
        "auto",
        (options(*INTEGER_CODES),),
        "Read numeric columns of integer codes (an hour, an id) as categories too: "
        "'category' every candidate, 'none' none, 'auto' both, keeping the reading "
        "that lowers the loss (out of fold by one standard error, or on held-out rows).",
        saved_default="none",
    ),
    Parameter(
        "n_members",
        "auto",
        (POSITIVE_INT, options("auto")),
        "Networks trained together and averaged where no folds are cross-fitted: 'auto' is "
        "4 with held-out rows up to 2**17 training rows, else 1 (small data cross-fits 5).",
        expected="a positive integer or 'auto'",
        saved_default=1,
    ),
)


def defaults() -> dict[str, Any]:
    """Every parameter at its default."""
    return {name: row.default for name, row in PARAMETERS.items()}


def validate_params(params: Mapping[str, Any]) -> None:
    """Check every estimator parameter before any work, with a message naming it.

    A parameter missing from ``params`` (a model saved before it existed) is checked at
    the value such a model meant (:attr:`Parameter.saved_default`).
    """
    values = {}
    for name, row in PARAMETERS.items():
        absent = row.default if row.saved_default is ... else row.saved_default
        values[name] = params.get(name, absent)
        row.check(values[name])
    if values["numeric_embedding"] == "periodic" and values["normalize"] not in (
        "robust",
        "standardize",
    ):
        raise ParameterError(
            f"numeric_embedding={values['numeric_embedding']!r} embeds scaled inputs: it "
            f"needs normalize 'robust' or 'standardize', got {values['normalize']!r}"
        )
    class_weight, pos_weight = values["class_weight"], values["pos_weight"]
    if class_weight is not None and pos_weight is not None:
        raise ParameterError(
            f"pos_weight={pos_weight!r} and class_weight={class_weight!r} both weight the "
            "classes; give one of them (class_weight {0: 1, 1: w} is pos_weight=w)"
        )
