"""Why a network does not learn: a diagnosis of the data before any training.

:func:`diagnose` reads a table and its target and reports, in numbers, what makes a
neural network struggle on it: features far from zero or on wildly different scales,
constant columns, heavy tails, missing values, class imbalance, a single feature that
separates the classes (leakage, or a problem a threshold solves), duplicate and
contradicting rows. Findings of one kind are one entry listing every column concerned
with its figures, the explanation and the fix said once (:mod:`.findings`); the advice
on scaling and tails follows the model's ``normalize`` setting. Its central piece
quantifies the classic failure (:mod:`.saturation`): with steadyclf's default
initialisation, the share of first-layer pre-activations that land where the activation
is flat, and the size of the initial gradient, on raw versus standardised inputs.
:mod:`.render` writes the report as text.

The same failure, while it happens during training, is the job of the stall detector
(:mod:`steadyclf.train.stall`).
"""

from __future__ import annotations

from .diagnosis import default_normalize, diagnose
from .findings import (
    TAIL_SAFE_SCALINGS,
    FeatureSummary,
    Finding,
    heavy_tail_advice,
    scaling_fix,
)
from .render import Diagnosis, render_diagnosis
from .saturation import SaturationCheck, check_saturation

__all__ = [
    "TAIL_SAFE_SCALINGS",
    "Diagnosis",
    "FeatureSummary",
    "Finding",
    "SaturationCheck",
    "check_saturation",
    "default_normalize",
    "diagnose",
    "heavy_tail_advice",
    "render_diagnosis",
    "scaling_fix",
]
