"""Image tensors ↔ pictures: [-1, 1] float tensors to uint8, PIL images, grids and PNG files."""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from torchdiffusion.errors import ConfigError, DataError
from torchdiffusion.io import faults


# The one decoding guard: no image is decoded whose header declares more pixels than this (a
# 343 KB PNG can declare 9,400 × 9,400 RGBA: 354 MB decoded, several GB in intermediate copies).
# Pillow's own guard (MAX_IMAGE_PIXELS, an error only above twice it) is set to the same figure.
MAX_IMAGE_PIXELS = int(os.environ.get("TORCHDIFFUSION_MAX_IMAGE_PIXELS", 40_000_000))
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


def check_pixels(im: Image.Image, where: str, limit: int = MAX_IMAGE_PIXELS) -> None:
    """Refuse, from the header alone (before any decoding), an image larger than ``limit`` pixels."""
    w, h = im.size
    if w * h > limit:
        raise DataError(f"{where}: {w}×{h} = {w * h / 1e6:.1f} megapixels is over the {limit / 1e6:g}-megapixel "
                        "decoding limit (set TORCHDIFFUSION_MAX_IMAGE_PIXELS to raise it)")


def safe_name(path) -> str:
    """A file name fit for a one-line message: control characters (newline, ESC, …) escaped."""
    text = str(path)
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


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
    try:
        img.save(tmp, format="PNG", pnginfo=pnginfo)
        faults.point("png")
        os.replace(tmp, path)
    except OSError as exc:  # disk full, read-only: no half-written temporary file is left behind
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
    return path


def check_output(path, option: str, *, folder: bool = False, suffixes: tuple[str, ...] = ()) -> Path:
    """Refuse, before any work is done, an output path that cannot be written: one below a
    file (``out.png/x.png``), a file where a folder is wanted or a folder where a file is,
    a wrong suffix, or an existing parent folder that is not writable. ``option`` names the
    CLI option in the message."""
    path = Path(path)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{option} {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                try:
                    why = "Read-only file system" if os.statvfs(parent).f_flag & os.ST_RDONLY else "Permission denied"
                except (OSError, AttributeError):
                    why = "not writable"
                raise ConfigError(f"{option} {path}: cannot write in the folder {parent} ({why})")
            break
    if folder and path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: is a file; give a folder")
    if not folder and path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; give a file name")
    if suffixes and not folder and path.suffix.lower() not in suffixes:
        raise ConfigError(f"{option} {path}: the file name must end in {' or '.join(suffixes)}")
    return path


_LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R BT.601


def _read(item, name: str, mode: str | None = None):
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, (str, Path)):
        path = Path(item)
        if not path.is_file():
            raise DataError(f"{name} {safe_name(path)}: no such file")
        try:
            with Image.open(path) as img:
                check_pixels(img, f"{name} {safe_name(path)}")
                img.load()
                return img.copy()
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as exc:
            raise DataError(f"{name} {safe_name(path)}: not a readable image ({exc})") from None
    return item


def _pil_to_tensor(img, channels: int | None) -> Tensor:
    if channels is None:
        channels = 1 if img.mode in ("L", "1", "I", "I;16", "F", "LA") else 3
    return from_pil(img, channels)


