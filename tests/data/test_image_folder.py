import json
import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

from torchdiffusion.data import load_dataset
from torchdiffusion.errors import ConfigError, DataError
from torchdiffusion.data.image_folder import load_image_folder


def _save(path, im, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)
    return path


def _solid(mode, color, size=(20, 20)):
    return Image.new(mode, size, color)


def _load(path, **kw):
    kw.setdefault("progress", False)
    return load_image_folder(path, **kw)


def _one_line(exc_info):
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


# --------------------------------------------------------------------------- modes and pixels
def test_every_mode_loads_with_sensible_pixels(tmp_path):
    _save(tmp_path / "a_rgb.png", _solid("RGB", (200, 10, 30)))
    _save(tmp_path / "b_gray.png", _solid("L", 77))
    rgba = Image.new("RGBA", (20, 20), (0, 0, 0, 0))  # fully transparent -> white
    rgba.paste((255, 0, 0, 255), (0, 0, 20, 10))      # opaque red top half
    _save(tmp_path / "c_rgba.png", rgba)
    pal = _solid("RGB", (0, 0, 255)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    _save(tmp_path / "d_palette.png", pal)
    _save(tmp_path / "e_cmyk.jpg", _solid("CMYK", (255, 0, 0, 0)), quality=95)  # cyan
    arr16 = np.full((20, 20), 128 * 257, dtype=np.uint16)
    _save(tmp_path / "f_gray16.png", Image.fromarray(arr16))
    _save(tmp_path / "g_la.png", _solid("LA", (0, 0)))  # transparent black -> white
    _save(tmp_path / "h_bilevel.png", _solid("1", 1))
    _save(tmp_path / "i.webp", _solid("RGB", (10, 200, 10)), lossless=True)
    _save(tmp_path / "j.bmp", _solid("RGB", (10, 10, 200)))
    _save(tmp_path / "k.gif", _solid("RGB", (255, 255, 0)))

    ds = _load(tmp_path, image_size=16)
    assert ds.images.shape == (11, 3, 16, 16) and ds.images.dtype == torch.uint8
    assert ds.skipped == [] and ds.labels is None and ds.captions is None
    assert ds.name == tmp_path.name
    px = ds.images[:, :, 8, 8].int()  # centre pixel of each image, in sorted file order

    def close(i, rgb, tol=2):
        assert (px[i] - torch.tensor(rgb)).abs().max() <= tol, (i, px[i].tolist(), rgb)

    close(0, (200, 10, 30))
    close(1, (77, 77, 77))
    assert (ds.images[2, :, 2, 8].int() - torch.tensor([255, 0, 0])).abs().max() <= 2  # top: red
    assert (ds.images[2, :, 13, 8].int() - torch.tensor([255, 255, 255])).abs().max() <= 2  # bottom: white
    close(3, (0, 0, 255))
    close(4, (0, 255, 255), tol=8)  # CMYK JPEG is lossy
    close(5, (128, 128, 128))
    close(6, (255, 255, 255))
    close(7, (255, 255, 255))
    close(8, (10, 200, 10))
    close(9, (10, 10, 200))
    close(10, (255, 255, 0))


def test_grayscale_folder_gives_one_channel(tmp_path):
    _save(tmp_path / "a.png", _solid("L", 50))
    ramp = np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (16, 1))
    _save(tmp_path / "b16.png", Image.fromarray(ramp))
    gray_palette = _solid("L", 200).convert("P")
    _save(tmp_path / "c.gif", gray_palette)
    _save(tmp_path / "d.png", _solid("LA", (90, 255)))
    ds = _load(tmp_path, image_size=16)
    assert ds.images.shape == (4, 1, 16, 16)
    assert int(ds.images[0].float().mean()) == 50
    row = ds.images[1, 0, 0].int()
    assert row[0] == 0 and row[-1] == 255 and bool((row[1:] >= row[:-1]).all())  # 16-bit -> full 8-bit range
    assert int(ds.images[2, 0, 8, 8]) == 200
    assert int(ds.images[3, 0, 8, 8]) == 90


