"""What a model is: network (chosen by name) + schedule + parameterization + conditioning.

:class:`ModelConfig` is saved as ``config.json`` beside the weights (``pipeline.folders``);
:func:`build_denoiser` turns it into the :class:`~torchdiffusion.diffusion.parameterization.Denoiser`
D(x, σ, cond). The network is looked up by ``ModelConfig.network`` in :data:`NETWORKS`, so a second
backbone is one line there (its config keeps the JSON key ``"unet"``, the name the folders use).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torchdiffusion.errors import ConfigError
from torchdiffusion.diffusion.parameterization import PARAMETERIZATIONS, Denoiser
from torchdiffusion.diffusion.schedules import ScheduleConfig
from torchdiffusion.networks.unet import UNet, UNetConfig


NETWORKS = {"unet": (UNet, UNetConfig)}  # name → (module class, its config dataclass)


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
    network: str = "unet"  # a key of NETWORKS; its config is the field `unet`
    # a distilled student (training/distill.py): {"teacher": folder, "steps": K, "guidance_range": [lo, hi],
    # "substeps", "round", "original_teacher", "method"}; it samples with DDIM on the trailing grid of ≤ K
    # steps, one forward per step
    distilled: dict | None = None

    def validate(self) -> None:
        if not isinstance(self.network, str) or self.network not in NETWORKS:
            raise ConfigError(f"unknown network {self.network!r}; choose one of {sorted(NETWORKS)}")
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
        if self.distilled is not None:
            d = self.distilled
            k = d.get("steps") if isinstance(d, dict) else None
            rng = d.get("guidance_range") if isinstance(d, dict) else None
            if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1024 or not isinstance(rng, list) \
                    or len(rng) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rng) \
                    or not 0 <= rng[0] <= rng[1] <= 30:
                raise ConfigError(f"distilled must be {{'steps': K ≥ 1, 'guidance_range': [lo, hi], …}}, got {d!r}")
            if not self.unet.guidance_embed:
                raise ConfigError("a distilled student needs unet.guidance_embed")
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
            network = d.get("network", "unet")
            if not isinstance(network, str) or network not in NETWORKS:
                raise ConfigError(f"unknown network {network!r}; choose one of {sorted(NETWORKS)}")
            unet = NETWORKS[network][1].from_dict(d.pop("unet"))
            schedule = ScheduleConfig(**d.pop("schedule"))
            cfg = cls(unet=unet, schedule=schedule, **d)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"malformed model config: {exc}") from None
        cfg.validate()
        return cfg


def build_denoiser(config: ModelConfig) -> Denoiser:
    config.validate()
    network_class = NETWORKS[config.network][0]
    denoiser = Denoiser(network_class(config.unet), config.schedule.build(), config.parameterization)
    if config.distilled is not None:
        denoiser.distilled_steps = int(config.distilled["steps"])
        denoiser.guidance_range = tuple(float(v) for v in config.distilled["guidance_range"])
    return denoiser
