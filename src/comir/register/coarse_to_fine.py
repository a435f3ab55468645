"""Large images: any method at a coarse level, then block matching at full resolution (docs/method.md, section 13).

A registration of two images of several thousand pixels at full resolution
costs memory in proportion to the image (measured: docs/results/apply.md, "a large
pair with zero-filled borders") although the transform has 3 to 6 numbers.
:class:`CoarseToFine` wraps a method:

1. **Coarse level.** When the longest side of either image exceeds ``max_px``,
   both images (and their masks) are reduced by the same factor
   ``f = longest side / max_px`` (area averaging; a coarse pixel is valid when
   every pixel it averages is) and the method registers them; the transform is
   mapped back to the original grids (:func:`comir.imaging.resampling.to_original_grids`).
   Below ``max_px`` the method runs on the images as they are and nothing else
   happens.
2. **Blocks at full resolution.** The floating image is cut into a grid of
   ``block_px`` blocks; of those that are valid (inside its mask) and land
   inside the reference at the coarse estimate, the ``blocks`` with the most
   texture (standard deviation) are kept.  Each is warped by the estimate into
   a ``block_px`` square of the reference grid (only that square is computed)
   and matched against the reference window around it by masked normalised
   cross-correlation over every shift of at most ``search_px`` (default
   ``3 f + 2`` px: the coarse level's error in full-resolution pixels), with a
   sub-pixel peak (:func:`comir.register.fft_search.peak_lags`).
3. **Fit.** The block centres and their matched positions are correspondences;
   the transform model (rigid, similarity or affine) is fitted to them by the
   RANSAC of the SIFT method (``max_error_px``) and a least-squares refit on
   the inliers.  The refined transform replaces the estimate when at least
   half of the matched blocks (and at least ``min_blocks``) agree with it;
   otherwise the coarse estimate is kept and the message says why.

Memory is then that of the two images and a few copies of them (single
channel, float32), plus per-block arrays; the coarse method's own work is
bounded by ``max_px``.  ``metric`` is the coarse method's metric; the message
gives the coarse factor, the method's message and the block fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from comir import geometry as g
from comir.imaging.masks import working_mask
from comir.imaging.resampling import Resampling, to_original_grids
from comir.register.base import OK, Registration, RegistrationResult, fill_invalid, timed, to_single_channel
from comir.register.fft_scores import masked_ncc
from comir.register.fft_search import peak_lags
from comir.register.sift import MINIMAL_SAMPLES, ransac_fit

# The apply stage's default max_px: the largest image side registered in one piece.
REGISTER_MAX_PX = 2048
# Least correlation of a matched block for it to count as a correspondence.
MIN_BLOCK_NCC = 0.3


def _channels_first(image: np.ndarray) -> np.ndarray:
    return image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)


def _channels_last(image: np.ndarray, like: np.ndarray) -> np.ndarray:
    return image[0] if like.ndim == 2 else np.moveaxis(image, 0, -1)


@dataclass
class CoarseToFine:
    """``method`` at a level of at most ``max_px`` px, then full-resolution block matching (module doc).

    ``block_px``: side of the blocks; ``blocks``: most textured blocks matched;
    ``search_px``: largest shift searched per block (None: ``3 f + 2``);
    ``max_error_px``: RANSAC tolerance of the block fit; ``min_blocks``: least
    agreeing blocks for the fit to replace the coarse estimate; ``transform``:
    the model fitted (the coarse method's own); ``seed``: the RANSAC sampling.
    """

    name: ClassVar[str] = "coarse_to_fine"

    method: Registration
    max_px: int = REGISTER_MAX_PX
    block_px: int = 128
    blocks: int = 32
    search_px: int | None = None
    max_error_px: float = 2.0
    min_blocks: int = 6
    transform: str = "rigid"
    seed: int = 0

    def __post_init__(self) -> None:
        g.check_transform(self.transform)
        if int(self.max_px) < 64:
            raise ValueError(f"max_px must be >= 64, got {self.max_px}")
        if int(self.block_px) < 16 or int(self.blocks) < 1:
            raise ValueError(f"block_px must be >= 16 and blocks >= 1, got {self.block_px}, {self.blocks}")
        if self.search_px is not None and int(self.search_px) < 1:
            raise ValueError(f"search_px must be >= 1 (or None), got {self.search_px}")
        if int(self.min_blocks) < MINIMAL_SAMPLES[self.transform] + 1:
            raise ValueError(f"min_blocks must be > {MINIMAL_SAMPLES[self.transform]} for a {self.transform} fit")

    @property
    def wants_originals(self) -> bool:
        """Whether the wrapped method uses the original images besides the CoMIRs (``originals``)."""
        return bool(getattr(self.method, "wants_originals", False))

    def factor(self, *shapes: tuple[int, ...]) -> float:
        """The coarse level's reduction factor for images of ``shapes`` (1: registered as they are)."""
        return max(1.0, max(max(shape[:2]) for shape in shapes) / float(self.max_px))

    @timed
    def register(
        self,
        reference: np.ndarray,
        floating: np.ndarray,
        reference_mask: np.ndarray | None = None,
        floating_mask: np.ndarray | None = None,
        originals: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> RegistrationResult:
        """Floating -> reference: the method at the coarse level, refined by blocks at full resolution.

        Images whose longest side is at most ``max_px`` go to the method as they are.

        Parameters
        ----------
        reference, floating : numpy.ndarray
            ``(H, W)`` or ``(H, W, C)`` images with the same ``C``.
        reference_mask, floating_mask : numpy.ndarray or None, optional
            Boolean ``(H, W)`` valid-pixel masks (reduced with the images at the coarse level); None:
            every pixel is valid. Default None.
        originals : tuple of numpy.ndarray or None, optional
            The original images on the same grids; they go to a method that wants them
            (``wants_originals``), reduced like the images. Default None.

        Returns
        -------
        RegistrationResult
            The refined (or the coarse) floating -> reference transform on the original grids;
            ``metric`` the coarse method's; failed when the coarse method fails.
        """
        masks = {"reference_mask": reference_mask, "floating_mask": floating_mask}
        extra = {"originals": originals} if self.wants_originals else {}
        factor = self.factor(reference.shape, floating.shape)
        if factor == 1.0:
            return self.method.register(reference, floating, **masks, **extra)
        levels = [Resampling.between(image.shape, 1.0, factor) for image in (reference, floating)]

        def reduced(images: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
            return [
                _channels_last(level.apply(_channels_first(image)), image)
                for level, image in zip(levels, images, strict=True)
            ]

        coarse_masks = {
            key: working_mask(mask, level.working_shape, 0.0)
            for (key, mask), level in zip(masks.items(), levels, strict=True)
        }
        if extra and originals is not None:
            extra = {"originals": tuple(reduced(originals))}
        coarse = self.method.register(*reduced((reference, floating)), **coarse_masks, **extra)
        note = f"coarse level 1/{factor:.2f}: {coarse.message}"
        if not coarse.ok:
            return RegistrationResult.failed(note, metric=coarse.metric)
        estimate = to_original_grids(coarse.matrix, levels[0], levels[1])
        matrix, fit = self.refine(reference, floating, estimate, factor, reference_mask, floating_mask)
        return RegistrationResult(matrix, OK, coarse.metric, 0.0, f"{note}; {fit}")

    def refine(
        self,
        reference: np.ndarray,
        floating: np.ndarray,
        estimate: np.ndarray,
        factor: float,
        reference_mask: np.ndarray | None = None,
        floating_mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, str]:
        """``estimate`` refined by block matching at full resolution, or kept; with a note saying which.

        Parameters
        ----------
        reference, floating : numpy.ndarray
            ``(H, W)`` or ``(H, W, C)`` full-resolution images (reduced to one channel, the floating
            image with the reference's basis).
        estimate : numpy.ndarray
            The coarse 2x3 floating -> reference transform on the full-resolution grids.
        factor : float
            The coarse level's reduction factor (sets the default search, ``3 f + 2`` px).
        reference_mask, floating_mask : numpy.ndarray or None, optional
            Boolean ``(H, W)`` valid-pixel masks. Default None.

        Returns
        -------
        matrix : numpy.ndarray
            The block fit's 2x3 transform, or ``estimate`` when fewer than ``min_blocks`` blocks match
            or fewer than half of them (and ``min_blocks``) agree.
        note : str
            What happened, for the result's message.
        """
        ref, basis = to_single_channel(fill_invalid(reference, reference_mask))
        flo, _ = to_single_channel(fill_invalid(floating, floating_mask), basis)
        search = int(self.search_px) if self.search_px is not None else int(math.ceil(3 * factor)) + 2
        origins, centres = self._blocks(ref, flo, estimate, search, reference_mask, floating_mask)
        sources, targets = [], []
        lags = (np.arange(2 * search + 1), np.arange(2 * search + 1))
        side = int(self.block_px)
        valid = None if floating_mask is None else floating_mask.astype(np.float32)
        for origin, centre in zip(origins, centres, strict=True):
            # Floating pixels -> the block's square of the reference grid, whose corner is `origin`.
            to_block = g.compose(g.rigid_matrix(0.0, *(-origin)), estimate)
            moving, moving_valid = _warp_block(flo, valid, to_block, side)
            top, left = origin[1] - search, origin[0] - search
            window = ref[top : top + side + 2 * search, left : left + side + 2 * search]
            window_valid = None if reference_mask is None else reference_mask[
                top : top + side + 2 * search, left : left + side + 2 * search
            ]  # fmt: skip
            scores = masked_ncc(window, moving, window_valid, moving_valid, side * side // 2, lags)
            best, lag = peak_lags(scores)
            if np.isfinite(best) and best >= MIN_BLOCK_NCC:
                sources.append(centre)
                targets.append(g.apply(estimate, centre[None])[0] + (lag - search))
        matched = len(sources)
        if matched < int(self.min_blocks):
            note = f"blocks: {matched} of {len(origins)} matched (need {self.min_blocks}); coarse estimate kept"
            return estimate, note
        rng = np.random.default_rng(self.seed)
        matrix, inliers = ransac_fit(
            np.array(sources), np.array(targets), 1000, float(self.max_error_px), rng, self.transform
        )
        agreeing = int(np.count_nonzero(inliers))
        if agreeing < max(int(self.min_blocks), (matched + 1) // 2):
            return estimate, f"blocks: only {agreeing} of {matched} matched blocks agree; coarse estimate kept"
        moved = float(g.corner_error(matrix, estimate, flo.shape[1], flo.shape[0]))
        return matrix, f"refined by {agreeing} of {matched} blocks ({side} px, +-{search} px; moved {moved:.2f} px)"

    def _blocks(
        self,
        ref: np.ndarray,
        flo: np.ndarray,
        estimate: np.ndarray,
        search: int,
        reference_mask: np.ndarray | None,
        floating_mask: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Integer reference-grid corners ``(x, y)`` and floating centres of the blocks, most texture first."""
        side = int(self.block_px)
        rows, cols = flo.shape[0] // side, flo.shape[1] // side
        if rows == 0 or cols == 0:
            return np.empty((0, 2), int), np.empty((0, 2))
        tiles = flo[: rows * side, : cols * side].reshape(rows, side, cols, side)
        texture = tiles.std(axis=(1, 3)).ravel()
        keep = texture > 0
        if floating_mask is not None:
            keep &= floating_mask[: rows * side, : cols * side].reshape(rows, side, cols, side).all(axis=(1, 3)).ravel()
        yy, xx = np.mgrid[:rows, :cols]
        centres = np.stack([xx.ravel(), yy.ravel()], axis=1) * side + (side - 1) / 2.0
        origins = np.rint(g.apply(estimate, centres) - (side - 1) / 2.0).astype(int)
        height, width = ref.shape
        keep &= (origins[:, 0] >= search) & (origins[:, 1] >= search)
        keep &= (origins[:, 0] + side + search <= width) & (origins[:, 1] + side + search <= height)
        if reference_mask is not None:
            inside = np.clip(origins + side // 2, 0, [width - 1, height - 1])
            keep &= reference_mask[inside[:, 1], inside[:, 0]]
        chosen = np.flatnonzero(keep)
        chosen = chosen[np.argsort(-texture[chosen], kind="stable")][: int(self.blocks)]
        return origins[chosen], centres[chosen]


def _warp_block(
    image: np.ndarray, valid: np.ndarray | None, matrix: np.ndarray, side: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``side`` px square of ``image`` warped by ``matrix`` and where it is valid.

    Valid: read from inside the image (computed from the geometry, no full-size
    array) and, with ``valid`` (the mask as float32 0/1), from valid pixels only.
    """
    import cv2

    size = (side, side)
    block = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    yy, xx = np.mgrid[:side, :side]
    source = g.apply(g.invert(matrix), np.stack([xx.ravel(), yy.ravel()], axis=1).astype(float))
    height, width = image.shape
    inside = ((source[:, 0] >= 0) & (source[:, 0] <= width - 1) & (source[:, 1] >= 0) & (source[:, 1] <= height - 1))
    inside = inside.reshape(side, side)
    if valid is not None:
        inside &= cv2.warpAffine(valid, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) >= 0.999
    return block, inside


def coarse_to_fine(method: Registration, max_px: int | None, transform: str, seed: int, **options: Any) -> Registration:
    """``method`` wrapped in :class:`CoarseToFine` at ``max_px``, or as it is when ``max_px`` is None.

    Parameters
    ----------
    method : Registration
        The method to wrap.
    max_px : int or None
        The coarse level's longest side; None: no wrapping.
    transform : str
        The model of the block fit (the method's own).
    seed : int
        The seed of the block fit's RANSAC.
    **options : Any
        Further :class:`CoarseToFine` fields (``block_px``, ``blocks``, ...).

    Returns
    -------
    Registration
        The wrapped (or the same) method.

    Raises
    ------
    ValueError
        For a field out of its range (:class:`CoarseToFine`).
    """
    if max_px is None:
        return method
    return CoarseToFine(method, int(max_px), transform=transform, seed=seed, **options)


__all__ = ["MIN_BLOCK_NCC", "REGISTER_MAX_PX", "CoarseToFine", "coarse_to_fine"]
