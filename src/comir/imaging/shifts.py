"""Realistic, graded degradations of one modality's test patches: stress test sets (docs/method.md, section 14).

A test set's ``shift: {modality, kind, severity}`` degrades both the reference
and the floating patch of one modality (slot ``A`` or ``B``) of every case.  It
models *another slide or scanner* (a different acquisition of both images),
not a difference within a pair.  Each kind is a pure, vectorised function on
float images in [0, 1] (an (H, W) or (H, W, C) array); the result is clipped to
[0, 1].  ``severity`` is a number >= 0; severity 0 changes nothing (up to
rounding; ``sparsity`` subtracts the patch's minimum); severity 1 is a strong shift.

* ``stain`` (RGB bright field, H&E): a different staining protocol or scanner
  colour response, in optical density ``OD = -ln(max(I, 1e-3))``.  The pixel is
  unmixed into haematoxylin, eosin and DAB concentrations with Ruifrok and
  Johnston's stain vectors (:data:`comir.imaging.stain.HED_FROM_RGB`), then

  (a) the haematoxylin and eosin OD vectors are rotated about the grey axis
      ``(1, 1, 1) / sqrt 3`` by ``+-20 deg x severity`` each (a hue change of the
      dye; a component the rotation makes negative - eosin's red beyond +8.4 deg,
      its blue beyond -12.8 deg - is set to 0 and the vector renormalised: a dye
      only absorbs);
  (b) the H and E concentrations are multiplied by ``2^(+-severity)`` (a
      stronger or weaker stain: at severity 1 twice or half as much dye);

  and the pixel is remixed with the rotated vectors (DAB unchanged):
  ``I' = exp(-(c_H 2^(s_H sev) h'_H + c_E 2^(s_E sev) h'_E + c_D h_D))``.  The
  four signs (hue of H, hue of E, amount of H, amount of E) are drawn per case,
  +1 or -1 with equal probability, so every case lies at exactly the given
  distance in a random direction.  The training jitter ``augmentation.stain``
  (docs/method.md, section 5) scales the concentrations by ``U(1 - scale,
  1 + scale)`` (default 0.05, 0.1 in config/ablations.yaml, i.e. at most
  ``2^+-0.14``) and never changes the stain vectors' hue: severity 0.1 is
  about the jitter's range in amount, severity 1 (a factor 2 and 20 deg) lies far
  outside what training saw.
* ``gain`` (any modality): a dimmer acquisition (lower detector gain, laser
  power or illumination): ``I' = I x 2^(-2 severity)``, a quarter of the signal
  at severity 1 and half at 0.5.  No rng.
* ``sparsity`` (single channel, e.g. SHG): weak signal lost (a less sensitive
  detector, thinner fibres under the detection limit): the ``q``-th percentile
  ``p`` of the patch, ``q = min(95 severity, 99.9)``, is subtracted, values
  below it become 0 and the rest are stretched back to the patch's maximum:
  ``I' = max(I - p, 0) x max(I) / (max(I) - p)`` (all 0 if ``max(I) = p``).
  At severity 1 only the brightest 5 % of the pixels (the brightest fibres)
  survive; at severity 0 the patch's minimum is subtracted (nothing, for an SHG
  patch with any background), so a curve starts at the unshifted base test set.
  The percentile is each patch's own.  No rng.
* ``noise`` (any modality): shot and read noise of a photon-starved
  acquisition, ``I' = I + severity x sqrt(0.04 I + 0.05^2) x z`` with ``z``
  standard normal per pixel and channel: a Gaussian approximation of Poisson
  noise for ``25 / severity^2`` photons at full scale (variance ``0.04
  severity^2 I``, signal-to-noise ratio 5 at full scale at severity 1) plus
  Gaussian read noise of ``sigma_read = 0.05 severity``.  The clip to [0, 1]
  lowers the variance near 0 and 1.

Randomness: every case draws from its own generator,
``numpy.random.default_rng([seed, 2, case_number])`` (:func:`case_rng`) with
the test set's seed, separate from the stream of the transforms, so the same
configuration writes the same files and the same case gets the same draws (signs,
noise pattern ``z``) at every severity: along a stress curve only the severity
changes.  One draw serves both patches of the case (the reference first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from comir.imaging.stain import HED_FROM_RGB, RGB_FROM_HED, optical_density
from comir.io import full_scale, to_float01

#: The kinds of shift, in the order the schema lists them.
KINDS = ("stain", "gain", "sparsity", "noise")
#: Kinds that need a given channel count (the others take any).
CHANNELS = {"stain": 3, "sparsity": 1}
#: Hue rotation of the H and E vectors at severity 1, degrees.
STAIN_ROTATION_DEG = 20.0
#: Full-scale photon count of ``noise`` at severity 1 (signal-to-noise ratio 5 at full scale).
PHOTONS_AT_SEVERITY_1 = 25.0
#: Read noise (standard deviation, [0, 1] units) of ``noise`` at severity 1.
READ_NOISE = 0.05
_GREY = np.ones(3) / np.sqrt(3.0)


def shift_problem(kind: str, channels: int) -> str | None:
    """Why ``kind`` cannot shift a modality of ``channels`` channels (``None``: it can).

    Parameters
    ----------
    kind : str
        A kind of shift; one of :data:`KINDS` is expected.
    channels : int
        The modality's channel count; checked against :data:`CHANNELS`.

    Returns
    -------
    str or None
        The problem, one sentence; None when ``kind`` is known and fits ``channels``.
    """
    if kind not in KINDS:
        return f"unknown shift kind {kind!r} (known: {', '.join(KINDS)})"
    needed = CHANNELS.get(kind)
    if needed is not None and channels != needed:
        what = "an RGB (3-channel)" if needed == 3 else "a single-channel"
        return f"shift kind {kind!r} needs {what} modality, this one has {channels} channel(s)"
    return None


def _check(image: np.ndarray, kind: str) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    channels = 1 if image.ndim == 2 else image.shape[-1]
    problem = shift_problem(kind, channels) if image.ndim in (2, 3) else f"{image.ndim}-d image"
    if problem:
        raise ValueError(f"{problem} (image of shape {image.shape})")
    return image


def rotate_about_grey(vector: np.ndarray, angle_deg: float) -> np.ndarray:
    """An OD vector rotated about the grey axis by ``angle_deg`` (Rodrigues), negatives set to 0, unit length.

    Parameters
    ----------
    vector : numpy.ndarray
        ``(3,)`` optical density vector (R, G, B).
    angle_deg : float
        Rotation angle about ``(1, 1, 1) / sqrt 3``, degrees.

    Returns
    -------
    numpy.ndarray
        ``(3,)`` float64, non-negative, unit length.
    """
    theta = np.radians(angle_deg)
    v = np.asarray(vector, dtype=np.float64)
    rotated = v * np.cos(theta) + np.cross(_GREY, v) * np.sin(theta) + _GREY * (_GREY @ v) * (1 - np.cos(theta))
    rotated = np.clip(rotated, 0.0, None)
    return rotated / np.linalg.norm(rotated)


def shifted_stains(severity: float, signs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The remixing stain matrix (rows H, E, D) and the concentration factors (H, E, D) of ``stain``.

    Parameters
    ----------
    severity : float
        Severity of the shift, >= 0: hue rotation ``STAIN_ROTATION_DEG x severity``, amount ``2^(+-severity)``.
    signs : Sequence[float]
        The four +-1 of a case: hue of H, hue of E, amount of H, amount of E.

    Returns
    -------
    matrix : numpy.ndarray
        ``(3, 3)`` unit OD vectors (rows H, E, D), H and E rotated.
    factors : numpy.ndarray
        ``(3,)`` concentration factors (H, E, D); D's is 1.
    """
    hue_h, hue_e, amount_h, amount_e = (float(s) for s in signs)
    angle = STAIN_ROTATION_DEG * float(severity)
    matrix = np.stack(
        [
            rotate_about_grey(RGB_FROM_HED[0], hue_h * angle),
            rotate_about_grey(RGB_FROM_HED[1], hue_e * angle),
            RGB_FROM_HED[2],
        ]
    )
    factors = np.array([2.0 ** (amount_h * severity), 2.0 ** (amount_e * severity), 1.0])
    return matrix, factors


