"""Starting or resuming a diffusion training run: the pixel or latent trainer for a config."""
from __future__ import annotations

import logging
from pathlib import Path

from torchdiffusion.data import ImageDataset
from torchdiffusion.denoiser.model import ModelConfig
from torchdiffusion.errors import CheckpointError, ConfigError
from torchdiffusion.io.checkpoint import read_json
from torchdiffusion.io.runs import checkpoints_of, latest_checkpoint
from torchdiffusion.training import distributed
from torchdiffusion.training.config import TrainConfig
from torchdiffusion.training.diffusion import Trainer
from torchdiffusion.training.latent import LatentTrainer

log = logging.getLogger("torchdiffusion")


def prepare_run(model_config: ModelConfig | None, train_config: TrainConfig, resume: bool = False,
                dataset: ImageDataset | None = None, dist_info: distributed.DistInfo | None = None) -> Trainer:
    """Build a Trainer for a new run, or (``resume``) restore the run's latest checkpoint.

    A new run refuses an output folder that already holds checkpoints, so nothing is lost
    by a mistyped command.
    """
    out = Path(train_config.out)
    existing = checkpoints_of(out)
    if resume:
        folder = latest_checkpoint(out)
        if folder is None:
            if existing:
                raise CheckpointError(f"{out}: every checkpoint is unreadable; cannot resume")
            log.warning("%s: no checkpoint to resume from; starting a new run", out)
        else:
            saved_model = ModelConfig.from_dict(read_json(folder, "config"))
            saved_train = TrainConfig.from_dict(read_json(folder, "state")["train_config"])
            # the budget (steps/minutes) and progress display may change on resume
            for name in ("steps", "minutes", "progress", "device", "grad_accum", "max_nan_steps"):
                if getattr(train_config, name) is not None:
                    setattr(saved_train, name, getattr(train_config, name))
            saved_train.out = str(out)
            trainer = trainer_class(saved_train)(saved_model, saved_train, dataset, dist_info)
            trainer.load_checkpoint(folder)
            log.info("resumed %s at step %d", folder, trainer.step)
            return trainer
    elif existing:
        raise ConfigError(f"{out} already holds a training run (step {existing[0][0]}); pass --resume to continue "
                          "it or choose another --out")
    return trainer_class(train_config)(model_config, train_config, dataset, dist_info)


def trainer_class(train_config: TrainConfig) -> type[Trainer]:
    """:class:`Trainer`, or :class:`latent.LatentTrainer` for a run on a VAE's latents."""
    return LatentTrainer if train_config.vae else Trainer
