"""A trained CoMIR model applied to a user's unaligned pair (docs/method.md, section 13).

The model file is the ``comir.pt`` the ``train`` rule writes (state_dicts, the
networks' configurations, the modalities with their pre-processing, the
training settings and provenance; loaded with ``weights_only=True``), so a
model trained once, e.g. on a GPU cluster, is reused anywhere.  For one pair:

1. both images are read and checked against the model before any work, the
   files named in every error (:func:`comir.apply.checks.check_pair`): channels of their
   modality, a side of at least :meth:`comir.apply.model.TrainedModel.min_side` px at the working resolution,
   physical extents within :data:`comir.apply.checks.MAX_EXTENT_RATIO` of each other, network
   input within :data:`comir.apply.checks.RANGE_FACTOR` of the training range (model files that
   record it: ``input_statistics``), and the settings against the
   configuration schema (:func:`comir.apply.checks.check_settings`);
2. with pixel sizes (units per pixel, e.g. microns) given for the two images,
   both are resampled to the working resolution: the model's own pixel size of
   each modality where the model records one (``pixel_size`` of the dataset's
   modality), else the reference image's; without pixel sizes the images are
   used as they are;
3. each image gets a valid-pixel mask (:mod:`comir.imaging.masks`): from a mask file,
   or derived from constant borders (``masks="auto"``, the default), or none;
4. each image is pre-processed like the training data of its modality, its
   invalid pixels set to the valid mean (the network sees no edge there), and
   its CoMIR computed (ONNX Runtime on the CPU, tiled, as the pipeline does);
   the mask at the working resolution, shrunk by ``mask_margin_px``, is the
   CoMIR's;
5. a registration method (default the ``cascade``) registers the floating
   CoMIR to the reference CoMIR with the chosen transform model (rigid,
   similarity, affine) and the masks, and the transform is reported in the
   original pixel grids of the two images; CoMIRs larger than
   ``register_max_px`` are registered at a coarse level and refined by blocks
   at full resolution (:mod:`comir.register.coarse_to_fine`), so the memory
   of a registration stays that of the images; ``accr`` (an ACCR model file,
   docs/explanation/accr.md) registers the two network inputs instead, at its
   own working level;
6. the outputs are written atomically into a new folder: ``transform.csv``
   (one row: the floating -> reference matrix, status, metric, seconds,
   the valid fractions of the two CoMIRs, the process's peak memory so far,
   message), ``transform.tfm`` (the same transform for ITK / SimpleITK /
   elastix users: the resampling transform, reference -> floating points, in
   pixel units), ``warped.tif`` (the floating image resampled into the
   reference frame, its own dtype and channels), ``overlay.png`` (before and
   after: colour overlay of the originals and checkerboard of the CoMIRs) and
   ``comir_reference.tif`` / ``comir_floating.tif``, and where a mask was
   used ``mask_reference.png`` / ``mask_floating.png`` (the CoMIRs' masks,
   white = valid).

With a deformable stage (``register_pair(..., deformable=...)``, ``--deformable``, an apply job's
``deformable``; docs/explanation/deformable.md) an ``ok`` result is refined from its matrix on the
CoMIRs (or, for ``elastix_bspline``, the networks' inputs) at the working resolution, its total field
moved to the original grids, and ``deformable_field.h5``, ``deformable_transform.h5``,
``deformable_warped.tif`` and ``deformable_overlay.png`` are written beside the rest, the stage's
columns in ``transform.csv``; a failed stage keeps the rigid result and says so.

A pair the method cannot register is a ``failed`` row (no warped image,
transform or overlay is written); an existing output is never overwritten.

Several models (:class:`comir.apply.model.ModelEnsemble`, e.g. networks trained with and without
stain augmentation) register a pair together: every check of step 1 holds for
every model, each model computes its CoMIR of each image from its own network
input (step 4), the CoMIRs are stacked along the channels in the models'
order, and the cascade registers them as ``networks`` groups
(:mod:`comir.register.cascade`, "Several networks").  ``comir_reference.tif``
/ ``comir_floating.tif`` hold the stacked CoMIRs.  An ensemble has no
calibrated confidence: its results are not judged.

The stage's modules, each one job:

* :mod:`comir.apply.model`: the model file(s), :class:`~comir.apply.model.TrainedModel` and
  :class:`~comir.apply.model.ModelEnsemble`;
* :mod:`comir.apply.checks`: step 1, the pair and the settings checked before any work;
* :mod:`comir.apply.pair`: steps 2 to 5, :func:`~comir.apply.pair.register_pair`;
* :mod:`comir.apply.outputs`: step 6, the outputs of one pair;
* :mod:`comir.apply.folder`: a folder of pairs in batches (the ``register_pairs`` rule);
* :mod:`comir.apply.results`: the summary of a job's pairs and their errors against known transforms.

The modules are imported by their own names (``from comir.apply.pair import register_pair``):
this package imports nothing, so the summary of results (:mod:`comir.apply.results`) needs
neither PyTorch nor the registration methods.
"""
