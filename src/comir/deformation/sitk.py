"""SimpleITK exchange: fields as SimpleITK transforms and transform files, and back.

Contract: a field is passed to and from :class:`SimpleITK.DisplacementFieldTransform` as it is
(spacing 1, origin 0, the same backward direction), so :func:`field_to_sitk` then
:func:`sitk_to_field` returns it exactly; any other 2-D transform is evaluated on a given grid.
:func:`write_field` and :func:`read_field` store a field as a transform file (``.h5``: exact);
:func:`composite_with_affine` is the SimpleITK transform of
:func:`comir.deformation.affine.compose_affine`. SimpleITK is imported when a function is called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from comir.deformation.affine import check_matrix
from comir.deformation.fields import check_field, grid_shape

__all__ = ["composite_with_affine", "field_to_sitk", "read_field", "sitk_to_field", "write_field"]


def field_to_sitk(field: np.ndarray) -> Any:
    """The field as a :class:`SimpleITK.DisplacementFieldTransform` (float64, spacing 1, origin 0).

    SimpleITK maps a point ``p`` to ``p + u(p)`` (bilinear between grid points) and resamples the
    input image there: the backward convention of :mod:`comir.deformation`, so the values are passed as they are.

    Parameters
    ----------
    field : numpy.ndarray
        ``(H, W, 2)`` field.

    Returns
    -------
    SimpleITK.DisplacementFieldTransform
    """
    import SimpleITK as sitk

    field = check_field(field)
    image = sitk.GetImageFromArray(np.asarray(field, dtype=np.float64), isVector=True)
    image.SetSpacing((1.0, 1.0))
    image.SetOrigin((0.0, 0.0))
    return sitk.DisplacementFieldTransform(image)  # takes the image over (it is left empty)


def sitk_to_field(transform_or_image: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A SimpleITK transform or displacement-field image as a field on a pixel grid.

    Parameters
    ----------
    transform_or_image : SimpleITK.Transform or SimpleITK.Image
        Any 2-D transform (output point -> input point, as SimpleITK resamples), e.g. a
        DisplacementFieldTransform, a BSplineTransform or a CompositeTransform; or a 2-component
        vector image of displacements.
    shape : tuple of int, optional
        ``(H, W[, ...])`` of the grid (spacing 1, origin 0) to evaluate the transform on.  Without
        it, a DisplacementFieldTransform's or an image's own grid, whose values are returned as
        they are (exactly); required for other transforms.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W, 2)``: ``T(x) - x`` at each pixel ``x``.
    """
    import SimpleITK as sitk

    item = transform_or_image
    if isinstance(item, sitk.Image):
        if item.GetDimension() != 2 or item.GetNumberOfComponentsPerPixel() != 2:
            raise ValueError("a displacement-field image must be 2-D with 2 components per pixel")
        if shape is None:
            return check_field(sitk.GetArrayFromImage(item)).astype(np.float32)
        item = sitk.DisplacementFieldTransform(sitk.Cast(item, sitk.sitkVectorFloat64))
    if not isinstance(item, sitk.Transform):
        raise TypeError(f"expected a SimpleITK Transform or Image, got {type(item).__name__}")
    if item.GetDimension() != 2:
        raise ValueError(f"expected a 2-D transform, got {item.GetDimension()}-D")
    if shape is None:
        if item.GetName() != "DisplacementFieldTransform":
            raise ValueError(f"shape is required to evaluate a {item.GetName()} on a grid")
        return sitk_to_field(sitk.DisplacementFieldTransform(item).GetDisplacementField())
    height, width = grid_shape(tuple(shape))
    converter = sitk.TransformToDisplacementFieldFilter()
    converter.SetOutputPixelType(sitk.sitkVectorFloat64)
    converter.SetSize((width, height))
    converter.SetOutputSpacing((1.0, 1.0))
    converter.SetOutputOrigin((0.0, 0.0))
    converter.SetNumberOfThreads(1)
    return check_field(sitk.GetArrayFromImage(converter.Execute(item))).astype(np.float32)


def write_field(path: str | Path, field: np.ndarray) -> None:
    """Write a field as a SimpleITK DisplacementFieldTransform file (:func:`field_to_sitk`).

    The format follows the extension, as ``SimpleITK.WriteTransform`` decides: ``.h5`` (HDF5,
    binary float64: exact; the recommended one) or ``.tfm`` / ``.txt`` (ITK's text format).
    Image formats (``.nii.gz``, ``.mha``) are not transform files and SimpleITK refuses them.

    Parameters
    ----------
    path : str or pathlib.Path
        The transform file to write.
    field : numpy.ndarray
        ``(H, W, 2)`` field.
    """
    import SimpleITK as sitk

    sitk.WriteTransform(field_to_sitk(field), str(path))


def read_field(path: str | Path, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A field from a SimpleITK transform file (:func:`write_field`, or any 2-D transform with ``shape``).

    Parameters
    ----------
    path : str or pathlib.Path
        The transform file to read.
    shape : tuple of int or None, optional
        ``(H, W[, ...])`` of the grid to evaluate the transform on; see :func:`sitk_to_field`.
        Default None: a displacement field's own grid.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W, 2)``.
    """
    import SimpleITK as sitk

    return sitk_to_field(sitk.ReadTransform(str(path)), shape)


def composite_with_affine(matrix: np.ndarray, field: np.ndarray) -> Any:
    """The SimpleITK transform of :func:`compose_affine`: ``x -> inverse(matrix)(x + field(x))``.

    A :class:`SimpleITK.CompositeTransform` of an AffineTransform (``inverse(matrix)``, reference
    -> floating) and the displacement field (:func:`field_to_sitk`); SimpleITK applies the last
    transform of the list first, i.e. the field, then the affine.  Resampling the floating image
    with it on the reference grid is moving it by ``matrix`` and then warping the result by
    ``field``, in one interpolation.

    Parameters
    ----------
    matrix : numpy.ndarray
        2x3 floating -> reference matrix.
    field : numpy.ndarray
        ``(H, W, 2)`` residual backward field on the reference grid.

    Returns
    -------
    SimpleITK.CompositeTransform
    """
    import SimpleITK as sitk

    inverse = check_matrix(matrix, inverse=True)
    affine = sitk.AffineTransform(2)
    affine.SetMatrix(tuple(float(v) for v in inverse[:, :2].ravel()))
    affine.SetTranslation(tuple(float(v) for v in inverse[:, 2]))
    return sitk.CompositeTransform([affine, field_to_sitk(field)])
