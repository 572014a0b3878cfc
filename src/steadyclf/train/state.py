"""Nested training state as JSON plus named tensors, and the checks a loaded state must pass.

A checkpoint's state (epoch, history, optimizer and scheduler state, weights) is a tree of
dicts, lists, numbers and tensors. :func:`encode_state` turns it into JSON with every
tensor moved to a flat ``name -> tensor`` mapping (saved as safetensors);
:func:`decode_state` rebuilds it, refusing anything it would not have written.
:func:`check_like` and :func:`check_optimizer_state` compare what was read with what the
running trainer expects (structure, types, shapes) before anything is handed to PyTorch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..exceptions import ModelFileError

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = [
    "INDEX_FILE",
    "check_like",
    "check_optimizer_state",
    "decode_state",
    "encode_state",
    "kind_of",
]

#: The index a checkpoint's JSON lives in (named in messages).
INDEX_FILE = "checkpoint.json"


def encode_state(obj: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    """JSON form of ``obj``; tensors are moved to ``tensors`` and referenced by name."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().to("cpu").contiguous().clone()
        return {"$tensor": path}
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"$float": repr(obj)}
    if isinstance(obj, tuple):
        return {"$tuple": [encode_state(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode_state(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return [encode_state(v, tensors, f"{path}.{i}") for i, v in enumerate(obj.tolist())]
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: encode_state(v, tensors, f"{path}.{k}") for k, v in obj.items()}
        if all(isinstance(k, int) and not isinstance(k, bool) for k in obj):
            return {
                "$intdict": [[k, encode_state(v, tensors, f"{path}.{k}")] for k, v in obj.items()]
            }
    raise ModelFileError(
        f"cannot store {type(obj).__name__} value at {path!r} in a checkpoint "
        "(only numbers, strings, lists, dicts and tensors)"
    )


def decode_state(obj: Any, tensors: Mapping[str, torch.Tensor], path: str) -> Any:
    """Inverse of :func:`_encode`, refusing anything it would not have written."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, list):
        return [decode_state(v, tensors, f"{path}[{i}]") for i, v in enumerate(obj)]
    if not isinstance(obj, dict):
        raise ModelFileError(f"unexpected {type(obj).__name__} at {path} in {INDEX_FILE}")
    if len(obj) == 1:
        ((key, value),) = obj.items()
        if key == "$tensor":
            if not isinstance(value, str) or value not in tensors:
                raise ModelFileError(f"{path} names a tensor {value!r} that is not in the file")
            return tensors[value]
        if key == "$float":
            if value not in ("inf", "-inf", "nan"):
                raise ModelFileError(f"{path} holds {value!r}, not inf, -inf or nan")
            return float(value)
        if key == "$tuple" and isinstance(value, list):
            return tuple(decode_state(v, tensors, f"{path}[{i}]") for i, v in enumerate(value))
        if key == "$intdict" and isinstance(value, list):
            out: dict[int, Any] = {}
            for item in value:
                if not (
                    isinstance(item, list)
                    and len(item) == 2
                    and isinstance(item[0], int)
                    and not isinstance(item[0], bool)
                ):
                    raise ModelFileError(f"{path} holds a malformed integer-keyed entry")
                out[item[0]] = decode_state(item[1], tensors, f"{path}[{item[0]}]")
            return out
    if any(k.startswith("$") for k in obj):
        raise ModelFileError(f"{path} holds an unknown marker {sorted(obj)!r}")
    return {k: decode_state(v, tensors, f"{path}.{k}") for k, v in obj.items()}


def kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, torch.Tensor):
        return "tensor"
    if isinstance(value, (list, tuple)):
        return "sequence"
    return type(value).__name__


def check_like(value: Any, reference: Any, path: str) -> None:
    """Refuse ``value`` unless it has the structure, types and shapes of ``reference``."""
    kind, expected = kind_of(value), kind_of(reference)
    if reference is None or value is None:
        # Optional entries (e.g. SGD's momentum buffer, fused=None) may be either.
        return
    if kind != expected:
        raise ModelFileError(f"{path} is a {kind} where a {expected} was expected")
    if isinstance(reference, torch.Tensor):
        if value.shape != reference.shape or value.dtype != reference.dtype:
            raise ModelFileError(
                f"{path} has shape {tuple(value.shape)} and dtype {value.dtype}; "
                f"this model needs {tuple(reference.shape)} and {reference.dtype}"
            )
    elif isinstance(reference, (list, tuple)):
        if len(value) != len(reference):
            raise ModelFileError(f"{path} has {len(value)} entries; expected {len(reference)}")
        for i, (v, r) in enumerate(zip(value, reference, strict=True)):
            check_like(v, r, f"{path}[{i}]")
    elif isinstance(reference, dict):
        if set(value) != set(reference):
            extra, missing = (
                sorted(map(str, set(value) - set(reference))),
                sorted(map(str, set(reference) - set(value))),
            )
            raise ModelFileError(f"{path} has unexpected keys {extra} / lacks keys {missing}")
        for k in reference:
            check_like(value[k], reference[k], f"{path}.{k}")


def check_optimizer_state(state: Any, trainer: Trainer, path: str) -> None:
    """Optimizer state: same groups and settings, moments shaped like the parameters."""
    assert trainer.optimizer is not None
    reference = trainer.optimizer.state_dict()
    if not isinstance(state, dict) or set(state) != {"state", "param_groups"}:
        raise ModelFileError(f"{path} is not an optimizer state")
    check_like(state["param_groups"], reference["param_groups"], f"{path}.param_groups")
    for group in state["param_groups"]:
        lr = group["lr"]
        if not (math.isfinite(float(lr)) and float(lr) >= 0):
            raise ModelFileError(f"{path} has learning rate {lr!r}; expected a number >= 0")
    shapes = {
        i: p.shape
        for i, p in enumerate(p for g in trainer.optimizer.param_groups for p in g["params"])
    }
    if not isinstance(state["state"], dict):
        raise ModelFileError(f"{path}.state is not a mapping")
    for index, entry in state["state"].items():
        if index not in shapes or not isinstance(entry, dict):
            raise ModelFileError(f"{path}.state has an entry for unknown parameter {index!r}")
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                if value.shape not in (shapes[index], torch.Size([])):
                    raise ModelFileError(
                        f"{path}.state[{index}].{key} has shape {tuple(value.shape)}; "
                        f"the parameter has shape {tuple(shapes[index])}"
                    )
                if not value.dtype.is_floating_point:
                    raise ModelFileError(f"{path}.state[{index}].{key} is not a float tensor")
            elif value is not None and kind_of(value) != "number":
                raise ModelFileError(f"{path}.state[{index}].{key} is a {kind_of(value)}")
