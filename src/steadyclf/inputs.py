"""What users pass to ``fit`` and ``predict``, checked and converted the way the
estimator (:mod:`steadyclf.estimator`) needs it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_array, validate_data

from .exceptions import DataError, DataTypeError
from .io.tables import check_unique_columns, from_polars

if TYPE_CHECKING:
    from .schema.encoder import TabularEncoder

__all__ = [
    "FLOAT_DTYPES",
    "Probe",
    "all_finite",
    "as_frame",
    "checked_input",
    "encoded",
    "free_name",
    "input_names",
    "plain_float_array",
    "sample_weight_array",
]

#: Input dtypes kept as they are (float32 data is not doubled in memory: the encoder
#: converts it to float64 a chunk at a time); anything else becomes float64.
FLOAT_DTYPES = (np.float64, np.float32)


def free_name(name: str, taken: Any) -> str:
    """``name``, with underscores added until it is not one of ``taken``."""
    used = {str(c) for c in taken}
    while name in used:
        name += "_"
    return name


def sample_weight_array(sample_weight: Any, n_rows: int) -> NDArray[Any] | None:
    """``sample_weight`` as a 1-D array of one weight per row (its values are checked
    with the rows: finite, >= 0, not all 0); never a copy the caller's array depends on."""
    if sample_weight is None:
        return None
    weights = np.asarray(from_polars(sample_weight))
    if weights.ndim != 1 or weights.shape[0] != n_rows:
        raise DataError(
            f"sample_weight must have one weight per row, shape ({n_rows},); got shape "
            f"{weights.shape}"
        )
    return weights


def plain_float_array(X: Any) -> bool:
    """A non-empty 2-D float ndarray without inf: what ``check_array`` would return as is."""
    return (
        type(X) is np.ndarray
        and X.ndim == 2
        and X.dtype in FLOAT_DTYPES
        and X.shape[0] > 0
        and X.shape[1] > 0
        and (all_finite(X) or not np.isinf(X).any())
    )


def all_finite(x: NDArray[np.floating]) -> bool:
    """True when ``x`` has no NaN and no inf (one pass, no temporary array).

    A sum is NaN or infinite when any term is (or when it overflows: then the caller
    checks precisely).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(x.sum()))


class Probe(BaseEstimator):
    """Receives the attributes scikit-learn's input checks set at fit time."""


def checked_input(X: Any, checked_by: BaseEstimator, *, reset: bool) -> Any:
    """``X`` checked the scikit-learn way (feature names and count, recorded on or
    compared with ``checked_by``): a DataFrame with text column names as is, anything
    else as a float array; bad input is a :class:`~steadyclf.exceptions.DataError`."""
    X = from_polars(X)
    try:
        if isinstance(X, pd.DataFrame):
            check_unique_columns(X)  # before scikit-learn's multi-line message
            if not reset:
                X = _with_unused_columns(X, checked_by)
            validate_data(checked_by, X, reset=reset, skip_check_array=True)
            if X.shape[0] == 0:
                raise DataError("the data has no rows")
            encoder = getattr(checked_by, "encoder_", None)
            if not reset and encoder is not None and not hasattr(checked_by, "feature_names_in_"):
                # Fitted without text column names (an array, or a frame with numbers for
                # names): columns are read by position, as scikit-learn reads them.
                return X.set_axis([c.name for c in encoder.columns_], axis=1)
            return X.set_axis([str(c) for c in X.columns], axis=1)
        # check_array costs ~0.2 ms, most of a one-row prediction: skip it for input
        # that already passes its checks (it still gives the errors for the rest).
        array = (
            X
            if plain_float_array(X)
            else check_array(X, dtype=FLOAT_DTYPES, ensure_all_finite="allow-nan", input_name="X")
        )
        validate_data(checked_by, array, reset=reset, skip_check_array=True)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, DataError):
            raise
        if str(exc).startswith("could not convert string to float"):
            raise DataError(
                f"X holds text ({str(exc).split(': ', 1)[-1]}); an array must be numeric: "
                "pass a pandas DataFrame to use text columns as categories"
            ) from None
        # scikit-learn's message is kept whole (its checks match on it); the type
        # becomes ours so callers can tell bad input from a bug.
        raise (DataTypeError if isinstance(exc, TypeError) else DataError)(str(exc)) from None
    return array


def _with_unused_columns(X: pd.DataFrame, fitted: BaseEstimator) -> pd.DataFrame:
    """``X`` with the columns the fitted model never reads (``drop=``, identifiers,
    constants: role ``dropped``) added, empty, where it has every other column of the fit
    in the fit's order and none of those: as ``steadyclf predict`` and
    :class:`~steadyclf.predictor.Predictor` read such data. Anything else is left to
    scikit-learn's check of the feature names."""
    names = getattr(fitted, "feature_names_in_", None)
    encoder = getattr(fitted, "encoder_", None)
    if names is None or encoder is None:
        return X
    fitted_names = [str(n) for n in names]
    missing = [n for n in fitted_names if n not in X.columns]
    if not missing:  # the usual case, and a one-row prediction's: nothing more to look at
        return X
    unused = {c.name for c in encoder.columns_ if c.role == "dropped"}
    if not set(missing) <= unused:
        return X
    if [str(c) for c in X.columns] != [n for n in fitted_names if n not in missing]:
        return X
    return X.reindex(columns=fitted_names)


def input_names(X: Any) -> list[str] | None:
    """``feature_names_in_`` by scikit-learn's rule: string column names, else None."""
    probe = Probe()
    validate_data(probe, X, reset=True, skip_check_array=True)
    names = getattr(probe, "feature_names_in_", None)
    return None if names is None else [str(n) for n in names]


#: What the estimator's checks give: a DataFrame, or a float array and its column names.
Checked = Any


def as_frame(checked: Checked) -> pd.DataFrame:
    """The checked input as a DataFrame (an array gets its column names)."""
    if isinstance(checked, pd.DataFrame):
        return checked
    array, names = checked
    return pd.DataFrame(array, columns=names, copy=False)


def encoded(encoder: TabularEncoder, checked: Checked) -> tuple[NDArray[np.float64], Any]:
    """The network's raw inputs ``(x_num, x_cat)`` of the checked input. No copies, and no
    pandas for a numeric array when the model has only numeric inputs: predicting one row
    then takes ~0.3 ms."""
    if isinstance(checked, pd.DataFrame):
        return encoder.transform(checked, copy=False)
    array, names = checked
    direct = encoder.transform_array(array, names)
    if direct is not None:
        return direct
    return encoder.transform(pd.DataFrame(array, columns=names, copy=False), copy=False)
