"""Load a folder of images (recursively) into an in-memory :class:`ImageDataset`.

    ds = load_image_folder("photos/", image_size=64)

* Files: ``.png .jpg .jpeg .jpe .jfif .webp .bmp .gif .tif .tiff`` (any case), found recursively
  in sorted, deterministic order. Hidden files and folders (name starting with ``.``) are
  ignored, as are files with other extensions. Symlinked folders are followed once each
  (a symlink loop cannot hang the walk).
* Every image is decoded with Pillow, turned upright from its EXIF orientation, composited
  on white when it has transparency (RGBA, LA, palette with transparency), converted from
  CMYK / YCbCr / 16-bit / float modes to 8-bit ``L`` or ``RGB``, then its short side is
  resized to ``image_size`` (Lanczos, with Pillow's ``reducing_gap`` for big images) and the
  centre square is kept. ``channels=None`` gives 1 channel when every image is grayscale,
  else 3.
* A file that cannot be read (zero bytes, truncated, not an image, a decompression bomb, ...)
  is skipped with one warning per file on the ``torchdiffusion`` logger and a summary line;
  ``dataset.skipped`` lists ``(path, reason)`` for each.
* Labels: when every image lives inside a first-level sub-folder and there are at least two
  of them, the sub-folder names are the classes (``class_names`` sorted).
* Captions, Hugging Face ``imagefolder`` style: ``metadata.jsonl`` files anywhere in the tree
  with lines ``{"file_name": "rel/path.png", "text": "..."}`` (``file_name`` relative to the
  jsonl's folder; ``"caption"`` is accepted in place of ``"text"``), or a ``.txt`` file beside
  an image with the same stem (its whole stripped text). ``metadata.jsonl`` wins when both
  give a caption for an image.
"""
from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from torchdiffusion.data.dataset import ImageDataset
from torchdiffusion.io.checkpoint import MAX_JSON_DEPTH, json_depth
from torchdiffusion.io.images import MAX_IMAGE_PIXELS
from torchdiffusion.data.dataset import check_dataset_memory
from torchdiffusion.errors import ConfigError, DataError

log = logging.getLogger("torchdiffusion")

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
METADATA_NAME = "metadata.jsonl"
PROGRESS_MIN_FILES = 200
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})
_RESAMPLE = getattr(Image, "Resampling", Image).LANCZOS  # Pillow < 9.1 has no Resampling enum
_REDUCING_GAP = 3.0


@dataclass
class _Decoded:
    """One worker's result: an 8-bit (H, W) or (H, W, 3) array, or the reason it failed."""

    array: np.ndarray | None = None
    gray: bool = False
    reason: str | None = None


# --------------------------------------------------------------------------- file discovery
def _scan(root: Path) -> tuple[list[str], list[str], dict[str, str]]:
    """Image paths, metadata.jsonl paths, and {image-path-without-suffix: txt path} under root.

    Paths are ``os.path.join``-ed from ``root`` (not resolved), so they keep the folder names a
    user sees even through symlinked folders.
    """
    images: list[str] = []
    metadata: list[str] = []
    texts: dict[str, str] = {}
    visited: set[str] = set()
    # Walk the real tree first and follow symlinked folders afterwards, each at most once
    # (by real path): a link back into the tree is read at its real place, and a loop ends.
    queue = [str(root)]
    while queue:
        links: list[str] = []
        for dirpath, dirnames, filenames in os.walk(queue.pop(0), followlinks=False):
            real = os.path.realpath(dirpath)
            if real in visited:
                dirnames[:] = []
                continue
            visited.add(real)
            keep = []
            for d in sorted(dirnames):
                if d.startswith("."):
                    continue
                full = os.path.join(dirpath, d)
                if os.path.islink(full):
                    links.append(full)
                else:
                    keep.append(d)
            dirnames[:] = keep
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                full = os.path.join(dirpath, name)
                stem, ext = os.path.splitext(name)
                ext = ext.lower()
                if ext in IMAGE_EXTENSIONS:
                    images.append(full)
                elif name == METADATA_NAME:
                    metadata.append(full)
                elif ext == ".txt":
                    texts[os.path.join(dirpath, stem)] = full
        queue.extend(link for link in links if os.path.realpath(link) not in visited)
    images.sort(key=lambda p: Path(p).relative_to(root).parts)
    metadata.sort(key=lambda p: Path(p).relative_to(root).parts)
    return images, metadata, texts


