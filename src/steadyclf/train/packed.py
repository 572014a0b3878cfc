"""Packed members: the members of a fit trained as one batched network.

Small data cross-fits ``k`` members for every candidate (each weight decay, with and
without periodic embeddings): 5 x 3 x 2 = 30 small networks of a few hundred full-batch
steps each. Trained one after another, a step of such a network is mostly Python and
dispatch overhead. Here the members of one layout are stacked along a member axis
(weights ``(M, out, in)``: :class:`~steadyclf.nn.packed.PackedMembers`) and step
together, one batched matmul per layer:

- each member minimises its loss over its own rows (a 0/1 mask: the rows outside its
  fold) and is judged on its held-out fold after each step, with the loss, early stopping,
  ``'plateau'`` schedule and divergence recovery of :class:`~steadyclf.train.trainer.Trainer`
  applied member by member;
- each has its own Adam moments, learning rate and weight decay (an L2 term in the
  gradient, as ``torch.optim.Adam(weight_decay=...)``);
- a member that stops keeps its best weights and takes no further updates (its rate is 0);
  the loop ends when every member has stopped.

The result is what :func:`~steadyclf.train.crossfit.cross_fit` returns for each network
(the candidate of lowest out-of-fold log loss loaded into its bodies), so the estimator
and the saved model do not know how the members were trained. Layouts the packed step
does not cover (BatchNorm, optimizers other than Adam, schedules other than ``'plateau'``
and ``'none'``, callbacks that checkpoint epochs) train one member at a time (:func:`packable`).
A checkpoint keeps packed members stage by stage instead (``Checkpoint(every=None)``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn import functional

from ..exceptions import TrainingDivergedError
from ..nn.modules import PeriodicEmbedding
from ..nn.packed import PackedMembers, member_losses
from ..nn.spec import SINGLE_THREAD_WORK
from ..nn.step import SparseRows
from ..nn.threads import intra_op_threads
from .crossfit import CrossFit
from .trainer import Callback, EpochRecord, TrainConfig, hook, overrides

__all__ = ["PackStopped", "PackedMembers", "cross_fit_packed", "packable"]

#: Largest activation of one pack, in float32 elements (members x rows x width): members
#: of a layout are cut into packs of at most this size, so memory stays bounded whatever
#: the rows and embedded columns (8,192 rows x 50 embedded columns x 16 angles x 15
#: members would otherwise be a 390 MB tensor, with its gradient).
PACK_ELEMENTS = 1 << 24
#: Least work (multiply-adds of the members' forward passes) of one step of a pack on the
#: CPU, where members split into several packs (see cross_fit_packed).
PACK_WORK = 1 << 26
#: Adam's defaults (``torch.optim.Adam``), as the members trained one by one use them.
BETAS = (0.9, 0.999)
EPS = 1e-8
#: ``ReduceLROnPlateau`` as :func:`steadyclf.nn.optim.make_scheduler` builds it.
PLATEAU_FACTOR = 0.3


def packable(body: nn.Module, config: TrainConfig, callbacks: Sequence[Any]) -> bool:
    """Whether members of ``body``'s layout can be trained packed with ``config``."""
    layers = list(body.children())
    plain = all(
        isinstance(m, (nn.Linear, PeriodicEmbedding)) or not list(m.parameters()) for m in layers
    )
    return (
        plain
        and not any(isinstance(m, nn.BatchNorm1d) for m in layers)
        and config.optimizer == "adam"
        and config.schedule in ("plateau", "none")
        and config.batch_size is None
        and config.early_stopping
        and not any(_saves_epochs(cb) for cb in callbacks)
        and sum(bool(getattr(cb, "keeps_stages", False)) for cb in callbacks) <= 1
    )


def _saves_epochs(callback: Any) -> bool:
    """Whether ``callback`` saves the runs it watches epoch by epoch (a checkpoint that
    does not keep packed stages instead: ``Checkpoint.keeps_stages``)."""
    saves = overrides(callback, "part") or hasattr(callback, "save")
    return saves and not getattr(callback, "keeps_stages", False)


