"""Diffusion training on a VAE's latents (``torchdiffusion train --vae DIR``): the training images
are encoded once (posterior means × the VAE's scale factor, cached in ``OUT/latents.safetensors``
keyed by the VAE weights and the images), the trainer draws batches of latents exactly as of
images, grids are decoded to pixels, and the exported ``OUT/model`` is a pipeline folder."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from torchdiffusion.data import ImageDataset, LatentDataset, load_dataset
from torchdiffusion.denoiser.model import ModelConfig
from torchdiffusion.denoiser.space import LatentSpace, check_unet_matches_vae, encode_images
from torchdiffusion.errors import ConfigError
from torchdiffusion.io.runs import find_autoencoder_folder
from torchdiffusion.networks.autoencoder import Autoencoder
from torchdiffusion.pipeline import DiffusionPipeline
from torchdiffusion.pipeline.folders import load_autoencoder
from torchdiffusion.training.diffusion import Trainer

from torchdiffusion.io.checkpoint import verify_checkpoint

log = logging.getLogger("torchdiffusion")


def _fingerprint(vae_folder: Path, dataset: ImageDataset, flip: bool) -> str:
    h = hashlib.sha256()
    h.update(str(verify_checkpoint(vae_folder)["files"].get("model.safetensors", "")).encode())
    h.update(json.dumps([dataset.name, list(dataset.images.shape), flip]).encode())
    h.update(dataset.images.numpy().tobytes())
    return h.hexdigest()


def latent_dataset(vae: Autoencoder, dataset: ImageDataset, flip: bool = False, cache: Path | None = None,
                   vae_folder: Path | None = None, batch_size: int = 128) -> LatentDataset:
    """Encode ``dataset`` once (posterior means × the VAE's scale factor); with ``cache`` (a
    ``.safetensors`` path) the latents are kept on disk, keyed by the VAE weights and images."""
    if dataset.channels != vae.config.in_channels:
        raise ConfigError(f"dataset {dataset.name} has {dataset.channels}-channel images but the VAE encodes "
                          f"{vae.config.in_channels}-channel images")
    key = _fingerprint(vae_folder, dataset, flip) if (cache is not None and vae_folder is not None) else None
    tensors = None
    if key is not None and Path(cache).is_file():
        try:
            tensors = load_file(str(cache))
            if bytes(tensors.pop("key").tolist()).decode() != key:
                tensors = None
        except Exception:  # an unreadable or stale cache is rebuilt
            tensors = None
    if tensors is None:
        s = vae.config.scale_factor
        tensors = {"latents": encode_images(vae, dataset.batch(torch.arange(len(dataset))), batch_size) * s}
        if flip:
            tensors["flipped"] = encode_images(vae, dataset.batch(torch.arange(len(dataset))).flip(-1), batch_size) * s
        if key is not None:
            cache = Path(cache)
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.tmp-{os.getpid()}")
            save_file({**tensors, "key": torch.tensor(list(key.encode()), dtype=torch.uint8)}, str(tmp))
            os.replace(tmp, cache)
    return LatentDataset(tensors["latents"], dataset.labels, dataset.class_names, dataset.captions, dataset.name,
                         tensors.get("flipped"))


class LatentTrainer(Trainer):
    """The diffusion :class:`Trainer` on a VAE's cached latents (``train_config.vae``)."""

    def __init__(self, model_config: ModelConfig, train_config, dataset=None, dist_info=None):
        if not train_config.vae:
            raise ConfigError("latent training needs a VAE folder (--vae)")
        self.vae_folder = find_autoencoder_folder(Path(train_config.vae))
        self.vae, self.vae_config = load_autoencoder(self.vae_folder, device=train_config.device)
        check_unet_matches_vae(model_config.unet, self.vae_config)
        self.pixel_dataset = None  # the images (for FID during training); None when given latents only
        if not isinstance(dataset, LatentDataset):
            size = model_config.unet.image_size * self.vae_config.downsample_factor
            pixels = dataset if dataset is not None else load_dataset(train_config.data, size,
                                                                      self.vae_config.in_channels)
            if pixels.image_size != size:
                raise ConfigError(f"dataset {pixels.name} has {pixels.image_size}px images but a "
                                  f"{model_config.unet.image_size}px latent U-Net on an f={self.vae_config.downsample_factor}"
                                  f" VAE needs {size}px")
            self.pixel_dataset = pixels
            log.info("encoding %d images with the VAE (cached in %s)", len(pixels), Path(train_config.out))
            dataset = latent_dataset(self.vae, pixels, flip=train_config.hflip,
                                     cache=Path(train_config.out) / "latents.safetensors", vae_folder=self.vae_folder)
        super().__init__(model_config, train_config, dataset, dist_info)

    def make_pipeline(self) -> DiffusionPipeline:
        return DiffusionPipeline(self._ema_denoiser(), self.model_config, LatentSpace(self.vae))

    def export_model(self, model_dir: Path) -> Path:
        return self.make_pipeline().save_pretrained(model_dir)
