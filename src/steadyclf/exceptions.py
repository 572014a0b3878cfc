"""Exception types raised by steadyclf.

Every error a user can cause is one of these, so callers (and the CLI) can tell a
problem with *their* input from a bug. Data errors subclass :class:`ValueError` so
that scikit-learn tooling treats them as the usual input-validation errors.
"""

from __future__ import annotations

__all__ = [
    "DataError",
    "DataTypeError",
    "Interrupted",
    "ModelFileError",
    "NotFittedError",
    "ParameterError",
    "SchemaError",
    "SteadyclfError",
    "TrainingDivergedError",
    "TrainingInterrupted",
    "UnseenLevelsWarning",
]

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sklearn.exceptions import NotFittedError as _SklearnNotFittedError


class SteadyclfError(Exception):
    """Base class of every error steadyclf raises on purpose."""


class DataError(SteadyclfError, ValueError):
    """The input data cannot be used (wrong shape, bad values, bad target...)."""


class DataTypeError(DataError, TypeError):
    """A value of the wrong Python type where data was expected (e.g. a dict in ``X``).

    Also a :class:`TypeError`, as NumPy and scikit-learn raise for such input.
    """


class SchemaError(DataError):
    """Data at predict time does not match the columns the model was trained on."""


class ParameterError(SteadyclfError, ValueError):
    """An estimator parameter has an invalid value."""


class TrainingDivergedError(SteadyclfError, FloatingPointError):
    """The loss or the weights became non-finite and could not be recovered.

    The error carries the best model the fit reached before, when it reached one; each
    stage that has it sets its own attribute (``None`` otherwise):

    Attributes
    ----------
    estimator : BinaryClassifier or None
        A fitted estimator with the best finite weights (set by ``BinaryClassifier.fit``:
        what a caller can still save).
    result : steadyclf.pipeline.FitResult or None
        The pipeline's result with those weights (``estimator`` is made from it).
    cross_fit : steadyclf.train.crossfit.CrossFit or None
        Small data: the cross-fit of the candidate of lowest out-of-fold loss.
    """

    # Typed Any: the types live in the stages above this module, which import it.
    estimator: Any = None
    result: Any = None
    cross_fit: Any = None


class ModelFileError(SteadyclfError, OSError):
    """A model directory is missing, incomplete, corrupted or of an unknown format."""


class UnseenLevelsWarning(UserWarning):
    """Most values of a categorical column are levels the model never learned (see
    :data:`steadyclf.schema.encoder.UNSEEN_WARNING_SHARE`): the predictions are made,
    but probably not on the data the model was meant for."""


class Interrupted(KeyboardInterrupt):
    """A signal (SIGINT: Ctrl-C, or SIGTERM: what schedulers send) stopped the work.

    A :class:`KeyboardInterrupt`, so code that catches ``Exception`` does not swallow it
    and ``finally`` blocks clean up; ``signum`` is the signal (the CLI exits with
    ``128 + signum``: 130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, *args: object, signum: int = 2) -> None:
        super().__init__(*args)
        self.signum = signum


class TrainingInterrupted(Interrupted):
    """Ctrl-C or SIGTERM stopped training after the current epoch, once a checkpoint was
    saved; the message says where the checkpoint is."""


if TYPE_CHECKING:

    class NotFittedError(SteadyclfError, _SklearnNotFittedError):
        """The estimator was used before ``fit`` (scikit-learn's ``NotFittedError`` too)."""


def _not_fitted_error() -> type[SteadyclfError]:
    from sklearn.exceptions import NotFittedError as SklearnNotFittedError

    class NotFittedError(SteadyclfError, SklearnNotFittedError):
        """The estimator was used before ``fit`` (scikit-learn's ``NotFittedError`` too)."""

    NotFittedError.__module__ = __name__
    return NotFittedError


def __getattr__(name: str) -> Any:
    # NotFittedError subclasses scikit-learn's, so its checks recognise it; it is made on
    # first use so that importing this module (every command line start) stays cheap.
    if name == "NotFittedError":
        cls = globals()["NotFittedError"] = _not_fitted_error()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
