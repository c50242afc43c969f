"""Image tensors ↔ pictures: [-1, 1] float tensors to uint8, PIL images, grids and PNG files."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from . import faults


def to_uint8(x: Tensor) -> Tensor:
    """[-1, 1] float (N, C, H, W) → uint8, rounding to nearest."""
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def from_pil(img: Image.Image, channels: int) -> Tensor:
    """PIL image → float tensor (C, H, W) in [-1, 1] with ``channels`` 1 or 3."""
    img = img.convert("L" if channels == 1 else "RGB")
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 127.5 - 1


def to_pil(x: Tensor) -> list[Image.Image]:
    """A batch (N, C, H, W) in [-1, 1] → list of PIL images ('L' or 'RGB')."""
    arr = to_uint8(x).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a) for a in arr]


def make_grid(x: Tensor, nrow: int | None = None, padding: int = 2, pad_value: float = 1.0) -> Tensor:
    """Tile a batch (N, C, H, W) into one image (C, H', W'), ``nrow`` images per row."""
    n, c, h, w = x.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    rows = int(math.ceil(n / nrow))
    grid = torch.full((c, rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value, dtype=x.dtype)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, top:top + h, left:left + w] = x[i].cpu()
    return grid


def save_grid(x: Tensor, path: Path, nrow: int | None = None, scale: int = 1) -> Path:
    """Write a grid PNG atomically (temp file + rename); ``scale`` enlarges by pixel repetition."""
    img = to_pil(make_grid(x, nrow)[None])[0]
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return save_image(img, path)


def save_image(img: Image.Image, path: Path, pnginfo=None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    img.save(tmp, format="PNG", pnginfo=pnginfo)
    faults.point("png")
    os.replace(tmp, path)
    return path
