"""Contrastive training of one network per modality (docs/method.md, sections 3 and 5).

* :mod:`comir.training.settings`: a run's settings (:class:`~comir.training.settings.TrainingConfig`),
  its learning-rate schedule and the networks' architectures;
* :mod:`comir.training.sampler`: training batches of aligned patch pairs, seeded per batch;
* :mod:`comir.training.augment`: intensity and elastic augmentation of the patches;
* :mod:`comir.training.loss`: the contrastive loss (InfoNCE) and C4 equivariance;
* :mod:`comir.training.objective`: the loss of a batch with the configured options;
* :mod:`comir.training.ablations`: options beyond the paper (shared blocks, a third view,
  the anatomy term's region masks);
* :mod:`comir.training.loop`: the training loop and its resumable state;
* :mod:`comir.training.plots`: the loss history, as a table and a plot.
* :mod:`comir.training.accr`: ACCR's stage 2, the registration head trained on aligned pairs moved
  by known random transforms (docs/explanation/accr.md).

The package imports nothing itself (the configuration imports :mod:`comir.training.augment`'s
checks without PyTorch): each module is imported by its own name.
"""
