"""ACCR as a registration method: a trained :class:`~comir.network.accr.model.ACCRNet` on one pair.

docs/explanation/accr.md. Unlike the other methods, ACCR registers the *original* images (the
networks' inputs, :mod:`comir.imaging.preprocess`): its encoders compute the CoMIRs themselves,
so the two images may have different channel counts (each that of its modality's encoder).

1. **Working level**: when the longest side of either image exceeds ``max_px``, both images (and
   their masks) are reduced by the same factor (:class:`comir.imaging.resampling.Resampling`, as
   :mod:`comir.register.coarse_to_fine` does): the attention's memory grows with the square of
   the pixel count. Each is padded at its bottom and right to a multiple of the model's
   :attr:`~comir.network.accr.model.ACCRNet.multiple` (edge values; the padding is invalid).
2. **The model**: its transform (rigid or affine) of the working images, valid-pixel masks
   honoured (a token counts where half its pixels are valid: invalid reference tokens get no
   weight in the fit, invalid floating tokens are not attended to). With several
   ``start_angles_deg``, the floating image (and its mask) is first rotated about its centre by
   each angle (the corners it loses become invalid) and the answer with the largest support is
   kept, composed with its start: the tokens are not rotation invariant, and the head registers
   rotations of the order it was trained on.
3. **Refinement** (``refine: ecc``): the cascade's ECC step
   (:func:`comir.register.fft_search.ecc_refine`) from the model's estimate on the model's own
   CoMIRs at the working level (reduced to one channel, masks honoured); where ECC fails the
   estimate is kept and the message says so.

The matrix is mapped back to the original grids (:func:`comir.imaging.resampling.to_original_grids`).
With ``field`` the result also carries the model's displacement field (per reference token its
correspondence where it is confident and within a token of the fitted transform, the transform
elsewhere; :mod:`comir.network.accr`)
carried to the original grids (:func:`comir.deformation.affine.field_between_grids`), ECC's
correction of the transform added to it (the field of the refined matrix minus that of the
model's): the total mapping a deformation test set scores (:func:`comir.register.cases.register_cases`).
``metric`` is the confidence-weighted RMS distance (original px) between the reference tokens and
where the model's matrix sends their soft correspondences: how well one transform explains the
attention (lower is better). The model's support (:attr:`~comir.network.accr.model.ACCROutput.support`:
the summed confidence of the tokens that agree with its matrix within a token) below
``min_support`` is a registration failure, as is a pair with a constant image, or without a
valid token on either side; images whose channels do not match the encoders are a
:class:`ValueError`. It is the registration method ``accr`` of
:data:`comir.register.MODEL_METHODS`: the job gives it its model file and the reference slot
(:func:`comir.register.with_model`); its results are deterministic (no seed).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from comir import geometry as g
from comir.deformation.affine import affine_to_field, field_between_grids
from comir.imaging.masks import working_mask
from comir.imaging.resampling import Resampling, to_original_grids
from comir.network.accr.checkpoint import load_accr
from comir.network.accr.geometry import token_centres, token_validity
from comir.network.accr.model import ENCODER_SLOTS, ACCRNet, ACCROutput
from comir.network.device import resolve_device
from comir.register.base import (
    OK,
    RegistrationFailure,
    RegistrationResult,
    check_image,
    check_mask,
    fill_invalid,
    require_variation,
    timed,
    to_single_channel,
    warp_with_validity,
)
from comir.register.fft_search import ecc_refine

#: Refinements after the model: the cascade's ECC, or none.
ACCR_REFINEMENTS: tuple[str, ...] = ("none", "ecc")


def check_images(reference: np.ndarray, floating: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image checked as :func:`comir.register.base.check_image` does; their channel counts may differ.

    Parameters
    ----------
    reference, floating : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` images.

    Returns
    -------
    tuple of numpy.ndarray
        ``(reference, floating)`` as float32.

    Raises
    ------
    ValueError
        If an image is malformed (:func:`comir.register.base.check_image`).
    """
    return check_image(reference, "reference"), check_image(floating, "floating")