def stain(image: np.ndarray, severity: float, signs: Sequence[float]) -> np.ndarray:
    """An RGB image (H, W, 3) in [0, 1] with the H&E stain shift of the module docstring.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W, 3)`` RGB intensities in [0, 1].
    severity : float
        Severity of the shift, >= 0.
    signs : Sequence[float]
        The four +-1 of the case (:func:`shifted_stains`).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` float64 in [0, 1].

    Raises
    ------
    ValueError
        If ``image`` is not a 3-channel (H, W, 3) array.
    """
    image = _check(image, "stain")
    matrix, factors = shifted_stains(severity, signs)
    concentrations = optical_density(image) @ HED_FROM_RGB
    return np.clip(np.exp(-((concentrations * factors) @ matrix)), 0.0, 1.0)


def gain(image: np.ndarray, severity: float) -> np.ndarray:
    """``image x 2^(-2 severity)``: a dimmer acquisition.

    Parameters
    ----------
    image : numpy.ndarray
        Intensities in [0, 1], any shape.
    severity : float
        Severity of the shift, >= 0.

    Returns
    -------
    numpy.ndarray
        float64 of ``image``'s shape, clipped to [0, 1].
    """
    return np.clip(np.asarray(image, dtype=np.float64) * 2.0 ** (-2.0 * float(severity)), 0.0, 1.0)


