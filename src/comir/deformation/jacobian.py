"""Jacobians of a field: the largest singular value of ``du/dx``, the determinant of the point map, folding.

Contract: derivatives by central differences (one-sided at the border, 0 along a grid of one row
or column), per pixel, float64 ``(H, W)``. :func:`spectral_norm` bounds how far a field is from
folding (the invertibility rule of :func:`comir.deformation.synthetic.random_displacement`);
:func:`jacobian_determinant` is the local area ratio of ``x -> x + u(x)``, ``<= 0`` where it folds;
:func:`folding_fraction` the share of such pixels.
"""

from __future__ import annotations

import numpy as np

from comir.deformation.fields import check_field

__all__ = ["folding_fraction", "jacobian_determinant", "spectral_norm"]


def spectral_norm(field: np.ndarray) -> np.ndarray:
    """The largest singular value of the field's Jacobian ``du/dx`` per pixel (np.gradient), float64 ``(H, W)``.

    In closed form for 2x2 matrices: ``sqrt((F + sqrt(F^2 - 4 det^2)) / 2)`` with ``F`` the
    squared Frobenius norm.

    Parameters
    ----------
    field : numpy.ndarray
        ``(H, W, 2)`` field (converted to float64; not checked by :func:`check_field`).

    Returns
    -------
    numpy.ndarray
        float64 ``(H, W)``.
    """
    a, b, c, d = _jacobian_entries(field)
    frobenius = a * a + b * b + c * c + d * d
    det = a * d - b * c
    return np.sqrt((frobenius + np.sqrt(np.maximum(frobenius * frobenius - 4.0 * det * det, 0.0))) / 2.0)


def _jacobian_entries(field: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(dux/dx, dux/dy, duy/dx, duy/dy)`` by central differences (one-sided at the border), float64.

    A grid of one row or column has no derivative along it (taken as 0).
    """
    field = np.asarray(field, dtype=np.float64)
    entries = []
    for k in range(2):
        component = field[..., k]
        d_dy = np.gradient(component, axis=0) if component.shape[0] > 1 else np.zeros_like(component)
        d_dx = np.gradient(component, axis=1) if component.shape[1] > 1 else np.zeros_like(component)
        entries += [d_dx, d_dy]
    return entries[0], entries[1], entries[2], entries[3]


def jacobian_determinant(field: np.ndarray) -> np.ndarray:
    """The Jacobian determinant of the point map ``x -> x + u(x)`` per pixel (np.gradient).

    ``(1 + dux/dx) (1 + duy/dy) - dux/dy duy/dx`` by central differences (one-sided at the
    border): the local area ratio; ``<= 0`` where the map folds.

    Parameters
    ----------
    field : numpy.ndarray
        ``(H, W, 2)`` field.

    Returns
    -------
    numpy.ndarray
        float64 ``(H, W)``.
    """
    a, b, c, d = _jacobian_entries(check_field(field))
    return (1.0 + a) * (1.0 + d) - b * c


def folding_fraction(field: np.ndarray) -> float:
    """The fraction of pixels where the map folds: Jacobian determinant ``<= 0`` (:func:`jacobian_determinant`).

    Parameters
    ----------
    field : numpy.ndarray
        ``(H, W, 2)`` field.

    Returns
    -------
    float
        The fraction in ``[0, 1]``.
    """
    return float(np.mean(jacobian_determinant(field) <= 0.0))
