"""The run configurations, saved as JSON in every checkpoint: :class:`TrainConfig` (diffusion)
and :class:`VAETrainConfig` (autoencoder)."""
from __future__ import annotations

from dataclasses import dataclass, fields

from torchdiffusion.sampling.registry import DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS
from torchdiffusion.denoiser.losses import WEIGHTINGS
from torchdiffusion.errors import ConfigError
from torchdiffusion.networks.precision import PRECISIONS


DEFAULT_MINUTES = 8.0  # the training budget when neither --steps nor --minutes is given


@dataclass
class TrainConfig:
    """Training hyper-parameters; saved in every checkpoint's ``state.json``."""

    data: str = "mnist"
    out: str = "runs/mnist"
    vae: str | None = None  # a train-vae folder: train on its latents (latent.LatentTrainer)
    steps: int | None = None  # stop after this many optimizer steps …
    minutes: float | None = None  # … or after this much training wall time (DEFAULT_MINUTES when neither)
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    weighting: str = "min_snr"
    min_snr_gamma: float = 5.0
    cond_drop_prob: float = 0.1  # condition dropout for classifier-free guidance
    seed: int = 0
    hflip: bool = False
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (CUDA, with a gradient scaler)
    grad_accum: int = 1  # micro-batches per optimizer step (per process)
    device: str = "cpu"
    sample_every: int = 500
    checkpoint_every: int = 250
    log_every: int = 10
    sample_n: int = 64
    sample_steps: int = DEFAULT_STEPS
    sampler: str = DEFAULT_SAMPLER
    final_steps: int = DEFAULT_STEPS
    sample_guidance_scale: float = DEFAULT_GUIDANCE
    # FID/KID (+ class accuracy) of the EMA model to OUT/eval.csv every eval_every steps (see
    # evaluation.TrainingEvaluator); None: every 1000 steps for digit data, off otherwise; 0: off
    eval_every: int | None = None
    eval_n: int = 256
    eval_steps: int = DEFAULT_STEPS
    eval_features: str = "auto"  # auto (mnist for digit data, else inception) | mnist | inception
    keep_checkpoints: int = 2
    progress: bool = True
    max_nan_steps: int = 5  # stop after this many consecutive non-finite (skipped) steps

    def validate(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"--steps must be ≥ 1, got {self.steps}")
        if self.minutes is not None and self.minutes <= 0:
            raise ConfigError(f"--minutes must be > 0, got {self.minutes}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be ≥ 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"unknown --weighting {self.weighting!r}; choose one of {WEIGHTINGS}")
        if not 0.0 <= self.cond_drop_prob < 1.0:
            raise ConfigError(f"--cond-drop-prob must be in [0, 1), got {self.cond_drop_prob}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown --precision {self.precision!r}; choose auto, fp32, bf16 or fp16")
        if self.precision == "fp16" and not self.device.startswith("cuda"):
            raise ConfigError("--precision fp16 needs --device cuda (on CPU use bf16 or fp32)")
        if self.grad_accum < 1:
            raise ConfigError(f"--grad-accum must be ≥ 1, got {self.grad_accum}")
        if self.eval_every is not None and self.eval_every < 0:
            raise ConfigError(f"--eval-every must be ≥ 0 (0 = no evaluation), got {self.eval_every}")
        if self.eval_n < 8 or self.eval_steps < 1:
            raise ConfigError(f"--eval-n must be ≥ 8 and --eval-steps ≥ 1, got {self.eval_n} and {self.eval_steps}")
        if self.eval_features not in ("auto", "mnist", "inception"):
            raise ConfigError(f"unknown --eval-features {self.eval_features!r}; choose auto, mnist or inception")
        for name in ("sample_every", "checkpoint_every", "log_every", "keep_checkpoints", "max_nan_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be ≥ 1")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


REC_LOSSES = ("l1", "l2")


@dataclass
class VAETrainConfig:
    """train-vae hyper-parameters; saved in every checkpoint's ``state.json``."""

    data: str = "mnist"
    out: str = "runs/vae"
    steps: int | None = None
    minutes: float | None = None  # default 5 when neither is given
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 50
    grad_clip: float = 1.0
    rec_loss: str = "l1"
    kl_weight: float = 1e-6
    gan: bool = False
    disc_start: int = 500  # steps of reconstruction-only training before the GAN loss starts
    disc_weight: float = 0.5
    disc_channels: int = 32
    disc_layers: int = 2
    holdout: float = 0.05  # fraction of the images held out for PSNR/SSIM (MNIST: its test split)
    seed: int = 0
    hflip: bool = False
    device: str = "cpu"
    sample_every: int = 500
    checkpoint_every: int = 250
    log_every: int = 10
    keep_checkpoints: int = 2
    scale_images: int = 2048  # training images whose latents set the scale factor
    progress: bool = True

    def validate(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"--steps must be ≥ 1, got {self.steps}")
        if self.minutes is not None and self.minutes <= 0:
            raise ConfigError(f"--minutes must be > 0, got {self.minutes}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be ≥ 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if self.rec_loss not in REC_LOSSES:
            raise ConfigError(f"unknown --rec-loss {self.rec_loss!r}; choose one of {REC_LOSSES}")
        if self.kl_weight < 0 or self.disc_weight < 0:
            raise ConfigError("--kl-weight and --disc-weight must be ≥ 0")
        if self.disc_start < 0 or self.disc_layers < 1 or self.disc_channels < 1:
            raise ConfigError("--disc-start must be ≥ 0, --disc-layers and --disc-channels ≥ 1")
        if not 0.0 < self.holdout < 1.0:
            raise ConfigError(f"--holdout must be in (0, 1), got {self.holdout}")
        for name in ("sample_every", "checkpoint_every", "log_every", "keep_checkpoints", "scale_images"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be ≥ 1")

    @classmethod
    def from_dict(cls, d: dict) -> "VAETrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
