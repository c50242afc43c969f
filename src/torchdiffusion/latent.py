"""Latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion
Models"): the U-Net denoises z = s · E(x) in an autoencoder's latent space and the decoder
turns the sampled latent into pixels, x = D(z / s).

* :func:`latent_scale_factor` — s = 1/std of the training latents (LDM §4.3.2 and App. G:
  "we rescale the latents by the component-wise standard deviation" — one scalar over every
  element), so the diffusion model sees unit-variance data, as the noise schedule assumes.
  It is stored in the autoencoder's ``config.json`` (``scale_factor``).
* :class:`LatentDataset` — the training images' latents (posterior means, scaled by s) cached
  once, with the images' labels and captions; the diffusion :class:`trainer.Trainer` draws
  batches from it exactly as from an :class:`datasets.ImageDataset`. Horizontal flips use the
  latents of the flipped images (also cached), not flipped latents.
* :class:`LatentTrainer` — the diffusion trainer on those latents (``torchdiffusion train
  --vae DIR``): grids are decoded to pixels, and the exported ``OUT/model`` is a pipeline.
* :class:`LatentDiffusionPipeline` — VAE + U-Net (+ text encoder) + sampler, saved as one
  folder with a subfolder per component, like diffusers::

      model/model_index.json           which class and components
      model/vae/                       config.json (with scale_factor) + model.safetensors
      model/unet/                      config.json (U-Net, schedule, parameterization) + model.safetensors
      model/text_encoder/config.json   the frozen encoder it names (text models only)

  It exposes ``denoiser``, ``latent_shape``, ``encode(images)`` → scaled latents and
  ``decode(latents)`` → images, so editing tasks (img2img, inpainting) run in latent space.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from .autoencoder import Autoencoder, AutoencoderConfig, find_autoencoder_folder, load_autoencoder, save_autoencoder
from .checkpoint import FORMAT, FORMAT_VERSION, atomic_write_text, read_json, verify_checkpoint
from .datasets import ImageDataset, load_dataset
from .errors import CheckpointError, ConfigError, DataError
from .model import MODEL_KIND, ModelConfig, build_denoiser, save_model
from .pipeline import DiffusionPipeline
from .trainer import Trainer
from .unet import UNetConfig

log = logging.getLogger("torchdiffusion")
PIPELINE_INDEX = "model_index.json"
PIPELINE_CLASS = "LatentDiffusionPipeline"
COMPONENTS = ("vae", "unet", "text_encoder")


# --- latents -----------------------------------------------------------------------------
@torch.no_grad()
def encode_images(vae: Autoencoder, images: Tensor, batch_size: int = 128, sample: bool = False,
                  generator: torch.Generator | None = None) -> Tensor:
    """Unscaled latents of float images in [-1, 1]: the posterior means (or samples)."""
    device = next(vae.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        post = vae.encode(images[i:i + batch_size].to(device))
        out.append((post.sample(generator) if sample else post.mode()).float().cpu())
    return torch.cat(out)


def latent_scale_factor(vae: Autoencoder, images: Tensor, batch_size: int = 128) -> float:
    """s = 1 / std(E(x)) over every element of the latents of ``images`` (posterior means),
    so that s · E(x) has unit variance on these images."""
    was_training = vae.training
    vae.eval()
    z = encode_images(vae, images, batch_size)
    vae.train(was_training)
    std = float(z.double().std())
    if not std > 0:
        raise ConfigError("the autoencoder maps every image to the same latent: cannot compute a scale factor")
    return 1.0 / std


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


def _fingerprint(vae_folder: Path, dataset: ImageDataset, flip: bool) -> str:
    h = hashlib.sha256()
    h.update(json.loads((vae_folder / "manifest.json").read_text())["files"]["model.safetensors"].encode())
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


def check_unet_matches_vae(unet: UNetConfig, vae: AutoencoderConfig, where: str = "unet") -> None:
    """The U-Net must take (and give) exactly the VAE's latent channels."""
    out = unet.out_channels or unet.in_channels
    if unet.in_channels != vae.latent_channels or out != vae.latent_channels:
        raise ConfigError(f"{where}: the U-Net has {unet.in_channels} input / {out} output channels but the VAE's "
                          f"latents have {vae.latent_channels} channels (component 'unet' does not fit component 'vae')")


