"""The models the web UI may load: folders inside one models folder, never a path outside it.

A model is named by its folder's path relative to the models folder (``mnist``,
``runs/mnist-class``). :meth:`ModelLibrary.resolve` refuses absolute paths, ``..`` and
symbolic links that lead outside (the resolved path must lie inside the resolved models
folder), so a request cannot make the server read an arbitrary file. Loaded pipelines are
cached (the ``cache_size`` most recently used) so switching back and forth is instant.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

from torchdiffusion.errors import CheckpointError, ConfigError, TorchDiffusionError
from torchdiffusion.io.images import safe_name
from torchdiffusion.io.runs import find_model_folder
from torchdiffusion.networks.precision import check_precision
from torchdiffusion.pipeline.pipeline import DiffusionPipeline


class ModelLibrary:
    def __init__(self, models_dir: str | Path, default: str | Path | None = None, device: str = "cpu",
                 cache_size: int = 2, precision: str = "auto"):
        self.root = Path(models_dir).expanduser().resolve()
        if not self.root.is_dir():
            raise ConfigError(f"--models-dir {models_dir}: no such folder")
        self.device = device
        self.precision = check_precision(precision, device)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, object] = OrderedDict()
        self._hashes: dict[Path, str] = {}
        self._lock = threading.Lock()
        self.default = None
        if default is not None:
            self.default = self.name_of(Path(default))
            self.resolve(self.default)  # fails early on a bad --checkpoint

    def name_of(self, path: Path) -> str:
        """The library name of a folder inside the models folder (``.`` for the folder itself)."""
        p = Path(path).expanduser().resolve()
        try:
            rel = p.relative_to(self.root)
        except ValueError:
            raise ConfigError(f"--checkpoint {path} is not inside the models folder {self.root} "
                              "(give --models-dir a folder that contains it)") from None
        return rel.as_posix() or "."

    def names(self) -> list[str]:
        """Model folders directly inside the models folder (and the folder itself if it is one)."""
        found = []
        try:
            inside = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError as exc:
            raise ConfigError(f"the models folder {safe_name(self.root)} cannot be listed "
                              f"({exc.strerror or type(exc).__name__})") from None
        candidates = [self.root] + inside
        for p in candidates:
            try:
                find_model_folder(p)
            except TorchDiffusionError:
                continue
            if p.resolve().is_relative_to(self.root):
                found.append(p.relative_to(self.root).as_posix() or ".")
        if self.default and self.default not in found:
            found.insert(0, self.default)
        return found

    def resolve(self, name: str) -> Path:
        """The folder of model ``name``, refusing anything outside the models folder."""
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("no model chosen: pick one in the model list")
        rel = Path(name.strip())
        if rel.is_absolute() or ".." in rel.parts or "\\" in name or "\x00" in name:
            raise ConfigError(f"model {name!r} refused: give a folder name inside the models folder "
                              "(absolute paths and '..' are not allowed)")
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root):
            raise ConfigError(f"model {name!r} refused: it leads outside the models folder (a link?)")
        try:
            find_model_folder(path)
        except CheckpointError:
            raise ConfigError(f"model {name!r}: not a model folder inside the models folder") from None
        return path

    def get(self, name: str):
        """The :class:`~torchdiffusion.pipeline.DiffusionPipeline` of model ``name`` (cached)."""
        path = self.resolve(name)
        key = str(path)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            pipe = DiffusionPipeline.from_pretrained(path, device=self.device, precision=self.precision)
            self._cache[key] = pipe
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return pipe

    def model_hash(self, name: str) -> str:
        """AUTOMATIC1111's "Model hash": the first 10 hex digits of the weights' SHA-256."""
        folder, weights = find_model_folder(self.resolve(name))
        f = folder / f"{weights}.safetensors"
        if f not in self._hashes:
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            self._hashes[f] = h.hexdigest()[:10]
        return self._hashes[f]
