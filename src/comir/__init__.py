"""CoMIR: contrastive multimodal image representations for registration."""

__version__ = "0.1.0"