def sparsity_percentile(severity: float) -> float:
    """The percentile ``q = min(95 severity, 99.9)`` that ``sparsity`` subtracts.

    Parameters
    ----------
    severity : float
        Severity of the shift, >= 0.

    Returns
    -------
    float
        The percentile, in [0, 99.9].
    """
    return min(95.0 * float(severity), 99.9)


def sparsity(image: np.ndarray, severity: float) -> np.ndarray:
    """Only the signal above the image's ``q``-th percentile kept, stretched back to its maximum.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, 1)`` single-channel intensities, clipped to [0, 1] first.
    severity : float
        Severity of the shift, >= 0; ``q`` is :func:`sparsity_percentile` of it.

    Returns
    -------
    numpy.ndarray
        float64 of ``image``'s shape in [0, 1]; all 0 when the percentile is the maximum.

    Raises
    ------
    ValueError
        If ``image`` is not a single-channel 2-D or 3-D array.
    """
    image = np.clip(_check(image, "sparsity"), 0.0, 1.0)
    level = float(np.percentile(image, sparsity_percentile(severity)))
    peak = float(image.max())
    if peak <= level:
        return np.zeros_like(image)
    return np.clip(np.maximum(image - level, 0.0) * (peak / (peak - level)), 0.0, 1.0)


def noise_sigma(image: np.ndarray, severity: float) -> np.ndarray:
    """The per-pixel standard deviation of ``noise``: ``severity x sqrt(0.04 I + 0.05^2)``.

    Parameters
    ----------
    image : numpy.ndarray
        Intensities ``I``, clipped to [0, 1] first; any shape.
    severity : float
        Severity of the shift, >= 0.

    Returns
    -------
    numpy.ndarray
        float64 standard deviations of ``image``'s shape, [0, 1] units.
    """
    image = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    return float(severity) * np.sqrt(image / PHOTONS_AT_SEVERITY_1 + READ_NOISE**2)


def noise(image: np.ndarray, severity: float, z: np.ndarray) -> np.ndarray:
    """Shot plus read noise of the module docstring.

    Parameters
    ----------
    image : numpy.ndarray
        Intensities in [0, 1] (clipped first), any shape.
    severity : float
        Severity of the shift, >= 0.
    z : numpy.ndarray
        Standard normal draws of the image's shape.

    Returns
    -------
    numpy.ndarray
        float64 of ``image``'s shape, clipped to [0, 1].
    """
    image = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    return np.clip(image + noise_sigma(image, severity) * z, 0.0, 1.0)