def as_images(images, channels: int | None = None, name: str = "image") -> Tensor:
    """Images as float (N, C, H, W) in [-1, 1] on the CPU.

    Accepts a path, a PIL image, a tensor (C, H, W)/(N, C, H, W) in [-1, 1] or uint8, or a
    list of those (same size). ``channels`` (the model's) converts: RGB → gray by BT.601
    luma, gray → RGB by repetition, RGBA drops alpha; other channel counts are an error.
    """
    from PIL import Image

    if isinstance(images, (list, tuple)):
        parts = [as_images(im, channels, f"{name}[{i}]") for i, im in enumerate(images)]
        if not parts:
            raise ConfigError(f"{name}: empty list of images")
        if len({p.shape[1:] for p in parts}) != 1:
            raise ConfigError(f"{name}: images differ in size: {sorted({tuple(p.shape[1:]) for p in parts})}")
        return torch.cat(parts)
    images = _read(images, name)
    if isinstance(images, Image.Image):
        return _pil_to_tensor(images, channels)[None]
    if not isinstance(images, Tensor):
        raise ConfigError(f"{name} must be a path, a PIL image or a tensor, got {type(images).__name__}")
    x = images.detach().cpu()
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ConfigError(f"{name} must have shape (C, H, W) or (N, C, H, W), got {tuple(images.shape)}")
    x = x.float().div(127.5).sub(1.0) if x.dtype == torch.uint8 else x.float()
    if not bool(torch.isfinite(x).all()):
        raise ConfigError(f"{name} contains NaN or inf")
    if channels is None or x.shape[1] == channels:
        return x
    c = x.shape[1]
    if c == 4:
        x, c = x[:, :3], 3
        if channels == 3:
            return x
    if c == 3 and channels == 1:
        return (x * _LUMA.view(1, 3, 1, 1)).sum(1, keepdim=True)
    if c == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1).clone()
    raise ConfigError(f"{name} has {images.shape[-3] if images.ndim >= 3 else 1} channels; the model takes "
                      f"{channels} (1 = grayscale, 3 = RGB; RGB/gray/RGBA are converted)")


def check_size(x: Tensor, size: int | None, name: str = "image") -> None:
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        raise ConfigError(f"{name} is {x.shape[-2]}×{x.shape[-1]} but the model works at {size}×{size} "
                          "(resize it first)")


def as_mask(mask, image: Tensor, name: str = "mask") -> Tensor:
    """A hole mask (N, 1, H, W) of 0/1 floats for ``image`` (N, C, H, W): **1 (white) marks
    pixels to fill**, 0 the known pixels (diffusers' convention).

    Accepts a path/PIL image (gray levels / 255), a tensor (H, W), (1, H, W), (N, 1, H, W)
    or with the image's channels (any channel counts), bool or in [0, 1]. A mask of another
    size than the image is an error; a non-binary mask is thresholded at 0.5 with a warning.
    """
    from PIL import Image

    mask = _read(mask, name)
    if isinstance(mask, Image.Image):
        m = torch.from_numpy(__import__("numpy").asarray(mask.convert("L"), dtype="float32").copy()) / 255.0
    elif isinstance(mask, Tensor):
        m = mask.detach().cpu()
        m = m.float() if m.dtype != torch.uint8 else m.float() / 255.0
    else:
        raise ConfigError(f"{name} must be a path, a PIL image or a tensor, got {type(mask).__name__}")
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[None] if m.shape[0] in (1, image.shape[1]) else m[:, None]
    if m.ndim != 4:
        raise ConfigError(f"{name} must be (H, W), (N, 1, H, W) or like the image, got shape {tuple(m.shape)}")
    if tuple(m.shape[-2:]) != tuple(image.shape[-2:]):
        raise ConfigError(f"{name} is {m.shape[-2]}×{m.shape[-1]} but the image is "
                          f"{image.shape[-2]}×{image.shape[-1]}; give a mask of the image's size")
    if m.shape[1] != 1:
        m = m.amax(dim=1, keepdim=True)  # a pixel is filled if any channel says so
    if m.shape[0] not in (1, image.shape[0]):
        raise ConfigError(f"{name} has {m.shape[0]} masks for {image.shape[0]} images")
    if not bool(torch.isfinite(m).all()) or float(m.min()) < 0 or float(m.max()) > 1:
        raise ConfigError(f"{name} values must lie in [0, 1] (or 0–255 for an image file)")
    binary = (m == 0) | (m == 1)
    if not bool(binary.all()):
        warnings.warn(f"{name} is not binary ({int((~binary).sum())} pixels strictly between 0 and 1); "
                      "thresholded at 0.5", stacklevel=3)
    m = (m >= 0.5).float()
    return m.expand(image.shape[0], -1, -1, -1).contiguous()
