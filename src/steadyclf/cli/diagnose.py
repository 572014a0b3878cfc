"""Commands that explain: doctor, lr-find, demo."""

from __future__ import annotations