@dataclass(frozen=True)
class Shift:
    """One test set's shift: which modality (slot), which kind, how strong."""

    modality: str
    kind: str
    severity: float

    def __post_init__(self) -> None:
        if self.modality not in ("A", "B"):
            raise ValueError(f"shift modality must be A or B, got {self.modality!r}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown shift kind {self.kind!r} (known: {', '.join(KINDS)})")
        if not float(self.severity) >= 0:
            raise ValueError(f"shift severity must be >= 0, got {self.severity}")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> Shift | None:
        """The shift of a test set's ``shift`` section (``None`` when it has none).

        Parameters
        ----------
        cfg : Mapping[str, Any] or None
            The section, with ``modality`` (``A`` or ``B``), ``kind`` and ``severity``; None: no shift.

        Returns
        -------
        Shift or None
            The shift; None when ``cfg`` is None.

        Raises
        ------
        ValueError
            If the modality, kind or severity is invalid.
        KeyError
            If a key is missing.
        """
        if cfg is None:
            return None
        return cls(str(cfg["modality"]), str(cfg["kind"]), float(cfg["severity"]))

    def columns(self) -> dict[str, Any]:
        """The cases table's columns that record it."""
        return {"shift_modality": self.modality, "shift_kind": self.kind, "shift_severity": self.severity}

    def apply(self, images: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        """One case's float patches in [0, 1] (reference first), shifted with one draw from ``rng``.

        Parameters
        ----------
        images : Sequence[numpy.ndarray]
            The case's patches, ``(H, W)`` or ``(H, W, C)`` floats in [0, 1], reference first.
        rng : numpy.random.Generator
            The case's generator (:func:`case_rng`): ``stain`` draws four signs for all patches, ``noise``
            draws ``z`` per patch in order; ``gain`` and ``sparsity`` draw nothing.

        Returns
        -------
        list[numpy.ndarray]
            The shifted patches, float64 in [0, 1], in the order of ``images``.

        Raises
        ------
        ValueError
            If a patch has the wrong channel count for the kind (:func:`shift_problem`).
        """
        if self.kind == "stain":
            signs = rng.choice([-1.0, 1.0], size=4)
            return [stain(image, self.severity, signs) for image in images]
        if self.kind == "gain":
            return [gain(image, self.severity) for image in images]
        if self.kind == "sparsity":
            return [sparsity(image, self.severity) for image in images]
        return [noise(image, self.severity, rng.standard_normal(np.shape(image))) for image in images]

    def apply_stored(
        self, images: Sequence[np.ndarray], rng: np.random.Generator, max_value: float | None = None
    ) -> list[np.ndarray]:
        """Stored patches of one case, shifted on [0, 1] and returned in their own dtype (integers rounded).

        Parameters
        ----------
        images : Sequence[numpy.ndarray]
            The case's stored patches, reference first.
        rng : numpy.random.Generator
            The case's generator, as in :meth:`apply`.
        max_value : float or None, optional
            The stored value of full intensity, as in :func:`comir.io.to_float01`; None: the dtype's. Default None.

        Returns
        -------
        list[numpy.ndarray]
            The shifted patches, each in its input's dtype (:func:`from_float01`).
        """
        floats = [np.clip(to_float01(np.asarray(image), max_value), 0.0, 1.0) for image in images]
        return [from_float01(out, image.dtype, max_value) for out, image in zip(self.apply(floats, rng), images)]


def from_float01(image: np.ndarray, dtype: np.dtype, max_value: float | None = None) -> np.ndarray:
    """The inverse of :func:`comir.io.to_float01`: [0, 1] back to stored values of ``dtype`` (integers rounded).

    Parameters
    ----------
    image : numpy.ndarray
        Values in [0, 1].
    dtype : numpy.dtype
        The stored dtype.
    max_value : float or None, optional
        The stored value of full intensity (:func:`comir.io.full_scale`); None: the dtype's. Default None.

    Returns
    -------
    numpy.ndarray
        ``image`` times the full scale, in ``dtype``; integers rounded and clipped to the type's range.
    """
    dtype = np.dtype(dtype)
    scaled = np.asarray(image, dtype=np.float64) * full_scale(dtype, max_value)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(scaled), info.min, info.max).astype(dtype)
    return scaled.astype(dtype)


def case_rng(seed: int, case_number: int) -> np.random.Generator:
    """The generator of one case's shift: ``default_rng([seed, 2, case_number])``.

    Parameters
    ----------
    seed : int
        The test set's seed.
    case_number : int
        The case's number.

    Returns
    -------
    numpy.random.Generator
        A fresh generator, the same for the same seed and case at every severity.
    """
    return np.random.default_rng([int(seed), 2, int(case_number)])


def severity_label(severity: float) -> str:
    """A severity as it appears in a test set's name: ``0.5 -> 0p5``, ``1.0 -> 1`` (no ``-`` or ``e``).

    Parameters
    ----------
    severity : float
        A severity, >= 0.

    Returns
    -------
    str
        Positional notation, trailing zeros and point trimmed, ``.`` replaced by ``p``.
    """
    text = np.format_float_positional(float(severity), trim="-")
    return text.replace(".", "p")


__all__ = [
    "CHANNELS",
    "KINDS",
    "Shift",
    "case_rng",
    "from_float01",
    "gain",
    "noise",
    "noise_sigma",
    "rotate_about_grey",
    "severity_label",
    "shift_problem",
    "shifted_stains",
    "sparsity",
    "sparsity_percentile",
    "stain",
]
