"""The training images' latents, cached once, standing in for the images in the diffusion trainer
(latent diffusion, Rombach et al. 2022): scaled posterior means s · E(x), with the images' labels
and captions. Horizontal flips use the latents of the flipped images (also cached), not flipped latents."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from torchdiffusion.errors import DataError

__all__ = ["LatentDataset"]


@dataclass
class LatentDataset:
    """Scaled latents (N, c, h, w) float32 standing in for images in the diffusion trainer."""

    latents: Tensor
    labels: Tensor | None = None
    class_names: list[str] | None = None
    captions: list[str] | None = None
    name: str = "dataset"
    flipped: Tensor | None = None  # latents of the horizontally mirrored images

    def __post_init__(self) -> None:
        if self.latents.ndim != 4 or not self.latents.is_floating_point():
            raise DataError(f"{self.name}: latents must be a float (N, c, h, w) tensor")
        if self.labels is not None and len(self.labels) != len(self.latents):
            raise DataError(f"{self.name}: {len(self.labels)} labels for {len(self.latents)} latents")
        if self.flipped is not None and self.flipped.shape != self.latents.shape:
            raise DataError(f"{self.name}: flipped latents have another shape than the latents")

    def __len__(self) -> int:
        return len(self.latents)

    @property
    def channels(self) -> int:
        return self.latents.shape[1]

    @property
    def image_size(self) -> int:
        return self.latents.shape[-1]

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)

    def batch(self, index: Tensor, flip: Tensor | None = None) -> Tensor:
        """Latents for the given indices; where ``flip``, those of the mirrored images."""
        x = self.latents[index].clone()
        if flip is not None and bool(flip.any()):
            if self.flipped is None:
                raise DataError(f"{self.name}: this latent dataset was cached without flipped images (--hflip)")
            x[flip] = self.flipped[index[flip]]
        return x
