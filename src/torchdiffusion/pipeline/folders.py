"""Model folders on disk: write them, and load whatever :mod:`torchdiffusion.io.runs` resolves.

Three folder kinds, all atomic checkpoint folders (safetensors + JSON + checksummed manifest):

* a **model** folder: ``config.json`` (:class:`ModelConfig`) + ``model.safetensors`` (the EMA
  weights), like diffusers' ``save_pretrained`` layout; a training checkpoint's ``ema`` weights
  load the same way;
* an **autoencoder** folder: ``config.json`` (:class:`AutoencoderConfig`, with ``scale_factor``)
  + ``model.safetensors``;
* a latent **pipeline** folder, a subfolder per component like diffusers::

      model/model_index.json           which class and components
      model/vae/                       an autoencoder folder
      model/unet/                      a model folder
      model/text_encoder/config.json   the frozen encoder it names (text models only)

:func:`load_components` is the one loader: any path a user may give → (denoiser, config, vae or None).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from torchdiffusion.denoiser.model import ModelConfig, build_denoiser
from torchdiffusion.denoiser.space import check_unet_matches_vae
from torchdiffusion.diffusion.parameterization import Denoiser
from torchdiffusion.errors import CheckpointError, ConfigError
from torchdiffusion.io.checkpoint import (FORMAT, FORMAT_VERSION, atomic_write_text, load_json_file, load_state_dict_strict,
                                         read_json, read_tensors, verify_checkpoint, write_checkpoint)
from torchdiffusion.io.runs import (AUTOENCODER_KIND, MODEL_KIND, PIPELINE_CLASS, PIPELINE_INDEX,
                                    find_autoencoder_folder, find_latent_pipeline, find_model_folder)
from torchdiffusion.networks.autoencoder import Autoencoder, AutoencoderConfig

__all__ = ["load_autoencoder", "load_components", "load_model", "save_autoencoder", "save_model", "save_pipeline"]


# --- one network folder ---------------------------------------------------------------
def save_model(folder: Path, denoiser: Denoiser, config: ModelConfig) -> Path:
    """Write ``folder`` = {config.json, model.safetensors, manifest.json} atomically."""
    return write_checkpoint(folder, {"model": denoiser.network.state_dict()}, {"config": config.to_dict()},
                            kind=MODEL_KIND)


def _denoiser_from(folder: Path, weights: str, kind: str | None = None) -> tuple[Denoiser, ModelConfig]:
    manifest = verify_checkpoint(folder, kind)
    if manifest.get("kind") == AUTOENCODER_KIND:
        raise CheckpointError(f"{folder}: an autoencoder (VAE) folder, not a diffusion model (a latent model is "
                              "trained on it with train --vae)")
    try:
        config = ModelConfig.from_dict(read_json(folder, "config"))
    except ConfigError as exc:
        raise ConfigError(f"{folder / 'config.json'}: {exc}") from None
    denoiser = build_denoiser(config)
    load_state_dict_strict(denoiser.network, read_tensors(folder, weights), folder / f"{weights}.safetensors")
    return denoiser, config


def load_model(path: Path, device: str = "cpu") -> tuple[Denoiser, ModelConfig]:
    """Load a pixel denoiser (EMA weights) from any folder :func:`~torchdiffusion.io.runs.find_model_folder` accepts."""
    folder, weights = find_model_folder(path)
    denoiser, config = _denoiser_from(folder, weights)
    return denoiser.to(device).eval(), config


def save_autoencoder(folder: Path, model: Autoencoder, config: AutoencoderConfig | None = None) -> Path:
    """Write ``folder`` = {config.json, model.safetensors, manifest.json} atomically."""
    config = config or model.config
    return write_checkpoint(folder, {"model": model.state_dict()}, {"config": config.to_dict()},
                            kind=AUTOENCODER_KIND)


def load_autoencoder(path: Path, device: str = "cpu") -> tuple[Autoencoder, AutoencoderConfig]:
    folder = find_autoencoder_folder(path)
    verify_checkpoint(folder, AUTOENCODER_KIND)
    config = AutoencoderConfig.from_dict(read_json(folder, "config"))
    model = Autoencoder(config)
    load_state_dict_strict(model, read_tensors(folder, "model"), folder / "model.safetensors")
    return model.to(device).eval(), config


# --- a latent pipeline folder -----------------------------------------------------------
def save_pipeline(folder: str | Path, denoiser: Denoiser, config: ModelConfig, vae: Autoencoder) -> Path:
    """Write the latent pipeline folder atomically (temp sibling folder, then rename)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_autoencoder(tmp / "vae", vae, vae.config)
        save_model(tmp / "unet", denoiser, config)
        components = {"vae": "vae", "unet": "unet", "text_encoder": None}
        if config.conditioning == "text":
            (tmp / "text_encoder").mkdir()
            atomic_write_text(tmp / "text_encoder" / "config.json",
                              json.dumps(config.text_encoder, indent=2, sort_keys=True))
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


