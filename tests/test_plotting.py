"""The skinfomax.plot_* functions draw what it is given and says what it needs."""

import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from skinfomax import _plotting as plotting  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_plot_images_grid_and_scale():
    flat = np.arange(10 * 12, dtype=float).reshape(10, 12)
    fig = plotting.plot_images(flat, image_shape=(1, 3, 4), n_cols=4, titles=list("abcdefghij"))
    assert len(fig.axes) == 12  # 3 rows of 4, the last two empty
    shown = fig.axes[1].images[0].get_array()
    np.testing.assert_array_equal(shown, flat[1].reshape(3, 4))
    assert fig.axes[1].get_title() == "b"
    # One grey scale for the whole grid.
    assert fig.axes[0].images[0].get_clim() == (0.0, 119.0)
    assert not fig.axes[11].axison


def test_plot_images_rgb_and_errors():
    fig = plotting.plot_images(np.full((2, 3, 4, 4), 2.0))
    assert fig.axes[0].images[0].get_array().shape == (4, 4, 3)
    assert fig.axes[0].images[0].get_array().max() == 1.0  # clipped
    with pytest.raises(ValueError, match="image_shape"):
        plotting.plot_images(np.zeros((2, 16)))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        plotting.plot_images(np.zeros((2, 2, 4, 4)))


def test_plot_traversal_rows_and_value_labels():
    values = np.linspace(-1, 1, 5)
    fig = plotting.plot_traversal(np.random.rand(3, 5, 16), values, image_shape=(1, 4, 4))
    assert len(fig.axes) == 15
    assert [ax.get_title() for ax in fig.axes[:5]] == ["-1", "-0.5", "0", "0.5", "1"]
    single = plotting.plot_traversal(np.random.rand(5, 1, 4, 4), values)
    assert len(single.axes) == 5
    with pytest.raises(ValueError, match="rows of 5 values"):
        plotting.plot_traversal(np.random.rand(7, 16), values, image_shape=(1, 4, 4))


def test_plot_reconstructions_rows():
    X = np.random.rand(10, 16)
    fig = plotting.plot_reconstructions(
        X, {"c only": X * 0, "all": X}, image_shape=(1, 4, 4), n_images=6
    )
    assert len(fig.axes) == 18
    assert [fig.axes[i].get_ylabel() for i in (0, 6, 12)] == ["original", "c only", "all"]
    with pytest.raises(ValueError, match="reconstructions 'reconstruction'"):
        plotting.plot_reconstructions(X.reshape(10, 1, 4, 4), np.zeros((10, 1, 2, 2)))


def test_plot_history_from_a_fitted_model(fitted):
    fig = plotting.plot_history(fitted.history_)
    assert len(fig.axes) == 4
    line = fig.axes[3].lines[0]
    np.testing.assert_array_equal(line.get_ydata(), [r["mi"] for r in fitted.history_])
    history = [dict(r, valid_loss=r["loss"] + 1) for r in fitted.history_]
    assert len(plotting.plot_history(history, keys=("loss",)).axes[0].lines) == 2
    with pytest.raises(ValueError, match="no \\['accuracy'\\]"):
        plotting.plot_history(fitted.history_, keys=("accuracy",))
    with pytest.raises(ValueError, match="empty"):
        plotting.plot_history([])


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"skinfomax\[plot\]"):
        plotting.plot_history([{"epoch": 1, "loss": 0.0}], keys=("loss",))
