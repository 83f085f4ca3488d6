"""Plotting helpers: one look for every figure of the book, and seed bands.

Only matplotlib is used. Chapters call these in (usually hidden) plot cells, so
the cells the reader sees are about the algorithm, not the styling.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from pgkit import _checks

__all__ = ["BOOK_STYLE", "new_figure", "plot_mean_band", "plot_estimate_vs_exact"]

BOOK_STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


def new_figure(ncols: int = 1, *, width: float = 6.4, height: float = 3.6, **kwargs):
    """A figure with ``ncols`` axes side by side, in the book's style; returns ``(fig, axes)``."""
    _checks.check_positive_int(ncols, "ncols")
    with plt.rc_context(BOOK_STYLE):
        fig, axes = plt.subplots(1, ncols, figsize=(width * ncols if ncols > 1 else width, height),
                                 layout="constrained", **kwargs)
    for ax in np.atleast_1d(axes):
        ax.grid(True, alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes


def plot_mean_band(ax, x, ys, *, label: str | None = None, color=None, band: str = "se",
                   **line_kwargs):
    """Plot the mean over seeds of ``ys`` [n_seeds, n_points] against ``x`` [n_points], with a band.

    ``band="se"``: mean plus or minus one standard error over seeds;
    ``band="minmax"``: the range over seeds. Returns the line.
    """
    x = _checks.as_float_array(x, "x", ndim=1, shape_doc="[n_points]")
    ys = _checks.as_float_array(ys, "ys", ndim=2, shape_doc="[n_seeds, n_points]", allow_nan=True)
    if ys.shape[1] != x.shape[0]:
        raise ValueError(f"ys must have shape [n_seeds, n_points] with n_points = {x.shape[0]}, "
                         f"got {ys.shape}")
    if band not in ("se", "minmax"):
        raise ValueError(f"band must be 'se' or 'minmax', got {band!r}")
    mean = np.nanmean(ys, axis=0)
    if band == "se" and ys.shape[0] > 1:
        se = np.nanstd(ys, axis=0, ddof=1) / np.sqrt(ys.shape[0])
        low, high = mean - se, mean + se
    elif band == "minmax":
        low, high = np.nanmin(ys, axis=0), np.nanmax(ys, axis=0)
    else:
        low = high = mean
    n = ys.shape[0]
    tag = f" ({n} seeds)" if label is not None and n > 1 else ""
    (line,) = ax.plot(x, mean, label=None if label is None else label + tag, color=color, **line_kwargs)
    ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    return line


def plot_estimate_vs_exact(ax, labels, estimates, standard_errors, exact, *, n_se: float = 2.0):
    """Point estimates with ``n_se`` standard-error bars next to the exact values (black crosses).

    ``labels`` [K] names, ``estimates``, ``standard_errors`` and ``exact`` [K].
    """
    estimates = _checks.as_float_array(estimates, "estimates", ndim=1, shape_doc="[K]")
    standard_errors = _checks.as_float_array(standard_errors, "standard_errors", ndim=1, shape_doc="[K]")
    exact = _checks.as_float_array(exact, "exact", ndim=1, shape_doc="[K]")
    if not (len(labels) == estimates.size == standard_errors.size == exact.size):
        raise ValueError("labels, estimates, standard_errors and exact must have the same length")
    if (standard_errors < 0).any():
        raise ValueError("standard_errors must be non-negative")
    pos = np.arange(estimates.size)
    ax.errorbar(pos, estimates, yerr=n_se * standard_errors, fmt="o", capsize=4,
                label=f"estimate ± {n_se:g} s.e.")
    ax.plot(pos, exact, "kx", markersize=9, label="exact")
    ax.set_xticks(pos, labels)
    ax.legend()
