"""Noticing, during training, that a network is not learning, and saying why.

:class:`StallDetector` is a training callback (run by default in every fit, whatever the
data source) that watches for the classic failure while it happens: a loss stuck at the
entropy of the class prior, a vanishing gradient, saturated hidden units, and divergence.
Each warning names the likely cause and the fix.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..nn.modules import one_member
from ..nn.spec import ACTIVATIONS
from .trainer import Callback, EpochRecord, Trainer

__all__ = [
    "RISING_EPOCHS",
    "SATURATION_ROWS",
    "StallDetector",
    "StallWarning",
    "base_rate_loss",
    "saturated_share",
    "saturation_region",
]

#: Epochs in a row with the loss above twice its best before divergence is reported.
RISING_EPOCHS = 3
#: Rows used to estimate saturation (at initialisation and during training).
SATURATION_ROWS = 512


def saturated_share(z: torch.Tensor, activation: str) -> float:
    """Share of pre-activations ``z`` (rows x units) in the flat region of ``activation``.

    For sigmoid and tanh, ``|z|`` above the activation's ``flat_beyond``; for ReLU and
    GELU, the pre-activations of units that are negative on every row (dead units).
    """
    if z.numel() == 0:
        return 0.0
    flat = ACTIVATIONS[activation].flat_beyond
    if flat is not None:
        return float((z.abs() > flat).float().mean())
    dead_units = (z <= 0).all(dim=0)
    return float(dead_units.float().mean())


def saturation_region(activation: str) -> str:
    """The flat region of ``activation``, in words."""
    flat = ACTIVATIONS[activation].flat_beyond
    if flat is not None:
        return f"|z| > {flat:g}"
    return "z <= 0 on every row (dead unit)"


@dataclass
class StallWarning:
    """A problem seen during training, with its likely cause and the fix."""

    epoch: int
    kind: str  # "prior_stall" | "vanishing_gradient" | "saturated_units" | "divergence"
    message: str
    cause: str
    fix: str
    #: First later epoch with a training loss below half the base-rate loss, if any:
    #: the run got past the problem (for every kind but divergence).
    resolved_epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


def base_rate_loss(positive_rate: float, pos_weight: float | None = None) -> float:
    """Loss of the best constant prediction: the entropy of the prior (weighted if asked)."""
    p = float(np.clip(positive_rate, 1e-12, 1 - 1e-12))
    w = 1.0 if pos_weight is None else float(pos_weight)
    q = w * p / (w * p + 1 - p)
    return -(w * p * math.log(q) + (1 - p) * math.log(1 - q))


class StallDetector(Callback):
    """Training callback that notices when a network is not learning, and says why.

    Checks, once per epoch and from values training already computes:

    ``prior_stall``         the training loss has stayed within ``prior_tol`` of the loss
                            of predicting the base rate for ``warmup`` epochs (or until
                            training ended): the model outputs the class prior;
    ``vanishing_gradient``  the gradient reaching the first layer in the last step
                            (weights' gradient divided by the input size, plus the bias
                            gradient) is below ``grad_tol`` while the loss is still above
                            half the base-rate loss;
    ``saturated_units``     more than ``saturation_tol`` of the first hidden layer's
                            pre-activations on a sample of rows are in the flat region of
                            the activation (checked every ``check_every`` epochs);
    ``divergence``          the trainer rolled back a non-finite epoch, or the loss stayed
                            above twice its best (and above the base-rate loss) for
                            :data:`RISING_EPOCHS` epochs.

    Each kind is reported once, at the epoch it is first seen: in :attr:`warnings`, in
    the history row of that epoch (key ``warnings``, a list of kinds), and on stderr
    when ``verbose``. Every history row also gets ``grad_norm``.

    Parameters
    ----------
    positive_rate : float
        Share of positives in the training rows (for the base-rate loss).
    pos_weight : float or None
        Weight of positives in the loss, as in training.
    feature_names, feature_mean, feature_std : sequences, optional
        Raw statistics of the numeric inputs, to name the feature behind a stall.
    normalized : bool
        Whether the network normalises its inputs (then raw scales are not the cause).
    activation : str or None
        Hidden activation, for the saturation check.
    sample : Tensor or None
        Rows of encoded training features for the saturation check.
    verbose : bool
        Print each warning to stderr when it is found.

    Examples
    --------
    >>> from steadyclf import BinaryClassifier
    >>> from steadyclf.datasets import heart_rate
    >>> X, y = heart_rate(n=300, random_state=0)
    >>> clf = BinaryClassifier(normalize="none", activation="sigmoid", lr=1e-3,
    ...                        hidden=(10,), max_epochs=60, early_stopping=False,
    ...                        random_state=0).fit(X, y)
    >>> sorted({w["kind"] for w in clf.warnings_})
    ['prior_stall', 'saturated_units']
    """

    def __init__(
        self,
        positive_rate: float,
        *,
        pos_weight: float | None = None,
        feature_names: Sequence[str] = (),
        feature_mean: Sequence[float] = (),
        feature_std: Sequence[float] = (),
        normalized: bool = True,
        activation: str | None = None,
        sample: torch.Tensor | None = None,
        warmup: int = 50,
        check_every: int = 10,
        prior_tol: float = 0.02,
        grad_tol: float = 1e-3,
        saturation_tol: float = 0.5,
        verbose: bool = False,
    ) -> None:
        self.positive_rate = positive_rate
        self.pos_weight = pos_weight
        self.feature_names = list(feature_names)
        self.feature_mean = [float(v) for v in feature_mean]
        self.feature_std = [float(v) for v in feature_std]
        self.normalized = normalized
        self.activation = activation
        self.sample = sample
        self.warmup = warmup
        self.check_every = check_every
        self.prior_tol = prior_tol
        self.grad_tol = grad_tol
        self.saturation_tol = saturation_tol
        self.verbose = verbose
        self.warnings: list[StallWarning] = []

    # -- callback hooks ----------------------------------------------------------------------
    def on_train_setup(self, trainer: Trainer) -> None:
        """Nothing to restore."""

    def on_train_begin(self, trainer: Trainer) -> None:
        """Reset the state and compute the base-rate loss.

        A run that goes on from the epoch this detector saw last (the race's winner,
        trained on by another trainer) keeps what it saw, its warnings included, except
        the verdict on how the run ended: it did not end there. A run resumed from epochs
        it did not see starts from their best training loss and last epoch, so that its
        end is judged on the whole run.
        """
        history = trainer.history
        last = int(history[-1]["epoch"]) if history else 0
        if history and getattr(self, "_last_epoch", None) == last:
            for warning in getattr(self, "_at_end", []):
                self.warnings.remove(warning)
                self._seen.discard(warning.kind)
        else:
            self.warnings = []
            self._seen: set[str] = set()
            self._base = base_rate_loss(self.positive_rate, self.pos_weight)
            self._best = min((float(r["train_loss"]) for r in history), default=math.inf)
            self._recoveries = trainer.recoveries
            self._rising = 0
            self._last_epoch = last
            self._input_rms = 1.0
            if self.sample is not None and self.sample.numel():
                self._input_rms = max(float(self.sample.double().pow(2).mean().sqrt()), 1e-12)
            self._saturated: float | None = None
        self._at_end: list[StallWarning] = []  # what on_train_end said
        # Looked up once: walking the module every epoch costs more than the checks.
        watched = one_member(trainer.module)
        self._params = list(watched.parameters())
        self._n_hidden = sum(isinstance(m, nn.Linear) for m in watched.modules()) - 1
        first = next((m for m in watched.modules() if isinstance(m, nn.Linear)), None)
        self._first = (
            None
            if first is None
            else [
                i
                for i, p in enumerate(self._params)
                if p is first.weight or (first.bias is not None and p is first.bias)
            ]
        )

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        """Run the checks on this epoch's numbers; extend ``record``."""
        epoch, loss = int(record["epoch"]), float(record["train_loss"])
        self._last_epoch = epoch
        record["grad_norm"], first = _gradient_sizes(self._params, self._first, self._input_rms)
        fired: list[StallWarning] = []
        if trainer.recoveries > self._recoveries:
            self._recoveries = trainer.recoveries
            fired += self._divergence(
                epoch,
                "the loss became non-finite; the trainer undid the epoch and cut the learning "
                f"rate to {_num(record['lr'])}",
                record["lr"],
            )
        rising = math.isfinite(self._best) and loss > 2 * self._best and loss > self._base
        # One bad epoch is often a transient overshoot; several in a row are divergence.
        self._rising = self._rising + 1 if rising else 0
        if self._rising >= RISING_EPOCHS:
            fired += self._divergence(
                epoch,
                f"the training loss rose to {loss:.3g} from a best of {self._best:.3g} and "
                f"stayed above twice that for {self._rising} epochs",
                record["lr"],
            )
        self._best = min(self._best, loss)
        if epoch >= self.warmup:
            fired += self._prior_stall(epoch)
        if self.sample is not None and (epoch == 1 or epoch % self.check_every == 0):
            fired += self._saturation(one_member(trainer.module), epoch)
        if first is not None and first < self.grad_tol and loss > 0.5 * self._base:
            fired += self._vanishing(epoch, first, loss)
        if loss < 0.5 * self._base:
            for warning in self.warnings:
                if warning.resolved_epoch is None and warning.kind != "divergence":
                    warning.resolved_epoch = epoch
        if fired:
            record["warnings"] = [w.kind for w in fired]

    def on_train_exit(self, trainer: Trainer) -> None:
        """Nothing to release."""

    def on_train_end(self, trainer: Trainer) -> None:
        """A run that ended (early) while still predicting the base rate is a stall too."""
        if trainer.history and trainer.stopped_early and self._last_epoch < self.warmup:
            fired = self._prior_stall(self._last_epoch)
            self._at_end = fired
            if fired:
                trainer.history[-1].setdefault("warnings", []).extend(w.kind for w in fired)

    # -- the checks --------------------------------------------------------------------------
    def _emit(self, epoch: int, kind: str, what: str, cause: str, fix: str) -> list[StallWarning]:
        if kind in self._seen:
            return []
        self._seen.add(kind)
        warning = StallWarning(epoch, kind, f"{what}; {cause}; {fix}", cause, fix)
        self.warnings.append(warning)
        self.speak([warning])
        return [warning]

    # -- choices between candidates ----------------------------------------------------------
    def candidate(self) -> StallDetector:
        """A copy to watch one candidate of a choice (a weight decay, a side of the race):
        quiet, since only the chosen candidate's warnings are the fit's (they are printed
        once it is chosen: :meth:`speak`, :meth:`go_on`)."""
        copied = copy.copy(self)
        copied.verbose = False
        return copied

    def speak(self, warnings: Sequence[StallWarning]) -> None:
        """Print ``warnings`` to stderr when ``verbose``."""
        if self.verbose:
            for w in warnings:
                print(f"steadyclf: warning at epoch {w.epoch}: {w.message}", file=sys.stderr)

    def go_on(self, verbose: bool) -> None:
        """Watch on, printing if ``verbose``, the run of the candidate this copy watched
        and that was chosen (the race's winner): first what it saw so far, but for the
        verdict the race's stop drew on the end of the run (it goes on)."""
        self.verbose = verbose
        self.speak([w for w in self.warnings if w not in getattr(self, "_at_end", [])])

    def _prior_stall(self, epoch: int) -> list[StallWarning]:
        if self._best < (1 - self.prior_tol) * self._base:
            return []
        cause, fix = self._input_cause() or (
            "the features may carry no signal about the target, or the learning rate is too small",
            "check the data with `steadyclf doctor`, or use lr='auto'",
        )
        what = (
            f"after {epoch} epochs the training loss (best {self._best:.4g}) is no better than "
            f"{self._base:.4g}, the loss of predicting the base rate ({self.positive_rate:.1%} "
            "positive): the model has learned nothing beyond the prior"
        )
        return self._emit(epoch, "prior_stall", what, cause, fix)

    def _vanishing(self, epoch: int, grad: float, loss: float) -> list[StallWarning]:
        cause, fix = self._input_cause() or self._flat_cause()
        what = (
            f"vanishing gradient: the first layer's gradient is {grad:.2g} (scaled to inputs of "
            f"size 1) while the loss is still {loss:.3g}"
        )
        return self._emit(epoch, "vanishing_gradient", what, cause, fix)

    def _flat_cause(self) -> tuple[str, str]:
        """Why the gradient is small when the inputs are not to blame."""
        if self._saturated is not None and self._saturated > self.saturation_tol:
            return (
                f"{self._saturated:.0%} of the first layer's units are saturated",
                "lower the lr, or use activation='relu'",
            )
        if self._n_hidden >= 3 and _saturating(self.activation):
            return (
                f"the gradient shrinks through {self._n_hidden} {self.activation} layers",
                "use activation='relu', or fewer layers",
            )
        return (
            "the loss is on a plateau (small sigmoid/tanh networks often start on one)",
            "raise the lr (lr='auto' picks one), or use activation='relu'",
        )

    def _saturation(self, module: nn.Module, epoch: int) -> list[StallWarning]:
        assert self.sample is not None
        found = _first_preactivations(module, self.sample, self.activation)
        if found is None:
            return []
        z, activation = found
        share = self._saturated = saturated_share(z, activation)
        if share <= self.saturation_tol:
            return []
        cause, fix = self._input_cause() or (
            "weights grew large (learning rate too high?)",
            "lower the lr, or use activation='relu'"
            if _saturating(activation)
            else "lower the lr, or use activation='gelu'",
        )
        what = (
            f"{share:.0%} of the first hidden layer's {activation} pre-activations are in the "
            f"flat region ({saturation_region(activation)}), so their gradient is near zero"
        )
        return self._emit(epoch, "saturated_units", what, cause, fix)

    def _divergence(self, epoch: int, what: str, lr: float) -> list[StallWarning]:
        cause = f"the learning rate {_num(lr)} is too high for this data"
        input_cause = self._input_cause()
        if input_cause is not None:
            cause = f"{cause}, or {input_cause[0]}"
        fix = "lower the lr (by 10x, or let lr='auto' pick it)" + (
            f" and {input_cause[1]}" if input_cause is not None else ""
        )
        return self._emit(epoch, "divergence", what, cause, fix)

    def _input_cause(self) -> tuple[str, str] | None:
        """'inputs not normalised: feature HR has mean 92 and std 10' when that applies."""
        if self.normalized or not self.feature_names:
            return None
        scale = [max(abs(m), s) for m, s in zip(self.feature_mean, self.feature_std, strict=True)]
        j = int(np.argmax(scale))
        if scale[j] <= 3.0:
            return None
        name, mean, std = self.feature_names[j], self.feature_mean[j], self.feature_std[j]
        return (
            f"inputs not normalised: feature {name} has mean {_num(mean)} and std {_num(std)}",
            "use normalize='robust' (the default) or 'standardize'",
        )


