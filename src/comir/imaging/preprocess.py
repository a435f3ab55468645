"""Turn a stored image into the network's input: float32, channel-first, in [0, 1].

And the statistics of network inputs (:func:`input_statistics`) that the model file records per
modality and the apply stage checks new images against.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from comir.io import InputError, channels_of, read_image, to_float01

if TYPE_CHECKING:
    import pandas as pd

SLOTS = ("A", "B")  # the two modality slots of every dataset


def rotation_crop(patch_size: int) -> int:
    """Side of the crop that a patch is cut from so that any rotation adds no padding.

    A square of side ``P`` rotated by any angle fits in a square of side
    ``P * sqrt 2``; one more pixel on each side covers the interpolation kernel.

    Parameters
    ----------
    patch_size : int
        Side ``P`` of the patch, px.

    Returns
    -------
    int
        ``ceil(P * sqrt 2) + 2`` px.
    """
    return int(math.ceil(patch_size * math.sqrt(2))) + 2


def prepare_image(
    image: np.ndarray,
    channels: int,
    log1p: bool,
    name: str = "image",
    max_value: float | None = None,
    stain_normalization: str | None = None,
    percentile_scaling: float | None = None,
) -> np.ndarray:
    """(H, W[, C]) stored image -> (C, H, W) float32.

    Values are divided by the modality's full scale (``max_value``, else the
    integer type's maximum; floats as they are), so full intensity is 1.
    ``stain_normalization`` (RGB only; :mod:`comir.imaging.stain`): "macenko"
    re-renders an H&E image with reference stains, "deconvolution" turns it into
    per-image normalised haematoxylin, eosin and residual channels.  ``percentile_scaling``
    ``q`` divides the image by its own ``q``-th percentile (over all pixels and channels) and
    clips at 1, so a dim acquisition (low gain, faint signal) reaches the network at the same
    scale as a bright one; an image whose percentile is 0 (blank) is left as it is.  ``log1p`` compresses the
    heavy-tailed intensities of SHG-like images (paper: SHG gets log(1 + x));
    it applies to ``max(x, 0)`` (a negative value below -1 has no logarithm)
    and the result is rescaled by log(2).

    Parameters
    ----------
    image : numpy.ndarray
        The stored ``(H, W)`` or ``(H, W, C)`` image.
    channels : int
        The channel count the configuration expects.
    log1p : bool
        Whether to apply ``log(1 + max(x, 0)) / log(2)`` last.
    name : str, optional
        The image's name in error messages. Default ``"image"``.
    max_value : float or None, optional
        The stored value of full intensity; None: the integer type's maximum (floats as they are). Default None.
    stain_normalization : str or None, optional
        ``"macenko"`` or ``"deconvolution"`` (RGB only; :func:`comir.imaging.stain.apply_stain_normalization`),
        or None. Default None.
    percentile_scaling : float or None, optional
        Percentile ``q`` in (0, 100] to scale by (:func:`scale_by_percentile`), or None. Default None.

    Returns
    -------
    numpy.ndarray
        ``(C, H, W)`` float32, contiguous.

    Raises
    ------
    comir.io.InputError
        If the channel count differs from ``channels``, or a pixel is NaN or infinite (naming the image).
    ValueError
        If ``stain_normalization`` is unknown or the image is not RGB for it, or ``percentile_scaling`` is
        outside (0, 100].
    """
    found = channels_of(image)
    if found != channels:
        raise InputError(f"{name} has {found} channel(s), the configuration expects {channels}")
    data = to_float01(image, max_value)
    if not np.isfinite(data).all():
        raise InputError(f"{name} has NaN or infinite pixels")
    if stain_normalization is not None:
        from comir.imaging.stain import apply_stain_normalization

        data = apply_stain_normalization(data, stain_normalization)
    if percentile_scaling is not None:
        data = scale_by_percentile(data, percentile_scaling)
    if log1p:
        data = np.log1p(np.maximum(data, 0.0)) / np.log(2.0)
    if data.ndim == 2:
        data = data[None]
    else:
        data = np.moveaxis(data, -1, 0)
    return np.ascontiguousarray(data, dtype=np.float32)


def scale_by_percentile(data: np.ndarray, percentile: float) -> np.ndarray:
    """``data`` (in [0, 1]) divided by its ``percentile``-th percentile, clipped to [0, 1]; blank: as it is.

    Parameters
    ----------
    data : numpy.ndarray
        Float image in [0, 1], any shape; the percentile is over all its values.
    percentile : float
        The percentile, in (0, 100].

    Returns
    -------
    numpy.ndarray
        float32 of ``data``'s shape in [0, 1]; ``data`` itself when the percentile is 0 or less.

    Raises
    ------
    ValueError
        If ``percentile`` is not in (0, 100].
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile_scaling must be in (0, 100], got {percentile}")
    level = float(np.percentile(data, percentile))
    if level <= 0:
        return data
    return np.clip(data / np.float32(level), 0.0, 1.0).astype(np.float32)


def prepare_modality_image(image: np.ndarray, modality: Mapping[str, Any], name: str) -> np.ndarray:
    """:func:`prepare_image` with a modality's configuration (its keys of the same names).

    Parameters
    ----------
    image : numpy.ndarray
        The stored ``(H, W)`` or ``(H, W, C)`` image.
    modality : Mapping[str, Any]
        The modality's section: ``channels`` (required), ``log1p``, ``max_value``, ``stain_normalization``,
        ``percentile_scaling`` (optional).
    name : str
        The image's name in error messages.

    Returns
    -------
    numpy.ndarray
        ``(C, H, W)`` float32.

    Raises
    ------
    comir.io.InputError
        As :func:`prepare_image`.
    """
    return prepare_image(
        image,
        modality["channels"],
        modality.get("log1p", False),
        name,
        modality.get("max_value"),
        modality.get("stain_normalization"),
        modality.get("percentile_scaling"),
    )


