"""The on-disk vocabulary, and "what is this path?".

Every folder the toolkit writes is an atomic checkpoint folder (:mod:`torchdiffusion.io.checkpoint`)
whose ``manifest.json`` names its *kind*; the names below are the only place these strings live
(diffusers keeps its ``config.json`` / ``model_index.json`` names in one module the same way):

    run/                                  a training run (``torchdiffusion train --out run``)
      checkpoints/step-000500/            kind "training-checkpoint" (or "vae-training-checkpoint")
      model/                              kind "model": config.json + model.safetensors (EMA weights)
      model/model_index.json              …or a latent pipeline folder: vae/ unet/ [text_encoder/]
    vae-run/vae/                          kind "autoencoder"

The resolvers map a user's ``--checkpoint`` path to the folder to load; they only read manifests
and JSON, never weights.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from torchdiffusion.errors import CheckpointError, ConfigError
from torchdiffusion.io.checkpoint import read_json, verify_checkpoint

log = logging.getLogger("torchdiffusion.io")

MODEL_KIND = "model"
AUTOENCODER_KIND = "autoencoder"
CHECKPOINT_KIND = "training-checkpoint"
VAE_CHECKPOINT_KIND = "vae-training-checkpoint"
PIPELINE_INDEX = "model_index.json"
PIPELINE_CLASS = "LatentDiffusionPipeline"  # the `_class_name` of model_index.json; kept for existing folders
COMPONENTS = ("vae", "unet", "text_encoder")
_CKPT_RE = re.compile(r"^step-(\d+)$")

__all__ = ["AUTOENCODER_KIND", "CHECKPOINT_KIND", "COMPONENTS", "MODEL_KIND", "PIPELINE_CLASS", "PIPELINE_INDEX",
           "VAE_CHECKPOINT_KIND", "checkpoints_of", "find_autoencoder_folder", "find_latent_pipeline",
           "find_model_folder", "latest_checkpoint"]


def checkpoints_of(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of the run's checkpoint folders, newest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _CKPT_RE.match(p.name)) and p.is_dir()]
    return sorted(found, reverse=True)


def latest_checkpoint(run_dir: Path, kind: str = CHECKPOINT_KIND) -> Path | None:
    """The newest checkpoint of ``kind`` that verifies; a corrupt newer one is reported and skipped."""
    for _, folder in checkpoints_of(run_dir):
        try:
            verify_checkpoint(folder, kind)
            return folder
        except CheckpointError as exc:
            log.warning("skipping unusable checkpoint: %s", exc)
    return None


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
    ckpt = latest_checkpoint(path)  # a run folder with checkpoints but no export yet
    if ckpt is not None:
        return ckpt, "ema"
    raise CheckpointError(f"{path}: not a torchdiffusion model, run or checkpoint folder "
                          "(expected model.safetensors + config.json, or checkpoints/)")


def find_autoencoder_folder(path: Path) -> Path:
    """An autoencoder folder, or a ``train-vae`` run folder (its ``vae/`` export)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder (expected a VAE folder from `torchdiffusion train-vae`)")
    for folder in (path, path / "vae"):
        if (folder / "model.safetensors").is_file() and (folder / "config.json").is_file():
            return folder
    raise CheckpointError(f"{path}: not an autoencoder folder (expected config.json + model.safetensors, or a "
                          "train-vae run folder with vae/)")


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


LOCK_FILE = ".lock"
_held: dict[str, object] = {}  # run folders this process holds, resolved path → open lock file


class RunLock:
    """An advisory lock on a run folder (``OUT/.lock``, ``fcntl.flock``), held while a trainer
    writes there: a second trainer on the same ``--out`` (a new run, or its ``--resume``) is
    refused at once with the holder's PID, instead of both pruning each other's checkpoints and
    replacing each other's log. The kernel releases the lock when its process dies in any way
    (SIGKILL included), so a lock left by a dead run is never stale; the PID written in the file
    is only for the message. Re-entrant within one process. Where ``fcntl`` does not exist
    (Windows) the lock is a no-op."""

    def __init__(self, out):
        self.out = Path(out)
        self._fh = None
        self._key = None

    def __enter__(self) -> "RunLock":
        import os

        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        self.out.mkdir(parents=True, exist_ok=True)
        key = str(self.out.resolve())
        if key in _held:
            return self
        path = self.out / LOCK_FILE
        fh = open(path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip()[:200] or "another process"
            fh.close()
            raise ConfigError(f"{self.out} is in use by another training process ({holder}); wait for it to "
                              "finish or stop it (Ctrl-C or kill: it saves a checkpoint), or choose another --out")
        fh.seek(0)
        fh.truncate()
        fh.write(f"PID {os.getpid()}")
        fh.flush()
        _held[key] = fh
        self._fh, self._key = fh, key
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            _held.pop(self._key, None)
            self._fh.close()  # closing releases the flock
            self._fh = None
