"""A trained CoMIR model applied to a user's unaligned pair (docs/method.md, section 13).

The model file is the ``comir.pt`` the ``train`` rule writes (state_dicts, the
networks' configurations, the modalities with their pre-processing, the
training settings and provenance; loaded with ``weights_only=True``), so a
model trained once, e.g. on a GPU cluster, is reused anywhere.  For one pair:

1. both images are read and checked against their modality (channels) before
   any work, the files named in every error;
2. each image is pre-processed like the training data of its modality and its
   CoMIR computed (ONNX Runtime on the CPU, tiled, as the pipeline does);
3. a registration method (default the ``cascade``) registers the floating
   CoMIR to the reference CoMIR;
4. the outputs are written atomically into a new folder: ``transform.csv``
   (one row: the floating -> reference matrix, status, metric, seconds,
   message), ``transform.tfm`` (the same transform for ITK / SimpleITK /
   elastix users: the resampling transform, reference -> floating points, in
   pixel units), ``warped.tif`` (the floating image resampled into the
   reference frame, its own dtype and channels), ``overlay.png`` (before and
   after: colour overlay of the originals and checkerboard of the CoMIRs) and
   ``comir_reference.tif`` / ``comir_floating.tif``.

A pair the method cannot register is a ``failed`` row (no warped image,
transform or overlay is written); an existing output is never overwritten.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from comir import geometry
from comir.config import section_defaults
from comir.infer import compute_comir, inference_network
from comir.io import InputError, channels_of, read_image, to_uint8, write_csv, write_png, write_text, write_tiff
from comir.preprocess import prepare_modality_image
from comir.register import make_method, to_single_channel
from comir.register.base import RegistrationResult
from comir.testset import MATRIX_KEYS
from comir.train import load_checkpoint, resolve_device

log = logging.getLogger(__name__)

OUTPUTS = ("transform.csv", "transform.tfm", "warped.tif", "overlay.png", "comir_reference.tif", "comir_floating.tif")
# Side of the checkerboard squares of the overlay, as a fraction of the reference's shorter side.
CHECKER_FRACTION = 1 / 8


@dataclass
class TrainedModel:
    """The two networks of a model file and the modalities they were trained on."""

    path: Path
    networks: dict[str, torch.nn.Module]
    modalities: dict[str, dict[str, Any]]

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> TrainedModel:
        """The model in ``path``; :class:`InputError` naming the file when it is not a CoMIR model."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"model file not found: {path}")
        try:
            networks, payload = load_checkpoint(path, device)
        except Exception as error:  # a corrupt or foreign file: say which and why
            raise InputError(f"{path} is not a CoMIR model file written by the train rule: {error}") from error
        modalities = payload.get("modalities")
        if not isinstance(modalities, Mapping) or set(modalities) != set(networks):
            raise InputError(f"{path} has no modality description for its networks {sorted(networks)}")
        return cls(path, networks, {slot: dict(spec) for slot, spec in modalities.items()})

    def slot(self, modality: str) -> str:
        """The network slot (``A``/``B``) of a modality given by slot or by name."""
        for slot, spec in self.modalities.items():
            if modality in (slot, spec.get("name")):
                return slot
        known = ", ".join(f"{slot} ({spec.get('name')})" for slot, spec in self.modalities.items())
        raise InputError(f"modality {modality!r} is not one of the model's: {known} ({self.path})")

    def other(self, slot: str) -> str:
        """The other network's slot."""
        return next(s for s in self.modalities if s != slot)


def read_checked(path: str | Path, modality: Mapping[str, Any], role: str) -> np.ndarray:
    """The image in ``path`` after checking its channels against ``modality``, naming the file otherwise."""
    image = read_image(path)
    found, expected = channels_of(image), int(modality["channels"])
    if found != expected:
        raise InputError(
            f"{role} image {path} has {found} channel(s), but the model's modality "
            f"{modality.get('name')!r} has {expected}: is it the right file, or the right modality?"
        )
    return image


