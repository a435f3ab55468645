"""Dense 2-D displacement fields: known smooth deformations, warping, inversion, SimpleITK exchange.

Conventions (docs/explanation/deformable.md):

* A point is ``(x, y)`` = (column, row) in pixels, as in :mod:`comir.geometry`.
* A *field* is a float array of shape ``(H, W, 2)``: ``field[r, c] = (dx, dy)`` in pixels,
  defined on an *output* grid of ``H x W`` pixels.
* A field is a **backward map**: the output pixel ``x`` shows the input image at ``x + u(x)``,
  i.e. ``output(x) = input(x + u(x))`` (:func:`.warp.warp_image`).  The point map of a field is
  ``phi(x) = x + u(x)``, from the output grid to the input image.
* In registration the output grid is the reference image's and the input is the floating image:
  ``x + u(x)`` is where the floating image shows what reference pixel ``x`` shows.  This is the
  inverse direction of the project's floating -> reference matrices; :func:`.affine.affine_to_field`
  and :func:`.affine.compose_affine` convert a matrix, and :func:`.sitk.composite_with_affine`
  builds the equivalent SimpleITK transform.
* Between grid points a field is interpolated bilinearly; beyond its grid it is extended by its
  nearest grid value (:func:`.landmarks.map_points`, :func:`.algebra.compose_fields`,
  :func:`.algebra.invert_field`).
* Landmarks are points of the output grid; a registration's target registration error (TRE) at
  a landmark is the distance between where its field and the true field send it
  (:func:`.landmarks.tre`, :func:`.landmarks.tre_summary`; the definitions:
  :mod:`comir.evaluate.deformation_metrics`).

SimpleITK's :class:`SimpleITK.DisplacementFieldTransform` uses the same direction (it maps an
output point ``p`` to ``p + u(p)`` and resamples the input there), so with spacing 1 and origin 0
a field is passed as it is (:func:`.sitk.field_to_sitk`, :func:`.sitk.sitk_to_field`).

Its modules
-----------
One concern each, each importing only those above it in this list:

* :mod:`.fields`: the field check, grid shapes and pixel coordinates, bilinear sampling;
* :mod:`.jacobian`: Jacobian norms and determinants, folding;
* :mod:`.affine`: floating -> reference matrices as fields and back;
* :mod:`.synthetic`: random smooth, invertible deformations (the known truth of test sets);
* :mod:`.warp`: images resampled by a field;
* :mod:`.algebra`: inversion and composition of fields;
* :mod:`.landmarks`: landmarks, points mapped by fields, target registration errors;
* :mod:`.overlap`: Dice and Hausdorff distances of two masks;
* :mod:`.sitk`: SimpleITK transforms and transform files.

The modules are imported by their own names (``from comir.deformation.warp import warp_image``):
this package imports nothing.
"""
