"""Packed members: every member of a cross-fit trained as one batched network.

The packed loop must train each member as the one-by-one loop does (same objective,
stopping, schedule, recovery), so the two are compared on the same bodies and rows.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from steadyclf import BinaryClassifier
from steadyclf.exceptions import ModelFileError, TrainingDivergedError
from steadyclf.nn.modules import make_body
from steadyclf.nn.threads import intra_op_threads
from steadyclf.train import packed as packed_module
from steadyclf.train.checkpoint import Checkpoint
from steadyclf.train.checkpoint_files import read_stage, write_stage
from steadyclf.train.crossfit import cross_fit, from_record, stratified_folds, to_record
from steadyclf.train.packed import PackedMembers, cross_fit_packed, packable
from steadyclf.train.trainer import TrainConfig

DECAYS = (1e-3, 1e-2, 1e-1)


def _data(n: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    logit = 2 * x[:, 0] - x[:, 1] + np.sin(3 * x[:, 2])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    folds = stratified_folds(y, np.arange(n, dtype=np.int64), 5, seed)
    return torch.from_numpy(x), torch.from_numpy(y), folds


def _bodies(periodic: tuple[int, ...], seed: int = 0) -> list[nn.Sequential]:
    generator = torch.Generator().manual_seed(seed)
    return [
        make_body(4, (16,), "relu", batchnorm=False, generator=generator, periodic=periodic)
        for _ in range(5)
    ]


def _config(**changes: Any) -> TrainConfig:
    base = TrainConfig(lr=3e-2, max_epochs=60, batch_size=None, schedule="plateau", patience=6)
    for name, value in changes.items():
        setattr(base, name, value)
    return base


@pytest.mark.parametrize("periodic", [(), (0, 2)], ids=["plain", "periodic"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_packed_members_train_as_one_by_one_members_do(
    periodic: tuple[int, ...], weighted: bool
) -> None:
    x, y, folds = _data()
    w = None
    if weighted:
        w = torch.from_numpy(np.random.default_rng(5).uniform(0.2, 3.0, size=len(y))).float()
    config = _config(pos_weight=1.7)
    one_by_one = _bodies(periodic)
    packed = copy.deepcopy(one_by_one)
    expected = cross_fit(one_by_one, x, y, folds, config, DECAYS, w=w)
    [(got, error)] = cross_fit_packed([packed], x, y, folds, config, DECAYS, w=w)
    assert error is None
    assert got.weight_decay == expected.weight_decay
    assert got.best_epochs == expected.best_epochs
    for decay in DECAYS:
        # float32 steps through other kernels (fused or sliced vs whole module), over up to
        # 60 steps: the losses agree to a few float32 roundings of the weights.
        assert got.losses[decay] == pytest.approx(expected.losses[decay], rel=1e-4)
    np.testing.assert_allclose(got.oof_logits, expected.oof_logits, atol=2e-3)
    for a, b in zip(packed, one_by_one, strict=True):
        for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=2e-3, rtol=1e-3, msg=name)
    assert [len(h) for h in got.histories] == [len(h) for h in expected.histories]
    assert got.histories[0][0].keys() == expected.histories[0][0].keys()


@pytest.mark.parametrize("threads", [1, 2])
def test_how_members_are_grouped_into_packs_changes_no_member(
    threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Packs are cut by the work of a step (PACK_WORK) and taken by the threads largest
    # first: one member per pack and all of a network's members in one pack train each
    # member alike (members do not interact; each steps through its own slices).
    x, y, folds = _data()
    config = _config()
    results = []
    for pack_work in (1, 1 << 40):
        monkeypatch.setattr(packed_module, "PACK_WORK", pack_work)
        with intra_op_threads(threads):
            [(got, error)] = cross_fit_packed([_bodies(())], x, y, folds, config, DECAYS)
        assert error is None
        results.append(got)
    singles, together = results
    assert singles.best_epochs == together.best_epochs
    assert singles.losses == pytest.approx(together.losses, rel=1e-6)
    np.testing.assert_allclose(singles.oof_logits, together.oof_logits, atol=1e-5)


def test_each_network_may_have_its_own_weight_decays() -> None:
    # The second stage of a small-data fit trains every reading's embedded network at once,
    # each with the decay its plain network chose: as if each were cross-fitted alone.
    x, y, folds = _data()
    config = _config()
    together = cross_fit_packed(
        [_bodies((), seed=1), _bodies((0, 2), seed=2)], x, y, folds, config, [[1e-3], [1e-1]]
    )
    alone = [
        cross_fit_packed([_bodies((), seed=1)], x, y, folds, config, [1e-3])[0],
        cross_fit_packed([_bodies((0, 2), seed=2)], x, y, folds, config, [1e-1])[0],
    ]
    for (got, error), (expected, expected_error) in zip(together, alone, strict=True):
        assert error is None and expected_error is None
        assert got.weight_decay == expected.weight_decay
        assert got.best_epochs == expected.best_epochs
        np.testing.assert_allclose(got.oof_logits, expected.oof_logits, atol=1e-5)
    assert [f.weight_decay for f, _ in together] == [1e-3, 1e-1]
    # NumPy numbers are decays too, not lists of them.
    [(numpy_decay, _)] = cross_fit_packed(
        [_bodies((), seed=1)], x, y, folds, config, [np.float32(1e-3)]
    )
    assert numpy_decay.weight_decay == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="1 lists of weight decays for 2 networks"):
        cross_fit_packed([_bodies(()), _bodies(())], x, y, folds, config, [[1e-3]])


def test_a_stopped_member_keeps_its_best_weights_and_takes_no_more_steps() -> None:
    x, y, folds = _data(seed=1)
    bodies = _bodies(())
    [(fitted, _)] = cross_fit_packed([bodies], x, y, folds, _config(), DECAYS)
    # Members stop at different epochs; each ran patience epochs past its best one.
    lengths = [len(h) for h in fitted.histories]
    assert len(set(lengths)) > 1
    for history, best in zip(fitted.histories, fitted.best_epochs, strict=True):
        assert best is not None and len(history) in (best + 6, 60)
    # The held-out logits are those of the kept weights: the estimate is the model's.
    for j, body in enumerate(bodies):
        held = torch.from_numpy(np.flatnonzero(folds == j))
        with torch.no_grad():
            logits = body(x[held]).reshape(-1).double().numpy()
        np.testing.assert_allclose(fitted.oof_logits[held.numpy()], logits, atol=1e-5)


@pytest.mark.parametrize("periodic", [(), (1,)], ids=["plain", "periodic"])
def test_batched_and_member_by_member_kernels_agree(periodic: tuple[int, ...]) -> None:
    """The GPU's batched matmuls and the CPU's per-member products are the same network."""
    x, _, _ = _data(n=64)
    pack = PackedMembers(_bodies(periodic, seed=3))
    pack.batched = True
    batched = pack.forward(x, [0, 2, 4]).detach()
    pack.batched = False
    sliced = pack.forward(x, [0, 2, 4]).detach()
    torch.testing.assert_close(batched, sliced, atol=1e-5, rtol=1e-5)
    for row, member in enumerate([0, 2, 4]):
        with torch.no_grad():
            alone = _bodies(periodic, seed=3)[member](x).reshape(-1)
        torch.testing.assert_close(sliced[row], alone, atol=1e-5, rtol=1e-5)


def test_members_that_all_diverge_hand_back_the_least_bad_candidate() -> None:
    x, y, folds = _data(seed=2)
    x = x * 1e4  # unscaled inputs and a rate that overflows the weights in one step
    config = _config(lr=1e37, max_epochs=20)
    with pytest.raises(TrainingDivergedError) as caught:
        cross_fit(_bodies(()), x, y, folds, config, DECAYS)
    [(fitted, error)] = cross_fit_packed([_bodies(())], x, y, folds, config, DECAYS)
    assert isinstance(error, TrainingDivergedError)
    assert error.cross_fit is fitted  # type: ignore[attr-defined]
    assert fitted.losses == caught.value.cross_fit.losses  # type: ignore[attr-defined]
    assert all(loss is None for loss in fitted.losses.values())


def test_packable_covers_the_default_small_data_fit_only() -> None:
    body = _bodies(())[0]
    assert packable(body, _config(), [])
    assert not packable(body, _config(optimizer="sgd"), [])
    assert not packable(body, _config(batch_size=32), [])
    assert not packable(body, _config(schedule="cosine"), [])
    norm = make_body(4, (8,), "relu", batchnorm=True, generator=torch.Generator())
    assert not packable(norm, _config(), [])


def test_packable_with_a_checkpoint_that_keeps_stages_only(tmp_path: Path) -> None:
    body = _bodies(())[0]
    assert packable(body, _config(), [Checkpoint(tmp_path, every=None)])
    # One that saves members epoch by epoch trains them one after another.
    assert not packable(body, _config(), [Checkpoint(tmp_path, every=2)])
    # Two checkpoints cannot both keep the stages.
    both = [Checkpoint(tmp_path / "a", every=None), Checkpoint(tmp_path / "b", every=None)]
    assert not packable(body, _config(), both)


def test_default_small_data_fit_is_packed_and_reports_every_member() -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(400, 3))
    y = (X[:, 0] + np.sin(2 * X[:, 1]) + rng.normal(scale=0.5, size=400) > 0).astype(int)
    started = time.perf_counter()
    clf = BinaryClassifier(random_state=0, max_epochs=40).fit(X, y)
    wall = time.perf_counter() - started
    facts = clf.data_["cross_fit"]
    assert len(clf.module_.bodies) == 5
    assert set(facts["out_of_fold_log_loss"]) == {"0.001", "0.01", "0.1"}
    assert sorted({r["member"] for r in clf.history_}) == [0, 1, 2, 3, 4]
    assert clf.validation_metrics_["roc_auc"] > 0.8
    # An epoch's seconds are its own, as one by one (they were the seconds since the pack
    # began: a member's epochs then summed to many times the whole fit).
    for member in range(5):
        rows = [r for r in clf.history_ if r["member"] == member]
        assert len(rows) >= 5 and sum(r["seconds"] for r in rows) <= wall


def test_a_cross_fit_kept_by_a_checkpoint_comes_back_whole(tmp_path: Path) -> None:
    """What a stage checkpoint keeps of a network (to_record) reads back (from_record) as
    training left it: the weights, every number of the cross-fit, the error, the warnings."""
    x, y, folds = _data()
    bodies = _bodies(())
    [(fitted, _)] = cross_fit_packed([bodies], x, y, folds, _config(max_epochs=8), DECAYS)
    error = TrainingDivergedError("training diverged (loss nan) at epoch 3")
    warning = {"epoch": 2, "kind": "prior_stall", "message": "m", "cause": "c", "fix": "f"}
    warnings = [[], [{**warning, "resolved_epoch": None}], []]
    write_stage(tmp_path, 0, [to_record(fitted, error, bodies, warnings)])
    fresh = _bodies((), seed=1)  # other weights, overwritten by the kept ones
    [saved] = read_stage(tmp_path / "stage-0").networks
    back, back_error, back_warnings = from_record(saved, fresh, len(y), "stage")
    for a, b in zip(bodies, fresh, strict=True):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(p, q), name
    assert back.weight_decay == fitted.weight_decay and back.losses == fitted.losses
    assert np.array_equal(back.oof_logits, fitted.oof_logits)
    assert back.candidate_oof.keys() == fitted.candidate_oof.keys()
    for decay, oof in fitted.candidate_oof.items():
        assert np.array_equal(back.candidate_oof[decay], oof)
    assert back.histories == fitted.histories and back.best_epochs == fitted.best_epochs
    assert isinstance(back_error, TrainingDivergedError) and str(back_error) == str(error)
    assert back_error.cross_fit is back  # type: ignore[attr-defined]
    assert back_warnings == warnings
    with pytest.raises(ModelFileError, match="does not hold 299 rows"):
        from_record(saved, fresh, len(y) - 1, "stage")
    with pytest.raises(ModelFileError, match=r"stage.bodies\[0\] has unexpected keys"):
        from_record(saved, _bodies((0, 2)), len(y), "stage")  # another layout
