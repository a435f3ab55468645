"""How well aligned are "aligned" BF/SHG pairs? The residual offset of each pair, and its share of a run's TRE.

A deformation test set's truth (docs/explanation/deformable.md) starts from the dataset's
alignment of the two modalities: where a pair's SHG image sits a pixel off its BF image, a
registration that aligns what the images show is scored a pixel off, however good it is. This
script measures both sides of that:

* **The pairs' own offsets**, without any CoMIR: per pair of ``--pairs`` folders (``BF/``,
  ``SHG/``; the pairs layout), the translation that best aligns the whole SHG image
  (``log1p``) to the BF image's stain density (``-log`` of the grey level), by Mattes mutual
  information in SimpleITK, from three samplings (bins 32/48/64, 25 % of the pixels): ``t``
  such that BF pixel ``x`` shows what SHG shows at ``x + t``; the spread over the three says how
  well it is determined.
* **The constant part of a run's error** (``--results``): per registration run whose total fields
  were saved (``deformable: {save_fields: true}``, folders ``<run>_<direction>_fields``), per
  source pair, the median over its cases of the median TRE, of the length of the case's mean
  residual (estimated minus true landmark position, floating px: the constant part), and of the
  median TRE once that mean is taken off (what is left: the deformable part), and the median TRE
  against the truth corrected by the pair's own offset as MI measured it (``tre_corrected``:
  reference landmark ``p`` is scored against where the truth sends ``p + t`` with a BF
  reference, ``p - t`` with an SHG one). Cases whose TRE is at least ``--failure-px`` (the
  cascade's wrong starts) are left out of the per-pair table; the per-run table has the median
  over every case, uncorrected and corrected (a failure counts as it is).

    .venv/bin/python benchmarks/pair_offsets.py --pairs ../shared/data/bfshg-dev ../shared/data/bfshg-shift \
        --results results

Prints the tables (markdown): the pairs' offsets; with ``--results`` the per-pair and per-run ones.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import tifffile

from comir.deformation.landmarks import map_points
from comir.deformation.sitk import read_field
from comir.testset.deformation import read_truth

# Histogram bins and sampling seeds of the three MI registrations of a pair.
SAMPLINGS = ((32, 1), (48, 2), (64, 3))


def _image(array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    image.SetSpacing((1.0, 1.0))
    return image


def pair_offset(fixed: np.ndarray, moving: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The shift ``t`` (x, y) with ``fixed(x) ~ moving(x + t)`` by Mattes MI: mean, spread over :data:`SAMPLINGS`.

    Parameters
    ----------
    fixed, moving : numpy.ndarray
        ``(H, W)`` single-channel images of one size (any two modalities).

    Returns
    -------
    mean, spread : numpy.ndarray
        The mean and standard deviation of ``t`` over the three registrations, pixels.
    """
    offsets = []
    for bins, seed in SAMPLINGS:
        method = sitk.ImageRegistrationMethod()
        method.SetNumberOfThreads(1)  # reproducible sums
        method.SetMetricAsMattesMutualInformation(bins)
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentage(0.25, seed)
        method.SetInterpolator(sitk.sitkLinear)
        method.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-4, 300)
        method.SetShrinkFactorsPerLevel([2, 1])
        method.SetSmoothingSigmasPerLevel([1.0, 0.0])
        method.SetInitialTransform(sitk.TranslationTransform(2), inPlace=True)
        offsets.append(method.Execute(_image(fixed), _image(moving)).GetParameters())
    offsets = np.array(offsets)
    return offsets.mean(axis=0), offsets.std(axis=0)


def stain_density(bright_field: np.ndarray) -> np.ndarray:
    """``-log`` of a bright-field image's grey level (relative to its brightest): bright where the tissue is stained."""
    grey = bright_field.mean(axis=-1) if bright_field.ndim == 3 else bright_field
    grey = grey.astype(np.float64)
    return -np.log((grey + 1.0) / (grey.max() + 1.0))


def pair_offsets(roots: list[Path]) -> pd.DataFrame:
    """:func:`pair_offset` of SHG against BF for every pair of the folders, one row per pair."""
    rows = []
    for root in roots:
        for path in sorted(Path(root, "BF").glob("*.tif")):
            bright_field = tifffile.imread(path)
            shg = tifffile.imread(Path(root, "SHG", path.name)).astype(np.float64)
            mean, spread = pair_offset(stain_density(bright_field), np.log1p(shg - shg.min()))
            rows.append({"pair": path.stem, "t_x": mean[0], "t_y": mean[1], "length": float(np.hypot(*mean)),
                         "spread": float(np.hypot(*spread))})  # fmt: skip
    return pd.DataFrame(rows)


