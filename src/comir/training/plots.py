"""The training's loss history: a table and a plot of training and validation loss per step."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from comir.io import atomic_path, write_csv


def write_history(history: pd.DataFrame, csv_path: Path, plot_path: Path) -> None:
    """The loss history as CSV and as a plot of training and validation loss per step.

    Parameters
    ----------
    history : pandas.DataFrame
        One row per epoch (:func:`comir.training.loop.train`), with at least the columns ``step``,
        ``train_loss`` and ``val_loss``.
    csv_path : pathlib.Path
        Where the table is written (all of ``history``'s columns).
    plot_path : pathlib.Path
        Where the plot is written (atomically; the format from the suffix, 120 dpi).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_csv(csv_path, history)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(history["step"], history["train_loss"], marker="o", label="training (augmented, C4)")
    ax.plot(history["step"], history["val_loss"], marker="s", label="validation (fixed patches)")
    ax.set_xlabel("optimisation step")
    ax.set_ylabel("contrastive loss (InfoNCE + activation decay)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(plot_path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
