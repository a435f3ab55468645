"""Attention heatmaps of ACCR: which floating locations a reference location attends to (docs/explanation/accr.md).

The figure takes plain arrays (NumPy only, as the evaluation's environment has no PyTorch): the
attention of a registered pair as :meth:`comir.register.accr.ACCRRegistration.attention` gives
it. Drawn with :mod:`comir.evaluate.figures`' conventions (an Agg figure, no ``pyplot``; write
it with :func:`comir.evaluate.figures.save_figure`).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from comir import geometry
from comir.evaluate.figures import display_picture, new_figure


def plot_attention(
    reference: np.ndarray,
    floating: np.ndarray,
    weights: np.ndarray,
    reference_points: np.ndarray,
    floating_points: np.ndarray,
    floating_grid: tuple[int, int],
    queries: np.ndarray,
    truth: np.ndarray | None = None,
    correspondences: np.ndarray | None = None,
) -> Figure:
    """The reference with the query locations, and per query the floating image under its attention.

    Parameters
    ----------
    reference, floating : numpy.ndarray
        The pair's images, ``(H, W)`` or ``(H, W, C)`` (shown as :func:`comir.evaluate.figures.display_picture` does).
    weights : numpy.ndarray
        ``(L_r, L_f)``: each reference token's attention over the floating tokens (rows sum to 1).
    reference_points, floating_points : numpy.ndarray
        ``(L_r, 2)`` and ``(L_f, 2)``: the tokens' centres (x, y) in the images' pixels; the
        floating tokens row by row of a regular grid.
    floating_grid : tuple of int
        ``(rows, columns)`` of the floating tokens.
    queries : numpy.ndarray
        ``(K, 2)`` reference locations (x, y); each is shown by the token nearest to it.
    truth : numpy.ndarray or None
        The true floating -> reference matrix, if known: each panel then marks where the floating
        image shows the query location (x).
    correspondences : numpy.ndarray or None
        ``(L_r, 2)``: each reference token's correspondence (x, y) in the floating image as the
        model fits it (:attr:`comir.register.accr.ACCRAttention.correspondences`), marked (+).
        None: the attention-weighted mean of all floating token centres is marked instead.

    Returns
    -------
    matplotlib.figure.Figure
        ``K + 1`` panels: the reference with numbered queries, then per query the floating image
        with the attention of the query's token as a heatmap (a square per floating token) and
        its correspondence (+).

    Raises
    ------
    ValueError
        For arrays whose shapes do not fit each other.
    """
    weights = np.asarray(weights, dtype=float)
    reference_points = np.asarray(reference_points, dtype=float)
    floating_points = np.asarray(floating_points, dtype=float)
    queries = np.atleast_2d(np.asarray(queries, dtype=float))
    rows, columns = floating_grid
    if weights.shape != (len(reference_points), len(floating_points)) or rows * columns != len(floating_points):
        raise ValueError(
            f"weights {weights.shape} must be (reference tokens {len(reference_points)}, floating tokens "
            f"{len(floating_points)}) and the floating grid {floating_grid} must hold the floating tokens"
        )
    if correspondences is None:
        correspondences, marked = weights @ floating_points, "attention-weighted mean"
    else:
        correspondences, marked = np.asarray(correspondences, dtype=float), "the model's correspondence"
    if correspondences.shape != reference_points.shape:
        raise ValueError(f"correspondences {correspondences.shape} must be one point per reference token")
    if queries.shape[1] != 2 or not len(queries):
        raise ValueError(f"queries must be (K, 2) points (x, y), got shape {queries.shape}")
    grid = floating_points.reshape(rows, columns, 2)
    # Half the distance between neighbouring tokens: the heatmap's squares tile the grid.
    half_x = (grid[0, 1, 0] - grid[0, 0, 0]) / 2 if columns > 1 else 0.5
    half_y = (grid[1, 0, 1] - grid[0, 0, 1]) / 2 if rows > 1 else 0.5
    extent = (grid[0, 0, 0] - half_x, grid[0, -1, 0] + half_x, grid[-1, 0, 1] + half_y, grid[0, 0, 1] - half_y)
    figure = new_figure(2.6 * (len(queries) + 1), 2.9)
    axes = figure.subplots(1, len(queries) + 1, squeeze=False)[0]
    picture = display_picture(reference)
    axes[0].imshow(picture, cmap="gray" if picture.ndim == 2 else None)
    axes[0].set_title("reference: query locations", fontsize=8)
    shown = display_picture(floating)
    for number, (query, ax) in enumerate(zip(queries, axes[1:]), start=1):
        token = int(np.argmin(np.linalg.norm(reference_points - query, axis=1)))
        colour = f"C{(number - 1) % 10}"
        axes[0].plot(*reference_points[token], "o", color=colour, markersize=5)
        axes[0].annotate(str(number), reference_points[token], color=colour, fontsize=8, xytext=(4, 4),
                         textcoords="offset points")  # fmt: skip
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        attention = weights[token].reshape(rows, columns)
        ax.imshow(attention, cmap="magma", alpha=0.6, extent=extent, interpolation="nearest")
        ax.plot(*correspondences[token], "+", color="cyan", markersize=10, markeredgewidth=2)
        if truth is not None:
            ax.plot(*geometry.apply(geometry.invert(truth), query[None])[0], "x", color="lime", markersize=8)
        ax.set_title(f"{number}: attention (max {attention.max():.2f})", fontsize=8)
        # The image's frame: squares of tokens over padding would widen it.
        ax.set_xlim(-0.5, floating.shape[1] - 0.5)
        ax.set_ylim(floating.shape[0] - 0.5, -0.5)
    for ax in axes:
        ax.axis("off")
    legend = f"+: {marked}" + ("; x: truth" if truth is not None else "")
    figure.suptitle(f"ACCR attention of reference locations over the floating image ({legend})", fontsize=8)
    return figure


__all__ = ["plot_attention"]
