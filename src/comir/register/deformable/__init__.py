"""Deformable registration: a dense displacement field from a starting floating -> reference matrix.

Three methods, one result (:class:`.base.DeformableResult`):

* :func:`.bspline.bspline_register`: a cubic B-spline transform (SimpleITK ``BSplineTransformInitializer``
  and ``ImageRegistrationMethod``, L-BFGS-B, a resolution pyramid) with a monomodal metric
  (normalised correlation or mean squares): for CoMIRs, which turn a multimodal pair into a
  monomodal one.
* :func:`.demons.demons_register`: SimpleITK's diffeomorphic demons (symmetric forces) on a pyramid:
  monomodal, for CoMIRs; diffeomorphic, so the field does not fold.
* :func:`.elastix_bspline.elastix_bspline_register`: elastix (itk-elastix) affine then B-spline, both with Mattes
  mutual information (elastix's default maps, as in :mod:`comir.register.elastix`): the baseline
  for the original, multimodal images.

Conventions (:mod:`comir.deformation`, docs/explanation/deformable.md): the result's ``field`` is a
float32 ``(H, W, 2)`` backward field ``(dx, dy)`` on the **reference** grid; reference pixel ``x``
shows what the floating image shows at ``x + field(x)``, and ``warped`` is
``warp_image(floating, field)``.  The field is the **total** mapping, the initial matrix included
(:func:`comir.deformation.affine.compose_affine`).  ``initial_matrix`` is the project's 2x3 floating ->
reference matrix (:mod:`comir.geometry`), e.g. a rigid registration's result; ``None`` is the
start of the project's rigid methods: the floating centre sent onto the reference centre (the
identity for images of one size).

Images: float ``(H, W)`` or ``(H, W, C)`` with the same ``C`` (sizes may differ), checked by
:func:`comir.register.base.check_pair`.  Multi-channel CoMIRs are reduced to one channel by the
reference's first principal component, the floating image projected on the same basis (the
monomodal methods); the originals each by their own (elastix, as :mod:`comir.register.elastix`).
``warped`` keeps all channels of the floating image.  Optional valid-pixel masks
(``reference_mask``, ``floating_mask``: ``(H, W)``, non-zero = valid) keep pixels out of the metric
(each method says how; the demons filter has none of its own).

Failures follow :mod:`comir.register.base`: malformed arguments (shapes, a non-finite or
singular matrix, invalid parameters) raise ``ValueError``; a pair that cannot be registered (a
constant image, a start overlapping less than :data:`.base.MIN_OVERLAP` of the smaller image, an
image too small for the pyramid, an ITK or elastix error, a non-finite field) gives
``status="failed"``, the zero field (the identity, as the rigid methods' identity matrix) and a
message saying why; any other exception is a bug and propagates.

Reproducibility: every ITK filter and registration runs on one thread (ITK's metrics sum over
threads in a varying order, so more threads change the last digits); the SimpleITK methods use
every pixel for their metric (no random sampling) unless ``sampling_fraction`` < 1, and then
``seed``; elastix samples with its ``RandomSeed`` = ``seed``.

Modules: :mod:`.base` (the result and the steps the methods share), :mod:`.bspline`,
:mod:`.demons` and :mod:`.elastix_bspline` (one method each), :mod:`.stage` (the methods by
name, configured: a registration run's deformable stage or method).
"""