@dataclass(frozen=True)
class ACCRAttention:
    """Where the reference's tokens attend in the floating image, in the original images' pixels.

    Attributes
    ----------
    weights : numpy.ndarray
        ``(L_r, L_f)`` float32: each reference token's attention over the floating tokens
        (averaged over the heads; rows sum to 1).
    reference_points, floating_points : numpy.ndarray
        ``(L_r, 2)`` and ``(L_f, 2)``: the tokens' centres (x, y), row by row of their grids.
    correspondences : numpy.ndarray
        ``(L_r, 2)``: each reference token's correspondence (x, y) in the floating image, as the
        model fits it (:func:`comir.network.accr.geometry.local_soft_argmax`).
    floating_grid : tuple of int
        ``(rows, columns)`` of the floating tokens.
    """

    weights: np.ndarray
    reference_points: np.ndarray
    floating_points: np.ndarray
    correspondences: np.ndarray
    floating_grid: tuple[int, int]


@dataclass
class _Prediction:
    """The model's output on one pair at the working level, and what maps it back."""

    output: ACCROutput
    factor: float  # original px per working px
    levels: tuple[Resampling, Resampling]
    masks: tuple[np.ndarray | None, np.ndarray | None]  # working-level valid pixels, unpadded


@dataclass
class ACCRRegistration:
    """A trained ACCR model as a registration method (module doc).

    Parameters
    ----------
    model : ACCRNet or str or os.PathLike
        The trained model (:func:`comir.training.accr.train_registration_head`), or its model file
        (:func:`comir.network.accr.checkpoint.load_accr`, rule train_accr); moved to ``device`` and
        put in eval mode.
    reference_slot : str
        The reference image's modality (``"A"`` or ``"B"``); the floating image is the other one.
    max_px : int
        Longest image side at the working level (step 1).
    refine : str
        ``"none"`` or ``"ecc"`` (step 3).
    iterations : int
        ECC's iterations (with ``refine: ecc``).
    start_angles_deg : tuple of float
        Rotations (degrees) of the floating image to start from (step 2); ``(0,)``: the image as given.
    min_support : float
        The least support (tokens' worth of confidence agreeing with the model's matrix, module
        doc) of an answer; below it the pair is a failure. 0: every finite answer is kept.
    field : bool or None
        Whether the result carries the model's displacement field on the original reference grid
        (module doc); ``None``: the model's :attr:`~comir.network.accr.model.ACCRConfig.field`.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    threads : int
        PyTorch's CPU threads (the job's; set for the process).
    """

    name: ClassVar[str] = "accr"
    colour_input: ClassVar[bool] = True  # comir.register.cases: each original with its channels, no PCA

    model: ACCRNet | str | os.PathLike[str]
    reference_slot: str = "A"
    max_px: int = 256
    refine: str = "none"
    iterations: int = 50
    start_angles_deg: tuple[float, ...] = (0.0,)
    min_support: float = 8.0
    field: bool | None = None
    device: str = "cpu"
    threads: int = 1

    def __post_init__(self) -> None:
        if self.reference_slot not in ENCODER_SLOTS:
            raise ValueError(f"reference_slot must be one of {ENCODER_SLOTS}, got {self.reference_slot!r}")
        if int(self.threads) < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        self._device = resolve_device(self.device)
        if self._device.type == "cpu":
            torch.set_num_threads(int(self.threads))
        if not isinstance(self.model, ACCRNet):
            self.model = load_accr(Path(self.model), self._device)[0]
        if int(self.max_px) < self.model.multiple:
            raise ValueError(f"max_px must be >= the model's multiple {self.model.multiple}, got {self.max_px}")
        if self.refine not in ACCR_REFINEMENTS:
            raise ValueError(f"refine must be one of {ACCR_REFINEMENTS}, got {self.refine!r}")
        if int(self.iterations) < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        self.start_angles_deg = tuple(float(angle) for angle in np.atleast_1d(self.start_angles_deg))
        if not self.start_angles_deg or not all(math.isfinite(angle) for angle in self.start_angles_deg):
            raise ValueError(f"start_angles_deg must be finite angles, at least one, got {self.start_angles_deg}")
        if not float(self.min_support) >= 0:
            raise ValueError(f"min_support must be >= 0, got {self.min_support}")
        if self.field is None:
            self.field = bool(self.model.config.field)
        if not isinstance(self.field, bool):
            raise ValueError(f"field must be true or false, got {self.field!r}")
        self.model.to(self._device).eval()

    @property
    def transform(self) -> str:
        """The model's transform model: ``"rigid"`` or ``"affine"``."""
        return self.model.config.transform

    @timed(check=check_images)
    def register(
        self,
        reference: np.ndarray,
        floating: np.ndarray,
        reference_mask: np.ndarray | None = None,
        floating_mask: np.ndarray | None = None,
    ) -> RegistrationResult:
        """The floating -> reference matrix of the model (refined with ``refine: ecc``), or a failed result.

        Parameters
        ----------
        reference : numpy.ndarray
            ``(H, W)`` or ``(H, W, C)`` original reference image, ``C`` that of its slot's encoder.
        floating : numpy.ndarray
            ``(H, W)`` or ``(H, W, C)`` original floating image, ``C`` that of the other slot's encoder.
        reference_mask, floating_mask : numpy.ndarray or None, optional
            Boolean ``(H, W)`` valid-pixel masks; None: every pixel is valid. Default None.

        Returns
        -------
        RegistrationResult
            The 2x3 transform floating -> reference on the original grids; ``metric`` the
            confidence-weighted RMS residual in original pixels (module doc); with ``field`` the
            model's displacement field on the reference grid.

        Raises
        ------
        ValueError
            If an image is malformed or its channels do not match its encoder.
        """
        starts, moved = [], []
        for angle in self.start_angles_deg:
            start = g.rigid_matrix(math.radians(angle), 0.0, 0.0, center=tuple(g.image_center(floating.shape)))
            image, mask = floating, floating_mask
            if angle:
                valid = None if floating_mask is None else floating_mask.astype(np.float32)
                image, mask = warp_with_validity(floating, start, floating.shape[1::-1], valid)
            starts.append(start)
            moved.append((image, mask))
        best: tuple[float, float, np.ndarray, _Prediction] | None = None
        predictions = self._predict(reference, reference_mask, moved)
        for angle, start, prediction in zip(self.start_angles_deg, starts, predictions):
            if best is None or float(prediction.output.support[0]) > best[0]:
                best = (float(prediction.output.support[0]), angle, start, prediction)
        _, angle, start, prediction = best
        output, factor = prediction.output, prediction.factor
        matrix = output.matrix[0].double().cpu().numpy()
        if not np.all(np.isfinite(matrix)):
            raise RegistrationFailure("the ACCR head's fit is not finite")
        support = float(output.support[0])
        if support < self.min_support:
            raise RegistrationFailure(
                f"the ACCR model's support is {support:.1f} tokens, below min_support {self.min_support:g}: "
                "too few tokens agree with its transform"
            )
        correspondences = output.correspondences[0].double().cpu().numpy()
        weights = output.confidence[0].double().cpu().numpy()
        patch = self.model.config.patch
        queries = token_centres(output.reference_grid, patch, patch).double().numpy()
        squared = np.sum((g.apply(matrix, correspondences) - queries) ** 2, axis=1)
        residual = math.sqrt(float(np.sum(weights * squared) / max(float(np.sum(weights)), 1e-12))) * factor
        note = f"{self.transform} fit at 1/{factor:.2f}, support {support:.1f} of {np.count_nonzero(weights)} tokens"
        if len(self.start_angles_deg) > 1:
            note += f" from the start at {angle:g} deg"
        fitted = matrix
        if self.refine == "ecc":
            refined = self._ecc(prediction, matrix)
            note += "; ECC failed, the model's estimate kept" if refined is None else "; refined by ECC"
            matrix = matrix if refined is None else refined
        field = None
        if self.field:
            field = self._original_field(prediction, fitted, matrix, start, reference.shape)
            note += "; with the model's displacement field"
        matrix = g.compose(to_original_grids(matrix, *prediction.levels), start)
        return RegistrationResult(matrix, OK, residual, 0.0, note, field)

    def attention(
        self,
        reference: np.ndarray,
        floating: np.ndarray,
        reference_mask: np.ndarray | None = None,
        floating_mask: np.ndarray | None = None,
    ) -> ACCRAttention:
        """The model's attention on a pair, for :func:`comir.evaluate.attention.plot_attention`.

        Parameters
        ----------
        reference, floating : numpy.ndarray
            The original images, as :meth:`register` takes them.
        reference_mask, floating_mask : numpy.ndarray or None, optional
            Boolean ``(H, W)`` valid-pixel masks; None: every pixel is valid. Default None.

        Returns
        -------
        ACCRAttention
            The attention weights and the tokens' centres in original pixels.

        Raises
        ------
        RegistrationFailure
            For a pair it cannot register (a constant image, no half-valid token, an empty mask).
        ValueError
            If an image is malformed or its channels do not match its encoder.
        """
        reference, floating = check_images(reference, floating)
        masks = check_mask(reference_mask, reference, "reference"), check_mask(floating_mask, floating, "floating")
        (prediction,) = self._predict(reference, masks[0], [(floating, masks[1])])
        output, (reference_level, floating_level) = prediction.output, prediction.levels
        config = self.model.config
        # Working pixels back to original pixels (the resampling's inverse map).
        to_reference = g.invert(reference_level.matrix)
        to_floating = g.invert(floating_level.matrix)
        reference_points = token_centres(output.reference_grid, config.patch, config.patch).double().numpy()
        floating_points = token_centres(output.floating_grid, config.key_stride, config.patch).double().numpy()
        return ACCRAttention(
            weights=output.attention[0].float().mean(dim=0).cpu().numpy(),
            reference_points=g.apply(to_reference, reference_points),
            floating_points=g.apply(to_floating, floating_points),
            correspondences=g.apply(to_floating, output.correspondences[0].double().cpu().numpy()),
            floating_grid=output.floating_grid,
        )

    def _predict(
        self,
        reference: np.ndarray,
        reference_mask: np.ndarray | None,
        floating: Sequence[tuple[np.ndarray, np.ndarray | None]],
    ) -> Iterator[_Prediction]:
        """Steps 1 and 2 of the module doc on checked images: the reference against each floating image.

        ``floating``: images of one shape with their masks (the start angles' rotations). The
        reference's CoMIR is computed once; a prediction is made when the next one is asked for.
        """
        for image, mask in floating:
            require_variation(reference, image, (reference_mask, mask), "the attention has nothing to match and ")
        sides = max(max(image.shape[:2]) for image in (reference, *(image for image, _ in floating)))
        factor = max(1.0, sides / float(self.max_px))
        slots = (self.reference_slot, ENCODER_SLOTS[1 - ENCODER_SLOTS.index(self.reference_slot)])
        reference_level = Resampling.between(reference.shape, 1.0, factor)
        reference_input, reference_valid, reference_working = self._network_input(
            "reference", reference, reference_mask, reference_level, slots[0]
        )
        with torch.no_grad():
            reference_comir = self.model.encoders[slots[0]](reference_input)
        for image, mask in floating:
            level = Resampling.between(image.shape, 1.0, factor)
            floating_input, floating_valid, floating_working = self._network_input(
                "floating", image, mask, level, slots[1]
            )
            with torch.no_grad():
                floating_comir = self.model.encoders[slots[1]](floating_input)
                output = self.model.match(reference_comir, floating_comir, reference_valid, floating_valid, self.field)
            yield _Prediction(output, factor, (reference_level, level), (reference_working, floating_working))

    def _network_input(
        self, role: str, image: np.ndarray, mask: np.ndarray | None, level: Resampling, slot: str
    ) -> tuple[torch.Tensor, torch.Tensor | None, np.ndarray | None]:
        """One image as its encoder's input at the working level: padded tensor, its valid pixels, its working mask.

        Raises ValueError when the image's channels are not the encoder's, and RegistrationFailure
        when no token of the image is half valid.
        """
        expected = self.model.encoders[slot].config.in_channels
        channels = 1 if image.ndim == 2 else image.shape[2]
        if channels != expected:
            raise ValueError(f"the {role} image has {channels} channel(s); slot {slot}'s encoder takes {expected}")
        working = working_mask(mask, level.working_shape, 0.0)
        tensor, valid = self._padded(level.apply(np.atleast_3d(image).transpose(2, 0, 1)), working)
        config = self.model.config
        stride = config.patch if role == "reference" else config.key_stride
        if valid is not None and not token_validity(valid, config.patch, stride).any():
            raise RegistrationFailure(f"the {role} image has no token ({config.patch} px) that is half valid")
        return tensor, valid, working

    def _padded(self, image: np.ndarray, valid: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A working image ``(C, h, w)`` padded to the model's multiple, as a batch of one, and its valid pixels.

        The valid pixels: ``None`` where every pixel is valid and nothing is padded.
        """
        _, height, width = image.shape
        multiple = self.model.multiple
        pad = ((0, 0), (0, -height % multiple), (0, -width % multiple))
        tensor = torch.from_numpy(np.pad(image, pad, mode="edge")).to(self._device)[None]
        if valid is None and not any(after for _, after in pad):
            return tensor, None
        mask = np.ones((height, width), bool) if valid is None else valid
        return tensor, torch.from_numpy(np.pad(mask, pad[1:], constant_values=False)).to(self._device)[None]

    def _original_field(
        self,
        prediction: _Prediction,
        fitted: np.ndarray,
        final: np.ndarray,
        start: np.ndarray,
        shape: tuple[int, ...],
    ) -> np.ndarray:
        """The model's field (padded working grids) on the original reference grid ``shape`` (module doc).

        ``fitted`` is the model's working-level matrix, ``final`` the refined one (or the same);
        ``start`` the rotation of the floating image the prediction started from.
        """
        working = prediction.output.field[0].double().cpu().numpy()
        if final is not fitted:  # ECC's correction of the transform, the field's own deviations kept
            working = working + affine_to_field(final, working.shape) - affine_to_field(fitted, working.shape)
        if not np.all(np.isfinite(working)):
            raise RegistrationFailure("the ACCR model's displacement field is not finite")
        reference_level, floating_level = prediction.levels
        to_original = g.compose(g.invert(start), g.invert(floating_level.matrix))
        return field_between_grids(working, reference_level.matrix, to_original, shape)

    def _ecc(self, prediction: _Prediction, matrix: np.ndarray) -> np.ndarray | None:
        """ECC from ``matrix`` on the model's CoMIRs of the working images (unpadded), or ``None`` if it fails."""
        single, basis = [], None
        for comir, level, mask in zip(prediction.output.representations, prediction.levels, prediction.masks):
            height, width = level.working_shape
            array = comir[0, :, :height, :width].float().cpu().numpy().transpose(1, 2, 0)
            # The floating CoMIR is projected on the reference's basis, as the cascade does.
            reduced, basis = to_single_channel(fill_invalid(array, mask), basis)
            single.append(reduced)
        return ecc_refine(single[0], single[1], matrix, self.iterations, self.transform, prediction.masks)


__all__ = ["ACCRAttention", "ACCRRegistration", "ACCR_REFINEMENTS", "check_images"]
