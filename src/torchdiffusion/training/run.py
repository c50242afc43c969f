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
from torchdiffusion.training.distill_trainer import DistillTrainer
from torchdiffusion.training.latent import LatentTrainer

log = logging.getLogger("torchdiffusion")

# Options a resumed run may be given anew without changing what it computes (its budget, its
# display, where it runs, how often it writes things, its previews and evaluation). Every other
# saved option is restored; a different value for one is refused unless named in ``overrides``.
RESUME_MAY_CHANGE = ("steps", "minutes", "progress", "device", "grad_accum", "max_nan_steps", "sample_every",
                     "checkpoint_every", "log_every", "keep_checkpoints", "sample_n", "sample_steps", "final_steps",
                     "eval_every", "eval_n", "eval_steps", "eval_features")
RESUME_SHOWN = ("data", "batch_size", "lr", "grad_accum", "seed", "ema_decay", "weighting")


def resume_options(saved: TrainConfig, given: dict | None, overrides=(), where="") -> list[str]:
    """Apply to ``saved`` (the resumed run's options) the ``given`` ones (option name → value, as
    typed on the command line; None: the fields of a Python caller's config that differ from the
    defaults, budget and display only). Returns the changes as text; raises a ConfigError for a
    changed option that would change the run, unless it is in ``overrides``."""
    given = given or {}
    changes = []
    for name, value in given.items():
        if not hasattr(saved, name) or name in ("out", "resume"):
            continue
        old = getattr(saved, name)
        if value == old or (value is None and name in ("steps", "minutes")):
            continue
        if name not in RESUME_MAY_CHANGE and name not in overrides:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} {value} differs from the resumed run's {flag} {old}{where}: resuming with it "
                              f"would change the run. Leave {flag} out to continue as it was, or pass "
                              f"--override {name} to resume with the new value")
        setattr(saved, name, value)
        changes.append(f"{name} {old} → {value}")
    return changes


def prepare_run(model_config: ModelConfig | None, train_config: TrainConfig, resume: bool = False,
                dataset: ImageDataset | None = None, dist_info: distributed.DistInfo | None = None,
                given: dict | None = None, overrides=()) -> Trainer:
    """Build a Trainer for a new run, or (``resume``) restore the run's latest checkpoint.

    A new run refuses an output folder that already holds checkpoints, so nothing is lost
    by a mistyped command. A resumed run restores every saved training option; ``given``
    (option → value typed on the command line) may change those in :data:`RESUME_MAY_CHANGE`,
    others only when named in ``overrides`` (:func:`resume_options`). A Python caller
    (``given`` None) changes the budget and display fields of ``train_config`` that differ from
    the defaults.
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
            state = read_json(folder, "state")
            if not isinstance(state.get("train_config"), dict):
                raise CheckpointError(f"{folder / 'state.json'}: 'train_config' must be an object with the run's "
                                      "training options; the checkpoint is damaged")
            saved_train = TrainConfig.from_dict(state["train_config"])
            if given is None:
                defaults = TrainConfig()
                given = {name: getattr(train_config, name) for name in ("steps", "minutes", "progress", "device",
                                                                      "grad_accum", "max_nan_steps")
                         if getattr(train_config, name) != getattr(defaults, name)}
            changes = resume_options(saved_train, given, overrides, f" ({folder})")
            saved_train.out = str(out)
            saved_train.validate()
            trainer = trainer_class(saved_train, saved_model)(saved_model, saved_train, dataset, dist_info)
            trainer.load_checkpoint(folder)
            shown = ", ".join(f"{name} {getattr(saved_train, name)}" for name in RESUME_SHOWN)
            log.info("resumed %s at step %d with its saved options (%s, …)%s", folder, trainer.step, shown,
                     "; changed: " + ", ".join(changes) if changes else "")
            return trainer
    elif existing:
        raise ConfigError(f"{out} already holds a training run (step {existing[0][0]}); pass --resume to continue "
                          "it or choose another --out")
    return trainer_class(train_config, model_config)(model_config, train_config, dataset, dist_info)


def trainer_class(train_config: TrainConfig, model_config: ModelConfig | None = None) -> type[Trainer]:
    """:class:`Trainer`, :class:`latent.LatentTrainer` for a run on a VAE's latents, or
    :class:`distill.DistillTrainer` for a distillation round (a model config with ``distilled``)."""
    if model_config is not None and model_config.distilled is not None:
        return DistillTrainer
    return LatentTrainer if train_config.vae else Trainer
