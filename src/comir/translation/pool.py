"""CycleGAN's image pool: a seeded history of generated images for its discriminators.

docs/translation.md, section 3.2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


class ImagePool:
    """CycleGAN's history of generated images (Shrivastava et al. 2017), seeded.

    Until ``size`` images are stored, every queried image is stored and returned.
    Then each queried image is, with probability 1/2, swapped with a random stored
    one (the stored one is returned), else returned as is. ``size`` 0 returns the
    queries unchanged.
    """

    def __init__(self, size: int, seed: int):
        self.size = size
        self.images: list[Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: Tensor) -> Tensor:
        """The batch the discriminator sees for the (detached) generated ``images``.

        Parameters
        ----------
        images : torch.Tensor
            ``(N, C, H, W)`` generated images; detached before they are stored.

        Returns
        -------
        torch.Tensor
            ``(N, C, H, W)``: per image, itself or a stored one it replaced (see the class docstring);
            ``images`` unchanged when ``size`` is 0.
        """
        if self.size == 0:
            return images
        returned = []
        for image in images.detach().split(1):
            if len(self.images) < self.size:
                self.images.append(image)
                returned.append(image)
            elif float(torch.rand((), generator=self.generator)) > 0.5:
                index = int(torch.randint(self.size, (), generator=self.generator))
                returned.append(self.images[index])
                self.images[index] = image
            else:
                returned.append(image)
        return torch.cat(returned)

    def state_dict(self) -> dict[str, Any]:
        """The stored images and the generator's state."""
        return {"images": list(self.images), "rng": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device) -> None:
        """Inverse of :meth:`state_dict`, the images moved to ``device``.

        Parameters
        ----------
        state : Mapping[str, Any]
            A :meth:`state_dict`: ``images`` and ``rng``.
        device : torch.device
            Where the stored images go (the model's device).
        """
        self.images = [image.to(device) for image in state["images"]]
        self.generator.set_state(state["rng"])
