"""The editing subcommands on a tiny randomly initialised U-Net, and --task training."""
import numpy as np
import pytest
import torch
from PIL import Image

from helpers import tiny_model_config
from torchdiffusion.cli.main import main
from torchdiffusion.denoiser.model import build_denoiser
from torchdiffusion.pipeline.folders import load_model, save_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    cfg = tiny_model_config()
    torch.manual_seed(0)
    d = build_denoiser(cfg)
    torch.nn.init.normal_(d.network.out_conv.weight, std=0.1)
    save_model(root / "model", d, cfg)
    g = torch.Generator().manual_seed(0)
    for name, size in (("a", 8), ("b", 8), ("big", 13), ("small", 4)):
        arr = (torch.rand(size, size, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(arr).save(root / f"{name}.png")
    mask = Image.new("L", (8, 8), 0)
    mask.paste(255, (2, 2, 6, 6))
    mask.save(root / "mask.png")
    Image.new("L", (5, 5), 255).save(root / "mask5.png")
    Image.new("RGB", (8, 8), (200, 10, 10)).save(root / "rgb.png")
    return root


def _run(argv, capsys):
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_denoise_tiles_a_larger_image(model_dir, tmp_path, capsys):
    out = tmp_path / "d.png"
    rc, stdout, _ = _run(["denoise", "--checkpoint", str(model_dir / "model"), "--image", str(model_dir / "big.png"),
                          "--sigma", "0.2", "--out", str(out)], capsys)
    assert rc == 0 and Image.open(out).size == (13, 13) and "1 network evaluations" in stdout


def test_inpaint_keeps_known_pixels(model_dir, tmp_path, capsys):
    out = tmp_path / "i.png"
    rc, stdout, _ = _run(["inpaint", "--checkpoint", str(model_dir / "model"), "--image", str(model_dir / "a.png"),
                          "--mask", str(model_dir / "mask.png"), "--steps", "3", "--resample", "2", "--jump", "2",
                          "--out", str(out)], capsys)
    assert rc == 0 and "6 network evaluations" in stdout
    src = torch.from_numpy(np.asarray(Image.open(model_dir / "a.png")).copy())
    res = torch.from_numpy(np.asarray(Image.open(out)).copy())
    known = torch.ones(8, 8, dtype=torch.bool)
    known[2:6, 2:6] = False
    assert torch.equal(src[known], res[known])


def test_upscale_img2img_and_interpolate(model_dir, tmp_path, capsys):
    m = str(model_dir / "model")
    rc, stdout, _ = _run(["upscale", "--checkpoint", m, "--image", str(model_dir / "small.png"), "--steps", "2",
                          "--out", str(tmp_path / "u.png")], capsys)
    assert rc == 0 and Image.open(tmp_path / "u.png").size == (8, 8) and "×2" in stdout
    rc, stdout, _ = _run(["img2img", "--checkpoint", m, "--image", str(model_dir / "a.png"), str(model_dir / "b.png"),
                          "--strength", "0.3", "--steps", "4", "--out", str(tmp_path / "many")], capsys)
    assert rc == 0 and "4 network evaluations" in stdout
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["a.png", "b.png"]
    rc, stdout, _ = _run(["interpolate", "--checkpoint", m, "--seeds", "0", "1", "--frames", "3", "--steps", "2",
                          "--out", str(tmp_path / "w.png"), "--animation", str(tmp_path / "w.gif")], capsys)
    assert rc == 0 and (tmp_path / "w.gif").is_file() and (tmp_path / "w.png").is_file()
    rc, _, _ = _run(["interpolate", "--checkpoint", m, "--images", str(model_dir / "a.png"),
                     str(model_dir / "rgb.png"), "--frames", "3", "--steps", "2", "--out", str(tmp_path / "w2.png")],
                    capsys)
    assert rc == 0


@pytest.mark.parametrize("argv,message", [
    (["inpaint", "--image", "a.png", "--mask", "mask5.png"], "mask is 5×5 but the image is 8×8"),
    (["img2img", "--image", "a.png", "--strength", "1.5"], "strength must be in [0, 1]"),
    (["upscale", "--image", "small.png", "--factor", "3"], "upscaled ×3 is 12×12"),
    (["img2img", "--image", "missing.png"], "missing.png: no such file"),
    (["denoise", "--image", "a.png", "--sigma", "1e6"], "outside the model's trained noise range"),
])
def test_bad_input_is_one_line(model_dir, argv, message, capsys, monkeypatch):
    monkeypatch.chdir(model_dir)
    rc, _, err = _run([argv[0], "--checkpoint", "model", *argv[1:]], capsys)
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_train_inpaint_model_then_use_it(tmp_path, capsys):
    tiny = ["--image-size", "8", "--base-channels", "8", "--channel-mult", "1,2", "--batch-size", "8",
            "--sample-n", "6", "--sample-steps", "2", "--final-steps", "2", "--no-progress", "--precision", "fp32"]
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--steps", "1", "--task", "inpaint", *tiny]) == 0
    _, cfg = load_model(out / "model")
    assert cfg.image_condition == {"kind": "inpaint"} and cfg.unet.extra_in_channels == 2
    assert (out / "samples.png").is_file()
    img = tmp_path / "x.png"
    Image.new("L", (8, 8), 30).save(img)
    mask = tmp_path / "m.png"
    Image.new("L", (8, 8), 255).save(mask)
    rc, stdout, _ = _run(["inpaint", "--checkpoint", str(out), "--image", str(img), "--mask", str(mask),
                          "--steps", "2", "--out", str(tmp_path / "o.png")], capsys)
    assert rc == 0 and "(model)" in stdout
    out2 = tmp_path / "sr"
    assert main(["train", "--out", str(out2), "--steps", "1", "--task", "superres", "--sr-factor", "2", *tiny]) == 0
    rc, _, err = _run(["upscale", "--checkpoint", str(out2), "--image", str(img), "--steps", "2"], capsys)
    assert rc == 2 and "trained for ×2" not in err and "give 4×4 inputs" in err