def residual_split(
    field: np.ndarray, truth: np.ndarray, points: np.ndarray, offset: tuple[float, float] = (0.0, 0.0)
) -> dict[str, float]:
    """A case's landmark errors split into their mean (the constant part) and the rest, and against a corrected truth.

    Parameters
    ----------
    field, truth : numpy.ndarray
        ``(H, W, 2)`` estimated and true total fields on the reference grid.
    points : numpy.ndarray
        ``(N, 2)`` landmarks (x, y) on the reference grid (at least one).
    offset : tuple of float, optional
        ``(x, y)``: where, relative to a landmark on the reference grid, the floating image's
        content truly corresponds (the pair's own offset, signed for the direction). Default 0.

    Returns
    -------
    dict
        ``tre`` (the median TRE), ``bias_x``, ``bias_y`` (the mean residual, floating px),
        ``bias`` (its length), ``rest`` (the median TRE with the mean residual taken off) and
        ``tre_corrected`` (the median distance to where the truth sends ``points + offset``).
    """
    estimated = map_points(points, field)
    residual = estimated - map_points(points, truth)
    mean = residual.mean(axis=0)
    corrected = estimated - map_points(points + np.asarray(offset, dtype=np.float64), truth)
    return {"tre": float(np.median(np.hypot(*residual.T))), "bias_x": float(mean[0]), "bias_y": float(mean[1]),
            "bias": float(np.hypot(*mean)), "rest": float(np.median(np.hypot(*(residual - mean).T))),
            "tre_corrected": float(np.median(np.hypot(*corrected.T)))}  # fmt: skip


def case_splits(results: Path, offsets: pd.DataFrame) -> pd.DataFrame:
    """:func:`residual_split` of every saved case field under ``results``, the truth corrected by ``offsets``.

    Parameters
    ----------
    results : pathlib.Path
        A results folder.
    offsets : pandas.DataFrame
        :func:`pair_offsets` of the pairs the test sets were cut from (``t``: SHG against BF).

    Returns
    -------
    pandas.DataFrame
        One row per case and run: ``dataset``, ``variant``, ``run``, ``direction``, ``pair``, ``case``
        and the split's columns.
    """
    shift = offsets.set_index("pair")[["t_x", "t_y"]]
    rows = []
    for folder in sorted(results.glob("*/*/registration/*/*_fields")):
        dataset, source, testset = folder.parts[-5], folder.parts[-4], folder.parts[-2]
        stem = folder.name[: -len("_fields")]
        run, direction = stem[: -len("_B_to_A")], stem[-len("B_to_A") :]  # both directions have 6 letters
        image_dir = results / dataset / "testsets" / testset / "images"
        cases = pd.read_csv(results / dataset / "testsets" / testset / "cases.csv").set_index("case")
        # BF pixel x shows what SHG shows at x + t: with a BF (A) reference the content is at p + t.
        sign = 1.0 if direction.endswith("_to_A") else -1.0
        for path in sorted(folder.glob("*_field.h5")):
            case = path.name[: -len("_field.h5")]
            pair = cases.loc[case, "image_id"]
            truth, points = read_truth(image_dir, case)
            split = residual_split(read_field(path), truth, points, tuple(sign * shift.loc[pair].to_numpy()))
            rows.append({"dataset": dataset, "variant": source, "run": run, "direction": direction, "pair": pair,
                         "case": case, **split})  # fmt: skip
    return pd.DataFrame(rows)


def pair_medians(splits: pd.DataFrame, failure_px: float) -> pd.DataFrame:
    """The medians of :func:`case_splits` per run, direction and pair over the cases with a TRE below ``failure_px``."""
    kept = splits[splits["tre"] < failure_px]
    keys = ["dataset", "variant", "run", "direction", "pair"]
    medians = kept.groupby(keys)[["tre", "bias_x", "bias_y", "bias", "rest", "tre_corrected"]].median()
    return medians.assign(cases=kept.groupby(keys).size()).reset_index()


def run_medians(splits: pd.DataFrame) -> pd.DataFrame:
    """Per run and direction over all cases: median TRE against the truth and the corrected one, cases < 1 px."""
    keys = ["dataset", "variant", "run", "direction"]
    groups = splits.groupby(keys)
    return pd.DataFrame({
        "cases": groups.size(),
        "tre": groups["tre"].median(),
        "below_1px": groups["tre"].apply(lambda t: int((t < 1).sum())),
        "tre_corrected": groups["tre_corrected"].median(),
        "below_1px_corrected": groups["tre_corrected"].apply(lambda t: int((t < 1).sum())),
    }).reset_index()  # fmt: skip


def main() -> None:
    """The command: the pairs' offsets, then (``--results``) the runs' constant parts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="+", type=Path, required=True, help="pairs folders (BF/, SHG/)")
    parser.add_argument("--results", type=Path, help="a results folder with saved case fields")
    parser.add_argument("--failure-px", type=float, default=30.72, help="cases at or above this TRE are left out")
    args = parser.parse_args()
    offsets = pair_offsets(args.pairs)
    print(offsets.round(2).to_markdown(index=False))
    if args.results is not None:
        splits = case_splits(args.results, offsets)
        print()
        print(pair_medians(splits, args.failure_px).round(2).to_markdown(index=False))
        print()
        print(run_medians(splits).round(2).to_markdown(index=False))


if __name__ == "__main__":
    main()
