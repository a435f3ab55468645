"""The CoMIR network and what every stage that runs it shares: training, inference and the apply stage.

* :mod:`comir.network.model`: the FC-DenseNet ("Tiramisu"), one network per modality;
* :mod:`comir.network.precision`: mixed precision (autocast) of training and inference;
* :mod:`comir.network.device`: the configured device and the tensors' memory format there;
* :mod:`comir.network.checkpoint`: the model file (``comir.pt``), written and read.
* :mod:`comir.network.accr`: the ACCR model beside CoMIR (a package): the two CoMIR networks as
  encoders, cross-modal attention and a learned registration head (docs/explanation/accr.md).

The package imports nothing itself: each module is imported by its own name.
"""