def latent_geometry(vae_path: str | Path, image_size: int | None = None) -> tuple[int, int, int]:
    """(pixel size, latent size, latent channels) for training on ``vae_path``'s latents; the
    pixel size defaults to the VAE's training resolution."""
    folder = find_autoencoder_folder(Path(vae_path))
    cfg = AutoencoderConfig.from_dict(read_json(folder, "config"))
    size = image_size or cfg.image_size
    f = cfg.downsample_factor
    if size % f:
        raise ConfigError(f"--image-size {size} is not divisible by the VAE's downsampling factor f={f}")
    return size, size // f, cfg.latent_channels


# --- training ----------------------------------------------------------------------------
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

    def make_pipeline(self) -> "LatentDiffusionPipeline":
        return LatentDiffusionPipeline(self._ema_denoiser(), self.model_config, self.vae)

    def export_model(self, model_dir: Path) -> Path:
        return self.make_pipeline().save_pretrained(model_dir)


# --- the pipeline ------------------------------------------------------------------------
def find_latent_pipeline(path: Path) -> Path | None:
    """The pipeline folder at ``path`` or ``path/model`` (a run folder), or the training
    checkpoint of a latent run that has no export yet (``path`` is the run or the checkpoint);
    None for anything else."""
    path = Path(path)
    for folder in (path, path / "model"):
        if (folder / PIPELINE_INDEX).is_file():
            return folder
    return _latent_checkpoint(path)


def _latent_checkpoint(path: Path) -> Path | None:
    from .trainer import latest_checkpoint

    if not path.is_dir() or (path / "model.safetensors").is_file() or (path / "model").is_dir():
        return None
    ckpt = path if (path / "ema.safetensors").is_file() else latest_checkpoint(path)
    if ckpt is None:
        return None
    try:
        vae = read_json(ckpt, "state")["train_config"].get("vae")
    except (CheckpointError, KeyError, TypeError, AttributeError):
        return None
    return ckpt if vae else None


