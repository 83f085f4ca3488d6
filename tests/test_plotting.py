"""Plotting helpers: what they draw, and their input errors."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from pgkit.plotting import new_figure, plot_estimate_vs_exact, plot_mean_band  # noqa: E402


def test_mean_band_draws_mean_and_standard_error_band():
    fig, ax = new_figure()
    ys = np.array([[0.0, 2.0, 4.0], [2.0, 4.0, 8.0]])
    line = plot_mean_band(ax, [1, 2, 3], ys, label="curve")
    np.testing.assert_allclose(line.get_ydata(), [1.0, 3.0, 6.0])
    assert line.get_label() == "curve (2 seeds)"
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    se = ys.std(axis=0, ddof=1) / np.sqrt(2)
    assert np.isclose(band.max(), 6.0 + se[2]) and np.isclose(band.min(), 1.0 - se[0])
    plt.close(fig)


def test_minmax_band_and_single_seed():
    fig, ax = new_figure(2)
    assert len(ax) == 2
    plot_mean_band(ax[0], [0, 1], [[0.0, 1.0], [2.0, 5.0]], band="minmax")
    band = ax[0].collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == 0.0 and band.max() == 5.0
    line = plot_mean_band(ax[1], [0, 1], [[3.0, 4.0]], label="one")
    assert line.get_label() == "one"
    plt.close(fig)


def test_estimate_vs_exact_draws_error_bars():
    fig, ax = new_figure()
    plot_estimate_vs_exact(ax, ["a", "b"], [1.0, 2.0], [0.1, 0.2], [1.05, 1.9], n_se=3)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(labels) == ["estimate ± 3 s.e.", "exact"]
    plt.close(fig)


@pytest.mark.parametrize("call, message", [
    (lambda ax: plot_mean_band(ax, [0, 1], [0.0, 1.0]), r"ys must have shape \[n_seeds, n_points\], got \(2,\)"),
    (lambda ax: plot_mean_band(ax, [0, 1, 2], [[0.0, 1.0]]), r"n_points = 3, got \(1, 2\)"),
    (lambda ax: plot_mean_band(ax, [0, 1], [[0.0, 1.0]], band="iqr"), r"band must be 'se' or 'minmax'"),
    (lambda ax: plot_mean_band(ax, [0, np.nan], [[0.0, 1.0]]), r"x contains NaN"),
    (lambda ax: plot_estimate_vs_exact(ax, ["a"], [1.0, 2.0], [0.1, 0.1], [1.0, 2.0]), "same length"),
    (lambda ax: plot_estimate_vs_exact(ax, ["a"], [1.0], [-0.1], [1.0]), "standard_errors must be non-negative"),
    (lambda ax: new_figure(0), "ncols must be >= 1"),
])
def test_plotting_rejects_bad_input(call, message):
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match=message):
        call(ax)
    plt.close(fig)
