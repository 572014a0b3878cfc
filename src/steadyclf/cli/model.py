"""Commands that train and use models: train, predict, evaluate."""

from __future__ import annotations
