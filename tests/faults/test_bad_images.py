"""A folder of every kind of bad and odd image file, generated here (no binary junk in git):
training proceeds over the readable files, and every unreadable one is reported by path with
its reason. The kinds and counts are what docs/robustness.md reports."""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from torchdiffusion.cli.main import main
from torchdiffusion.data.image_folder import load_image_folder

pytestmark = pytest.mark.faults


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(side: int) -> bytes:
    """A valid-looking PNG header declaring side x side pixels, with almost no data."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def make_corpus(root: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Write the corpus; return ({kind: [paths]} of readable files, {kind: [paths]} of bad ones)."""
    rng = np.random.default_rng(0)
    good: dict[str, list[str]] = {}
    bad: dict[str, list[str]] = {}

    def add(table, kind, name, writer):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        writer(path)
        table.setdefault(kind, []).append(str(path))

    def rgb(size=(20, 14)):
        return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))

    for i in range(6):
        add(good, "RGB PNG", f"ok/rgb{i}.png", lambda p: rgb().save(p))
    add(good, "grayscale JPEG", "ok/gray.jpg", lambda p: rgb().convert("L").save(p, quality=90))
    add(good, "CMYK JPEG", "ok/cmyk.jpg", lambda p: rgb().convert("CMYK").save(p, quality=90))
    add(good, "16-bit PNG", "ok/deep.png", lambda p: Image.fromarray(
        rng.integers(0, 65536, (12, 12), dtype=np.uint16)).save(p))
    add(good, "palette PNG", "ok/palette.png", lambda p: rgb().convert("P", palette=Image.ADAPTIVE).save(p))
    add(good, "palette PNG with transparency", "ok/palette_t.png", lambda p: rgb().convert(
        "P", palette=Image.ADAPTIVE).save(p, transparency=0))
    add(good, "RGBA PNG", "ok/alpha.png", lambda p: rgb().convert("RGBA").save(p))
    add(good, "LA PNG", "ok/la.png", lambda p: rgb().convert("LA").save(p))
    add(good, "1-bit PNG", "ok/bits.png", lambda p: rgb().convert("1").save(p))
    add(good, "float TIFF", "ok/float.tif", lambda p: Image.fromarray(
        rng.random((10, 10), dtype=np.float32)).save(p))
    add(good, "animated GIF (first frame)", "ok/anim.gif", lambda p: rgb().save(
        p, save_all=True, append_images=[rgb()], duration=50))
    add(good, "BMP", "ok/pic.BMP", lambda p: rgb().save(p, format="BMP"))
    add(good, "WebP", "ok/pic.webp", lambda p: rgb().save(p, format="WEBP"))
    add(good, "large image (4000x3000)", "ok/large.png", lambda p: Image.new("RGB", (4000, 3000), (90, 20, 200)).save(p))
    add(good, "1x1 image", "ok/dot.png", lambda p: Image.new("RGB", (1, 1), (0, 0, 0)).save(p))

    def truncated(fmt):
        def w(p):
            rgb((40, 40)).save(p, format=fmt)
            data = p.read_bytes()
            p.write_bytes(data[: len(data) // 2])
        return w

    add(bad, "truncated PNG", "bad/trunc.png", truncated("PNG"))
    add(bad, "truncated JPEG", "bad/trunc.jpg", truncated("JPEG"))
    add(bad, "zero-byte file", "bad/empty.png", lambda p: p.write_bytes(b""))
    add(bad, "zero-byte file", "bad/empty.jpeg", lambda p: p.write_bytes(b""))
    add(bad, "text file with an image extension", "bad/notes.jpg", lambda p: p.write_text("not a picture\n" * 20))
    add(bad, "HTML page saved as .gif", "bad/page.gif", lambda p: p.write_text("<html><body>404</body></html>"))
    add(bad, "random bytes as .webp", "bad/noise.webp", lambda p: p.write_bytes(rng.bytes(3000)))
    add(bad, "decompression bomb header (40000x40000)", "bad/bomb.png", lambda p: p.write_bytes(bomb_png(40000)))
    add(bad, "PNG with a bad checksum", "bad/crc.png", lambda p: p.write_bytes(
        (lambda d: d[:30] + bytes([d[30] ^ 0xFF]) + d[31:])(_saved_png(rgb()))))
    add(bad, "broken symlink", "bad/gone.png", lambda p: os.symlink(root / "does-not-exist.png", p))
    add(bad, "named pipe (FIFO)", "bad/pipe.png", lambda p: os.mkfifo(p))
    # not files at all: a folder named like an image, a symlink loop, hidden files (all ignored)
    (root / "folder.png").mkdir()
    os.symlink(root, root / "ok" / "loop")
    os.symlink(root / "bad", root / "bad" / "self")
    rgb().save(root / ".hidden.png")
    return good, bad


def _saved_png(img) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_folder_of_bad_files_loads_the_good_ones_and_reports_the_rest(tmp_path, caplog):
    good, bad = make_corpus(tmp_path / "data")
    ds = load_image_folder(tmp_path / "data", image_size=8, progress=False)
    n_good = sum(map(len, good.values()))
    assert len(ds) == n_good and ds.images.shape[1:] == (3, 8, 8)
    skipped = dict(ds.skipped)
    bad_paths = [p for paths in bad.values() for p in paths]
    assert sorted(skipped) == sorted(bad_paths)
    for path, reason in ds.skipped:
        assert reason and path in caplog.text
    assert "decompression bomb" in skipped[bad["decompression bomb header (40000x40000)"][0]]
    assert skipped[bad["zero-byte file"][0]] == "empty file (0 bytes)"
    assert "cannot identify" in skipped[bad["text file with an image extension"][0]]
    assert skipped[bad["broken symlink"][0]].startswith("broken symlink")
    assert skipped[bad["named pipe (FIFO)"][0]].startswith("not a regular file")
    assert f"skipped {len(bad_paths)} of {len(bad_paths) + n_good} files" in caplog.text
    print("bad-image corpus:", {k: len(v) for k, v in bad.items()}, "readable kinds:", len(good))


def test_training_runs_over_the_good_files(tmp_path, capsys, caplog):
    good, bad = make_corpus(tmp_path / "data")
    rc = main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--steps", "2",
               "--image-size", "8", "--base-channels", "8", "--channel-mult", "1,2", "--batch-size", "4",
               "--sample-n", "2", "--sample-steps", "1", "--final-steps", "1", "--no-progress", "--precision", "fp32"])
    assert rc == 0, capsys.readouterr().err[-3000:]
    for paths in bad.values():  # (the CLI logs to stderr; under pytest the records land in caplog)
        for p in paths:
            assert f"skipping {p}:" in caplog.text
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
