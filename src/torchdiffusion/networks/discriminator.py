"""The PatchGAN discriminator of the autoencoder's adversarial loss (Isola et al. 2017; as used
for the VAE of latent diffusion, Esser et al. 2021)."""
from __future__ import annotations

from torch import Tensor, nn


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix ``NLayerDiscriminator``): 4×4 convs, stride 2 for the first
    ``layers``, then two stride-1 convs; BatchNorm + LeakyReLU(0.2) in between. Output: one
    real/fake logit per overlapping patch, (B, 1, h, w)."""

    def __init__(self, in_channels: int, channels: int = 32, layers: int = 2):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = channels
        for i in range(1, layers + 1):
            nxt = channels * min(2**i, 8)
            mods += [nn.Conv2d(ch, nxt, 4, 2 if i < layers else 1, 1, bias=False), nn.BatchNorm2d(nxt),
                     nn.LeakyReLU(0.2)]
            ch = nxt
        mods.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)
        for m in self.modules():  # pix2pix initialization
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