class PackStopped(Exception):
    """The ``stop`` of :func:`cross_fit_packed` said to stop: the members were left unfinished."""


@dataclass
class _Member:
    """Where a member of a pack comes from: its network, candidate (weight decay) and fold."""

    network: int
    candidate: int
    fold: int


@dataclass
class _PackState:
    """The optimisation state of one pack, member by member."""

    pack: PackedMembers
    members: list[_Member]
    train: torch.Tensor  # (M, n) loss weights of each member's training rows (0 elsewhere)
    held: torch.Tensor  # (M, n) the same for its held-out rows
    held_rows: list[torch.Tensor]  # each member's held-out rows (its fold), in row order
    scaled: torch.Tensor  # (M, n) train scaled by n / n_train: its step's row weights
    n_train: torch.Tensor  # (M,) rows each member trains on
    lr: torch.Tensor
    decay: torch.Tensor
    steps: torch.Tensor
    moments: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    best: list[torch.Tensor] = field(default_factory=list)
    last_good: list[torch.Tensor] = field(default_factory=list)


class _MemberView:
    """What a callback watching one member sees: a trainer-like view of it."""

    def __init__(self, body: nn.Module, config: TrainConfig) -> None:
        self.module = body
        self.config = config
        self.history: list[EpochRecord] = []
        self.recoveries = 0
        self.stopped_early = False
        self.epoch = 0


@dataclass
class _Run:
    """One packed cross-fit: its rows and settings, and what each member produced, by
    ``(network, candidate, fold)``."""

    xs: list[torch.Tensor]  # each network's features
    y: torch.Tensor
    pos_weight: torch.Tensor | None
    config: TrainConfig
    watchers: dict[tuple[int, int, int], tuple[_MemberView, Sequence[Callback]]]
    stop: Callable[[], bool] | None = None
    histories: dict[tuple[int, int, int], list[EpochRecord]] = field(default_factory=dict)
    best_epochs: dict[tuple[int, int, int], int | None] = field(default_factory=dict)
    oof_best: dict[tuple[int, int, int], NDArray[np.float64]] = field(default_factory=dict)
    diverged: set[tuple[int, int, int]] = field(default_factory=set)
    #: Each diverged member's error, by ``(network, candidate, fold)``: the one reported is
    #: the smallest key's, whichever thread finished first.
    errors: dict[tuple[int, int, int], TrainingDivergedError] = field(default_factory=dict)
    #: Each network's wide one-hot inputs as CSR (plain layouts on the CPU), made once.
    sparse: list[SparseRows | None] = field(default_factory=list)