# --------------------------------------------------------------------------- decoding
def _composite_on_white(arr: np.ndarray) -> np.ndarray:
    """(H, W, C+1) uint8 with alpha last -> (H, W, C) uint8 over a white background."""
    alpha = arr[..., -1:].astype(np.float32) / 255.0
    color = arr[..., :-1].astype(np.float32)
    out = color * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _wide_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """16-bit / 32-bit integer or float grayscale -> 8-bit, keeping the full tonal range."""
    if mode.startswith("I;16"):
        out = arr.astype(np.float64) / 257.0  # 65535 -> 255 exactly
    elif mode == "F":
        a = arr.astype(np.float64)
        finite = a[np.isfinite(a)]
        hi = float(finite.max()) if finite.size else 0.0
        lo = float(finite.min()) if finite.size else 0.0
        out = a * 255.0 if (lo >= 0.0 and hi <= 1.0) else a  # [0, 1] floats, else assume 0..255
        out = np.nan_to_num(out, nan=0.0)
    else:  # "I" (32-bit signed): 16-bit data when any value exceeds the 8-bit range
        a = arr.astype(np.float64)
        out = a / 257.0 if a.max(initial=0) > 255 else a
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _to_8bit(im: Image.Image) -> tuple[Image.Image, bool]:
    """Any Pillow mode -> ('L' or 'RGB' image, is_grayscale)."""
    mode = im.mode
    if mode == "L":
        return im, True
    if mode == "RGB":
        return im, False
    if mode == "1":
        return im.convert("L"), True
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_wide_to_uint8(np.asarray(im), mode), mode="L"), True
    if mode in ("LA", "La"):
        arr = np.asarray(im.convert("LA") if mode == "La" else im)
        return Image.fromarray(_composite_on_white(arr)[..., 0], mode="L"), True
    if mode in ("RGBA", "RGBa"):
        arr = np.asarray(im.convert("RGBA") if mode == "RGBa" else im)
        return Image.fromarray(_composite_on_white(arr), mode="RGB"), False
    if mode in ("P", "PA"):
        # Palette: composite any transparency, then call it grayscale when every pixel is gray.
        has_alpha = mode == "PA" or "transparency" in im.info
        arr = np.asarray(im.convert("RGBA"))
        rgb = _composite_on_white(arr) if has_alpha else np.ascontiguousarray(arr[..., :3])
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
            return Image.fromarray(np.ascontiguousarray(rgb[..., 0]), mode="L"), True
        return Image.fromarray(rgb, mode="RGB"), False
    if "A" in mode or "a" in mode:  # any other mode with alpha
        arr = np.asarray(im.convert("RGBA"))
        return Image.fromarray(_composite_on_white(arr), mode="RGB"), False
    # CMYK, YCbCr, LAB, HSV, RGBX, ...: Pillow knows the conversion to RGB.
    return im.convert("RGB"), False


def _resize_center_crop(im: Image.Image, size: int) -> Image.Image:
    """Resize the short side to ``size`` and keep the centre ``size`` x ``size`` square.

    Done as a single resample of the centred square source box, which equals resize-then-crop
    but never resamples pixels that would be cropped away.
    """
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) / 2.0, (h - side) / 2.0
    box = (left, top, left + side, top + side)
    if side == size and left == int(left) and top == int(top):
        return im.crop(tuple(int(v) for v in box)) if (w, h) != (size, size) else im
    gap = _REDUCING_GAP if side >= _REDUCING_GAP * size else None
    return im.resize((size, size), _RESAMPLE, box=box, reducing_gap=gap)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, Image.DecompressionBombError):
        return f"refused as a possible decompression bomb ({exc})"
    if isinstance(exc, UnidentifiedImageError):
        return "not a readable image (Pillow cannot identify the format)"
    if isinstance(exc, MemoryError):
        return "out of memory while decoding"
    msg = str(exc) or type(exc).__name__
    return f"corrupt or truncated image ({type(exc).__name__}: {msg})"


