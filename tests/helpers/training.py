"""A tiny Tiramisu and an aligned two-modality pair: what the training tests train on."""

from __future__ import annotations

import numpy as np
import torch

from comir.network.model import TiramisuConfig

TINY = TiramisuConfig(in_channels=1, out_channels=1, init_filters=8, down_blocks=(1, 1), bottleneck=1, dropout=0.0)


def structured_pair(seed, size=96):
    """Modality B is a non-linear, inverted function of A: aligned but different."""
    rng = np.random.default_rng(seed)
    noise = torch.from_numpy(rng.random((1, 1, size, size), dtype=np.float32))
    a = torch.nn.functional.avg_pool2d(noise, 5, 1, 2)[0].numpy()
    a = (a - a.min()) / np.ptp(a)
    return a, np.ascontiguousarray(1.0 - a**2)
