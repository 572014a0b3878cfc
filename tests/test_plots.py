from pathlib import Path

import numpy as np
import pytest

from steadyclf.plots import plot_calibration, plot_precision_recall, plot_roc, plot_training

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("with_validation", [True, False])
def test_training_figure(tmp_path: Path, with_validation: bool) -> None:
    history = []
    for epoch in range(1, 6):
        row = {"epoch": epoch, "train_loss": 1.0 / epoch, "train_accuracy": 0.5 + 0.08 * epoch}
        if with_validation:
            row |= {"valid_loss": 1.2 / epoch, "valid_accuracy": 0.5 + 0.07 * epoch}
        history.append(row | {"lr": 0.03 / epoch})
    path = plot_training(history, tmp_path / "sub" / "training.png")
    assert _is_png(path)
    assert [p.name for p in path.parent.iterdir()] == ["training.png"]  # no temporary file


@pytest.mark.parametrize("plot", [plot_roc, plot_precision_recall, plot_calibration])
def test_evaluation_figures(tmp_path: Path, plot) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=200)
    proba = np.clip(0.3 * y + rng.random(200) * 0.7, 0, 1)
    path = plot(y, proba, tmp_path / "figure.png")
    assert _is_png(path) and path.stat().st_size > 5000


def test_plots_leave_the_matplotlib_backend_alone(tmp_path: Path) -> None:
    import matplotlib

    previous = matplotlib.get_backend()
    matplotlib.use("svg")  # as a notebook would have its own
    try:
        plot_roc(np.array([0, 1, 0, 1]), np.array([0.1, 0.8, 0.4, 0.6]), tmp_path / "roc.png")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(previous)


def test_training_figure_draws_each_member_on_its_own() -> None:
    """Cross-fitted members each train from epoch 1 and stop on their own: one line per
    member, never one line running from a member's last epoch back to the next's first."""
    from steadyclf.plots import training_figure

    history = [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "valid_loss": 1.1 / e,
            "train_accuracy": 0.6,
            "valid_accuracy": 0.55,
            "lr": 0.03,
            "member": member,
        }
        for member, epochs in enumerate((4, 7, 5))
        for e in range(1, epochs + 1)
    ]
    fig = training_figure(history)
    loss, accuracy, rate = fig.axes
    assert len(loss.lines) == len(accuracy.lines) == 6 and len(rate.lines) == 3
    for ax in (loss, accuracy, rate):
        for line in ax.lines:
            assert np.all(np.diff(line.get_xdata()) > 0)  # epochs only go forward
        assert "3 members" in ax.get_title()
    assert [t.get_text() for t in loss.get_legend().get_texts()] == ["train", "valid"]
    assert sorted(len(line.get_xdata()) for line in rate.lines) == [4, 5, 7]
    single = training_figure([r for r in history if r["member"] == 1])
    assert len(single.axes[0].lines) == 2 and single.axes[0].get_title() == "log loss"


def test_evaluation_figures_name_the_positive_class_and_use_the_weights() -> None:
    """The axes say which class is positive (not scikit-learn's "1" for the 0/1 labels the
    figures get), a ``$`` in its name stays text, and the curves are weighted as the
    metrics beside them are."""
    from sklearn.metrics import average_precision_score

    from steadyclf.calibration import reliability_bins
    from steadyclf.plots import calibration_figure, precision_recall_figure, roc_figure

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=300)
    proba = np.clip(0.35 * y + rng.random(300) * 0.65, 0, 1)
    w = np.where(y == 1, 5.0, 1.0)
    for make in (roc_figure, precision_recall_figure, calibration_figure):
        ax = make(y, proba, positive="works $5 a day", sample_weight=w).axes[0]
        for label in (ax.get_xlabel(), ax.get_ylabel()):
            assert "works \\$5 a day" in label and "1)" not in label
        ax.figure.canvas.draw()  # mathtext would fail on an unescaped $
    legend = precision_recall_figure(y, proba, sample_weight=w).axes[0].get_legend()
    weighted = average_precision_score(y, proba, sample_weight=w)
    model, chance = (t.get_text() for t in legend.get_texts())
    assert f"AP = {weighted:.2f}" in model
    assert chance == f"Chance level (AP = {np.average(y, weights=w):.2f})"  # the weighted rate
    line = calibration_figure(y, proba, 10, sample_weight=w).axes[0].lines[1]
    bins = reliability_bins(y, proba, 10, sample_weight=w)
    assert list(line.get_xdata()) == [b["predicted"] for b in bins]
    assert list(line.get_ydata()) == [b["observed"] for b in bins]
    unweighted = reliability_bins(y, proba, 10)
    assert [b["observed"] for b in bins] != [b["observed"] for b in unweighted]
