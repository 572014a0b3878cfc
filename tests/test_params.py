"""One table of parameters (steadyclf.params): the estimator's signature, the checks, the
command line's options and the model reader all follow it."""

from __future__ import annotations

import inspect
from typing import Any

import click
import pytest

from steadyclf import BinaryClassifier
from steadyclf.exceptions import ParameterError
from steadyclf.params import PARAMETERS, defaults, validate_params

#: A value each parameter refuses (every parameter is checked).
BAD: dict[str, Any] = {
    "hidden": (64, 0),
    "activation": "swish",
    "normalize": "minmax",
    "optimizer": "rmsprop",
    "lr": -0.1,
    "schedule": "linear",
    "max_epochs": 0,
    "batch_size": 0,
    "early_stopping": "yes",
    "validation_fraction": 1.0,
    "patience": 1.5,
    "pos_weight": 0.0,
    "weight_decay": -1e-3,
    "random_state": -1,
    "device": "tpu",
    "categorical": "city",  # a name, not a list of names
    "numeric": [3],
    "drop": {"a": 1},
    "positive": ["yes"],
    "threshold_metric": "accuracy",
    "calibration": "isotonic",
    "verbose": -1,
    "class_weight": {0: 0.0},
    "numeric_embedding": "linear",
    "integer_codes": "ordinal",
    "n_members": 0,
}


def test_the_estimator_takes_keyword_arguments_with_the_tables_defaults() -> None:
    signature = inspect.signature(BinaryClassifier)
    assert list(signature.parameters) == list(PARAMETERS)
    for name, parameter in signature.parameters.items():
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, name
        assert parameter.default == PARAMETERS[name].default, name
    with pytest.raises(TypeError):
        BinaryClassifier((32,))  # type: ignore[misc]
    assert BinaryClassifier().get_params() == defaults()


def test_the_defaults_pass_the_checks() -> None:
    validate_params(defaults())
    BinaryClassifier().check_params()


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_every_parameter_is_checked(name: str) -> None:
    assert set(BAD) == set(PARAMETERS)
    with pytest.raises(ParameterError, match=f"^{name} must be .*; got ") as info:
        BinaryClassifier(**{name: BAD[name]}).check_params()
    assert "\n" not in str(info.value)


def test_rules_between_parameters() -> None:
    with pytest.raises(ParameterError, match="needs normalize 'robust' or 'standardize'"):
        validate_params({**defaults(), "numeric_embedding": "periodic", "normalize": "none"})
    with pytest.raises(ParameterError, match="both weight the classes"):
        validate_params({**defaults(), "pos_weight": 2.0, "class_weight": "balanced"})


def test_a_model_saved_before_a_parameter_existed_is_read_with_what_it_meant() -> None:
    """An older model.json lacks numeric_embedding: it meant 'none' (which batchnorm
    allows), not today's default 'auto'."""
    old = {k: v for k, v in defaults().items() if k != "numeric_embedding"}
    validate_params({**old, "normalize": "batchnorm"})
    assert PARAMETERS["numeric_embedding"].saved_default == "none"


def _train_options() -> dict[str, click.Option]:
    from steadyclf.cli import cli

    command = cli.get_command(click.Context(cli), "train")
    assert command is not None
    return {p.name: p for p in command.params if isinstance(p, click.Option) and p.name}


def test_the_command_line_has_an_option_for_every_parameter() -> None:
    options = _train_options()
    # verbose: the command line has --quiet and its own notes instead.
    assert set(PARAMETERS) - {"verbose"} <= set(options)


@pytest.mark.parametrize("name", sorted(set(PARAMETERS) - {"verbose"}))
def test_each_option_follows_its_row(name: str) -> None:
    """Same allowed values (one list of devices, calibrations...) and the same default: an
    option not given leaves the estimator's default (random_state included)."""
    option = _train_options()[name]
    choices = tuple(c for c in PARAMETERS[name].choices if c is not None)
    if choices:
        assert isinstance(option.type, click.Choice)
        assert tuple(option.type.choices) == choices
    # Not set (click >= 8.3 says so with a sentinel): the estimator's default applies.
    assert option.default in (None, ()) or "UNSET" in repr(option.default), option.default
    assert option.help


def test_an_option_not_given_keeps_the_tables_default() -> None:
    from steadyclf.cli.common import build_estimator

    clf = build_estimator({name: None for name in PARAMETERS})
    assert clf.get_params() == defaults()
    assert clf.random_state == PARAMETERS["random_state"].default
