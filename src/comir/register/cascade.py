"""Cascade registration on CoMIRs: global search and keypoints, each refined, the best by a quality score.

No single method registers every real pair: the global FFT search carries
pairs without enough keypoints, SIFT pairs whose CoMIRs differ in contrast, and
either can land in a wrong optimum.  The cascade runs them all and keeps the
candidate that makes the two CoMIRs agree best (docs/method.md, section 12).

Stages, each configurable and timed:

1. **Global search** (``global_search``: the parameters of ``fft_search``;
   ``null`` skips it): the FFT search over all rotations; its result is a
   candidate.  Its own ECC polish is off by default here (``refine: false``),
   since stage 3 refines every candidate, and its ``min_overlap`` is the
   cascade's unless given.
2. **Keypoints** (``keypoints``: the parameters of ``sift``; ``null`` skips
   it): SIFT + rigid RANSAC; its result is a candidate.  With
   ``original_keypoints`` (the parameters of ``sift``; ``null``, the default,
   skips it) SIFT also runs on the *original* images, given to ``register``
   as ``originals`` on the CoMIRs' grid (each reduced to one channel on its
   own): where the two modalities share structure (e.g. RGB and NIR photos)
   keypoints on the originals can be more precise than on the CoMIRs, and
   where they do not, the candidate fails or scores low.  Its label is
   ``sift-original``.
3. **Local refinement** (``refine``): every candidate is refined at full
   resolution from its estimate, by ``"ecc"`` (``cv2.findTransformECC``,
   Euclidean, on the smoothed CoMIRs; ``refine_params: {iterations: 50}``),
   ``"mi"`` (SimpleITK Mattes MI from the estimate; ``refine_params``: the
   parameters of ``mi``) or ``"none"``.  A refined candidate is added next to
   the one it came from, so refinement can only add options.
4. **Choice**: every candidate gets the quality score: the Pearson correlation
   of the reference and the bilinearly warped floating image (both reduced to
   one channel, the floating one with the reference's basis, and smoothed by
   ``smooth_sigma`` px) on their overlap, which must hold at least
   ``min_overlap`` of the smaller image's pixels.  The highest score wins; the
   ground truth is never used.  With ``original_keypoints``, the originals'
   unrefined candidate replaces the winner when the two map the floating
   image's corners within ``prefer_originals_px`` (1 px) of each other: they
   are then the same alignment at the score's resolution (the score compares
   CoMIRs smoothed by ``smooth_sigma``), and keypoints matched on the
   original images are the more precise where the modalities share them.
   Below ``min_quality`` the pair is ``failed`` (with the winner's score in
   the message).  The bar is 0 by default: two unrelated smooth images can
   correlate by chance on a quarter overlap at the best of all rotations and
   shifts (0.59 for the test suite's textures, against 0.99 for the true
   pair), so a useful bar depends on the data; it is the score to rank and
   flag results by.

**Several networks** (``networks``: K > 1, an ensemble of networks trained
differently, e.g. with and without stain augmentation; docs/method.md,
section 12): the CoMIRs' channels are K equal groups, one per network, in
the same order for both images.  Stages 1-2 run on each network's CoMIRs
(labels ``fft@1``, ``sift@2``, ...), a candidate is refined on the CoMIRs it
came from (the originals' keypoints on every network's), and the quality
score is the mean of the score on every network's CoMIRs.  Each network's own
score is not comparable across networks (one network's CoMIRs may correlate
more on every alignment, right or wrong); every candidate scored on every
network's CoMIRs is, and an alignment that is wrong for one network's
representation scores low there.

``transform`` (rigid, similarity or affine; docs/method.md, section 13) is the
model of stages 2 and 3: SIFT's RANSAC fits it and the refinement estimates it
(ECC's affine warp, projected onto a similarity where asked; MI's Similarity2D
or affine transform).  The global search stays rigid: it finds rotation and
translation, and the refinement adds scale or shear.

``metric`` of the result is the winner's quality score (higher is better);
``message`` lists every candidate with its score, and the one kept, e.g.
``sift failed: too few inliers ...; fft 0.7412; fft+ecc 0.7533; kept fft+ecc``
(the same for the same inputs); the seconds of every stage go to the log
(INFO, the register job's log file).

Masks (docs/method.md, section 13) go to every stage; the quality score is
computed on the valid pixels of both images only (after the invalid ones are
set to the valid mean, so the smoothing brings no edge in).

The score is a correlation of CoMIRs, which are trained to be similar across
modalities; on the original images of two modalities it means little, so the
cascade is a method for CoMIRs (``inputs: [comir]``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from comir.geometry import check_transform, corner_error
from comir.io import reject_unknown_keys
from comir.register.base import (
    OK,
    RegistrationFailure,
    RegistrationResult,
    build_method,
    fill_invalid,
    timed,
    to_single_channel,
)
from comir.register.fft_search import FFTSearchRegistration, ecc_refine, overlap_ncc
from comir.register.mi import MutualInformationRegistration
from comir.register.sift import SiftRegistration

log = logging.getLogger(__name__)

REFINEMENTS = ("ecc", "mi", "none")
# The global search's defaults inside the cascade: stage 3 does the polishing.
GLOBAL_DEFAULTS: dict[str, Any] = {"refine": False}


@dataclass
class Candidate:
    """One estimate of the cascade: its label, floating -> reference matrix, quality and stage seconds."""

    label: str
    matrix: np.ndarray
    seconds: float
    quality: float = -math.inf
    #: The network whose CoMIRs gave it (None: the original images).
    network: int | None = 0


@dataclass
class CascadeRegistration:
    """Global FFT search + SIFT, each candidate refined, the best by the CoMIRs' correlation (module doc).

    Parameters: ``global_search`` (``fft_search`` parameters, ``None`` to
    skip), ``keypoints`` (``sift`` parameters, ``None`` to skip),
    ``original_keypoints`` (``sift`` parameters for the original images,
    ``None``: not run), ``prefer_originals_px`` (their candidate is kept when
    this close to the best-scoring one; 0: never), ``refine``
    ("ecc", "mi" or "none"), ``refine_params`` (ECC: ``iterations``; MI: the
    ``mi`` parameters), ``smooth_sigma`` (px, before scoring and ECC),
    ``min_overlap`` (fraction of the smaller image), ``min_quality`` (least
    score of an ``ok`` result), ``transform`` (the model of the keypoints
    and refinement stages, see the module doc), ``networks`` (how many
    networks' CoMIRs the channels hold, see the module doc), ``threads``,
    ``seed``.
    """

    name: ClassVar[str] = "cascade"

    global_search: dict[str, Any] | None = field(default_factory=dict)
    keypoints: dict[str, Any] | None = field(default_factory=dict)
    original_keypoints: dict[str, Any] | None = None
    prefer_originals_px: float = 1.0
    refine: str = "ecc"
    refine_params: dict[str, Any] = field(default_factory=dict)
    smooth_sigma: float = 1.0
    min_overlap: float = 0.25
    min_quality: float = 0.0
    transform: str = "rigid"
    networks: int = 1
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        check_transform(self.transform)
        if self.global_search is None and self.keypoints is None:
            raise ValueError("global_search and keypoints are both off: the cascade needs at least one")
        if self.refine not in REFINEMENTS:
            raise ValueError(f"refine must be one of {REFINEMENTS}, got {self.refine!r}")
        if not 0 < float(self.min_overlap) <= 1:
            raise ValueError(f"min_overlap must be in (0, 1], got {self.min_overlap}")
        if not -1 <= float(self.min_quality) <= 1:
            raise ValueError(f"min_quality must be in [-1, 1] (a correlation), got {self.min_quality}")
        if float(self.prefer_originals_px) < 0:
            raise ValueError(f"prefer_originals_px must be >= 0, got {self.prefer_originals_px}")
        if float(self.smooth_sigma) < 0:
            raise ValueError(f"smooth_sigma must be >= 0, got {self.smooth_sigma}")
        if isinstance(self.networks, bool) or not isinstance(self.networks, int) or self.networks < 1:
            raise ValueError(f"networks must be an integer >= 1, got {self.networks!r}")
        # Build the stages now, so that a bad parameter is an error at configuration time.
        self._global = self._keypoints = self._original_keypoints = None
        if self.global_search is not None:
            given = _mapping(self.global_search, "global_search")
            params = {**GLOBAL_DEFAULTS, "min_overlap": self.min_overlap, **given}
            self._global = build_method(FFTSearchRegistration, params, self.seed, self.threads)
        if self.keypoints is not None:
            params = {"transform": self.transform, **_mapping(self.keypoints, "keypoints")}
            self._keypoints = build_method(SiftRegistration, params, self.seed, self.threads)
        if self.original_keypoints is not None:
            params = {"transform": self.transform, **_mapping(self.original_keypoints, "original_keypoints")}
            self._original_keypoints = build_method(SiftRegistration, params, self.seed, self.threads)
        refine_params = _mapping(self.refine_params, "refine_params")
        self._mi = None
        self._ecc_iterations = 50
        if self.refine == "mi":
            params = {"transform": self.transform, **refine_params}
            self._mi = build_method(MutualInformationRegistration, params, self.seed, self.threads)
        elif self.refine == "ecc":
            reject_unknown_keys(refine_params, ["iterations"], "refine_params key(s)", context=" for ecc")
            self._ecc_iterations = int(refine_params.get("iterations", 50))
            if self._ecc_iterations < 1:
                raise ValueError(f"refine_params.iterations must be >= 1, got {self._ecc_iterations}")
        elif refine_params:
            raise ValueError("refine_params given but refine is 'none'")

    @property
    def wants_originals(self) -> bool:
        """Whether ``register`` uses the original images (``originals``) besides the CoMIRs."""
        return self._original_keypoints is not None

    def _per_network(self, image: np.ndarray, role: str) -> list[np.ndarray]:
        """Each network's CoMIRs of ``image``: its channels in ``networks`` equal groups."""
        if self.networks == 1:
            return [image]
        channels = image.shape[2] if image.ndim == 3 else 1
        if channels % self.networks:
            raise ValueError(
                f"the {role} CoMIRs have {channels} channel(s): not {self.networks} networks' equal groups"
            )
        return np.split(image, self.networks, axis=2)

    def _label(self, label: str, network: int | None) -> str:
        """A stage's label, with its network's number (from 1) when there are several."""
        return label if self.networks == 1 or network is None else f"{label}@{network + 1}"

    def _estimates(
        self,
        pairs: list[tuple[np.ndarray, np.ndarray]],
        masks: dict[str, np.ndarray | None],
        originals: tuple[np.ndarray, np.ndarray] | None,
    ) -> tuple[list[Candidate], list[str]]:
        """Candidates of stages 1-2 on each network's (reference, floating) CoMIRs; notes of failed stages."""
        candidates, notes = [], []
        if self.wants_originals and originals is None:
            raise ValueError("original_keypoints is set but register() got no originals (the original images)")
        stages = [
            (label, stage, images, network)
            for network, images in enumerate(pairs)
            for label, stage in (("fft", self._global), ("sift", self._keypoints))
        ]
        if self.wants_originals:
            for image, like, role in zip(originals, pairs[0], ("reference", "floating"), strict=True):
                if np.shape(image)[:2] != like.shape[:2]:
                    raise ValueError(f"the original {role} image is {np.shape(image)[:2]}, its CoMIR {like.shape[:2]}")
            single = tuple(to_single_channel(image)[0] for image in originals)  # different modalities: no shared basis
            stages.append(("sift-original", self._original_keypoints, single, None))
        for label, stage, images, network in stages:
            if stage is None:
                continue
            label = self._label(label, network)
            result = stage.register(*images, **masks)
            if result.ok:
                candidates.append(Candidate(label, result.matrix, result.seconds, network=network))
            else:
                notes.append(f"{label} failed: {result.message}")
                log.info("cascade stage seconds: %s (failed) %.3f", label, result.seconds)
        return candidates, notes

    def _refined(
        self,
        candidate: Candidate,
        network: int,
        scored: tuple[np.ndarray, np.ndarray],
        raw: tuple[np.ndarray, np.ndarray],
        masks: dict[str, np.ndarray | None],
    ) -> Candidate | None:
        """``candidate`` refined on one network's CoMIRs, or None when the refinement does not converge.

        ``scored``: that network's CoMIRs as the score sees them, ``raw``: as given.
        """
        start = time.perf_counter()
        if self.refine == "ecc":
            pair_masks = (masks["reference_mask"], masks["floating_mask"])
            matrix = ecc_refine(*scored, candidate.matrix, self._ecc_iterations, self.transform, pair_masks)
        else:
            result = self._mi.refine(*raw, candidate.matrix, **masks)
            matrix = result.matrix if result.ok else None
        if matrix is None:
            return None
        label = f"{candidate.label}+{self.refine}"
        if candidate.network is None:  # the originals' candidate, refined on each network's CoMIRs
            label = self._label(label, network)
        return Candidate(label, matrix, time.perf_counter() - start, network=network)

    def _scoring_images(
        self, reference: np.ndarray, floating: np.ndarray, masks: dict[str, np.ndarray | None]
    ) -> tuple[np.ndarray, np.ndarray]:
        """One network's CoMIRs as the score and ECC see them: one channel each, filled and smoothed.

        The floating image is projected with the reference's basis; invalid pixels get the valid mean.
        """
        import cv2

        ref, basis = to_single_channel(fill_invalid(reference, masks["reference_mask"]))
        flo, _ = to_single_channel(fill_invalid(floating, masks["floating_mask"]), basis)
        if float(self.smooth_sigma) > 0:
            ref, flo = (
                cv2.GaussianBlur(image, (0, 0), float(self.smooth_sigma), borderType=cv2.BORDER_REFLECT)
                for image in (ref, flo)
            )
        return ref, flo

    @timed
    def register(
        self,
        reference: np.ndarray,
        floating: np.ndarray,
        reference_mask: np.ndarray | None = None,
        floating_mask: np.ndarray | None = None,
        originals: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> RegistrationResult:
        """Floating -> reference: the best-scoring candidate of the cascade (see the module doc).

        Parameters
        ----------
        reference, floating : numpy.ndarray
            ``(H, W)`` or ``(H, W, C)`` CoMIRs with the same ``C``; with ``networks`` K > 1 the
            channels are K networks' equal groups (module doc).
        reference_mask, floating_mask : numpy.ndarray or None, optional
            Boolean ``(H, W)`` valid-pixel masks, given to every stage and the score; None: every
            pixel is valid. Default None.
        originals : tuple of numpy.ndarray or None, optional
            The original reference and floating images on the CoMIRs' grids (the masks apply to them
            too), needed when ``original_keypoints`` is set and unused otherwise. Default None.

        Returns
        -------
        RegistrationResult
            The kept candidate's matrix; ``metric`` its quality score (higher is better); ``message``
            every candidate with its score and the one kept. Failed when every stage fails, no
            candidate overlaps by ``min_overlap``, or the best score is below ``min_quality``.

        Raises
        ------
        ValueError
            If ``original_keypoints`` is set without ``originals``, an original's shape differs from its
            CoMIR's, or the channels do not split into ``networks`` equal groups.
        """
        masks = {"reference_mask": reference_mask, "floating_mask": floating_mask}
        pairs = list(zip(self._per_network(reference, "reference"), self._per_network(floating, "floating")))
        candidates, notes = self._estimates(pairs, masks, originals)
        if not candidates:
            raise RegistrationFailure("every stage failed: " + "; ".join(notes))
        scoring = [self._scoring_images(*pair, masks) for pair in pairs]
        if self.refine != "none":
            refined = [
                self._refined(candidate, network, scoring[network], pairs[network], masks)
                for candidate in candidates
                for network in ([candidate.network] if candidate.network is not None else range(self.networks))
            ]
            candidates += [c for c in refined if c is not None]
        valid = [image.size if mask is None else int(np.count_nonzero(mask))
                 for image, mask in zip(scoring[0], (reference_mask, floating_mask), strict=True)]  # fmt: skip
        min_count = int(math.ceil(float(self.min_overlap) * min(valid)))
        for candidate in candidates:
            scores = [
                overlap_ncc(*images, candidate.matrix, min_count, reference_mask, floating_mask) for images in scoring
            ]
            candidate.quality = float(np.mean(scores))
        # Scores in the message (the per-case CSV: the same for the same inputs); stage times in the job's log.
        log.info("cascade stage seconds: %s", ", ".join(f"{c.label} {c.seconds:.3f}" for c in candidates))
        described = notes + [f"{c.label} {c.quality:.4f}" for c in candidates]
        scored = [c for c in candidates if np.isfinite(c.quality)]
        if not scored:
            raise RegistrationFailure("no candidate overlaps by min_overlap: " + "; ".join(described))
        best = max(scored, key=lambda c: c.quality)
        kept = self._precise(best, scored, floating.shape)
        message = "; ".join(described) + f"; kept {kept.label}"
        if kept is not best:
            message += f" (within {float(self.prefer_originals_px):g} px of {best.label}, the best score)"
        if best.quality < float(self.min_quality):
            raise RegistrationFailure(
                f"best quality {best.quality:.4f} < min_quality {self.min_quality}: {message}", best.quality
            )
        return RegistrationResult(kept.matrix, OK, kept.quality, 0.0, message)

    def _precise(self, best: Candidate, scored: list[Candidate], floating_shape: tuple[int, ...]) -> Candidate:
        """``best``, or the originals' keypoints candidate where it is the same alignment (module doc, stage 4)."""
        original = next((c for c in scored if c.label == "sift-original"), None)
        if original is None or original is best or float(self.prefer_originals_px) <= 0:
            return best
        height, width = floating_shape[:2]
        apart = float(corner_error(original.matrix, best.matrix, width, height))
        return original if apart < float(self.prefer_originals_px) else best


def _mapping(value: Any, name: str) -> dict[str, Any]:
    """A stage's parameters as a dict (YAML gives a mapping or nothing)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a mapping of parameters (or null), got {value!r}")
    return dict(value)


__all__ = ["CascadeRegistration", "Candidate"]