def _gradient_sizes(
    params: list[nn.Parameter], first: list[int] | None, input_rms: float
) -> tuple[float, float | None]:
    """Norm of all gradients of the last step, and the signal reaching the first layer.

    The signal is ``|dL/dW| / rms(x) + |dL/db|`` of the first Linear layer: its weight
    gradient is the backpropagated signal times the inputs, so dividing by the input size
    leaves the signal itself. Both come from one batched norm and one read.
    """
    present = [i for i, p in enumerate(params) if p.grad is not None]
    if not present:
        return 0.0, None
    grads = [params[i].grad.detach() for i in present]  # type: ignore[union-attr]
    values = _norms(grads)
    total = math.sqrt(math.fsum(v * v for v in values))
    if first is None or first[0] not in present:
        return total, None
    weight = values[present.index(first[0])] / input_rms
    bias = values[present.index(first[1])] if len(first) > 1 and first[1] in present else 0.0
    return total, weight + bias


def _num(value: float | None) -> str:
    """A number for a message: three significant digits."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.3g}"


def _saturating(activation: str | None) -> bool:
    return activation is not None and ACTIVATIONS[activation].flat_beyond is not None


def _norms(tensors: list[torch.Tensor]) -> list[float]:
    """Euclidean norm of each tensor: one batched kernel (``torch._foreach_norm``, not
    public API), or one call per tensor where that kernel is missing or fails."""
    batched = getattr(torch, "_foreach_norm", None)
    if batched is not None:
        try:
            return [float(v) for v in torch.stack(batched(tensors)).tolist()]
        except (RuntimeError, TypeError):
            pass  # this torch's private kernel differs: the public path below
    return [float(torch.linalg.vector_norm(t)) for t in tensors]


def _activation_name(layer: nn.Module) -> str | None:
    return next((n for n, a in ACTIVATIONS.items() if type(layer) is getattr(nn, a.module)), None)


@torch.no_grad()
def _first_preactivations(
    module: nn.Module, x: torch.Tensor, activation: str | None
) -> tuple[torch.Tensor, str] | None:
    """Pre-activations of the first Linear layer on ``x``, and the activation after it.

    Works on ``nn.Sequential`` bodies; a leading BatchNorm uses the batch statistics of
    ``x`` without touching its running averages.
    """
    if not isinstance(module, nn.Sequential):
        return None
    children = list(module)
    h = x
    for i, layer in enumerate(children):
        if isinstance(layer, nn.BatchNorm1d):
            h = nn.functional.batch_norm(h, None, None, layer.weight, layer.bias, training=True)
        elif isinstance(layer, nn.Linear):
            if i + 1 >= len(children):
                return None  # no hidden layer
            follower = _activation_name(children[i + 1])
            name = activation or follower
            return (layer(h.to(layer.weight.dtype)), name) if name else None
        else:
            return None
    return None