def test_channels_argument(tmp_path):
    _save(tmp_path / "gray.png", _solid("L", 100))
    _save(tmp_path / "red.png", _solid("RGB", (255, 0, 0)))
    auto = _load(tmp_path, image_size=8)
    assert auto.channels == 3
    assert auto.images[0, :, 4, 4].tolist() == [100, 100, 100]  # gray replicated into RGB
    one = _load(tmp_path, image_size=8, channels=1)
    assert one.channels == 1 and abs(int(one.images[1, 0, 4, 4]) - 76) <= 1  # ITU-R 601 luma of red
    three = _load(tmp_path / ".", image_size=8, channels=3)
    assert three.channels == 3
    with pytest.raises(ConfigError):
        _load(tmp_path, channels=4)
    with pytest.raises(ConfigError):
        _load(tmp_path, image_size=0)


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    im.paste((255, 255, 255), (20, 0, 40, 20))  # stored: left black, right white
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise: left -> top
    _save(tmp_path / "rot.jpg", im, exif=exif, quality=95)
    ds = _load(tmp_path, image_size=20)
    img = ds.images[0, 0].int()
    assert img[:6].float().mean() < 30 and img[-6:].float().mean() > 225  # top black, bottom white
    assert abs(img[:, :6].float().mean() - img[:, -6:].float().mean()) < 10


# --------------------------------------------------------------------------- resize / crop
def test_resize_short_side_then_center_crop(tmp_path):
    wide = Image.new("RGB", (64, 32), (255, 0, 0))   # columns 0-15 red (cropped away)
    wide.paste((0, 0, 0), (16, 0, 32, 32))           # 16-31 black
    wide.paste((255, 255, 255), (32, 0, 48, 32))     # 32-47 white
    wide.paste((0, 0, 255), (48, 0, 64, 32))         # 48-63 blue (cropped away)
    _save(tmp_path / "a_wide.png", wide)
    tall = Image.new("L", (32, 64), 0)
    tall.paste(255, (0, 32, 32, 64))                 # top half black, bottom half white
    _save(tmp_path / "b_tall.png", tall)
    _save(tmp_path / "c_small.png", _solid("RGB", (9, 99, 199), size=(5, 3)))  # upscaled
    ds = _load(tmp_path, image_size=16)
    assert ds.images.shape == (3, 3, 16, 16)
    w = ds.images[0].int()
    assert int(w[:, :, :6].max()) <= 15                # left: black, no red leaking in
    assert int(w[:, :, 10:].min()) >= 240              # right: white, no blue leaking in
    assert bool((w[0, :, 3:13] == w[2, :, 3:13]).all())  # neutral away from the filter's edge support
    t = ds.images[1, 0].int()
    assert int(t[:6].max()) <= 15 and int(t[10:].min()) >= 240
    assert (ds.images[2, :, 8, 8].int() - torch.tensor([9, 99, 199])).abs().max() <= 2


def test_big_image_downscales(tmp_path):
    big = Image.new("RGB", (1200, 900), (0, 0, 0))
    big.paste((255, 255, 255), (600, 0, 1200, 900))
    _save(tmp_path / "big.jpg", big, quality=90)
    _save(tmp_path / "big.png", big)
    ds = _load(tmp_path, image_size=12)
    for img in ds.images:
        assert int(img[:, :, :4].max()) <= 20 and int(img[:, :, 8:].min()) >= 235


