"""The outputs of one registered pair, written atomically into a new folder (:mod:`comir.apply`, step 6).

``transform.csv``, ``transform.tfm``, ``warped.tif``, ``overlay.png``, the CoMIRs and their
masks, and with a deformable stage its field, transform, warped image and overlay
(:func:`write_outputs`); an existing output is never overwritten (:func:`check_new_outputs`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from comir import geometry
from comir.apply.pair import PairRegistration
from comir.deformation.affine import compose_affine
from comir.deformation.sitk import composite_with_affine, write_field
from comir.deformation.warp import warp_image
from comir.geometry import MATRIX_KEYS
from comir.io import InputError, atomic_path, to_uint8, write_csv, write_png, write_text, write_tiff
from comir.register import to_single_channel

#: The outputs of a successful deformable stage (:func:`write_deformable`), in the order written.
DEFORMABLE_OUTPUTS = (
    "deformable_field.h5",
    "deformable_transform.h5",
    "deformable_warped.tif",
    "deformable_overlay.png",
)
OUTPUTS = (
    "transform.csv",
    "transform.tfm",
    "warped.tif",
    "overlay.png",
    "comir_reference.tif",
    "comir_floating.tif",
    "mask_reference.png",
    "mask_floating.png",
    *DEFORMABLE_OUTPUTS,
)
# Side of the checkerboard squares of the overlay, as a fraction of the reference's shorter side.
CHECKER_FRACTION = 1 / 8


def warp_to_reference(floating: np.ndarray, matrix: np.ndarray, reference_shape: tuple[int, int]) -> np.ndarray:
    """``floating`` (H, W[, C], any real dtype) resampled into the reference frame (bilinear, 0 outside).

    Parameters
    ----------
    floating : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` floating image, any real dtype (integers are rounded and clipped back).
    matrix : numpy.ndarray
        2x3 affine map sending floating pixels to reference pixels.
    reference_shape : tuple[int, int]
        ``(H, W)`` of the reference.

    Returns
    -------
    numpy.ndarray
        The warped image: the reference's height and width, the floating image's dtype and channels.
    """
    import cv2

    floating = np.asarray(floating)
    size = (int(reference_shape[1]), int(reference_shape[0]))
    native = floating.dtype in (np.uint8, np.uint16, np.int16, np.float32, np.float64)
    data = floating if native else floating.astype(np.float64)
    planes = [data] if data.ndim == 2 else [np.ascontiguousarray(data[..., c]) for c in range(data.shape[2])]
    warped = [
        cv2.warpAffine(p, np.asarray(matrix, dtype=np.float64), size, flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        for p in planes
    ]  # fmt: skip
    out = warped[0] if data.ndim == 2 else np.stack(warped, axis=-1)
    return out if native else in_dtype(out, floating.dtype)


def in_dtype(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A resampled image back in an image's ``dtype``: integers rounded and clipped to its range.

    Parameters
    ----------
    image : numpy.ndarray
        The resampled values (float).
    dtype : numpy.dtype
        The original image's dtype.

    Returns
    -------
    numpy.ndarray
        ``image`` as ``dtype``.
    """
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        image = np.clip(np.rint(image), info.min, info.max)
    return np.asarray(image).astype(dtype)


def warp_by_field(floating: np.ndarray, field: np.ndarray) -> np.ndarray:
    """``floating`` resampled on the reference grid by a backward field (bilinear, 0 outside), in its own dtype.

    :func:`comir.deformation.warp.warp_image` in the floating image's dtype (:func:`in_dtype`):
    the deformable counterpart of :func:`warp_to_reference`.

    Parameters
    ----------
    floating : numpy.ndarray
        ``(h, w)`` or ``(h, w, C)`` floating image, any real dtype.
    field : numpy.ndarray
        ``(H, W, 2)`` total field on the reference grid, into the floating image.

    Returns
    -------
    numpy.ndarray
        ``(H, W[, C])``, the floating image's dtype.
    """
    floating = np.asarray(floating)
    return in_dtype(warp_image(floating, field), floating.dtype)


def itk_transform_text(matrix: np.ndarray) -> str:
    """An ITK transform file (``.tfm``) of the resampling transform of ``matrix`` (floating -> reference).

    ITK resamples a moving image at ``T(p)`` for every fixed point ``p``, so
    ``T`` is the inverse of ``matrix``: reference pixel -> floating pixel, in
    pixel units (spacing 1, origin 0, ``x`` = column).  Written as an
    ``AffineTransform_double_2_2`` with centre 0.

    Parameters
    ----------
    matrix : numpy.ndarray
        2x3 affine map from floating to reference pixels.

    Returns
    -------
    str
        The file's text, ``Parameters`` holding the inverse's 2x2 part row by row, then its translation.
    """
    inverse = geometry.invert(np.asarray(matrix, dtype=float))
    parameters = [*inverse[:, :2].ravel(), *inverse[:, 2]]
    return (
        "#Insight Transform File V1.0\n"
        "#Transform 0\n"
        "Transform: AffineTransform_double_2_2\n"
        f"Parameters: {' '.join(repr(float(v)) for v in parameters)}\n"
        "FixedParameters: 0 0\n"
    )


def _grey(image: np.ndarray) -> np.ndarray:
    """A display version (uint8) of an image of any channels."""
    single, _ = to_single_channel(np.asarray(image, dtype=np.float32))
    return to_uint8(single)


def overlay(
    reference: np.ndarray,
    floating: np.ndarray,
    comirs: tuple[np.ndarray, np.ndarray],
    matrix: np.ndarray,
    comir_matrix: np.ndarray | None = None,
    before: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """A 2 x 2 RGB panel: colour overlay of the originals and checkerboard of the CoMIRs, before and after.

    "Before" places the floating image on the reference grid as it is (the
    identity; or by ``before``); "after" warps it by ``matrix`` (the CoMIRs by ``comir_matrix``,
    their grids' transform, by default ``matrix``).  A transform is a 2x3 floating -> reference
    matrix or a total backward field on the reference grid (``(H, W, 2)``, a deformable
    result's).  Overlay: reference in
    magenta, floating in green (grey where they agree).  Checkerboard: squares
    of the reference CoMIR and the floating CoMIR alternate; it is resized to
    the reference's size when the CoMIRs are at another resolution.

    Parameters
    ----------
    reference : numpy.ndarray
        The reference image as stored, ``(H, W[, C])``.
    floating : numpy.ndarray
        The floating image as stored.
    comirs : tuple[numpy.ndarray, numpy.ndarray]
        The reference and floating CoMIRs, ``(C, h, w)`` each, at the working resolution.
    matrix : numpy.ndarray
        2x3 floating -> reference map between the original images' grids.
    comir_matrix : numpy.ndarray or None, optional
        The same transform between the CoMIRs' grids; None: ``matrix``. Default None.
    before : tuple of numpy.ndarray or None, optional
        The transforms of the "before" row, between the originals' and the CoMIRs' grids; None:
        the identity. Default None.

    Returns
    -------
    numpy.ndarray
        ``(2 H, 2 W, 3)`` uint8: rows before and after, columns overlay and checkerboard.
    """
    import cv2

    height, width = reference.shape[:2]
    ref_grey = _grey(reference)
    ref_comir = _grey(np.moveaxis(comirs[0], 0, -1))
    flo_grey = _grey(floating)
    flo_comir = _grey(np.moveaxis(comirs[1], 0, -1))
    comir_shape = ref_comir.shape[:2]
    side = max(8, int(min(comir_shape) * CHECKER_FRACTION))
    yy, xx = np.mgrid[: comir_shape[0], : comir_shape[1]]
    checker = ((yy // side + xx // side) % 2).astype(bool)
    rows = []
    transforms = (matrix, matrix if comir_matrix is None else comir_matrix)
    for image_transform, comir_transform in (before or (geometry.IDENTITY, geometry.IDENTITY), transforms):
        moved = _moved(flo_grey, image_transform, (height, width))
        moved_comir = _moved(flo_comir, comir_transform, comir_shape)
        colour = np.stack([ref_grey, moved, ref_grey], axis=-1)
        board = np.where(checker, ref_comir, moved_comir)
        if board.shape != (height, width):
            board = cv2.resize(board, (width, height), interpolation=cv2.INTER_NEAREST)
        rows.append(np.concatenate([colour, np.repeat(board[..., None], 3, axis=-1)], axis=1))
    return np.concatenate(rows, axis=0)


def _moved(image: np.ndarray, transform: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``image`` on the reference grid ``shape`` by a 2x3 matrix or a total backward field (its dtype)."""
    transform = np.asarray(transform)
    if transform.ndim == 3:
        return warp_by_field(image, transform)
    return warp_to_reference(image, transform, shape)


def peak_memory_mb() -> float:
    """The peak resident memory of this process so far (MiB; ``ru_maxrss``, which Linux gives in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def check_new_outputs(out_dir: str | Path) -> Path:
    """``out_dir`` as a Path; :class:`InputError` if it cannot be the outputs' folder.

    Refused: an existing file (not a folder) at ``out_dir`` or above it, a folder that cannot be written
    to, or one that already holds an output (nothing is overwritten).

    Parameters
    ----------
    out_dir : str or pathlib.Path
        The outputs' folder; it need not exist yet.

    Returns
    -------
    pathlib.Path
        ``out_dir``.

    Raises
    ------
    comir.io.InputError
        If ``out_dir`` cannot be the outputs' folder.
    """
    out_dir = Path(out_dir)
    existing_above = next((p for p in (out_dir, *out_dir.parents) if p.exists()), None)
    if existing_above is not None and not existing_above.is_dir():
        where = "" if existing_above == out_dir else f" (in the path of {out_dir})"
        raise InputError(f"{existing_above} is a file, not a folder{where}; choose a new output folder")
    if existing_above is not None and not os.access(existing_above, os.W_OK | os.X_OK):
        raise InputError(f"cannot write to {existing_above}; choose an output folder you can write to")
    existing = [name for name in OUTPUTS if (out_dir / name).exists()]
    if existing:
        raise InputError(f"{out_dir} already holds {', '.join(existing)}; choose a new output folder")
    return out_dir


def write_outputs(
    out_dir: str | Path, pair: PairRegistration, reference_path: str | Path, floating_path: str | Path, method: str
) -> list[Path]:
    """Write the outputs of one pair into ``out_dir`` (created; existing outputs are an error). Returns them.

    The CoMIRs, the masks used, and, for a registered pair, ``warped.tif``, ``transform.tfm`` and
    ``overlay.png``; where its deformable stage succeeded (:func:`write_deformable`), its field,
    transform, warped image and overlay; ``transform.csv`` last, so that its presence means the
    pair is done. The record gains the stage's columns
    (:meth:`comir.apply.pair.PairRegistration.deformable_columns`) before ``message``.

    Parameters
    ----------
    out_dir : str or pathlib.Path
        The outputs' folder (:func:`check_new_outputs`).
    pair : comir.apply.pair.PairRegistration
        What :func:`comir.apply.pair.register_pair` computed.
    reference_path : str or pathlib.Path
        The reference image, recorded in ``transform.csv``.
    floating_path : str or pathlib.Path
        The floating image, recorded in ``transform.csv``.
    method : str
        The registration method, recorded in ``transform.csv``.

    Returns
    -------
    list[pathlib.Path]
        The files written, in order.

    Raises
    ------
    comir.io.InputError
        If ``out_dir`` cannot be the outputs' folder.
    """
    out_dir = check_new_outputs(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = pair.result
    reference_valid, floating_valid = pair.valid_fractions()
    row = {
        "reference": str(reference_path),
        "floating": str(floating_path),
        "method": method,
        "status": result.status,
        "metric": result.metric,
        "confidence": pair.confidence,
        "seconds": result.seconds,
        **{k: v for k, v in zip(MATRIX_KEYS, np.asarray(result.matrix).ravel())},
        "angle_deg": math.degrees(float(geometry.rotation_angle(result.matrix))),
        "reference_valid": reference_valid,
        "floating_valid": floating_valid,
        "peak_memory_mb": peak_memory_mb(),
        **pair.deformable_columns(),
        "message": result.message,
    }
    written = []

    def keep(path: Path) -> Path:
        written.append(path)
        return path

    for name, comir in (("comir_reference.tif", pair.comirs[0]), ("comir_floating.tif", pair.comirs[1])):
        write_tiff(keep(out_dir / name), comir[0] if comir.shape[0] == 1 else np.moveaxis(comir, 0, -1))
    for name, mask in (("mask_reference.png", pair.masks[0]), ("mask_floating.png", pair.masks[1])):
        if mask is not None:
            write_png(keep(out_dir / name), mask.astype(np.uint8) * 255)
    if result.ok:
        height, width = pair.reference.shape[:2]
        write_tiff(keep(out_dir / "warped.tif"), warp_to_reference(pair.floating, result.matrix, (height, width)))
        write_text(keep(out_dir / "transform.tfm"), itk_transform_text(result.matrix))
        panel = overlay(pair.reference, pair.floating, pair.comirs, result.matrix, pair.comir_matrix)
        write_png(keep(out_dir / "overlay.png"), panel)
    if pair.deformed is not None and pair.deformed.ok:
        written += write_deformable(out_dir, pair)
    write_csv(keep(out_dir / "transform.csv"), pd.DataFrame([row]))  # last: its presence means the pair is done
    return written


def write_deformable(out_dir: Path, pair: PairRegistration) -> list[Path]:
    """Write the outputs of a pair's successful deformable stage into ``out_dir``. Returns them.

    ``deformable_field.h5``: the total field as a SimpleITK DisplacementFieldTransform file
    (:func:`comir.deformation.sitk.write_field`: reference -> floating points, pixel units, as
    ``transform.tfm``); ``deformable_transform.h5``: the same mapping as a CompositeTransform of
    the rigid result's affine transform and the residual field after it
    (:func:`comir.deformation.sitk.composite_with_affine`); ``deformable_warped.tif``: the
    floating image warped by the field, in its dtype (as :func:`warp_by_field`); ``deformable_overlay.png``: the
    overlay (:func:`overlay`) of the rigid result (top row) and the deformable one (bottom row).
    Each file is written atomically.

    Parameters
    ----------
    out_dir : pathlib.Path
        The outputs' folder (existing).
    pair : comir.apply.pair.PairRegistration
        A pair whose ``deformed`` result is ``ok``.

    Returns
    -------
    list[pathlib.Path]
        The files written, in order.
    """
    import SimpleITK as sitk

    field, matrix = pair.deformed.field, pair.result.matrix
    residual = compose_affine(geometry.invert(matrix), field)  # x -> matrix(x + field(x)): the part after it
    paths = [out_dir / name for name in DEFORMABLE_OUTPUTS]
    with atomic_path(paths[0]) as tmp:
        write_field(tmp, field)
    with atomic_path(paths[1]) as tmp:
        sitk.WriteTransform(composite_with_affine(matrix, residual), str(tmp))
    write_tiff(paths[2], in_dtype(pair.deformed.warped, np.asarray(pair.floating).dtype))
    panel = overlay(pair.reference, pair.floating, pair.comirs, field, pair.comir_field,
                    before=(matrix, pair.comir_matrix))  # fmt: skip
    write_png(paths[3], panel)
    return paths