def _decode(path: str, size: int, channels: int | None) -> _Decoded:
    try:
        if os.path.islink(path) and not os.path.exists(path):
            return _Decoded(reason=f"broken symlink (points to {os.readlink(path)}, which does not exist)")
        if not os.path.lexists(path):
            return _Decoded(reason="deleted while the folder was being read")
        if not os.path.isfile(path):  # a FIFO or device would block or never end: never opened
            return _Decoded(reason="not a regular file (a pipe, socket or device)")
        if os.path.getsize(path) == 0:
            return _Decoded(reason="empty file (0 bytes)")
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:  # from the header, before any decoding
                return _Decoded(reason=f"{w}×{h} = {w * h / 1e6:.1f} megapixels is over the "
                                       f"{MAX_IMAGE_PIXELS / 1e6:g}-megapixel decoding limit "
                                       "(TORCHDIFFUSION_MAX_IMAGE_PIXELS)")
            if im.format == "JPEG":
                # Let libjpeg decode at a reduced scale (DCT scaling) when the file is much
                # bigger than needed; both sides stay >= 2 * size, so quality is unaffected.
                try:
                    im.draft(None, (2 * size, 2 * size))
                except Exception:  # pragma: no cover - draft is only an optimisation
                    pass
            im.load()
            try:
                im = ImageOps.exif_transpose(im)
            except Exception:  # broken EXIF: keep the image as stored
                pass
            im, gray = _to_8bit(im)
            if channels == 1 and not gray:
                im, gray = im.convert("L"), True
            im = _resize_center_crop(im, size)
            arr = np.asarray(im, dtype=np.uint8)
            if channels == 3 and gray:
                arr, gray = np.repeat(arr[..., None], 3, axis=-1), False
            return _Decoded(array=np.ascontiguousarray(arr), gray=gray)
    except Exception as exc:  # noqa: BLE001 - every failure is reported per file
        return _Decoded(reason=_describe(exc))


def _decode_all(paths: list[str], size: int, channels: int | None, progress: bool, name: str) -> list[_Decoded]:
    if not paths:
        return []
    workers = max(1, min(4, os.cpu_count() or 1, len(paths)))
    show = progress and len(paths) >= PROGRESS_MIN_FILES
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(paths), desc=f"loading {name}", unit="img")
    results: list[_Decoded] = []
    try:
        if workers == 1:
            for p in paths:
                results.append(_decode(p, size, channels))
                if bar is not None:
                    bar.update(1)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="torchdiffusion-decode") as pool:
                for res in pool.map(lambda p: _decode(p, size, channels), paths, chunksize=1):
                    results.append(res)
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return results


# --------------------------------------------------------------------------- captions
def _read_metadata(jsonl: str) -> dict[str, str]:
    """{normalised image path: caption} from one metadata.jsonl; malformed lines raise."""
    base = os.path.dirname(jsonl)
    out: dict[str, str] = {}
    try:
        with open(jsonl, encoding="utf-8-sig") as fh:  # tolerate a BOM
            lines = fh.readlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{jsonl}: cannot read caption metadata ({exc})") from exc
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            if json_depth(line) > MAX_JSON_DEPTH:
                raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels")
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{jsonl}: line {lineno} is not valid JSON ({exc.msg})") from None
        except (ValueError, RecursionError) as exc:
            raise DataError(f"{jsonl}: line {lineno} is not a caption record ({exc})") from None
        if not isinstance(row, dict):
            raise DataError(f"{jsonl}: line {lineno} must be a JSON object with \"file_name\" and \"text\"")
        file_name = row.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise DataError(f"{jsonl}: line {lineno} has no \"file_name\" string")
        text = row.get("text", row.get("caption"))
        if text is None:
            continue
        if not isinstance(text, str):
            raise DataError(f"{jsonl}: line {lineno}: \"text\" must be a string, not {type(text).__name__}")
        out[os.path.normpath(os.path.join(base, file_name))] = text.strip()
    return out


