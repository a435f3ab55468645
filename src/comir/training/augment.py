"""Intensity augmentation of training patches, per modality (docs/method.md, section 5).

Beyond the paper's geometric augmentation (padding-free rotations and flips, the
same for both modalities), each modality's patches can be perturbed in intensity,
independently per patch, each transform with its own probability:

* ``stain``: H&E stain jitter for RGB bright-field images (Tellez et al. 2018): the
  patch is unmixed into haematoxylin, eosin and DAB optical densities (Ruifrok and
  Johnston's stain vectors), each scaled by ``U(1 - scale, 1 + scale)`` and shifted
  by ``U(-shift, shift)``, and mixed back.  Stain variation between labs and batches
  is the main shift between the BF images of different cores.
* ``intensity``: each channel multiplied by ``U(1 - scale, 1 + scale)`` (the paper's
  Zurich setting: 0.9-1.1).
* ``blur``: a Gaussian blur of ``sigma ~ U(0, sigma)`` px.
* ``noise``: additive Gaussian noise of ``sigma ~ U(0, sigma)`` (in the [0, 1] range).

Shared by both modalities (``training.elastic``, so the pair stays aligned):
:func:`elastic_pairs`, a smooth random elastic deformation, after the rotation and
flips and before the intensity transforms.

They apply in that order, after the geometric augmentation and from the same
seeded generator, drawing only for the transforms that are configured: without
any, the batches are exactly those of a run without augmentation, and with some,
the patches are still cut at the same places.  Results are clipped to [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from comir.imaging.stain import HED_FROM_RGB, RGB_FROM_HED, optical_density

TRANSFORMS = ("stain", "intensity", "blur", "noise")


def check_augmentation(settings: Mapping[str, Any], channels: int) -> list[str]:
    """What is wrong with one modality's augmentation settings (an empty list: nothing).

    Parameters
    ----------
    settings : Mapping[str, Any]
        The modality's transforms by name (:data:`TRANSFORMS`) with their settings.
    channels : int
        The modality's channel count (``stain`` needs 3).

    Returns
    -------
    list of str
        One message per problem: unknown transforms, stain jitter of a non-RGB modality.
    """
    known = ", ".join(TRANSFORMS)
    problems = [f"unknown transform {name!r} (known: {known})" for name in settings if name not in TRANSFORMS]
    if "stain" in settings and channels != 3:
        problems.append(f"stain jitter needs an RGB (3-channel) modality, this one has {channels} channel(s)")
    return problems


def _chosen(rng: np.random.Generator, n: int, probability: float) -> np.ndarray:
    return rng.random(n) < float(probability)


def stain_jitter(patches: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """RGB patches (n, 3, H, W) in [0, 1], their H, E, D densities scaled by ``alpha``, shifted by ``beta`` (n, 3).

    Parameters
    ----------
    patches : numpy.ndarray
        ``(n, 3, H, W)`` RGB patches in [0, 1].
    alpha : numpy.ndarray
        ``(n, 3)`` factors of the haematoxylin, eosin and DAB optical densities per patch.
    beta : numpy.ndarray
        ``(n, 3)`` shifts of the densities per patch, added after the scaling.

    Returns
    -------
    numpy.ndarray
        ``(n, 3, H, W)`` float32 jittered patches, clipped to [0, 1].
    """
    hed = optical_density(np.moveaxis(patches, 1, -1)) @ HED_FROM_RGB  # (n, H, W, 3)
    hed = hed * alpha[:, None, None, :] + beta[:, None, None, :]
    jittered = np.exp(-(hed @ RGB_FROM_HED))
    return np.moveaxis(np.clip(jittered, 0.0, 1.0), -1, 1).astype(np.float32)


def augment_patches(patches: np.ndarray, settings: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
    """One modality's batch (n, C, H, W) float32 with the configured transforms applied (module doc).

    Parameters
    ----------
    patches : numpy.ndarray
        ``(n, C, H, W)`` patches in [0, 1]; not modified.
    settings : Mapping[str, Any]
        The modality's transforms: ``stain`` (``probability``, ``scale``, ``shift``), ``intensity``
        (``probability``, ``scale``), ``blur`` and ``noise`` (``probability``, ``sigma``); any subset.
    rng : numpy.random.Generator
        Source of the draws; only configured transforms draw from it.

    Returns
    -------
    numpy.ndarray
        A float32 copy with the transforms applied, or ``patches`` itself when ``settings`` is empty.
    """
    if not settings:
        return patches
    out = np.array(patches, dtype=np.float32, copy=True)
    n = len(out)
    if "stain" in settings:
        spec = settings["stain"]
        chosen = _chosen(rng, n, spec["probability"])
        alpha = rng.uniform(1 - spec["scale"], 1 + spec["scale"], (n, 3))
        beta = rng.uniform(-spec["shift"], spec["shift"], (n, 3))
        if chosen.any():
            out[chosen] = stain_jitter(out[chosen], alpha[chosen], beta[chosen])
    if "intensity" in settings:
        spec = settings["intensity"]
        chosen = _chosen(rng, n, spec["probability"])
        factors = rng.uniform(1 - spec["scale"], 1 + spec["scale"], (n, out.shape[1])).astype(np.float32)
        out[chosen] = np.clip(out[chosen] * factors[chosen][:, :, None, None], 0.0, 1.0)
    if "blur" in settings:
        import cv2  # lazily, like everywhere in this package: the configuration imports this module

        spec = settings["blur"]
        chosen = _chosen(rng, n, spec["probability"])
        sigmas = rng.uniform(0.0, spec["sigma"], n)
        for index in np.flatnonzero(chosen & (sigmas > 0)):  # one OpenCV call per patch and channel
            for channel in range(out.shape[1]):
                out[index, channel] = cv2.GaussianBlur(
                    out[index, channel], (0, 0), float(sigmas[index]), borderType=cv2.BORDER_REFLECT
                )
    if "noise" in settings:
        spec = settings["noise"]
        chosen = _chosen(rng, n, spec["probability"])
        sigmas = rng.uniform(0.0, spec["sigma"], n).astype(np.float32)
        noise = rng.standard_normal(out.shape, dtype=np.float32) * sigmas[:, None, None, None]
        out[chosen] = np.clip(out[chosen] + noise[chosen], 0.0, 1.0)
    return out


def elastic_pairs(
    batch_a: np.ndarray, batch_b: np.ndarray, settings: Mapping[str, Any], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Both modalities' patches (n, C, H, W) deformed by the same random elastic field (Simard et al. 2003).

    With ``probability`` per patch: a displacement field of uniform noise in
    [-1, 1] per axis, Gaussian-smoothed by ``sigma`` px and scaled so that its
    largest displacement is ``alpha`` px, applied to every channel of both
    modalities alike (bilinear, reflected border), so the pair stays aligned.
    Drawn only when configured: without it the batches are unchanged.

    Parameters
    ----------
    batch_a : numpy.ndarray
        ``(n, C_A, H, W)`` patches of the first modality.
    batch_b : numpy.ndarray
        ``(n, C_B, H, W)`` patches of the second modality, aligned with ``batch_a``.
    settings : Mapping[str, Any]
        ``probability``, ``sigma`` (px) and ``alpha`` (px) of ``training.elastic``.
    rng : numpy.random.Generator
        Source of the draws.

    Returns
    -------
    tuple of numpy.ndarray
        The deformed copies of ``batch_a`` and ``batch_b``.
    """
    import cv2

    n, _, height, width = batch_a.shape
    chosen = _chosen(rng, n, settings["probability"])
    fields = rng.uniform(-1.0, 1.0, (n, 2, height, width)).astype(np.float32)
    out_a, out_b = np.array(batch_a, copy=True), np.array(batch_b, copy=True)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    for index in np.flatnonzero(chosen):
        smooth = [cv2.GaussianBlur(f, (0, 0), float(settings["sigma"])) for f in fields[index]]
        peak = max(float(np.abs(f).max()) for f in smooth) or 1.0
        map_x = xx + smooth[0] * (float(settings["alpha"]) / peak)
        map_y = yy + smooth[1] * (float(settings["alpha"]) / peak)
        for out in (out_a, out_b):
            for channel in range(out.shape[1]):
                out[index, channel] = cv2.remap(
                    out[index, channel], map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
                )
    return out_a, out_b


__all__ = [
    "TRANSFORMS",
    "augment_patches",
    "check_augmentation",
    "elastic_pairs",
    "stain_jitter",
]