def load_split(
    pairs: "pd.DataFrame", split: str, modalities: Mapping[str, Mapping[str, Any]]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Network-ready (A, B) arrays of every pair in one split of a pairs table.

    Parameters
    ----------
    pairs : pandas.DataFrame
        A pairs table with ``split``, ``path_A`` and ``path_B`` columns.
    split : str
        The split to load (``"train"``, ``"val"``, ``"test"``).
    modalities : Mapping[str, Mapping[str, Any]]
        The modality sections by slot (``A``, ``B``), for :func:`prepare_modality_image`.

    Returns
    -------
    list[tuple[numpy.ndarray, numpy.ndarray]]
        Per pair of the split, in the table's order, its ``(C, H, W)`` float32 A and B arrays.

    Raises
    ------
    comir.io.InputError
        If an image cannot be read or does not fit its modality (named by its path).
    """
    rows = pairs[pairs["split"] == split]
    return [
        tuple(
            prepare_modality_image(read_image(row[f"path_{slot}"]), modalities[slot], row[f"path_{slot}"])
            for slot in SLOTS
        )
        for _, row in rows.iterrows()
    ]


def check_image_sizes(pairs: "pd.DataFrame", splits: Sequence[str], min_size: int, purpose: str) -> None:
    """Stop with every image of ``splits`` smaller than ``min_size`` px per side, named.

    Uses the ``height`` and ``width`` columns that prepare_data records in the pairs table,
    so each stage checks what it needs before any work (training crops, test-set patches).

    Parameters
    ----------
    pairs : pandas.DataFrame
        A pairs table with ``id``, ``split``, ``path_A``, ``height`` and ``width`` columns.
    splits : Sequence[str]
        The splits to check.
    min_size : int
        The least side, px.
    purpose : str
        What needs the size, for the message.

    Raises
    ------
    comir.io.InputError
        If any image is smaller; the message lists each (by its A path and id).
    """
    rows = pairs[pairs["split"].isin(list(splits))]
    small = rows[np.minimum(rows["height"], rows["width"]) < min_size]
    if len(small):
        listed = "\n  ".join(
            f"{row.path_A} and its partner (id {row.id!r}) are {row.height}x{row.width} (HxW)"
            for row in small.itertuples()
        )
        raise InputError(
            f"{len(small)} {'/'.join(splits)} image(s) are smaller than the {min_size} px that {purpose} needs:"
            f"\n  {listed}"
        )


# Percentiles of the network input recorded per modality in the model file (``input_statistics``),
# with its minimum and maximum; the apply stage compares new images with them (comir.apply).
INPUT_PERCENTILES = (0.1, 50.0, 99.9)
# Pixels (over all images of a modality, channels pooled) behind those percentiles: an even stride through each
# image, so that the statistics of many large images stay cheap; the minimum and maximum use every pixel.
STATISTICS_SAMPLES = 1 << 22


def input_statistics(images: Sequence[np.ndarray], valid: Sequence[np.ndarray | None] | None = None) -> dict:
    """The percentiles :data:`INPUT_PERCENTILES` (``p0.1``, ``p50``, ``p99.9``), ``min`` and ``max`` of network inputs.

    Plain floats, so the model file still loads with ``weights_only``.  The percentiles use an even stride of
    at most :data:`STATISTICS_SAMPLES` pixels in all; the minimum and maximum use every pixel.

    Parameters
    ----------
    images : Sequence[numpy.ndarray]
        Prepared ``(C, H, W)`` arrays as :func:`prepare_modality_image` returns them (after scaling, stain
        normalisation, log1p), channels pooled.
    valid : Sequence[numpy.ndarray or None] or None, optional
        Per image an ``(H, W)`` bool mask of the pixels to use (None, or an all-False mask: all). Default None.

    Returns
    -------
    dict
        ``{"p0.1": float, "p50": float, "p99.9": float, "min": float, "max": float}``.

    Raises
    ------
    ValueError
        If ``valid`` is given with a length other than ``images``'s, or ``images`` is empty.
    """
    valid = [None] * len(images) if valid is None else list(valid)
    per_image = max(1, STATISTICS_SAMPLES // max(1, len(images)))
    samples, low, high = [], math.inf, -math.inf
    for image, mask in zip(images, valid, strict=True):
        values = np.asarray(image)[:, mask] if mask is not None and mask.any() else np.asarray(image)
        values = values.ravel()
        low, high = min(low, float(values.min())), max(high, float(values.max()))
        samples.append(values[:: -(-values.size // per_image)])  # at most per_image values
    levels = np.percentile(np.concatenate(samples), INPUT_PERCENTILES)
    return {
        **{f"p{q:g}": float(v) for q, v in zip(INPUT_PERCENTILES, levels, strict=True)},
        "min": low,
        "max": high,
    }


def modality_statistics(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, float]]:
    """:func:`input_statistics` per modality slot of prepared training pairs (``load_split``), for the model file.

    Parameters
    ----------
    pairs : Sequence[tuple[numpy.ndarray, numpy.ndarray]]
        Prepared ``(A, B)`` arrays of each pair, as :func:`load_split` returns them.

    Returns
    -------
    dict[str, dict[str, float]]
        Slot (``A``, ``B``) -> its :func:`input_statistics`.
    """
    return {slot: input_statistics([pair[index] for pair in pairs]) for index, slot in enumerate(SLOTS)}
