"""Server-side limits of the web UI, checked on every request (the UI shows them too).

A request above a limit is refused with a :class:`~torchdiffusion.errors.ConfigError` that
names the field, the value and the limit; nothing is clipped silently. Uploads are decoded
only when their header says they fit ``max_upload_pixels`` (and every decode in torchdiffusion,
UI or not, is bounded by ``torchdiffusion.io.images.MAX_IMAGE_PIXELS``) and are then resized to the model's resolution.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from torchdiffusion.errors import ConfigError


@dataclass
class UILimits:
    """Limits per request. Memory grows with batch × image size (activations) and time with
    steps, so these three bound what one request can cost; the queue runs one at a time."""

    max_steps: int = 150
    max_batch: int = 8
    max_upload_side: int = 4096          # pixels, either side of an uploaded image
    max_upload_pixels: int = 16_777_216  # 4096², decoded size
    max_upload_mb: float = 20.0          # file size, refused by the HTTP server
    max_queue: int = 64                  # waiting requests; more are refused ("busy")
    max_frames: int = 32                 # interpolation frames
    preview_every: int = 5               # x̂₀ preview every N steps

    def validate(self) -> None:
        for name, v in asdict(self).items():
            if v <= 0:
                raise ConfigError(f"UI limit {name} must be > 0, got {v}")

    def check_steps(self, steps) -> int:
        steps = _as_int("steps", steps)
        if not 1 <= steps <= self.max_steps:
            raise ConfigError(f"steps must be between 1 and {self.max_steps} (server limit), got {steps}")
        return steps

    def check_batch(self, n) -> int:
        n = _as_int("batch size", n)
        if not 1 <= n <= self.max_batch:
            raise ConfigError(f"batch size must be between 1 and {self.max_batch} (server limit), got {n}")
        return n

    def check_frames(self, n) -> int:
        n = _as_int("frames", n)
        if not 2 <= n <= self.max_frames:
            raise ConfigError(f"frames must be between 2 and {self.max_frames} (server limit), got {n}")
        return n

    def check_upload_size(self, width: int, height: int, name: str = "upload") -> None:
        if max(width, height) > self.max_upload_side or width * height > self.max_upload_pixels:
            raise ConfigError(f"{name}: image of {width}×{height} is too large (server limit: "
                              f"{self.max_upload_side} px a side, {self.max_upload_pixels / 1e6:.1f} MP); "
                              "downscale it first")

    def summary(self) -> str:
        return (f"Server limits: steps ≤ {self.max_steps}, batch ≤ {self.max_batch}, uploads ≤ "
                f"{self.max_upload_side} px a side and {self.max_upload_mb:g} MB (resized to the model's size), "
                f"≤ {self.max_frames} interpolation frames, ≤ {self.max_queue} waiting requests; "
                "one request runs at a time.")

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> "UILimits":
        from torchdiffusion.io.checkpoint import load_json_file

        try:
            lim = cls(**load_json_file(Path(path), "UI limits file", error=ConfigError))
        except TypeError as exc:
            raise ConfigError(f"{path}: not a UI limits file ({exc})") from None
        lim.validate()
        return lim


def _as_int(name: str, v) -> int:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number, got {v!r}") from None
    if not f.is_integer():
        raise ConfigError(f"{name} must be a whole number, got {v!r}")
    return int(f)