def warp_to_reference(floating: np.ndarray, matrix: np.ndarray, reference_shape: tuple[int, int]) -> np.ndarray:
    """``floating`` (H, W[, C], any real dtype) resampled into the reference frame (bilinear, 0 outside).

    ``matrix`` sends floating pixels to reference pixels; the result has the
    reference's height and width and the floating image's dtype and channels.
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
    if not native:
        if np.issubdtype(floating.dtype, np.integer):
            info = np.iinfo(floating.dtype)
            out = np.clip(np.rint(out), info.min, info.max)
        out = out.astype(floating.dtype)
    return out


def itk_transform_text(matrix: np.ndarray) -> str:
    """An ITK transform file (``.tfm``) of the resampling transform of ``matrix`` (floating -> reference).

    ITK resamples a moving image at ``T(p)`` for every fixed point ``p``, so
    ``T`` is the inverse of ``matrix``: reference pixel -> floating pixel, in
    pixel units (spacing 1, origin 0, ``x`` = column).  Written as an
    ``AffineTransform_double_2_2`` with centre 0.
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
    reference: np.ndarray, floating: np.ndarray, comirs: tuple[np.ndarray, np.ndarray], matrix: np.ndarray
) -> np.ndarray:
    """A 2 x 2 RGB panel: colour overlay of the originals and checkerboard of the CoMIRs, before and after.

    "Before" places the floating image on the reference grid as it is (the
    identity); "after" warps it by ``matrix``.  Overlay: reference in magenta,
    floating in green (grey where they agree).  Checkerboard: squares of the
    reference CoMIR and the floating CoMIR alternate.
    """
    height, width = reference.shape[:2]
    ref_grey = _grey(reference)
    ref_comir = _grey(np.moveaxis(comirs[0], 0, -1))
    flo_grey = _grey(floating)
    flo_comir = _grey(np.moveaxis(comirs[1], 0, -1))
    side = max(8, int(min(height, width) * CHECKER_FRACTION))
    yy, xx = np.mgrid[:height, :width]
    checker = ((yy // side + xx // side) % 2).astype(bool)
    rows = []
    for transform in (geometry.IDENTITY, np.asarray(matrix)):
        moved = warp_to_reference(flo_grey, transform, (height, width))
        moved_comir = warp_to_reference(flo_comir, transform, (height, width))
        colour = np.stack([ref_grey, moved, ref_grey], axis=-1)
        board = np.where(checker, ref_comir, moved_comir)
        rows.append(np.concatenate([colour, np.repeat(board[..., None], 3, axis=-1)], axis=1))
    return np.concatenate(rows, axis=0)


@dataclass
class PairRegistration:
    """What :func:`register_pair` computed: the result and the images behind it."""

    result: RegistrationResult
    reference: np.ndarray
    floating: np.ndarray
    comirs: tuple[np.ndarray, np.ndarray]  # (C, H, W) float32, reference then floating


def register_pair(
    model: TrainedModel,
    reference_path: str | Path,
    floating_path: str | Path,
    reference_modality: str,
    method: str = "cascade",
    params: Mapping[str, Any] | None = None,
    inference: Mapping[str, Any] | None = None,
    seed: int = 0,
    threads: int = 1,
) -> PairRegistration:
    """Register the floating image to the reference image through their CoMIRs.

    ``reference_modality``: the reference's modality, by slot (``A``/``B``) or
    name; the floating image is of the other.  ``inference``: settings of the
    configuration's ``inference`` section (``tile``, ``margin``, ``pad``,
    ``engine``, ``device``, ``c4_average``, ...); the others take the schema's
    defaults.  Every input is checked before any work.
    """
    ref_slot = model.slot(reference_modality)
    flo_slot = model.other(ref_slot)
    reference = read_checked(reference_path, model.modalities[ref_slot], "reference")
    floating = read_checked(floating_path, model.modalities[flo_slot], "floating")
    registration = make_method(method, params, seed, threads)  # a bad method or parameter stops here
    options = {**section_defaults("inference"), **(inference or {})}
    device = resolve_device(options.pop("device"))
    engine = options.pop("engine")
    comirs = []
    for slot, image, path in ((ref_slot, reference, reference_path), (flo_slot, floating, floating_path)):
        network = inference_network(model.networks[slot], engine, device)
        prepared = prepare_modality_image(image, model.modalities[slot], str(path))
        comirs.append(compute_comir(network, prepared, device=device, **options))
    as_image = [c[0] if c.shape[0] == 1 else np.moveaxis(c, 0, -1) for c in comirs]
    result = registration.register(*as_image)
    log.info("%s -> %s: %s %s", floating_path, reference_path, result.status, result.message)
    return PairRegistration(result, reference, floating, (comirs[0], comirs[1]))


def check_new_outputs(out_dir: str | Path) -> Path:
    """``out_dir`` as a Path; :class:`InputError` if it already holds an output (nothing is overwritten)."""
    out_dir = Path(out_dir)
    existing = [name for name in OUTPUTS if (out_dir / name).exists()]
    if existing:
        raise InputError(f"{out_dir} already holds {', '.join(existing)}; choose a new output folder")
    return out_dir


def write_outputs(
    out_dir: str | Path, pair: PairRegistration, reference_path: str | Path, floating_path: str | Path, method: str
) -> list[Path]:
    """Write the outputs of one pair into ``out_dir`` (created; existing outputs are an error). Returns them."""
    out_dir = check_new_outputs(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = pair.result
    row = {
        "reference": str(reference_path),
        "floating": str(floating_path),
        "method": method,
        "status": result.status,
        "metric": result.metric,
        "seconds": result.seconds,
        **{k: v for k, v in zip(MATRIX_KEYS, np.asarray(result.matrix).ravel())},
        "angle_deg": math.degrees(float(geometry.rotation_angle(result.matrix))),
        "message": result.message,
    }
    written = []

    def keep(path: Path) -> Path:
        written.append(path)
        return path

    for name, comir in (("comir_reference.tif", pair.comirs[0]), ("comir_floating.tif", pair.comirs[1])):
        write_tiff(keep(out_dir / name), comir[0] if comir.shape[0] == 1 else np.moveaxis(comir, 0, -1))
    if result.ok:
        height, width = pair.reference.shape[:2]
        write_tiff(keep(out_dir / "warped.tif"), warp_to_reference(pair.floating, result.matrix, (height, width)))
        write_text(keep(out_dir / "transform.tfm"), itk_transform_text(result.matrix))
        write_png(keep(out_dir / "overlay.png"), overlay(pair.reference, pair.floating, pair.comirs, result.matrix))
    write_csv(keep(out_dir / "transform.csv"), pd.DataFrame([row]))  # last: its presence means the pair is done
    return written


__all__ = [
    "OUTPUTS",
    "PairRegistration",
    "TrainedModel",
    "check_new_outputs",
    "itk_transform_text",
    "overlay",
    "read_checked",
    "register_pair",
    "warp_to_reference",
    "write_outputs",
]