# --------------------------------------------------------------------------- bad files
def test_bad_files_are_skipped_and_reported(tmp_path, caplog):
    _save(tmp_path / "good1.png", _solid("RGB", (1, 2, 3)))
    _save(tmp_path / "sub" / "good2.jpg", _solid("RGB", (100, 100, 100)))
    full = tmp_path / "full.png"
    _save(full, Image.effect_noise((64, 64), 40).convert("RGB"))
    data = full.read_bytes()
    full.unlink()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("this is not a jpeg\n")
    (tmp_path / "readme.md").write_text("ignored silently")
    (tmp_path / "data.csv").write_text("a,b\n")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0junk")
    (tmp_path / "._good1.png").write_bytes(b"\0\5\26\7 AppleDouble")  # hidden: ignored

    with caplog.at_level(logging.WARNING, logger="torchdiffusion"):
        ds = _load(tmp_path, image_size=8)
    assert len(ds) == 2
    bad = {os.path.basename(p): reason for p, reason in ds.skipped}
    assert set(bad) == {"truncated.png", "empty.png", "notes.jpg"}
    assert "0 bytes" in bad["empty.png"]
    assert "not a readable image" in bad["notes.jpg"]
    assert "truncated" in bad["truncated.png"].lower() or "corrupt" in bad["truncated.png"].lower()
    text = caplog.text
    for name in bad:
        assert str(tmp_path / name) in text
    assert "skipped 3 of 5 files" in text
    assert "readme.md" not in text and "data.csv" not in text


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    _save(tmp_path / "small.png", _solid("RGB", (5, 5, 5), size=(16, 16)))
    _save(tmp_path / "bomb.png", _solid("RGB", (5, 5, 5), size=(64, 64)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64*64 > 2 * 1000: an error, not a warning
    ds = _load(tmp_path, image_size=8)
    assert len(ds) == 1
    assert [os.path.basename(p) for p, _ in ds.skipped] == ["bomb.png"]
    assert "decompression bomb" in ds.skipped[0][1]


def test_folder_errors_are_one_line_and_name_the_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError) as e:
        _load(missing)
    assert str(missing) in _one_line(e) and "no such folder" in str(e.value)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as e:
        _load(empty)
    assert str(empty) in _one_line(e) and "no image files" in str(e.value)

    only_text = tmp_path / "text"
    only_text.mkdir()
    (only_text / "a.txt").write_text("hello")
    with pytest.raises(DataError, match="no image files"):
        _load(only_text)

    a_file = _save(tmp_path / "x.png", _solid("RGB", (0, 0, 0)))
    with pytest.raises(DataError) as e:
        _load(a_file)
    assert str(a_file) in _one_line(e) and "is a file" in str(e.value)

    all_bad = tmp_path / "bad"
    all_bad.mkdir()
    (all_bad / "a.png").write_bytes(b"")
    (all_bad / "b.png").write_text("not png")
    with pytest.raises(DataError) as e:
        _load(all_bad)
    msg = _one_line(e)
    assert str(all_bad) in msg and "none of the 2 image files" in msg


def test_max_images_counts_readable_images(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    for i, v in enumerate((10, 20, 30)):
        _save(tmp_path / f"b{i}.png", _solid("L", v))
    ds = _load(tmp_path, image_size=4, max_images=2)
    assert len(ds) == 2 and ds.images[:, 0, 0, 0].tolist() == [10, 20]
    assert len(ds.skipped) == 1


# --------------------------------------------------------------------------- labels
def test_class_labels_from_subfolders(tmp_path):
    for cls, v, n in (("dog", 200, 2), ("cat", 50, 3)):
        for i in range(n):
            _save(tmp_path / cls / f"{i}.png", _solid("L", v))
    _save(tmp_path / "cat" / "nested" / "deep.png", _solid("L", 50))
    ds = _load(tmp_path, image_size=8)
    assert ds.class_names == ["cat", "dog"] and ds.num_classes == 2
    assert ds.labels.dtype == torch.int64
    assert ds.labels.tolist() == [0, 0, 0, 0, 1, 1]
    assert ds.images[:, 0, 0, 0].tolist() == [50] * 4 + [200] * 2  # labels aligned with images
    assert _load(tmp_path, image_size=8, class_from_subfolders=False).labels is None

    _save(tmp_path / "top.png", _solid("L", 1))  # an image outside any class folder: no labels
    ds = _load(tmp_path, image_size=8)
    assert ds.labels is None and ds.class_names is None


def test_single_subfolder_has_no_labels(tmp_path):
    _save(tmp_path / "only" / "a.png", _solid("L", 1))
    _save(tmp_path / "only" / "b.png", _solid("L", 2))
    assert _load(tmp_path, image_size=4).labels is None


# --------------------------------------------------------------------------- captions
def test_captions_from_metadata_jsonl_and_txt(tmp_path, caplog):
    _save(tmp_path / "a.png", _solid("L", 1))
    _save(tmp_path / "sub" / "b.png", _solid("L", 2))
    _save(tmp_path / "sub" / "c.png", _solid("L", 3))
    _save(tmp_path / "d.jpg", _solid("L", 4))
    rows = [{"file_name": "a.png", "text": "an A"}, {"file_name": "sub/b.png", "text": " a B "},
            {"file_name": "gone.png", "text": "a missing file is ignored"}]
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    (tmp_path / "sub" / "metadata.jsonl").write_text(json.dumps({"file_name": "c.png", "caption": "a C"}) + "\n")
    (tmp_path / "d.txt").write_text("\n  a D\nsecond line  \n")
    (tmp_path / "a.txt").write_text("metadata.jsonl wins over this")
    with caplog.at_level(logging.WARNING, logger="torchdiffusion"):
        ds = _load(tmp_path, image_size=4)
    assert ds.captions == ["an A", "a D\nsecond line", "a B", "a C"]  # sorted: a.png, d.jpg, sub/...
    assert "caption" not in caplog.text
    assert _load(tmp_path, image_size=4, captions=False).captions is None


def test_partial_captions_warn(tmp_path, caplog):
    _save(tmp_path / "a.png", _solid("L", 1))
    _save(tmp_path / "b.png", _solid("L", 2))
    _save(tmp_path / "c.png", _solid("L", 3))
    (tmp_path / "b.txt").write_text("bee")
    with caplog.at_level(logging.WARNING, logger="torchdiffusion"):
        ds = _load(tmp_path, image_size=4)
    assert ds.captions == ["", "bee", ""]
    assert "2 of 3 images have no caption" in caplog.text
    assert str(tmp_path / "a.png") in caplog.text


def test_malformed_jsonl_names_file_and_line(tmp_path):
    _save(tmp_path / "a.png", _solid("L", 1))
    meta = tmp_path / "metadata.jsonl"
    meta.write_text('{"file_name": "a.png", "text": "ok"}\n{"file_name": "a.png", "text": \n')
    with pytest.raises(DataError) as e:
        _load(tmp_path)
    msg = _one_line(e)
    assert str(meta) in msg and "line 2" in msg
    meta.write_text('\n["a.png", "x"]\n')
    with pytest.raises(DataError, match="line 2"):
        _load(tmp_path)
    meta.write_text('{"text": "no file name"}\n')
    with pytest.raises(DataError, match="line 1"):
        _load(tmp_path)
    # Caption reading can be turned off, which also skips the broken metadata.
    assert _load(tmp_path, captions=False).captions is None


# --------------------------------------------------------------------------- walking
@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_symlink_loop_does_not_hang(tmp_path):
    root = tmp_path / "root"
    _save(root / "x" / "a.png", _solid("L", 1))
    _save(root / "y" / "b.png", _solid("L", 2))
    _save(tmp_path / "ext" / "c.png", _solid("L", 3))
    try:
        os.symlink(root, root / "x" / "loop")            # loop back to the top
        os.symlink(root / "y", root / "x" / "to_y")      # second way into y: read once, as y
        os.symlink(tmp_path / "ext", root / "z")          # folder outside the tree: followed
        os.symlink(tmp_path / "ext", tmp_path / "ext" / "self")  # loop inside the outside folder
    except OSError:
        pytest.skip("cannot create symlinks here")
    ds = _load(root, image_size=4)
    assert ds.images[:, 0, 0, 0].tolist() == [1, 2, 3]  # each real folder read once
    assert ds.class_names == ["x", "y", "z"] and ds.labels.tolist() == [0, 1, 2]


def test_order_is_deterministic_and_sorted(tmp_path):
    for name, v in (("b.png", 2), ("a.png", 1), ("c.png", 3), ("B10.png", 4)):
        _save(tmp_path / name, _solid("L", v))
    ds = _load(tmp_path, image_size=4)
    assert ds.images[:, 0, 0, 0].tolist() == [4, 1, 2, 3]  # plain code-point order: "B10" < "a"


def test_many_files_with_progress_bar(tmp_path, capsys):
    for i in range(210):
        _save(tmp_path / f"{i:04d}.png", _solid("L", i))
    ds = load_image_folder(tmp_path, image_size=4, progress=True)
    assert ds.images[:, 0, 0, 0].tolist() == list(range(210))
    assert "loading" in capsys.readouterr().err


def test_load_dataset_dispatches_to_folders(tmp_path):
    _save(tmp_path / "cls0" / "a.png", _solid("RGB", (1, 2, 3), size=(30, 20)))
    _save(tmp_path / "cls1" / "b.webp", _solid("RGB", (4, 5, 6), size=(20, 30)), lossless=True)
    ds = load_dataset(str(tmp_path), image_size=16)
    assert ds.images.shape == (2, 3, 16, 16)
    assert ds.class_names == ["cls0", "cls1"] and ds.labels.tolist() == [0, 1]
    batch = ds.batch(torch.tensor([0, 1]))
    assert batch.shape == (2, 3, 16, 16) and float(batch.min()) >= -1 and float(batch.max()) <= 1
    assert load_dataset(str(tmp_path), image_size=8, channels=1).channels == 1
