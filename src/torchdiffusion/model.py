"""A trained model on disk: U-Net config + schedule + parameterization in ``config.json``
beside ``model.safetensors`` (the EMA weights), like diffusers' ``save_pretrained`` layout.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .checkpoint import load_state_dict_strict, read_json, read_tensors, verify_checkpoint, write_checkpoint
from .errors import CheckpointError, ConfigError
from .parameterization import PARAMETERIZATIONS, Denoiser
from .schedules import ScheduleConfig
from .unet import UNet, UNetConfig

MODEL_KIND = "model"


@dataclass
class ModelConfig:
    """Everything needed to rebuild a denoiser: network, schedule, parameterization, labels."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    parameterization: str = "v"
    class_names: list[str] | None = None
    conditioning: str = "none"  # none | class | text
    text_encoder: dict | None = None  # e.g. {"name": "minilm", "max_length": 32} for text models
    image_condition: dict | None = None  # {"kind": "inpaint"} / {"kind": "superres", "factor": 4, …}: tasks/

    def validate(self) -> None:
        self.unet.validate()
        s = self.schedule
        if not isinstance(s.name, str):
            raise ConfigError(f"schedule name must be a string, got {s.name!r}")
        if isinstance(s.num_timesteps, bool) or not isinstance(s.num_timesteps, int) or \
                not 2 <= s.num_timesteps <= 100_000:
            raise ConfigError(f"schedule num_timesteps must be an integer in [2, 100000], got {s.num_timesteps!r}")
        if self.parameterization not in PARAMETERIZATIONS:
            raise ConfigError(f"unknown parameterization {self.parameterization!r}; choose one of {PARAMETERIZATIONS}")
        if self.conditioning not in ("none", "class", "text"):
            raise ConfigError(f"unknown conditioning {self.conditioning!r}; choose none, class or text")
        if self.conditioning == "class" and not self.unet.num_classes:
            raise ConfigError("class conditioning needs unet.num_classes")
        if self.conditioning == "text" and not (self.unet.context_dim and self.text_encoder):
            raise ConfigError("text conditioning needs unet.context_dim and a text_encoder")
        if self.image_condition is not None:
            kind = self.image_condition.get("kind") if isinstance(self.image_condition, dict) else None
            if kind not in ("inpaint", "superres") or not self.unet.extra_in_channels:
                raise ConfigError(f"image_condition {self.image_condition!r} needs kind inpaint or superres and "
                                  "unet.extra_in_channels > 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        try:
            d = dict(d)
            unet = UNetConfig.from_dict(d.pop("unet"))
            schedule = ScheduleConfig(**d.pop("schedule"))
            cfg = cls(unet=unet, schedule=schedule, **d)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"malformed model config: {exc}") from None
        cfg.validate()
        return cfg


def build_denoiser(config: ModelConfig) -> Denoiser:
    config.validate()
    return Denoiser(UNet(config.unet), config.schedule.build(), config.parameterization)


def save_model(folder: Path, denoiser: Denoiser, config: ModelConfig) -> Path:
    """Write ``folder`` = {config.json, model.safetensors, manifest.json} atomically."""
    return write_checkpoint(folder, {"model": denoiser.network.state_dict()}, {"config": config.to_dict()},
                            kind=MODEL_KIND)


def find_model_folder(path: Path) -> tuple[Path, str]:
    """Resolve a user's ``--checkpoint`` path to (folder, weights name).

    Accepts a model folder, a training run folder (its ``model/`` export, else its latest
    training checkpoint's EMA weights) or one training checkpoint folder.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if (path / "model.safetensors").is_file():
        return path, "model"
    if (path / "model" / "model.safetensors").is_file():
        return path / "model", "model"
    if (path / "ema.safetensors").is_file():
        return path, "ema"
    from .trainer import latest_checkpoint  # a run folder with checkpoints but no export yet

    ckpt = latest_checkpoint(path)
    if ckpt is not None:
        return ckpt, "ema"
    raise CheckpointError(f"{path}: not a torchdiffusion model, run or checkpoint folder "
                          "(expected model.safetensors + config.json, or checkpoints/)")


def load_model(path: Path, device: str = "cpu") -> tuple[Denoiser, ModelConfig]:
    """Load a denoiser (EMA weights) from any folder :func:`find_model_folder` accepts."""
    folder, weights = find_model_folder(path)
    verify_checkpoint(folder)
    config = ModelConfig.from_dict(read_json(folder, "config"))
    denoiser = build_denoiser(config)
    load_state_dict_strict(denoiser.network, read_tensors(folder, weights), folder / f"{weights}.safetensors")
    return denoiser.to(device).eval(), config
