"""Images and masks of every wrong kind, given to every editing task of the CLI (denoise,
inpaint, upscale, img2img, interpolate): each run either works or exits 2 with one
``torchdiffusion <cmd>: error: ...`` line naming the input; never an internal error."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from torchdiffusion.denoiser.model import build_denoiser
from torchdiffusion.pipeline.folders import save_model

from helpers import tiny_model_config
from test_bad_images import bomb_png
from test_properties import check_cli

pytestmark = pytest.mark.faults
TASKS = ("denoise", "inpaint", "upscale", "img2img", "interpolate")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    import torchdiffusion.cli.edit as cli
    del cli
    root = tmp_path_factory.mktemp("task_inputs")
    cfg = tiny_model_config()
    torch.manual_seed(0)
    model = save_model(root / "model", build_denoiser(cfg), cfg)
    rng = np.random.default_rng(0)
    files = {}

    def img(name, arr=None, mode=None, size=(8, 8), **save):
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) if arr is None else arr
        im = Image.fromarray(arr)
        if mode:
            im = im.convert(mode)
        im.save(root / name, **save)
        files[name] = root / name

    img("ok.png")
    img("gray.png", mode="L")
    img("small.png", size=(4, 4))
    img("big.png", size=(64, 48))
    img("rgba.png", mode="RGBA")
    img("cmyk.jpg", mode="CMYK")
    img("palette.png", mode="P")
    img("deep.png", arr=rng.integers(0, 65536, (8, 8), dtype=np.uint16))
    img("mask.png", arr=np.kron(np.array([[0, 255], [255, 0]], dtype=np.uint8), np.ones((4, 4), np.uint8)))
    img("mask_white.png", arr=np.full((8, 8), 255, np.uint8))
    img("mask_black.png", arr=np.zeros((8, 8), np.uint8))
    img("mask_gray.png", arr=rng.integers(0, 256, (8, 8), dtype=np.uint8))
    img("mask_wrong_size.png", arr=np.zeros((5, 7), np.uint8))
    data = (root / "ok.png").read_bytes()
    (root / "trunc.png").write_bytes(data[: len(data) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "text.png").write_text("hello")
    (root / "bomb.png").write_bytes(bomb_png(40000))
    (root / "adir.png").mkdir()
    for name in ("trunc.png", "empty.png", "text.png", "bomb.png", "adir.png"):
        files[name] = root / name
    files["missing.png"] = root / "missing.png"
    return model, files, root


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_tasks_with_wrong_inputs(inputs, capsys, data):
    model, files, root = inputs
    names = sorted(files)
    image = st.sampled_from(["ok.png"] * 4 + names).map(lambda n: str(files[n]))
    task = data.draw(st.sampled_from(TASKS))
    out = root / f"out-{task}.png"
    argv = [task, "--checkpoint", str(model), "--steps", data.draw(st.sampled_from(["2", "2", "1", "0"])),
            "--out", str(out)]
    if task == "interpolate":
        how = data.draw(st.sampled_from(["seeds", "images", "classes", "prompts"]))
        if how == "seeds":
            argv += ["--seeds", "1", data.draw(st.sampled_from(["2", "-1"]))]
        elif how == "images":
            argv += ["--images", data.draw(image), data.draw(image)]
        elif how == "classes":
            argv += ["--classes", "0", "1"]
        else:
            argv += ["--prompts", "a", "b"]
        argv += ["--frames", data.draw(st.sampled_from(["3", "3", "1", "0", "100000"]))]
    else:
        argv += ["--image", *data.draw(st.lists(image, min_size=1, max_size=2))]
    if task == "denoise":
        argv += data.draw(st.sampled_from([[], ["--sigma=0.2"], ["--sigma=-1"], ["--sigma=nan"], ["--sigma=0"],
                                           ["--method", "sample"]]))
    elif task == "inpaint":
        argv += ["--mask", str(files[data.draw(st.sampled_from(
            ["mask.png", "mask.png", "mask_white.png", "mask_black.png", "mask_gray.png", "mask_wrong_size.png",
             "trunc.png", "empty.png", "text.png", "missing.png", "rgba.png", "deep.png"]))])]
        argv += data.draw(st.sampled_from([[], ["--resample", "2"], ["--resample", "0"], ["--jump", "0"]]))
    elif task == "upscale":
        argv += data.draw(st.sampled_from([[], ["--factor", "2"], ["--factor", "0"], ["--factor", "3"],
                                           ["--factor", "-2"]]))
    elif task == "img2img":
        argv += data.draw(st.sampled_from([[], ["--strength=0"], ["--strength=1"], ["--strength=1.5"],
                                           ["--strength=nan"], ["--strength=-0.5"]]))
    check_cli(argv, capsys)