def _read_txt(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read().strip()
    except OSError as exc:
        log.warning("cannot read caption file %s (%s); treating its image as uncaptioned", path, exc)
        return None
    return text or None


def _gather_captions(paths: list[str], from_meta: dict[str, str], texts: dict[str, str]) -> list[str] | None:
    found: list[str | None] = []
    for p in paths:
        cap = from_meta.get(os.path.normpath(p))
        if cap is None:
            txt = texts.get(os.path.splitext(p)[0])
            cap = _read_txt(txt) if txt is not None else None
        found.append(cap)
    have = sum(c is not None for c in found)
    if have == 0:
        return None
    if have < len(found):
        missing = [p for p, c in zip(paths, found) if c is None]
        log.warning("%d of %d images have no caption (e.g. %s); using \"\" for them",
                    len(missing), len(found), missing[0])
    return [c if c is not None else "" for c in found]


# --------------------------------------------------------------------------- labels
def _labels(root: Path, paths: list[str], all_paths: list[str] | None = None
            ) -> tuple[torch.Tensor, list[str]] | None:
    """Class labels from the first sub-folder of each image, or None (no class structure). Says
    so when a few top-level images break an otherwise class-structured folder, and when a class
    folder lost every image to unreadable files."""
    firsts, top = [], []
    for p in paths:
        parts = Path(p).relative_to(root).parts
        if len(parts) < 2:  # an image at the top level: no class structure
            top.append(p)
        else:
            firsts.append(parts[0])
    if top:
        if len(set(firsts)) >= 2:
            log.warning("%s: %d image(s) at the top level (e.g. %s) beside %d class sub-folders: the dataset is "
                        "treated as unlabelled (no classes); move them into a class folder (or remove them) to "
                        "train a class-conditional model", root, len(top), Path(top[0]).name, len(set(firsts)))
        return None
    class_names = sorted(set(firsts))
    if all_paths is not None:
        every = {Path(p).relative_to(root).parts[0] for p in all_paths if len(Path(p).relative_to(root).parts) >= 2}
        lost = sorted(every - set(class_names))
        if lost and len(class_names) >= 2:
            log.warning("%s: class folder(s) %s have no readable image (see the warnings above) and are left out: "
                        "the model gets %d classes", root, ", ".join(lost), len(class_names))
    if len(class_names) < 2:
        return None
    index = {c: i for i, c in enumerate(class_names)}
    return torch.tensor([index[f] for f in firsts], dtype=torch.int64), class_names


# --------------------------------------------------------------------------- entry point
def load_image_folder(path: str | os.PathLike, image_size: int = 32, channels: int | None = None,
                      hflip: bool = False, class_from_subfolders: bool = True, captions: bool = True,
                      max_images: int | None = None, progress: bool = True) -> ImageDataset:
    """Decode every image under ``path`` into a uint8 :class:`ImageDataset` of
    ``image_size`` x ``image_size`` squares (see the module docstring for the details).

    ``hflip`` is accepted for symmetry with the training options and ignored: flips are
    applied per batch at training time. ``max_images`` keeps the first N readable images in
    sorted order. Raises :class:`DataError` for a missing path, a file, a folder with no image
    files, or one where no image could be read.
    """
    del hflip  # flips happen at batch time (ImageDataset.batch)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ConfigError(f"image_size must be a positive integer, got {image_size!r}")
    if channels not in (None, 1, 3):
        raise ConfigError(f"channels must be 1, 3 or None (automatic), got {channels!r}")
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int)
                                   or max_images < 1):
        raise ConfigError(f"max_images must be a positive integer or None, got {max_images!r}")

    root = Path(path)
    if not root.exists():
        hint = " (a broken symlink)" if root.is_symlink() else ""
        raise DataError(f"{root}: no such folder{hint}")
    if not root.is_dir():
        raise DataError(f"{root}: is a file, not a folder of images")
    name = root.resolve().name or str(root)

    files, metadata, texts = _scan(root)
    if not files:
        raise DataError(f"{root}: no image files found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    check_dataset_memory(len(files) if max_images is None else min(len(files), max_images), channels or 3,
                         image_size, str(root))

    # Read caption metadata before decoding, so a malformed metadata.jsonl fails fast.
    from_meta: dict[str, str] = {}
    if captions:
        for jsonl in metadata:
            from_meta.update(_read_metadata(jsonl))

    kept_paths: list[str] = []
    arrays: list[np.ndarray] = []
    grays: list[bool] = []
    skipped: list[tuple[str, str]] = []
    attempted = 0
    pending = files
    while pending:
        # Decode in rounds so that max_images counts readable images, not files tried.
        want = len(pending) if max_images is None else max_images - len(arrays)
        batch, pending = pending[:want], pending[want:]
        attempted += len(batch)
        for p, res in zip(batch, _decode_all(batch, image_size, channels, progress, name)):
            if res.array is None:
                skipped.append((p, res.reason or "unreadable"))
                log.warning("skipping %s: %s", p, res.reason)
            else:
                kept_paths.append(p)
                arrays.append(res.array)
                grays.append(res.gray)
        if max_images is not None and len(arrays) >= max_images:
            break

    if not arrays:
        first_path, first_reason = skipped[0]
        raise DataError(f"{root}: none of the {len(files)} image files could be read "
                        f"(e.g. {first_path}: {first_reason})")
    if skipped:
        log.warning("skipped %d of %d files in %s (each named in a warning above)", len(skipped), attempted, root)

    if channels is None:
        channels = 1 if all(grays) else 3
    if channels == 1:
        stacked = np.stack(arrays)[:, None]  # every array is (H, W) here
    else:
        arrays = [np.repeat(a[..., None], 3, axis=-1) if a.ndim == 2 else a for a in arrays]
        stacked = np.stack(arrays).transpose(0, 3, 1, 2)
    images = torch.from_numpy(np.ascontiguousarray(stacked))

    labels = class_names = None
    if class_from_subfolders:
        found = _labels(root, kept_paths, files)
        if found is not None:
            labels, class_names = found

    caption_list = _gather_captions(kept_paths, from_meta, texts) if captions else None

    return ImageDataset(images=images, labels=labels, class_names=class_names, captions=caption_list,
                        name=name, skipped=skipped)
