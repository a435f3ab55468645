"""The cases a registration run leaves unregistered, shown: patches, each network's CoMIRs and statistics.

For a finished run: the cases of one dataset and test set that ``--run`` on ``--source`` (a
variant, e.g. an ensemble, or ``original``) does not register within ``--fraction`` of the width
in at least one direction. One row per case: the reference patches of both modalities and, per
network variant of ``--networks``, the CoMIRs of both (as the pool's figure of the cores draws
them), titled with the case's core, stratum and error per direction. Printed: the same cases
with :func:`comir.evaluate.pools.patch_statistics` per network (signal coverage, percentiles,
optical density, the A/B CoMIR correlation), and the medians of those statistics over the
registered cases for comparison. No registration is run.

    .venv/bin/python benchmarks/show_cases.py --results results --dataset slides-X --source ensemble \
        --networks default augmented --out docs/results/img/slides-x-unregistered.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from comir.evaluate.figures import display_picture, new_figure, save_figure
from comir.evaluate.pools import comir_picture, patch_statistics
from comir.io import read_image

DIRECTIONS = ("A_to_B", "B_to_A")


def errors_per_direction(folder: Path, run: str, fraction: float) -> pd.DataFrame:
    """Per case (index): its core and stratum, the error per direction and whether each is within ``fraction``."""
    tables = {d: pd.read_csv(folder / f"{run}_{d}.csv").set_index("case") for d in DIRECTIONS}
    first = tables[DIRECTIONS[0]]
    frame = first[["image_id", "stratum", "width"]].copy()
    for direction, table in tables.items():
        frame[f"error_{direction}"] = table["error_px"]
        frame[f"right_{direction}"] = (table["status"] == "ok") & (table["error_px"] < fraction * table["width"])
    return frame


def statistics(images: Path, comirs: dict[str, Path], cases: pd.Index) -> pd.DataFrame:
    """:func:`patch_statistics` of each case's reference patches, per network (columns ``<stat>_<network>``)."""
    rows = []
    for case in cases:
        a, b = (read_image(images / f"{case}_{slot}_ref.tif") for slot in ("A", "B"))
        row = {"case": case}
        for network, folder in comirs.items():
            comir_a, comir_b = (read_image(folder / f"{case}_{slot}_ref.tif") for slot in ("A", "B"))
            measured = patch_statistics(a, b, comir_a, comir_b)
            row.update({key: value for key, value in measured.items() if key != "comir_correlation"})
            row[f"comir_correlation_{network}"] = measured["comir_correlation"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("case")


def plot(frame: pd.DataFrame, images: Path, comirs: dict[str, Path], path: Path) -> None:
    """One row per case: the two reference patches, then each network's CoMIRs of them."""
    columns = 2 + 2 * len(comirs)
    figure = new_figure(1.6 * columns, 1.8 * len(frame) + 0.4)
    axes = figure.subplots(len(frame), columns, squeeze=False)
    titles = ["A (reference)", "B (reference)"] + [f"{n}: CoMIR of {s}" for n in comirs for s in ("A", "B")]
    for r, (case, row) in enumerate(frame.iterrows()):
        pictures = [display_picture(read_image(images / f"{case}_{slot}_ref.tif")) for slot in ("A", "B")]
        pictures += [comir_picture(read_image(folder / f"{case}_{slot}_ref.tif"))
                     for folder in comirs.values() for slot in ("A", "B")]  # fmt: skip
        for c, picture in enumerate(pictures):
            ax = axes[r, c]
            ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=7)
        errors = ", ".join(f"{d} {row[f'error_{d}']:.0f} px" for d in DIRECTIONS)
        axes[r, 0].set_ylabel(f"{case}\n{row['image_id']} ({row['stratum']})\n{errors}", fontsize=6)
    save_figure(figure, path)


def main() -> None:
    """Print the unregistered cases with their statistics and draw them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--testset", default="main")
    parser.add_argument("--source", required=True, help="whose results decide: a variant or original")
    parser.add_argument("--run", default="cascade")
    parser.add_argument("--networks", nargs="+", required=True, help="variants whose CoMIRs are shown")
    parser.add_argument("--fraction", type=float, default=0.05)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    root = args.results / args.dataset
    frame = errors_per_direction(root / args.source / "registration" / args.testset, args.run, args.fraction)
    images = root / "testsets" / args.testset / "images"
    comirs = {network: root / network / "comir" / args.testset / "images" for network in args.networks}
    unregistered = ~frame[[f"right_{d}" for d in DIRECTIONS]].all(axis=1)
    measured = statistics(images, comirs, frame.index)
    pd.set_option("display.width", 200)
    print(f"{args.run} on {args.source}: {int(unregistered.sum())} of {len(frame)} cases not within "
          f"{args.fraction:g} of the width in both directions")  # fmt: skip
    shown = frame.loc[unregistered].join(measured)
    print(shown.drop(columns=["width"]).round(3).to_string())
    print("medians over the registered cases, per core:")
    registered = frame.loc[~unregistered, ["image_id"]].join(measured)
    print(registered.groupby("image_id").median(numeric_only=True).round(3).to_string())
    if unregistered.any():
        args.out.parent.mkdir(parents=True, exist_ok=True)
        plot(frame.loc[unregistered], images, comirs, args.out)
        print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