def _view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(M,)`` values shaped to broadcast over a stacked tensor ``like``."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def cross_fit_packed(
    networks: Sequence[Sequence[nn.Module]],
    x: torch.Tensor | Sequence[torch.Tensor],
    y: torch.Tensor,
    folds: NDArray[np.int64],
    config: TrainConfig,
    weight_decays: Sequence[float] | Sequence[Sequence[float]],
    callbacks: Callable[[int, int, int], Sequence[Callback]] = lambda n, m, c: (),
    w: torch.Tensor | None = None,
    stop: Callable[[], bool] | None = None,
) -> list[tuple[CrossFit, TrainingDivergedError | None]]:
    """Cross-fit the bodies of every network at once: ``networks[i][j]`` trains on the rows
    outside fold ``j``, for each weight decay; per network, the candidate of lowest
    out-of-fold log loss is loaded into its bodies (as :func:`cross_fit` does).

    ``callbacks(network, member, candidate)`` gives the callbacks that watch a member (the
    stall detector); they see a trainer-like view of it after each of its epochs.
    Returns, per network, its :class:`CrossFit` and the error that ruled out its every
    candidate (``None`` when one finished). ``x`` may be one feature block per network
    (the same rows encoded another way: columns read as categories too), and
    ``weight_decays`` one list per network (each network its own candidates). ``stop``
    is asked before every step: once it says so, training ends with :class:`PackStopped`.
    """
    xs = [x] * len(networks) if isinstance(x, torch.Tensor) else list(x)
    decays_of = _per_network(weight_decays, len(networks))
    device = xs[0].device
    n = int(xs[0].shape[0])
    k = len(networks[0])
    folds_t = torch.from_numpy(folds).to(device)
    weight = torch.ones(n, dtype=y.dtype, device=device) if w is None else w.to(y.dtype)
    pos_weight = (
        None
        if config.pos_weight is None
        else torch.tensor(config.pos_weight, dtype=y.dtype, device=device)
    )
    packs: list[_PackState] = []
    # On the CPU a pack holds as few members as keep its step's work above PACK_WORK, at
    # least as many packs per network as threads per network (:func:`_run_packs`); members
    # do not interact: the arithmetic of each is the same however they are grouped.
    share = max(1, torch.get_num_threads() // len(networks))
    for index, bodies in enumerate(networks):
        members = [_Member(index, c, j) for c in range(len(decays_of[index])) for j in range(k)]
        width = _widest(bodies[0], n)
        # Only batched products hold every member's activations at once.
        per_pack = (
            max(1, min(-(-len(members) // share), -(-PACK_WORK // _work(bodies[0], n))))
            if device.type == "cpu"
            else max(1, PACK_ELEMENTS // width)
        )
        for start in range(0, len(members), per_pack):
            chunk = members[start : start + per_pack]
            packs.append(_new_pack(bodies, chunk, folds_t, weight, config, decays_of[index]))
    run = _Run(xs, y, pos_weight, config, _watchers(networks, packs, callbacks, config), stop)
    plain = [not isinstance(next(b[0].children()), PeriodicEmbedding) for b in networks]
    run.sparse = [SparseRows.of(x) if p else None for p, x in zip(plain, xs, strict=True)]
    _run_packs(packs, lambda state: _train_pack(state, run), device)
    return [
        _choose(index, networks[index], packs, run, w, folds, decays_of[index])
        for index in range(len(networks))
    ]


def _per_network(
    weight_decays: Sequence[float] | Sequence[Sequence[float]], n: int
) -> list[list[float]]:
    """The weight decays of each of ``n`` networks: one list for all, or one per network."""
    scalar = (int, float, np.number)
    flat = [float(d) for d in weight_decays if isinstance(d, scalar)]
    if len(flat) == len(weight_decays):
        return [list(flat) for _ in range(n)]
    lists = [[float(v) for v in d] for d in weight_decays if not isinstance(d, scalar)]
    if len(lists) != n:
        raise ValueError(f"{len(lists)} lists of weight decays for {n} networks")
    return lists


def _run_packs(
    packs: Sequence[_PackState], train: Callable[[_PackState], None], device: torch.device
) -> None:
    """Train every pack: on the CPU, packs side by side in threads, one core each.

    A pack steps through small matrix products one member at a time, and torch releases
    the GIL inside each, so the cores work side by side, where splitting each small product
    between intra-op threads made steps slower (:mod:`steadyclf.nn.threads`). The largest
    packs go first and each thread takes the next pack when its own is done: how long a
    member trains is not known in advance (one may take ten times the epochs of the
    others). Each pack's arithmetic is the same whichever thread runs it.
    """
    workers = min(len(packs), torch.get_num_threads()) if device.type == "cpu" else 1
    if workers <= 1:
        for state in packs:
            train(state)
        return
    order = sorted(packs, key=lambda state: -len(state.members) * _work(state.pack, 1))
    with intra_op_threads(1), ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(train, state) for state in order]:
            future.result()


def _work(body: nn.Module | PackedMembers, n: int) -> int:
    """Multiply-adds of one member's forward pass over ``n`` rows (weights x rows)."""
    if isinstance(body, PackedMembers):
        return n * sum(t[0].numel() for t in body.tensors if t.dim() > 2)
    return n * sum(p.numel() for p in body.parameters() if p.dim() > 1)


def _widest(body: nn.Module, n: int) -> int:
    """The largest activation of one member over ``n`` rows, in elements."""
    layers = list(body.children())
    widths = [m.in_features for m in layers if isinstance(m, nn.Linear)]
    widths += [m.out_features for m in layers if isinstance(m, nn.Linear)]
    if isinstance(layers[0], PeriodicEmbedding):
        c, k = layers[0].frequency.shape
        widths.append(c * 2 * k)
    return n * max(widths)


def _new_pack(
    bodies: Sequence[nn.Module],
    members: list[_Member],
    folds: torch.Tensor,
    weight: torch.Tensor,
    config: TrainConfig,
    weight_decays: Sequence[float],
) -> _PackState:
    pack = PackedMembers([bodies[m.fold] for m in members])
    device = weight.device
    fold_of = torch.tensor([m.fold for m in members], device=device)
    inside = (folds.unsqueeze(0) != fold_of.unsqueeze(1)).to(weight.dtype)  # (M, n)
    train = inside * weight
    held = (1 - inside) * weight
    decay = torch.tensor([weight_decays[m.candidate] for m in members], dtype=torch.float64)
    state = _PackState(
        pack=pack,
        members=members,
        train=train,
        held=held,
        held_rows=[torch.nonzero(row == 0).squeeze(1) for row in inside],
        scaled=train * (weight.shape[0] / inside.sum(dim=1).clamp_min(1)).unsqueeze(1),
        n_train=inside.sum(dim=1),
        lr=torch.full((len(members),), float(config.lr), dtype=torch.float64),
        decay=decay,
        steps=torch.zeros(len(members), dtype=torch.float64),
    )
    state.moments = [(torch.zeros_like(t), torch.zeros_like(t)) for t in pack.tensors]
    state.best = [t.detach().clone() for t in pack.tensors]
    state.last_good = [t.detach().clone() for t in pack.tensors]
    return state


def _watchers(
    networks: Sequence[Sequence[nn.Module]],
    packs: Sequence[_PackState],
    callbacks: Callable[[int, int, int], Sequence[Callback]],
    config: TrainConfig,
) -> dict[tuple[int, int, int], tuple[_MemberView, Sequence[Callback]]]:
    """The members some callback watches, each with a trainer-like view of a copy of its
    body: members of one fold with other weight decays share that body, and may train in
    another thread (:func:`_run_packs`), so each view copies weights into its own."""
    out: dict[tuple[int, int, int], tuple[_MemberView, Sequence[Callback]]] = {}
    for state in packs:
        for m in state.members:
            cbs = tuple(callbacks(m.network, m.fold, m.candidate))
            if cbs:
                view = _MemberView(copy.deepcopy(networks[m.network][m.fold]), config)
                out[(m.network, m.candidate, m.fold)] = (view, cbs)
    return out


def _means(
    losses: torch.Tensor, correct: torch.Tensor, rows: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean loss and accuracy of each member over ``rows`` (its row weights)."""
    total = rows.double().sum(dim=1).clamp_min(1e-300)
    loss = (losses.double() * rows).sum(dim=1) / total
    accuracy = (correct.double() * rows).sum(dim=1) / total
    return loss, accuracy


def _train_pack(state: _PackState, run: _Run) -> None:
    """Train the members of one pack until every one has stopped (see the module).

    Each pass computes the logits of every member still training, at its current weights:
    they judge the step it took last (the loss on its held-out fold, as the trainer's
    evaluation after an epoch) and give the loss of its next step (as the trainer's
    training loss before the step), so each step costs one forward pass, not two.
    """
    x = run.xs[state.members[0].network]
    y, config, watchers = run.y, run.config, run.watchers
    pos_weight, histories, best_epochs = run.pos_weight, run.histories, run.best_epochs
    pack, members = state.pack, state.members
    count = len(members)
    keys = [(m.network, m.candidate, m.fold) for m in members]
    epochs = [0] * count
    best_loss = [math.inf] * count
    bad = [0] * count
    schedule_best = [math.inf] * count
    schedule_bad = [0] * count
    recoveries = [0] * count
    stopped = [False] * count
    stepped = [False] * count  # took a step whose result is judged next
    last_train: list[tuple[float, float, float]] = [(math.nan, math.nan, 0.0)] * count
    best_logits = torch.zeros(count, x.shape[0], dtype=x.dtype, device=x.device)
    y_true = (y > 0.5).unsqueeze(0)
    for key in keys:
        histories[key] = []
        best_epochs[key] = None
    for view, cbs in (watchers[key] for key in keys if key in watchers):
        for cb in cbs:
            hook(cb, "on_train_begin")(view)
    # Each member's epoch took the pack's steps since its last: its seconds, as one by one.
    last_time = [time.perf_counter()] * count
    work = _work(pack, x.shape[0])
    threads = 1 if work < SINGLE_THREAD_WORK else torch.get_num_threads()
    sparse = None if pack.batched else run.sparse[state.members[0].network]
    with intra_op_threads(threads):  # already 1 where packs train side by side
        while True:
            live = [i for i in range(count) if not stopped[i]]
            if not live:
                break
            if run.stop is not None and run.stop():
                raise PackStopped
            index = torch.tensor(live, device=x.device)
            # Each member's step minimises the mean of w * loss over its training rows
            # (weighted_loss of its batch): over all n rows, weights scaled by n / n_train.
            logits = pack.forward_backward(
                x, y, state.scaled[index], live, config.pos_weight, sparse
            )  # (len(live), n), and every live member's gradient
            with torch.no_grad():
                z = logits
                losses = member_losses(z, y, pos_weight)
                correct = (z > 0) == y_true
                valid_loss, valid_acc = _means(losses, correct, state.held[index])
                train_loss, train_acc = _means(losses, correct, state.train[index])
                finite = pack.finite(index) & torch.isfinite(train_loss)
                numbers = (valid_loss.tolist(), valid_acc.tolist(), finite.tolist())
                train_numbers = (train_loss.tolist(), train_acc.tolist())
                improved_rows: list[int] = []
                redo = False
                for row, i in enumerate(live):
                    if not stepped[i]:
                        continue
                    stepped[i] = False
                    if not (numbers[2][row] and math.isfinite(last_train[i][0])):
                        redo = True
                        if not _recover(state, i, recoveries, config):
                            stopped[i] = True
                            run.diverged.add(keys[i])
                            run.errors[keys[i]] = _divergence(epochs[i], last_train[i][0], config)
                        continue
                    epochs[i] += 1
                    monitored = numbers[0][row]
                    record: EpochRecord = {
                        "epoch": epochs[i],
                        "train_loss": last_train[i][0],
                        "train_accuracy": last_train[i][1],
                        "valid_loss": monitored,
                        "valid_accuracy": numbers[1][row],
                        "lr": last_train[i][2],
                        "seconds": time.perf_counter() - last_time[i],
                    }
                    last_time[i] = time.perf_counter()
                    if config.schedule == "plateau":
                        _plateau(state, i, monitored, schedule_best, schedule_bad, config)
                    improved = (
                        monitored < best_loss[i] - config.tol * max(abs(best_loss[i]), 1e-12)
                        if math.isfinite(best_loss[i])
                        else True
                    )
                    if improved:
                        best_loss[i], bad[i], best_epochs[keys[i]] = monitored, 0, epochs[i]
                        improved_rows.append(row)
                    else:
                        bad[i] += 1
                    # The row kept is the one the watchers see: a stall warning's kinds
                    # and the gradient's size land in the fit's history, as one by one.
                    record = {**record, "member": members[i].fold}
                    histories[keys[i]].append(record)
                    if bad[i] >= config.patience or epochs[i] >= config.max_epochs:
                        stopped[i] = True
                    if keys[i] in watchers:
                        _notify(watchers[keys[i]], pack, i, record, bad[i] >= config.patience)
                if improved_rows:
                    rows = torch.tensor(improved_rows, device=x.device)
                    members_improved = index[rows]
                    pack.copy_to(state.best, members_improved)
                    best_logits[members_improved] = z[rows]
                judged = [i for i in live if not stopped[i] and epochs[i] > 0]
                if judged:
                    pack.copy_to(state.last_good, torch.tensor(judged, device=x.device))
            if redo:  # a member was rolled back: its logits are stale, compute them again
                continue
            rows_stepping = [row for row, i in enumerate(live) if not stopped[i]]
            if not rows_stepping:
                break
            stepping = [live[row] for row in rows_stepping]
            for row in rows_stepping:
                i = live[row]
                last_train[i] = (train_numbers[0][row], train_numbers[1][row], float(state.lr[i]))
                stepped[i] = True
            active = torch.zeros(count, dtype=torch.float64)
            active[stepping] = 1.0
            _adam_step(state, active)
    with torch.no_grad():  # every member ends at its best weights
        for best, t in zip(state.best, pack.tensors, strict=True):
            t.copy_(best)
    for i, key in enumerate(keys):
        rows = state.held_rows[i]
        run.oof_best[key] = best_logits[i, rows].double().cpu().numpy()
        if best_epochs[key] is None:  # never finished an epoch with a finite loss
            run.oof_best[key] = np.full(int(rows.numel()), np.nan)
        if key in watchers:
            view, cbs = watchers[key]
            for cb in cbs:
                hook(cb, "on_train_end")(view)
                hook(cb, "on_train_exit")(view)


def _notify(
    watched: tuple[_MemberView, Sequence[Callback]],
    pack: PackedMembers,
    index: int,
    record: EpochRecord,
    stopped_early: bool,
) -> None:
    """Show a watched member's epoch to its callbacks, its weights and gradients in its
    body (as a :class:`Trainer` would after the epoch)."""
    view, cbs = watched
    pack.load_into(view.module, index, grads=True)
    view.epoch = int(record["epoch"])
    view.history.append(record)
    view.stopped_early = stopped_early
    for cb in cbs:
        hook(cb, "on_epoch_end")(view, record)


@torch.no_grad()
def _adam_step(state: _PackState, active: torch.Tensor) -> None:
    """One Adam step of every active member: L2 weight decay in the gradient, bias
    corrections by each member's own step count, its own learning rate."""
    state.steps += active
    b1, b2 = BETAS
    steps = state.steps.clamp_min(1)
    correction1 = 1 - b1**steps
    correction2 = 1 - b2**steps
    rate = state.lr * active / correction1
    # The per-member numbers (kept on the CPU, float64) on the weights' device and in their
    # dtype, once per step rather than once per tensor.
    like = state.pack.tensors[0]
    decay, keep_, correction2_, rate_ = (
        v.to(device=like.device, dtype=like.dtype) for v in (state.decay, active, correction2, rate)
    )
    for t, (m1, m2) in zip(state.pack.tensors, state.moments, strict=True):
        assert t.grad is not None
        grad = t.grad + _view(decay, t) * t
        keep = _view(keep_, t)
        m1.mul_(1 - (1 - b1) * keep).add_(grad * keep, alpha=1 - b1)
        m2.mul_(1 - (1 - b2) * keep).addcmul_(grad * keep, grad, value=1 - b2)
        denom = (m2 / _view(correction2_, t)).sqrt_().add_(EPS)
        t.addcdiv_(m1 * _view(rate_, t), denom, value=-1.0)


def _plateau(
    state: _PackState,
    i: int,
    monitored: float,
    best: list[float],
    bad: list[int],
    config: TrainConfig,
) -> None:
    """``ReduceLROnPlateau(factor=0.3, patience=max(1, patience // 3))`` of one member."""
    if monitored < best[i] * (1 - 1e-4):
        best[i], bad[i] = monitored, 0
    else:
        bad[i] += 1
    if bad[i] > max(1, config.patience // 3):
        old = float(state.lr[i])
        new = old * PLATEAU_FACTOR
        if old - new > 1e-8:
            state.lr[i] = new
        bad[i] = 0


def _recover(state: _PackState, i: int, recoveries: list[int], config: TrainConfig) -> bool:
    """Roll member ``i`` back to its last finite weights with a tenth of the rate and fresh
    moments (as :class:`Trainer` does); False once it has tried ``max_recoveries`` times."""
    recoveries[i] += 1
    with torch.no_grad():
        source = state.last_good if recoveries[i] <= config.max_recoveries else state.best
        for good, t, (m1, m2) in zip(source, state.pack.tensors, state.moments, strict=True):
            t[i] = good[i]
            m1[i] = 0
            m2[i] = 0
    state.steps[i] = 0
    if recoveries[i] > config.max_recoveries:
        return False
    state.lr[i] *= 0.1
    return True


def _divergence(epoch: int, loss: float, config: TrainConfig) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"training diverged (loss {loss}) at epoch {epoch + 1} even after lowering the "
        f"learning rate {config.max_recoveries} times (the weights of the best epoch were "
        f"kept); {config.advice}"
    )


def _choose(
    index: int,
    bodies: Sequence[nn.Module],
    packs: Sequence[_PackState],
    run: _Run,
    w: torch.Tensor | None,
    folds: NDArray[np.int64],
    weight_decays: Sequence[float],
) -> tuple[CrossFit, TrainingDivergedError | None]:
    """The candidate of network ``index`` with the lowest out-of-fold log loss (of equal
    ones, the first listed), loaded into its bodies."""
    k = len(bodies)
    y = run.y
    y64 = y.double()
    w64 = None if w is None else w.double()
    pw = None if run.pos_weight is None else run.pos_weight.double()
    results: list[tuple[float, CrossFit, bool]] = []
    losses: dict[float, float | None] = {}
    for candidate, decay in enumerate(weight_decays):
        oof = np.zeros(len(folds), dtype=np.float64)
        for j in range(k):
            oof[np.flatnonzero(folds == j)] = run.oof_best[(index, candidate, j)]
        logits = torch.from_numpy(oof).to(y.device)
        terms = functional.binary_cross_entropy_with_logits(
            logits, y64, pos_weight=pw, reduction="none"
        )
        loss = float(
            terms.mean() if w64 is None else (terms * w64).sum() / w64.sum().clamp_min(1e-300)
        )
        loss = loss if math.isfinite(loss) else math.inf
        failed = any((index, candidate, j) in run.diverged for j in range(k))
        losses[decay] = None if failed else loss
        result = CrossFit(
            decay,
            oof,
            [run.histories[(index, candidate, j)] for j in range(k)],
            [run.best_epochs[(index, candidate, j)] for j in range(k)],
        )
        results.append((loss, result, failed))
    finished = [r for r in results if not r[2]]
    chosen = min(finished or results, key=lambda r: r[0])[1]
    chosen.losses = losses
    chosen.candidate_oof = {r[1].weight_decay: r[1].oof_logits for r in results}
    candidate = list(weight_decays).index(chosen.weight_decay)
    for state in packs:
        for i, m in enumerate(state.members):
            if m.network == index and m.candidate == candidate:
                state.pack.load_into(bodies[m.fold], i)
    error = None
    if not finished:  # each network gets its own error (the caller may attach a model)
        message = str(run.errors[min(run.errors)]) if run.errors else "training diverged"
        error = TrainingDivergedError(message)
        error.cross_fit = chosen
    return chosen, error
