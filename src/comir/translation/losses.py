"""Loss terms of the GAN translation baselines (docs/translation.md, section 3).

Every function computes in float32 (float64 if given float64) with autocast
disabled, whatever context it is called in: under mixed precision the networks'
outputs arrive in bfloat16/float16 and are cast up first. Means are over all
elements unless said otherwise.

* pix2pix, CycleGAN: :func:`adversarial_loss` (``"lsgan"``: squared error to the
  target, Mao et al.; ``"vanilla"``: binary cross-entropy on logits),
  :func:`discriminator_loss`, :func:`l1_loss`, :func:`cycle_consistency_loss`,
  :func:`identity_loss`.
* DRIT (concatenation variant with mode seeking, the published default):
  :func:`adversarial_loss` in ``"vanilla"`` mode, :func:`attribute_kl_loss`,
  :func:`content_l2_loss`, :func:`content_discriminator_loss`,
  :func:`content_adversarial_loss`, :func:`latent_regression_loss`,
  :func:`mode_seeking_loss`, and :func:`l1_loss` for its reconstructions.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from typing import ParamSpec, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

GAN_MODES: tuple[str, ...] = ("lsgan", "vanilla")
# DRIT's mode-seeking term divides by a distance ratio; this keeps it finite (the published value).
MODE_SEEKING_EPS = 1e-5

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _to_float32(value: object) -> object:
    """Tensors (also inside lists and tuples) at least float32; anything else unchanged."""
    if isinstance(value, Tensor):
        return value.to(torch.promote_types(value.dtype, torch.float32))
    if isinstance(value, list | tuple):
        return type(value)(_to_float32(item) for item in value)
    return value


def _first_tensor(values: Sequence[object]) -> Tensor:
    for value in values:
        if isinstance(value, Tensor):
            return value
        if isinstance(value, list | tuple) and value:
            return _first_tensor(value)
    raise TypeError("a loss needs at least one tensor argument")


def _float32_loss(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``function`` with autocast off on its tensors' device type and its tensor arguments cast to float32.

    Casting up is not enough on its own: under autocast, reductions and matmuls
    inside the loss would be re-cast to half precision.
    """

    @functools.wraps(function)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        device_type = _first_tensor(args).device.type
        context = (
            torch.autocast(device_type=device_type, enabled=False)
            if torch.amp.is_autocast_available(device_type)
            else contextlib.nullcontext()
        )
        with context:
            cast_args = [_to_float32(arg) for arg in args]
            cast_kwargs = {name: _to_float32(value) for name, value in kwargs.items()}
            return function(*cast_args, **cast_kwargs)

    return wrapper


def _as_list(predictions: Tensor | Sequence[Tensor]) -> list[Tensor]:
    return [predictions] if isinstance(predictions, Tensor) else list(predictions)


@_float32_loss
def adversarial_loss(predictions: Tensor | Sequence[Tensor], target: float, mode: str = "lsgan") -> Tensor:
    """GAN loss of discriminator outputs against a constant ``target`` (1 real, 0 fake).

    ``"lsgan"``: ``mean((D - target)^2)``; ``"vanilla"``: binary cross-entropy of
    ``sigmoid(D)`` (``D`` are logits) with ``target``. A sequence of outputs (one per
    scale of a multi-scale discriminator) gives the sum of their losses, as DRIT does.

    Parameters
    ----------
    predictions : torch.Tensor or Sequence[torch.Tensor]
        Discriminator outputs (logits), or one per scale.
    target : float
        The constant label: 1 real, 0 fake (DRIT's content adversarial loss uses 0.5).
    mode : str, optional
        ``"lsgan"`` or ``"vanilla"`` (:data:`GAN_MODES`). Default ``"lsgan"``.

    Returns
    -------
    torch.Tensor
        Scalar loss, float32 (float64 for float64 input).

    Raises
    ------
    ValueError
        If ``mode`` is unknown, or ``predictions`` is an empty sequence.
    """
    if mode not in GAN_MODES:
        raise ValueError(f"unknown GAN mode {mode!r}; expected one of {GAN_MODES}")
    total = None
    for prediction in _as_list(predictions):
        goal = torch.full_like(prediction, target)
        term = F.mse_loss(prediction, goal) if mode == "lsgan" else F.binary_cross_entropy_with_logits(prediction, goal)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("adversarial_loss needs at least one prediction")
    return total


def discriminator_loss(
    real_predictions: Tensor | Sequence[Tensor],
    fake_predictions: Tensor | Sequence[Tensor],
    mode: str = "lsgan",
    weight: float = 0.5,
) -> Tensor:
    """``weight * (adversarial(real, 1) + adversarial(fake, 0))``.

    pix2pix and CycleGAN halve the sum (``weight=0.5``) "to slow down the
    discriminator"; DRIT does not (``weight=1``).

    Parameters
    ----------
    real_predictions : torch.Tensor or Sequence[torch.Tensor]
        The discriminator's outputs on real images (labelled 1).
    fake_predictions : torch.Tensor or Sequence[torch.Tensor]
        Its outputs on generated images (labelled 0).
    mode : str, optional
        ``"lsgan"`` or ``"vanilla"`` (:func:`adversarial_loss`). Default ``"lsgan"``.
    weight : float, optional
        Factor of the sum. Default 0.5.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    return weight * (adversarial_loss(real_predictions, 1.0, mode) + adversarial_loss(fake_predictions, 0.0, mode))


@_float32_loss
def l1_loss(output: Tensor, target: Tensor) -> Tensor:
    """``mean(|output - target|)``: pix2pix's L1 term and DRIT's reconstruction terms.

    Parameters
    ----------
    output : torch.Tensor
        The generated images.
    target : torch.Tensor
        The images they should equal, same shape.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    return (output - target).abs().mean()


