"""Image operations shared by the stages: network input, stains, masks, resampling and shifts.

* :mod:`comir.imaging.preprocess`: a stored image as the network's input, and the statistics
  of network inputs that the model file records;
* :mod:`comir.imaging.stain`: stain normalisation and deconvolution of H&E images, and the
  stain vectors and optical density shared with the training's stain jitter;
* :mod:`comir.imaging.masks`: valid-pixel masks of real images;
* :mod:`comir.imaging.resampling`: an image at a working resolution, and transforms between grids;
* :mod:`comir.imaging.shifts`: graded degradations of one modality (the stress test sets).

The package imports nothing itself (the configuration imports :mod:`comir.imaging.shifts`
and needs no more): each module is imported by its own name.
"""