class LatentDiffusionPipeline(DiffusionPipeline):
    """A latent denoiser with its VAE: ``generate`` samples latents and decodes them."""

    def __init__(self, denoiser, config: ModelConfig, vae: Autoencoder, text_encoder=None):
        super().__init__(denoiser, config, text_encoder)
        check_unet_matches_vae(config.unet, vae.config)
        self.vae = vae

    @property
    def scale_factor(self) -> float:
        return float(self.vae.config.scale_factor)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        u = self.config.unet
        return (u.in_channels, u.image_size, u.image_size)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The shape of the images it makes (pixels)."""
        c, h, w = self.latent_shape
        f = self.vae.config.downsample_factor
        return (self.vae.config.in_channels, h * f, w * f)

    @torch.no_grad()
    def encode(self, images: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Images in [-1, 1] (B, C, H, W) → scaled latents s · E(x) (posterior means, or samples)."""
        vae_device = next(self.vae.parameters()).device
        return encode_images(self.vae, images.to(vae_device), sample=sample, generator=generator) * self.scale_factor

    @torch.no_grad()
    def decode(self, latents: Tensor, batch_size: int = 64) -> Tensor:
        """Scaled latents → images D(z / s) in [-1, 1]."""
        vae_device = next(self.vae.parameters()).device
        out = [self.vae.decode(latents[i:i + batch_size].to(vae_device).float() / self.scale_factor).cpu()
               for i in range(0, len(latents), batch_size)]
        return torch.cat(out).clamp(-1, 1)

    @torch.no_grad()
    def generate(self, *args, output: str = "images", **kwargs) -> Tensor:
        """As :meth:`DiffusionPipeline.generate`; ``output="latents"`` returns the scaled latents."""
        if output not in ("images", "latents"):
            raise ConfigError(f"output must be 'images' or 'latents', got {output!r}")
        self._output = output
        try:
            return super().generate(*args, **kwargs)
        finally:
            self._output = "images"

    def _finish(self, latents: Tensor) -> Tensor:
        return latents if getattr(self, "_output", "images") == "latents" else self.decode(latents)

    def to(self, device) -> "LatentDiffusionPipeline":
        self.denoiser.to(device)
        self.vae.to(device)
        return self

    # --- folders -------------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path) -> Path:
        """Write the pipeline folder atomically (temp sibling folder, then rename)."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            save_autoencoder(tmp / "vae", self.vae, self.vae.config)
            save_model(tmp / "unet", self.denoiser, self.config)
            components = {"vae": "vae", "unet": "unet", "text_encoder": None}
            if self.config.conditioning == "text":
                (tmp / "text_encoder").mkdir()
                atomic_write_text(tmp / "text_encoder" / "config.json",
                                  json.dumps(self.config.text_encoder, indent=2, sort_keys=True))
                components["text_encoder"] = "text_encoder"
            index = {"_class_name": PIPELINE_CLASS, "format": FORMAT, "format_version": FORMAT_VERSION,
                     "components": components}
            atomic_write_text(tmp / PIPELINE_INDEX, json.dumps(index, indent=2, sort_keys=True))
            old = None
            if folder.exists():
                old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
                os.replace(folder, old)
            os.replace(tmp, folder)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu") -> "LatentDiffusionPipeline":
        """Load a pipeline folder (or a run folder holding one in ``model/``); a missing or
        broken component is reported by name."""
        folder = find_latent_pipeline(Path(path))
        if folder is None:
            raise CheckpointError(f"{path}: not a latent diffusion pipeline folder (no {PIPELINE_INDEX})")
        if not (folder / PIPELINE_INDEX).is_file():  # a latent run's training checkpoint: EMA U-Net + its VAE
            return cls._from_checkpoint(folder, device)
        try:
            index = json.loads((folder / PIPELINE_INDEX).read_text())
            components = index["components"]
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{folder / PIPELINE_INDEX}: unreadable pipeline index ({exc})") from None
        if index.get("_class_name") != PIPELINE_CLASS:
            raise CheckpointError(f"{folder / PIPELINE_INDEX}: holds a {index.get('_class_name')!r}, "
                                  f"expected a {PIPELINE_CLASS}")

        def component(name: str) -> Path:
            sub = components.get(name)
            if not sub or not (folder / sub).is_dir():
                raise CheckpointError(f"{folder}: pipeline component {name!r} is missing (expected {folder / name}/)")
            return folder / sub

        vae_dir, unet_dir = component("vae"), component("unet")
        try:
            vae, _ = load_autoencoder(vae_dir, device=device)
        except (CheckpointError, ConfigError) as exc:
            raise type(exc)(f"pipeline component 'vae': {exc}") from None
        try:
            from .checkpoint import load_state_dict_strict, read_tensors

            verify_checkpoint(unet_dir, MODEL_KIND)
            config = ModelConfig.from_dict(read_json(unet_dir, "config"))
            denoiser = build_denoiser(config)
            load_state_dict_strict(denoiser.network, read_tensors(unet_dir, "model"), unet_dir / "model.safetensors")
        except (CheckpointError, ConfigError) as exc:
            raise type(exc)(f"pipeline component 'unet': {exc}") from None
        if config.conditioning == "text":
            enc_dir = component("text_encoder")
            try:
                config.text_encoder = json.loads((enc_dir / "config.json").read_text())
            except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise CheckpointError(f"pipeline component 'text_encoder': {enc_dir / 'config.json'}: "
                                      f"unreadable ({exc})") from None
        check_unet_matches_vae(config.unet, vae.config, where=str(unet_dir))
        return cls(denoiser.to(device).eval(), config, vae)

    @classmethod
    def _from_checkpoint(cls, ckpt: Path, device: str) -> "LatentDiffusionPipeline":
        from .checkpoint import load_state_dict_strict, read_tensors

        verify_checkpoint(ckpt)
        vae_path = read_json(ckpt, "state")["train_config"]["vae"]
        try:
            vae, _ = load_autoencoder(Path(vae_path), device=device)
        except (CheckpointError, ConfigError) as exc:
            raise type(exc)(f"{ckpt}: the run's VAE (component 'vae'): {exc}") from None
        config = ModelConfig.from_dict(read_json(ckpt, "config"))
        denoiser = build_denoiser(config)
        load_state_dict_strict(denoiser.network, read_tensors(ckpt, "ema"), ckpt / "ema.safetensors")
        return cls(denoiser.to(device).eval(), config, vae)
