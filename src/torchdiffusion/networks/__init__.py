"""Networks: the ADM-style U-Net, the KL autoencoder of latent diffusion, its PatchGAN
discriminator, and the frozen text encoder. ``ModelConfig.network`` names the backbone."""
from torchdiffusion.networks.autoencoder import Autoencoder, AutoencoderConfig
from torchdiffusion.networks.discriminator import PatchDiscriminator
from torchdiffusion.networks.unet import UNet, UNetConfig

__all__ = ["Autoencoder", "AutoencoderConfig", "PatchDiscriminator", "UNet", "UNetConfig"]