def cycle_consistency_loss(reconstruction: Tensor, original: Tensor) -> Tensor:
    """CycleGAN's cycle term for one domain: ``mean(|F(G(x)) - x|)``.

    Parameters
    ----------
    reconstruction : torch.Tensor
        ``F(G(x))``, the image translated there and back.
    original : torch.Tensor
        ``x``, same shape.

    Returns
    -------
    torch.Tensor
        Scalar loss (:func:`l1_loss`).
    """
    return l1_loss(reconstruction, original)


def identity_loss(output: Tensor, original: Tensor) -> Tensor:
    """CycleGAN's identity term: ``mean(|G(y) - y|)`` for a generator ``G: X -> Y`` fed an image ``y`` of ``Y``.

    Only defined when X and Y have the same number of channels (``G`` must accept
    ``y``); with different counts there is nothing to compare and this raises.
    :class:`comir.translation.cyclegan.CycleGAN` skips the term in that case.

    Parameters
    ----------
    output : torch.Tensor
        ``G(y)``.
    original : torch.Tensor
        ``y``.

    Returns
    -------
    torch.Tensor
        Scalar loss (:func:`l1_loss`).

    Raises
    ------
    ValueError
        If ``output`` and ``original`` differ in shape.
    """
    if output.shape != original.shape:
        raise ValueError(
            f"identity loss needs the generator's output shaped as its input, got {tuple(output.shape)} "
            f"and {tuple(original.shape)} (the domains have different channel counts)"
        )
    return l1_loss(output, original)


@_float32_loss
def attribute_kl_loss(mean: Tensor, log_variance: Tensor) -> Tensor:
    """``KL(N(mean, exp(log_variance)) || N(0, I))`` of DRIT's attribute codes ``(N, D)``.

    ``0.5 * sum_d(mean^2 + exp(log_variance) - 1 - log_variance)``, summed over the
    code's dimensions and averaged over the batch (the published code sums over its
    batch of one).

    Parameters
    ----------
    mean : torch.Tensor
        ``(N, D)`` means of the attribute codes.
    log_variance : torch.Tensor
        ``(N, D)`` log-variances.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    kl = 0.5 * (mean.pow(2) + log_variance.exp() - 1.0 - log_variance)
    return kl.sum(dim=1).mean()


@_float32_loss
def content_l2_loss(content: Tensor) -> Tensor:
    """``mean(content^2)``: DRIT's L2 penalty on content codes (its "KL loss - z_c").

    Parameters
    ----------
    content : torch.Tensor
        Content codes, any shape.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    return content.pow(2).mean()


def content_discriminator_loss(predictions_a: Tensor, predictions_b: Tensor) -> Tensor:
    """DRIT's content discriminator loss: codes of domain A labelled 0, of domain B labelled 1 (cross-entropy).

    Parameters
    ----------
    predictions_a : torch.Tensor
        The content discriminator's logits on content codes of domain A.
    predictions_b : torch.Tensor
        Its logits on content codes of domain B.

    Returns
    -------
    torch.Tensor
        Scalar loss, the sum of both terms.
    """
    return adversarial_loss(predictions_a, 0.0, "vanilla") + adversarial_loss(predictions_b, 1.0, "vanilla")


def content_adversarial_loss(predictions: Tensor) -> Tensor:
    """DRIT's content adversarial loss for the encoder: cross-entropy of ``sigmoid(D_c)`` with 0.5.

    Its minimum (``D_c`` undecided) is where the content discriminator cannot tell
    the domains apart.

    Parameters
    ----------
    predictions : torch.Tensor
        The content discriminator's logits on content codes (of either domain).

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    return adversarial_loss(predictions, 0.5, "vanilla")


@_float32_loss
def latent_regression_loss(recovered: Tensor, code: Tensor) -> Tensor:
    """DRIT's latent regression: ``mean(|E_a(G(c, z)) - z|)``, the attribute code recovered from a generated image.

    Parameters
    ----------
    recovered : torch.Tensor
        ``(N, D)`` attribute means encoded from the images generated with ``code``.
    code : torch.Tensor
        ``(N, D)`` random attribute codes ``z``.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    return (recovered - code).abs().mean()


@_float32_loss
def mode_seeking_loss(image_1: Tensor, image_2: Tensor, code_1: Tensor, code_2: Tensor) -> Tensor:
    """Mode seeking (DRIT++/MSGAN): ``1 / (mean|G(z1) - G(z2)| / mean|z1 - z2| + eps)``.

    Small when two random attribute codes give different images, which counters mode collapse.

    Parameters
    ----------
    image_1, image_2 : torch.Tensor
        Images generated from the same content with ``code_1`` and ``code_2``.
    code_1, code_2 : torch.Tensor
        The two random attribute codes, ``(N, D)``.

    Returns
    -------
    torch.Tensor
        Scalar loss; :data:`MODE_SEEKING_EPS` keeps it finite.
    """
    ratio = (image_2 - image_1).abs().mean() / (code_2 - code_1).abs().mean()
    return 1.0 / (ratio + MODE_SEEKING_EPS)
