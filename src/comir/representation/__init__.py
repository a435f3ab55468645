"""The representation stages of paper section 4.1: equivariance and reproducibility of the CoMIRs.

* :mod:`comir.representation.settings`: their settings and checks (the configuration imports
  them, without PyTorch or the statistics);
* :mod:`comir.representation.stages`: the stages themselves (docs/representation.md).

The package imports nothing itself: each module is imported by its own name.
"""
