"""The outside test's hostile inputs, each one clear line: oversized image headers everywhere,
stray files in class folders, vanished files, hostile web-UI fields."""
import logging

import pytest
from PIL import Image

from torchdiffusion.errors import ConfigError, DataError
from torchdiffusion.io.images import MAX_IMAGE_PIXELS, as_images, safe_name

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory):
    """A small file whose header declares more pixels than the decoding limit."""
    path = tmp_path_factory.mktemp("huge") / "huge.png"
    side = int((MAX_IMAGE_PIXELS * 1.05) ** 0.5) + 1
    Image.new("L", (side, side), 0).save(path, optimize=False, compress_level=1)
    return path


def test_the_decoding_limit_is_checked_from_the_header_in_the_tasks(huge_png):
    with pytest.raises(DataError, match="megapixel decoding limit"):
        as_images(str(huge_png), 1)


def test_the_decoding_limit_skips_the_file_in_a_training_folder(huge_png, tmp_path, caplog):
    from torchdiffusion.data import load_image_folder

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.new("L", (8, 8), 200).save(tmp_path / cls / "ok.png")
    (tmp_path / "a" / "huge.png").write_bytes(huge_png.read_bytes())
    with caplog.at_level(logging.WARNING, logger="torchdiffusion"):
        ds = load_image_folder(tmp_path, image_size=8)
    assert len(ds) == 2 and ds.class_names == ["a", "b"]
    assert any("megapixel decoding limit" in r.getMessage() and "huge.png" in r.getMessage() for r in caplog.records)


def test_the_png_info_endpoint_checks_the_header_first(huge_png):
    from torchdiffusion.ui.png_info import read_parameters

    with pytest.raises(ConfigError, match="too large"):
        read_parameters(str(huge_png))


def test_a_stray_top_level_image_and_a_lost_class_are_announced(tmp_path, caplog):
    from torchdiffusion.data import load_image_folder

    for cls in ("a", "b", "c"):
        (tmp_path / cls).mkdir()
    for cls in ("a", "b"):
        Image.new("L", (8, 8), 100).save(tmp_path / cls / "x.png")
    (tmp_path / "c" / "only.png").write_bytes(b"not an image")
    with caplog.at_level(logging.WARNING, logger="torchdiffusion"):
        ds = load_image_folder(tmp_path, image_size=8)
    assert ds.class_names == ["a", "b"]
    assert any("class folder(s) c have no readable image" in r.getMessage() for r in caplog.records)
    Image.new("L", (8, 8), 100).save(tmp_path / "stray.png")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="torchdiffusion"):
        ds = load_image_folder(tmp_path, image_size=8)
    assert ds.labels is None
    assert any("at the top level (e.g. stray.png)" in r.getMessage() and "treated as unlabelled" in r.getMessage()
               for r in caplog.records)


def test_a_vanished_file_is_called_what_it_is(tmp_path):
    from torchdiffusion.data.image_folder import _decode

    assert _decode(str(tmp_path / "gone.png"), 8, None).reason == "deleted while the folder was being read"


def test_file_names_in_messages_are_one_line(tmp_path):
    name = tmp_path / "evil\nname\x1b[31m.png"
    assert "\n" not in safe_name(name) and "\x1b" not in safe_name(name)
    with pytest.raises(DataError) as err:
        as_images(str(name), 1)
    assert "\n" not in str(err.value) and "\x1b" not in str(err.value)


@pytest.mark.parametrize("field,value,message", [
    ("seed", float("inf"), "seed must be a whole number"), ("seed", float("nan"), "seed must be a whole number"),
    ("steps", "abc", "steps must be a whole number"), ("steps", None, "steps must be a whole number"),
    ("guidance_scale", None, "guidance scale must be a number from 0 to 30"),
    ("guidance_scale", float("nan"), "guidance scale must be a number from 0 to 30"),
    ("sampler", None, "a sampler is given by name"),
])
def test_hostile_ui_fields_are_messages(field, value, message, tmp_path):
    pytest.importorskip("gradio")
    from helpers import make_models
    from torchdiffusion.ui.backend import Backend, GenerateRequest
    from torchdiffusion.ui.models import ModelLibrary

    root = make_models(tmp_path)
    backend = Backend(ModelLibrary(root, root / "tiny-class"), outputs=tmp_path / "out")
    with pytest.raises(ConfigError, match=message):
        backend.generate(GenerateRequest(model="tiny-class", **{"steps": 1, "batch_size": 1, field: value}))
    with pytest.raises(ConfigError, match="must be a whole number"):
        backend.interpolate(GenerateRequest(model="tiny-class", steps=1, seed=0), seed_b="x", frames=3)


def test_sizes_that_cannot_fit_in_memory_are_refused_before_allocating():
    from torchdiffusion.data import load_dataset
    from torchdiffusion.networks.unet import UNet, UNetConfig

    with pytest.raises(DataError, match="would need .* GiB decoded, more than half of this machine's"):
        load_dataset("mnist", 16384)
    cfg = UNetConfig(image_size=16384, base_channels=32, channel_mult=(1, 2, 2), attention_resolutions=(4096,))
    with pytest.raises(ConfigError, match="for one image's forward pass, more than this machine's"):
        UNet(cfg)
