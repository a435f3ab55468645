"""CoMIRs of whole images with a trained network (docs/method.md, section 6).

* :mod:`comir.inference.engines`: the network run by ONNX Runtime (CPU) or PyTorch;
* :mod:`comir.inference.tiling`: the CoMIR of an image of any size, in tiles, with bounded memory;
* :mod:`comir.inference.stage`: the pipeline's CoMIR stage (a test set's CoMIRs and examples).

The package imports nothing itself: each module is imported by its own name.
"""