def _load_pipeline_folder(folder: Path, device: str) -> tuple[Denoiser, ModelConfig, Autoencoder]:
    index = load_json_file(folder / PIPELINE_INDEX, "pipeline index")
    components = index.get("components")
    if not isinstance(components, dict):
        raise CheckpointError(f"{folder / PIPELINE_INDEX}: the pipeline index has no 'components' object")
    if index.get("_class_name") != PIPELINE_CLASS:
        raise CheckpointError(f"{folder / PIPELINE_INDEX}: holds a {index.get('_class_name')!r}, "
                              f"expected a {PIPELINE_CLASS}")

    def component(name: str) -> Path:
        sub = components.get(name)
        if not sub or not isinstance(sub, str) or not (folder / sub).is_dir():
            raise CheckpointError(f"{folder}: pipeline component {name!r} is missing (expected {folder / name}/)")
        path = (folder / sub).resolve()
        if path.parent != folder.resolve():  # a component is a sub-folder of the pipeline folder, nothing else
            raise CheckpointError(f"{folder / PIPELINE_INDEX}: component {name!r} points outside the pipeline "
                                  f"folder ({sub!r})")
        return folder / sub

    vae_dir, unet_dir = component("vae"), component("unet")
    try:
        vae, _ = load_autoencoder(vae_dir, device=device)
    except (CheckpointError, ConfigError) as exc:
        raise type(exc)(f"pipeline component 'vae': {exc}") from None
    try:
        denoiser, config = _denoiser_from(unet_dir, "model", MODEL_KIND)
    except (CheckpointError, ConfigError) as exc:
        raise type(exc)(f"pipeline component 'unet': {exc}") from None
    if config.conditioning == "text":
        enc_dir = component("text_encoder")
        config.text_encoder = load_json_file(enc_dir / "config.json", "text encoder config")
    check_unet_matches_vae(config.unet, vae.config, where=str(unet_dir))
    return denoiser, config, vae


def _load_latent_checkpoint(ckpt: Path, device: str) -> tuple[Denoiser, ModelConfig, Autoencoder]:
    """A latent run's training checkpoint: its EMA U-Net and the VAE its train config names."""
    verify_checkpoint(ckpt)
    vae_path = read_json(ckpt, "state")["train_config"]["vae"]
    try:
        vae, _ = load_autoencoder(Path(vae_path), device=device)
    except (CheckpointError, ConfigError) as exc:
        raise type(exc)(f"{ckpt}: the run's VAE (component 'vae'): {exc}") from None
    denoiser, config = _denoiser_from(ckpt, "ema")
    return denoiser, config, vae


def load_components(path: str | Path, device: str = "cpu", latent: bool | None = None
                    ) -> tuple[Denoiser, ModelConfig, Autoencoder | None]:
    """(denoiser in eval mode, its config, the VAE or None) from a model, run, checkpoint or
    latent pipeline folder. ``latent=True`` requires a latent pipeline (an error names the path
    otherwise); ``False`` requires a pixel model."""
    path = Path(path)
    folder = find_latent_pipeline(path) if latent is not False else None
    if folder is None:
        if latent:
            raise CheckpointError(f"{path}: not a latent diffusion pipeline folder (no {PIPELINE_INDEX})")
        denoiser, config = load_model(path, device=device)
        return denoiser, config, None
    if (folder / PIPELINE_INDEX).is_file():
        denoiser, config, vae = _load_pipeline_folder(folder, device)
    else:
        denoiser, config, vae = _load_latent_checkpoint(folder, device)
    return denoiser.to(device).eval(), config, vae
